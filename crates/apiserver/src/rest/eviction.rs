//! POST `pods/<name>/eviction`: a delete that honours PodDisruptionBudgets, as
//! kube-apiserver's `EvictionREST` (`pkg/registry/core/pod/storage/eviction.go`).
//!
//! Terminal, pending and terminating pods go at once. Otherwise the one budget whose
//! selector picks the pod decides: none allowed → 429 `TooManyRequests` with the
//! `DisruptionBudget` cause; allowed → `disruptionsAllowed` is decremented and the pod
//! recorded in `disruptedPods` (a revision-checked write, retried on conflict) before the
//! pod is deleted. A pod that is not Ready does not consume the budget when the budget's
//! `unhealthyPodEvictionPolicy` is `AlwaysAllow`, or (the default `IfHealthyBudget`) when
//! the application is healthy enough; it is then deleted on condition that it did not
//! change since (so that it cannot have turned Ready meanwhile). More than one budget is
//! a 500, as kube's. Before the delete the pod gets the `DisruptionTarget` condition.
//!
//! The decisions are pure functions of the JSON objects ([`can_ignore_budgets`],
//! [`covering`], [`check_and_decrement`], [`unhealthy_may_go`]), unit-tested below.

use serde_json::{json, Map, Value};
use skiff_resources::ResourceInfo;
use skiff_store::{Store, StoreError};

use super::write::{delete_object, WriteOpts};
use super::Reply;
use crate::http::Query;
use crate::request::RequestInfo;
use crate::state::ApiState;
use crate::status::{success, ApiError, ApiResult};
use crate::storage::{decode, encode, key, meta_str, now_ts, prefix};

/// kube's `MaxDisruptedPodSize`: a budget with more unconfirmed evictions refuses more.
const MAX_DISRUPTED_PODS: usize = 2000;
/// How many times a conflicting write is retried (client-go's `DefaultRetry` steps).
const RETRIES: usize = 5;
/// The message of every refusal for the budget's sake.
pub(crate) const VIOLATION: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";
/// kube's message when more than one budget covers the pod.
pub(crate) const MULTIPLE_BUDGETS: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

fn pdb_info() -> ApiResult<&'static ResourceInfo> {
    skiff_resources::lookup("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not registered"))
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Whether the pod's Ready condition is True (kube's `IsPodReady`).
pub(crate) fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// kube's `canIgnorePDB`: a pod that already disrupts nothing (terminal, pending, or
/// already terminating) is evicted without asking a budget.
pub(crate) fn can_ignore_budgets(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || terminating(pod)
}

/// kube's `shouldEnforceResourceVersion`: such a pod is deleted only as it was read,
/// unless it is terminal or terminating (a pending one could turn Ready meanwhile).
fn enforce_resource_version(pod: &Value) -> bool {
    !(matches!(phase(pod), "Succeeded" | "Failed") || terminating(pod))
}

/// Whether a `LabelSelector` picks `labels`: `None` for a missing or invalid selector
/// (kube's `LabelSelectorAsSelector` gives `Nothing` or an error: no match); an empty
/// selector picks everything (`policy/v1`).
fn selector_picks(sel: &Value, labels: &Map<String, Value>) -> Option<bool> {
    let sel = sel.as_object()?;
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    for (k, v) in sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if label(k) != Some(v.as_str()?) {
            return Some(false);
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let k = e.get("key").and_then(Value::as_str)?;
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let ok = match e.get("operator").and_then(Value::as_str)? {
            "In" => label(k).is_some_and(|v| values.contains(&v)),
            "NotIn" => label(k).is_none_or(|v| !values.contains(&v)),
            "Exists" => label(k).is_some(),
            "DoesNotExist" => label(k).is_none(),
            _ => return None,
        };
        if !ok {
            return Some(false);
        }
    }
    Some(true)
}

/// The budgets (with their revisions) among `pdbs` whose selector picks the pod (kube's
/// `getPodDisruptionBudgets`).
pub(crate) fn covering(pod: &Value, pdbs: Vec<(Value, i64)>) -> Vec<(Value, i64)> {
    let empty = Map::new();
    let labels = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    pdbs.into_iter()
        .filter(|(b, _)| {
            b.pointer("/spec/selector")
                .and_then(|s| selector_picks(s, labels))
                .unwrap_or(false)
        })
        .collect()
}

