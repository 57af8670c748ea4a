//! Defaulting, as kube-apiserver's `pkg/apis/*/v1/defaults.go` plus the admission
//! plugins that fill fields every real cluster shows (`DefaultTolerationSeconds`,
//! `Priority`) and the create-time status some registry strategies set.
//!
//! Defaulting is idempotent: running it twice changes nothing the second time, so the
//! API server may call it on create, update and patch alike.

use serde_json::{json, Map, Value};
use skiff_api::defaults::DEFAULT_TOLERATION_SECONDS;
use skiff_api::names::{NOT_READY_TAINT, UNREACHABLE_TAINT};

use crate::registry::ResourceInfo;

/// Fills in defaults of `obj`. The version's own defaults apply (`obj.apiVersion` when
/// set, else `info`'s version); call it on the object as received and again after
/// conversion to the storage version, or only on the storage version.
pub fn default_object(info: &ResourceInfo, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    let version = o
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|av| crate::registry::split_api_version(av).1.to_string())
        .unwrap_or_else(|| info.version.to_string());
    match (info.group, info.kind) {
        ("", "Pod") => default_pod(o),
        ("", "Service") => default_service(o),
        ("", "Namespace") => default_namespace(o),
        ("", "Node") => default_node(o),
        ("", "Secret") => {
            set(o, "type", json!("Opaque"));
        }
        ("", "Endpoints") => default_endpoints(o),
        ("", "ReplicationController") => {
            let spec = obj_at(o, "spec");
            set(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("", "PodTemplate") => default_template(o),
        ("apps", "Deployment") => default_deployment(o, &version),
        ("apps", "ReplicaSet") => {
            let spec = obj_at(o, "spec");
            set(spec, "replicas", json!(1));
            default_template(spec);
        }
        ("apps", "StatefulSet") => default_statefulset(o),
        ("apps", "DaemonSet") => default_daemonset(o),
        ("batch", "Job") => default_job(o),
        ("batch", "CronJob") => default_cronjob(o),
        ("discovery.k8s.io", "EndpointSlice") => default_endpointslice(o),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            default_rbac_subjects(o)
        }
        _ => {}
    }
}

/// Sets `key` when absent or null. Returns the (possibly existing) value.
fn set<'a>(o: &'a mut Map<String, Value>, key: &str, v: Value) -> &'a mut Value {
    let e = o.entry(key.to_string()).or_insert(Value::Null);
    if e.is_null() {
        *e = v;
    }
    e
}

/// The object at `key`, created empty when absent or not an object.
fn obj_at<'a>(o: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let e = o
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !e.is_object() {
        *e = Value::Object(Map::new());
    }
    match e {
        Value::Object(m) => m,
        // Just made it an object above.
        _ => unreachable!("value was replaced by an object"),
    }
}

/// Each object of the array at `key` (nothing when absent).
fn each_obj(o: &mut Map<String, Value>, key: &str, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(Value::Array(a)) = o.get_mut(key) {
        for x in a.iter_mut() {
            if let Value::Object(m) = x {
                f(m);
            }
        }
    }
}

fn default_pod(o: &mut Map<String, Value>) {
    let spec = obj_at(o, "spec");
    default_pod_spec(spec);
    set(spec, "enableServiceLinks", json!(true));
    // Priority admission: the built-in classes, else no class (or an unknown one) is 0.
    let priority = match spec.get("priorityClassName").and_then(Value::as_str) {
        Some("system-node-critical") => 2_000_001_000,
        Some("system-cluster-critical") => 2_000_000_000,
        _ => 0,
    };
    set(spec, "priority", json!(priority));
    set(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    // SetDefaults_Pod: requests default to limits.
    for list in ["containers", "initContainers"] {
        each_obj(spec, list, |c| {
            let Some(Value::Object(res)) = c.get_mut("resources") else {
                return;
            };
            let Some(Value::Object(limits)) = res.get("limits").cloned() else {
                return;
            };
            let req = obj_at(res, "requests");
            for (k, v) in limits {
                req.entry(k).or_insert(v);
            }
        });
    }
    add_default_tolerations(spec);
    let qos = qos_class(spec);
    let status = obj_at(o, "status");
    set(status, "phase", json!("Pending"));
    set(status, "qosClass", json!(qos));
}

/// `DefaultTolerationSeconds` admission: tolerate not-ready/unreachable for 300 s.
fn add_default_tolerations(spec: &mut Map<String, Value>) {
    let tolerations = set(spec, "tolerations", json!([]));
    let Value::Array(list) = tolerations else {
        return;
    };
    for key in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        let tolerated = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (tkey == key || (tkey.is_empty() && op == "Exists"))
        });
        if !tolerated {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}),
            );
        }
    }
    if list.is_empty() {
        spec.remove("tolerations");
    }
}

