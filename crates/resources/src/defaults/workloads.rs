//! Workloads: Deployments (v1, v1beta2 and v1beta1), StatefulSets, DaemonSets, Jobs, CronJobs.

use serde_json::{json, Map, Value};

use super::pod::default_template;
use super::{obj_at, set};

/// The labels of `spec.template.metadata`, if any.
pub(crate) fn template_labels(spec: &Map<String, Value>) -> Option<Value> {
    spec.get("template")?
        .get("metadata")?
        .get("labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned()
}

pub(super) fn default_deployment(o: &mut Map<String, Value>, version: &str) {
    let template_meta_labels = o
        .get("spec")
        .and_then(Value::as_object)
        .and_then(template_labels);
    let spec = obj_at(o, "spec");
    set(spec, "replicas", json!(1));
    if version == "v1beta1" {
        // apps/v1beta1 only: selector from the template's labels, smaller history. apps/v1beta2
        // defaults as apps/v1 does (its selector is required).
        if let Some(l) = template_meta_labels.clone() {
            if spec.get("selector").is_none_or(Value::is_null) {
                spec.insert("selector".into(), json!({"matchLabels": l}));
            }
        }
        set(spec, "revisionHistoryLimit", json!(2));
    }
    {
        let strategy = obj_at(spec, "strategy");
        let ty = set(strategy, "type", json!("RollingUpdate"))
            .as_str()
            .unwrap_or("")
            .to_string();
        if ty == "RollingUpdate" {
            let ru = obj_at(strategy, "rollingUpdate");
            set(ru, "maxUnavailable", json!("25%"));
            set(ru, "maxSurge", json!("25%"));
        }
    }
    set(spec, "revisionHistoryLimit", json!(10));
    set(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
    if version == "v1beta1" {
        // v1beta1 also defaulted the object's labels from the template's.
        if let Some(l) = template_meta_labels {
            let meta = obj_at(o, "metadata");
            if meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
            {
                meta.insert("labels".into(), l);
            }
        }
    }
    set(o, "status", json!({}));
}

pub(super) fn default_statefulset(o: &mut Map<String, Value>) {
    let spec = obj_at(o, "spec");
    set(spec, "replicas", json!(1));
    set(spec, "podManagementPolicy", json!("OrderedReady"));
    {
        let us = obj_at(spec, "updateStrategy");
        let ty = set(us, "type", json!("RollingUpdate"))
            .as_str()
            .unwrap_or("")
            .to_string();
        if ty == "RollingUpdate" {
            let ru = obj_at(us, "rollingUpdate");
            set(ru, "partition", json!(0));
        }
    }
    set(spec, "revisionHistoryLimit", json!(10));
    set(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    default_template(spec);
}

pub(super) fn default_daemonset(o: &mut Map<String, Value>) {
    let spec = obj_at(o, "spec");
    {
        let us = obj_at(spec, "updateStrategy");
        let ty = set(us, "type", json!("RollingUpdate"))
            .as_str()
            .unwrap_or("")
            .to_string();
        if ty == "RollingUpdate" {
            let ru = obj_at(us, "rollingUpdate");
            set(ru, "maxUnavailable", json!(1));
            set(ru, "maxSurge", json!(0));
        }
    }
    set(spec, "revisionHistoryLimit", json!(10));
    default_template(spec);
}

pub(super) fn default_job(o: &mut Map<String, Value>) {
    let uid = o
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let spec = obj_at(o, "spec");
    // The Job strategy's PrepareForCreate: without `manualSelector`, select the Job's own
    // pods by its uid, and label the template accordingly.
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if let (Some(uid), false, true) = (uid, manual, spec.get("selector").is_none_or(Value::is_null))
    {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
        if let Some(Value::Object(t)) = spec.get_mut("template") {
            let meta = obj_at(t, "metadata");
            let labels = obj_at(meta, "labels");
            for (k, v) in [
                ("batch.kubernetes.io/controller-uid", uid.as_str()),
                ("batch.kubernetes.io/job-name", name.as_str()),
                ("controller-uid", uid.as_str()),
                ("job-name", name.as_str()),
            ] {
                labels.entry(k.to_string()).or_insert_with(|| json!(v));
            }
        }
    }
    let completions_set = spec.get("completions").is_some_and(|v| !v.is_null());
    let parallelism_set = spec.get("parallelism").is_some_and(|v| !v.is_null());
    if !completions_set && !parallelism_set {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set(spec, "parallelism", json!(1));
    // With a limit per index, none for the whole Job; with a pod failure policy, a pod
    // is replaced once it failed (kube's `SetDefaults_Job`).
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    set(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    let failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    let replacement = if failure_policy {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set(spec, "podReplacementPolicy", json!(replacement));
    default_template(spec);
}

pub(super) fn default_cronjob(o: &mut Map<String, Value>) {
    let spec = obj_at(o, "spec");
    set(spec, "concurrencyPolicy", json!("Allow"));
    set(spec, "suspend", json!(false));
    set(spec, "successfulJobsHistoryLimit", json!(3));
    set(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(Value::Object(jt)) = spec.get_mut("jobTemplate") {
        let js = obj_at(jt, "spec");
        default_template(js);
    }
}
