//! OpenAPI schemas of the served kinds, generated once from the `k8s-openapi` types via
//! schemars, with the extensions kube-apiserver publishes and clients read:
//! `x-kubernetes-group-version-kind` on top-level kinds, and
//! `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` on list fields
//! (kubectl computes strategic merge patches from them; so does [`crate::smp`]).
//!
//! Helpers here walk the schemas (`$ref`, `allOf`, `items`, `additionalProperties`) for
//! strategic merge patch and unknown-field detection.

use std::sync::OnceLock;

use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

/// Prefix of every `$ref` in the generated schemas.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// A kind with a schema: its group/version/kind and the schema's name.
#[derive(Debug, Clone)]
pub struct KindSchema {
    /// API group (`""` for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Name of the schema in `components.schemas`, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub name: String,
    /// Deserializes an object with the kind's `k8s-openapi` type (None for kinds
    /// without one: lists, apps/v1beta1 and v1beta2 Deployments).
    pub check: Option<TypedCheck>,
}

/// Deserializes an object with a `k8s-openapi` type; the error is serde's message.
pub type TypedCheck = fn(&Value) -> Result<(), String>;

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
    T::deserialize(v).map(|_| ()).map_err(|e| e.to_string())
}

/// The typed check of a kind (see [`KindSchema::check`]).
pub fn typed_check(group: &str, version: &str, kind: &str) -> Option<TypedCheck> {
    schemas()
        .kinds
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
        .and_then(|k| k.check)
}

/// All generated schemas and the kinds that have one.
#[derive(Debug)]
pub struct Schemas {
    /// `components.schemas`: schema name → schema.
    pub components: Map<String, Value>,
    /// Top-level kinds (including list kinds and subresource kinds such as `Scale`).
    pub kinds: Vec<KindSchema>,
}

static SCHEMAS: OnceLock<Schemas> = OnceLock::new();

/// The generated schemas (computed on first use; several megabytes).
pub fn schemas() -> &'static Schemas {
    SCHEMAS.get_or_init(generate)
}

/// The schema name for a kind, e.g. `("apps","v1","Deployment")` →
/// `io.k8s.api.apps.v1.Deployment`.
pub fn kind_schema_name(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    schemas()
        .kinds
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
        .map(|k| k.name.as_str())
}

/// The (resolved) schema of a kind.
pub fn kind_schema(group: &str, version: &str, kind: &str) -> Option<&'static Value> {
    let name = kind_schema_name(group, version, kind)?;
    schemas().components.get(name)
}

/// The component a schema references: its `$ref`, directly or as the first `allOf`
/// entry, without the `#/components/schemas/` prefix.
pub fn ref_name(s: &Value) -> Option<&str> {
    s.get("$ref")
        .and_then(Value::as_str)
        .or_else(|| {
            s.get("allOf")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|f| f.get("$ref"))
                .and_then(Value::as_str)
        })
        .and_then(|r| r.strip_prefix(REF_PREFIX))
}

