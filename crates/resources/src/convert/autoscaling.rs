//! HorizontalPodAutoscaler between `autoscaling/v1` and the storage version
//! `autoscaling/v2`, as `pkg/apis/autoscaling/v1/conversion.go` converts: v1 has only a
//! CPU utilisation target, so what v2 says beyond it travels in annotations
//! (`autoscaling.alpha.kubernetes.io/metrics`, `current-metrics`, `behavior`,
//! `conditions`) in v1's own shapes, and comes back from them.

use serde_json::{json, Map, Value};

/// v2 metrics other than the CPU utilisation target, as v1 `MetricSpec`s.
pub const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// Every v2 current metric, as v1 `MetricStatus`es.
pub const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// The v2 `spec.behavior`, as is.
pub const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// The v2 `status.conditions`.
pub const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

/// Whether a v2 metric is the one v1 holds in `targetCPUUtilizationPercentage`.
fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m.pointer("/resource/name") == Some(&json!("cpu"))
        && m.pointer("/resource/target/averageUtilization").is_some()
}

fn annotations(o: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let meta = meta.as_object_mut().expect("an object");
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    ann.as_object_mut().expect("an object")
}

/// Puts `v` (set) into a struct-like map at `k`.
fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        m.insert(k.to_string(), v);
    }
}

/// A v2 `MetricSpec` in v1's (v2beta1's) shape.
fn spec_to_v1(m: &Value) -> Value {
    let t = m["type"].as_str().unwrap_or_default();
    let mut out = Map::new();
    out.insert("type".into(), json!(t));
    let target = |src: &Value| src.get("target").cloned().unwrap_or(json!({}));
    match t {
        "Resource" | "ContainerResource" => {
            let key = if t == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let tg = target(src);
            let mut r = Map::new();
            put(&mut r, "name", src.get("name").cloned());
            put(&mut r, "container", src.get("container").cloned());
            put(
                &mut r,
                "targetAverageUtilization",
                tg.get("averageUtilization").cloned(),
            );
            put(
                &mut r,
                "targetAverageValue",
                tg.get("averageValue").cloned(),
            );
            out.insert(key.into(), Value::Object(r));
        }
        "Pods" => {
            let src = &m["pods"];
            let tg = target(src);
            let mut r = Map::new();
            put(&mut r, "metricName", src.pointer("/metric/name").cloned());
            put(
                &mut r,
                "targetAverageValue",
                tg.get("averageValue").cloned(),
            );
            put(&mut r, "selector", src.pointer("/metric/selector").cloned());
            out.insert("pods".into(), Value::Object(r));
        }
        "Object" => {
            let src = &m["object"];
            let tg = target(src);
            let mut r = Map::new();
            put(&mut r, "target", src.get("describedObject").cloned());
            put(&mut r, "metricName", src.pointer("/metric/name").cloned());
            put(&mut r, "targetValue", tg.get("value").cloned());
            put(&mut r, "selector", src.pointer("/metric/selector").cloned());
            put(&mut r, "averageValue", tg.get("averageValue").cloned());
            out.insert("object".into(), Value::Object(r));
        }
        "External" => {
            let src = &m["external"];
            let tg = target(src);
            let mut r = Map::new();
            put(&mut r, "metricName", src.pointer("/metric/name").cloned());
            put(
                &mut r,
                "metricSelector",
                src.pointer("/metric/selector").cloned(),
            );
            put(&mut r, "targetValue", tg.get("value").cloned());
            put(
                &mut r,
                "targetAverageValue",
                tg.get("averageValue").cloned(),
            );
            out.insert("external".into(), Value::Object(r));
        }
        _ => {}
    }
    Value::Object(out)
}

