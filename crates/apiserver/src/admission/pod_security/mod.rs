//! The `PodSecurity` plugin: kube-apiserver's built-in Pod Security admission
//! (k8s.io/pod-security-admission). A namespace chooses a Pod Security Standard per
//! mode with its labels `pod-security.kubernetes.io/{enforce,audit,warn}` (`privileged`,
//! `baseline` or `restricted`, with `-version` labels: `latest` or `v1.x`):
//!
//! - enforce: a pod that violates the level is refused (403, kube's message) on create,
//!   and on the updates that can change what the checks see (images, seccomp
//!   annotations, new ephemeral containers);
//! - warn: the violations come back as a warning; workload resources (Deployments,
//!   Jobs, ... whose pod template is evaluated) are only ever warned about, never
//!   refused, as in kube;
//! - setting or tightening a namespace's enforce label warns about its existing pods
//!   that would violate it.
//!
//! Differences from kube, all deliberate simplifications:
//! - every policy version is evaluated with the latest checks (a `v1.x` label is kept
//!   and shown in the messages, as kube shows it);
//! - audit has nowhere to go (skiff writes no audit log), so the audit labels are
//!   parsed and validated only;
//! - no exemptions (kube's default configuration has none either);
//! - a pod in a namespace that is not there is not judged (kube answers 500; the
//!   `NamespaceLifecycle` plugin refuses such creates first anyway).
//!
//! Labels with invalid values behave as in kube: a namespace cannot be created or
//! changed to carry them (422), and one that carries them anyway is evaluated as
//! `restricted` for enforce and `privileged` for audit and warn (fail closed for
//! enforce, open for the others), with a `latest` version.

mod checks;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use skiff_resources::ResourceInfo;
use skiff_store::Store;

use super::{Attributes, Operation, Plugin};
use crate::status::{qualified, ApiError, ApiResult};
use crate::storage::{decode, key, prefix};

/// The labels that choose the levels and versions.
const ENFORCE_LEVEL: &str = "pod-security.kubernetes.io/enforce";
const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";
const AUDIT_LEVEL: &str = "pod-security.kubernetes.io/audit";
const AUDIT_VERSION: &str = "pod-security.kubernetes.io/audit-version";
const WARN_LEVEL: &str = "pod-security.kubernetes.io/warn";
const WARN_VERSION: &str = "pod-security.kubernetes.io/warn-version";

/// At most this many existing pods are checked when a namespace's enforce level
/// changes (kube's limit).
const MAX_PODS_TO_CHECK: usize = 3000;

/// Pod subresources whose writes cannot change the pod's security (kube's
/// `ignoredPodSubresources`); `ephemeralcontainers` is judged.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// A Pod Security Standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    fn strictness(self) -> u8 {
        match self {
            Level::Privileged => 0,
            Level::Baseline => 1,
            Level::Restricted => 2,
        }
    }
}

/// A level at a policy version (`None`: latest), shown as `restricted:latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LevelVersion {
    level: Level,
    version: Option<u32>,
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            None => write!(f, "{}:latest", self.level.as_str()),
            Some(minor) => write!(f, "{}:v1.{minor}", self.level.as_str()),
        }
    }
}

/// The levels of a namespace's three modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    enforce: LevelVersion,
    /// Parsed and validated; there is no audit log to write to.
    audit: LevelVersion,
    warn: LevelVersion,
}

/// One invalid label: the label and its value, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LabelError {
    label: &'static str,
    value: String,
    message: &'static str,
}

fn parse_level(s: &str) -> Option<Level> {
    match s {
        "privileged" => Some(Level::Privileged),
        "baseline" => Some(Level::Baseline),
        "restricted" => Some(Level::Restricted),
        _ => None,
    }
}

/// `latest` (`Some(None)`) or `v1.x` without leading zeros.
fn parse_version(s: &str) -> Option<Option<u32>> {
    if s == "latest" {
        return Some(None);
    }
    let minor = s.strip_prefix("v1.")?;
    let digits_only = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (minor.len() > 1 && minor.starts_with('0')) {
        return None;
    }
    minor.parse().ok().map(Some)
}

