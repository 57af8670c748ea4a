//! The checks of the Pod Security Standards (k8s.io/pod-security-admission's `policy`
//! package), at the latest policy version of the Kubernetes release skiff serves
//! (v1.33): each looks at a pod's (or pod template's) metadata and spec and, when it
//! forbids the pod, says why in kube's exact words — a short reason ("host namespaces")
//! and a detail naming the offending containers, volumes or values.
//!
//! Checks run in kube's order: the baseline checks sorted by their ID, then the
//! restricted ones sorted by ID; the restricted level drops the baseline checks its own
//! checks override (capabilities, hostPath volumes, seccomp).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::Level;

/// Why a check forbids a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Violation {
    /// Succinct, always shown ("host namespaces").
    pub reason: String,
    /// The specific values, shown for a single object (may be empty).
    pub detail: String,
}

/// One check: `None` when the pod is allowed.
type CheckFn = fn(&Value, &Value) -> Option<Violation>;

/// A check with kube's ID (which orders the messages).
struct Check {
    id: &'static str,
    run: CheckFn,
}

/// Baseline checks, sorted by ID (Go's byte order: `seLinuxOptions` before
/// `seccompProfile_baseline`). `hostProbesAndHostLifecycle` is a v1.34 check, newer than
/// the release served, so it is not here.
const BASELINE: &[Check] = &[
    Check {
        id: "appArmorProfile",
        run: app_armor_profile,
    },
    Check {
        id: "capabilities_baseline",
        run: capabilities_baseline,
    },
    Check {
        id: "hostNamespaces",
        run: host_namespaces,
    },
    Check {
        id: "hostPathVolumes",
        run: host_path_volumes,
    },
    Check {
        id: "hostPorts",
        run: host_ports,
    },
    Check {
        id: "privileged",
        run: privileged,
    },
    Check {
        id: "procMount",
        run: proc_mount,
    },
    Check {
        id: "seLinuxOptions",
        run: se_linux_options,
    },
    Check {
        id: "seccompProfile_baseline",
        run: seccomp_profile_baseline,
    },
    Check {
        id: "sysctls",
        run: sysctls,
    },
    Check {
        id: "windowsHostProcess",
        run: windows_host_process,
    },
];

/// Restricted checks, sorted by ID.
const RESTRICTED: &[Check] = &[
    Check {
        id: "allowPrivilegeEscalation",
        run: allow_privilege_escalation,
    },
    Check {
        id: "capabilities_restricted",
        run: capabilities_restricted,
    },
    Check {
        id: "restrictedVolumes",
        run: restricted_volumes,
    },
    Check {
        id: "runAsNonRoot",
        run: run_as_non_root,
    },
    Check {
        id: "runAsUser",
        run: run_as_user,
    },
    Check {
        id: "seccompProfile_restricted",
        run: seccomp_profile_restricted,
    },
];

/// Baseline checks that a stricter restricted check replaces at the restricted level.
const OVERRIDDEN_BY_RESTRICTED: &[&str] = &[
    "capabilities_baseline",
    "hostPathVolumes",
    "seccompProfile_baseline",
];

/// Runs the checks of `level` on a pod's `meta`data and `spec`; the violations in kube's
/// order (none for privileged).
pub(super) fn evaluate(level: Level, meta: &Value, spec: &Value) -> Vec<Violation> {
    let checks: Vec<&Check> = match level {
        Level::Privileged => return Vec::new(),
        Level::Baseline => BASELINE.iter().collect(),
        Level::Restricted => BASELINE
            .iter()
            .filter(|c| !OVERRIDDEN_BY_RESTRICTED.contains(&c.id))
            .chain(RESTRICTED)
            .collect(),
    };
    checks.iter().filter_map(|c| (c.run)(meta, spec)).collect()
}

/// The message for one object: each reason with its detail in parentheses (kube's
/// `ForbiddenDetail`).
pub(super) fn forbidden_detail(vs: &[Violation]) -> String {
    vs.iter()
        .map(|v| {
            if v.detail.is_empty() {
                v.reason.clone()
            } else {
                format!("{} ({})", v.reason, v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reasons only (kube's `ForbiddenReason`), for the summary over many pods.
pub(super) fn forbidden_reason(vs: &[Violation]) -> String {
    vs.iter()
        .map(|v| v.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn violation(reason: impl Into<String>, detail: impl Into<String>) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail: detail.into(),
    })
}

/// `"a", "b"` (kube's `joinQuote`).
fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let v: Vec<String> = items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    v.join(", ")
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, n: usize) -> &'a str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Go's `%q` of a string, for values quoted inside messages.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every container of the pod: init containers, containers, then ephemeral containers
/// (kube's `visitContainers`).
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| spec.get(k).and_then(Value::as_array).into_iter().flatten())
}

fn name(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A field of the container's `securityContext`.
fn sc<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.get("securityContext")
        .and_then(|s| s.get(field))
        .filter(|v| !v.is_null())
}

/// A field of the pod's `securityContext`.
fn pod_sc<'a>(spec: &'a Value, field: &str) -> Option<&'a Value> {
    sc(spec, field)
}

