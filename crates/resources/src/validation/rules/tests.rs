//! Validation messages, as kubectl prints them after `is invalid: `.

use serde_json::json;

use crate::registry::lookup;
use crate::validation::{invalid_status, validate};

fn errs(
    group: &str,
    version: &str,
    plural: &str,
    obj: serde_json::Value,
    old: Option<serde_json::Value>,
) -> Vec<String> {
    let info = lookup(group, version, plural).expect("registered");
    validate(info, &obj, old.as_ref())
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn svc(spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "httpd-svc"}, "spec": spec})
}

#[test]
fn seed_objects_are_valid() {
    let s = svc(json!({"type": "ClusterIP", "selector": {"run": "httpd"},
        "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}]}));
    assert!(errs("", "v1", "services", s, None).is_empty());
    let np = svc(json!({"type": "NodePort", "selector": {"run": "httpd"},
        "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80, "nodePort": 31688}]}));
    assert!(errs("", "v1", "services", np, None).is_empty());
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "httpd", "labels": {"run": "httpd"}},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"run": "httpd"}}, "progressDeadlineSeconds": 600,
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": {"run": "httpd"}},
                              "spec": {"restartPolicy": "Always", "containers": [{"name": "httpd", "image": "httpd", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}});
    assert_eq!(
        errs("apps", "v1", "deployments", d, None),
        Vec::<String>::new()
    );
}

#[test]
fn service_messages() {
    let bad = svc(json!({"type": "ClusterIP", "ports": [{"port": 0, "protocol": "TCP"}]}));
    assert_eq!(
        errs("", "v1", "services", bad, None),
        vec!["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]
    );
    let two = svc(
        json!({"type": "Foo", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "ICMP"}]}),
    );
    assert_eq!(errs("", "v1", "services", two, None), vec![
        "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        "spec.ports[0].name: Required value",
        "spec.ports[1].name: Required value",
        "spec.ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
    ]);
    let none = svc(json!({"type": "ClusterIP"}));
    assert_eq!(
        errs("", "v1", "services", none, None),
        vec!["spec.ports: Required value"]
    );
    let np = svc(
        json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31000}]}),
    );
    assert_eq!(
        errs("", "v1", "services", np, None),
        vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
    let old = svc(
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"], "ports": [{"port": 80, "protocol": "TCP"}]}),
    );
    let new = svc(
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.6", "clusterIPs": ["10.96.0.6"], "ports": [{"port": 80, "protocol": "TCP"}]}),
    );
    assert_eq!(
        errs("", "v1", "services", new, Some(old)),
        vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.6\"}: may not change once set"]
    );
    let bad_name = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 1, "protocol": "TCP"}]}});
    assert_eq!(errs("", "v1", "services", bad_name, None), vec![
        "metadata.name: Invalid value: \"1svc\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]);
}

#[test]
fn name_required() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
    assert_eq!(
        errs("", "v1", "configmaps", cm, None),
        vec!["metadata.name: Required value: name or generateName is required"]
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Dev"}});
    assert_eq!(errs("", "v1", "namespaces", ns, None).len(), 1);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"bad key": "v"}});
    assert!(errs("", "v1", "configmaps", cm, None)[0]
        .starts_with("data[bad key]: Invalid value: \"bad key\": a valid config key must consist"));
}

#[test]
fn deployment_messages() {
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "httpd"},
        "spec": {"replicas": -1, "selector": {"matchLabels": {"run": "other"}},
                 "template": {"metadata": {"labels": {"run": "httpd"}}, "spec": {"containers": [{"name": "httpd"}]}}}});
    assert_eq!(errs("apps", "v1", "deployments", d, None), vec![
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        "spec.template.metadata.labels: Invalid value: map[string]string{\"run\":\"httpd\"}: `selector` does not match template `labels`",
        "spec.template.spec.containers[0].image: Required value",
    ]);
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "httpd"},
        "spec": {"template": {"metadata": {"labels": {"run": "httpd"}}, "spec": {"containers": []}}}});
    assert_eq!(
        errs("apps", "v1", "deployments", d, None),
        vec![
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"run\":\"httpd\"}: `selector` does not match template `labels`",
            "spec.template.spec.containers: Required value",
        ]
    );
}

#[test]
fn pod_updates_are_restricted() {
    let pod = |image: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": image}]}})
    };
    assert!(errs("", "v1", "pods", pod("b", "n1"), Some(pod("a", "n1"))).is_empty());
    let e = errs("", "v1", "pods", pod("a", "n2"), Some(pod("a", "n1")));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("spec: Forbidden: pod updates may not change fields other than"));
}

