//! The HorizontalPodAutoscaler controller (kube's `pkg/controller/podautoscaler`):
//! every 15 s per HPA (`--horizontal-pod-autoscaler-sync-period`), it reads the target's
//! `scale` subresource, the pods its selector picks and their usage from
//! `metrics.k8s.io`, asks [`plan`] for a replica count per resource metric (the largest
//! wins), normalises it (stabilisation, min/max, rate), writes the scale, and keeps the
//! HPA's status (current metrics, replicas, the AbleToScale / ScalingActive /
//! ScalingLimited conditions) and Events with kube's reasons and messages.
//!
//! Only `Resource` metrics (cpu, memory: Utilization or AverageValue) are served:
//! skiff has no custom or external metrics API, so other metric types are invalid.

pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec, MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use skiff_api::metrics::PodMetrics;

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Informer;
use crate::queue::{run_workers, WorkQueue};
use crate::triggers::Triggers;
use crate::util::split_key;
use plan::{Cond, History, PodInfo, PodMetric, Target};

/// How often each HPA is reconciled.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

struct Ctx {
    client: Client,
    hpas: Arc<Informer<HorizontalPodAutoscaler>>,
    recorder: Recorder,
    history: Mutex<HashMap<String, History>>,
}

/// Starts the controller with its own HPA informer.
pub fn run(client: Client) {
    let hpas = Informer::spawn(Api::all(client.clone()));
    let queue = WorkQueue::new();
    Triggers::new(&queue, &hpas).primary();
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "horizontal-pod-autoscaler"),
        client,
        hpas,
        history: Mutex::new(HashMap::new()),
    });
    run_workers("horizontalpodautoscaling", queue, 2, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

/// The plural of a scale target's kind (the built-in scalable kinds; others as
/// kube's RESTMapper guesses them).
fn plural(kind: &str) -> String {
    match kind {
        "Deployment" => "deployments".into(),
        "ReplicaSet" => "replicasets".into(),
        "StatefulSet" => "statefulsets".into(),
        "ReplicationController" => "replicationcontrollers".into(),
        k => format!("{}s", k.to_lowercase()),
    }
}

/// The message of a kube error: the API's Status message when there is one.
fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// Sets a condition as kube's `setConditionInList`: the transition time changes only
/// with the status.
fn set_condition(conds: &mut Vec<HorizontalPodAutoscalerCondition>, c: Cond, now: Timestamp) {
    let (type_, status, reason, message) = c;
    let status = if status { "True" } else { "False" };
    match conds.iter_mut().find(|x| x.type_ == type_) {
        Some(x) => {
            if x.status != status {
                x.last_transition_time = Some(Time(now));
            }
            x.status = status.into();
            x.reason = Some(reason.into());
            x.message = Some(message);
        }
        None => conds.push(HorizontalPodAutoscalerCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(Time(now)),
        }),
    }
}

/// A quantity as kube's `resource.NewMilliQuantity(v, DecimalSI).String()`.
pub fn milli_quantity(v: i64) -> String {
    if v == 0 {
        return "0".into();
    }
    if v % 1000 != 0 {
        return format!("{v}m");
    }
    let mut n = v / 1000;
    let mut suffix = "";
    for s in ["k", "M", "G", "T", "P", "E"] {
        if n % 1000 != 0 {
            break;
        }
        n /= 1000;
        suffix = s;
    }
    format!("{n}{suffix}")
}

fn milli(q: &Quantity) -> Option<i64> {
    skiff_api::quantity::parse(&q.0).map(|v| (v * 1000.0).round() as i64)
}

/// What [`plan`] needs of a pod: its phase, readiness and requests of `resource`.
fn pod_info(p: &Pod, resource: &str) -> PodInfo {
    let status = p.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status == "True",
                c.last_transition_time
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or(Timestamp::UNIX_EPOCH),
            )
        });
    let mut request = Ok(0);
    for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
        match c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(milli)
        {
            Some(v) => {
                if let Ok(sum) = &mut request {
                    *sum += v;
                }
            }
            None => {
                request = Err(c.name.clone());
                break;
            }
        }
    }
    PodInfo {
        name: p.name_any(),
        phase: status.phase.clone().unwrap_or_default(),
        deleting: p.metadata.deletion_timestamp.is_some(),
        ready,
        start_time: status.start_time.as_ref().map(|t| t.0),
        request,
    }
}