fn status_i64(pdb: &Value, field: &str) -> i64 {
    pdb.pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or_default()
}

/// Whether a pod that is not Ready may go without consuming the budget: always under
/// `AlwaysAllow`, else (`IfHealthyBudget`) when the budget has all the healthy pods it
/// wants.
pub(crate) fn unhealthy_may_go(pdb: &Value) -> bool {
    if pdb.pointer("/spec/unhealthyPodEvictionPolicy") == Some(&json!("AlwaysAllow")) {
        return true;
    }
    let desired = status_i64(pdb, "desiredHealthy");
    status_i64(pdb, "currentHealthy") >= desired && desired > 0
}

/// 429 with the `DisruptionBudget` cause `why`.
fn too_many_requests(why: String, retry_after: u32) -> ApiError {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": why}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    ApiError::new(429, "TooManyRequests", VIOLATION).with_details(details)
}

/// kube's `createTooManyRequestsError`: the budget's status is not yet of its spec.
fn still_processed(pdb_name: &str) -> ApiError {
    too_many_requests(
        format!("The disruption budget {pdb_name} is still being processed by the server."),
        10,
    )
}

/// kube's `checkAndDecrement`: the budget as it should be written once `pod` is
/// disrupted (`disruptionsAllowed` one less, the pod in `disruptedPods` at `now` unless
/// `dry_run`), or the refusal.
pub(crate) fn check_and_decrement(
    pdb: &Value,
    pod: &str,
    now: &str,
    dry_run: bool,
) -> ApiResult<Value> {
    let name = name_of(pdb);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_i64(pdb, "observedGeneration") < generation {
        return Err(still_processed(name));
    }
    let allowed = status_i64(pdb, "disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden(name, "pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status_i64(pdb, "desiredHealthy"),
                status_i64(pdb, "currentHealthy")
            ),
            0,
        ));
    }
    let mut out = pdb.clone();
    out["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        set_insufficient(&mut out, now);
    }
    if !dry_run {
        if !out["status"]["disruptedPods"].is_object() {
            out["status"]["disruptedPods"] = json!({});
        }
        out["status"]["disruptedPods"][pod] = json!(now);
    }
    Ok(out)
}

/// The `DisruptionAllowed` condition once no disruption is left (kube's
/// `UpdateDisruptionAllowedCondition`): False, `InsufficientPods`.
fn set_insufficient(pdb: &mut Value, now: &str) {
    let generation = pdb["status"]["observedGeneration"].clone();
    if !pdb["status"]["conditions"].is_array() {
        pdb["status"]["conditions"] = json!([]);
    }
    let Some(conds) = pdb["status"]["conditions"].as_array_mut() else {
        return;
    };
    let cond = match conds.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(c) => c,
        None => {
            conds.push(json!({"type": "DisruptionAllowed", "lastTransitionTime": now}));
            let last = conds.len() - 1;
            &mut conds[last]
        }
    };
    if cond["status"] != "False" {
        cond["lastTransitionTime"] = json!(now);
    }
    cond["status"] = json!("False");
    cond["reason"] = json!("InsufficientPods");
    cond["message"] = json!("");
    cond["observedGeneration"] = generation;
}

fn forbidden(pdb_name: &str, why: &str) -> ApiError {
    ApiError::new(
        403,
        "Forbidden",
        format!("poddisruptionbudget.policy \"{pdb_name}\" is forbidden: {why}"),
    )
    .with_details(json!({"name": pdb_name, "group": "policy", "kind": "poddisruptionbudget"}))
}

/// The delete options' resourceVersion precondition, if any.
fn precondition_rv(dopts: &Value) -> Option<&str> {
    dopts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
}

fn with_precondition_rv(dopts: &Value, rv: &str) -> Value {
    let mut d = dopts.clone();
    if !d.is_object() {
        d = json!({});
    }
    if !d["preconditions"].is_object() {
        d["preconditions"] = json!({});
    }
    d["preconditions"]["resourceVersion"] = json!(rv);
    d
}