/// A v1 `MetricSpec` back in v2's shape.
fn spec_to_v2(m: &Value) -> Value {
    let t = m["type"].as_str().unwrap_or_default();
    let mut out = Map::new();
    out.insert("type".into(), json!(t));
    let metric = |src: &Value, name: &str, sel: &str| {
        let mut mi = Map::new();
        put(&mut mi, "name", src.get(name).cloned());
        put(&mut mi, "selector", src.get(sel).cloned());
        Value::Object(mi)
    };
    match t {
        "Resource" | "ContainerResource" => {
            let key = if t == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let mut tg = Map::new();
            if let Some(u) = src.get("targetAverageUtilization") {
                tg.insert("type".into(), json!("Utilization"));
                tg.insert("averageUtilization".into(), u.clone());
            } else {
                tg.insert("type".into(), json!("AverageValue"));
                put(
                    &mut tg,
                    "averageValue",
                    src.get("targetAverageValue").cloned(),
                );
            }
            let mut r = Map::new();
            put(&mut r, "name", src.get("name").cloned());
            put(&mut r, "container", src.get("container").cloned());
            r.insert("target".into(), Value::Object(tg));
            out.insert(key.into(), Value::Object(r));
        }
        "Pods" => {
            let src = &m["pods"];
            out.insert(
                "pods".into(),
                json!({"metric": metric(src, "metricName", "selector"),
                       "target": {"type": "AverageValue", "averageValue": src.get("targetAverageValue")}}),
            );
        }
        "Object" => {
            let src = &m["object"];
            let mut tg = Map::new();
            if let Some(v) = src.get("averageValue") {
                tg.insert("type".into(), json!("AverageValue"));
                tg.insert("averageValue".into(), v.clone());
            } else {
                tg.insert("type".into(), json!("Value"));
                put(&mut tg, "value", src.get("targetValue").cloned());
            }
            out.insert(
                "object".into(),
                json!({"describedObject": src.get("target"),
                       "metric": metric(src, "metricName", "selector"),
                       "target": tg}),
            );
        }
        "External" => {
            let src = &m["external"];
            let mut tg = Map::new();
            if let Some(v) = src.get("targetAverageValue") {
                tg.insert("type".into(), json!("AverageValue"));
                tg.insert("averageValue".into(), v.clone());
            } else {
                tg.insert("type".into(), json!("Value"));
                put(&mut tg, "value", src.get("targetValue").cloned());
            }
            out.insert(
                "external".into(),
                json!({"metric": metric(src, "metricName", "metricSelector"), "target": tg}),
            );
        }
        _ => {}
    }
    Value::Object(out)
}

/// A v2 `MetricStatus` in v1's shape.
fn status_to_v1(m: &Value) -> Value {
    let t = m["type"].as_str().unwrap_or_default();
    let mut out = Map::new();
    out.insert("type".into(), json!(t));
    let current = |src: &Value| src.get("current").cloned().unwrap_or(json!({}));
    match t {
        "Resource" | "ContainerResource" => {
            let key = if t == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let cur = current(src);
            let mut r = Map::new();
            put(&mut r, "name", src.get("name").cloned());
            put(&mut r, "container", src.get("container").cloned());
            put(
                &mut r,
                "currentAverageUtilization",
                cur.get("averageUtilization").cloned(),
            );
            put(
                &mut r,
                "currentAverageValue",
                cur.get("averageValue").cloned(),
            );
            out.insert(key.into(), Value::Object(r));
        }
        "Pods" => {
            let src = &m["pods"];
            let cur = current(src);
            let mut r = Map::new();
            put(&mut r, "metricName", src.pointer("/metric/name").cloned());
            put(
                &mut r,
                "currentAverageValue",
                cur.get("averageValue").cloned(),
            );
            put(&mut r, "selector", src.pointer("/metric/selector").cloned());
            out.insert("pods".into(), Value::Object(r));
        }
        "Object" => {
            let src = &m["object"];
            let cur = current(src);
            let mut r = Map::new();
            put(&mut r, "target", src.get("describedObject").cloned());
            put(&mut r, "metricName", src.pointer("/metric/name").cloned());
            put(&mut r, "currentValue", cur.get("value").cloned());
            put(&mut r, "selector", src.pointer("/metric/selector").cloned());
            put(&mut r, "averageValue", cur.get("averageValue").cloned());
            out.insert("object".into(), Value::Object(r));
        }
        "External" => {
            let src = &m["external"];
            let cur = current(src);
            let mut r = Map::new();
            put(&mut r, "metricName", src.pointer("/metric/name").cloned());
            put(
                &mut r,
                "metricSelector",
                src.pointer("/metric/selector").cloned(),
            );
            put(&mut r, "currentValue", cur.get("value").cloned());
            put(
                &mut r,
                "currentAverageValue",
                cur.get("averageValue").cloned(),
            );
            out.insert("external".into(), Value::Object(r));
        }
        _ => {}
    }
    Value::Object(out)
}

