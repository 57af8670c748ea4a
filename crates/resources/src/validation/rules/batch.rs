//! Jobs and CronJobs (kube 1.33's `pkg/apis/batch/validation`): counts, Indexed
//! limits, `backoffLimitPerIndex`/`maxFailedIndexes`, `successPolicy`,
//! `podFailurePolicy` actions, `podReplacementPolicy`, `managedBy`, the generated
//! selector, what an update may not change; a CronJob's name, schedule, time zone and
//! Job template.

use serde_json::{json, Value};

use super::super::{FieldError, FieldErrorKind};
use super::pod::validate_pod_template;
use super::workload::{go_selector, selector_empty, selector_matches};
use super::{arr, s, Errs};

/// Most pods of an Indexed Job at once, most failed indexes, most completions with a
/// limit per index (kube's `maxParallelismForIndexedJob` and friends).
const INDEXED_MAX: i64 = 100_000;
/// Most `successPolicy` rules and `podFailurePolicy` rules.
const MAX_RULES: usize = 20;
/// Longest `managedBy`.
const MAX_MANAGED_BY: usize = 63;
/// The longest CronJob name: its Jobs add `-<minutes>` (11 characters) and must stay
/// DNS labels of 63.
const MAX_CRONJOB_NAME: usize = 52;

fn int(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}

fn set(v: &Value, ptr: &str) -> bool {
    v.pointer(ptr).is_some_and(|x| !x.is_null())
}

fn nonnegative(v: &Value, spec: &str, field: &str, e: &mut Errs) {
    if let Some(n) = int(v, &format!("/{field}")).filter(|n| *n < 0) {
        e.push(FieldError::invalid(
            format!("{spec}.{field}"),
            json!(n),
            "must be greater than or equal to 0",
        ));
    }
}

/// The number of indexes in `list` ("1,3-5") below `completions`, or kube's
/// `validateIndexesFormat` error.
fn count_indexes(list: &str, completions: i64) -> Result<i64, String> {
    if list.is_empty() {
        return Ok(0);
    }
    let mut last: Option<i64> = None;
    let mut total = 0;
    for part in list.split(',') {
        let limits: Vec<&str> = part.split('-').collect();
        if limits.len() > 2 {
            return Err(format!("the fragment {part:?} violates the requirement that an index interval can have at most two parts separated by '-'"));
        }
        let mut bound = |s: &str| -> Result<i64, String> {
            let x: i64 = s
                .parse::<i32>()
                .map_err(|_| format!("cannot convert string to integer for index: {s:?}"))?
                .into();
            if x >= completions {
                return Err(format!("too large index: {s:?}"));
            }
            if let Some(l) = last.filter(|l| *l >= x) {
                return Err(format!("non-increasing order, previous: {l}, current: {x}"));
            }
            last = Some(x);
            Ok(x)
        };
        let first = bound(limits[0])?;
        total += 1;
        if let Some(second) = limits.get(1) {
            total += bound(second)? - first;
        }
    }
    Ok(total)
}

