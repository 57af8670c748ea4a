//! The OCI runtime bundle's `config.json` for one container, as runc reads it.

use std::path::PathBuf;

use serde_json::{json, Value};

/// Docker's (and so containerd's and Kubernetes') default capability set.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability (for privileged containers and `add: [ALL]`).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Path on the node.
    pub source: PathBuf,
    /// Path in the container.
    pub destination: String,
    /// Mounted read-only.
    pub readonly: bool,
}

/// Everything `config.json` is made from.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// The process's argv.
    pub args: Vec<String>,
    /// Give the process a terminal (runc makes a pty and sends its master over the
    /// console socket).
    pub terminal: bool,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// UTS hostname (the pod name); None shares the node's UTS namespace.
    pub hostname: Option<String>,
    /// Network namespace to join; None shares the agent's (hostNetwork).
    pub netns: Option<PathBuf>,
    /// The PID namespace: a new one, the host's (hostPID) or another container's (an
    /// ephemeral container's `targetContainerName`).
    pub pid_ns: Namespace,
    /// The IPC namespace, likewise (hostIPC; an ephemeral container joins the pod's).
    pub ipc_ns: Namespace,
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Capabilities to add (Kubernetes names, without `CAP_`; `ALL` allowed).
    pub cap_add: Vec<String>,
    /// Capabilities to drop (likewise).
    pub cap_drop: Vec<String>,
    /// securityContext.privileged.
    pub privileged: bool,
    /// securityContext.readOnlyRootFilesystem.
    pub readonly_rootfs: bool,
    /// Bind mounts (volumes and the /etc files), in order.
    pub mounts: Vec<BindMount>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// cpu.shares (from the CPU request).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period (from the CPU limit).
    pub cpu_quota: Option<i64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
    /// cgroup path (`/skiff/<node>/<pod uid>/<container id>`).
    pub cgroups_path: String,
}

/// Which namespace of a kind a container runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Namespace {
    /// A namespace of its own.
    #[default]
    New,
    /// The agent's, i.e. the node's (`hostPID`, `hostIPC`).
    Host,
    /// An existing one (`/proc/<pid>/ns/<kind>` of another container).
    Join(PathBuf),
}

impl Namespace {
    /// The `linux.namespaces` entry of `kind`, or None to share the runtime's.
    fn entry(&self, kind: &str) -> Option<Value> {
        match self {
            Namespace::New => Some(json!({"type": kind})),
            Namespace::Host => None,
            Namespace::Join(p) => Some(json!({"type": kind, "path": p})),
        }
    }
}

/// CFS period runc uses with the quota.
pub const CPU_PERIOD: u64 = 100_000;

fn cap_name(n: &str) -> String {
    let n = n.to_ascii_uppercase();
    if n.starts_with("CAP_") {
        n
    } else {
        format!("CAP_{n}")
    }
}

/// The effective capability set: Docker's defaults, plus adds, minus drops.
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Vec<String> {
    if privileged || add.iter().any(|a| a.eq_ignore_ascii_case("ALL")) {
        let mut all: Vec<String> = ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        if !privileged {
            let drops: Vec<String> = drop.iter().map(|d| cap_name(d)).collect();
            all.retain(|c| !drops.contains(c));
        }
        return all;
    }
    if drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        return add.iter().map(|a| cap_name(a)).collect();
    }
    let mut caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    for a in add {
        let a = cap_name(a);
        if !caps.contains(&a) {
            caps.push(a);
        }
    }
    let drops: Vec<String> = drop.iter().map(|d| cap_name(d)).collect();
    caps.retain(|c| !drops.contains(c));
    caps
}