/// The pods' usage of `resource` from `metrics.k8s.io` (kube's `GetResourceMetric`):
/// a pod counts only if every container reports it.
async fn pod_metrics(
    client: &Client,
    ns: &str,
    selector: &str,
    resource: &str,
) -> Result<BTreeMap<String, PodMetric>, String> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            skiff_api::metrics::GROUP,
            skiff_api::metrics::VERSION,
            "PodMetrics",
        ),
        "pods",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            format!(
                "unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {}",
                message(&e)
            )
        })?;
    if list.items.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    let mut out = BTreeMap::new();
    for item in list.items {
        let Ok(m) = serde_json::to_value(&item).and_then(serde_json::from_value::<PodMetrics>)
        else {
            continue;
        };
        let sum: Option<i64> = m
            .containers
            .iter()
            .map(|c| c.usage.get(resource).and_then(milli))
            .sum();
        let (Some(value), Some(name)) = (sum, m.metadata.name.clone()) else {
            continue;
        };
        let window = plan::parse_go_duration(&m.window).unwrap_or_default();
        out.insert(
            name,
            PodMetric {
                value,
                timestamp: m.timestamp.0,
                window,
            },
        );
    }
    Ok(out)
}

/// The default metric of an HPA without any (`SetDefaults_HorizontalPodAutoscaler`):
/// 80% of the CPU requests.
fn default_metrics() -> Vec<MetricSpec> {
    serde_json::from_value(serde_json::json!([{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]))
    .unwrap_or_default()
}

/// One metric's proposal: (replicas, metric name, status), or the ScalingActive
/// condition and the error.
async fn compute_metric(
    client: &Client,
    ns: &str,
    selector: &str,
    current: i32,
    spec: &MetricSpec,
    now: Timestamp,
) -> Result<(i32, String, MetricStatus), (Cond, String, &'static str)> {
    let unable = |reason: &'static str, err: String| {
        (
            (
                "ScalingActive",
                false,
                reason,
                format!("the HPA was unable to compute the replica count: {err}"),
            ),
            err,
            reason,
        )
    };
    let Some(res) = spec.resource.as_ref().filter(|_| spec.type_ == "Resource") else {
        let (reason, what) = match spec.type_.as_str() {
            "Pods" => ("FailedGetPodsMetric", "pods"),
            "Object" => ("FailedGetObjectMetric", "object"),
            "External" => ("FailedGetExternalMetric", "external"),
            "ContainerResource" => ("FailedGetContainerResourceMetric", "container resource"),
            _ => ("InvalidMetricSourceType", "unknown"),
        };
        let err = format!(
            "failed to get {what} metric value: no metrics API serves {what} metrics in skiff (only resource metrics)"
        );
        return Err(unable(reason, err));
    };
    let name = res.name.as_str();
    let target = match (
        res.target.average_value.as_ref().and_then(milli),
        res.target.average_utilization,
    ) {
        (Some(v), _) => Target::AverageValue(v),
        (None, Some(u)) => Target::Utilization(u),
        (None, None) => {
            let err = "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".to_string();
            return Err(unable(
                "FailedGetResourceMetric",
                format!("failed to get {name} resource metric value: {err}"),
            ));
        }
    };
    let wrap = |e: String| {
        unable(
            "FailedGetResourceMetric",
            format!(
                "failed to get {name} resource metric value: failed to get {name} utilization: {e}"
            ),
        )
    };
    let metrics = pod_metrics(client, ns, selector, name)
        .await
        .map_err(wrap)?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            wrap(format!(
                "unable to get pods while calculating replica count: {}",
                message(&e)
            ))
        })?;
    let infos: Vec<PodInfo> = pods.items.iter().map(|p| pod_info(p, name)).collect();
    let p = plan::resource_replicas(current, target, name, &infos, &metrics, now).map_err(wrap)?;
    let (metric_name, current_value) = match target {
        Target::Utilization(_) => (
            format!("{name} resource utilization (percentage of request)"),
            MetricValueStatus {
                average_utilization: p.utilization,
                average_value: Some(Quantity(milli_quantity(p.average))),
                value: None,
            },
        ),
        Target::AverageValue(_) => (
            format!("{name} resource"),
            MetricValueStatus {
                average_value: Some(Quantity(milli_quantity(p.average))),
                ..Default::default()
            },
        ),
    };
    let status = MetricStatus {
        type_: "Resource".into(),
        resource: Some(ResourceMetricStatus {
            name: name.into(),
            current: current_value,
        }),
        ..Default::default()
    };
    Ok((p.replicas, metric_name, status))
}

