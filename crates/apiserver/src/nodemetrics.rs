//! `metrics.k8s.io/v1beta1` from the agents' `/stats/summary`, as metrics-server builds
//! NodeMetrics and PodMetrics from the kubelets': this module holds the short cache of
//! each node's summary and the pure conversion (the handler is `rest::metrics`, the
//! scrape `nodeproxy::stats_summary`). A pod or node whose CPU rate is not known yet
//! (its first sample) has no metrics, as metrics-server leaves it out until its
//! second scrape.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use skiff_api::defaults::METRICS_WINDOW;
use skiff_api::metrics::{cpu_quantity, go_duration, memory_quantity};

/// How long a node's summary is reused: below the agents' sampling interval, so that
/// every new sample is seen, while a burst of requests (`kubectl top`, each HPA) costs
/// one scrape per node.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(5);

/// The last summary fetched from each node.
#[derive(Default)]
pub(crate) struct Cache {
    by_node: Mutex<HashMap<String, (Instant, Value)>>,
}

impl Cache {
    /// The node's summary if fetched less than [`CACHE_TTL`] ago.
    pub fn get(&self, node: &str) -> Option<Value> {
        let m = self.by_node.lock().unwrap_or_else(|e| e.into_inner());
        m.get(node)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, v)| v.clone())
    }

    /// Remembers a node's summary (and forgets stale ones).
    pub fn put(&self, node: &str, summary: Value) {
        let mut m = self.by_node.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        m.insert(node.to_string(), (Instant::now(), summary));
    }
}

/// `cpu` and `memory` usage of a summary's CPU and memory stats; None without a rate.
fn usage(stats: &Value) -> Option<(Map<String, Value>, String)> {
    let nano = stats.pointer("/cpu/usageNanoCores")?.as_u64()?;
    let mem = stats
        .pointer("/memory/workingSetBytes")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let time = stats.pointer("/cpu/time")?.as_str()?.to_string();
    let mut u = Map::new();
    u.insert("cpu".into(), json!(cpu_quantity(nano)));
    u.insert("memory".into(), json!(memory_quantity(mem)));
    Some((u, time))
}

fn meta(obj: &Value, now: &str) -> Value {
    let mut m = json!({"name": obj.pointer("/metadata/name").cloned().unwrap_or(json!(""))});
    if let Some(ns) = obj.pointer("/metadata/namespace") {
        m["namespace"] = ns.clone();
    }
    m["creationTimestamp"] = json!(now);
    if let Some(l) = obj.pointer("/metadata/labels") {
        m["labels"] = l.clone();
    }
    m
}

/// The NodeMetrics of `node` (the stored Node) from its summary, at `now` (RFC 3339).
pub(crate) fn node_metrics(node: &Value, summary: &Value, now: &str) -> Option<Value> {
    let (usage, time) = usage(summary.get("node")?)?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta(node, now),
        "timestamp": time,
        "window": go_duration(METRICS_WINDOW),
        "usage": usage,
    }))
}

/// The PodMetrics of `pod` (the stored Pod) from its node's summary: every running
/// container's usage, in the pod's container order; None unless each has a rate.
pub(crate) fn pod_metrics(pod: &Value, summary: &Value, now: &str) -> Option<Value> {
    let ns = pod.pointer("/metadata/namespace")?.as_str()?;
    let name = pod.pointer("/metadata/name")?.as_str()?;
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str);
    let stats = summary.get("pods")?.as_array()?.iter().find(|p| {
        p.pointer("/podRef/namespace").and_then(Value::as_str) == Some(ns)
            && p.pointer("/podRef/name").and_then(Value::as_str) == Some(name)
            && (uid.is_none() || p.pointer("/podRef/uid").and_then(Value::as_str) == uid)
    })?;
    let order: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c.get("name")?.as_str()).collect())
        .unwrap_or_default();
    let mut containers: Vec<(usize, Value)> = Vec::new();
    let mut latest = String::new();
    for c in stats.get("containers")?.as_array()? {
        let cname = c.get("name")?.as_str()?;
        let (usage, time) = usage(c)?;
        latest = latest.max(time);
        let at = order.iter().position(|n| *n == cname).unwrap_or(usize::MAX);
        containers.push((at, json!({"name": cname, "usage": usage})));
    }
    if containers.is_empty() {
        return None;
    }
    containers.sort_by_key(|(at, _)| *at);
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta(pod, now),
        "timestamp": latest,
        "window": go_duration(METRICS_WINDOW),
        "containers": containers.into_iter().map(|(_, c)| c).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Value {
        json!({
            "node": {"nodeName": "n1",
                     "cpu": {"time": "2026-01-01T00:00:10Z", "usageNanoCores": 250_000_000u64,
                             "usageCoreNanoSeconds": 9u64},
                     "memory": {"time": "2026-01-01T00:00:10Z", "workingSetBytes": 2_097_152u64}},
            "pods": [
                {"podRef": {"name": "p", "namespace": "ns", "uid": "u1"},
                 "containers": [
                    {"name": "side", "cpu": {"time": "2026-01-01T00:00:10Z", "usageNanoCores": 1234u64},
                     "memory": {"workingSetBytes": 4096u64}},
                    {"name": "main", "cpu": {"time": "2026-01-01T00:00:10Z", "usageNanoCores": 500_000_000u64},
                     "memory": {"workingSetBytes": 1_000_000u64}}]},
                {"podRef": {"name": "new", "namespace": "ns", "uid": "u2"},
                 "containers": [{"name": "c", "cpu": {"time": "2026-01-01T00:00:10Z",
                                                      "usageCoreNanoSeconds": 5u64}}]}
            ]
        })
    }

    #[test]
    fn node_metrics_as_metrics_server_writes_them() {
        let node = json!({"metadata": {"name": "n1", "labels": {"a": "b"}, "uid": "x"}});
        let m = node_metrics(&node, &summary(), "2026-01-01T00:00:11Z").expect("metrics");
        assert_eq!(
            m,
            json!({"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                   "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:11Z",
                                "labels": {"a": "b"}},
                   "timestamp": "2026-01-01T00:00:10Z", "window": "10s",
                   "usage": {"cpu": "250m", "memory": "2Mi"}})
        );
        assert_eq!(node_metrics(&node, &json!({"node": {}}), "t"), None);
    }

    #[test]
    fn pod_metrics_in_container_order_and_only_with_rates() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
                         "spec": {"containers": [{"name": "main"}, {"name": "side"}]}});
        let m = pod_metrics(&pod, &summary(), "2026-01-01T00:00:11Z").expect("metrics");
        assert_eq!(m["metadata"]["namespace"], "ns");
        assert_eq!(m["window"], "10s");
        assert_eq!(
            m["containers"],
            json!([{"name": "main", "usage": {"cpu": "500m", "memory": "1000000"}},
                   {"name": "side", "usage": {"cpu": "1234n", "memory": "4Ki"}}])
        );
        // Another pod of that name (a different uid) has none.
        let other = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u9"}});
        assert_eq!(pod_metrics(&other, &summary(), "t"), None);
        // Its first sample: no rate yet.
        let new = json!({"metadata": {"name": "new", "namespace": "ns", "uid": "u2"}});
        assert_eq!(pod_metrics(&new, &summary(), "t"), None);
    }
}