/// Builds `config.json`.
pub fn config_json(c: &ContainerConfig) -> Value {
    let caps = capabilities(c.privileged, &c.cap_add, &c.cap_drop);
    let mut namespaces: Vec<Value> = [c.pid_ns.entry("pid"), c.ipc_ns.entry("ipc")]
        .into_iter()
        .flatten()
        .collect();
    namespaces.push(json!({"type": "mount"}));
    if c.hostname.is_some() {
        namespaces.push(json!({"type": "uts"}));
    }
    if let Some(ns) = &c.netns {
        namespaces.push(json!({"type": "network", "path": ns}));
    }
    let sys_opts = if c.privileged {
        json!(["nosuid", "noexec", "nodev"])
    } else {
        json!(["nosuid", "noexec", "nodev", "ro"])
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for m in &c.mounts {
        let mut opts = vec!["rbind", "rprivate"];
        if m.readonly {
            opts.push("ro");
        }
        mounts.push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": opts}));
    }
    let mut resources = json!({
        "devices": [if c.privileged { json!({"allow": true, "access": "rwm"}) } else { json!({"allow": false, "access": "rwm"}) }],
    });
    if let Some(limit) = c.memory_limit {
        resources["memory"] = json!({"limit": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(s) = c.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(q) = c.cpu_quota {
        cpu.insert("quota".into(), json!(q));
        cpu.insert("period".into(), json!(CPU_PERIOD));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = c.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": c.cgroups_path,
    });
    if !c.privileged {
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
    }
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": c.terminal,
            "user": {"uid": c.uid, "gid": c.gid, "additionalGids": c.additional_gids},
            "args": c.args,
            "env": c.env,
            "cwd": if c.cwd.is_empty() { "/" } else { c.cwd.as_str() },
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": c.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if let Some(h) = &c.hostname {
        config["hostname"] = json!(h);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        let c = capabilities(false, &["NET_ADMIN".into()], &["KILL".into()]);
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        assert_eq!(
            capabilities(false, &["CHOWN".into()], &["ALL".into()]),
            vec!["CAP_CHOWN"]
        );
        assert_eq!(capabilities(true, &[], &[]).len(), ALL_CAPABILITIES.len());
    }

    #[test]
    fn namespaces_new_host_or_joined() {
        let kinds = |c: &ContainerConfig| -> Vec<Value> {
            config_json(c)["linux"]["namespaces"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        let fresh = ContainerConfig::default();
        assert_eq!(
            kinds(&fresh),
            vec![
                json!({"type": "pid"}),
                json!({"type": "ipc"}),
                json!({"type": "mount"})
            ]
        );
        // hostPID/hostIPC: no entry, so runc leaves the process in the node's.
        let host = ContainerConfig {
            pid_ns: Namespace::Host,
            ipc_ns: Namespace::Host,
            ..Default::default()
        };
        assert_eq!(kinds(&host), vec![json!({"type": "mount"})]);
        // An ephemeral container in its target's PID namespace.
        let joined = ContainerConfig {
            pid_ns: Namespace::Join("/proc/42/ns/pid".into()),
            ipc_ns: Namespace::Join("/proc/42/ns/ipc".into()),
            ..Default::default()
        };
        assert_eq!(
            kinds(&joined),
            vec![
                json!({"type": "pid", "path": "/proc/42/ns/pid"}),
                json!({"type": "ipc", "path": "/proc/42/ns/ipc"}),
                json!({"type": "mount"})
            ]
        );
    }

    #[test]
    fn golden_config() {
        let c = ContainerConfig {
            args: vec!["httpd".into(), "-f".into()],
            env: vec!["PATH=/bin".into()],
            cwd: String::new(),
            hostname: Some("web".into()),
            netns: Some("/var/run/netns/x-1".into()),
            uid: 1000,
            gid: 1000,
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["NET_BIND_SERVICE".into()],
            readonly_rootfs: true,
            mounts: vec![BindMount {
                source: "/d/hosts".into(),
                destination: "/etc/hosts".into(),
                readonly: false,
            }],
            memory_limit: Some(64 << 20),
            cpu_shares: Some(102),
            cpu_quota: Some(50_000),
            pids_limit: None,
            cgroups_path: "/skiff/n1/uid/ctr".into(),
            ..Default::default()
        };
        skiff_testkit::golden::check_json(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/containers/testdata/config.golden.json"
            ),
            &config_json(&c),
        );
    }
}
