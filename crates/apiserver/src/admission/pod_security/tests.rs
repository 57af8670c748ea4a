//! The plugin over an in-memory store: labels, enforce, warn, workloads, namespace
//! changes.

use serde_json::{json, Value};
use skiff_store::SqliteStore;

use super::*;
use crate::storage::encode;

fn info(group: &str, version: &str, plural: &str) -> &'static ResourceInfo {
    skiff_resources::lookup(group, version, plural).expect("registered")
}

/// A plugin over a store holding namespace `ns` with `labels`.
fn plugin(ns: &str, labels: Value) -> PodSecurity {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().expect("store"));
    let nsobj = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": labels}});
    store
        .create(
            &key(info("", "v1", "namespaces"), None, ns),
            &encode(&nsobj),
        )
        .expect("namespace");
    PodSecurity::new(store)
}

fn attrs<'a>(
    info: &'static ResourceInfo,
    op: Operation,
    ns: Option<&'a str>,
    name: &'a str,
    sub: Option<&'a str>,
) -> Attributes<'a> {
    Attributes {
        info,
        requested: info,
        operation: op,
        namespace: ns,
        name,
        subresource: sub,
        user: None,
    }
}

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "d"}, "spec": spec})
}

fn plain() -> Value {
    json!({"containers": [{"name": "c", "image": "nginx"}]})
}

fn compliant() -> Value {
    json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "nginx", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]})
}

const RESTRICTED_PLAIN: &str = concat!(
    r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
    r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
    r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
    r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
);

/// validate's error message (if any) and the warnings.
fn run(
    p: &PodSecurity,
    a: &Attributes<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> (Option<String>, Vec<String>) {
    match p.validate(a, obj, old) {
        Err(e) => (Some(e.message), Vec::new()),
        Ok(()) => (None, p.warnings(a, obj, old)),
    }
}

#[test]
fn labels_parse_as_kube() {
    let labels = |v: Value| policy_from_labels(v.as_object());
    let (p, errs) = labels(json!({}));
    assert!(errs.is_empty());
    assert_eq!(p.enforce.to_string(), "privileged:latest");
    let (p, errs) = labels(
        json!({ENFORCE_LEVEL: "restricted", ENFORCE_VERSION: "v1.27",
        WARN_LEVEL: "baseline", AUDIT_VERSION: "latest"}),
    );
    assert!(errs.is_empty());
    assert_eq!(p.enforce.to_string(), "restricted:v1.27");
    assert_eq!(p.warn.to_string(), "baseline:latest");
    assert_eq!(p.audit.to_string(), "privileged:latest");
    // Invalid: enforce fails closed, warn and audit open; versions fall back to latest.
    let (p, errs) = labels(json!({ENFORCE_LEVEL: "strict", WARN_LEVEL: "nope",
        ENFORCE_VERSION: "v1.027", AUDIT_VERSION: "1.2"}));
    assert_eq!(p.enforce.to_string(), "restricted:latest");
    assert_eq!(p.warn.level, Level::Privileged);
    assert_eq!(errs.len(), 4);
    for v in ["v1.0", "v1.9", "v1.33", "latest"] {
        assert!(parse_version(v).is_some(), "{v}");
    }
    for v in ["v1.", "v2.1", "v1.01", "v1.x", "Latest", ""] {
        assert!(parse_version(v).is_none(), "{v}");
    }
}

#[test]
fn enforce_refuses_pods_with_kube_message() {
    let p = plugin("d", json!({ENFORCE_LEVEL: "restricted"}));
    let a = attrs(
        info("", "v1", "pods"),
        Operation::Create,
        Some("d"),
        "x",
        None,
    );
    let (err, _) = run(&p, &a, &pod("x", plain()), None);
    assert_eq!(
        err.as_deref(),
        Some(
            format!(r#"pods "x" is forbidden: violates PodSecurity "restricted:latest": {RESTRICTED_PLAIN}"#)
                .as_str()
        )
    );
    let e = p.validate(&a, &pod("x", plain()), None).unwrap_err();
    assert_eq!(e.code, 403);
    assert_eq!(run(&p, &a, &pod("x", compliant()), None), (None, vec![]));
}

#[test]
fn warn_and_enforce_together() {
    let p = plugin(
        "d",
        json!({ENFORCE_LEVEL: "baseline", ENFORCE_VERSION: "v1.30", WARN_LEVEL: "restricted"}),
    );
    let a = attrs(
        info("", "v1", "pods"),
        Operation::Create,
        Some("d"),
        "x",
        None,
    );
    // Baseline passes, restricted warns.
    let (err, warnings) = run(&p, &a, &pod("x", plain()), None);
    assert_eq!(err, None);
    assert_eq!(
        warnings,
        [format!(
            r#"would violate PodSecurity "restricted:latest": {RESTRICTED_PLAIN}"#
        )]
    );
    // Refused by enforce: no warnings.
    let priv_pod = pod(
        "x",
        json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]}),
    );
    let (err, warnings) = run(&p, &a, &priv_pod, None);
    assert_eq!(
        err.as_deref(),
        Some(
            r#"pods "x" is forbidden: violates PodSecurity "baseline:v1.30": privileged (container "c" must not set securityContext.privileged=true)"#
        )
    );
    assert!(warnings.is_empty());
}

