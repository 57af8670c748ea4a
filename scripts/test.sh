#!/usr/bin/env bash
# The test suite: unit tests, and integration tests that start real processes (as root:
# they create network namespaces, run runc and program iptables inside those namespaces).
# The API server's end-to-end tests then run a second time with every server on etcd
# (`SKIFF_TEST_DATASTORE=etcd`), as the datastore issue asks, when etcd is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --no-fail-fast "$@"
if command -v etcd >/dev/null; then
  SKIFF_TEST_DATASTORE=etcd cargo test -p skiff-apiserver --test e2e "$@"
else
  echo "etcd not installed: the API tests on etcd were skipped" >&2
fi
