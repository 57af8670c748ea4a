//! A golden table: pods and the exact text kube's checks produce for them.

use serde_json::{json, Value};

use super::*;

/// The detail message of `spec` (and `meta`) at `level`; "" when allowed.
fn msg(level: Level, meta: Value, spec: Value) -> String {
    forbidden_detail(&evaluate(level, &meta, &spec))
}

/// A container `name` with `sc` as its securityContext.
fn c(name: &str, sc: Value) -> Value {
    json!({"name": name, "image": "busybox", "securityContext": sc})
}

/// A container that passes every restricted check.
fn good(name: &str) -> Value {
    c(
        name,
        json!({
            "allowPrivilegeEscalation": false,
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
            "capabilities": {"drop": ["ALL"]},
        }),
    )
}

#[test]
fn baseline_golden() {
    let none = json!({});
    let cases: Vec<(Value, Value, &str)> = vec![
        (
            none.clone(),
            json!({"containers": [{"name": "a", "image": "x"}]}),
            "",
        ),
        (
            none.clone(),
            json!({"hostNetwork": true, "hostPID": true, "hostIPC": true, "containers": []}),
            "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)",
        ),
        (
            none.clone(),
            json!({"hostIPC": true, "hostNetwork": false}),
            "host namespaces (hostIPC=true)",
        ),
        (
            none.clone(),
            json!({"containers": [c("a", json!({"privileged": true})), c("b", json!({"privileged": false}))]}),
            r#"privileged (container "a" must not set securityContext.privileged=true)"#,
        ),
        (
            none.clone(),
            json!({"initContainers": [c("i", json!({"privileged": true}))], "containers": [c("a", json!({"privileged": true}))]}),
            r#"privileged (containers "i", "a" must not set securityContext.privileged=true)"#,
        ),
        (
            none.clone(),
            json!({"containers": [
                c("a", json!({"capabilities": {"add": ["NET_RAW", "CHOWN", "SYS_ADMIN"]}})),
                c("b", json!({"capabilities": {"add": ["NET_RAW"]}})),
                c("c", json!({"capabilities": {"add": ["KILL"]}})),
            ]}),
            r#"non-default capabilities (containers "a", "b" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)"#,
        ),
        (
            none.clone(),
            json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}]}),
            r#"hostPath volumes (volume "h")"#,
        ),
        (
            none.clone(),
            json!({"volumes": [{"name": "h1", "hostPath": {"path": "/"}}, {"name": "h2", "hostPath": {"path": "/x"}}]}),
            r#"hostPath volumes (volumes "h1", "h2")"#,
        ),
        (
            none.clone(),
            json!({"containers": [
                {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]},
                {"name": "b", "ports": [{"containerPort": 80, "hostPort": 9090}]},
            ]}),
            r#"hostPort (containers "a", "b" use hostPorts 8080, 9090)"#,
        ),
        (
            none.clone(),
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
            r#"hostPort (container "a" uses hostPort 80)"#,
        ),
        (
            json!({"annotations": {
                "container.apparmor.security.beta.kubernetes.io/a": "unconfined",
                "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
                "container.apparmor.security.beta.kubernetes.io/c": "localhost/x",
            }}),
            json!({}),
            r#"forbidden AppArmor profile (annotation must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/a="unconfined"")"#,
        ),
        (
            none.clone(),
            json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                   "containers": [c("a", json!({"appArmorProfile": {"type": "Unconfined"}})),
                                  c("b", json!({"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}))]}),
            r#"forbidden AppArmor profile (pod and container "a" must not set AppArmor profile type to "Unconfined")"#,
        ),
        (
            none.clone(),
            json!({"containers": [c("a", json!({"procMount": "Unmasked"})), c("b", json!({"procMount": "Default"}))]}),
            r#"procMount (container "a" must not set securityContext.procMount to "Unmasked")"#,
        ),
        (
            none.clone(),
            json!({"securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "u"}},
                   "containers": [c("a", json!({"seLinuxOptions": {"role": "r"}})),
                                  c("b", json!({"seLinuxOptions": {"type": "container_t", "level": "s0"}}))]}),
            r#"seLinuxOptions (pod and container "a" set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set; role may not be set)"#,
        ),
        (
            none.clone(),
            json!({"containers": [c("a", json!({"seLinuxOptions": {"user": "u"}}))]}),
            r#"seLinuxOptions (container "a" set forbidden securityContext.seLinuxOptions: user may not be set)"#,
        ),
        (
            none.clone(),
            json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                   "containers": [c("a", json!({"seccompProfile": {"type": "Unconfined"}})), c("b", json!({}))]}),
            r#"seccompProfile (pod and container "a" must not set securityContext.seccompProfile.type to "Unconfined")"#,
        ),
        (
            none.clone(),
            json!({"securityContext": {"sysctls": [
                {"name": "kernel.shm_rmid_forced", "value": "0"},
                {"name": "kernel.msgmax", "value": "1"},
                {"name": "net.ipv4.tcp_rmem", "value": "1"},
                {"name": "vm.swappiness", "value": "1"},
            ]}}),
            "forbidden sysctls (kernel.msgmax, vm.swappiness)",
        ),
        (
            none.clone(),
            json!({"securityContext": {"windowsOptions": {"hostProcess": true}},
                   "containers": [c("a", json!({"windowsOptions": {"hostProcess": true}}))]}),
            r#"hostProcess (pod and container "a" must not set securityContext.windowsOptions.hostProcess=true)"#,
        ),
        // Several at once, in kube's order (by check ID).
        (
            none.clone(),
            json!({"hostNetwork": true,
                   "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
                   "containers": [{"name": "a", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}},
                                   "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
            r#"non-default capabilities (container "a" must not include "SYS_ADMIN" in securityContext.capabilities.add), host namespaces (hostNetwork=true), hostPath volumes (volume "h"), hostPort (container "a" uses hostPort 80), privileged (container "a" must not set securityContext.privileged=true)"#,
        ),
    ];
    for (meta, spec, want) in cases {
        assert_eq!(
            msg(Level::Baseline, meta.clone(), spec.clone()),
            want,
            "{spec}"
        );
        // Privileged allows everything.
        assert_eq!(msg(Level::Privileged, meta, spec), "");
    }
}

#[test]
fn restricted_golden() {
    let none = json!({});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"containers": [good("a")]}), ""),
        (
            json!({"containers": [{"name": "c", "image": "nginx"}]}),
            concat!(
                r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
                r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
                r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
            ),
        ),
        // Pod-level settings cover the containers.
        (
            json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "Localhost", "localhostProfile": "p"}},
                   "containers": [c("a", json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}))]}),
            "",
        ),
        (
            json!({"securityContext": {"runAsNonRoot": false, "runAsUser": 0},
                   "containers": [c("a", json!({"allowPrivilegeEscalation": true, "runAsNonRoot": false, "runAsUser": 0,
                                                "seccompProfile": {"type": "RuntimeDefault"},
                                                "capabilities": {"drop": ["ALL"], "add": ["NET_RAW", "NET_BIND_SERVICE"]}})),
                                  good("b")]}),
            concat!(
                r#"allowPrivilegeEscalation != false (container "a" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "a" must not include "NET_RAW" in securityContext.capabilities.add), "#,
                r#"runAsNonRoot != true (pod and container "a" must not set securityContext.runAsNonRoot=false), "#,
                r#"runAsUser=0 (pod and container "a" must not set runAsUser=0)"#
            ),
        ),
        (
            json!({"containers": [c("a", json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                                                "seccompProfile": {"type": "RuntimeDefault"},
                                                "capabilities": {"drop": ["NET_RAW"], "add": ["SYS_TIME"]}}))]}),
            r#"unrestricted capabilities (container "a" must set securityContext.capabilities.drop=["ALL"]; container "a" must not include "SYS_TIME" in securityContext.capabilities.add)"#,
        ),
        (
            json!({"containers": [good("a")], "volumes": [
                {"name": "ok1", "configMap": {"name": "x"}},
                {"name": "ok2", "projected": {"sources": []}},
                {"name": "ok3"},
                {"name": "n", "nfs": {"server": "s", "path": "/"}},
                {"name": "h", "hostPath": {"path": "/"}},
                {"name": "w", "weird": {}},
            ]}),
            r#"restricted volume types (volumes "n", "h", "w" use restricted volume types "hostPath", "nfs", "unknown")"#,
        ),
        (
            json!({"containers": [good("a")], "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}),
            r#"restricted volume types (volume "h" uses restricted volume type "hostPath")"#,
        ),
        (
            json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [good("a")]}),
            r#"seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#,
        ),
        // A bad pod-level profile does not cover the containers that set none.
        (
            json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                   "containers": [c("a", json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}))]}),
            r#"seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#,
        ),
        // Windows pods are exempt from the Linux-only restricted checks.
        (
            json!({"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": true}, "containers": [{"name": "w"}]}),
            "",
        ),
        // Baseline violations come first, then the restricted ones.
        (
            json!({"hostPID": true, "containers": [c("a", json!({"privileged": true}))]}),
            concat!(
                r#"host namespaces (hostPID=true), "#,
                r#"privileged (container "a" must not set securityContext.privileged=true), "#,
                r#"allowPrivilegeEscalation != false (container "a" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "a" must set securityContext.capabilities.drop=["ALL"]), "#,
                r#"runAsNonRoot != true (pod or container "a" must set securityContext.runAsNonRoot=true), "#,
                r#"seccompProfile (pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
            ),
        ),
        // Ephemeral containers are checked too.
        (
            json!({"containers": [good("a")], "ephemeralContainers": [{"name": "debug", "image": "busybox"}]}),
            concat!(
                r#"allowPrivilegeEscalation != false (container "debug" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "debug" must set securityContext.capabilities.drop=["ALL"]), "#,
                r#"runAsNonRoot != true (pod or container "debug" must set securityContext.runAsNonRoot=true), "#,
                r#"seccompProfile (pod or container "debug" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
            ),
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(
            msg(Level::Restricted, none.clone(), spec.clone()),
            want,
            "{spec}"
        );
    }
}

