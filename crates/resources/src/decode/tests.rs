//! Messages as kube-apiserver 1.33 gives them for the same bodies.

use serde_json::json;

use super::*;
use crate::registry::lookup;

fn err(group: &str, version: &str, plural: &str, body: Value) -> String {
    let info = lookup(group, version, plural).expect("registered");
    match decode(info, body) {
        Err(e) => e.0,
        Ok(d) => panic!("decoded: {}", d.object),
    }
}

#[test]
fn wrongly_typed_fields_get_go_messages() {
    let cases = [
        (
            ("", "v1", "services"),
            json!({"spec": {"ports": [{"port": 80, "name": 5}]}}),
            "json: cannot unmarshal number into Go struct field ServicePort.spec.ports.name of type string",
        ),
        (
            ("", "v1", "services"),
            json!({"spec": {"selector": {"a": 1}}}),
            "json: cannot unmarshal number into Go struct field ServiceSpec.spec.selector of type string",
        ),
        (
            ("", "v1", "services"),
            json!({"spec": {"publishNotReadyAddresses": "yes"}}),
            "json: cannot unmarshal string into Go struct field ServiceSpec.spec.publishNotReadyAddresses of type bool",
        ),
        (
            ("", "v1", "services"),
            json!({"spec": {"ports": 5}}),
            "json: cannot unmarshal number into Go struct field ServiceSpec.spec.ports of type []v1.ServicePort",
        ),
        (
            ("", "v1", "services"),
            json!({"spec": {"ports": [{"port": 80, "protocol": 6}]}}),
            "json: cannot unmarshal number into Go struct field ServicePort.spec.ports.protocol of type v1.Protocol",
        ),
        (
            ("", "v1", "services"),
            json!({"spec": {"ipFamilies": [4]}}),
            "json: cannot unmarshal number into Go struct field ServiceSpec.spec.ipFamilies of type v1.IPFamily",
        ),
        (
            ("", "v1", "services"),
            json!({"spec": "x"}),
            "json: cannot unmarshal string into Go struct field Service.spec of type v1.ServiceSpec",
        ),
        (
            ("", "v1", "configmaps"),
            json!({"data": {"a": 1}}),
            "json: cannot unmarshal number into Go struct field ConfigMap.data of type string",
        ),
        (
            ("", "v1", "configmaps"),
            json!({"data": [1, 2]}),
            "json: cannot unmarshal array into Go struct field ConfigMap.data of type map[string]string",
        ),
        (
            ("", "v1", "configmaps"),
            json!({"metadata": {"annotations": {"a": 1}}}),
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.annotations of type string",
        ),
        (
            ("apps", "v1", "deployments"),
            json!({"spec": {"replicas": 1.5}}),
            "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            ("apps", "v1", "deployments"),
            json!({"spec": {"replicas": "two"}}),
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            ("apps", "v1", "deployments"),
            json!({"spec": {"replicas": 99999999999_i64}}),
            "json: cannot unmarshal number 99999999999 into Go struct field DeploymentSpec.spec.replicas of type int32",
        ),
        (
            ("", "v1", "pods"),
            json!({"spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"memory": "lots"}}}]}}),
            QUANTITY_FORMAT,
        ),
        (
            ("", "v1", "pods"),
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": true}]}]}}),
            "json: cannot unmarshal bool into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32",
        ),
        (
            ("", "v1", "services"),
            json!({"spec": {"ports": [{"port": 80, "targetPort": true}]}}),
            "json: cannot unmarshal bool into Go value of type int32",
        ),
        (
            ("", "v1", "secrets"),
            json!({"data": {"a": "not base64!"}}),
            "illegal base64 data at input byte 3",
        ),
        (
            ("", "v1", "secrets"),
            json!({"data": {"a": 5}}),
            "json: cannot unmarshal number into Go struct field Secret.data of type []uint8",
        ),
        (
            ("", "v1", "pods"),
            json!({"metadata": {"creationTimestamp": "yesterday"}}),
            "parsing time \"yesterday\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"yesterday\" as \"2006\"",
        ),
    ];
    for ((g, v, p), body, want) in cases {
        assert_eq!(err(g, v, p, body.clone()), want, "{p}: {body}");
    }
}

#[test]
fn unknown_fields_are_dropped_and_reported() {
    let info = lookup("", "v1", "services").expect("services");
    let d = decode(
        info,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "bogus": 1},
               "spec": {"ports": [{"port": 80, "colour": "red"}], "selector": {"a": "b"}}}),
    )
    .expect("decodes");
    assert_eq!(d.unknown, vec![".metadata.bogus", ".spec.ports[0].colour"]);
    assert_eq!(
        d.object,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}})
    );
}