#[test]
fn ephemeral_containers_subresource_rules() {
    let info = lookup("", "v1", "pods").expect("pods");
    let pod = |ecs: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}],
                 "ephemeralContainers": ecs}})
    };
    let check = |new: serde_json::Value, old: serde_json::Value| -> Vec<String> {
        crate::validation::validate_ephemeral_containers_update(info, &new, &old)
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let dbg = json!({"name": "dbg", "image": "busybox", "targetContainerName": "c", "stdin": true, "tty": true});
    // An addition is fine (a pod update would refuse it).
    assert_eq!(
        check(pod(json!([dbg])), pod(json!([]))),
        Vec::<String>::new()
    );
    let e = errs("", "v1", "pods", pod(json!([dbg])), Some(pod(json!([]))));
    assert!(e[0].starts_with("spec: Forbidden: pod updates may not change fields other than"));
    // Removal and change of an existing one.
    assert_eq!(
        check(pod(json!([])), pod(json!([dbg]))),
        vec!["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed\n"]
    );
    let mut changed = dbg.clone();
    changed["image"] = json!("alpine");
    assert_eq!(
        check(pod(json!([changed])), pod(json!([dbg]))),
        vec!["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be changed\n- image: \"busybox\"\n+ image: \"alpine\"\n"]
    );
    // Fields an ephemeral container may not have, names, targets.
    let bad = json!([
        {"name": "c", "image": "busybox"},
        {"name": "e1", "image": "busybox", "targetContainerName": "nope",
         "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}},
         "readinessProbe": {"exec": {"command": ["true"]}}, "lifecycle": {"preStop": {"exec": {"command": ["true"]}}},
         "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "x"}]},
        {"name": "e1", "image": "busybox", "resources": {}}
    ]);
    assert_eq!(
        check(pod(bad), pod(json!([]))),
        vec![
            "spec.ephemeralContainers[0].name: Duplicate value: \"c\"",
            "spec.ephemeralContainers[1].targetContainerName: Not found: \"nope\"",
            "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[1].resources: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[1].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[1].lifecycle: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[1].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[2].name: Duplicate value: \"e1\"",
        ]
    );
    // Static pods have none.
    let mut mirror = pod(json!([]));
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
    let mut with = mirror.clone();
    with["spec"]["ephemeralContainers"] = json!([dbg]);
    assert_eq!(
        check(with, mirror),
        vec![": Forbidden: static pods do not support ephemeral containers"]
    );
}

#[test]
fn invalid_status_shape() {
    let info = lookup("apps", "v1", "deployments").expect("deployments");
    let errs = vec![crate::validation::FieldError::required("spec.selector", "")];
    let st = invalid_status(info, "httpd", &errs);
    assert_eq!(
        st["message"],
        "Deployment.apps \"httpd\" is invalid: spec.selector: Required value"
    );
    assert_eq!(st["code"], 422);
    assert_eq!(
        st["details"]["causes"][0],
        json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"})
    );
}

#[test]
fn dns_addon_shaped_objects_are_valid_after_defaulting() {
    let info = lookup("apps", "v1", "deployments").expect("deployments");
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}},
                "spec": {"priorityClassName": "system-cluster-critical", "serviceAccountName": "coredns",
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                    "containers": [{"name": "coredns", "image": "skiff", "imagePullPolicy": "IfNotPresent",
                        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                  {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                  {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
                        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"}},
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}}}],
                    "dnsPolicy": "Default"}}}});
    crate::default_object(info, &mut d);
    assert_eq!(validate(info, &d, None), vec![]);
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"],
        json!({"maxUnavailable": 1, "maxSurge": "25%"})
    );
    let svc_info = lookup("", "v1", "services").expect("services");
    let mut s = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153"}},
        "spec": {"selector": {"k8s-app": "kube-dns"}, "clusterIP": "10.96.0.10",
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                      {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                      {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}});
    crate::default_object(svc_info, &mut s);
    assert_eq!(validate(svc_info, &s, None), vec![]);
    let pod_info = lookup("", "v1", "pods").expect("pods");
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "coredns-x"},
        "spec": d["spec"]["template"]["spec"].clone()});
    crate::default_object(pod_info, &mut p);
    assert_eq!(p["spec"]["priority"], 2_000_000_000);
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(3));
}

