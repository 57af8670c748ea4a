#!/bin/sh
# Image load benchmark: a 100 MB image (default 4 layers of 25 MB of random, so
# incompressible, data) loaded into a 3-node local cluster, as `kind load docker-image`
# and `k3d image import` do (k3d's figure for this: 30-40 s, k3d#386). In one run:
#   1. `skiff image load ARCHIVE` of a `podman save` archive, first load (every node
#      lacks every layer), then a reload (the nodes have them);
#   2. `skiff image load NAME` from Podman by name (`podman image save` streamed), first
#      load into a cleaned cluster, then a reload (nothing is saved);
#   3. for comparison, `podman save` then `skiff image import` per node (the old way:
#      every node gets the whole archive and unpacks the whole image again).
# `bench/load.sh [LAYERS] [MB_PER_LAYER]`; needs podman (scripts/install-deps.sh) and
# root; fails if a load takes 2 s or more.
set -eu
cd "$(dirname "$0")/.."
layers=${1:-4}
mb=${2:-25}
skiff=${SKIFF:-./target/release/skiff}
[ -x "$skiff" ] || cargo build --release -p skiff
cluster=bload$$
name=localhost/skiff-bench-load:$$
work=$(mktemp -d /var/tmp/skiff-bench-load.XXXXXX)
cleanup() {
  "$skiff" down --cluster "$cluster" >/dev/null 2>&1 || true
  podman rmi -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# The image: FROM scratch, one COPY per layer of random data.
mkdir -p "$work/ctx"
printf 'FROM scratch\n' > "$work/ctx/Containerfile"
i=0
while [ "$i" -lt "$layers" ]; do
  head -c "$((mb * 1000 * 1000))" /dev/urandom > "$work/ctx/data$i"
  printf 'COPY data%s /data/%s\n' "$i" "$i" >> "$work/ctx/Containerfile"
  i=$((i + 1))
done
podman build -q -t "$name" "$work/ctx" >/dev/null
podman save -q -o "$work/image.tar" "$name" >/dev/null
"$skiff" up --cluster "$cluster" --nodes 3 --isolated >/dev/null 2>&1
now() { python3 -c 'import time; print(time.monotonic())'; }
ms() { python3 -c "import sys; print(int((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$2"; }
limit=2000
failed=0
run() { # label, then the command
  label=$1; shift
  t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
  took=$(ms "$t0" "$t1")
  echo "$label: $took ms"
  [ "$took" -lt "$limit" ] || failed=1
}
clean_nodes() {
  for n in $("$skiff" image ls --cluster "$cluster" -q | grep -v '^$'); do
    "$skiff" image rm --cluster "$cluster" "$n" >/dev/null 2>&1 || true
  done
}
echo "load: $(uptime)"
echo "image: $layers layers x $mb MB (random), 3 nodes"
run "skiff image load ARCHIVE, first load" "$skiff" image load --cluster "$cluster" "$work/image.tar"
run "skiff image load ARCHIVE, reload (the nodes have the layers)" "$skiff" image load --cluster "$cluster" "$work/image.tar"
clean_nodes
run "skiff image load NAME (podman), first load" "$skiff" image load --cluster "$cluster" "$name"
run "skiff image load NAME (podman), reload" "$skiff" image load --cluster "$cluster" "$name"
clean_nodes
t0=$(now)
for n in k8s-m k8s-n1 k8s-n2; do
  podman save -q -o "$work/again.tar" "$name" >/dev/null
  "$skiff" image import --data-dir "/var/lib/skiff/clusters/$cluster/$n/agent" "$work/again.tar" >/dev/null
  rm -f "$work/again.tar"
done
t1=$(now)
echo "podman save + skiff image import, per node (for comparison): $(ms "$t0" "$t1") ms"
if [ "$failed" = 1 ]; then echo "FAIL: a load took ${limit} ms or more"; exit 1; fi
echo "OK: every load within ${limit} ms"