#[test]
fn nulls_and_well_typed_values_pass() {
    let info = lookup("", "v1", "pods").expect("pods");
    let body = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": null, "creationTimestamp": null},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"limits": {"cpu": 1, "memory": "64Mi"}, "requests": {"cpu": "100m"}},
            "ports": [{"containerPort": 80}],
            "livenessProbe": {"httpGet": {"port": "http", "path": "/"}}}],
            "terminationGracePeriodSeconds": 30}});
    let d = decode(info, body.clone()).expect("decodes");
    assert!(d.unknown.is_empty());
    // Null fields are left at Go's zero value, which is not encoded.
    let mut want = body;
    want["metadata"] = json!({"name": "p"});
    assert_eq!(d.object, want);
    let d = decode(
        info,
        json!({"metadata": {"labels": {"a": null}}, "spec": {"containers": [null]}}),
    )
    .expect("decodes");
    assert_eq!(
        d.object,
        json!({"metadata": {"labels": {"a": ""}}, "spec": {"containers": [{}]}})
    );
}

#[test]
fn secret_string_data_is_folded_into_data() {
    let info = lookup("", "v1", "secrets").expect("secrets");
    let d = decode(
        info,
        json!({"kind": "Secret", "data": {"a": "MQ==", "b": "Mg=="}, "stringData": {"b": "two", "c": "3"}}),
    )
    .expect("decodes");
    assert_eq!(
        d.object,
        json!({"kind": "Secret", "data": {"a": "MQ==", "b": "dHdv", "c": "Mw=="}})
    );
}

#[test]
fn quantities_parse_as_kube_parses_them() {
    for ok in [
        "1", "-1", "+1", "0.5", ".5", "5.", "100m", "1Gi", "1e3", "1E-3", "2k", "3M", "1.5Ki", "0",
        "-",
    ] {
        assert_eq!(parse_quantity(ok), Ok(()), "{ok}");
    }
    for (bad, want) in [
        ("", QUANTITY_FORMAT),
        ("lots", QUANTITY_FORMAT),
        ("1 Gi", QUANTITY_FORMAT),
        ("1Gb", QUANTITY_FORMAT),
        ("1Zi", QUANTITY_FORMAT),
        ("1Ki5", QUANTITY_SUFFIX),
        ("1e", QUANTITY_SUFFIX),
        ("1mm", QUANTITY_SUFFIX),
    ] {
        assert_eq!(parse_quantity(bad), Err(want), "{bad}");
    }
}

#[test]
fn every_kind_with_a_type_checks_its_typed_form() {
    // A well-formed empty object of every kind deserializes with its k8s-openapi type;
    // a wrongly typed one does not.
    for k in &crate::schema::schemas().kinds {
        let Some(check) = k.check else { continue };
        let _ = check(&json!({"metadata": {"name": "x"}}));
        assert!(
            check(&json!({"metadata": {"name": 5}})).is_err(),
            "{}/{} {}",
            k.group,
            k.version,
            k.kind
        );
    }
}

