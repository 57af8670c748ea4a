#!/bin/sh
# Density benchmark (clusterloader2's density/load on hollow nodes; bench/README.md):
# a `skiff server` on SQLite and `skiff agent --hollow N`, 30 pods per node in Deployments
# of 250/30/5 behind Services, a rolling update of 10% of them, deletion. Reports pod
# startup p50/p99, API call p99 per verb and resource, scheduler throughput, the servers'
# CPU and RSS, the hollow nodes' RSS, the datastore's size.
#   bench/density.sh                       # 100 nodes, 3,000 pods at 100 pods/s
#   DENSITY_NODES=1000 bench/density.sh    # 1,000 nodes, 30,000 pods
#   DENSITY_NODES=5000 DENSITY_READY_ONLY=1 bench/density.sh   # time to 5,000 nodes Ready
#   DENSITY_DATASTORE=etcd3 DENSITY_SERVERS=3 bench/density.sh  # 3 servers on 3-member etcd
#   DENSITY_NODES=334 DENSITY_POD_RATE=0 bench/density.sh   # ~10,000 pods at once (kwok's)
# Also DENSITY_PODS_PER_NODE, DENSITY_POD_RATE (pods/s; 0: all at once), DENSITY_TIMEOUT
# (s), DENSITY_PROXY=0 (no real proxy; it needs root, as it runs in a network namespace).
set -eu
cd "$(dirname "$0")/.."
echo "load: $(uptime)"
exec cargo test --release --workspace --test density bench_density -- --ignored --nocapture