#[test]
fn pod_updates_are_judged_only_when_significant() {
    let p = plugin("d", json!({ENFORCE_LEVEL: "restricted"}));
    let old = pod("x", plain());
    let up = |sub| {
        attrs(
            info("", "v1", "pods"),
            Operation::Update,
            Some("d"),
            "x",
            sub,
        )
    };
    // Labels, status: allowed even though the pod violates.
    let mut labelled = old.clone();
    labelled["metadata"]["labels"] = json!({"a": "b"});
    assert_eq!(run(&p, &up(None), &labelled, Some(&old)).0, None);
    assert_eq!(run(&p, &up(Some("status")), &labelled, Some(&old)).0, None);
    // A new image: judged.
    let mut image = old.clone();
    image["spec"]["containers"][0]["image"] = json!("nginx:2");
    assert!(run(&p, &up(None), &image, Some(&old)).0.is_some());
    // A new ephemeral container: judged.
    let mut eph = old.clone();
    eph["spec"]["ephemeralContainers"] = json!([{"name": "dbg", "image": "busybox"}]);
    assert!(run(&p, &up(Some("ephemeralcontainers")), &eph, Some(&old))
        .0
        .is_some());
    assert!(significant_pod_update(&eph, &old));
    assert!(!significant_pod_update(&eph, &eph));
}

#[test]
fn workloads_warn_but_are_never_refused() {
    let p = plugin(
        "d",
        json!({ENFORCE_LEVEL: "restricted", WARN_LEVEL: "restricted"}),
    );
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": plain()}}});
    let a = attrs(
        info("apps", "v1", "deployments"),
        Operation::Create,
        Some("d"),
        "web",
        None,
    );
    let (err, warnings) = run(&p, &a, &deploy, None);
    assert_eq!(err, None);
    assert_eq!(
        warnings,
        [format!(
            r#"would violate PodSecurity "restricted:latest": {RESTRICTED_PLAIN}"#
        )]
    );
    // Subresources (scale, status) are not judged.
    let scale = attrs(
        info("apps", "v1", "deployments"),
        Operation::Update,
        Some("d"),
        "web",
        Some("scale"),
    );
    assert_eq!(run(&p, &scale, &deploy, Some(&deploy)), (None, vec![]));
    // CronJobs: the job template's pod template.
    let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": plain()}}}}});
    let a = attrs(
        info("batch", "v1", "cronjobs"),
        Operation::Create,
        Some("d"),
        "cj",
        None,
    );
    assert_eq!(run(&p, &a, &cj, None).1.len(), 1);
    // Enforce only: no warning for workloads.
    let p = plugin("d", json!({ENFORCE_LEVEL: "restricted"}));
    let a = attrs(
        info("apps", "v1", "deployments"),
        Operation::Create,
        Some("d"),
        "web",
        None,
    );
    assert_eq!(run(&p, &a, &deploy, None), (None, vec![]));
}

#[test]
fn unlabelled_namespaces_allow_everything() {
    let p = plugin("d", json!({}));
    let a = attrs(
        info("", "v1", "pods"),
        Operation::Create,
        Some("d"),
        "x",
        None,
    );
    let privileged = pod(
        "x",
        json!({"hostNetwork": true, "containers": [{"name": "c", "securityContext": {"privileged": true}}]}),
    );
    assert_eq!(run(&p, &a, &privileged, None), (None, vec![]));
    // A namespace that is not there: not judged.
    let a = attrs(
        info("", "v1", "pods"),
        Operation::Create,
        Some("gone"),
        "x",
        None,
    );
    assert_eq!(run(&p, &a, &privileged, None), (None, vec![]));
}

