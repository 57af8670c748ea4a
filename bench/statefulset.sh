#!/usr/bin/env bash
# StatefulSet benchmark (issue 17): on a 3-node local cluster, a StatefulSet of REPLICAS
# httpd pods behind its headless Service scaled from 0 to REPLICAS; prints the time from
# `kubectl scale` to all pods Ready (status.readyReplicas), with podManagementPolicy
# OrderedReady (one pod at a time, each Running and Ready before the next) and Parallel.
# Run as root from the repository root after `cargo build --release -p skiff`.
set -euo pipefail
SKIFF=${SKIFF:-target/release/skiff}
REPLICAS=${REPLICAS:-20}
CLUSTER=bsts$$
WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig
trap '"$SKIFF" down --cluster "$CLUSTER" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

"$SKIFF" up --cluster "$CLUSTER" --nodes 3 >/dev/null

for policy in OrderedReady Parallel; do
  name=$(echo "$policy" | tr 'A-Z' 'a-z')
  cat >"$WORK/$name.yaml" <<YAML
apiVersion: v1
kind: Service
metadata: {name: $name}
spec:
  clusterIP: None
  selector: {app: $name}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: $name}
spec:
  serviceName: $name
  podManagementPolicy: $policy
  replicas: 0
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: httpd
        readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
YAML
  kubectl apply -f "$WORK/$name.yaml" >/dev/null
  t=$(date +%s%N)
  kubectl scale "sts/$name" --replicas="$REPLICAS" >/dev/null
  until [ "$(kubectl get sts "$name" -o jsonpath='{.status.readyReplicas}')" = "$REPLICAS" ]; do
    sleep 0.05
  done
  echo "StatefulSet $policy, scale 0 to $REPLICAS on 3 nodes, to all Ready: $(ms "$t") ms"
  kubectl delete -f "$WORK/$name.yaml" --wait=true >/dev/null
done