/// The namespace's policy from its labels (kube's `PolicyToEvaluate` with the default
/// configuration: privileged, latest) and the labels that are invalid.
fn policy_from_labels(labels: Option<&Map<String, Value>>) -> (Policy, Vec<LabelError>) {
    let default = LevelVersion {
        level: Level::Privileged,
        version: None,
    };
    let mut p = Policy {
        enforce: default,
        audit: default,
        warn: default,
    };
    let mut errs = Vec::new();
    let Some(labels) = labels else {
        return (p, errs);
    };
    let get = |l: &str| {
        labels
            .get(l)
            .map(|v| v.as_str().unwrap_or_default().to_string())
    };
    let modes: [(&mut LevelVersion, &'static str, &'static str, Level); 3] = [
        (
            &mut p.enforce,
            ENFORCE_LEVEL,
            ENFORCE_VERSION,
            Level::Restricted,
        ),
        (&mut p.audit, AUDIT_LEVEL, AUDIT_VERSION, Level::Privileged),
        (&mut p.warn, WARN_LEVEL, WARN_VERSION, Level::Privileged),
    ];
    for (lv, level_label, version_label, on_error) in modes {
        if let Some(v) = get(level_label) {
            lv.level = parse_level(&v).unwrap_or_else(|| {
                errs.push(LabelError {
                    label: level_label,
                    value: v.clone(),
                    message: "must be one of privileged, baseline, restricted",
                });
                on_error
            });
        }
        if let Some(v) = get(version_label) {
            lv.version = parse_version(&v).unwrap_or_else(|| {
                errs.push(LabelError {
                    label: version_label,
                    value: v.clone(),
                    message: "must be \"latest\" or \"v1.x\"",
                });
                None
            });
        }
    }
    (p, errs)
}

/// What the plugin does with a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Namespace,
    Pod,
    /// A workload resource with a pod template.
    Controller,
}

fn target(info: &ResourceInfo) -> Option<Target> {
    match (info.group, info.plural) {
        ("", "namespaces") => Some(Target::Namespace),
        ("", "pods") => Some(Target::Pod),
        ("", "replicationcontrollers" | "podtemplates")
        | ("apps", "replicasets" | "deployments" | "statefulsets" | "daemonsets")
        | ("batch", "jobs" | "cronjobs") => Some(Target::Controller),
        _ => None,
    }
}

/// The pod template's metadata and spec of a workload object (`None` when it has
/// none).
fn pod_template<'a>(plural: &str, obj: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let template = match plural {
        "podtemplates" => obj.get("template"),
        "cronjobs" => obj.pointer("/spec/jobTemplate/spec/template"),
        _ => obj.pointer("/spec/template"),
    }
    .filter(|t| t.is_object())?;
    Some((
        template.get("metadata").unwrap_or(&Value::Null),
        template.get("spec").unwrap_or(&Value::Null),
    ))
}

