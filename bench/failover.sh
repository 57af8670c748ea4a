#!/usr/bin/env bash
# Several servers on etcd (issue #8): `skiff up --servers 3 --nodes 3` to Ready, then the
# time for the controllers and the scheduler to move to another server after the leading
# server is killed (SIGKILL), measured from the kill to the Lease naming a new holder.
# Repeated ROUNDS times on fresh clusters. Run as root from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
SKIFF=${SKIFF:-target/release/skiff}
ROUNDS=${ROUNDS:-3}
KUBECTL=${KUBECTL:-kubectl}
command -v etcd >/dev/null || { echo "needs etcd (apt-get install etcd-server)" >&2; exit 1; }
now_ms() { date +%s%3N; }
work=$(mktemp -d)
cluster=""
trap '[ -n "$cluster" ] && "$SKIFF" down --cluster "$cluster" >/dev/null 2>&1; rm -rf "$work"' EXIT
ups=() cms=() scheds=()
for r in $(seq "$ROUNDS"); do
  cluster="fo$$-$r"
  t0=$(now_ms)
  "$SKIFF" up --cluster "$cluster" --nodes 3 --servers 3 >/dev/null
  ups+=($(( $(now_ms) - t0 )))
  "$SKIFF" kubeconfig --cluster "$cluster" > "$work/kc"
  holder() { KUBECONFIG=$work/kc "$KUBECTL" get lease -n kube-system "$1" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true; }
  leader=$(holder kube-controller-manager)
  dir=/var/lib/skiff/clusters/$cluster
  pid=$(python3 - "$dir" "$leader" <<'PY'
import json, sys, pathlib
d, leader = pathlib.Path(sys.argv[1]), sys.argv[2]
s = json.loads((d / "cluster.json").read_text())
servers = [("k8s-m", s["serverPid"])] + [(p["node"], p["pid"]) for p in s["extra"] if p["role"] == "server"]
for node, pid in servers:
    f = d / node / "server" / "leader-identity"
    if f.exists() and f.read_text().strip() == leader:
        print(pid)
PY
)
  [ -n "$pid" ] || { echo "round $r: leader $leader not found" >&2; exit 1; }
  kill -9 "$pid"
  t_kill=$(now_ms)
  cm="" sched=""
  while [ -z "$cm" ] || [ -z "$sched" ]; do
    h=$(holder kube-controller-manager); [ -z "$cm" ] && [ -n "$h" ] && [ "$h" != "$leader" ] && cm=$(( $(now_ms) - t_kill ))
    h=$(holder kube-scheduler); [ -z "$sched" ] && [ -n "$h" ] && [ "$h" != "$leader" ] && sched=$(( $(now_ms) - t_kill ))
    [ $(( $(now_ms) - t_kill )) -lt 60000 ] || { echo "round $r: no takeover within 60 s" >&2; exit 1; }
    sleep 0.1
  done
  cms+=("$cm") scheds+=("$sched")
  echo "round $r: up ${ups[-1]} ms; controllers moved after $cm ms, scheduler after $sched ms"
  "$SKIFF" down --cluster "$cluster" >/dev/null 2>&1
  cluster=""
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median over $ROUNDS rounds: skiff up --servers 3 $(median "${ups[@]}") ms;" \
  "controllers take over $(median "${cms[@]}") ms, scheduler $(median "${scheds[@]}") ms after the leader dies" \
  "(10 s terms: at most 10 s + one 2 s retry)"
