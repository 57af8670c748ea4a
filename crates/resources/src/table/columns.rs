//! Column definitions, as `AddHandlers` in kube-apiserver's printers declares them.

use serde_json::Value;

use crate::schema;

/// One column definition.
pub(super) struct Col {
    pub(super) name: &'static str,
    pub(super) ty: &'static str,
    pub(super) format: &'static str,
    pub(super) priority: i32,
    pub(super) description: String,
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The description of a field from the OpenAPI schemas (what Go's `SwaggerDoc()` returns).
pub(super) fn doc(schema_name: &str, field: &str) -> String {
    schema::schemas()
        .components
        .get(schema_name)
        .and_then(|s| s.pointer(&format!("/properties/{field}/description")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub(super) fn name_col() -> Col {
    Col {
        name: "Name",
        ty: "string",
        format: "name",
        priority: 0,
        description: doc(META, "name"),
    }
}
pub(super) fn age_col() -> Col {
    Col {
        name: "Age",
        ty: "string",
        format: "",
        priority: 0,
        description: doc(META, "creationTimestamp"),
    }
}
pub(super) fn col(
    name: &'static str,
    ty: &'static str,
    priority: i32,
    description: impl Into<String>,
) -> Col {
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
pub(super) fn columns(group: &str, kind: &str) -> Vec<Col> {
    if let Some(cols) = super::storage::columns(group, kind) {
        return cols;
    }
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
        ("metrics.k8s.io", "NodeMetrics" | "PodMetrics") => vec![
            name_col(),
            col("CPU", "string", 0, "CPU usage"),
            col("Memory", "string", 0, "Memory usage"),
            col("Window", "string", 0, "Interval"),
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
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let spec = "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec";
            vec![
                name_col(),
                col("Reference", "string", 0, doc(spec, "scaleTargetRef")),
                col("Targets", "string", 0, doc(spec, "metrics")),
                col("MinPods", "string", 0, doc(spec, "minReplicas")),
                col("MaxPods", "integer", 0, doc(spec, "maxReplicas")),
                col("Replicas", "integer", 0, doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentReplicas")),
                age_col(),
            ]
        }
        ("policy", "PodDisruptionBudget") => vec![
            name_col(),
            col("Min Available", "string", 0, "The minimum number of pods that must be available."),
            col("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable."),
            col("Allowed Disruptions", "integer", 0, "Calculated number of pods that may be disrupted at this time."),
            age_col(),
        ],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name_col(),
            col("Value", "integer", 0, doc("io.k8s.api.scheduling.v1.PriorityClass", "value")),
            col("Global-Default", "boolean", 0, doc("io.k8s.api.scheduling.v1.PriorityClass", "globalDefault")),
            age_col(),
            col("PreemptionPolicy", "string", 0, doc("io.k8s.api.scheduling.v1.PriorityClass", "preemptionPolicy")),
        ],
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => vec![
            name_col(),
            col("Webhooks", "integer", 0, "Webhooks indicates the number of webhooks registered in this configuration."),
            age_col(),
        ],
        ("certificates.k8s.io", "CertificateSigningRequest") => vec![
            name_col(),
            age_col(),
            col("SignerName", "string", 0, doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "signerName")),
            col("Requestor", "string", 0, "Name of the user that created the certificate signing request."),
            col("RequestedDuration", "string", 0, doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "expirationSeconds")),
            col("Condition", "string", 0, "The current state of the certificate signing request."),
        ],
        ("apiregistration.k8s.io", "APIService") => vec![
            name_col(),
            col("Service", "string", 0, "The reference to the service that hosts this API endpoint."),
            col("Available", "string", 0, "Whether this service is available."),
            age_col(),
        ],
        ("node.k8s.io", "RuntimeClass") => vec![
            name_col(),
            col("Handler", "string", 0, doc("io.k8s.api.node.v1.RuntimeClass", "handler")),
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