/// The pod's QoS class (`BestEffort`, `Burstable`, `Guaranteed`), as the API server
/// records it in `status.qosClass`.
pub fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            spec.get("initContainers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    for c in containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        let nonzero = |m: Option<&Map<String, Value>>, k: &str| {
            m.and_then(|m| m.get(k))
                .map(|v| !matches!(v.as_str(), Some("0")) && *v != json!(0))
                .unwrap_or(false)
        };
        for r in ["cpu", "memory"] {
            if nonzero(req, r) || nonzero(lim, r) {
                any = true;
            }
            if !nonzero(lim, r) {
                guaranteed = false;
            }
            if let (Some(a), Some(b)) = (req.and_then(|m| m.get(r)), lim.and_then(|m| m.get(r))) {
                if a != b {
                    guaranteed = false;
                }
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// `SetDefaults_PodSpec` and everything below it (containers, volumes, probes).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "securityContext", json!({}));
    set(spec, "schedulerName", json!("default-scheduler"));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        // Host-network pods expose their container ports on the host.
        each_obj(spec, "containers", |c| {
            each_obj(c, "ports", |p| {
                if let Some(cp) = p.get("containerPort").cloned() {
                    set(p, "hostPort", cp);
                }
            })
        });
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        each_obj(spec, list, default_container);
    }
    each_obj(spec, "volumes", default_volume);
}