/// A v1 `MetricStatus` back in v2's shape.
fn status_to_v2(m: &Value) -> Value {
    let t = m["type"].as_str().unwrap_or_default();
    let mut out = Map::new();
    out.insert("type".into(), json!(t));
    let metric = |src: &Value, name: &str, sel: &str| {
        let mut mi = Map::new();
        put(&mut mi, "name", src.get(name).cloned());
        put(&mut mi, "selector", src.get(sel).cloned());
        Value::Object(mi)
    };
    let pick = |src: &Value, pairs: &[(&str, &str)]| {
        let mut cur = Map::new();
        for (from, to) in pairs {
            put(&mut cur, to, src.get(*from).cloned());
        }
        Value::Object(cur)
    };
    match t {
        "Resource" | "ContainerResource" => {
            let key = if t == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let mut r = Map::new();
            put(&mut r, "name", src.get("name").cloned());
            put(&mut r, "container", src.get("container").cloned());
            r.insert(
                "current".into(),
                pick(
                    src,
                    &[
                        ("currentAverageUtilization", "averageUtilization"),
                        ("currentAverageValue", "averageValue"),
                    ],
                ),
            );
            out.insert(key.into(), Value::Object(r));
        }
        "Pods" => {
            let src = &m["pods"];
            out.insert(
                "pods".into(),
                json!({"metric": metric(src, "metricName", "selector"),
                       "current": pick(src, &[("currentAverageValue", "averageValue")])}),
            );
        }
        "Object" => {
            let src = &m["object"];
            out.insert(
                "object".into(),
                json!({"describedObject": src.get("target"),
                       "metric": metric(src, "metricName", "selector"),
                       "current": pick(src, &[("currentValue", "value"), ("averageValue", "averageValue")])}),
            );
        }
        "External" => {
            let src = &m["external"];
            out.insert(
                "external".into(),
                json!({"metric": metric(src, "metricName", "metricSelector"),
                       "current": pick(src, &[("currentValue", "value"), ("currentAverageValue", "averageValue")])}),
            );
        }
        _ => {}
    }
    Value::Object(out)
}

/// Compact JSON, as Go's `json.Marshal` writes the annotations.
fn encode(v: &Value) -> Value {
    json!(serde_json::to_string(v).unwrap_or_default())
}

