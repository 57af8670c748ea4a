#!/usr/bin/env bash
# Replays the seed walkthrough (../shared/acceptance/seed-walkthrough.sh) against a fresh
# local cluster with the release binary, and judges its output.
#
# One check of that script cannot pass with any API server: it looks for the
# `kubectl.kubernetes.io/last-applied-configuration` annotation in `kubectl describe
# service`, and kubectl (1.16 onwards, so every kubectl 1.27-1.33 here) never prints that
# annotation in describe output (k8s.io/kubectl/pkg/describe: skipAnnotations). skiff
# stores it (`kubectl get -o yaml` shows it: crates/skiff/tests/cluster.rs checks that).
# Every other check must pass.
set -uo pipefail
cd "$(dirname "$0")/.."
WALK=${WALK:-../shared/acceptance/seed-walkthrough.sh}
SKIFF=${SKIFF:-target/release/skiff}
[ -f "$WALK" ] || { echo "seed walkthrough not found at $WALK (set WALK=path)" >&2; exit 1; }
known='^FAIL - describe service lacks kubectl\.kubernetes\.io/last-applied-configuration$'
# Once with the kubectl that matches the server (1.33, as the acceptance script runs it)
# and once with the oldest supported one (1.27: SPDY streams, older discovery).
KUBECTLS=${KUBECTLS:-kubectl /usr/lib/google-cloud-sdk/bin/kubectl.1.27}
for kc in $KUBECTLS; do
  if [ "$kc" != kubectl ] && [ ! -x "$kc" ]; then
    echo "walkthrough: $kc not installed, skipped"; continue
  fi
  echo "== walkthrough with $kc"
  out=$(KUBECTL=$kc SKIFF=$SKIFF bash "$WALK" 2>&1); rc=$?
  printf '%s\n' "$out"
  unexpected=$(printf '%s\n' "$out" | grep '^FAIL - ' | grep -Ev "$known" || true)
  if [ -n "$unexpected" ]; then
    echo "walkthrough ($kc): unexpected failures:"; printf '%s\n' "$unexpected"; exit 1
  fi
  if ! printf '%s\n' "$out" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
    echo "walkthrough ($kc): did not finish (exit $rc)"; exit 1
  fi
done
echo "walkthrough: no unexpected failure (only the describe check kubectl cannot show may fail)"
