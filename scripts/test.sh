#!/usr/bin/env bash
# The test suite: unit tests, and integration tests that start real processes (as root:
# they create network namespaces, run runc and program iptables inside those namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --no-fail-fast "$@"
