#!/usr/bin/env bash
# On a fresh machine, as root: installs what is missing, builds skiff, brings a local
# 3-node cluster up and replays the seed walkthrough against it with the real kubectl
# (../shared/acceptance/seed-walkthrough.sh), then takes the cluster down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release -p skiff
WALK=${WALK:-../shared/acceptance/seed-walkthrough.sh}
if [ ! -f "$WALK" ]; then
  echo "seed walkthrough not found at $WALK (set WALK=path)" >&2; exit 1
fi
SKIFF=target/release/skiff bash "$WALK"
