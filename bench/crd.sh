#!/bin/sh
# Custom resources against ConfigMaps (bench/README.md): builds the release example and
# runs it against a real skiff-apiserver child process over HTTPS with the admin
# certificate. Extra arguments go to the example, e.g. `bench/crd.sh --objects 10000`.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --workspace --example crdbench
echo "load: $(uptime)"
exec "${CARGO_TARGET_DIR:-target}/release/examples/crdbench" "$@"