/// Objects of several kinds with most field types: strings, int32/int64, bools, maps,
/// lists of structs, quantities, int-or-string, times, base64.
fn samples() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    vec![
        (
            "",
            "v1",
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"},
                         "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u", "controller": true}]},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "c", "image": "x", "args": ["a"],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "A", "value": "1"}],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                    "readinessProbe": {"httpGet": {"port": 80, "path": "/"}, "periodSeconds": 1}}],
                "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]},
            "status": {"phase": "Running", "podIP": "10.244.0.5",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        ),
        (
            "",
            "v1",
            "services",
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"type": "NodePort", "selector": {"run": "httpd"}, "publishNotReadyAddresses": false,
                     "ports": [{"name": "http", "protocol": "TCP", "nodePort": 31688, "port": 8080, "targetPort": 80}],
                     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}}}),
        ),
        (
            "",
            "v1",
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s"}, "type": "Opaque", "immutable": false,
            "data": {"a": "MQ=="}, "stringData": {"b": "2"}}),
        ),
        (
            "",
            "v1",
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {"a": "b"}}, "data": {"a": "1"}, "binaryData": {"b": "MQ=="}}),
        ),
        (
            "apps",
            "v1",
            "deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"replicas": 2, "revisionHistoryLimit": 3, "paused": false,
                "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": {"replicas": 2, "observedGeneration": 5}}),
        ),
        (
            "coordination.k8s.io",
            "v1",
            "leases",
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l"},
            "spec": {"holderIdentity": "h", "leaseDurationSeconds": 40, "renewTime": "2026-01-01T00:00:00.000000Z"}}),
        ),
    ]
}

/// Every leaf (and every object or list) of `v`, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        _ => {}
    }
}

#[test]
fn nothing_decoded_fails_to_deserialize_with_its_type() {
    // Every field of every sample replaced by a value of every JSON type: what decode
    // accepts, k8s-openapi (every typed client) must deserialize too, but for required
    // fields left empty, which validation reports.
    let replacements = [
        json!(5),
        json!(-1),
        json!(1.5),
        json!(99999999999_i64),
        json!("x"),
        json!("2026-01-01T00:00:00Z"),
        json!(true),
        json!([]),
        json!([1]),
        json!({}),
        json!({"a": 1}),
        Value::Null,
    ];
    let mut checked = 0;
    for (g, v, plural, sample) in samples() {
        let info = lookup(g, v, plural).expect("registered");
        let mut ptrs = Vec::new();
        pointers(&sample, String::new(), &mut ptrs);
        // apiVersion and kind are checked against the URL before decoding.
        for ptr in ptrs
            .into_iter()
            .filter(|p| p != "/apiVersion" && p != "/kind")
        {
            for r in &replacements {
                let mut body = sample.clone();
                if let Some(slot) = body.pointer_mut(&ptr) {
                    *slot = r.clone();
                }
                let Ok(d) = decode(info, body.clone()) else {
                    continue;
                };
                checked += 1;
                if let Err(e) = check_typed(info.group, info.version, info.kind, &d.object) {
                    assert!(
                        e.contains("missing field"),
                        "{plural} {ptr} = {r}: decoded, but the typed form fails: {e}\n{}",
                        d.object
                    );
                }
            }
        }
    }
    assert!(checked > 300, "{checked}");
}

/// What the typed decode adds to a write: `decode` of a controller-made Pod and of a
/// Deployment, and `check_typed` of the Pod (run with `--ignored --nocapture`; figures
/// in BENCH.md).
#[test]
#[ignore = "benchmark: run explicitly"]
fn bench_decode_cost() {
    let pods = lookup("", "v1", "pods").expect("pods");
    let deployments = lookup("apps", "v1", "deployments").expect("deployments");
    let samples = samples();
    let pod = samples[0].3.clone();
    let deploy = samples[4].3.clone();
    let n = 5000u32;
    let time = |f: &dyn Fn()| {
        f();
        let start = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed() / n
    };
    let clone = time(&|| drop(pod.clone()));
    let decode_pod = time(&|| drop(decode(pods, pod.clone())));
    let decode_deploy = time(&|| drop(decode(deployments, deploy.clone())));
    let typed_pod = time(&|| drop(check_typed("", "v1", "Pod", &pod)));
    eprintln!(
        "per object: clone {clone:?}; decode pod {decode_pod:?}, deployment {decode_deploy:?}; check_typed pod {typed_pod:?}"
    );
}
