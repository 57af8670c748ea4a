#!/bin/sh
# API server benchmark (crates/apiserver/BENCH.md): builds the release example and runs it
# against a real skiff-apiserver child process over HTTPS with the admin certificate.
# Extra arguments go to the example, e.g. `bench/apiserver.sh --pods 10000 --watchers 100`.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p skiff-apiserver --example apibench
echo "load: $(uptime)"
exec ./target/release/examples/apibench "$@"
