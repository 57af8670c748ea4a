#!/usr/bin/env bash
# Benchmark: skiff-dns vs dnsmasq vs unbound with dnsperf, on loopback.
#
# All three serve the same N cluster names (svc-<i>.default.svc.cluster.local ->
# 10.100.<i/250>.<i%250+1>) and forward everything else to one upstream (a dnsmasq
# authoritative for example.test), caching it. For each server and query set (cluster
# names; cached external names) it runs
#   dnsperf -s 127.0.0.1 -p PORT -d queries.txt -l $SECS -c 4 -Q 200000   (throughput)
# and a second run at a fixed rate (-Q $LAT_QPS, below every server's saturation) with
# -v to get the latency distribution (avg, p50, p99). At saturation dnsperf keeps 100
# queries in flight, so latency there is 100/qps by Little's law and says nothing about
# the server; the fixed-rate run does.
#
# Usage: crates/dns/bench/dnsperf.sh [--release|--debug]
#        (env: N=1000 SECS=10 LAT_QPS=20000 ROUNDS=3)
set -euo pipefail
N=${N:-1000}
SECS=${SECS:-10}
LAT_QPS=${LAT_QPS:-20000}
# Default: the dev profile with skiff-dns and hickory-proto optimised (opt-level 3), which
# needs no release build of the whole dependency tree on a shared machine.
PROFILE=debug
BUILD="dev, skiff-dns+hickory-proto at opt-level 3"
CARGO_FLAGS=(--config 'profile.dev.package."skiff-dns".opt-level=3' --config 'profile.dev.package."hickory-proto".opt-level=3')
case "${1:-}" in
  --release) PROFILE=release; BUILD=release; CARGO_FLAGS=(--release) ;;
  --debug) BUILD="dev (unoptimised)"; CARGO_FLAGS=() ;;
esac

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
W=$(mktemp -d /tmp/skiff-dnsperf.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); SKIFF=$(port); MASQ=$(port); UNB=$(port)

echo "building the static_dns example ($BUILD)..." >&2
(cd "$ROOT" && cargo build -q -p skiff-dns --example static_dns "${CARGO_FLAGS[@]}")
BIN="$ROOT/target/$PROFILE/examples/static_dns"

# Names and query files.
: > "$W/cluster.txt"; : > "$W/external.txt"; : > "$W/hosts.conf"; : > "$W/unbound-local.conf"
for ((i = 0; i < N; i++)); do
  ip="10.100.$((i / 250)).$((i % 250 + 1))"
  echo "svc-$i.default.svc.cluster.local A" >> "$W/cluster.txt"
  echo "host-record=svc-$i.default.svc.cluster.local,$ip" >> "$W/hosts.conf"
  echo "  local-data: \"svc-$i.default.svc.cluster.local. 5 IN A $ip\"" >> "$W/unbound-local.conf"
done
for ((j = 0; j < 100; j++)); do echo "host-$j.example.test A" >> "$W/external.txt"; done

# The upstream: authoritative for example.test, long TTL so every cache keeps it.
dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
  --listen-address=127.0.0.1 --port="$UP" --address=/example.test/192.0.2.10 --local-ttl=3600 \
  --pid-file= >/dev/null 2>&1 &
PIDS+=($!)

# skiff-dns.
"$BIN" --listen "127.0.0.1:$SKIFF" --services "$N" --upstream "127.0.0.1:$UP" 2> "$W/skiff.log" &
PIDS+=($!)

# dnsmasq under test: same names, forwarding and caching the rest.
dnsmasq --no-daemon --conf-file="$W/hosts.conf" --no-resolv --no-hosts --bind-interfaces \
  --listen-address=127.0.0.1 --port="$MASQ" --server="127.0.0.1#$UP" --cache-size=10000 \
  --local-ttl=5 --pid-file= >/dev/null 2>&1 &
PIDS+=($!)

# unbound: local-data for the zone, forward-zone for the rest.
cat > "$W/unbound.conf" <<CONF
server:
  interface: 127.0.0.1
  port: $UNB
  num-threads: 2
  so-reuseport: yes
  do-daemonize: no
  username: ""
  chroot: ""
  pidfile: ""
  directory: "$W"
  logfile: ""
  use-syslog: no
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  msg-cache-size: 32m
  rrset-cache-size: 64m
  local-zone: "cluster.local." static
$(cat "$W/unbound-local.conf")
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$UP
CONF
unbound -d -c "$W/unbound.conf" >/dev/null 2>&1 &
PIDS+=($!)

# Wait until each answers a cluster name and an external one (this also warms caches).
for p in "$SKIFF" "$MASQ" "$UNB"; do
  for _ in $(seq 1 100); do
    a=$(dig @127.0.0.1 -p "$p" +short +time=1 +tries=1 svc-0.default.svc.cluster.local 2>/dev/null || true)
    [ "$a" = "10.100.0.1" ] && break
    sleep 0.1
  done
  [ "$a" = "10.100.0.1" ] || { echo "server on port $p did not come up" >&2; exit 1; }
  dnsperf -s 127.0.0.1 -p "$p" -d "$W/external.txt" -n 1 >/dev/null 2>&1
done

throughput() { # port file -> qps
  dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$SECS" -c 4 -Q 200000 2>&1 \
    | awk '/Queries per second/ {printf "%.0f", $4}'
}

latency() { # port file -> "avg p50 p99" in ms at LAT_QPS
  dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$SECS" -c 4 -Q "$LAT_QPS" -v 2>/dev/null \
    | awk '/^> / {print $NF}' | sort -n > "$W/lat"
  awk '{a[NR]=$1; s+=$1}
    END {
      if (NR == 0) { print "- - -"; exit }
      m = int(NR * 0.5); if (m < 1) m = 1
      q = int(NR * 0.99); if (q < 1) q = 1
      printf "%.3f %.3f %.3f", s / NR * 1000, a[m] * 1000, a[q] * 1000
    }' "$W/lat"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The machine may be shared: the servers take turns, $ROUNDS times, and the median
# counts.
ROUNDS=${ROUNDS:-3}
declare -A QPS
SERVERS=("skiff-dns:$SKIFF" "dnsmasq:$MASQ" "unbound:$UNB")
for ((r = 1; r <= ROUNDS; r++)); do
  for set in cluster external; do
    for s in "${SERVERS[@]}"; do
      QPS[${s%%:*}/$set]+="$(throughput "${s##*:}" "$W/$set.txt") "
    done
  done
done

echo
echo "dnsperf -l $SECS -c 4 -Q 200000 (median of $ROUNDS interleaved rounds); N=$N cluster names;"
echo "skiff-dns build: $BUILD; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "latency (ms) measured at a fixed $LAT_QPS qps"
printf "%-10s %-9s %10s   %-24s %s\n" server queries qps rounds "avg p50 p99"
for set in cluster external; do
  for s in "${SERVERS[@]}"; do
    name=${s%%:*}
    rounds=${QPS[$name/$set]}
    printf "%-10s %-9s %10s   %-24s %s\n" "$name" "$set" "$(echo "$rounds" | median)" "$rounds" \
      "$(latency "${s##*:}" "$W/$set.txt")"
  done
done

# Service change -> answer, measured by the example itself.
echo
"$BIN" --listen "127.0.0.1:0" --services "$N" --measure-update 2>/dev/null
