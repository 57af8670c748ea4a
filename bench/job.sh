#!/usr/bin/env bash
# Job benchmark (issue 17): on a 3-node local cluster, a Job of 1,000 completions with
# parallelism 50 whose pods run `true`; prints the total time from `kubectl apply` to
# the Job's Complete condition and the completions per second.
# Run as root from the repository root after `cargo build --release -p skiff`.
set -euo pipefail
SKIFF=${SKIFF:-${CARGO_TARGET_DIR:-target}/release/skiff}
COMPLETIONS=${COMPLETIONS:-1000}
PARALLELISM=${PARALLELISM:-50}
CLUSTER=jobbench$$
WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig
trap '"$SKIFF" down --cluster "$CLUSTER" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

"$SKIFF" up --cluster "$CLUSTER" --nodes 3 >/dev/null
cat >"$WORK/job.yaml" <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: bench}
spec:
  completions: $COMPLETIONS
  parallelism: $PARALLELISM
  backoffLimit: 100
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 0
      containers:
      - {name: c, image: busybox, command: ["true"]}
YAML
t=$(date +%s%N)
kubectl apply -f "$WORK/job.yaml" >/dev/null
# Progress every 10 s on stderr; the figures on stdout.
last=0
until kubectl get job bench -o jsonpath='{.status.conditions[?(@.type=="Complete")].status}' | grep -q True; do
  now=$(( ($(date +%s%N) - t) / 1000000000 ))
  if [ $((now - last)) -ge 10 ]; then
    last=$now
    echo "  ${now}s: $(kubectl get job bench -o jsonpath='{.status.succeeded} succeeded, {.status.active} active, {.status.failed} failed')" >&2
  fi
  sleep 0.2
done
ms=$(( ($(date +%s%N) - t) / 1000000 ))
failed=$(kubectl get job bench -o jsonpath='{.status.failed}')
echo "Job of $COMPLETIONS completions, parallelism $PARALLELISM, 3 nodes, pods running true: ${ms} ms"
awk -v n="$COMPLETIONS" -v ms="$ms" 'BEGIN { printf "completions/s: %.1f\n", n * 1000 / ms }'
echo "failed pods on the way: ${failed:-0}"
