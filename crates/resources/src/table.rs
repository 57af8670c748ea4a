//! Server-side printing: `meta.k8s.io/v1` Tables, column for column as kube-apiserver's
//! printers (`pkg/printers/internalversion/printers.go`). Like kube-apiserver, cells
//! are always generated for every column (the "wide" set); kubectl hides the columns
//! with priority > 0 unless `-o wide`.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::duration::human_duration;
use crate::registry::ResourceInfo;
use crate::schema;

/// What each Table row carries in its `object` field (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// The object's metadata as `PartialObjectMetadata` (kubectl's default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter (`None`, `Metadata`, `Object`);
    /// anything else is kube-apiserver's default, `Metadata`.
    pub fn from_query(s: &str) -> IncludeObject {
        match s {
            "None" => IncludeObject::None,
            "Object" => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// One column definition.
struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: i32,
    description: String,
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The description of a field from the OpenAPI schemas (what Go's `SwaggerDoc()` returns).
fn doc(schema_name: &str, field: &str) -> String {
    schema::schemas()
        .components
        .get(schema_name)
        .and_then(|s| s.pointer(&format!("/properties/{field}/description")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn name_col() -> Col {
    Col {
        name: "Name",
        ty: "string",
        format: "name",
        priority: 0,
        description: doc(META, "name"),
    }
}
fn age_col() -> Col {
    Col {
        name: "Age",
        ty: "string",
        format: "",
        priority: 0,
        description: doc(META, "creationTimestamp"),
    }
}
fn col(name: &'static str, ty: &'static str, priority: i32, description: impl Into<String>) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority,
        description: description.into(),
    }
}
fn containers_col() -> Col {
    col(
        "Containers",
        "string",
        1,
        "Names of each container in the template.",
    )
}
fn images_col() -> Col {
    col(
        "Images",
        "string",
        1,
        "Images referenced by each container in the template.",
    )
}

/// Core v1 schema name.
fn core(t: &str) -> String {
    format!("io.k8s.api.core.v1.{t}")
}
fn apps(t: &str) -> String {
    format!("io.k8s.api.apps.v1.{t}")
}

/// Column definitions of a kind, or the default table's (Name, Created At).
fn columns(group: &str, kind: &str) -> Vec<Col> {
    match (group, kind) {
        ("", "Pod") => vec![
            name_col(),
            col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            age_col(),
            col("IP", "string", 1, doc(&core("PodStatus"), "podIP")),
            col("Node", "string", 1, doc(&core("PodSpec"), "nodeName")),
            col("Nominated Node", "string", 1, doc(&core("PodStatus"), "nominatedNodeName")),
            col("Readiness Gates", "string", 1, doc(&core("PodSpec"), "readinessGates")),
        ],
        ("", "PodTemplate") => vec![
            name_col(),
            col("Containers", "string", 0, "Names of each container in the template."),
            col("Images", "string", 0, "Images referenced by each container in the template."),
            col("Pod Labels", "string", 0, "The labels for the pod template."),
        ],
        ("", "ReplicationController") => vec![
            name_col(),
            col("Desired", "integer", 0, doc(&core("ReplicationControllerSpec"), "replicas")),
            col("Current", "integer", 0, doc(&core("ReplicationControllerStatus"), "replicas")),
            col("Ready", "integer", 0, doc(&core("ReplicationControllerStatus"), "readyReplicas")),
            age_col(),
            containers_col(),
            images_col(),
            col("Selector", "string", 1, doc(&core("ReplicationControllerSpec"), "selector")),
        ],
        ("apps", "ReplicaSet") => vec![
            name_col(),
            col("Desired", "integer", 0, doc(&apps("ReplicaSetSpec"), "replicas")),
            col("Current", "integer", 0, doc(&apps("ReplicaSetStatus"), "replicas")),
            col("Ready", "integer", 0, doc(&apps("ReplicaSetStatus"), "readyReplicas")),
            age_col(),
            containers_col(),
            images_col(),
            col("Selector", "string", 1, doc(&apps("ReplicaSetSpec"), "selector")),
        ],
        ("apps", "Deployment") => vec![
            name_col(),
            col("Ready", "string", 0, "Number of the pod with ready state"),
            col("Up-to-date", "string", 0, doc(&apps("DeploymentStatus"), "updatedReplicas")),
            col("Available", "string", 0, doc(&apps("DeploymentStatus"), "availableReplicas")),
            age_col(),
            containers_col(),
            images_col(),
            col("Selector", "string", 1, doc(&apps("DeploymentSpec"), "selector")),
        ],
        ("apps", "DaemonSet") => vec![
            name_col(),
            col("Desired", "integer", 0, doc(&apps("DaemonSetStatus"), "desiredNumberScheduled")),
            col("Current", "integer", 0, doc(&apps("DaemonSetStatus"), "currentNumberScheduled")),
            col("Ready", "integer", 0, doc(&apps("DaemonSetStatus"), "numberReady")),
            col("Up-to-date", "integer", 0, doc(&apps("DaemonSetStatus"), "updatedNumberScheduled")),
            col("Available", "integer", 0, doc(&apps("DaemonSetStatus"), "numberAvailable")),
            col("Node Selector", "string", 0, doc(&core("PodSpec"), "nodeSelector")),
            age_col(),
            containers_col(),
            images_col(),
            col("Selector", "string", 1, doc(&apps("DaemonSetSpec"), "selector")),
        ],
        ("apps", "StatefulSet") => vec![
            name_col(),
            col("Ready", "string", 0, "Number of the pod with ready state"),
            age_col(),
            containers_col(),
            images_col(),
        ],
        ("apps", "ControllerRevision") => vec![
            name_col(),
            col("Controller", "string", 0, "Controller of the object"),
            col("Revision", "string", 0, doc(&apps("ControllerRevision"), "revision")),
            age_col(),
        ],
        ("batch", "Job") => vec![
            name_col(),
            col("Status", "string", 0, "Status of the job."),
            col("Completions", "string", 0, doc("io.k8s.api.batch.v1.JobStatus", "succeeded")),
            col("Duration", "string", 0, "Time required to complete the job."),
            age_col(),
            containers_col(),
            images_col(),
            col("Selector", "string", 1, doc("io.k8s.api.batch.v1.JobSpec", "selector")),
        ],
        ("batch", "CronJob") => vec![
            name_col(),
            col("Schedule", "string", 0, doc("io.k8s.api.batch.v1.CronJobSpec", "schedule")),
            col("Timezone", "string", 0, doc("io.k8s.api.batch.v1.CronJobSpec", "timeZone")),
            col("Suspend", "boolean", 0, doc("io.k8s.api.batch.v1.CronJobSpec", "suspend")),
            col("Active", "integer", 0, doc("io.k8s.api.batch.v1.CronJobStatus", "active")),
            col("Last Schedule", "string", 0, doc("io.k8s.api.batch.v1.CronJobStatus", "lastScheduleTime")),
            age_col(),
            containers_col(),
            images_col(),
            col("Selector", "string", 1, doc("io.k8s.api.batch.v1.JobSpec", "selector")),
        ],
        ("", "Service") => vec![
            name_col(),
            col("Type", "string", 0, doc(&core("ServiceSpec"), "type")),
            col("Cluster-IP", "string", 0, doc(&core("ServiceSpec"), "clusterIP")),
            col("External-IP", "string", 0, doc(&core("ServiceSpec"), "externalIPs")),
            col("Port(s)", "string", 0, doc(&core("ServiceSpec"), "ports")),
            age_col(),
            col("Selector", "string", 1, doc(&core("ServiceSpec"), "selector")),
        ],
        ("", "Endpoints") => vec![
            name_col(),
            col("Endpoints", "string", 0, doc(&core("Endpoints"), "subsets")),
            age_col(),
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            name_col(),
            col("AddressType", "string", 0, doc("io.k8s.api.discovery.v1.EndpointSlice", "addressType")),
            col("Ports", "string", 0, doc("io.k8s.api.discovery.v1.EndpointSlice", "ports")),
            col("Endpoints", "string", 0, doc("io.k8s.api.discovery.v1.EndpointSlice", "endpoints")),
            age_col(),
        ],
        ("", "Node") => vec![
            name_col(),
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            age_col(),
            col("Version", "string", 0, doc(&core("NodeSystemInfo"), "kubeletVersion")),
            col("Internal-IP", "string", 1, doc(&core("NodeStatus"), "addresses")),
            col("External-IP", "string", 1, doc(&core("NodeStatus"), "addresses")),
            col("OS-Image", "string", 1, doc(&core("NodeSystemInfo"), "osImage")),
            col("Kernel-Version", "string", 1, doc(&core("NodeSystemInfo"), "kernelVersion")),
            col("Container-Runtime", "string", 1, doc(&core("NodeSystemInfo"), "containerRuntimeVersion")),
        ],
        ("", "Event") | ("events.k8s.io", "Event") => {
            let ev = core("Event");
            vec![
                col("Last Seen", "string", 0, doc(&ev, "lastTimestamp")),
                col("Type", "string", 0, doc(&ev, "type")),
                col("Reason", "string", 0, doc(&ev, "reason")),
                col("Object", "string", 0, doc(&ev, "involvedObject")),
                col("Subobject", "string", 1, doc(&core("ObjectReference"), "fieldPath")),
                col("Source", "string", 1, doc(&ev, "source")),
                col("Message", "string", 0, doc(&ev, "message")),
                col("First Seen", "string", 1, doc(&ev, "firstTimestamp")),
                col("Count", "string", 1, doc(&ev, "count")),
                Col { name: "Name", ty: "string", format: "name", priority: 1, description: doc(META, "name") },
            ]
        }
        ("", "Namespace") => vec![
            name_col(),
            col("Status", "string", 0, "The status of the namespace"),
            age_col(),
        ],
        ("", "Secret") => vec![
            name_col(),
            col("Type", "string", 0, doc(&core("Secret"), "type")),
            col("Data", "string", 0, doc(&core("Secret"), "data")),
            age_col(),
        ],
        ("", "ServiceAccount") => vec![
            name_col(),
            col("Secrets", "string", 0, doc(&core("ServiceAccount"), "secrets")),
            age_col(),
        ],
        ("", "ConfigMap") => vec![
            name_col(),
            col("Data", "string", 0, doc(&core("ConfigMap"), "data")),
            age_col(),
        ],
        ("", "ComponentStatus") => vec![
            name_col(),
            col("Status", "string", 0, "Status of the component conditions"),
            col("Message", "string", 0, "Message of the component conditions"),
            col("Error", "string", 0, "Error of the component conditions"),
        ],
        ("", "ResourceQuota") => vec![
            name_col(),
            age_col(),
            col("Request", "string", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
            col("Limit", "string", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        ],
        ("coordination.k8s.io", "Lease") => vec![
            name_col(),
            col("Holder", "string", 0, doc("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")),
            age_col(),
        ],
        ("networking.k8s.io", "NetworkPolicy") => vec![
            name_col(),
            col("Pod-Selector", "string", 0, doc("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector")),
            age_col(),
        ],
        ("networking.k8s.io", "Ingress") => vec![
            name_col(),
            col("Class", "string", 0, "The name of the IngressClass resource that should be used for additional configuration"),
            col("Hosts", "string", 0, "Hosts that incoming requests are matched against before the ingress rule"),
            col("Address", "string", 0, "Address is a list containing ingress points for the load-balancer"),
            col("Ports", "string", 0, "Ports of TLS configurations that open"),
            age_col(),
        ],
        ("policy", "PodDisruptionBudget") => vec![
            name_col(),
            col("Min Available", "string", 0, "The minimum number of pods that must be available."),
            col("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable."),
            col("Allowed Disruptions", "integer", 0, "Calculated number of pods that may be disrupted at this time."),
            age_col(),
        ],
        ("networking.k8s.io", "IngressClass") => vec![
            name_col(),
            col("Controller", "string", 0, "Controller that is responsible for handling this class"),
            col("Parameters", "string", 0, "A reference to a resource with additional parameters"),
            age_col(),
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let which = if kind == "RoleBinding" { "roleBinding" } else { "clusterRoleBinding" };
            vec![
                name_col(),
                col("Role", "string", 0, doc(&format!("io.k8s.api.rbac.v1.{kind}"), "roleRef")),
                age_col(),
                col("Users", "string", 1, format!("Users in the {which}")),
                col("Groups", "string", 1, format!("Groups in the {which}")),
                col("ServiceAccounts", "string", 1, format!("ServiceAccounts in the {which}")),
            ]
        }
        _ => vec![
            name_col(),
            Col { name: "Created At", ty: "date", format: "", priority: 0, description: doc(META, "creationTimestamp") },
        ],
    }
}

/// Renders `objects` (all of `info`'s kind) as a `meta.k8s.io/v1` Table. The caller sets
/// list metadata (`resourceVersion`, `continue`); `now` is the reference for ages.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let cols: Vec<Value> = columns(info.group, info.kind)
        .into_iter()
        .map(|c| {
            json!({"name": c.name, "type": c.ty, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let (cells, conditions) = cells(info, o, now);
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(c) = conditions {
                row.insert("conditions".into(), c);
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({}))}),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".into(), o.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
           "columnDefinitions": cols, "rows": rows})
}

// ---- value access helpers -------------------------------------------------------------

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}
fn i(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}
fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}
fn obj<'a>(v: &'a Value, ptr: &str) -> Option<&'a Map<String, Value>> {
    v.pointer(ptr).and_then(Value::as_object)
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// `translateTimestampSince`: `<unknown>` for a missing timestamp.
fn since(t: &str, now: DateTime<Utc>) -> String {
    match parse_time(t) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

fn age(o: &Value, now: DateTime<Utc>) -> Value {
    json!(since(s(o, "/metadata/creationTimestamp"), now))
}

fn name(o: &Value) -> Value {
    json!(s(o, "/metadata/name"))
}

/// `labels.FormatLabels`: sorted `k=v` pairs, `<none>` when empty.
pub fn format_labels(m: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = m
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// A label selector's string form (`labels.Selector.String()`): requirements sorted by
/// key; `""` for an empty or missing selector.
pub fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = s(e, "/key").to_string();
        let mut vals: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        vals.sort();
        let text = match s(e, "/operator") {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", vals.join(",")),
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|r| r.1).collect::<Vec<_>>().join(",")
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when empty.
fn format_label_selector(sel: Option<&Value>) -> String {
    let s = selector_string(sel);
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

/// `layoutContainerCells`: container names and images joined by commas.
fn container_cells(spec: &Value, ptr: &str) -> (Value, Value) {
    let cs = arr(spec, ptr);
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

// ---- per-kind cells ---------------------------------------------------------------

fn cells(info: &ResourceInfo, o: &Value, now: DateTime<Utc>) -> (Vec<Value>, Option<Value>) {
    let c = match (info.group, info.kind) {
        ("", "Pod") => return pod_cells(o, now),
        ("", "PodTemplate") => {
            let (n, im) = container_cells(o, "/template/spec/containers");
            vec![
                name(o),
                n,
                im,
                json!(format_labels(obj(o, "/template/metadata/labels"))),
            ]
        }
        ("", "ReplicationController") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
                age(o, now),
                n,
                im,
                json!(format_labels(obj(o, "/spec/selector"))),
            ]
        }
        ("apps", "ReplicaSet") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
                age(o, now),
                n,
                im,
                json!(format_label_selector(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "Deployment") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(format!(
                    "{}/{}",
                    i(o, "/status/readyReplicas"),
                    i(o, "/spec/replicas")
                )),
                json!(i(o, "/status/updatedReplicas")),
                json!(i(o, "/status/availableReplicas")),
                age(o, now),
                n,
                im,
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "DaemonSet") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(i(o, "/status/desiredNumberScheduled")),
                json!(i(o, "/status/currentNumberScheduled")),
                json!(i(o, "/status/numberReady")),
                json!(i(o, "/status/updatedNumberScheduled")),
                json!(i(o, "/status/numberAvailable")),
                json!(format_labels(obj(o, "/spec/template/spec/nodeSelector"))),
                age(o, now),
                n,
                im,
                json!(format_label_selector(o.pointer("/spec/selector"))),
            ]
        }
        ("apps", "StatefulSet") => {
            let (n, im) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                json!(format!(
                    "{}/{}",
                    i(o, "/status/readyReplicas"),
                    i(o, "/spec/replicas")
                )),
                age(o, now),
                n,
                im,
            ]
        }
        ("apps", "ControllerRevision") => {
            let controller = arr(o, "/metadata/ownerReferences")
                .iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|r| {
                    let (group, _) = crate::registry::split_api_version(s(r, "/apiVersion"));
                    let gk = if group.is_empty() {
                        s(r, "/kind").to_lowercase()
                    } else {
                        format!("{}.{group}", s(r, "/kind").to_lowercase())
                    };
                    format!("{gk}/{}", s(r, "/name"))
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name(o),
                json!(controller),
                json!(i(o, "/revision")),
                age(o, now),
            ]
        }
        ("batch", "Job") => job_cells(o, now),
        ("batch", "CronJob") => {
            let (n, im) = container_cells(o, "/spec/jobTemplate/spec/template/spec/containers");
            let last = match o
                .pointer("/status/lastScheduleTime")
                .and_then(Value::as_str)
            {
                Some(t) => since(t, now),
                None => "<none>".into(),
            };
            let tz = match s(o, "/spec/timeZone") {
                "" => "<none>",
                t => t,
            };
            let suspend = o.pointer("/spec/suspend").and_then(Value::as_bool);
            vec![
                name(o),
                json!(s(o, "/spec/schedule")),
                json!(tz),
                json!(match suspend {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                }),
                json!(arr(o, "/status/active").len()),
                json!(last),
                age(o, now),
                n,
                im,
                json!(format_label_selector(
                    o.pointer("/spec/jobTemplate/spec/selector")
                )),
            ]
        }
        ("", "Service") => service_cells(o, now),
        ("", "Endpoints") => vec![name(o), json!(format_endpoints(o)), age(o, now)],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = arr(o, "/ports")
                .iter()
                .map(|p| match p.get("port").and_then(Value::as_i64) {
                    Some(n) => n.to_string(),
                    None => match p.get("name").and_then(Value::as_str) {
                        Some(n) => n.to_string(),
                        None => "*".into(),
                    },
                })
                .collect();
            let addrs: Vec<String> = arr(o, "/endpoints")
                .iter()
                .flat_map(|e| {
                    arr(e, "/addresses")
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            vec![
                name(o),
                json!(s(o, "/addressType")),
                json!(list_with_more(&ports, 3)),
                json!(list_with_more(&addrs, 3)),
                age(o, now),
            ]
        }
        ("", "Node") => node_cells(o, now),
        ("", "Event") => event_cells(o, now, false),
        ("events.k8s.io", "Event") => event_cells(o, now, true),
        ("", "Namespace") => vec![name(o), json!(s(o, "/status/phase")), age(o, now)],
        ("", "Secret") => {
            let n = obj(o, "/data").map(Map::len).unwrap_or(0);
            vec![name(o), json!(s(o, "/type")), json!(n), age(o, now)]
        }
        ("", "ServiceAccount") => vec![name(o), json!(arr(o, "/secrets").len()), age(o, now)],
        ("", "ConfigMap") => {
            let n = obj(o, "/data").map(Map::len).unwrap_or(0)
                + obj(o, "/binaryData").map(Map::len).unwrap_or(0);
            vec![name(o), json!(n), age(o, now)]
        }
        ("", "ComponentStatus") => {
            let mut status = "Unknown".to_string();
            let mut message = String::new();
            let mut error = String::new();
            if let Some(c) = arr(o, "/conditions")
                .iter()
                .find(|c| s(c, "/type") == "Healthy")
            {
                status = if s(c, "/status") == "True" {
                    "Healthy"
                } else {
                    "Unhealthy"
                }
                .into();
                message = s(c, "/message").into();
                error = s(c, "/error").into();
            }
            vec![name(o), json!(status), json!(message), json!(error)]
        }
        ("", "ResourceQuota") => {
            let fmt_pairs = |ptr_hard: &str, ptr_used: &str, want_requests: bool| -> String {
                let hard = obj(o, ptr_hard);
                let mut keys: Vec<&String> = hard.map(|h| h.keys().collect()).unwrap_or_default();
                keys.sort();
                keys.into_iter()
                    .filter(|k| k.starts_with("limits.") != want_requests)
                    .map(|k| {
                        let used = o
                            .pointer(&format!("{ptr_used}/{k}"))
                            .and_then(Value::as_str)
                            .unwrap_or("0");
                        let h = hard
                            .and_then(|h| h.get(k.as_str()))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        format!("{k}: {used}/{h}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name(o),
                age(o, now),
                json!(fmt_pairs("/status/hard", "/status/used", true)),
                json!(fmt_pairs("/status/hard", "/status/used", false)),
            ]
        }
        ("coordination.k8s.io", "Lease") => {
            vec![name(o), json!(s(o, "/spec/holderIdentity")), age(o, now)]
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            vec![
                name(o),
                json!(format_label_selector(o.pointer("/spec/podSelector"))),
                age(o, now),
            ]
        }
        ("networking.k8s.io", "Ingress") => {
            let class = match s(o, "/spec/ingressClassName") {
                "" => "<none>",
                c => c,
            };
            let rules = arr(o, "/spec/rules");
            let hosts: Vec<String> = rules
                .iter()
                .take(3)
                .map(|r| s(r, "/host").to_string())
                .filter(|h| !h.is_empty())
                .collect();
            let hosts = if hosts.is_empty() {
                "*".to_string()
            } else if rules.len() > 3 {
                format!("{} + {} more...", hosts.join(","), rules.len() - 3)
            } else {
                hosts.join(",")
            };
            let mut addrs: Vec<String> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    if s(i, "/ip").is_empty() {
                        s(i, "/hostname").to_string()
                    } else {
                        s(i, "/ip").to_string()
                    }
                })
                .filter(|a| !a.is_empty())
                .collect();
            addrs.sort();
            addrs.dedup();
            let ports = if arr(o, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name(o),
                json!(class),
                json!(hosts),
                json!(addrs.join(",")),
                json!(ports),
                age(o, now),
            ]
        }
        ("policy", "PodDisruptionBudget") => {
            let fmt = |p: &str| match o.pointer(p) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "N/A".into(),
            };
            vec![
                name(o),
                json!(fmt("/spec/minAvailable")),
                json!(fmt("/spec/maxUnavailable")),
                json!(i(o, "/status/disruptionsAllowed")),
                age(o, now),
            ]
        }
        ("networking.k8s.io", "IngressClass") => {
            let params = match o.pointer("/spec/parameters").filter(|p| p.is_object()) {
                Some(p) => {
                    let kind = match s(p, "/apiGroup") {
                        "" => s(p, "/kind").to_string(),
                        g => format!("{}.{g}", s(p, "/kind")),
                    };
                    format!("{kind}/{}", s(p, "/name"))
                }
                None => "<none>".into(),
            };
            vec![
                name(o),
                json!(s(o, "/spec/controller")),
                json!(params),
                age(o, now),
            ]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let mut users = Vec::new();
            let mut groups = Vec::new();
            let mut sas = Vec::new();
            for sub in arr(o, "/subjects") {
                match s(sub, "/kind") {
                    "User" => users.push(s(sub, "/name").to_string()),
                    "Group" => groups.push(s(sub, "/name").to_string()),
                    "ServiceAccount" => {
                        sas.push(format!("{}/{}", s(sub, "/namespace"), s(sub, "/name")))
                    }
                    _ => {}
                }
            }
            vec![
                name(o),
                json!(format!(
                    "{}/{}",
                    s(o, "/roleRef/kind"),
                    s(o, "/roleRef/name")
                )),
                age(o, now),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        _ => vec![name(o), json!(s(o, "/metadata/creationTimestamp"))],
    };
    (c, None)
}

/// `listWithMoreString`: the first `max` items, `+ N more...`, `<unset>` when empty.
fn list_with_more(items: &[String], max: usize) -> String {
    let shown: Vec<&str> = items.iter().take(max).map(String::as_str).collect();
    let ret = shown.join(",");
    if items.len() > max {
        return format!("{ret} + {} more...", items.len() - max);
    }
    if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}

/// `formatEndpoints`: up to three `ip:port` pairs, then `+ N more...`; `<none>` when empty.
pub fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addrs = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            for a in addrs {
                if list.len() < max {
                    list.push(s(a, "/ip").to_string());
                }
                count += 1;
            }
        } else {
            for p in ports {
                for a in addrs {
                    if list.len() < max {
                        list.push(join_host_port(s(a, "/ip"), i(p, "/port")));
                    }
                    count += 1;
                }
            }
        }
    }
    let ret = list.join(",");
    if count > max {
        format!("{ret} + {} more...", count - max)
    } else {
        ret
    }
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> (Vec<Value>, Option<Value>) {
    let init_specs = arr(pod, "/spec/initContainers");
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
    };
    let mut total = arr(pod, "/spec/containers").len();
    total += init_specs
        .iter()
        .filter(|c| s(c, "/restartPolicy") == "Always")
        .count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let phase = s(pod, "/status/phase");
    let mut reason = phase.to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    let conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                                     "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed",
                                  "message": "The pod failed."}]),
        ),
        _ => None,
    };
    for c in arr(pod, "/status/conditions") {
        if s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }
    let mut note_restart = |cs: &Value| {
        if let Some(t) = cs
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(parse_time)
        {
            if last_restart.is_none_or(|l| l < t) {
                last_restart = Some(t);
            }
        }
    };
    let mut initializing = false;
    let init_statuses = arr(pod, "/status/initContainerStatuses");
    for (idx, cs) in init_statuses.iter().enumerate() {
        restarts += i(cs, "/restartCount");
        note_restart(cs);
        let name = s(cs, "/name");
        if is_sidecar(name) && cs.get("started").and_then(Value::as_bool) == Some(true) {
            if cs.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        let term = cs.pointer("/state/terminated");
        let waiting_reason = s(cs, "/state/waiting/reason");
        if let Some(t) = term {
            if i(t, "/exitCode") == 0 {
                continue;
            }
            let r = s(t, "/reason");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if i(t, "/signal") != 0 {
                format!("Init:Signal:{}", i(t, "/signal"))
            } else {
                format!("Init:ExitCode:{}", i(t, "/exitCode"))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{idx}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }
    let initialized = arr(pod, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True");
    if !initializing || initialized {
        restarts = init_statuses
            .iter()
            .filter(|cs| is_sidecar(s(cs, "/name")))
            .map(|cs| i(cs, "/restartCount"))
            .sum();
        let mut has_running = false;
        for cs in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += i(cs, "/restartCount");
            note_restart(cs);
            let waiting = s(cs, "/state/waiting/reason");
            let term = cs.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = term {
                let r = s(t, "/reason");
                reason = if !r.is_empty() {
                    r.to_string()
                } else if i(t, "/signal") != 0 {
                    format!("Signal:{}", i(t, "/signal"))
                } else {
                    format!("ExitCode:{}", i(t, "/exitCode"))
                };
            } else if cs.get("ready").and_then(Value::as_bool) == Some(true)
                && cs.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = arr(pod, "/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && s(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    let restarts_str = match last_restart {
        Some(t) => format!("{restarts} ({} ago)", human_duration(now - t)),
        None => restarts.to_string(),
    };
    let ip = arr(pod, "/status/podIPs")
        .first()
        .map(|p| s(p, "/ip").to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| Some(s(pod, "/status/podIP").to_string()).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "<none>".into());
    let none_if_empty = |v: &str| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.to_string()
        }
    };
    let gates = arr(pod, "/spec/readinessGates");
    let gates_str = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let t = gates
            .iter()
            .filter(|g| {
                arr(pod, "/status/conditions")
                    .iter()
                    .find(|c| s(c, "/type") == s(g, "/conditionType"))
                    .is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{t}/{}", gates.len())
    };
    let cells = vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        age(pod, now),
        json!(ip),
        json!(none_if_empty(s(pod, "/spec/nodeName"))),
        json!(none_if_empty(s(pod, "/status/nominatedNodeName"))),
        json!(gates_str),
    ];
    (cells, conditions)
}

fn job_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = i(o, "/status/succeeded");
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let par = i(o, "/spec/parallelism");
            if par > 1 {
                format!("{succeeded}/1 of {par}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = o
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(parse_time);
    let end = o
        .pointer("/status/completionTime")
        .and_then(Value::as_str)
        .and_then(parse_time);
    let dur = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(now - s),
        (Some(s), Some(e)) => human_duration(e - s),
    };
    let cond = |t: &str| {
        arr(o, "/status/conditions")
            .iter()
            .any(|c| s(c, "/type") == t && s(c, "/status") == "True")
    };
    let status = if cond("Failed") {
        "Failed"
    } else if cond("Complete") {
        "Complete"
    } else if cond("Suspended") {
        "Suspended"
    } else if cond("FailureTarget") {
        "FailureTarget"
    } else if cond("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        "Running"
    };
    let (n, im) = container_cells(o, "/spec/template/spec/containers");
    vec![
        name(o),
        json!(status),
        json!(completions),
        json!(dur),
        age(o, now),
        n,
        im,
        json!(format_label_selector(o.pointer("/spec/selector"))),
    ]
}

/// `makePortString`: `8080/TCP`, `8080:31688/TCP`, comma-joined; `<none>` when empty.
pub fn port_string(svc: &Value) -> String {
    let parts: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let port = i(p, "/port");
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            match i(p, "/nodePort") {
                0 => format!("{port}/{proto}"),
                np => format!("{port}:{np}/{proto}"),
            }
        })
        .collect();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn service_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ty = s(o, "/spec/type");
    let cluster_ip = arr(o, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .or_else(|| {
            o.pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("<none>");
    let external_ips: Vec<String> = arr(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" | "" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut lb: Vec<String> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    if s(i, "/ip").is_empty() {
                        s(i, "/hostname").to_string()
                    } else {
                        s(i, "/ip").to_string()
                    }
                })
                .filter(|a| !a.is_empty())
                .collect();
            lb.sort();
            lb.dedup();
            if !external_ips.is_empty() {
                lb.extend(external_ips);
                lb.join(",")
            } else if !lb.is_empty() {
                lb.join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => s(o, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    vec![
        name(o),
        json!(ty),
        json!(cluster_ip),
        json!(external),
        json!(port_string(o)),
        age(o, now),
        json!(format_labels(obj(o, "/spec/selector"))),
    ]
}

fn node_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = arr(o, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready")
    {
        status.push(if s(c, "/status") == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in obj(o, "/metadata/labels").into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" {
            if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                roles.push(v.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let addr = |t: &str| {
        arr(o, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == t)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name(o),
        json!(status.join(",")),
        json!(roles),
        age(o, now),
        json!(s(o, "/status/nodeInfo/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(unknown(s(o, "/status/nodeInfo/osImage"))),
        json!(unknown(s(o, "/status/nodeInfo/kernelVersion"))),
        json!(unknown(s(o, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

fn event_cells(o: &Value, now: DateTime<Utc>, new_api: bool) -> Vec<Value> {
    // events.k8s.io/v1 names the same facts differently.
    let (first_p, last_p, count_p, obj_p, msg_p, src_p) = if new_api {
        (
            "/deprecatedFirstTimestamp",
            "/deprecatedLastTimestamp",
            "/deprecatedCount",
            "/regarding",
            "/note",
            "/deprecatedSource",
        )
    } else {
        (
            "/firstTimestamp",
            "/lastTimestamp",
            "/count",
            "/involvedObject",
            "/message",
            "/source",
        )
    };
    let first = match parse_time(s(o, first_p)) {
        Some(t) => human_duration(now - t),
        None => since(s(o, "/eventTime"), now),
    };
    let mut last = match parse_time(s(o, last_p)) {
        Some(t) => human_duration(now - t),
        None => first.clone(),
    };
    let mut count = i(o, count_p);
    if let Some(series) = o.get("series").filter(|v| v.is_object()) {
        last = since(s(series, "/lastObservedTime"), now);
        count = i(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let involved = o.pointer(obj_p).cloned().unwrap_or(Value::Null);
    let kind = s(&involved, "/kind").to_lowercase();
    let target = match s(&involved, "/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = match s(o, &format!("{src_p}/component")) {
        "" => s(o, "/reportingController"),
        c => c,
    };
    let instance = match s(o, &format!("{src_p}/host")) {
        "" => s(o, "/reportingInstance"),
        h => h,
    };
    let source = if component.is_empty() {
        String::new()
    } else if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(o, "/type")),
        json!(s(o, "/reason")),
        json!(target),
        json!(s(&involved, "/fieldPath")),
        json!(source),
        json!(s(o, msg_p).trim()),
        json!(first),
        json!(count),
        name(o),
    ]
}

#[cfg(test)]
mod tests;
