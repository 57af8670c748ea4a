//! Defaulting tests: the objects kube-apiserver would store.

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
    let mut back = np.clone();
    back["spec"]["type"] = json!("ClusterIP");
    let back = defaulted("", "v1", "services", back);
    assert!(back["spec"].get("externalTrafficPolicy").is_none());
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
fn v1beta2_deployment_defaults_as_v1() {
    let d = defaulted(
        "apps",
        "v1beta2",
        "deployments",
        json!({
        "apiVersion": "apps/v1beta2", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}}),
    );
    // Unlike v1beta1: no selector or labels from the template, history limit 10.
    assert!(d["spec"].get("selector").is_none());
    assert!(d["metadata"].get("labels").is_none());
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(d["spec"]["replicas"], 1);
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
    assert_eq!(j["spec"]["podReplacementPolicy"], "TerminatingOrFailed");
    let per_index = defaulted(
        "batch",
        "v1",
        "jobs",
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "uid": "u-1"},
        "spec": {"completionMode": "Indexed", "completions": 2, "backoffLimitPerIndex": 1,
            "podFailurePolicy": {"rules": []},
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
    );
    assert_eq!(per_index["spec"]["backoffLimit"], i32::MAX);
    assert_eq!(per_index["spec"]["podReplacementPolicy"], "Failed");
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

#[test]
fn hpa_defaults_as_kube_v2() {
    let hpa = defaulted(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
    assert_eq!(
        hpa["spec"]["behavior"],
        json!({"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                  "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                               {"type": "Percent", "value": 100, "periodSeconds": 15}]},
               "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                  "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}})
    );
    // No behavior: none is invented (the controller applies kube's rules).
    let plain = defaulted(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4, "minReplicas": 2}}),
    );
    assert_eq!(plain["spec"]["minReplicas"], 2);
    assert!(plain["spec"].get("behavior").is_none());
}
