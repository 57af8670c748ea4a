//! The Deployment controller's arithmetic (deploymentutil in Kubernetes) as pure
//! functions: maxSurge/maxUnavailable resolution, how far the new ReplicaSet may grow,
//! how far old ones may shrink, and proportional scaling of all of them.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Annotation with the Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// Annotation with replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// Annotation listing the revisions a ReplicaSet had before (rollbacks).
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";

/// `intstr.GetScaledValueFromIntOrPercent`: an int, or a percentage of `total` rounded up
/// or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let prod = pct * total as i64;
            if round_up {
                ((prod + 99) / 100) as i32
            } else {
                (prod / 100) as i32
            }
        }
    }
}

/// The Deployment's desired replicas (default 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Whether the Deployment uses the RollingUpdate strategy (the default).
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// maxSurge and maxUnavailable resolved against `desired` (surge rounds up, unavailable
/// down; both zero becomes unavailable 1), deploymentutil.ResolveFenceposts.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> (i32, i32) {
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(max_surge.unwrap_or(&quarter), desired, true);
    let unavailable = scaled_value(max_unavailable.unwrap_or(&quarter), desired, false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
}

/// Resolved maxSurge (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// Resolved maxUnavailable, at most the replicas (0 for Recreate or no replicas).
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// A ReplicaSet's spec.replicas.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// A ReplicaSet's status.availableReplicas.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Sum of spec.replicas.
pub fn replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs)).sum()
}

/// The new ReplicaSet's next size in a rollout (deploymentutil.NewRSNewReplicas).
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    let want = replicas(d);
    if !is_rolling(d) {
        return want;
    }
    let current = replica_count(all);
    let max_total = want + max_surge(d);
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(want - rs_replicas(new_rs));
    rs_replicas(new_rs) + up.max(0)
}

/// How many old pods may go now: (allPods - minAvailable - new RS's unavailable pods).
pub fn max_scaled_down(d: &Deployment, all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> i32 {
    let all_pods = replica_count(all);
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = new_rs
        .map(|rs| rs_replicas(rs) - rs_available(rs))
        .unwrap_or(0);
    all_pods - min_available - new_unavailable
}

/// First scale-down step: shrink old ReplicaSets by their unhealthy pods, oldest first,
/// at most `max_cleanup` in total. `olds` must be sorted oldest first. Returns new sizes.
pub fn cleanup_unhealthy(olds: &[&ReplicaSet], max_cleanup: i32) -> Vec<i32> {
    let mut total = 0;
    olds.iter()
        .map(|rs| {
            let spec = rs_replicas(rs);
            if total >= max_cleanup || spec == 0 {
                return spec;
            }
            let unhealthy = spec - rs_available(rs);
            if unhealthy <= 0 {
                return spec;
            }
            let down = (max_cleanup - total).min(unhealthy);
            total += down;
            spec - down
        })
        .collect()
}

/// Second step: scale old ReplicaSets down by the available pods above minAvailable,
/// oldest first (scaleDownOldReplicaSetsForRollingUpdate). `available` is the available
/// pod count of all ReplicaSets. Returns new sizes.
pub fn scale_down_old_available(d: &Deployment, olds: &[&ReplicaSet], available: i32) -> Vec<i32> {
    let min_available = replicas(d) - max_unavailable(d);
    let mut todo = (available - min_available).max(0);
    olds.iter()
        .map(|rs| {
            let spec = rs_replicas(rs);
            if todo == 0 || spec == 0 {
                return spec;
            }
            let down = spec.min(todo);
            todo -= down;
            spec - down
        })
        .collect()
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// The desired-replicas annotation of a ReplicaSet.
pub fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_i32(rs, DESIRED_REPLICAS_ANNOTATION)
}

fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = annotation_i32(rs, MAX_REPLICAS_ANNOTATION)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = rs_replicas(rs) as f64 * deployment_replicas as f64 / annotated as f64;
    size.round() as i32 - rs_replicas(rs)
}

