//! The `metrics.k8s.io/v1beta1` types (metrics-server's `NodeMetrics` and `PodMetrics`,
//! which `k8s-openapi` lacks), for the API server's schemas and for clients such as
//! the HorizontalPodAutoscaler controller. Usage maps are resource name → quantity
//! (`cpu` in nanocores, `memory` in Ki, as metrics-server writes them).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "metrics.k8s.io";
/// The served version.
pub const VERSION: &str = "v1beta1";

/// A node's resource usage over `window` ending at `timestamp`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics")]
pub struct NodeMetrics {
    /// `metrics.k8s.io/v1beta1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `NodeMetrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The node's name and labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The end of the window the usage was measured over.
    pub timestamp: Time,
    /// The length of that window (a Go duration: `10s`).
    pub window: String,
    /// Resource name (`cpu`, `memory`) → usage.
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// A pod's resource usage, per container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics")]
pub struct PodMetrics {
    /// `metrics.k8s.io/v1beta1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `PodMetrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The pod's name, namespace and labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The end of the window the usage was measured over.
    pub timestamp: Time,
    /// The length of that window (a Go duration: `10s`).
    pub window: String,
    /// Usage of each running container.
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// One container's usage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.ContainerMetrics")]
pub struct ContainerMetrics {
    /// The container's name.
    pub name: String,
    /// Resource name (`cpu`, `memory`) → usage.
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// A CPU usage in nanocores as metrics-server writes it (`resource.NewScaledQuantity(n,
/// -9)` in canonical form): `137055733n`, or the largest exact suffix (`250m`, `2`).
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    let mut n = nanocores;
    for suffix in ["n", "u", "m"] {
        if !n.is_multiple_of(1000) {
            return format!("{n}{suffix}");
        }
        n /= 1000;
    }
    n.to_string()
}

/// A memory size in bytes as metrics-server writes it (a `BinarySI` quantity in
/// canonical form): `1652024Ki`, or the largest exact binary suffix, or plain bytes.
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let mut n = bytes;
    let mut suffix = "";
    for s in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if !n.is_multiple_of(1024) {
            break;
        }
        n /= 1024;
        suffix = s;
    }
    format!("{n}{suffix}")
}

/// Go's `time.Duration.String()` of a whole number of milliseconds (`10s`, `1.5s`,
/// `2m30s`), as `window` is written.
pub fn go_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn windows_are_written_as_go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(10_025)), "10.025s");
        assert_eq!(go_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn quantities_in_canonical_form() {
        assert_eq!(cpu_quantity(137_055_733), "137055733n");
        assert_eq!(cpu_quantity(137_055_000), "137055u");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(memory_quantity(1_691_672_576), "1652024Ki");
        assert_eq!(memory_quantity(3 * 1024 * 1024), "3Mi");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(memory_quantity(0), "0");
    }

    #[test]
    fn metrics_server_objects_decode() {
        let pod: PodMetrics = serde_json::from_value(serde_json::json!({
            "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": "p", "namespace": "default"},
            "timestamp": "2026-01-01T00:00:00Z", "window": "10s",
            "containers": [{"name": "c", "usage": {"cpu": "1234n", "memory": "100Ki"}}]
        }))
        .expect("decodes");
        assert_eq!(pod.containers[0].usage["cpu"].0, "1234n");
    }
}