fn job(meta: serde_json::Value, spec: serde_json::Value) -> serde_json::Value {
    let mut s = json!({"template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u-1"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}});
    for (k, v) in spec.as_object().expect("spec") {
        s[k] = v.clone();
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": s})
}

#[test]
fn job_messages() {
    let meta = json!({"name": "pi", "uid": "u-1"});
    let generated = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}});
    let ok = job(meta.clone(), json!({"selector": generated}));
    assert!(errs("batch", "v1", "jobs", ok.clone(), None).is_empty());
    let own = job(
        meta.clone(),
        json!({"selector": {"matchLabels": {"app": "x"}}}),
    );
    assert_eq!(
        errs("batch", "v1", "jobs", own, None),
        vec![
            "spec.selector: Invalid value: \"&v1.LabelSelector{MatchLabels:map[string]string{\\\"app\\\":\\\"x\\\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}\": `selector` not auto-generated",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"batch.kubernetes.io/controller-uid\":\"u-1\"}: `selector` does not match template `labels`",
        ]
    );
    let manual = job(
        meta.clone(),
        json!({"manualSelector": true, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1", "x": "y"}}}),
    );
    assert_eq!(
        errs("batch", "v1", "jobs", manual, None).len(),
        1,
        "only the template mismatch"
    );
    let indexed = job(
        meta.clone(),
        json!({"selector": generated, "completionMode": "Indexed", "parallelism": -1}),
    );
    assert_eq!(
        errs("batch", "v1", "jobs", indexed, None),
        vec![
            "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
            "spec.completions: Required value: when completion mode is Indexed",
        ]
    );
    let moved = job(
        meta,
        json!({"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-2"}}}),
    );
    assert!(errs("batch", "v1", "jobs", moved, Some(ok))
        .iter()
        .any(|m| m.ends_with("field is immutable")));
}

#[test]
fn cronjob_schedule_messages() {
    let cj = |sched: &str| {
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
            "spec": {"schedule": sched, "concurrencyPolicy": "Allow", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    };
    assert!(errs("batch", "v1", "cronjobs", cj("*/5 * * * mon-fri"), None).is_empty());
    assert!(errs("batch", "v1", "cronjobs", cj("@hourly"), None).is_empty());
    assert_eq!(
        errs("batch", "v1", "cronjobs", cj("x"), None),
        vec!["spec.schedule: Invalid value: \"x\": expected exactly 5 fields, found 1: [x]"]
    );
    assert_eq!(
        errs("batch", "v1", "cronjobs", cj(""), None),
        vec!["spec.schedule: Required value"]
    );
}

#[test]
fn job_policies_messages() {
    let meta = json!({"name": "pi", "uid": "u-1"});
    let generated = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}});
    let with = |extra: serde_json::Value| {
        let mut spec = json!({"selector": generated});
        for (k, v) in extra.as_object().expect("extra") {
            spec[k] = v.clone();
        }
        errs("batch", "v1", "jobs", job(meta.clone(), spec), None)
    };
    assert!(with(json!({"completionMode": "Indexed", "completions": 4, "backoffLimitPerIndex": 1,
        "maxFailedIndexes": 2, "successPolicy": {"rules": [{"succeededIndexes": "0-2", "succeededCount": 2}]},
        "managedBy": "kubernetes.io/job-controller", "podReplacementPolicy": "Failed"}))
    .is_empty());
    assert_eq!(
        with(json!({"backoffLimitPerIndex": 1, "maxFailedIndexes": 1})),
        vec![
            "spec.backoffLimitPerIndex: Forbidden: requires indexed completion mode",
            "spec.maxFailedIndexes: Forbidden: requires indexed completion mode",
        ]
    );
    assert_eq!(
        with(json!({"completionMode": "Indexed", "completions": 2, "maxFailedIndexes": 3})),
        vec![
            "spec.maxFailedIndexes: Invalid value: 3: must be less than or equal to completions",
            "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
        ]
    );
    assert_eq!(
        with(json!({"completionMode": "Indexed", "completions": 4,
            "successPolicy": {"rules": [{}, {"succeededIndexes": "3-1"}, {"succeededIndexes": "0,1", "succeededCount": 3}]}})),
        vec![
            "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be specified",
            "spec.successPolicy.rules[1].succeededIndexes: Invalid value: \"3-1\": error parsing succeededIndexes: non-increasing order, previous: 3, current: 1",
            "spec.successPolicy.rules[2].succeededCount: Invalid value: 3: must be less than or equal to 2 (the number of indexes in the specified succeededIndexes field)",
        ]
    );
    assert_eq!(
        with(json!({"successPolicy": {"rules": [{"succeededCount": 1}]}})),
        vec![
            "spec.completionMode: Invalid value: \"NonIndexed\": requires indexed completion mode"
        ]
    );
    assert_eq!(
        with(json!({"managedBy": "job-controller"})),
        vec!["spec.managedBy: Invalid value: \"job-controller\": must be a domain-prefixed path (such as \"acme.io/foo\")"]
    );
    assert_eq!(
        with(json!({"podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]},
            "podReplacementPolicy": "TerminatingOrFailed"})),
        vec![
            "spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set",
            "spec.podReplacementPolicy: Unsupported value: \"TerminatingOrFailed\": supported values: \"Failed\"",
        ]
    );
}