/// The handler.
pub(crate) async fn evict(
    state: &ApiState,
    t: &RequestInfo,
    name: &str,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Reply> {
    if meta_str(&body, "name").is_some_and(|n| !n.is_empty() && n != name) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let dopts = body.get("deleteOptions").cloned().unwrap_or(json!({}));
    let dry_run = opts.dry_run
        || dopts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let ns = t.namespace.as_deref().unwrap_or("default");
    let pod_key = key(t.info, Some(ns), name);
    // A pod that ignores budgets is deleted at once; a conflict (it changed meanwhile)
    // starts over, unless the client pinned a resourceVersion itself.
    let mut attempts = 0;
    let (pod, pod_rv) = loop {
        attempts += 1;
        let kv = state
            .store
            .get(&pod_key)?
            .ok_or_else(|| ApiError::not_found("", "pods", name))?;
        let pod = decode(&kv)?;
        let pod_rv = kv.mod_revision.to_string();
        if !can_ignore_budgets(&pod) {
            break (pod, pod_rv);
        }
        let d = if enforce_resource_version(&pod) && precondition_rv(&dopts).is_none() {
            // Not racing another budget-minded process: the pod as read, or nothing.
            with_precondition_rv(&dopts, &pod_rv)
        } else {
            dopts.clone()
        };
        match delete_with_condition(state, t, name, &d, opts, dry_run).await {
            Ok(()) => return Ok(Reply::ok(201, success(None))),
            Err(e) if e.code == 409 && precondition_rv(&dopts).is_none() && attempts < RETRIES => {
                continue
            }
            Err(e) => return Err(e),
        }
    };

    let pinfo = pdb_info()?;
    let (kvs, _) = state.store.list(&prefix(pinfo, Some(ns)))?;
    let mut all = Vec::with_capacity(kvs.len());
    for kv in &kvs {
        all.push((decode(kv)?, kv.mod_revision));
    }
    let mut pdbs = covering(&pod, all);
    if pdbs.len() > 1 {
        // kube returns this Status as the result, with its code.
        return Ok(Reply::ok(
            500,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                   "status": "Failure", "message": MULTIPLE_BUDGETS, "code": 500}),
        ));
    }
    let mut pinned = false;
    let mut pdb_name = String::new();
    if let Some((pdb, rev)) = pdbs.pop() {
        pdb_name = name_of(&pdb).to_string();
        if !pod_ready(&pod) && unhealthy_may_go(&pdb) {
            pinned = true;
        } else {
            decrement(state, pinfo, ns, name, pdb, rev, dry_run).await?;
        }
    }
    let d = if pinned {
        with_precondition_rv(&dopts, &pod_rv)
    } else {
        dopts.clone()
    };
    match delete_with_condition(state, t, name, &d, opts, dry_run).await {
        Ok(()) => Ok(Reply::ok(201, success(None))),
        // The pod changed since its unhealthiness was judged: let the client retry.
        Err(e) if e.code == 409 && pinned && precondition_rv(&dopts).is_none() => {
            Err(still_processed(&pdb_name))
        }
        Err(e) => Err(e),
    }
}