fn str_of(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or_default()
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The pod says it runs on Windows (`spec.os.name`): some restricted checks do not apply
/// from v1.25 on.
fn windows_pod(spec: &Value) -> bool {
    spec.pointer("/os/name").and_then(Value::as_str) == Some("windows")
}

/// `pod`, `container(s) ...` joined with " and ".
fn setters(pod: bool, bad_containers: &[String]) -> Vec<String> {
    let mut s = Vec::new();
    if pod {
        s.push("pod".to_string());
    }
    if !bad_containers.is_empty() {
        s.push(containers_phrase(bad_containers));
    }
    s
}

fn app_armor_profile(meta: &Value, spec: &Value) -> Option<Violation> {
    let allowed_type = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut bad_setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    if let Some(p) = pod_sc(spec, "appArmorProfile") {
        let t = str_of(p.get("type"));
        if !allowed_type(t) {
            bad_setters.push("pod".to_string());
            bad_values.insert(t.to_string());
        }
    }
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        if let Some(p) = sc(c, "appArmorProfile") {
            let t = str_of(p.get("type"));
            if !allowed_type(t) {
                bad_containers.push(name(c));
                bad_values.insert(t.to_string());
            }
        }
    }
    if !bad_containers.is_empty() {
        bad_setters.push(containers_phrase(&bad_containers));
    }
    let mut annotations: Vec<String> = meta
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or_default();
            let allowed = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (k.starts_with("container.apparmor.security.beta.kubernetes.io/") && !allowed)
                .then(|| format!("{k}={}", go_quote(v)))
        })
        .collect();
    annotations.sort();
    let mut values: Vec<String> = bad_values.into_iter().collect();
    if !annotations.is_empty() {
        bad_setters.push(pluralize("annotation", "annotations", annotations.len()).to_string());
        values.extend(annotations);
    }
    if bad_setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            bad_setters.join(" and "),
            join_quote(&values)
        ),
    )
}

/// The capabilities a baseline container may add (the container runtime's defaults).
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(_meta: &Value, spec: &Value) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let added = strings(sc(c, "capabilities").and_then(|v| v.get("add")));
        let bad: Vec<&str> = added
            .into_iter()
            .filter(|a| !DEFAULT_CAPABILITIES.contains(a))
            .collect();
        if !bad.is_empty() {
            bad_containers.push(name(c));
            caps.extend(bad);
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad_containers),
            join_quote(caps)
        ),
    )
}

fn host_namespaces(_meta: &Value, spec: &Value) -> Option<Violation> {
    let on: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| spec.get(*f).and_then(Value::as_bool) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    if on.is_empty() {
        return None;
    }
    violation("host namespaces", on.join(", "))
}

fn volumes(spec: &Value) -> impl Iterator<Item = &Map<String, Value>> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn volume_name(v: &Map<String, Value>) -> String {
    v.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn has(v: &Map<String, Value>, source: &str) -> bool {
    v.get(source).is_some_and(|s| !s.is_null())
}

fn host_path_volumes(_meta: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = volumes(spec)
        .filter(|v| has(v, "hostPath"))
        .map(volume_name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    )
}

fn host_ports(_meta: &Value, spec: &Value) -> Option<Violation> {
    let mut bad_containers = Vec::new();
    // Go sorts the ports as strings.
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let mut bad = false;
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let hp = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if hp != 0 {
                bad = true;
                ports.insert(hp.to_string());
            }
        }
        if bad {
            bad_containers.push(name(c));
        }
    }
    if bad_containers.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad_containers),
            pluralize("uses", "use", bad_containers.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn privileged(_meta: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c, "privileged").and_then(Value::as_bool) == Some(true))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

fn proc_mount(_meta: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(spec) {
        if let Some(t) = sc(c, "procMount").and_then(Value::as_str) {
            if t != "Default" {
                bad.push(name(c));
                types.insert(t.to_string());
            }
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(types)
        ),
    )
}