/// `autoscaling/v2` → `autoscaling/v1` (`apiVersion` is set by the caller).
pub(super) fn v2_to_v1(o: &mut Map<String, Value>) {
    let spec = o.get("spec").cloned().unwrap_or(json!({}));
    let status = o.get("status").cloned().unwrap_or(Value::Null);
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let cpu = metrics.iter().find(|m| is_cpu_utilization(m));
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m))
        .map(spec_to_v1)
        .collect();
    let current = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let behavior = spec.get("behavior").filter(|b| !b.is_null()).cloned();

    let mut v1spec = Map::new();
    put(
        &mut v1spec,
        "scaleTargetRef",
        spec.get("scaleTargetRef").cloned(),
    );
    put(&mut v1spec, "minReplicas", spec.get("minReplicas").cloned());
    put(&mut v1spec, "maxReplicas", spec.get("maxReplicas").cloned());
    put(
        &mut v1spec,
        "targetCPUUtilizationPercentage",
        cpu.and_then(|m| m.pointer("/resource/target/averageUtilization"))
            .cloned(),
    );
    o.insert("spec".into(), Value::Object(v1spec));

    if status.is_object() {
        let mut v1status = Map::new();
        for k in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            put(&mut v1status, k, status.get(k).cloned());
        }
        let cur_cpu = current
            .iter()
            .find(|m| m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")))
            .and_then(|m| m.pointer("/resource/current/averageUtilization"))
            .cloned();
        put(&mut v1status, "currentCPUUtilizationPercentage", cur_cpu);
        v1status
            .entry("currentReplicas")
            .or_insert_with(|| json!(0));
        v1status
            .entry("desiredReplicas")
            .or_insert_with(|| json!(0));
        o.insert("status".into(), Value::Object(v1status));
    }

    if !others.is_empty() {
        annotations(o).insert(METRICS.into(), encode(&json!(others)));
    }
    if !current.is_empty() {
        let v1: Vec<Value> = current.iter().map(status_to_v1).collect();
        annotations(o).insert(CURRENT_METRICS.into(), encode(&json!(v1)));
    }
    if let Some(b) = behavior {
        annotations(o).insert(BEHAVIOR.into(), encode(&b));
    }
    if !conditions.is_empty() {
        annotations(o).insert(CONDITIONS.into(), encode(&json!(conditions)));
    }
}

/// `autoscaling/v1` → `autoscaling/v2`: the CPU target and the annotations' metrics,
/// behavior and conditions; the round-trip annotations are dropped.
pub(super) fn v1_to_v2(o: &mut Map<String, Value>) {
    let spec = o.get("spec").cloned().unwrap_or(json!({}));
    let status = o.get("status").cloned().unwrap_or(Value::Null);
    let mut taken: Map<String, Value> = Map::new();
    if let Some(ann) = o
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        for k in [METRICS, CURRENT_METRICS, BEHAVIOR, CONDITIONS] {
            if let Some(v) = ann.remove(k) {
                taken.insert(k.into(), v);
            }
        }
        if ann.is_empty() {
            if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("annotations");
            }
        }
    }
    let decoded = |k: &str| -> Option<Value> {
        taken
            .get(k)
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
    };

    let mut metrics: Vec<Value> = decoded(METRICS)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(spec_to_v2)
        .collect();
    if let Some(p) = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|p| !p.is_null())
    {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": p}}}));
    }
    let mut v2spec = Map::new();
    put(
        &mut v2spec,
        "scaleTargetRef",
        spec.get("scaleTargetRef").cloned(),
    );
    put(&mut v2spec, "minReplicas", spec.get("minReplicas").cloned());
    put(&mut v2spec, "maxReplicas", spec.get("maxReplicas").cloned());
    if !metrics.is_empty() {
        v2spec.insert("metrics".into(), json!(metrics));
    }
    put(&mut v2spec, "behavior", decoded(BEHAVIOR));
    o.insert("spec".into(), Value::Object(v2spec));

    if status.is_object() || taken.contains_key(CURRENT_METRICS) || taken.contains_key(CONDITIONS) {
        let mut v2status = Map::new();
        for k in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            put(&mut v2status, k, status.get(k).cloned());
        }
        let mut current: Vec<Value> = decoded(CURRENT_METRICS)
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(status_to_v2)
            .collect();
        if current.is_empty() {
            if let Some(u) = status
                .get("currentCPUUtilizationPercentage")
                .filter(|u| !u.is_null())
            {
                current.push(json!({"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": u}}}));
            }
        }
        if !current.is_empty() {
            v2status.insert("currentMetrics".into(), json!(current));
        }
        put(&mut v2status, "conditions", decoded(CONDITIONS));
        o.insert("status".into(), Value::Object(v2status));
    }
}
