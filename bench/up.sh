#!/usr/bin/env bash
# `skiff up` latency over many runs (issue 13: no run above 3 s; a CoreDNS pod's first
# connection to the API used to hang 30 s now and then). Prints:
#  - each of RUNS sequential `skiff up` / `skiff down` (NODES nodes) with its duration;
#  - ROUNDS rounds of CONCURRENT `skiff up` at once, with distinct cluster names;
#  - p50 / p99 / max of each series, and of each phase `skiff up` prints (issue 21:
#    where a slow run spends its time).
# Fails (exit 1) if a sequential up took more than LIMIT_MS, or a concurrent one more
# than CONCURRENT_LIMIT_MS (several clusters share the cores, so each takes longer, but
# a 30 s stall still shows).
# Run as root from the repository root after `cargo build --release -p skiff`.
set -euo pipefail
SKIFF=${SKIFF:-target/release/skiff}
RUNS=${RUNS:-50}
NODES=${NODES:-3}
CONCURRENT=${CONCURRENT:-4}
ROUNDS=${ROUNDS:-3}
LIMIT_MS=${LIMIT_MS:-3000}
CONCURRENT_LIMIT_MS=${CONCURRENT_LIMIT_MS:-10000}
PREFIX=bup$$
WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig

cleanup() {
  for i in $(seq 0 "$CONCURRENT"); do
    "$SKIFF" down --cluster "$PREFIX-$i" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# p50, p99 and max of the numbers in a file (nearest-rank percentiles).
stats() {
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    p50 = v[int((NR * 50 + 99) / 100)]; p99 = v[int((NR * 99 + 99) / 100)];
    printf "p50 %d ms, p99 %d ms, max %d ms over %d runs\n", p50, p99, v[NR], NR }'
}

fail=0
: >"$WORK/up.txt"
: >"$WORK/down.txt"
: >"$WORK/phases.txt"
for i in $(seq 1 "$RUNS"); do
  t=$(now_ms)
  if ! "$SKIFF" up --cluster "$PREFIX-0" --nodes "$NODES" >"$WORK/out" 2>&1; then
    echo "run $i: skiff up FAILED after $(( $(now_ms) - t )) ms:"; cat "$WORK/out"
    fail=1
  fi
  up=$(( $(now_ms) - t ))
  t=$(now_ms)
  "$SKIFF" down --cluster "$PREFIX-0" >/dev/null
  down=$(( $(now_ms) - t ))
  echo "$up" >>"$WORK/up.txt"
  echo "$down" >>"$WORK/down.txt"
  # The phase lines `skiff up` prints (" ✓ Starting the nodes (0.41s)"), as ms per phase.
  sed -n 's/^ ✓ \(.*\) (\([0-9.]*\)s)$/\1|\2/p' "$WORK/out" |
    awk -F'|' '{ printf "%s|%d\n", $1, $2 * 1000 }' >>"$WORK/phases.txt"
  flag=""
  if [ "$up" -gt "$LIMIT_MS" ]; then flag="  <-- above ${LIMIT_MS} ms"; fail=1; fi
  echo "run $i: up $up ms, down $down ms$flag"
done
echo "skiff up, $NODES nodes, sequential: $(stats "$WORK/up.txt")"
echo "skiff down, $NODES nodes, sequential: $(stats "$WORK/down.txt")"
# Where the time goes: each phase's p50 / p99 / max over the sequential runs.
cut -d'|' -f1 "$WORK/phases.txt" | awk '!seen[$0]++' | while read -r phase; do
  awk -F'|' -v p="$phase" '$1 == p { print $2 }' "$WORK/phases.txt" >"$WORK/phase.txt"
  echo "  phase \"$phase\": $(stats "$WORK/phase.txt")"
done

: >"$WORK/cup.txt"
for r in $(seq 1 "$ROUNDS"); do
  pids=()
  for i in $(seq 1 "$CONCURRENT"); do
    (
      t=$(now_ms)
      if "$SKIFF" up --cluster "$PREFIX-$i" --nodes "$NODES" >"$WORK/out-$i" 2>&1; then
        echo $(( $(now_ms) - t )) >"$WORK/took-$i"
      else
        echo "round $r, cluster $i: skiff up FAILED:"; cat "$WORK/out-$i"
        echo 999999 >"$WORK/took-$i"
      fi
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  line="round $r ($CONCURRENT at once):"
  for i in $(seq 1 "$CONCURRENT"); do
    took=$(cat "$WORK/took-$i")
    echo "$took" >>"$WORK/cup.txt"
    line="$line $took ms"
    if [ "$took" -gt "$CONCURRENT_LIMIT_MS" ]; then line="$line (above ${CONCURRENT_LIMIT_MS} ms)"; fail=1; fi
  done
  echo "$line"
  for i in $(seq 1 "$CONCURRENT"); do
    "$SKIFF" down --cluster "$PREFIX-$i" >/dev/null
  done
done
if [ "$ROUNDS" -gt 0 ]; then
  echo "skiff up, $NODES nodes, $CONCURRENT at once: $(stats "$WORK/cup.txt")"
fi

if [ "$fail" != 0 ]; then
  echo "FAIL: a sequential skiff up took more than ${LIMIT_MS} ms, a concurrent one more than ${CONCURRENT_LIMIT_MS} ms, or one failed" >&2
  exit 1
fi
echo "OK: every sequential skiff up within ${LIMIT_MS} ms, every concurrent one within ${CONCURRENT_LIMIT_MS} ms"
