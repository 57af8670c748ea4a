#!/usr/bin/env bash
# The test suite: unit tests, and integration tests that start real processes. Tests that
# need root (network namespaces, runc, iptables inside those namespaces) are marked
# `#[ignore = "needs root"]`: this script runs them (`--include-ignored`), so run it as
# root. Benchmarks written as tests (`bench_*`) are left out; run them explicitly.
# The API server's end-to-end tests then run a second time with every server on etcd
# (`SKIFF_TEST_DATASTORE=etcd`), as the datastore issue asks.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh runs the tests that need root: run it as root" >&2
  exit 1
fi
cargo test --workspace --no-fail-fast "$@" -- --include-ignored --skip bench_
command -v etcd >/dev/null || { echo "etcd is missing: run scripts/install-deps.sh" >&2; exit 1; }
# `--workspace --test e2e` (only the API server has that target) keeps the workspace's
# feature set, so nothing is rebuilt for this second run.
SKIFF_TEST_DATASTORE=etcd cargo test --workspace --test e2e "$@" -- --include-ignored
