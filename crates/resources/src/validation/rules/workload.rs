//! Workloads (Deployment, ReplicaSet, StatefulSet, DaemonSet): selectors, replicas,
//! strategies, templates.

use serde_json::{json, Map, Value};

use super::super::FieldError;
use super::pod::validate_pod_template;
use super::{arr, s, Errs};
use crate::registry::ResourceInfo;

pub(super) fn selector_matches(sel: &Value, labels: &Map<String, Value>) -> bool {
    let ml = sel.get("matchLabels").and_then(Value::as_object);
    let labels_ok = ml
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = arr(sel, "/matchExpressions").iter().all(|x| {
        let key = s(x, "/key").unwrap_or("");
        let vals: Vec<&str> = arr(x, "/values").iter().filter_map(Value::as_str).collect();
        let have = labels.get(key).and_then(Value::as_str);
        match s(x, "/operator").unwrap_or("") {
            "In" => have.is_some_and(|h| vals.contains(&h)),
            "NotIn" => have.is_none_or(|h| !vals.contains(&h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

pub(super) fn selector_empty(sel: &Value) -> bool {
    sel.get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && arr(sel, "/matchExpressions").is_empty()
}

/// Go's `%#v` of a LabelSelector, as kube-apiserver prints it in messages.
pub(super) fn go_selector(sel: &Value) -> String {
    let ml = match sel.get("matchLabels").and_then(Value::as_object) {
        Some(m) => super::super::go_value(&Value::Object(m.clone())),
        None => "map[string]string(nil)".into(),
    };
    let me = if arr(sel, "/matchExpressions").is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        format!(
            "[]v1.LabelSelectorRequirement{{...{} requirements}}",
            arr(sel, "/matchExpressions").len()
        )
    };
    format!("&v1.LabelSelector{{MatchLabels:{ml}, MatchExpressions:{me}}}")
}

pub(super) fn validate_workload(
    info: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
    e: &mut Errs,
) {
    for f in ["replicas", "revisionHistoryLimit", "minReadySeconds"] {
        if let Some(n) = obj.pointer(&format!("/spec/{f}")).and_then(Value::as_i64) {
            if n < 0 {
                e.push(FieldError::invalid(
                    format!("spec.{f}"),
                    json!(n),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    let kind = info.kind.to_lowercase();
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mismatch = FieldError::invalid(
        "spec.template.metadata.labels",
        Value::Object(labels.clone()),
        "`selector` does not match template `labels`",
    );
    match obj.pointer("/spec/selector").filter(|v| !v.is_null()) {
        None => {
            // A missing selector selects nothing, so the template never matches either.
            e.push(FieldError::required("spec.selector", ""));
            e.push(mismatch);
        }
        Some(sel) => {
            if selector_empty(sel) {
                e.push(FieldError {
                    path: "spec.selector".into(),
                    kind: super::super::FieldErrorKind::Invalid,
                    message: format!("empty selector is invalid for {kind}"),
                    bad_value: Some(Value::String(go_selector(sel))),
                });
            } else if !selector_matches(sel, &labels) {
                e.push(mismatch);
            }
            // A StatefulSet's selector is one of the fields its update rule forbids.
            let old_sel = old
                .filter(|_| info.kind != "StatefulSet")
                .and_then(|o| o.pointer("/spec/selector"));
            if let Some(old_sel) = old_sel {
                if old_sel != sel {
                    e.push(FieldError {
                        path: "spec.selector".into(),
                        kind: super::super::FieldErrorKind::Invalid,
                        message: "field is immutable".into(),
                        bad_value: Some(Value::String(go_selector(sel))),
                    });
                }
            }
        }
    }
    if info.kind == "Deployment" {
        let min_ready = obj
            .pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(pd) = obj
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
        {
            if pd <= min_ready {
                e.push(FieldError::invalid(
                    "spec.progressDeadlineSeconds",
                    json!(pd),
                    "must be greater than minReadySeconds",
                ));
            }
        }
        let st = s(obj, "/spec/strategy/type").unwrap_or("RollingUpdate");
        if st != "RollingUpdate" && st != "Recreate" {
            e.push(FieldError::not_supported(
                "spec.strategy.type",
                json!(st),
                &["Recreate", "RollingUpdate"],
            ));
        }
        if st == "Recreate"
            && obj
                .pointer("/spec/strategy/rollingUpdate")
                .is_some_and(|v| !v.is_null())
        {
            e.push(FieldError::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
        let zero = |p: &str| match obj.pointer(p) {
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s == "0" || s == "0%",
            _ => false,
        };
        if st == "RollingUpdate"
            && zero("/spec/strategy/rollingUpdate/maxUnavailable")
            && zero("/spec/strategy/rollingUpdate/maxSurge")
        {
            e.push(FieldError::invalid(
                "spec.strategy.rollingUpdate.maxUnavailable",
                obj.pointer("/spec/strategy/rollingUpdate/maxUnavailable")
                    .cloned()
                    .unwrap_or(Value::Null),
                "may not be 0 when `maxSurge` is 0",
            ));
        }
    }
    validate_pod_template(obj.pointer("/spec/template"), "spec.template", e);
    if info.kind != "StatefulSet" || s(obj, "/spec/template/spec/restartPolicy").is_some() {
        let rp = s(obj, "/spec/template/spec/restartPolicy").unwrap_or("Always");
        if rp != "Always" {
            e.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                json!(rp),
                &["Always"],
            ));
        }
    }
}
/// What kube's `ValidateStatefulSetSpec` checks beyond [`validate_workload`], and
/// `ValidateStatefulSetUpdate`'s rule that only some of the spec may change.
pub(super) fn validate_statefulset(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    match s(obj, "/spec/podManagementPolicy").unwrap_or("") {
        "" => e.push(FieldError::required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => e.push(FieldError::invalid(
            "spec.podManagementPolicy",
            json!(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let ru = obj
        .pointer("/spec/updateStrategy/rollingUpdate")
        .filter(|v| !v.is_null());
    match s(obj, "/spec/updateStrategy/type").unwrap_or("") {
        "" => e.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(ru) = ru {
                e.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    ru.clone(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(p) = ru.and_then(|r| r.get("partition")).and_then(Value::as_i64) {
                if p < 0 {
                    e.push(FieldError::invalid(
                        "spec.updateStrategy.rollingUpdate.partition",
                        json!(p),
                        "must be greater than or equal to 0",
                    ));
                }
            }
            let zero = match ru.and_then(|r| r.get("maxUnavailable")) {
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s == "0%" || s == "0",
                _ => false,
            };
            if zero {
                e.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    ru.and_then(|r| r.get("maxUnavailable"))
                        .cloned()
                        .unwrap_or(Value::Null),
                    "cannot be 0",
                ));
            }
        }
        other => e.push(FieldError::invalid(
            "spec.updateStrategy",
            Value::String(format!(
                "apps.StatefulSetUpdateStrategy{{Type:{other:?}, RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}}"
            )),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    for f in ["whenDeleted", "whenScaled"] {
        let v = s(
            obj,
            &format!("/spec/persistentVolumeClaimRetentionPolicy/{f}"),
        )
        .unwrap_or("");
        if v != "Retain" && v != "Delete" {
            e.push(FieldError::not_supported(
                format!("spec.persistentVolumeClaimRetentionPolicy.{f}"),
                json!(v),
                &["Retain", "Delete"],
            ));
        }
    }
    if let Some(n) = obj.pointer("/spec/ordinals/start").and_then(Value::as_i64) {
        if n < 0 {
            e.push(FieldError::invalid(
                "spec.ordinals.start",
                json!(n),
                "must be greater than or equal to 0",
            ));
        }
    }
    if obj
        .pointer("/spec/template/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        e.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    if let Some(old) = old {
        let rest = |o: &Value| {
            let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
            if let Value::Object(m) = &mut spec {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "revisionHistoryLimit",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
            }
            semantic(spec)
        };
        if rest(obj) != rest(old) {
            e.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', \
                 'template', 'updateStrategy', 'revisionHistoryLimit', \
                 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

/// The value without nulls, empty maps and empty lists (Go's semantic equality treats
/// nil and empty alike).
fn semantic(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, semantic(v)))
                .filter(|(_, v)| match v {
                    Value::Null => false,
                    Value::Object(m) => !m.is_empty(),
                    Value::Array(a) => !a.is_empty(),
                    _ => true,
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(semantic).collect()),
        other => other,
    }
}