async fn sync(ctx: &Ctx, key: &str) -> anyhow::Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(cached) = ctx.hpas.store().get(&ObjectRef::new(name).within(ns)) else {
        ctx.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        return Ok(None);
    };
    let mut hpa = (*cached).clone();
    let original = hpa.status.clone();
    let now = Timestamp::now();
    let mut status = hpa.status.clone().unwrap_or_default();
    let mut conds = status.conditions.clone().unwrap_or_default();
    let spec = hpa.spec.clone().unwrap_or_default();
    let target = &spec.scale_target_ref;
    let (group, version) = match target.api_version.as_deref().unwrap_or("").split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            target.api_version.clone().unwrap_or_default(),
        ),
    };
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, &version, &target.kind),
        &plural(&target.kind),
    );
    let targets: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let mut scale: Scale = match targets.get_scale(&target.name).await {
        Ok(s) => s,
        Err(e) => {
            let msg = message(&e);
            ctx.recorder
                .publish(&hpa, WARNING, "FailedGetScale", msg.clone());
            set_condition(
                &mut conds,
                (
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    format!(
                        "the HPA controller was unable to get the target's current scale: {msg}"
                    ),
                ),
                now,
            );
            status.conditions = Some(conds);
            write_status(ctx, &mut hpa, original, status).await?;
            return Ok(Some(SYNC_PERIOD));
        }
    };
    set_condition(
        &mut conds,
        (
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale".into(),
        ),
        now,
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut history = ctx
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key)
        .unwrap_or_default();
    plan::record_initial(&mut history, current, now);
    let mut metric_statuses: Vec<MetricStatus> = Vec::new();
    let mut desired;
    let mut reason = String::new();
    let rescale;
    if current == 0 && min != 0 {
        desired = 0;
        rescale = false;
        set_condition(
            &mut conds,
            (
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".into(),
            ),
            now,
        );
    } else if current > max {
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
        rescale = true;
    } else if current < min {
        reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
        rescale = true;
    } else {
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let specs = spec
            .metrics
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(default_metrics);
        if selector.is_empty() {
            let msg = "selector is required";
            ctx.recorder
                .publish(&hpa, WARNING, "SelectorRequired", msg.into());
            set_condition(
                &mut conds,
                (
                    "ScalingActive",
                    false,
                    "InvalidSelector",
                    "the HPA target's scale is missing a selector".into(),
                ),
                now,
            );
            status.conditions = Some(conds);
            ctx.history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_string(), history);
            write_status(ctx, &mut hpa, original, status).await?;
            return Ok(Some(SYNC_PERIOD));
        }
        let mut proposal = 0;
        let mut metric = String::new();
        let mut invalid = 0;
        let mut first_invalid: Option<(Cond, String, &'static str)> = None;
        for m in &specs {
            match compute_metric(&ctx.client, ns, &selector, current, m, now).await {
                Ok((replicas, name, st)) => {
                    metric_statuses.push(st);
                    if proposal == 0 || replicas > proposal {
                        proposal = replicas;
                        metric = name;
                    }
                }
                Err(e) => {
                    metric_statuses.push(MetricStatus::default());
                    ctx.recorder.publish(&hpa, WARNING, e.2, e.1.clone());
                    invalid += 1;
                    first_invalid.get_or_insert(e);
                }
            }
        }
        if let Some((cond, err, _)) =
            first_invalid.filter(|_| invalid >= specs.len() || (invalid > 0 && proposal < current))
        {
            let err = format!(
                "invalid metrics ({invalid} invalid out of {}), first error is: {err}",
                specs.len()
            );
            set_condition(&mut conds, cond, now);
            ctx.recorder
                .publish(&hpa, WARNING, "FailedComputeMetricsReplicas", err);
            status.current_replicas = Some(current);
            status.current_metrics = Some(metric_statuses);
            status.conditions = Some(conds);
            ctx.history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_string(), history);
            write_status(ctx, &mut hpa, original, status).await?;
            return Ok(Some(SYNC_PERIOD));
        }
        set_condition(
            &mut conds,
            (
                "ScalingActive",
                true,
                "ValidMetricFound",
                format!("the HPA was able to successfully calculate a replica count from {metric}"),
            ),
            now,
        );
        desired = proposal;
        if desired > current {
            reason = format!("{metric} above target");
        }
        if desired < current {
            reason = "All metrics below target".into();
        }
        let normalized = match &spec.behavior {
            None => plan::normalize(&mut history, current, desired, min, max, now),
            Some(b) => {
                plan::normalize_with_behavior(&mut history, b, current, desired, min, max, now)
            }
        };
        for c in normalized.conditions {
            set_condition(&mut conds, c, now);
        }
        desired = normalized.replicas;
        rescale = desired != current;
    }
    let mut last_scale_time = status.last_scale_time.clone();
    if rescale {
        scale.spec.get_or_insert_with(Default::default).replicas = Some(desired);
        match targets
            .replace_scale(&target.name, &PostParams::default(), &scale)
            .await
        {
            Ok(_) => {
                set_condition(
                    &mut conds,
                    (
                        "AbleToScale",
                        true,
                        "SucceededRescale",
                        format!(
                            "the HPA controller was able to update the target scale to {desired}"
                        ),
                    ),
                    now,
                );
                ctx.recorder.publish(
                    &hpa,
                    NORMAL,
                    "SuccessfulRescale",
                    format!("New size: {desired}; reason: {reason}"),
                );
                if let Some(b) = &spec.behavior {
                    plan::store_scale_event(&mut history, b, current, desired, now);
                }
                last_scale_time = Some(Time(now));
            }
            Err(e) => {
                let msg = message(&e);
                ctx.recorder.publish(
                    &hpa,
                    WARNING,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {msg}"),
                );
                set_condition(
                    &mut conds,
                    (
                        "AbleToScale",
                        false,
                        "FailedUpdateScale",
                        format!("the HPA controller was unable to update the target scale: {msg}"),
                    ),
                    now,
                );
                desired = current;
            }
        }
    } else {
        desired = current;
    }
    ctx.history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.to_string(), history);
    let status = HorizontalPodAutoscalerStatus {
        current_replicas: Some(current),
        desired_replicas: desired,
        last_scale_time,
        current_metrics: Some(metric_statuses).filter(|m| !m.is_empty()),
        conditions: Some(conds),
        observed_generation: hpa.metadata.generation,
    };
    write_status(ctx, &mut hpa, original, status).await?;
    Ok(Some(SYNC_PERIOD))
}

