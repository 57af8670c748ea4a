//! A container's runtime configuration (what its OCI `config.json` is made from), built
//! from the pod, the container's spec, its image and what the node already resolved
//! (environment, the image's user, the sandbox's hostname and netns, volume mounts): a
//! pure function, golden-tested like [`crate::containers::oci`]. Only [`image_user`]
//! reads files (the image's `/etc/passwd` and `/etc/group`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{env, quantity};
use crate::containers::images::ImageConfig;
use crate::containers::oci::{BindMount, ContainerConfig, Namespace};

/// What the node resolved for one container before its configuration is built.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The environment (`KEY=value`), the image's first, as [`env::container_env`]
    /// resolves it (with the API: ConfigMaps, Secrets, Services).
    pub env: Vec<String>,
    /// The image's USER as (uid, gid), from [`image_user`].
    pub image_user: (u32, u32),
    /// The pod's hostname (what the sandbox's `etc/hostname` holds).
    pub hostname: String,
    /// The pod's network namespace (None: host network).
    pub netns: Option<PathBuf>,
    /// The container's volume mounts, in its order (`volumes::mounts_for`).
    pub volume_mounts: Vec<BindMount>,
    /// The container's cgroup (`/skiff/<node>/pod<uid>/<container id>`).
    pub cgroups_path: String,
    /// The PID namespace to join (an ephemeral container's target container's).
    pub join_pid: Option<PathBuf>,
    /// The IPC namespace to join (an ephemeral container joins the pod's, which is its
    /// first running container's: skiff pods have no pause container).
    pub join_ipc: Option<PathBuf>,
}

/// The configuration of `c`, a container of `pod` whose sandbox files are under
/// `pod_dir`, run from an image configured as `image`.
pub fn container_config(
    pod: &Pod,
    c: &Container,
    image: &ImageConfig,
    pod_dir: &Path,
    resolved: Resolved,
) -> ContainerConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    // $(VAR) in command and args expands from the container's own environment.
    let vars: HashMap<String, String> = resolved
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let expand = |v: &Vec<String>| v.iter().map(|s| env::expand(s, &vars)).collect::<Vec<_>>();
    let args: Vec<String> = match (&c.command, &c.args) {
        (Some(cmd), a) => [expand(cmd), a.as_ref().map(&expand).unwrap_or_default()].concat(),
        (None, Some(a)) => [image.entrypoint.clone(), expand(a)].concat(),
        (None, None) => [image.entrypoint.clone(), image.cmd.clone()].concat(),
    };
    let psc = spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let (mut uid, mut gid) = resolved.image_user;
    if let Some(u) = sc.run_as_user.or(psc.run_as_user) {
        uid = u as u32;
    }
    if let Some(g) = sc.run_as_group.or(psc.run_as_group) {
        gid = g as u32;
    }
    let mut groups: Vec<u32> = psc
        .supplemental_groups
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs) = psc.fs_group {
        groups.push(fs as u32);
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    let res = c.resources.clone().unwrap_or_default();
    let limits = res.limits.unwrap_or_default();
    let requests = res.requests.unwrap_or_default();
    let etc = pod_dir.join("etc");
    let mut mounts: Vec<BindMount> = ["hosts", "resolv.conf", "hostname"]
        .into_iter()
        .map(|f| BindMount {
            source: etc.join(f),
            destination: format!("/etc/{f}"),
            readonly: false,
        })
        .collect();
    mounts.extend(resolved.volume_mounts);
    let ns = |host: Option<bool>, join: Option<PathBuf>| match (host, join) {
        (Some(true), _) => Namespace::Host,
        (_, Some(p)) => Namespace::Join(p),
        _ => Namespace::New,
    };
    ContainerConfig {
        pid_ns: ns(spec.host_pid, resolved.join_pid),
        ipc_ns: ns(spec.host_ipc, resolved.join_ipc),
        args,
        terminal: c.tty.unwrap_or(false),
        env: resolved.env,
        cwd: c
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| image.working_dir.clone()),
        hostname: (!host_network).then_some(resolved.hostname),
        netns: resolved.netns,
        uid,
        gid,
        additional_gids: groups,
        cap_add: caps.add.unwrap_or_default(),
        cap_drop: caps.drop.unwrap_or_default(),
        privileged: sc.privileged.unwrap_or(false),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        mounts,
        memory_limit: limits
            .get("memory")
            .and_then(|q| quantity::parse(&q.0))
            .map(|b| b as i64),
        cpu_shares: requests
            .get("cpu")
            .or(limits.get("cpu"))
            .and_then(|q| quantity::cpu_shares(&q.0)),
        cpu_quota: limits.get("cpu").and_then(|q| quantity::cpu_quota(&q.0)),
        pids_limit: None,
        cgroups_path: resolved.cgroups_path,
    }
}