#[test]
fn job_update_messages() {
    let meta = json!({"name": "pi", "uid": "u-1"});
    let generated = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}});
    let old = job(
        meta.clone(),
        json!({"selector": generated, "completions": 3}),
    );
    let mut changed = old.clone();
    changed["spec"]["completions"] = json!(4);
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx");
    changed["spec"]["managedBy"] = json!("example.com/x");
    let got = errs("batch", "v1", "jobs", changed, Some(old.clone()));
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[0],
        "spec.completions: Invalid value: 4: field is immutable"
    );
    assert!(
        got[1].starts_with("spec.template: Invalid value: ")
            && got[1].ends_with("field is immutable")
    );
    assert_eq!(
        got[2],
        "spec.managedBy: Invalid value: \"example.com/x\": field is immutable"
    );
    // A suspended Job that never started may change where its pods go.
    let mut suspended = old.clone();
    suspended["spec"]["suspend"] = json!(true);
    let mut moved = suspended.clone();
    moved["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    assert!(errs("batch", "v1", "jobs", moved, Some(suspended)).is_empty());
    // An elastic Indexed Job scales completions with parallelism.
    let indexed = job(
        meta,
        json!({"selector": generated, "completionMode": "Indexed", "completions": 3, "parallelism": 3}),
    );
    let mut scaled = indexed.clone();
    scaled["spec"]["completions"] = json!(5);
    scaled["spec"]["parallelism"] = json!(5);
    assert!(errs("batch", "v1", "jobs", scaled.clone(), Some(indexed.clone())).is_empty());
    scaled["spec"]["parallelism"] = json!(3);
    assert_eq!(
        errs("batch", "v1", "jobs", scaled, Some(indexed)),
        vec!["spec.completions: Invalid value: 5: can only be modified in tandem with spec.parallelism"]
    );
}

#[test]
fn cronjob_messages() {
    let cj = |name: &str, spec: serde_json::Value| {
        let mut s = json!({"schedule": "* * * * *", "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}});
        for (k, v) in spec.as_object().expect("spec") {
            s[k] = v.clone();
        }
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": s})
    };
    assert!(errs(
        "batch",
        "v1",
        "cronjobs",
        cj("tick", json!({"timeZone": "Europe/Berlin"})),
        None
    )
    .is_empty());
    let long = "a".repeat(53);
    assert_eq!(
        errs("batch", "v1", "cronjobs", cj(&long, json!({})), None),
        vec![format!(
            "metadata.name: Invalid value: \"{long}\": must be no more than 52 characters"
        )]
    );
    assert_eq!(
        errs("batch", "v1", "cronjobs", cj("tick", json!({"schedule": "TZ=Europe/Berlin 0 9 * * *"})), None),
        vec!["spec.schedule: Invalid value: \"TZ=Europe/Berlin 0 9 * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
    );
    assert_eq!(
        errs(
            "batch",
            "v1",
            "cronjobs",
            cj("tick", json!({"timeZone": "Mars/Olympus"})),
            None
        ),
        vec!["spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"]
    );
    assert_eq!(
        errs("batch", "v1", "cronjobs", cj("tick", json!({"concurrencyPolicy": "Sometimes",
            "jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {
                "restartPolicy": "Always", "containers": [{"name": "c", "image": "busybox"}]}}}}})), None),
        vec![
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            "spec.jobTemplate.spec.selector: Invalid value: \"&v1.LabelSelector{MatchLabels:map[string]string{\\\"a\\\":\\\"b\\\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}\": `selector` will be auto-generated",
        ]
    );
}
