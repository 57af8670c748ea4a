#!/usr/bin/env bash
# Installs what skiff needs on a fresh Debian machine (as root): the kernel-facing tools a
# node uses (iptables, nftables, iproute2, conntrack, runc, the CNI plugins, busybox for the
# built-in images), the peers the tests and benchmarks compare against, etcd (the store's
# tests run real clusters), protoc with its well-known types (etcd-client's build) and
# headless Chromium (a test opens a node port in a real browser), the official Python
# client (a test drives a cluster with it), the CNCF registry and skopeo (image pull
# tests push to a registry on loopback), podman (`skiff image load NAME` loads from it; its
# test and bench/load.sh build images FROM scratch, nothing is pulled).
set -euo pipefail
pkgs=(iptables nftables iproute2 conntrack runc containernetworking-plugins busybox-static
      iputils-ping curl dnsutils dnsperf dnsmasq unbound python3
      etcd-server etcd-client protobuf-compiler libprotobuf-dev chromium
      docker-registry skopeo podman)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# unbound and dnsmasq are only benchmark peers: keep their services from holding port 53.
for s in unbound dnsmasq; do
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$s" >/dev/null 2>&1 || true; fi
  pkill -x "$s" 2>/dev/null || true
done
# The official Python client, for the client suite (crates/skiff/tests/clients.rs).
if ! python3 -c "import kubernetes" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check kubernetes==37.0.3
fi
echo "dependencies installed"