/// kube's `validateJobSpec`: what a Job and a CronJob's Job template share. `spec` is
/// the JobSpec, `path` its field path.
fn validate_job_spec(spec: &Value, path: &str, e: &mut Errs) {
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(spec, path, f, e);
    }
    if let Some(0) = int(spec, "/activeDeadlineSeconds") {
        e.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            json!(0),
            "must be greater than 0",
        ));
    }
    let mode = s(spec, "/completionMode");
    let indexed = mode == Some("Indexed");
    let completions = int(spec, "/completions");
    match mode {
        None | Some("NonIndexed") => {
            for f in ["backoffLimitPerIndex", "maxFailedIndexes"] {
                if set(spec, &format!("/{f}")) {
                    e.push(FieldError::forbidden(
                        format!("{path}.{f}"),
                        "requires indexed completion mode",
                    ));
                }
            }
        }
        Some("Indexed") => {
            if completions.is_none() {
                e.push(FieldError::required(
                    format!("{path}.completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = int(spec, "/parallelism").filter(|p| *p > INDEXED_MAX) {
                e.push(FieldError::invalid(
                    format!("{path}.parallelism"),
                    json!(p),
                    format!("must be less than or equal to {INDEXED_MAX} when completion mode is Indexed"),
                ));
            }
            if let Some(m) = int(spec, "/maxFailedIndexes") {
                if completions.is_some_and(|c| m > c) {
                    e.push(FieldError::invalid(
                        format!("{path}.maxFailedIndexes"),
                        json!(m),
                        "must be less than or equal to completions",
                    ));
                }
                if m > INDEXED_MAX {
                    e.push(FieldError::invalid(
                        format!("{path}.maxFailedIndexes"),
                        json!(m),
                        format!("must be less than or equal to {INDEXED_MAX}"),
                    ));
                }
            }
            if let Some(c) = completions.filter(|c| *c > INDEXED_MAX) {
                if set(spec, "/backoffLimitPerIndex") {
                    e.push(FieldError::invalid(
                        format!("{path}.completions"),
                        json!(c),
                        format!("must be less than or equal to {INDEXED_MAX} when backoffLimitPerIndex is specified"),
                    ));
                }
            }
        }
        Some(other) => e.push(FieldError::not_supported(
            format!("{path}.completionMode"),
            json!(other),
            &["NonIndexed", "Indexed"],
        )),
    }
    nonnegative(spec, path, "backoffLimitPerIndex", e);
    if set(spec, "/maxFailedIndexes") {
        nonnegative(spec, path, "maxFailedIndexes", e);
        if !set(spec, "/backoffLimitPerIndex") {
            e.push(FieldError::required(
                format!("{path}.backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
    }
    if let Some(m) = s(spec, "/managedBy") {
        validate_managed_by(m, &format!("{path}.managedBy"), e);
    }
    if spec.get("successPolicy").is_some_and(|p| !p.is_null()) {
        validate_success_policy(spec, indexed, completions.unwrap_or(0), path, e);
    }
    let has_failure_policy = set(spec, "/podFailurePolicy");
    if has_failure_policy {
        validate_pod_failure_policy(spec, path, e);
    }
    if let Some(rp) = s(spec, "/podReplacementPolicy") {
        if has_failure_policy && rp != "Failed" {
            e.push(FieldError::not_supported(
                format!("{path}.podReplacementPolicy"),
                json!(rp),
                &["Failed"],
            ));
        } else if !matches!(rp, "Failed" | "TerminatingOrFailed") {
            e.push(FieldError::not_supported(
                format!("{path}.podReplacementPolicy"),
                json!(rp),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    validate_pod_template(spec.get("template"), &format!("{path}.template"), e);
    let rp = s(spec, "/template/spec/restartPolicy").unwrap_or("");
    if rp != "Never" && rp != "OnFailure" {
        e.push(FieldError::not_supported(
            format!("{path}.template.spec.restartPolicy"),
            json!(rp),
            &["OnFailure", "Never"],
        ));
    } else if has_failure_policy && rp != "Never" {
        e.push(FieldError::invalid(
            format!("{path}.template.spec.restartPolicy"),
            json!(rp),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
}

/// `managedBy`: a domain-prefixed path of at most 63 bytes (kube's
/// `IsDomainPrefixedPath`).
fn validate_managed_by(m: &str, path: &str, e: &mut Errs) {
    match m.split_once('/') {
        Some((host, rest)) if !host.is_empty() && !rest.is_empty() => {
            for msg in super::super::names::is_dns1123_subdomain(host) {
                e.push(FieldError::invalid(path, json!(host), msg));
            }
            let ok = rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
            if !ok {
                e.push(FieldError::invalid(path, json!(rest), "Invalid path"));
            }
        }
        _ => e.push(FieldError::invalid(
            path,
            json!(m),
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )),
    }
    if m.len() > MAX_MANAGED_BY {
        e.push(FieldError::too_long(
            path,
            format!("may not be more than {MAX_MANAGED_BY} bytes"),
        ));
    }
}

fn validate_success_policy(
    spec: &Value,
    indexed: bool,
    completions: i64,
    path: &str,
    e: &mut Errs,
) {
    let sp = format!("{path}.successPolicy");
    if !indexed {
        e.push(FieldError::invalid(
            format!("{path}.completionMode"),
            json!(s(spec, "/completionMode").unwrap_or("NonIndexed")),
            "requires indexed completion mode",
        ));
        return;
    }
    let rules = arr(spec, "/successPolicy/rules");
    if rules.is_empty() {
        e.push(FieldError::required(
            format!("{sp}.rules"),
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    if rules.len() > MAX_RULES {
        e.push(too_many(&format!("{sp}.rules"), rules.len()));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{sp}.rules[{i}]");
        let indexes = s(rule, "/succeededIndexes");
        let count = int(rule, "/succeededCount");
        if indexes.is_none() && count.is_none() {
            e.push(FieldError::required(
                &rp,
                "at least one of succeededCount or succeededIndexes must be specified",
            ));
        }
        let mut total = 0;
        if let Some(list) = indexes {
            if list.len() > 64 * 1024 {
                e.push(FieldError::too_long(
                    format!("{rp}.succeededIndexes"),
                    format!("may not be more than {} bytes", 64 * 1024),
                ));
            }
            match count_indexes(list, completions) {
                Ok(n) => total = n,
                Err(msg) => e.push(FieldError::invalid(
                    format!("{rp}.succeededIndexes"),
                    json!(list),
                    format!("error parsing succeededIndexes: {msg}"),
                )),
            }
        }
        if let Some(n) = count {
            let cp = format!("{rp}.succeededCount");
            if n < 0 {
                e.push(FieldError::invalid(
                    &cp,
                    json!(n),
                    "must be greater than or equal to 0",
                ));
            }
            if n > completions {
                e.push(FieldError::invalid(
                    &cp,
                    json!(n),
                    format!("must be less than or equal to {completions} (the number of specified completions)"),
                ));
            }
            if indexes.is_some() && n > total {
                e.push(FieldError::invalid(
                    &cp,
                    json!(n),
                    format!("must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"),
                ));
            }
        }
    }
}

fn too_many(path: &str, n: usize) -> FieldError {
    FieldError {
        path: path.to_string(),
        kind: FieldErrorKind::TooMany,
        message: format!("has {n}, must have at most {MAX_RULES} items"),
        bad_value: None,
    }
}

fn validate_pod_failure_policy(spec: &Value, path: &str, e: &mut Errs) {
    let rules = arr(spec, "/podFailurePolicy/rules");
    let rp = format!("{path}.podFailurePolicy.rules");
    if rules.len() > MAX_RULES {
        e.push(too_many(&rp, rules.len()));
    }
    let supported = ["Count", "FailIndex", "FailJob", "Ignore"];
    for (i, rule) in rules.iter().enumerate() {
        let ap = format!("{rp}[{i}].action");
        match s(rule, "/action").unwrap_or("") {
            "" => e.push(FieldError::required(
                &ap,
                format!("valid values: {supported:?}"),
            )),
            "FailIndex" if !set(spec, "/backoffLimitPerIndex") => e.push(FieldError::invalid(
                &ap,
                json!("FailIndex"),
                "requires the backoffLimitPerIndex to be set",
            )),
            a if !supported.contains(&a) => {
                e.push(FieldError::not_supported(&ap, json!(a), &supported))
            }
            _ => {}
        }
    }
}

/// A Job (kube's `ValidateJob`, `ValidateGeneratedSelector`, `ValidateJobSpecUpdate`).
pub(super) fn validate_job(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_job_spec(spec, "spec", e);
    validate_selector(obj, e);
    if let Some(old) = old {
        validate_job_update(obj, old, e);
    }
}

fn validate_selector(obj: &Value, e: &mut Errs) {
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let Some(sel) = obj.pointer("/spec/selector").filter(|v| !v.is_null()) else {
        e.push(FieldError::required("spec.selector", ""));
        return;
    };
    let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
    if let (false, Some(uid)) = (manual, s(obj, "/metadata/uid")) {
        let generated = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let ours = sel.get("matchLabels") == generated.get("matchLabels")
            && arr(sel, "/matchExpressions").is_empty();
        if !ours {
            e.push(selector_error("`selector` not auto-generated", sel));
        }
    }
    if selector_empty(sel) {
        e.push(selector_error("empty selector is invalid for job", sel));
    } else if !selector_matches(sel, &labels) {
        e.push(FieldError::invalid(
            "spec.template.metadata.labels",
            Value::Object(labels),
            "`selector` does not match template `labels`",
        ));
    }
}

fn selector_error(message: &str, sel: &Value) -> FieldError {
    FieldError {
        path: "spec.selector".into(),
        kind: FieldErrorKind::Invalid,
        message: message.into(),
        bad_value: Some(Value::String(go_selector(sel))),
    }
}

/// The template fields a suspended Job that never started may change (kube's
/// `validatePodTemplateUpdate` with `AllowMutableSchedulingDirectives`).
const SCHEDULING_DIRECTIVES: [&str; 6] = [
    "/metadata/labels",
    "/metadata/annotations",
    "/spec/nodeSelector",
    "/spec/tolerations",
    "/spec/affinity",
    "/spec/schedulingGates",
];

fn validate_job_update(obj: &Value, old: &Value, e: &mut Errs) {
    let immutable = |field: &str, e: &mut Errs| {
        let ptr = format!("/spec/{field}");
        let (new, was) = (obj.pointer(&ptr), old.pointer(&ptr));
        if new.filter(|v| !v.is_null()) != was.filter(|v| !v.is_null()) {
            let shown = match (field, new) {
                ("selector", Some(sel)) => Value::String(go_selector(sel)),
                (_, v) => v.cloned().unwrap_or(Value::Null),
            };
            e.push(FieldError::invalid(
                format!("spec.{field}"),
                shown,
                "field is immutable",
            ));
        }
    };
    let indexed = |v: &Value| s(v, "/spec/completionMode") == Some("Indexed");
    let completions_changed = int(obj, "/spec/completions") != int(old, "/spec/completions");
    if completions_changed && indexed(obj) && indexed(old) {
        // Elastic Indexed Jobs: completions moves with parallelism.
        if int(obj, "/spec/completions") != int(obj, "/spec/parallelism") {
            e.push(FieldError::invalid(
                "spec.completions",
                obj.pointer("/spec/completions")
                    .cloned()
                    .unwrap_or(Value::Null),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    } else {
        immutable("completions", e);
    }
    immutable("selector", e);
    let mutable_scheduling = old.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true)
        && !set(old, "/status/startTime");
    let strip = |t: Option<&Value>| {
        let mut t = t.cloned().unwrap_or(Value::Null);
        if mutable_scheduling {
            for ptr in SCHEDULING_DIRECTIVES {
                let (parent, key) = ptr.rsplit_once('/').unwrap_or(("", ptr));
                if let Some(Value::Object(m)) = t.pointer_mut(parent) {
                    m.remove(key);
                }
            }
        }
        t
    };
    if strip(obj.pointer("/spec/template")) != strip(old.pointer("/spec/template")) {
        e.push(FieldError::invalid(
            "spec.template",
            obj.pointer("/spec/template")
                .cloned()
                .unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
    for f in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(f, e);
    }
}

/// A CronJob (kube's `ValidateCronJobCreate`/`Update`): name length on create, the
/// schedule (no `TZ=`/`CRON_TZ=` unless the old schedule had one), time zone,
/// policies, history limits and the Job template.
pub(super) fn validate_cronjob(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    let name = s(obj, "/metadata/name").unwrap_or("");
    if old.is_none() && name.len() > MAX_CRONJOB_NAME {
        e.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            format!("must be no more than {MAX_CRONJOB_NAME} characters"),
        ));
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let tz = s(spec, "/timeZone");
    match s(spec, "/schedule") {
        None | Some("") => e.push(FieldError::required("spec.schedule", "")),
        Some(sched) => {
            // robfig/cron takes a `TZ=<zone> ` prefix; kube refuses it afterwards.
            let has_tz = sched.contains("TZ");
            let body = match sched.trim_start().split_once(char::is_whitespace) {
                Some((first, rest))
                    if first.starts_with("TZ=") || first.starts_with("CRON_TZ=") =>
                {
                    rest
                }
                _ => sched,
            };
            if let Err(msg) = skiff_api::cron::Schedule::parse(body) {
                e.push(FieldError::invalid("spec.schedule", json!(sched), msg));
            }
            let allowed = old
                .and_then(|o| s(o, "/spec/schedule"))
                .is_some_and(|o| o.contains("TZ"));
            if has_tz && !allowed {
                e.push(FieldError::invalid(
                    "spec.schedule",
                    json!(sched),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if has_tz && tz.is_some() {
                e.push(FieldError::invalid(
                    "spec.schedule",
                    json!(sched),
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            }
        }
    }
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonnegative(spec, "spec", f, e);
    }
    match s(spec, "/concurrencyPolicy").unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => e.push(FieldError::required("spec.concurrencyPolicy", "")),
        other => e.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            json!(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jt = spec.pointer("/jobTemplate/spec").unwrap_or(&Value::Null);
    validate_job_spec(jt, "spec.jobTemplate.spec", e);
    if let Some(sel) = jt.get("selector").filter(|v| !v.is_null()) {
        e.push(FieldError::invalid(
            "spec.jobTemplate.spec.selector",
            Value::String(go_selector(sel)),
            "`selector` will be auto-generated",
        ));
    }
    if jt.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        e.push(FieldError::not_supported(
            "spec.jobTemplate.spec.manualSelector",
            json!(true),
            &["nil", "false"],
        ));
    }
    if let Some(zone) = tz {
        for msg in skiff_api::tz::validate(zone) {
            e.push(FieldError::invalid("spec.timeZone", json!(zone), msg));
        }
    }
}