/// `uid[:gid]` of an image USER (numeric, or a name from the rootfs's /etc/passwd and
/// /etc/group).
pub fn image_user(user: &str, read: impl Fn(&str) -> Option<Vec<u8>>) -> (u32, u32) {
    if user.is_empty() {
        return (0, 0);
    }
    let (u, g) = user
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((user, None));
    let text = |rel: &str| String::from_utf8(read(rel).unwrap_or_default()).unwrap_or_default();
    let passwd = text("etc/passwd");
    let lookup = |name: &str| -> Option<(u32, u32)> {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&name) {
                return None;
            }
            Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
        })
    };
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => lookup(u).unwrap_or((0, 0)),
    };
    if let Some(g) = g {
        if let Ok(n) = g.parse() {
            gid = n;
        } else {
            let group = text("etc/group");
            if let Some(n) = group.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&g))
                    .then(|| f.get(2)?.parse().ok())
                    .flatten()
            }) {
                gid = n;
            }
        }
    }
    (uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::oci::config_json;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
            "spec": {
                "securityContext": {"runAsUser": 1000, "supplementalGroups": [5], "fsGroup": 2000},
                "containers": [{
                    "name": "app",
                    "image": "httpd",
                    "command": ["/bin/sh", "-c"],
                    "args": ["echo $(GREETING) $(MISSING)"],
                    "workingDir": "/srv",
                    "tty": true,
                    "securityContext": {
                        "runAsGroup": 3000,
                        "readOnlyRootFilesystem": true,
                        "capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL"]}
                    },
                    "resources": {
                        "requests": {"cpu": "250m"},
                        "limits": {"cpu": "500m", "memory": "64Mi"}
                    }
                }, {
                    "name": "plain",
                    "image": "busybox"
                }]
            }
        }))
        .unwrap()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/bin".into()],
            working_dir: "/image".into(),
            user: "daemon".into(),
        }
    }

    fn resolved(env: &[&str]) -> Resolved {
        Resolved {
            env: env.iter().map(|s| s.to_string()).collect(),
            image_user: (2, 2),
            hostname: "web".into(),
            netns: Some("/var/run/netns/skiff-u1".into()),
            volume_mounts: vec![BindMount {
                source: "/data/pods/u1/volumes/cache".into(),
                destination: "/cache".into(),
                readonly: true,
            }],
            cgroups_path: "/skiff/n1/podu1/ctr".into(),
            ..Default::default()
        }
    }

    #[test]
    fn golden_container_config() {
        let pod = pod();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let config = container_config(
            &pod,
            c,
            &image(),
            Path::new("/data/pods/u1"),
            resolved(&["PATH=/bin", "GREETING=hello"]),
        );
        skiff_testkit::golden::check_json(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/kubelet/testdata/container_config.golden.json"
            ),
            &config_json(&config),
        );
    }

    #[test]
    fn image_defaults_and_host_network() {
        let mut pod = pod();
        pod.spec.as_mut().unwrap().host_network = Some(true);
        pod.spec.as_mut().unwrap().security_context = None;
        let c = pod.spec.as_ref().unwrap().containers[1].clone();
        let mut r = resolved(&["PATH=/bin"]);
        r.netns = None;
        let config = container_config(&pod, &c, &image(), Path::new("/p"), r);
        assert_eq!(config.args, vec!["/entry", "serve"]);
        assert_eq!(config.cwd, "/image");
        assert_eq!((config.uid, config.gid), (2, 2));
        // The node's UTS namespace and network.
        assert_eq!(config.hostname, None);
        assert_eq!(config.netns, None);
        assert_eq!(
            config
                .mounts
                .iter()
                .map(|m| m.destination.as_str())
                .collect::<Vec<_>>(),
            vec!["/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/cache"]
        );
        // Args alone replace the image's CMD, after its ENTRYPOINT.
        let mut c = c;
        c.args = Some(vec!["$(PATH)".into()]);
        let config = container_config(
            &pod,
            &c,
            &image(),
            Path::new("/p"),
            resolved(&["PATH=/bin"]),
        );
        assert_eq!(config.args, vec!["/entry", "/bin"]);
    }

    #[test]
    fn image_user_from_names_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let read = |rel: &str| std::fs::read(dir.path().join(rel)).ok();
        assert_eq!(image_user("", read), (0, 0));
        assert_eq!(image_user("www", read), (33, 34));
        assert_eq!(image_user("www:staff", read), (33, 50));
        assert_eq!(image_user("7:8", read), (7, 8));
        assert_eq!(image_user("nobody", read), (0, 0));
    }
}