/// Decrements the budget for the pod, re-reading it on a conflict.
async fn decrement(
    state: &ApiState,
    pinfo: &'static ResourceInfo,
    ns: &str,
    pod: &str,
    mut pdb: Value,
    mut rev: i64,
    dry_run: bool,
) -> ApiResult<()> {
    let pdb_name = name_of(&pdb).to_string();
    let k = key(pinfo, Some(ns), &pdb_name);
    for _ in 0..RETRIES {
        let new = check_and_decrement(&pdb, pod, &now_ts(), dry_run)?;
        if dry_run {
            return Ok(());
        }
        match state.store.update(&k, &encode(&new), Some(rev)) {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => {
                let kv = state.store.get(&k)?.ok_or_else(|| {
                    ApiError::not_found("policy", "poddisruptionbudgets", &pdb_name)
                })?;
                pdb = decode(&kv)?;
                rev = kv.mod_revision;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        504,
        "Timeout",
        format!("couldn't update PodDisruptionBudget {pdb_name:?} due to conflicts"),
    )
    .with_details(json!({"retryAfterSeconds": 10})))
}

/// kube's `addConditionAndDeletePod`: unless dry-run, the pod gets the
/// `DisruptionTarget` condition (checked against the delete's preconditions, which then
/// follow the pod's new revision), then is deleted as any delete is.
async fn delete_with_condition(
    state: &ApiState,
    t: &RequestInfo,
    name: &str,
    dopts: &Value,
    opts: &WriteOpts,
    dry_run: bool,
) -> ApiResult<()> {
    let mut dopts = dopts.clone();
    if !dry_run {
        let k = key(t.info, t.namespace.as_deref(), name);
        let mut done = false;
        for _ in 0..RETRIES {
            let kv = state
                .store
                .get(&k)?
                .ok_or_else(|| ApiError::not_found("", "pods", name))?;
            let mut pod = decode(&kv)?;
            check_preconditions(&dopts, &pod, kv.mod_revision, name)?;
            set_disruption_target(&mut pod, &now_ts());
            match state.store.update(&k, &encode(&pod), Some(kv.mod_revision)) {
                Ok(rev) => {
                    if precondition_rv(&dopts).is_some() {
                        dopts = with_precondition_rv(&dopts, &rev.to_string());
                    }
                    done = true;
                    break;
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if !done {
            return Err(ApiError::conflict("", "pods", name));
        }
    }
    delete_object(
        state,
        t.info,
        t.namespace.as_deref(),
        name,
        &dopts,
        &Query::default(),
        opts,
    )
    .await
    .map(|_| ())
}

fn check_preconditions(dopts: &Value, pod: &Value, rev: i64, name: &str) -> ApiResult<()> {
    if let Some(uid) = dopts
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    {
        let have = meta_str(pod, "uid").unwrap_or_default();
        if uid != have {
            return Err(ApiError::conflict_msg(
                "",
                "pods",
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            ));
        }
    }
    if let Some(rv) = precondition_rv(dopts).filter(|r| !r.is_empty()) {
        if rv != rev.to_string() {
            return Err(ApiError::conflict_msg("", "pods", name, &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {rev}"
            )));
        }
    }
    Ok(())
}

/// Sets the pod's `DisruptionTarget` condition as kube's `UpdatePodCondition` does (the
/// transition time moves only when the status changes).
fn set_disruption_target(pod: &mut Value, now: &str) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(conds) = pod["status"]["conditions"].as_array_mut() else {
        return;
    };
    let new = json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": now, "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting"});
    match conds.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        Some(c) => {
            let keep_time = c["status"] == "True";
            let time = c["lastTransitionTime"].clone();
            *c = new;
            if keep_time {
                c["lastTransitionTime"] = time;
            }
        }
        None => conds.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, ready: bool) -> Value {
        json!({"metadata": {"name": "web-1", "labels": {"app": "web"}},
               "status": {"phase": phase, "conditions": [
                   {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn pdb(name: &str, selector: Value, status: Value) -> Value {
        json!({"metadata": {"name": name, "generation": 1},
               "spec": {"minAvailable": 2, "selector": selector}, "status": status})
    }

    #[test]
    fn terminal_pending_and_terminating_pods_ignore_budgets() {
        assert!(can_ignore_budgets(&pod("Succeeded", false)));
        assert!(can_ignore_budgets(&pod("Failed", false)));
        assert!(can_ignore_budgets(&pod("Pending", false)));
        assert!(!can_ignore_budgets(&pod("Running", true)));
        let mut p = pod("Running", true);
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(can_ignore_budgets(&p));
        assert!(!enforce_resource_version(&p));
        assert!(enforce_resource_version(&pod("Pending", false)));
    }

    #[test]
    fn budgets_cover_by_selector_null_picks_none_empty_all() {
        let p = pod("Running", true);
        let budgets = vec![
            (
                pdb("match", json!({"matchLabels": {"app": "web"}}), json!({})),
                1,
            ),
            (
                pdb("other", json!({"matchLabels": {"app": "db"}}), json!({})),
                2,
            ),
            (pdb("none", Value::Null, json!({})), 3),
            (pdb("all", json!({}), json!({})), 4),
            (
                pdb(
                    "expr",
                    json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}),
                    json!({}),
                ),
                5,
            ),
            (
                pdb(
                    "bad",
                    json!({"matchExpressions": [{"key": "app", "operator": "Near"}]}),
                    json!({}),
                ),
                6,
            ),
        ];
        let names: Vec<String> = covering(&p, budgets)
            .iter()
            .map(|(b, _)| name_of(b).to_string())
            .collect();
        assert_eq!(names, vec!["match", "all", "expr"]);
    }

    #[test]
    fn no_disruption_left_is_429_with_kubes_cause() {
        let b = pdb(
            "web",
            json!({}),
            json!({"observedGeneration": 1, "disruptionsAllowed": 0, "desiredHealthy": 2, "currentHealthy": 2}),
        );
        let e = check_and_decrement(&b, "web-1", "2026-01-01T00:00:00Z", false).unwrap_err();
        let s = e.to_status();
        assert_eq!(s["code"], 429);
        assert_eq!(s["reason"], "TooManyRequests");
        assert_eq!(s["message"], VIOLATION);
        assert_eq!(
            s["details"]["causes"],
            json!([{"reason": "DisruptionBudget",
                    "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}])
        );
    }

    #[test]
    fn a_stale_budget_is_still_being_processed() {
        let mut b = pdb(
            "web",
            json!({}),
            json!({"observedGeneration": 1, "disruptionsAllowed": 3}),
        );
        b["metadata"]["generation"] = json!(2);
        let s = check_and_decrement(&b, "web-1", "t", false)
            .unwrap_err()
            .to_status();
        assert_eq!(s["code"], 429);
        assert_eq!(
            s["details"]["causes"][0]["message"],
            "The disruption budget web is still being processed by the server."
        );
        assert_eq!(s["details"]["retryAfterSeconds"], 10);
        let b = pdb(
            "web",
            json!({}),
            json!({"observedGeneration": 1, "disruptionsAllowed": -1}),
        );
        assert_eq!(
            check_and_decrement(&b, "web-1", "t", false)
                .unwrap_err()
                .code,
            403
        );
    }

    #[test]
    fn an_allowed_disruption_is_taken_and_recorded() {
        let b = pdb(
            "web",
            json!({}),
            json!({"observedGeneration": 1, "disruptionsAllowed": 2,
                   "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                                   "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}),
        );
        let now = "2026-01-01T00:00:00Z";
        let out = check_and_decrement(&b, "web-1", now, false).unwrap();
        assert_eq!(out["status"]["disruptionsAllowed"], 1);
        assert_eq!(out["status"]["disruptedPods"], json!({"web-1": now}));
        assert_eq!(out["status"]["conditions"][0]["status"], "True", "one left");
        // The last one: the condition turns False.
        let out = check_and_decrement(&out, "web-2", now, false).unwrap();
        assert_eq!(out["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            out["status"]["disruptedPods"],
            json!({"web-1": now, "web-2": now})
        );
        let c = &out["status"]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("InsufficientPods"))
        );
        assert_eq!(c["lastTransitionTime"], now);
        // A dry run records nothing.
        let out = check_and_decrement(&b, "web-1", now, true).unwrap();
        assert!(out["status"]["disruptedPods"].is_null());
    }

    #[test]
    fn unready_pods_go_by_the_unhealthy_pod_eviction_policy() {
        let healthy = json!({"desiredHealthy": 2, "currentHealthy": 2});
        let short = json!({"desiredHealthy": 2, "currentHealthy": 1});
        assert!(unhealthy_may_go(&pdb("web", json!({}), healthy.clone())));
        assert!(!unhealthy_may_go(&pdb("web", json!({}), short.clone())));
        assert!(!unhealthy_may_go(&pdb(
            "web",
            json!({}),
            json!({"desiredHealthy": 0})
        )));
        let mut always = pdb("web", json!({}), short);
        always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert!(unhealthy_may_go(&always));
        let mut if_healthy = pdb("web", json!({}), healthy);
        if_healthy["spec"]["unhealthyPodEvictionPolicy"] = json!("IfHealthyBudget");
        assert!(unhealthy_may_go(&if_healthy));
    }

    #[test]
    fn the_disruption_target_condition_is_set_once() {
        let mut p = pod("Running", true);
        set_disruption_target(&mut p, "t1");
        set_disruption_target(&mut p, "t2");
        let conds = p["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[1]["reason"], "EvictionByEvictionAPI");
        assert_eq!(conds[1]["message"], "Eviction API: evicting");
        assert_eq!(conds[1]["lastTransitionTime"], "t1");
    }
}