/// Writes the status if it changed (kube's `updateStatusIfNeeded`).
async fn write_status(
    ctx: &Ctx,
    hpa: &mut HorizontalPodAutoscaler,
    original: Option<HorizontalPodAutoscalerStatus>,
    mut status: HorizontalPodAutoscalerStatus,
) -> anyhow::Result<()> {
    status.observed_generation = hpa.metadata.generation;
    if original.as_ref() == Some(&status) {
        return Ok(());
    }
    hpa.status = Some(status);
    let api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(ctx.client.clone(), &hpa.namespace().unwrap_or_default());
    api.replace_status(&hpa.name_any(), &PostParams::default(), hpa)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_quantities_in_canonical_form() {
        assert_eq!(milli_quantity(250), "250m");
        assert_eq!(milli_quantity(1000), "1");
        assert_eq!(milli_quantity(0), "0");
        assert_eq!(milli_quantity(1_048_576_000), "1048576");
        assert_eq!(milli_quantity(2_000_000_000), "2M");
    }

    #[test]
    fn pod_requests_and_readiness() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "0.2"}}}]},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True",
                                        "lastTransitionTime": "2026-01-01T00:00:05Z"}]}
        }))
        .expect("pod");
        let info = pod_info(&pod, "cpu");
        assert_eq!(info.request, Ok(300));
        assert_eq!(info.phase, "Running");
        assert!(info.ready.is_some_and(|(r, _)| r));
        assert_eq!(pod_info(&pod, "memory").request, Err("a".into()));
    }
}