/// Sizes of the active ReplicaSets after proportional scaling of a rolling Deployment
/// whose replicas changed mid-rollout (DeploymentController.scale). `active` are the
/// ReplicaSets with replicas > 0; the result is in the order used (see the code).
pub fn proportional_sizes<'a>(
    d: &Deployment,
    active: &[&'a ReplicaSet],
) -> Vec<(&'a ReplicaSet, i32)> {
    let allowed = if replicas(d) > 0 {
        replicas(d) + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - replica_count(active);
    let mut sorted: Vec<&ReplicaSet> = active.to_vec();
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if to_add > 0 {
        // Largest first, newer first on ties.
        sorted.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| created(b).cmp(&created(a)))
        });
    } else {
        // Largest first, older first on ties.
        sorted.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| created(a).cmp(&created(b)))
        });
    }
    let mut added = 0;
    let mut sizes: Vec<(&ReplicaSet, i32)> = Vec::new();
    for rs in &sorted {
        if to_add == 0 {
            sizes.push((rs, rs_replicas(rs)));
            continue;
        }
        let proportion = if rs_replicas(rs) == 0 || to_add == added {
            0
        } else {
            let f = fraction(rs, d);
            let left = to_add - added;
            if to_add > 0 {
                f.min(left)
            } else {
                f.max(left)
            }
        };
        sizes.push((rs, rs_replicas(rs) + proportion));
        added += proportion;
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(
        replicas: i32,
        surge: serde_json::Value,
        unavailable: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {}, "template": {},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}},
        }))
        .expect("deployment")
    }

    fn rs(
        name: &str,
        replicas: i32,
        available: i32,
        created: i64,
        max_replicas: Option<i32>,
    ) -> ReplicaSet {
        let mut v = json!({
            "metadata": {"name": name, "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(created).expect("ts").to_string()},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "availableReplicas": available},
        });
        if let Some(m) = max_replicas {
            v["metadata"]["annotations"] = json!({MAX_REPLICAS_ANNOTATION: m.to_string()});
        }
        serde_json::from_value(v).expect("rs")
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(&p("25%"), 4, true), 1);
        assert_eq!(scaled_value(&p("25%"), 5, true), 2);
        assert_eq!(scaled_value(&p("25%"), 5, false), 1);
        assert_eq!(scaled_value(&p("10%"), 3, false), 0);
        assert_eq!(scaled_value(&IntOrString::Int(3), 10, false), 3);
        assert_eq!(
            resolve_fenceposts(Some(&p("0%")), Some(&p("10%")), 3),
            (0, 1)
        );
        let d = deployment(4, json!("25%"), json!("25%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 1));
        let d = deployment(2, json!(0), json!(5));
        assert_eq!(max_unavailable(&d), 2, "capped at replicas");
    }

    #[test]
    fn rolling_update_steps() {
        // replicas 4, surge 1, unavailable 1: old RS at 4 available, new RS at 0.
        let d = deployment(4, json!(1), json!(1));
        let old = rs("old", 4, 4, 1, None);
        let new = rs("new", 0, 0, 2, None);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let new = rs("new", 1, 0, 2, None);
        // allPods 5 - minAvailable 3 - newUnavailable 1 = 1 old pod may go.
        assert_eq!(max_scaled_down(&d, &[&old, &new], Some(&new)), 1);
        assert_eq!(
            cleanup_unhealthy(&[&old], 1),
            vec![4],
            "old pods are healthy"
        );
        assert_eq!(scale_down_old_available(&d, &[&old], 4), vec![3]);
        let unhealthy = rs("old", 4, 2, 1, None);
        assert_eq!(cleanup_unhealthy(&[&unhealthy], 1), vec![3]);
    }

    #[test]
    fn proportional_scaling() {
        // 10 -> 15 replicas mid-rollout with surge 3: old 8 + new 5 = 13 (max 13).
        let d = deployment(15, json!(3), json!(2));
        let old = rs("old", 8, 8, 1, Some(13));
        let new = rs("new", 5, 0, 2, Some(13));
        let sizes: Vec<(String, i32)> = proportional_sizes(&d, &[&old, &new])
            .into_iter()
            .map(|(rs, n)| (rs.metadata.name.clone().unwrap_or_default(), n))
            .collect();
        // allowed 18, add 5: old gets round(8*18/13)-8 = 3, new gets the remaining 2.
        assert_eq!(sizes, vec![("old".to_string(), 11), ("new".to_string(), 7)]);
    }
}