/// Follows `$ref` (directly or as the first `allOf` entry) to the referenced schema.
/// Returns the schema itself when it references nothing.
pub fn resolve(schema: &'static Value) -> &'static Value {
    let mut s = schema;
    for _ in 0..8 {
        match ref_name(s).and_then(|n| schemas().components.get(n)) {
            Some(next) => s = next,
            None => break,
        }
    }
    s
}

/// The raw schema of property `name` of an object schema (after resolving the parent),
/// so that property-level extensions such as the patch strategy stay visible.
pub fn property(schema: &'static Value, name: &str) -> Option<&'static Value> {
    resolve(schema).get("properties")?.get(name)
}

/// The item schema of an array schema.
pub fn items(schema: &'static Value) -> Option<&'static Value> {
    resolve(schema).get("items")
}

/// The value schema of a map schema (`additionalProperties`).
pub fn additional_properties(schema: &'static Value) -> Option<&'static Value> {
    resolve(schema)
        .get("additionalProperties")
        .filter(|v| v.is_object())
}

/// Patch strategy (`merge`, `retainKeys`, `replace`...) and merge key of a field schema.
pub fn patch_meta(field: &Value) -> (Vec<&str>, Option<&str>) {
    let strategies = field
        .get("x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    let key = field
        .get("x-kubernetes-patch-merge-key")
        .and_then(Value::as_str);
    (strategies, key)
}

/// Registers a kind's type with the generator and records its GVK.
fn add<T: JsonSchema + serde::de::DeserializeOwned>(
    gen: &mut SchemaGenerator,
    kinds: &mut Vec<KindSchema>,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
) {
    gen.subschema_for::<T>();
    kinds.push(KindSchema {
        group,
        version,
        kind,
        name: T::schema_name().into_owned(),
        check: Some(typed::<T>),
    });
}

/// Patch strategies of list fields, from the `patchStrategy`/`patchMergeKey` struct tags of
/// Kubernetes' Go types: (schema, field, strategy, merge key).
const PATCH_META: &[(&str, &str, &str, &str)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        "",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        "uid",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        "name",
    ),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        "name",
    ),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        "topologyKey",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        "containerPort",
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", "name"),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        "type",
    ),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip"),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip"),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        "name",
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port"),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        "name",
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", ""),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        "",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetSpec",
        "updateStrategy",
        "retainKeys",
        "",
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration",
        "webhooks",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
        "webhooks",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.networking.v1.IngressStatus",
        "loadBalancer",
        "",
        "",
    ),
];

