#!/usr/bin/env bash
# On a fresh machine, as root, from a clone with nothing beside it: installs what is
# missing, builds skiff, and walks through the seed (scripts/tour.sh, with the manifests
# in examples/seed) on a local 3-node cluster, ending with the node port answering from
# this machine, then takes the cluster down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release -p skiff
SKIFF=target/release/skiff bash scripts/tour.sh