/// Whether a pod update can change what the checks see (kube's
/// `isSignificantPodUpdate`): images, the seccomp annotations, containers added or
/// removed, new ephemeral containers.
fn significant_pod_update(pod: &Value, old: &Value) -> bool {
    let annotation = |p: &'_ Value, k: &str| -> String {
        p.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let list = |p: &'_ Value, k: &str| -> Vec<Value> {
        p.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let field = |c: &Value, k: &str| -> String {
        c.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let container_changed = |c: &Value, oc: &Value| {
        let k = format!(
            "container.seccomp.security.alpha.kubernetes.io/{}",
            field(c, "name")
        );
        field(c, "image") != field(oc, "image") || annotation(pod, &k) != annotation(old, &k)
    };
    if annotation(pod, "seccomp.security.alpha.kubernetes.io/pod")
        != annotation(old, "seccomp.security.alpha.kubernetes.io/pod")
    {
        return true;
    }
    for k in ["containers", "initContainers"] {
        let (new, was) = (list(pod, k), list(old, k));
        if new.len() != was.len() || new.iter().zip(&was).any(|(c, oc)| container_changed(c, oc)) {
            return true;
        }
    }
    let was = list(old, "ephemeralContainers");
    list(pod, "ephemeralContainers").iter().any(|c| {
        match was.iter().find(|oc| field(oc, "name") == field(c, "name")) {
            None => true,
            Some(oc) => container_changed(c, oc),
        }
    })
}

/// Evaluates Pod Security against the namespace labels in the store.
pub(crate) struct PodSecurity {
    store: Arc<dyn Store>,
}

/// What evaluating one write decided.
#[derive(Default)]
struct Decision {
    /// The write is refused.
    error: Option<ApiError>,
    /// Warnings for the client (only when the write is not refused).
    warnings: Vec<String>,
}

impl PodSecurity {
    /// The plugin, reading namespaces and pods from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        PodSecurity { store }
    }

    /// The namespace's labels; `None` when it does not exist.
    fn namespace(&self, ns: &str) -> ApiResult<Option<Value>> {
        let info = skiff_resources::lookup("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces not registered"))?;
        match self.store.get(&key(info, None, ns))? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Judges one write: the namespace's labels, a pod, or a workload's template.
    fn decide(&self, a: &Attributes<'_>, obj: &Value, old: Option<&Value>) -> ApiResult<Decision> {
        // Deletes are never judged (kube's plugin only sees creates and updates).
        if a.operation == Operation::Delete {
            return Ok(Decision::default());
        }
        match target(a.info) {
            None => Ok(Decision::default()),
            Some(Target::Namespace) => self.decide_namespace(a, obj, old),
            Some(Target::Pod) => self.decide_pod(a, obj, old),
            Some(Target::Controller) => self.decide_controller(a, obj),
        }
    }

    /// Namespace writes: valid labels (when they change), and on an enforce level
    /// that got stricter, warnings about the existing pods that violate it.
    fn decide_namespace(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<Decision> {
        if a.subresource.is_some() {
            return Ok(Decision::default());
        }
        let labels = |o: &Value| {
            o.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
        };
        let (new_policy, new_errs) = policy_from_labels(labels(obj).as_ref());
        let invalid = || Decision {
            error: Some(invalid_labels(a.name, &new_errs)),
            warnings: Vec::new(),
        };
        match (a.operation, old) {
            (Operation::Create, _) | (Operation::Update, None) => {
                if new_errs.is_empty() {
                    Ok(Decision::default())
                } else {
                    Ok(invalid())
                }
            }
            (Operation::Delete, _) => Ok(Decision::default()),
            (Operation::Update, Some(old)) => {
                let (old_policy, old_errs) = policy_from_labels(labels(old).as_ref());
                if !new_errs.is_empty() && (old_errs.is_empty() || new_errs != old_errs) {
                    return Ok(invalid());
                }
                let (new_e, old_e) = (new_policy.enforce, old_policy.enforce);
                let relaxed = new_e.version == old_e.version
                    && new_e.level.strictness().cmp(&old_e.level.strictness()) != Ordering::Greater;
                if new_e == old_e || new_e.level == Level::Privileged || relaxed {
                    return Ok(Decision::default());
                }
                Ok(Decision {
                    error: None,
                    warnings: self.existing_pods(a.name, new_e)?,
                })
            }
        }
    }

    /// The warnings about a namespace's pods that violate a new enforce level (kube's
    /// `EvaluatePodsInNamespace`): one line, then one per distinct set of reasons with
    /// the lexically first pod of that set and how many others share it.
    fn existing_pods(&self, ns: &str, enforce: LevelVersion) -> ApiResult<Vec<String>> {
        let info = skiff_resources::lookup("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods not registered"))?;
        let Ok((kvs, _)) = self.store.list(&prefix(info, Some(ns))) else {
            return Ok(vec![
                "failed to list pods while checking new PodSecurity enforce level".into(),
            ]);
        };
        let total = kvs.len();
        let mut by_reason: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for kv in kvs.iter().take(MAX_PODS_TO_CHECK) {
            let pod = decode(kv)?;
            let vs = checks::evaluate(
                enforce.level,
                pod.get("metadata").unwrap_or(&Value::Null),
                pod.get("spec").unwrap_or(&Value::Null),
            );
            if vs.is_empty() {
                continue;
            }
            let name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let e = by_reason
                .entry(checks::forbidden_reason(&vs))
                .or_insert_with(|| (name.clone(), 0));
            if name < e.0 {
                e.0 = name;
            }
            e.1 += 1;
        }
        let mut warnings = Vec::new();
        if total > MAX_PODS_TO_CHECK {
            warnings.push(format!(
                "new PodSecurity enforce level only checked against the first {MAX_PODS_TO_CHECK} of {total} existing pods"
            ));
        }
        if !by_reason.is_empty() {
            warnings.push(format!(
                "existing pods in namespace \"{ns}\" violate the new PodSecurity enforce level \"{enforce}\""
            ));
        }
        let mut lines: Vec<String> = by_reason
            .into_iter()
            .map(|(reason, (pod, n))| match n {
                1 => format!("{pod}: {reason}"),
                2 => format!("{pod} (and 1 other pod): {reason}"),
                n => format!("{pod} (and {} other pods): {reason}", n - 1),
            })
            .collect();
        lines.sort();
        warnings.extend(lines);
        Ok(warnings)
    }

    /// The namespace's policy; `None` when the namespace is missing or all privileged
    /// for the modes that matter (`enforce` says whether enforce does).
    fn policy(&self, ns: Option<&str>, enforce: bool) -> ApiResult<Option<Policy>> {
        let Some(ns) = ns else {
            return Ok(None);
        };
        let Some(nsobj) = self.namespace(ns)? else {
            return Ok(None);
        };
        let (p, errs) =
            policy_from_labels(nsobj.pointer("/metadata/labels").and_then(Value::as_object));
        let privileged = |lv: LevelVersion| lv.level == Level::Privileged;
        if errs.is_empty()
            && (!enforce || privileged(p.enforce))
            && privileged(p.warn)
            && privileged(p.audit)
        {
            return Ok(None);
        }
        Ok(Some(p))
    }

    /// Pods: enforce, then warn (kube's `ValidatePod`).
    fn decide_pod(
        &self,
        a: &Attributes<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<Decision> {
        if a.subresource
            .is_some_and(|s| IGNORED_POD_SUBRESOURCES.contains(&s))
        {
            return Ok(Decision::default());
        }
        // Kube reads the namespace first; judging significance first only spares the
        // read (the outcome is the same).
        if let (Operation::Update, Some(old)) = (a.operation, old) {
            if !significant_pod_update(obj, old) {
                return Ok(Decision::default());
            }
        }
        let Some(p) = self.policy(a.namespace, true)? else {
            return Ok(Decision::default());
        };
        let meta = obj.get("metadata").unwrap_or(&Value::Null);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let enforced = checks::evaluate(p.enforce.level, meta, spec);
        if !enforced.is_empty() {
            let (name, r) = (a.name, a.requested);
            return Ok(Decision {
                error: Some(
                    ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: violates PodSecurity \"{}\": {}",
                        qualified(r.group, r.plural),
                        p.enforce,
                        checks::forbidden_detail(&enforced)
                    ))
                    .with_details(json!({"name": name, "kind": r.plural})),
                ),
                warnings: Vec::new(),
            });
        }
        Ok(Decision {
            error: None,
            warnings: warn(p.warn, meta, spec),
        })
    }

    /// Workload resources: warn only, on their pod template (kube's
    /// `ValidatePodController`).
    fn decide_controller(&self, a: &Attributes<'_>, obj: &Value) -> ApiResult<Decision> {
        if a.subresource.is_some() {
            return Ok(Decision::default());
        }
        let Some(p) = self.policy(a.namespace, false)? else {
            return Ok(Decision::default());
        };
        let Some((meta, spec)) = pod_template(a.info.plural, obj) else {
            return Ok(Decision::default());
        };
        Ok(Decision {
            error: None,
            warnings: warn(p.warn, meta, spec),
        })
    }
}