#[test]
fn restricted_replaces_the_baseline_checks_it_overrides() {
    // The baseline message for added capabilities, hostPath volumes and seccomp does
    // not repeat at the restricted level.
    let spec = json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [c("a", json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true,
            "seccompProfile": {"type": "Unconfined"}, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}))]});
    let vs = evaluate(Level::Restricted, &json!({}), &spec);
    let reasons: Vec<&str> = vs.iter().map(|v| v.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "unrestricted capabilities",
            "restricted volume types",
            "seccompProfile"
        ]
    );
    assert_eq!(
        forbidden_reason(&vs),
        "unrestricted capabilities, restricted volume types, seccompProfile"
    );
}

#[test]
fn plural_forbidden_app_armor_profiles() {
    let meta = json!({"annotations": {
        "container.apparmor.security.beta.kubernetes.io/b": "bad2",
        "container.apparmor.security.beta.kubernetes.io/a": "bad1",
    }});
    let spec = json!({"containers": [c("x", json!({"appArmorProfile": {"type": "Unconfined"}}))]});
    assert_eq!(
        msg(Level::Baseline, meta, spec),
        concat!(
            r#"forbidden AppArmor profiles (container "x" and annotations must not set AppArmor profile type to "#,
            r#""Unconfined", "container.apparmor.security.beta.kubernetes.io/a="bad1"", "container.apparmor.security.beta.kubernetes.io/b="bad2"")"#
        )
    );
}

#[test]
fn helpers() {
    assert_eq!(join_quote(["a", "b"]), r#""a", "b""#);
    assert_eq!(join_quote(Vec::<String>::new()), "");
    assert_eq!(go_quote("a\"b\\\n"), r#""a\"b\\\n""#);
    assert_eq!(pluralize("x", "xs", 1), "x");
    assert_eq!(pluralize("x", "xs", 0), "xs");
}
