#!/usr/bin/env bash
# Local-cluster benchmark (issue: `skiff up`): prints
#  - `skiff up` to Ready with coredns available, for 3 and for 10 nodes;
#  - the whole cluster's memory (sum of RSS of every process in its namespaces), idle and
#    with the seed's workload;
#  - the seed's Deployment from `kubectl apply` to all 4 pods serving through the Service.
# Run as root from the repository root after `cargo build --release -p skiff`.
set -euo pipefail
SKIFF=${SKIFF:-target/release/skiff}
SEED=${SEED:-../shared/seed/manifests}
CLUSTER=bench$$
WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig
trap '"$SKIFF" down --cluster "$CLUSTER" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# Sum of RSS (kB) of every process living in one of the cluster's network namespaces.
cluster_rss_kb() {
  local total=0 ino pid
  local inodes
  inodes=$(for ns in /var/run/netns/"$CLUSTER"-*; do stat -L -c %i "$ns"; done | sort -u)
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    ino=$(stat -L -c %i /proc/$pid/ns/net 2>/dev/null) || continue
    if grep -qx "$ino" <<<"$inodes"; then
      rss=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
      total=$((total + ${rss:-0}))
    fi
  done
  echo "$total"
}

for n in 3 10; do
  t=$(date +%s%N)
  "$SKIFF" up --cluster "$CLUSTER" --nodes "$n" >/dev/null
  echo "skiff up, $n nodes, to Ready with coredns available: $(ms "$t") ms"
  if [ "$n" = 3 ]; then
    echo "cluster memory, 3 nodes, idle: $(( $(cluster_rss_kb) / 1024 )) MiB"
    t=$(date +%s%N)
    kubectl apply -f "$SEED/Httpd-Deployment.yaml" >/dev/null
    kubectl apply -f "$SEED/Httpd-Service.yaml" >/dev/null
    cip=$(kubectl get svc httpd-svc -o jsonpath='{.spec.clusterIP}')
    # All 4 pods serving through the Service: 4 ready endpoints and the cluster IP answers.
    until [ "$(kubectl get endpoints httpd-svc -o jsonpath='{.subsets[*].addresses[*].ip}' | wc -w)" = 4 ] \
       && "$SKIFF" node exec --cluster "$CLUSTER" k8s-m -- curl -sf -m 1 "$cip:8080" >/dev/null; do
      sleep 0.05
    done
    echo "seed Deployment, kubectl apply to 4 pods serving through the Service: $(ms "$t") ms"
    echo "cluster memory, 3 nodes, seed workload: $(( $(cluster_rss_kb) / 1024 )) MiB"
  fi
  "$SKIFF" down --cluster "$CLUSTER" >/dev/null
done