fn generate() -> Schemas {
    let mut gen = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    let k = &mut kinds;
    let g = &mut gen;
    use api::{
        apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
        autoscaling::v1 as autoscaling, autoscaling::v2 as autoscaling2, batch::v1 as batch,
        coordination::v1 as coord, core::v1 as core, discovery::v1 as disc, events::v1 as events,
        flowcontrol::v1 as flowcontrol, networking::v1 as net, node::v1 as node,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
        storage::v1 as storage,
    };
    add::<core::Binding>(g, k, "", "v1", "Binding");
    add::<core::ComponentStatus>(g, k, "", "v1", "ComponentStatus");
    add::<core::ConfigMap>(g, k, "", "v1", "ConfigMap");
    add::<core::Endpoints>(g, k, "", "v1", "Endpoints");
    add::<core::Event>(g, k, "", "v1", "Event");
    add::<core::LimitRange>(g, k, "", "v1", "LimitRange");
    add::<core::Namespace>(g, k, "", "v1", "Namespace");
    add::<core::Node>(g, k, "", "v1", "Node");
    add::<core::PersistentVolumeClaim>(g, k, "", "v1", "PersistentVolumeClaim");
    add::<core::PersistentVolume>(g, k, "", "v1", "PersistentVolume");
    add::<core::Pod>(g, k, "", "v1", "Pod");
    add::<core::PodTemplate>(g, k, "", "v1", "PodTemplate");
    add::<core::ReplicationController>(g, k, "", "v1", "ReplicationController");
    add::<core::ResourceQuota>(g, k, "", "v1", "ResourceQuota");
    add::<core::Secret>(g, k, "", "v1", "Secret");
    add::<core::ServiceAccount>(g, k, "", "v1", "ServiceAccount");
    add::<core::Service>(g, k, "", "v1", "Service");
    add::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>(
        g,
        k,
        "apiregistration.k8s.io",
        "v1",
        "APIService",
    );
    add::<apps::ControllerRevision>(g, k, "apps", "v1", "ControllerRevision");
    add::<apps::DaemonSet>(g, k, "apps", "v1", "DaemonSet");
    add::<apps::Deployment>(g, k, "apps", "v1", "Deployment");
    add::<apps::ReplicaSet>(g, k, "apps", "v1", "ReplicaSet");
    add::<apps::StatefulSet>(g, k, "apps", "v1", "StatefulSet");
    add::<authn::SelfSubjectReview>(g, k, "authentication.k8s.io", "v1", "SelfSubjectReview");
    add::<authn::TokenReview>(g, k, "authentication.k8s.io", "v1", "TokenReview");
    add::<authn::TokenRequest>(g, k, "authentication.k8s.io", "v1", "TokenRequest");
    add::<authz::LocalSubjectAccessReview>(
        g,
        k,
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
    );
    add::<authz::SelfSubjectAccessReview>(
        g,
        k,
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
    );
    add::<authz::SelfSubjectRulesReview>(
        g,
        k,
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
    );
    add::<authz::SubjectAccessReview>(g, k, "authorization.k8s.io", "v1", "SubjectAccessReview");
    add::<autoscaling::Scale>(g, k, "autoscaling", "v1", "Scale");
    add::<autoscaling::HorizontalPodAutoscaler>(
        g,
        k,
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
    );
    add::<autoscaling2::HorizontalPodAutoscaler>(
        g,
        k,
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
    );
    add::<batch::CronJob>(g, k, "batch", "v1", "CronJob");
    add::<batch::Job>(g, k, "batch", "v1", "Job");
    add::<api::certificates::v1::CertificateSigningRequest>(
        g,
        k,
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
    );
    add::<coord::Lease>(g, k, "coordination.k8s.io", "v1", "Lease");
    add::<disc::EndpointSlice>(g, k, "discovery.k8s.io", "v1", "EndpointSlice");
    add::<events::Event>(g, k, "events.k8s.io", "v1", "Event");
    add::<flowcontrol::FlowSchema>(g, k, "flowcontrol.apiserver.k8s.io", "v1", "FlowSchema");
    add::<flowcontrol::PriorityLevelConfiguration>(
        g,
        k,
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "PriorityLevelConfiguration",
    );
    add::<skiff_api::metrics::NodeMetrics>(g, k, "metrics.k8s.io", "v1beta1", "NodeMetrics");
    add::<skiff_api::metrics::PodMetrics>(g, k, "metrics.k8s.io", "v1beta1", "PodMetrics");
    add::<net::IngressClass>(g, k, "networking.k8s.io", "v1", "IngressClass");
    add::<net::Ingress>(g, k, "networking.k8s.io", "v1", "Ingress");
    add::<net::NetworkPolicy>(g, k, "networking.k8s.io", "v1", "NetworkPolicy");
    add::<node::RuntimeClass>(g, k, "node.k8s.io", "v1", "RuntimeClass");
    add::<policy::PodDisruptionBudget>(g, k, "policy", "v1", "PodDisruptionBudget");
    add::<policy::Eviction>(g, k, "policy", "v1", "Eviction");
    add::<api::admissionregistration::v1::MutatingWebhookConfiguration>(
        g,
        k,
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
    );
    add::<api::admissionregistration::v1::ValidatingWebhookConfiguration>(
        g,
        k,
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
    );
    add::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(
        g,
        k,
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
    );
    add::<rbac::ClusterRoleBinding>(
        g,
        k,
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
    );
    add::<rbac::ClusterRole>(g, k, "rbac.authorization.k8s.io", "v1", "ClusterRole");
    add::<rbac::RoleBinding>(g, k, "rbac.authorization.k8s.io", "v1", "RoleBinding");
    add::<rbac::Role>(g, k, "rbac.authorization.k8s.io", "v1", "Role");
    add::<scheduling::PriorityClass>(g, k, "scheduling.k8s.io", "v1", "PriorityClass");
    add::<storage::CSIDriver>(g, k, "storage.k8s.io", "v1", "CSIDriver");
    add::<storage::CSINode>(g, k, "storage.k8s.io", "v1", "CSINode");
    add::<storage::CSIStorageCapacity>(g, k, "storage.k8s.io", "v1", "CSIStorageCapacity");
    add::<storage::StorageClass>(g, k, "storage.k8s.io", "v1", "StorageClass");
    add::<storage::VolumeAttachment>(g, k, "storage.k8s.io", "v1", "VolumeAttachment");
    // Meta types every group-version document references.
    gen.subschema_for::<meta::DeleteOptions>();
    gen.subschema_for::<meta::Status>();
    gen.subschema_for::<meta::Patch>();
    gen.subschema_for::<meta::APIResourceList>();
    gen.subschema_for::<meta::WatchEvent<core::Pod>>();
    gen.subschema_for::<meta::ListMeta>();

    let mut components = gen.take_definitions(true);

    // List kinds (k8s-openapi's generic List has no schema of its own).
    let list_kinds: Vec<KindSchema> = kinds
        .iter()
        .filter(|k| {
            crate::registry::lookup_kind(&api_version(k.group, k.version), k.kind).is_some()
        })
        .map(|k| KindSchema {
            group: k.group,
            version: k.version,
            kind: leak(format!("{}List", k.kind)),
            name: format!("{}List", k.name),
            check: None,
        })
        .collect();
    for l in &list_kinds {
        let item = l.name.trim_end_matches("List").to_string();
        components.insert(
            l.name.clone(),
            json!({
                "description": format!("{} is a list of {}.", l.kind, item.rsplit('.').next().unwrap_or_default()),
                "type": "object",
                "properties": {
                    "apiVersion": {"description": API_VERSION_DOC, "type": "string"},
                    "items": {"description": "Items is the list of objects.", "type": "array",
                              "items": {"$ref": format!("{REF_PREFIX}{item}")}},
                    "kind": {"description": KIND_DOC, "type": "string"},
                    "metadata": {"description": "Standard list metadata.",
                                 "allOf": [{"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}]},
                },
                "required": ["items"],
            }),
        );
    }
    kinds.extend(list_kinds);

    for (schema, field, strategy, key) in PATCH_META {
        if let Some(p) = components
            .get_mut(*schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
            .and_then(Value::as_object_mut)
        {
            if !strategy.is_empty() {
                p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            }
            if !key.is_empty() {
                p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
    }
    // apps/v1beta1 Deployment: the apps/v1 shape (patch extensions included), selector
    // optional, plus rollbackTo. apps/v1beta2: exactly the apps/v1 shape.
    add_beta_deployment(&mut components, &mut kinds, "v1beta1");
    add_beta_deployment(&mut components, &mut kinds, "v1beta2");

    for k in &kinds {
        if let Some(obj) = components.get_mut(&k.name).and_then(Value::as_object_mut) {
            obj.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": k.group, "kind": k.kind, "version": k.version}]),
            );
        }
    }
    if let Some(obj) = components
        .get_mut("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")
        .and_then(Value::as_object_mut)
    {
        // kube-apiserver lists every group-version DeleteOptions is accepted in.
        let mut gvks: Vec<Value> = Vec::new();
        for gv in crate::registry::resources()
            .iter()
            .map(|r| (r.group, r.version))
        {
            let v = json!({"group": gv.0, "kind": "DeleteOptions", "version": gv.1});
            if !gvks.contains(&v) {
                gvks.push(v);
            }
        }
        obj.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
    }
    Schemas { components, kinds }
}

const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Kind names of list kinds are computed once per process; leaking them gives the
/// `&'static str` the registry's types use.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Adds `io.k8s.api.apps.<version>.Deployment`, its spec and list: the apps/v1 schemas,
/// with v1beta1's differences (optional selector, `rollbackTo`).
fn add_beta_deployment(
    components: &mut Map<String, Value>,
    kinds: &mut Vec<KindSchema>,
    version: &'static str,
) {
    let (Some(mut dep), Some(mut spec)) = (
        components.get("io.k8s.api.apps.v1.Deployment").cloned(),
        components.get("io.k8s.api.apps.v1.DeploymentSpec").cloned(),
    ) else {
        return;
    };
    let prefix = format!("io.k8s.api.apps.{version}");
    if version == "v1beta1" {
        if let Some(req) = spec.get_mut("required").and_then(Value::as_array_mut) {
            req.retain(|r| r != "selector");
        }
        if let Some(props) = spec.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "rollbackTo".into(),
                json!({"description": "DEPRECATED. The config this deployment is rolling back to. Will be cleared after rollback is done.",
                       "type": "object",
                       "properties": {"revision": {"description": "The revision to rollback to. If set to 0, rollback to the last revision.", "type": "integer", "format": "int64"}}}),
            );
        }
    } else if let Some(d) = dep.get_mut("description") {
        // kube-apiserver's apps/v1beta2 types said so.
        *d = json!(format!(
            "DEPRECATED - This group version of Deployment is deprecated by apps/v1/Deployment. See the release notes for more information. {}",
            d.as_str().unwrap_or_default()
        ));
    }
    if let Some(p) = dep.pointer_mut("/properties/spec/allOf/0/$ref") {
        *p = json!(format!("{REF_PREFIX}{prefix}.DeploymentSpec"));
    }
    let mut list = components
        .get("io.k8s.api.apps.v1.DeploymentList")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(p) = list.pointer_mut("/properties/items/items/$ref") {
        *p = json!(format!("{REF_PREFIX}{prefix}.Deployment"));
    }
    components.insert(format!("{prefix}.DeploymentSpec"), spec);
    components.insert(format!("{prefix}.Deployment"), dep);
    kinds.push(KindSchema {
        group: "apps",
        version,
        kind: "Deployment",
        name: format!("{prefix}.Deployment"),
        check: None,
    });
    if !list.is_null() {
        components.insert(format!("{prefix}.DeploymentList"), list);
        kinds.push(KindSchema {
            group: "apps",
            version,
            kind: "DeploymentList",
            name: format!("{prefix}.DeploymentList"),
            check: None,
        });
    }
}

/// Every schema name referenced (transitively) from the given schema names.
pub fn closure(roots: &[&str]) -> Vec<String> {
    let comps = &schemas().components;
    let mut seen: Vec<String> = Vec::new();
    let mut stack: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    while let Some(n) = stack.pop() {
        if seen.contains(&n) {
            continue;
        }
        if let Some(s) = comps.get(&n) {
            collect_refs(s, &mut stack);
            seen.push(n);
        }
    }
    seen.sort();
    seen
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(n) = x.as_str().and_then(|s| s.strip_prefix(REF_PREFIX)) {
                        out.push(n.to_string());
                    }
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_kind_has_a_schema_with_its_gvk() {
        for r in crate::registry::resources() {
            let s = kind_schema(r.group, r.version, r.kind)
                .unwrap_or_else(|| panic!("no schema for {}/{} {}", r.group, r.version, r.kind));
            let gvk = &s["x-kubernetes-group-version-kind"][0];
            assert_eq!(gvk["kind"], r.kind);
            assert_eq!(gvk["version"], r.version);
            assert_eq!(gvk["group"], r.group);
        }
    }

    #[test]
    fn service_ports_carry_patch_merge_key() {
        let svc = kind_schema("", "v1", "Service").expect("service");
        let spec = property(svc, "spec").expect("spec");
        let ports = property(spec, "ports").expect("ports");
        assert_eq!(patch_meta(ports), (vec!["merge"], Some("port")));
        let item = items(ports).expect("items");
        assert!(property(item, "targetPort").is_some());
    }

    #[test]
    fn refs_point_to_components() {
        let comps = &schemas().components;
        let mut refs = Vec::new();
        for s in comps.values() {
            collect_refs(s, &mut refs);
        }
        for r in refs {
            assert!(comps.contains_key(&r), "dangling $ref {r}");
        }
    }
}

/// Test helpers shared with other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use serde_json::Value;

    /// Collects every `$ref` target name in `v`.
    pub fn refs(v: &Value, out: &mut Vec<String>) {
        super::collect_refs(v, out);
    }
}
