#!/bin/sh
# Image pull benchmark: one image of random layers (default 4 x 25 MB, gzip) pushed to a
# CNCF distribution registry on loopback, then, in the same run, pulled and unpacked by
# `skiff image pull` into a fresh node store, pulled by `skopeo copy` to a directory (no
# unpacking: skopeo's best case), and loaded by `skiff image load` from the OCI layout into
# a fresh node store. Prints MB/s of each. `bench/registry.sh LAYERS MB_PER_LAYER`.
# Needs docker-registry, skopeo (scripts/install-deps.sh) and root (whiteouts).
set -eu
cd "$(dirname "$0")/.."
layers=${1:-4}
mb=${2:-25}
skiff=${SKIFF:-./target/release/skiff}
[ -x "$skiff" ] || cargo build --release -p skiff
work=$(mktemp -d /var/tmp/skiff-bench-registry.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -n "${reg:-}" ] && kill "$reg" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/storage}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
reg=$!
# The image: an OCI layout of random (incompressible) layers.
python3 - "$work/layout" "$layers" "$mb" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
root, n, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{root}/blobs/sha256")
def blob(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{root}/blobs/sha256/{d}", "wb").write(b)
    return "sha256:" + d
descs, diffs = [], []
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = os.urandom(mb << 20)
        info = tarfile.TarInfo(f"layer{i}/data"); info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    tar = buf.getvalue()
    diffs.append("sha256:" + hashlib.sha256(tar).hexdigest())
    gz = gzip.compress(tar, compresslevel=1)
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(gz), "size": len(gz)})
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
    "layers": descs}).encode()
index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": blob(manifest), "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}
json.dump(index, open(f"{root}/index.json", "w"))
open(f"{root}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:v1" "docker://127.0.0.1:$port/bench/img:v1"
total=$((layers * mb))
rate() { python3 -c "import sys; t=float(sys.argv[1]); print(f'{t:.2f} s, {int(sys.argv[2])/t:.0f} MB/s')" "$1" "$total"; }
now() { python3 -c 'import time; print(time.monotonic())'; }
echo "load: $(uptime)"
echo "image: $layers layers x $mb MB (random, gzip)"
t0=$(now); "$skiff" image pull --data-dir "$work/node" "127.0.0.1:$port/bench/img:v1" >/dev/null; t1=$(now)
echo "skiff image pull (download + verify + unpack): $(rate "$(python3 -c "print($t1-$t0)")")"
t0=$(now); skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/bench/img:v1" "dir:$work/skopeo"; t1=$(now)
echo "skopeo copy to a dir (download + verify, no unpack): $(rate "$(python3 -c "print($t1-$t0)")")"
t0=$(now); "$skiff" image load --data-dir "$work/n1" "$work/layout" >/dev/null 2>&1; t1=$(now)
echo "skiff image load, 1 node: $(rate "$(python3 -c "print($t1-$t0)")")"
