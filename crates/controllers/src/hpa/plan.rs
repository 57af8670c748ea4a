//! The HorizontalPodAutoscaler's decisions, pure (kube's `replica_calculator.go` and the
//! normalisation of `horizontal.go`): a replica count proposed per metric from the pods'
//! usage, then stabilised over the recent recommendations and limited by min/max and
//! the scaling rate (the default rules, or the `behavior` field's windows and policies).

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// kube's `--horizontal-pod-autoscaler-tolerance`: no scaling while the usage ratio is
/// within 10% of 1.
pub const TOLERANCE: f64 = 0.1;
/// `--horizontal-pod-autoscaler-downscale-stabilization`: a scale-down takes the
/// highest recommendation of this window.
pub const DOWNSCALE_STABILISATION: SignedDuration = SignedDuration::from_secs(300);
/// `--horizontal-pod-autoscaler-cpu-initialization-period`.
pub const CPU_INITIALIZATION_PERIOD: SignedDuration = SignedDuration::from_secs(300);
/// `--horizontal-pod-autoscaler-initial-readiness-delay`.
pub const INITIAL_READINESS_DELAY: SignedDuration = SignedDuration::from_secs(30);

/// What the calculation needs of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    /// Name.
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    /// Being deleted.
    pub deleting: bool,
    /// The Ready condition: (status is True, last transition).
    pub ready: Option<(bool, Timestamp)>,
    /// `status.startTime`.
    pub start_time: Option<Timestamp>,
    /// The sum of its containers' requests of the resource (milli-units), or the
    /// first container without one.
    pub request: Result<i64, String>,
}

/// One pod's usage of the resource (milli-units) over `window` ending at `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodMetric {
    /// Milli-units (millicores, or bytes × 1000).
    pub value: i64,
    /// End of the window.
    pub timestamp: Timestamp,
    /// The window.
    pub window: SignedDuration,
}

/// What a resource metric targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// A percentage of the pods' requests.
    Utilization(i32),
    /// An average usage per pod (milli-units).
    AverageValue(i64),
}

/// A proposal of one resource metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    /// The replica count it asks for.
    pub replicas: i32,
    /// The current utilisation (percent of requests), for a utilisation target.
    pub utilization: Option<i32>,
    /// The current average usage per pod (milli-units).
    pub average: i64,
}

struct Groups {
    ready: i32,
    unready: Vec<String>,
    missing: Vec<String>,
    ignored: Vec<String>,
}