#[test]
fn invalid_labels_are_refused_on_namespaces() {
    let p = plugin("d", json!({}));
    let ns = |labels: Value| json!({"metadata": {"name": "n", "labels": labels}});
    let create = attrs(
        info("", "v1", "namespaces"),
        Operation::Create,
        None,
        "n",
        None,
    );
    let e = p
        .validate(&create, &ns(json!({ENFORCE_LEVEL: "strict"})), None)
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        r#"Namespace "n" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
    );
    let e = p
        .validate(
            &create,
            &ns(json!({WARN_LEVEL: "x", WARN_VERSION: "v2"})),
            None,
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        concat!(
            r#"Namespace "n" is invalid: [metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "x": must be one of privileged, baseline, restricted, "#,
            r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v2": must be "latest" or "v1.x"]"#
        )
    );
    // Unchanged invalid labels do not block other updates.
    let update = attrs(
        info("", "v1", "namespaces"),
        Operation::Update,
        None,
        "n",
        None,
    );
    let bad = ns(json!({ENFORCE_LEVEL: "strict"}));
    let mut relabelled = bad.clone();
    relabelled["metadata"]["labels"]["x"] = json!("y");
    assert!(p.validate(&update, &relabelled, Some(&bad)).is_ok());
    assert!(p
        .validate(&update, &ns(json!({ENFORCE_LEVEL: "stricter"})), Some(&bad))
        .is_err());
}

#[test]
fn a_stricter_enforce_label_warns_about_existing_pods() {
    let p = plugin("d", json!({}));
    let pods = info("", "v1", "pods");
    let priv_spec = json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]});
    for (name, spec) in [
        ("b-priv", priv_spec.clone()),
        ("a-priv", priv_spec.clone()),
        ("c-priv", priv_spec),
        ("plain", plain()),
        ("good", compliant()),
    ] {
        p.store
            .create(&key(pods, Some("d"), name), &encode(&pod(name, spec)))
            .expect("pod");
    }
    let ns = |labels: Value| json!({"metadata": {"name": "d", "labels": labels}});
    let update = attrs(
        info("", "v1", "namespaces"),
        Operation::Update,
        None,
        "d",
        None,
    );
    let (err, warnings) = run(
        &p,
        &update,
        &ns(json!({ENFORCE_LEVEL: "restricted"})),
        Some(&ns(json!({}))),
    );
    assert_eq!(err, None);
    assert_eq!(
        warnings,
        [
            r#"existing pods in namespace "d" violate the new PodSecurity enforce level "restricted:latest""#,
            "a-priv (and 2 other pods): privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
            "plain: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
        ]
    );
    // Baseline: only the privileged pods.
    let (_, warnings) = run(
        &p,
        &update,
        &ns(json!({ENFORCE_LEVEL: "baseline"})),
        Some(&ns(json!({}))),
    );
    assert_eq!(
        warnings,
        [
            r#"existing pods in namespace "d" violate the new PodSecurity enforce level "baseline:latest""#,
            "a-priv (and 2 other pods): privileged",
        ]
    );
    // Relaxing, or not changing enforce: nothing.
    for (new, old) in [
        (
            json!({ENFORCE_LEVEL: "baseline"}),
            json!({ENFORCE_LEVEL: "restricted"}),
        ),
        (
            json!({ENFORCE_LEVEL: "restricted", "x": "y"}),
            json!({ENFORCE_LEVEL: "restricted"}),
        ),
        (json!({ENFORCE_LEVEL: "privileged"}), json!({})),
    ] {
        assert_eq!(run(&p, &update, &ns(new), Some(&ns(old))), (None, vec![]));
    }
    // A new version at the same level is checked again.
    let (_, warnings) = run(
        &p,
        &update,
        &ns(json!({ENFORCE_LEVEL: "baseline", ENFORCE_VERSION: "v1.30"})),
        Some(&ns(json!({ENFORCE_LEVEL: "restricted"}))),
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn handles_only_pods_namespaces_and_workloads() {
    let p = plugin("d", json!({}));
    for (g, v, r) in [
        ("", "v1", "pods"),
        ("", "v1", "namespaces"),
        ("", "v1", "podtemplates"),
        ("", "v1", "replicationcontrollers"),
        ("apps", "v1", "deployments"),
        ("apps", "v1", "daemonsets"),
        ("batch", "v1", "jobs"),
    ] {
        assert!(p.handles(info(g, v, r)), "{r}");
    }
    for (g, v, r) in [("", "v1", "services"), ("", "v1", "configmaps")] {
        assert!(!p.handles(info(g, v, r)), "{r}");
    }
}
