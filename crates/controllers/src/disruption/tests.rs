//! Unit tests of the disruption controller's arithmetic.

use super::*;
use serde_json::{json, Value};

fn pdb(spec: Value, status: Value) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "generation": 2},
        "spec": spec,
        "status": status,
    }))
    .expect("pdb")
}

fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    });
    if deleting {
        v["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
    }
    Arc::new(serde_json::from_value(v).expect("pod"))
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

#[test]
fn percentages_round_as_kube() {
    let pct = |s: &str| IntOrString::String(s.to_string());
    assert_eq!(scaled_value(&IntOrString::Int(3), 10, true), Ok(3));
    assert_eq!(scaled_value(&pct("50%"), 5, true), Ok(3));
    assert_eq!(scaled_value(&pct("50%"), 5, false), Ok(2));
    assert_eq!(scaled_value(&pct("0%"), 5, true), Ok(0));
    assert_eq!(scaled_value(&pct("100%"), 7, true), Ok(7));
    assert_eq!(scaled_value(&pct("34%"), 3, true), Ok(2));
    assert!(scaled_value(&pct("half"), 4, true)
        .unwrap_err()
        .contains("string is not a percentage"));
}

#[test]
fn desired_healthy_from_min_available_and_max_unavailable() {
    let no_scale = || -> anyhow::Result<i32> { panic!("an integer minAvailable needs no scale") };
    // minAvailable as a number: the selected pods are the expected ones.
    let b = pdb(json!({"minAvailable": 2, "selector": {}}), json!({}));
    assert_eq!(desired_healthy(&b, 3, no_scale).unwrap(), (3, 2));
    // minAvailable as a percentage of the controllers' scale, rounded up.
    let b = pdb(json!({"minAvailable": "50%", "selector": {}}), json!({}));
    assert_eq!(desired_healthy(&b, 2, || Ok(5)).unwrap(), (5, 3));
    // maxUnavailable: scale minus the (rounded up) allowance, never below zero.
    let b = pdb(json!({"maxUnavailable": 1, "selector": {}}), json!({}));
    assert_eq!(desired_healthy(&b, 4, || Ok(4)).unwrap(), (4, 3));
    let b = pdb(json!({"maxUnavailable": "30%", "selector": {}}), json!({}));
    assert_eq!(desired_healthy(&b, 4, || Ok(4)).unwrap(), (4, 2));
    let b = pdb(json!({"maxUnavailable": 5, "selector": {}}), json!({}));
    assert_eq!(desired_healthy(&b, 2, || Ok(2)).unwrap(), (2, 0));
    // The scale's failure is the sync's.
    let b = pdb(json!({"maxUnavailable": 1, "selector": {}}), json!({}));
    let err = desired_healthy(&b, 1, || Err(anyhow!("found no controllers for pod \"a\"")));
    assert!(err.is_err());
}

#[test]
fn healthy_pods_are_ready_not_terminating_and_not_just_evicted() {
    let now = ts("2026-01-01T00:10:00Z");
    let pods = vec![
        pod("a", true, false),
        pod("b", true, false),
        pod("c", false, false),
        pod("d", true, true),
        pod("e", true, false),
    ];
    // e was evicted a minute ago: not healthy for another minute; a was evicted long
    // ago and is still there: it counts again and leaves the map; d is terminating.
    let b = pdb(
        json!({"minAvailable": 1, "selector": {}}),
        json!({"disruptedPods": {
            "e": "2026-01-01T00:09:00Z",
            "a": "2026-01-01T00:00:00Z",
            "d": "2026-01-01T00:09:30Z",
            "gone": "2026-01-01T00:09:30Z"}}),
    );
    let (kept, recheck, timed_out) = disrupted_pod_map(&b, &pods, now);
    assert_eq!(kept.keys().collect::<Vec<_>>(), vec!["e"]);
    assert_eq!(recheck, Some(ts("2026-01-01T00:11:00Z")));
    assert_eq!(
        timed_out.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
        vec!["a"]
    );
    assert_eq!(count_healthy(&pods, &kept, now), 2, "a and b");
}

#[test]
fn status_allows_what_is_above_the_budget_and_sets_the_condition() {
    let b = pdb(json!({"minAvailable": 2, "selector": {}}), json!({}));
    let s = next_status(&b, 3, 2, 3, BTreeMap::new()).expect("a new status");
    assert_eq!(
        (
            s.current_healthy,
            s.desired_healthy,
            s.expected_pods,
            s.disruptions_allowed
        ),
        (3, 2, 3, 1)
    );
    assert_eq!(s.observed_generation, Some(2));
    let c = &s.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        (DISRUPTION_ALLOWED, "True", SUFFICIENT_PODS)
    );
    assert_eq!(c.observed_generation, Some(2));

    // Written once, the same inputs change nothing.
    let mut written = b.clone();
    written.status = Some(s.clone());
    assert!(next_status(&written, 3, 2, 3, BTreeMap::new()).is_none());

    // Below the budget: none allowed, the condition turns False and moves its time.
    let mut t = s.clone();
    t.conditions.as_mut().unwrap()[0].last_transition_time = Time(ts("2020-01-01T00:00:00Z"));
    written.status = Some(t);
    let s2 = next_status(&written, 1, 2, 3, BTreeMap::new()).expect("changed");
    assert_eq!(s2.disruptions_allowed, 0);
    let c = &s2.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", INSUFFICIENT_PODS)
    );
    assert_ne!(c.last_transition_time.0, ts("2020-01-01T00:00:00Z"));
    assert_eq!(s2.conditions.as_ref().unwrap().len(), 1);

    // No expected pods: nothing may be disrupted, whatever the arithmetic says.
    let b = pdb(json!({"maxUnavailable": 1, "selector": {}}), json!({}));
    assert_eq!(
        next_status(&b, 0, -1, 0, BTreeMap::new())
            .unwrap()
            .disruptions_allowed,
        0
    );
}

#[test]
fn a_missing_selector_picks_nothing_an_empty_one_everything() {
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    assert!(!selects(
        &pdb(json!({"minAvailable": 1}), json!({})),
        &labels
    ));
    assert!(selects(&pdb(json!({"selector": {}}), json!({})), &labels));
    assert!(selects(
        &pdb(
            json!({"selector": {"matchLabels": {"app": "web"}}}),
            json!({})
        ),
        &labels
    ));
    assert!(!selects(
        &pdb(
            json!({"selector": {"matchLabels": {"app": "db"}}}),
            json!({})
        ),
        &labels
    ));
}