fn se_linux_options(_meta: &Value, spec: &Value) -> Option<Violation> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |o: &Value| {
        let mut ok = true;
        let t = str_of(o.get("type"));
        if !["", "container_t", "container_init_t", "container_kvm_t"].contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if !str_of(o.get("user")).is_empty() {
            ok = false;
            set_user = true;
        }
        if !str_of(o.get("role")).is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let pod_bad = pod_sc(spec, "seLinuxOptions").is_some_and(|o| !valid(o));
    let bad_containers: Vec<String> = containers(spec)
        .filter(|c| sc(c, "seLinuxOptions").is_some_and(|o| !valid(o)))
        .map(name)
        .collect();
    let setters = setters(pod_bad, &bad_containers);
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn valid_seccomp(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// Seccomp profiles set to a bad type: the setters, the bad values, and whether the
/// pod level set a valid profile; and the containers that set none.
struct Seccomp {
    setters: Vec<String>,
    values: BTreeSet<String>,
    unset: Vec<String>,
}

fn seccomp(spec: &Value) -> Seccomp {
    let mut values = BTreeSet::new();
    let mut pod_bad = false;
    let mut pod_set = false;
    if let Some(p) = pod_sc(spec, "seccompProfile") {
        let t = str_of(p.get("type"));
        if valid_seccomp(t) {
            pod_set = true;
        } else {
            pod_bad = true;
            values.insert(t.to_string());
        }
    }
    let mut bad = Vec::new();
    let mut unset = Vec::new();
    for c in containers(spec) {
        match sc(c, "seccompProfile") {
            Some(p) => {
                let t = str_of(p.get("type"));
                if !valid_seccomp(t) {
                    bad.push(name(c));
                    values.insert(t.to_string());
                }
            }
            None if !pod_set => unset.push(name(c)),
            None => {}
        }
    }
    Seccomp {
        setters: setters(pod_bad, &bad),
        values,
        unset,
    }
}

fn seccomp_bad_type(s: &Seccomp) -> Option<Violation> {
    if s.setters.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            s.setters.join(" and "),
            join_quote(&s.values)
        ),
    )
}

fn seccomp_profile_baseline(_meta: &Value, spec: &Value) -> Option<Violation> {
    seccomp_bad_type(&seccomp(spec))
}

fn seccomp_profile_restricted(_meta: &Value, spec: &Value) -> Option<Violation> {
    if windows_pod(spec) {
        return None;
    }
    let s = seccomp(spec);
    if let Some(v) = seccomp_bad_type(&s) {
        return Some(v);
    }
    if s.unset.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&s.unset)
        ),
    )
}

/// The sysctls a baseline pod may set (namespaced, isolated from other pods), as of
/// v1.32.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

fn sysctls(_meta: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<&str> = pod_sc(spec, "sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| str_of(s.get("name")))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}

fn windows_host_process(_meta: &Value, spec: &Value) -> Option<Violation> {
    let host_process = |o: Option<&Value>| {
        o.and_then(|w| w.get("hostProcess"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let bad: Vec<String> = containers(spec)
        .filter(|c| host_process(sc(c, "windowsOptions")))
        .map(name)
        .collect();
    let setters = setters(host_process(pod_sc(spec, "windowsOptions")), &bad);
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

fn allow_privilege_escalation(_meta: &Value, spec: &Value) -> Option<Violation> {
    if windows_pod(spec) {
        return None;
    }
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

fn capabilities_restricted(_meta: &Value, spec: &Value) -> Option<Violation> {
    if windows_pod(spec) {
        return None;
    }
    let mut missing_drop_all = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let Some(capabilities) = sc(c, "capabilities") else {
            missing_drop_all.push(name(c));
            continue;
        };
        if !strings(capabilities.get("drop")).contains(&"ALL") {
            missing_drop_all.push(name(c));
        }
        let bad: Vec<&str> = strings(capabilities.get("add"))
            .into_iter()
            .filter(|a| *a != "NET_BIND_SERVICE")
            .collect();
        if !bad.is_empty() {
            adding.push(name(c));
            caps.extend(bad);
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

/// The volume sources a restricted pod may use (v1.33 adds `image`).
const RESTRICTED_VOLUME_SOURCES_ALLOWED: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The volume sources kube names when it refuses them, in the order it looks.
const RESTRICTED_VOLUME_SOURCES_NAMED: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(_meta: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in volumes(spec) {
        if RESTRICTED_VOLUME_SOURCES_ALLOWED.iter().any(|s| has(v, s)) {
            continue;
        }
        // A volume naming no source at all is an emptyDir (kube's defaulting).
        if v.keys().all(|k| k == "name") {
            continue;
        }
        bad.push(volume_name(v));
        let t = RESTRICTED_VOLUME_SOURCES_NAMED
            .iter()
            .find(|s| has(v, s))
            .copied()
            .unwrap_or("unknown");
        types.insert(t);
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(types)
        ),
    )
}

fn run_as_non_root(_meta: &Value, spec: &Value) -> Option<Violation> {
    let pod = pod_sc(spec, "runAsNonRoot").and_then(Value::as_bool);
    let pod_bad = pod == Some(false);
    let pod_non_root = pod == Some(true);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match sc(c, "runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_non_root => implicit.push(name(c)),
            None => {}
        }
    }
    let setters = setters(pod_bad, &explicit);
    if !setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicit)
        ),
    )
}

fn run_as_user(_meta: &Value, spec: &Value) -> Option<Violation> {
    let root = |v: Option<&Value>| v.and_then(Value::as_i64) == Some(0);
    let bad: Vec<String> = containers(spec)
        .filter(|c| root(sc(c, "runAsUser")))
        .map(name)
        .collect();
    let setters = setters(root(pod_sc(spec, "runAsUser")), &bad);
    if setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

#[cfg(test)]
mod tests;