/// kube's `groupPods`: which pods count, which lack metrics, which are not ready yet
/// (CPU only: a pod in its first 5 minutes counts once a full window of usage follows
/// its readiness), which are ignored (deleted, failed, pending).
fn group_pods(
    pods: &[PodInfo],
    metrics: &BTreeMap<String, PodMetric>,
    cpu: bool,
    now: Timestamp,
) -> Groups {
    let mut g = Groups {
        ready: 0,
        unready: Vec::new(),
        missing: Vec::new(),
        ignored: Vec::new(),
    };
    for p in pods {
        if p.deleting || p.phase == "Failed" || p.phase == "Pending" {
            g.ignored.push(p.name.clone());
            continue;
        }
        let Some(m) = metrics.get(&p.name) else {
            g.missing.push(p.name.clone());
            continue;
        };
        if cpu {
            let unready = match (p.ready, p.start_time) {
                (Some((ready, changed)), Some(start)) => {
                    if start + CPU_INITIALIZATION_PERIOD > now {
                        !ready || m.timestamp < changed + m.window
                    } else {
                        !ready && start + INITIAL_READINESS_DELAY > changed
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.push(p.name.clone());
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// The usage ratio of `metrics` against the target, the utilisation and the average.
fn ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: Target,
) -> Result<(f64, Option<i32>, i64), String> {
    match target {
        Target::Utilization(t) => {
            let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
            for (pod, v) in metrics {
                if let Some(r) = requests.get(pod) {
                    used += v;
                    requested += r;
                    n += 1;
                }
            }
            if requested == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = (used * 100 / requested) as i32;
            Ok((
                f64::from(utilization) / f64::from(t),
                Some(utilization),
                used / n,
            ))
        }
        Target::AverageValue(t) => {
            let sum: i64 = metrics.values().sum();
            let average = sum / metrics.len().max(1) as i64;
            Ok((average as f64 / t as f64, None, average))
        }
    }
}

/// kube's `GetResourceReplicas` / `GetRawResourceReplicas`: the replica count that
/// brings the pods' usage of one resource to the target, from `current` replicas.
pub fn resource_replicas(
    current: i32,
    target: Target,
    resource: &str,
    pods: &[PodInfo],
    metrics: &BTreeMap<String, PodMetric>,
    now: Timestamp,
) -> Result<Proposal, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let g = group_pods(pods, metrics, resource == "cpu", now);
    let mut usage: BTreeMap<String, i64> = metrics
        .iter()
        .filter(|(p, _)| !g.ignored.contains(*p) && !g.unready.contains(*p))
        .filter(|(p, _)| pods.iter().any(|x| &x.name == *p))
        .map(|(p, m)| (p.clone(), m.value))
        .collect();
    if usage.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let mut requests = BTreeMap::new();
    if matches!(target, Target::Utilization(_)) {
        for p in pods {
            match &p.request {
                Ok(r) => {
                    requests.insert(p.name.clone(), *r);
                }
                Err(container) => {
                    return Err(format!(
                        "missing request for {resource} in container {container} of Pod {}",
                        p.name
                    ))
                }
            }
        }
    }
    let (usage_ratio, utilization, average) = ratio(&usage, &requests, target)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average,
    };
    let scale_up_with_unready = !g.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if (1.0 - usage_ratio).abs() <= TOLERANCE {
            return Ok(proposal(current));
        }
        return Ok(proposal((usage_ratio * f64::from(g.ready)).ceil() as i32));
    }
    // Missing pods count as at the target when scaling down and as idle when scaling
    // up; unready ones as idle when scaling up: both dampen the change.
    for p in &g.missing {
        let v = if usage_ratio < 1.0 {
            match target {
                Target::Utilization(_) => requests.get(p).copied().unwrap_or(0),
                Target::AverageValue(t) => t,
            }
        } else {
            0
        };
        usage.insert(p.clone(), v);
    }
    if scale_up_with_unready {
        for p in &g.unready {
            usage.insert(p.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio(&usage, &requests, target)?;
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * usage.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// A recommendation remembered for stabilisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// The replica count recommended.
    pub replicas: i32,
    /// When.
    pub at: Timestamp,
}

/// A past scaling, for the behavior policies' rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleEvent {
    /// Replicas added (scale-up events) or removed (scale-down events).
    pub change: i32,
    /// When.
    pub at: Timestamp,
}

/// What the controller remembers of one HPA between syncs (kube keeps the same in
/// memory: recommendations and scale events are lost on a restart).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Recent recommendations.
    pub recommendations: Vec<Recommendation>,
    /// Recent scale-ups.
    pub ups: Vec<ScaleEvent>,
    /// Recent scale-downs.
    pub downs: Vec<ScaleEvent>,
}

/// A condition to set: (type, status, reason, message).
pub type Cond = (&'static str, bool, &'static str, String);

/// The replica count after stabilisation and limits, with the AbleToScale and
/// ScalingLimited conditions that explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The replica count to scale to.
    pub replicas: i32,
    /// AbleToScale and ScalingLimited.
    pub conditions: Vec<Cond>,
}

/// `recordInitialRecommendation`: the current count is the first recommendation.
pub fn record_initial(h: &mut History, current: i32, now: Timestamp) {
    if h.recommendations.is_empty() {
        h.recommendations.push(Recommendation {
            replicas: current,
            at: now,
        });
    }
}

fn record(h: &mut History, replicas: i32, now: Timestamp, oldest_kept: Timestamp) {
    let rec = Recommendation { replicas, at: now };
    match h.recommendations.iter().position(|r| r.at < oldest_kept) {
        Some(i) => h.recommendations[i] = rec,
        None => h.recommendations.push(rec),
    }
}

fn limited(desired: i32, stabilized: i32, reason: &'static str, message: &str) -> Cond {
    (
        "ScalingLimited",
        desired != stabilized,
        reason,
        message.to_string(),
    )
}

const STABLE: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN_RANGE: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

fn able(r: (&'static str, &str)) -> Cond {
    ("AbleToScale", true, r.0, r.1.to_string())
}

/// `normalizeDesiredReplicas`, for an HPA without `behavior`: the highest
/// recommendation of the last 5 minutes, then min/max and at most
/// `max(2 × current, 4)`.
pub fn normalize(
    h: &mut History,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Timestamp,
) -> Normalized {
    let cutoff = now - DOWNSCALE_STABILISATION;
    let stabilized = h
        .recommendations
        .iter()
        .filter(|r| r.at >= cutoff)
        .map(|r| r.replicas)
        .fold(desired, i32::max);
    record(h, desired, now, cutoff);
    let able = able(if stabilized != desired {
        DOWN_STABILIZED
    } else {
        STABLE
    });
    let up_limit = (2 * current).max(4);
    let (allowed_max, over) = if max > up_limit {
        (up_limit, UP_LIMIT)
    } else {
        (max, TOO_MANY)
    };
    let (replicas, why) = if stabilized < min {
        (min, TOO_FEW)
    } else if stabilized > allowed_max {
        (allowed_max, over)
    } else {
        (stabilized, WITHIN_RANGE)
    };
    Normalized {
        replicas,
        conditions: vec![able, limited(replicas, stabilized, why.0, why.1)],
    }
}

/// The `behavior` with kube's defaults filled in (`GenerateHPAScaleUpRules`, ...): up
/// at once by 4 pods or 100% per 15 s, whichever is more; down by 100% per 15 s after
/// the 5-minute window.
pub fn with_defaults(b: &HorizontalPodAutoscalerBehavior) -> (HPAScalingRules, HPAScalingRules) {
    use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;
    let policy = |type_: &str, value: i32| HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds: 15,
    };
    let mut up = b.scale_up.clone().unwrap_or_default();
    if up.policies.as_ref().is_none_or(|p| p.is_empty()) {
        up.policies = Some(vec![policy("Pods", 4), policy("Percent", 100)]);
    }
    up.select_policy.get_or_insert_with(|| "Max".into());
    up.stabilization_window_seconds.get_or_insert(0);
    let mut down = b.scale_down.clone().unwrap_or_default();
    if down.policies.as_ref().is_none_or(|p| p.is_empty()) {
        down.policies = Some(vec![policy("Percent", 100)]);
    }
    down.select_policy.get_or_insert_with(|| "Max".into());
    down.stabilization_window_seconds
        .get_or_insert(DOWNSCALE_STABILISATION.as_secs() as i32);
    (up, down)
}

fn changed_within(events: &[ScaleEvent], period_seconds: i32, now: Timestamp) -> i32 {
    let cutoff = now - SignedDuration::from_secs(i64::from(period_seconds));
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .sum()
}

/// `calculateScaleUpLimitWithScalingRules` and its scale-down twin.
fn rate_limit(h: &History, current: i32, rules: &HPAScalingRules, up: bool, now: Timestamp) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    // Max picks the policy allowing the biggest change: the highest limit up, the
    // lowest down.
    let biggest = (select != "Min") == up;
    let mut result: Option<i32> = None;
    for p in rules.policies.iter().flatten() {
        let start = current - changed_within(&h.ups, p.period_seconds, now)
            + changed_within(&h.downs, p.period_seconds, now);
        let proposed = match (p.type_.as_str(), up) {
            ("Pods", true) => start + p.value,
            ("Pods", false) => start - p.value,
            (_, true) => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
            (_, false) => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        result = Some(match result {
            None => proposed,
            Some(r) if biggest => r.max(proposed),
            Some(r) => r.min(proposed),
        });
    }
    result.unwrap_or(current)
}

/// `normalizeDesiredReplicasWithBehaviors`: the stabilisation windows of both
/// directions, then min/max and the policies' rates.
pub fn normalize_with_behavior(
    h: &mut History,
    behavior: &HorizontalPodAutoscalerBehavior,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Timestamp,
) -> Normalized {
    let (up, down) = with_defaults(behavior);
    let up_window =
        SignedDuration::from_secs(i64::from(up.stabilization_window_seconds.unwrap_or(0)));
    let down_window =
        SignedDuration::from_secs(i64::from(down.stabilization_window_seconds.unwrap_or(0)));
    let (up_cut, down_cut) = (now - up_window, now - down_window);
    let obsolete = now - up_window.max(down_window);
    let mut up_rec = desired;
    let mut down_rec = desired;
    for r in &h.recommendations {
        if r.at > up_cut {
            up_rec = up_rec.min(r.replicas);
        }
        if r.at > down_cut {
            down_rec = down_rec.max(r.replicas);
        }
    }
    let stabilized = current.max(up_rec).min(down_rec);
    record(h, desired, now, obsolete);
    let able = able(if stabilized == desired {
        STABLE
    } else if desired >= current {
        UP_STABILIZED
    } else {
        DOWN_STABILIZED
    });
    let (replicas, why) = if stabilized > current {
        let limit = rate_limit(h, current, &up, true, now).max(current);
        let (allowed, why) = if max > limit {
            (limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if stabilized > allowed {
            (allowed, why)
        } else {
            (stabilized, WITHIN_RANGE)
        }
    } else if stabilized < current {
        let limit = rate_limit(h, current, &down, false, now).min(current);
        let (allowed, why) = if min < limit {
            (limit, DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if stabilized < allowed {
            (allowed, why)
        } else {
            (stabilized, WITHIN_RANGE)
        }
    } else {
        (stabilized, WITHIN_RANGE)
    };
    Normalized {
        replicas,
        conditions: vec![able, limited(replicas, stabilized, why.0, why.1)],
    }
}

/// `storeScaleEvent`: remembers a scaling for the policies' rates (only with a
/// `behavior`), dropping events older than the longest policy period.
pub fn store_scale_event(
    h: &mut History,
    behavior: &HorizontalPodAutoscalerBehavior,
    from: i32,
    to: i32,
    now: Timestamp,
) {
    let (up, down) = with_defaults(behavior);
    let longest = |r: &HPAScalingRules| {
        r.policies
            .iter()
            .flatten()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0)
    };
    let (events, rules, change) = if to > from {
        (&mut h.ups, &up, to - from)
    } else {
        (&mut h.downs, &down, from - to)
    };
    let cutoff = now - SignedDuration::from_secs(i64::from(longest(rules)));
    events.retain(|e| e.at > cutoff);
    events.push(ScaleEvent { change, at: now });
}

/// Parses a Go duration as metrics-server writes `window` (`10s`, `1m0s`, `1.5s`,
/// `500ms`); None when malformed.
pub fn parse_go_duration(s: &str) -> Option<SignedDuration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(SignedDuration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("time")
    }

    /// A running pod, ready since long ago, requesting `request` millicores.
    fn pod(name: &str, request: i64) -> PodInfo {
        PodInfo {
            name: name.into(),
            phase: "Running".into(),
            deleting: false,
            ready: Some((true, t(-1000))),
            start_time: Some(t(-1000)),
            request: Ok(request),
        }
    }

    fn metrics(values: &[(&str, i64)]) -> BTreeMap<String, PodMetric> {
        values
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    PodMetric {
                        value: *v,
                        timestamp: t(0),
                        window: SignedDuration::from_secs(10),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn utilization_above_target_scales_up_by_the_ratio() {
        let pods = [pod("a", 100), pod("b", 100)];
        // 90% of the requests against a 50% target: ceil(1.8 × 2) = 4.
        let p = resource_replicas(
            2,
            Target::Utilization(50),
            "cpu",
            &pods,
            &metrics(&[("a", 90), ("b", 90)]),
            t(0),
        )
        .expect("proposal");
        assert_eq!(
            p,
            Proposal {
                replicas: 4,
                utilization: Some(90),
                average: 90
            }
        );
    }

    #[test]
    fn within_the_tolerance_nothing_changes() {
        let pods = [pod("a", 100), pod("b", 100)];
        // 54% against 50%: ratio 1.08, inside 10%.
        let p = resource_replicas(
            2,
            Target::Utilization(50),
            "cpu",
            &pods,
            &metrics(&[("a", 54), ("b", 54)]),
            t(0),
        )
        .expect("proposal");
        assert_eq!(p.replicas, 2);
        // 56%: ratio 1.12, outside: ceil(1.12 × 2) = 3.
        let p = resource_replicas(
            2,
            Target::Utilization(50),
            "cpu",
            &pods,
            &metrics(&[("a", 56), ("b", 56)]),
            t(0),
        )
        .expect("proposal");
        assert_eq!(p.replicas, 3);
    }

    #[test]
    fn missing_metrics_dampen_the_change() {
        let pods = [pod("a", 100), pod("b", 100), pod("c", 100)];
        // Scaling up: the pod without metrics counts as idle. (100+100+0)% / 3 = 66%
        // of a 50% target: ceil(1.33 × 3) = 4.
        let p = resource_replicas(
            3,
            Target::Utilization(50),
            "cpu",
            &pods,
            &metrics(&[("a", 100), ("b", 100)]),
            t(0),
        )
        .expect("proposal");
        assert_eq!(p.replicas, 4);
        assert_eq!(p.utilization, Some(100));
        // Scaling down: it counts as at its request, (10+10+100)/3 = 40%: ratio 0.8,
        // ceil(0.8 × 3) = 3 (no change).
        let p = resource_replicas(
            3,
            Target::Utilization(50),
            "cpu",
            &pods,
            &metrics(&[("a", 10), ("b", 10)]),
            t(0),
        )
        .expect("proposal");
        assert_eq!(p.replicas, 3);
    }

    #[test]
    fn a_new_pod_counts_once_a_window_follows_its_readiness() {
        let mut young = pod("a", 100);
        young.start_time = Some(t(-20));
        young.ready = Some((true, t(-5)));
        // Metric at t(0) with a 10 s window: not a full window since Ready at t(-5).
        let err = resource_replicas(
            1,
            Target::Utilization(50),
            "cpu",
            &[young.clone()],
            &metrics(&[("a", 100)]),
            t(0),
        )
        .expect_err("unready");
        assert_eq!(
            err,
            "did not receive metrics for targeted pods (pods might be unready)"
        );
        young.ready = Some((true, t(-15)));
        let p = resource_replicas(
            1,
            Target::Utilization(50),
            "cpu",
            &[young],
            &metrics(&[("a", 100)]),
            t(0),
        )
        .expect("proposal");
        assert_eq!(p.replicas, 2);
    }

    #[test]
    fn average_value_targets_and_ignored_pods() {
        let mut pending = pod("p", 100);
        pending.phase = "Pending".into();
        let pods = [pod("a", 0), pod("b", 0), pending];
        // 300 and 500 milli average 400 against 100: ceil(4 × 2) = 8.
        let p = resource_replicas(
            2,
            Target::AverageValue(100),
            "memory",
            &pods,
            &metrics(&[("a", 300), ("b", 500), ("p", 1000)]),
            t(0),
        )
        .expect("proposal");
        assert_eq!(
            p,
            Proposal {
                replicas: 8,
                utilization: None,
                average: 400
            }
        );
    }

    #[test]
    fn errors_as_kube_words_them() {
        let mut no_request = pod("a", 0);
        no_request.request = Err("main".into());
        assert_eq!(
            resource_replicas(
                1,
                Target::Utilization(50),
                "cpu",
                &[no_request],
                &metrics(&[("a", 1)]),
                t(0)
            ),
            Err("missing request for cpu in container main of Pod a".into())
        );
        assert_eq!(
            resource_replicas(1, Target::Utilization(50), "cpu", &[], &metrics(&[]), t(0)),
            Err("no pods returned by selector while calculating replica count".into())
        );
    }

    #[test]
    fn scale_down_waits_for_the_stabilisation_window() {
        let mut h = History::default();
        record_initial(&mut h, 4, t(0));
        // Usage fell: 1 recommended, but 4 was recommended within 5 minutes.
        let n = normalize(&mut h, 4, 1, 1, 10, t(60));
        assert_eq!(n.replicas, 4);
        assert_eq!(n.conditions[0].2, "ScaleDownStabilized");
        // Past the window of the 4 (and of the 1 recorded at 60 s, still within it).
        let n = normalize(&mut h, 4, 1, 1, 10, t(301));
        assert_eq!(n.replicas, 1);
        assert_eq!(n.conditions[0].2, "ReadyForNewScale");
        assert_eq!(
            n.conditions[1],
            (
                "ScalingLimited",
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range".into()
            )
        );
    }

    #[test]
    fn default_rules_limit_the_rate_and_the_range() {
        let mut h = History::default();
        // From 1, at most max(2, 4) = 4 at once.
        let n = normalize(&mut h, 1, 9, 1, 10, t(0));
        assert_eq!(n.replicas, 4);
        assert!(n.conditions[1].1);
        assert_eq!(n.conditions[1].2, "ScaleUpLimit");
        let n = normalize(&mut h, 4, 20, 1, 5, t(1));
        assert_eq!((n.replicas, n.conditions[1].2), (5, "TooManyReplicas"));
        let mut h = History::default();
        let n = normalize(&mut h, 4, 1, 2, 5, t(0));
        assert_eq!((n.replicas, n.conditions[1].2), (2, "TooFewReplicas"));
    }

    #[test]
    fn behavior_windows_and_policies() {
        use k8s_openapi::api::autoscaling::v2::HPAScalingPolicy;
        let behavior = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                stabilization_window_seconds: Some(0),
                policies: Some(vec![HPAScalingPolicy {
                    type_: "Pods".into(),
                    value: 1,
                    period_seconds: 60,
                }]),
                ..Default::default()
            }),
            scale_up: None,
        };
        let mut h = History::default();
        record_initial(&mut h, 5, t(0));
        // No window: down at once, but one pod per minute.
        let n = normalize_with_behavior(&mut h, &behavior, 5, 1, 1, 10, t(10));
        assert_eq!((n.replicas, n.conditions[1].2), (4, "ScaleDownLimit"));
        store_scale_event(&mut h, &behavior, 5, 4, t(10));
        let n = normalize_with_behavior(&mut h, &behavior, 4, 1, 1, 10, t(20));
        assert_eq!(n.replicas, 4, "the minute's pod is used");
        let n = normalize_with_behavior(&mut h, &behavior, 4, 1, 1, 10, t(71));
        assert_eq!(n.replicas, 3);
        // Up by default: 4 pods or 100% per 15 s, the larger.
        let mut h = History::default();
        let n = normalize_with_behavior(&mut h, &behavior, 10, 50, 1, 100, t(0));
        assert_eq!((n.replicas, n.conditions[1].2), (20, "ScaleUpLimit"));
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(
            parse_go_duration("10s"),
            Some(SignedDuration::from_secs(10))
        );
        assert_eq!(
            parse_go_duration("1m30s"),
            Some(SignedDuration::from_secs(90))
        );
        assert_eq!(
            parse_go_duration("1.5s"),
            Some(SignedDuration::from_millis(1500))
        );
        assert_eq!(
            parse_go_duration("500ms"),
            Some(SignedDuration::from_millis(500))
        );
        assert_eq!(parse_go_duration("x"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
