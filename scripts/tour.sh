#!/usr/bin/env bash
# The seed walkthrough (../shared/seed/README.md) on a fresh local cluster, with the
# project's own copy of its manifests (examples/seed), as a person would type it: a
# 3-node cluster, the httpd Deployment and its pods, the ClusterIP Service, the
# KUBE-SVC chains the proxy wrote, a pod fetching the Service by name, the NodePort
# Service, then its node port from this machine (every node IP, and --port on loopback).
# Takes the cluster down at the end, also on failure. As root.
set -euo pipefail
cd "$(dirname "$0")/.."
SKIFF=${SKIFF:-target/release/skiff}
KUBECTL=${KUBECTL:-kubectl}
CLUSTER=${CLUSTER:-tour}
HOST_PORT=${HOST_PORT:-8080}
PAGE='<html><body><h1>It works!</h1></body></html>'
k() { echo "\$ kubectl $*" >&2; "$KUBECTL" --context "skiff-$CLUSTER" "$@"; }
on_node() { local node=$1; shift; "$SKIFF" node exec --cluster "$CLUSTER" "$node" -- "$@"; }
step() { printf '\n== %s\n' "$*"; }
check() { # check WHAT GOT WANT
  if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAILED: $1: got '$2'"; exit 1; fi
}
trap '"$SKIFF" down --cluster "$CLUSTER"' EXIT

step "A 3-node cluster, node port 31688 also on 127.0.0.1:$HOST_PORT"
"$SKIFF" up --cluster "$CLUSTER" --nodes 3 --port "$HOST_PORT:31688"
"$SKIFF" ls

step "The Deployment: 4 httpd pods on the workers"
k apply -f examples/seed/Httpd-Deployment.yaml
k rollout status deployment/httpd --timeout=120s
k get pod -o wide
pod_ip=$(k get pod -l run=httpd -o jsonpath='{.items[0].status.podIP}')
check "curl $pod_ip from k8s-m" "$(on_node k8s-m curl -s -m 5 "$pod_ip")" "$PAGE"

step "The Service: a stable cluster IP"
k apply -f examples/seed/Httpd-Service.yaml
k get svc
k describe service httpd-svc
cip=$(k get svc httpd-svc -o jsonpath='{.spec.clusterIP}')
check "curl $cip:8080 from k8s-n1" "$(on_node k8s-n1 curl -s -m 5 "$cip:8080")" "$PAGE"

step "What kube-proxy wrote on k8s-n1"
on_node k8s-n1 iptables-save -t nat | grep -E 'httpd-svc|^-A KUBE-SVC-RL3JAE4GN7VOGDGP'

step "Cluster DNS: a busybox pod fetches httpd-svc.default:8080 by name"
got=$(k run busybox --rm -i --image=busybox --restart=Never -- wget -qO- httpd-svc.default:8080 2>/dev/null | grep -F "$PAGE" || true)
check "wget httpd-svc.default:8080 from a pod" "$got" "$PAGE"

step "NodePort: the same Service on port 31688 of every node"
k apply -f examples/seed/Httpd-Service-NodePort.yaml
k get svc httpd-svc
for ip in $(k get nodes -o jsonpath='{.items[*].status.addresses[?(@.type=="InternalIP")].address}'); do
  got=""
  for _ in $(seq 50); do got=$(curl -s -m 2 "http://$ip:31688/" || true); [ "$got" = "$PAGE" ] && break; sleep 0.2; done
  check "curl http://$ip:31688/ from this machine (open it in a browser too)" "$got" "$PAGE"
done
check "curl http://127.0.0.1:$HOST_PORT/ (--port $HOST_PORT:31688)" "$(curl -s -m 5 "http://127.0.0.1:$HOST_PORT/")" "$PAGE"
echo
echo "tour: every step gave what the seed shows; taking the cluster down"