fn default_container(c: &mut Map<String, Value>) {
    let policy = image_pull_policy(c.get("image").and_then(Value::as_str).unwrap_or(""));
    set(c, "imagePullPolicy", json!(policy));
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    set(c, "resources", json!({}));
    each_obj(c, "ports", |p| {
        set(p, "protocol", json!("TCP"));
    });
    each_obj(c, "env", |e| {
        if let Some(Value::Object(vf)) = e.get_mut("valueFrom") {
            if let Some(Value::Object(fr)) = vf.get_mut("fieldRef") {
                set(fr, "apiVersion", json!("v1"));
            }
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(p)) = c.get_mut(probe) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            if let Some(Value::Object(h)) = p.get_mut("httpGet") {
                set(h, "scheme", json!("HTTP"));
                set(h, "path", json!("/"));
            }
        }
    }
    if let Some(Value::Object(lc)) = c.get_mut("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(Value::Object(h)) = lc.get_mut(hook) {
                if let Some(Value::Object(g)) = h.get_mut("httpGet") {
                    set(g, "scheme", json!("HTTP"));
                    set(g, "path", json!("/"));
                }
            }
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (also for digests).
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_volume(v: &mut Map<String, Value>) {
    for (src, mode_key) in [
        ("secret", "defaultMode"),
        ("configMap", "defaultMode"),
        ("downwardAPI", "defaultMode"),
        ("projected", "defaultMode"),
    ] {
        if let Some(Value::Object(s)) = v.get_mut(src) {
            set(s, mode_key, json!(420));
        }
    }
    if let Some(Value::Object(h)) = v.get_mut("hostPath") {
        set(h, "type", json!(""));
    }
    let has_source = v.keys().any(|k| k != "name");
    if !has_source {
        v.insert("emptyDir".into(), json!({}));
    }
}

/// Pod template defaults inside a workload spec (`spec.template.spec`).
fn default_template(spec: &mut Map<String, Value>) {
    if let Some(Value::Object(t)) = spec.get_mut("template") {
        let ps = obj_at(t, "spec");
        default_pod_spec(ps);
    }
}

fn default_service(o: &mut Map<String, Value>) {
    let spec = obj_at(o, "spec");
    let ty = set(spec, "type", json!("ClusterIP"))
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    set(spec, "sessionAffinity", json!("None"));
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        let cfg = obj_at(spec, "sessionAffinityConfig");
        let cip = obj_at(cfg, "clientIP");
        set(cip, "timeoutSeconds", json!(10800));
    }
    each_obj(spec, "ports", |p| {
        set(p, "protocol", json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            set(p, "targetPort", port);
        }
    });
    if ty == "NodePort" || ty == "LoadBalancer" {
        set(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        set(spec, "internalTrafficPolicy", json!("Cluster"));
        set(spec, "ipFamilyPolicy", json!("SingleStack"));
        set(spec, "ipFamilies", json!(["IPv4"]));
    }
    let status = obj_at(o, "status");
    set(status, "loadBalancer", json!({}));
}

fn default_namespace(o: &mut Map<String, Value>) {
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(name) = name {
        let meta = obj_at(o, "metadata");
        let labels = obj_at(meta, "labels");
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    let spec = obj_at(o, "spec");
    set(spec, "finalizers", json!(["kubernetes"]));
    let status = obj_at(o, "status");
    set(status, "phase", json!("Active"));
}

fn default_node(o: &mut Map<String, Value>) {
    if let Some(Value::Object(status)) = o.get_mut("status") {
        if let Some(cap) = status.get("capacity").cloned() {
            set(status, "allocatable", cap);
        }
    }
}

fn default_endpoints(o: &mut Map<String, Value>) {
    each_obj(o, "subsets", |s| {
        each_obj(s, "ports", |p| {
            set(p, "protocol", json!("TCP"));
        })
    });
}

fn default_endpointslice(o: &mut Map<String, Value>) {
    each_obj(o, "ports", |p| {
        set(p, "name", json!(""));
        set(p, "protocol", json!("TCP"));
    });
}

/// The labels of `spec.template.metadata`, if any.
pub(crate) fn template_labels(spec: &Map<String, Value>) -> Option<Value> {
    spec.get("template")?
        .get("metadata")?
        .get("labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned()
}

fn default_deployment(o: &mut Map<String, Value>, version: &str) {
    let template_meta_labels = o
        .get("spec")
        .and_then(Value::as_object)
        .and_then(template_labels);
    let spec = obj_at(o, "spec");
    set(spec, "replicas", json!(1));
    if version != "v1" {
        // apps/v1beta1 and v1beta2: selector from the template's labels, smaller history.
        if let Some(l) = template_meta_labels.clone() {
            if spec.get("selector").is_none_or(Value::is_null) {
                spec.insert("selector".into(), json!({"matchLabels": l}));
            }
        }
        set(
            spec,
            "revisionHistoryLimit",
            json!(if version == "v1beta1" { 2 } else { 10 }),
        );
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
    if version != "v1" {
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

fn default_statefulset(o: &mut Map<String, Value>) {
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

fn default_daemonset(o: &mut Map<String, Value>) {
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

fn default_job(o: &mut Map<String, Value>) {
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
    set(spec, "backoffLimit", json!(6));
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    set(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    default_template(spec);
}

fn default_cronjob(o: &mut Map<String, Value>) {
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

fn default_rbac_subjects(o: &mut Map<String, Value>) {
    each_obj(o, "subjects", |s| {
        match s.get("kind").and_then(Value::as_str) {
            Some("User") | Some("Group") => {
                set(s, "apiGroup", json!("rbac.authorization.k8s.io"));
            }
            Some("ServiceAccount") => {
                set(s, "apiGroup", json!(""));
            }
            _ => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    fn defaulted(group: &str, version: &str, plural: &str, mut v: Value) -> Value {
        let info = lookup(group, version, plural).expect("registered");
        default_object(info, &mut v);
        let again = {
            let mut w = v.clone();
            default_object(info, &mut w);
            w
        };
        assert_eq!(v, again, "defaulting is idempotent");
        v
    }

    #[test]
    fn image_pull_policy_follows_tag() {
        assert_eq!(image_pull_policy("httpd"), "Always");
        assert_eq!(image_pull_policy("httpd:latest"), "Always");
        assert_eq!(image_pull_policy("httpd:2.4"), "IfNotPresent");
        assert_eq!(image_pull_policy("localhost:5000/httpd"), "Always");
        assert_eq!(image_pull_policy("localhost:5000/httpd:1"), "IfNotPresent");
        assert_eq!(image_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn pod_defaults() {
        let pod = defaulted(
            "",
            "v1",
            "pods",
            json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "ports": [{"containerPort": 80}],
                "readinessProbe": {"httpGet": {"port": 80}}}]}}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(
            spec["tolerations"],
            json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
        );
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn service_defaults() {
        let svc = defaulted(
            "",
            "v1",
            "services",
            json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "httpd-svc"},
            "spec": {"selector": {"run": "httpd"}, "ports": [{"port": 8080, "targetPort": 80}]}}),
        );
        assert_eq!(
            svc["spec"],
            json!({
            "selector": {"run": "httpd"},
            "ports": [{"port": 8080, "targetPort": 80, "protocol": "TCP"}],
            "type": "ClusterIP", "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]})
        );
        let np = defaulted(
            "",
            "v1",
            "services",
            json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
            "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
        );
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(np["spec"]["ports"][0]["targetPort"], 80);
    }

    #[test]
    fn v1beta1_deployment_gets_selector_from_template() {
        let d = defaulted(
            "apps",
            "v1beta1",
            "deployments",
            json!({
            "apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "httpd"},
            "spec": {"replicas": 4, "template": {"metadata": {"labels": {"run": "httpd"}},
                "spec": {"containers": [{"name": "httpd", "image": "httpd", "ports": [{"containerPort": 80}]}]}}}}),
        );
        assert_eq!(
            d["spec"]["selector"],
            json!({"matchLabels": {"run": "httpd"}})
        );
        assert_eq!(d["spec"]["replicas"], 4);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 2);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["metadata"]["labels"], json!({"run": "httpd"}));
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let v1 = defaulted(
            "apps",
            "v1",
            "deployments",
            json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}),
        );
        assert_eq!(v1["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(v1["spec"]["replicas"], 1);
        assert!(v1["metadata"].get("labels").is_none());
    }

    #[test]
    fn job_selects_its_own_pods() {
        let j = defaulted(
            "batch",
            "v1",
            "jobs",
            json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
        );
        assert_eq!(
            j["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
    }

    #[test]
    fn namespace_and_secret_defaults() {
        let ns = defaulted(
            "",
            "v1",
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}),
        );
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "dev"
        );
        let s = defaulted(
            "",
            "v1",
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
        );
        assert_eq!(s["type"], "Opaque");
    }
}