/// The warning for a pod that violates the warn level, if it does.
fn warn(level: LevelVersion, meta: &Value, spec: &Value) -> Vec<String> {
    let vs = checks::evaluate(level.level, meta, spec);
    if vs.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "would violate PodSecurity \"{level}\": {}",
        checks::forbidden_detail(&vs)
    )]
}

/// The 422 for invalid Pod Security labels on a namespace.
fn invalid_labels(name: &str, errs: &[LabelError]) -> ApiError {
    let causes = errs
        .iter()
        .map(|e| {
            let field = format!("metadata.labels[{}]", e.label);
            let message = format!("{field}: Invalid value: {}: {}", json!(e.value), e.message);
            (field, "FieldValueInvalid".to_string(), message)
        })
        .collect();
    ApiError::invalid("", "Namespace", name, causes)
}

impl Plugin for PodSecurity {
    fn handles(&self, info: &ResourceInfo) -> bool {
        target(info).is_some()
    }

    fn validate(&self, a: &Attributes<'_>, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
        match self.decide(a, obj, old)?.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Decides again (a namespace read and the checks): the chain asks for warnings
    /// separately, and the evaluation is cheap next to a write.
    fn warnings(&self, a: &Attributes<'_>, obj: &Value, old: Option<&Value>) -> Vec<String> {
        match self.decide(a, obj, old) {
            Ok(d) if d.error.is_none() => d.warnings,
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
