//! Resource quantities (`100m`, `128Mi`, `1e3`...) and a pod's requests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use skiff_api::quantity::parse as parse_quantity;

/// Amounts of resources by name, in milli-units for cpu and plain units otherwise.
pub type Resources = BTreeMap<String, i64>;

fn to_units(name: &str, q: &Quantity) -> i64 {
    let v = parse_quantity(&q.0).unwrap_or(0.0);
    if name == "cpu" {
        (v * 1000.0).ceil() as i64
    } else {
        v.ceil() as i64
    }
}

/// Converts a resource list.
pub fn resource_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
    list.map(|l| l.iter().map(|(k, v)| (k.clone(), to_units(k, v))).collect())
        .unwrap_or_default()
}

fn container_requests(c: &Container) -> Resources {
    resource_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// The pod's effective requests: the larger of the sum over containers and each init
/// container, plus overhead (resourcehelper.PodRequests).
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::new();
    };
    let mut total = Resources::new();
    for c in &spec.containers {
        for (k, v) in container_requests(c) {
            *total.entry(k).or_insert(0) += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in container_requests(c) {
            let e = total.entry(k).or_insert(0);
            *e = (*e).max(v);
        }
    }
    for (k, v) in resource_list(spec.overhead.as_ref()) {
        *total.entry(k).or_insert(0) += v;
    }
    total
}

/// Requests used for scoring: cpu 100m and memory 200Mi stand in for unset ones, so that
/// pods without requests still spread (schedutil.GetNonzeroRequests).
pub fn nonzero_requests(pod: &Pod) -> (i64, i64) {
    let Some(spec) = pod.spec.as_ref() else {
        return (0, 0);
    };
    let mut cpu = 0;
    let mut mem = 0;
    for c in &spec.containers {
        let r = container_requests(c);
        cpu += r.get("cpu").copied().filter(|v| *v > 0).unwrap_or(100);
        mem += r
            .get("memory")
            .copied()
            .filter(|v| *v > 0)
            .unwrap_or(200 * 1024 * 1024);
    }
    (cpu, mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("128Mi"), Some(134217728.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("1.5Gi"), Some(1.5 * 1073741824.0));
        assert_eq!(parse_quantity("x"), None);
    }

    #[test]
    fn requests_take_init_containers_and_overhead() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "200m"}}}
                ],
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "500m"}}}],
                "overhead": {"cpu": "10m"}
            }
        }))
        .expect("pod");
        let r = pod_requests(&pod);
        assert_eq!(r.get("cpu"), Some(&510));
        assert_eq!(r.get("memory"), Some(&(64 * 1024 * 1024)));
        assert_eq!(
            nonzero_requests(&pod),
            (300, 64 * 1024 * 1024 + 200 * 1024 * 1024)
        );
    }
}
