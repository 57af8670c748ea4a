//! skiff-agent: the node agent, skiff's kubelet and container runtime.
//!
//! - [`containers`] runs containers without any API server: the image store with its
//!   built-in images, pod network namespaces wired in process (or by the CNI plugins),
//!   containers over overlayfs under youki's libcontainer (in a runtime service the
//!   agent starts, [`containers::service`]) or runc, with CRI log files, exec.
//! - [`kubelet`] is the API-facing part: one worker per pod bound to this node.
//! - [`hollow`] runs many hollow nodes in one process (no containers), for density tests.
//! - [`node`] registers the Node and keeps its status and Lease fresh.
//! - [`podroutes`] routes the other nodes' pod CIDRs via their InternalIPs (host-gw).
//! - [`streaming`] serves logs/exec/attach/port-forward on :10250.
//! - [`stats`] samples the node's, pods' and containers' CPU and memory for
//!   `/stats/summary` and `/metrics/resource` on :10250.
//!
//! [`run`] wires them together; the `skiff agent` command calls it.

pub mod apilb;
pub mod containers;
pub mod credentials;
pub mod hollow;
pub mod kubelet;
pub mod node;
pub mod podroutes;
pub mod stats;
pub mod streaming;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Taint;
use tokio::sync::watch;

pub use containers::images;

use containers::cni::Cni;
pub use containers::cni::Network;
use containers::container::Container;
use containers::images::ImageStore;
use containers::runtime::Runtime;
pub use containers::runtime::RuntimeKind;
use kubelet::Kubelet;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// API server URL (`https://host:6443`).
    pub server_url: String,
    /// Join token: fetches [`AgentConfig::credentials`] from the API server, and is what
    /// the API server presents to the kubelet port.
    pub token: String,
    /// The node's identities; fetched with the join token when `None`.
    pub credentials: Option<credentials::NodeCredentials>,
    /// CA of the API server; None skips TLS verification.
    pub ca_file: Option<PathBuf>,
    /// This node's name.
    pub node_name: String,
    /// This node's IP (default: the first non-loopback IPv4 of this netns).
    pub node_ip: Option<Ipv4Addr>,
    /// Where images, pods and CNI state live.
    pub data_dir: PathBuf,
    /// Prefix of pod netns names under /var/run/netns (per node, so `skiff down` and
    /// the orphan cleanup find exactly ours).
    pub netns_prefix: String,
    /// Extra Node labels.
    pub node_labels: BTreeMap<String, String>,
    /// Taints the Node registers with.
    pub register_with_taints: Vec<Taint>,
    /// Cluster DNS Service IP (10.96.0.10).
    pub cluster_dns: Ipv4Addr,
    /// Cluster domain (cluster.local).
    pub cluster_domain: String,
    /// Directory of the CNI plugin binaries (/usr/lib/cni): every plugin with
    /// [`Network::Plugins`], `portmap` for hostPorts with either.
    pub cni_bin_dir: PathBuf,
    /// Which code wires pods to the node's bridge (`--network`).
    pub network: Network,
    /// Which OCI runtime runs the containers (`--runtime`).
    pub runtime: RuntimeKind,
    /// The executable that serves the in-process runtime when run as `<exe>
    /// runtime-service` (the `skiff` binary; the agent crate's tests use its
    /// `skiff-runtime-service` binary); None: this process's own executable.
    pub runtime_service: Option<PathBuf>,
    /// Port of the kubelet endpoint (10250).
    pub kubelet_port: u16,
    /// The skiff binary, for the built-in `skiff` image.
    pub skiff_binary: PathBuf,
    /// The resolv.conf that pods with `dnsPolicy: Default` get (and cluster DNS forwards
    /// to), as kubelet's `--resolv-conf`; none: `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Mirrors, credentials and TLS of image registries (`--registry-config`).
    pub registries: containers::registry::RegistryConfig,
    /// When unused images are removed (`--image-gc-high-threshold` and the others).
    pub image_gc: kubelet::imagegc::Policy,
}

/// The kube client the kubelet uses: its node certificate (the join token before it has
/// one), the server CA (or none).
pub fn client_config(cfg: &AgentConfig) -> Result<kube::Config> {
    let url: http::Uri = cfg
        .server_url
        .parse()
        .with_context(|| format!("parsing the server URL {}", cfg.server_url))?;
    let mut config = kube::Config::new(url);
    config.auth_info.token = Some(secrecy::SecretString::from(cfg.token.clone()));
    match &cfg.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA {}", path.display()))?;
            let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_slice())
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<std::result::Result<_, _>>()
                .with_context(|| format!("parsing the CA {}", path.display()))?;
            config.root_cert = Some(certs);
        }
        None => config.accept_invalid_certs = true,
    }
    if let Some(c) = &cfg.credentials {
        c.kubelet.apply(&mut config);
    }
    config.connect_timeout = Some(Duration::from_secs(10));
    if let Ok(ua) = skiff_api::defaults::user_agent("kubelet").parse() {
        config.headers.push((http::header::USER_AGENT, ua));
    }
    Ok(config)
}

impl streaming::server::Streams for Kubelet {
    fn container(&self, ns: &str, pod: &str, container: &str) -> Option<Arc<Container>> {
        self.find(ns, pod)?.container(container)
    }
    fn logs(&self, ns: &str, pod: &str, container: &str) -> Vec<PathBuf> {
        self.find(ns, pod)
            .map(|p| p.logs(container))
            .unwrap_or_default()
    }
    fn containers(&self, ns: &str, pod: &str) -> Option<Vec<String>> {
        let entry = self.find(ns, pod)?;
        let spec_names = entry.updates.borrow().as_ref().and_then(|p| {
            p.spec.as_ref().map(|s| {
                s.containers
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
            })
        });
        Some(spec_names.unwrap_or_else(|| entry.container_names()))
    }
    fn pod_ip(&self, ns: &str, pod: &str) -> Option<Ipv4Addr> {
        *self
            .find(ns, pod)?
            .ip
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
    fn pod_netns(&self, ns: &str, pod: &str) -> Option<PathBuf> {
        self.find(ns, pod)?
            .netns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }
    fn stats(&self) -> Option<&stats::Stats> {
        Some(&self.stats)
    }
}

/// What the sampler reads: every pod's cgroup and those of its running containers.
fn stats_targets(k: &Kubelet) -> Vec<stats::Target> {
    let pods: Vec<Arc<kubelet::PodEntry>> = k
        .pods
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    let node = &k.cfg.node_name;
    pods.iter()
        .map(|p| {
            let containers = p
                .containers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter_map(|(name, e)| {
                    let c = e.current.as_ref().filter(|c| c.exit().is_none())?;
                    Some(stats::ContainerTarget {
                        name: name.clone(),
                        cgroup: format!("/skiff/{node}/pod{}/{}", p.uid, c.id),
                        started_at: c.started_at,
                    })
                })
                .collect();
            stats::Target {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                uid: p.uid.clone(),
                cgroup: format!("/skiff/{node}/pod{}", p.uid),
                containers,
            }
        })
        .collect()
}

/// Samples the node's and the pods' counters every [`stats::SAMPLE_INTERVAL`].
async fn sample_stats(k: Arc<Kubelet>) {
    let mut tick = tokio::time::interval(stats::SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let targets = stats_targets(&k);
        let k = k.clone();
        let _ = tokio::task::spawn_blocking(move || {
            k.stats.record(
                chrono::Utc::now(),
                stats::cgroup::read_node(),
                Path::new("/sys/fs/cgroup"),
                targets,
            )
        })
        .await;
    }
}

/// How long the agent holds pods back waiting for its proxy's first sync before it
/// starts them anyway (a proxy that cannot program the kernel must not keep every pod
/// from running; it normally syncs within milliseconds of listing the Services), or
/// `SKIFF_AGENT_PROXY_SYNC_WAIT_MS` (0: do not wait, as before this wait existed; for
/// comparisons).
fn proxy_sync_wait() -> Duration {
    std::env::var("SKIFF_AGENT_PROXY_SYNC_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// Creates the data directory 0700 (narrowing an older, wider one): it holds the pods'
/// service-account tokens, Secret volumes and logs, for root only as the kubelet's.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {} to its owner", dir.display()))
}

/// Runs the agent forever: registers the Node, heartbeats, serves :10250, runs pods.
pub async fn run(cfg: AgentConfig) -> Result<()> {
    run_after_proxy(cfg, watch::channel(true).1).await
}

/// [`run`], with pods on the pod network started only once `proxy_synced` is true: once
/// the service proxy beside the agent has programmed the Services (or after
/// [`proxy_sync_wait`]). A pod started earlier may open its first connection to a
/// cluster IP (CoreDNS to the API at 10.96.0.1) before the rule that rewrites it exists;
/// its SYN then leaves the node undelivered, and conntrack keeps the untranslated flow,
/// so every retransmission goes the same way and the connection hangs until the
/// client's connect timeout (30 s for kube-rs), although the rules appear milliseconds
/// later. Host-network pods are not held back.
pub async fn run_after_proxy(
    cfg: AgentConfig,
    mut proxy_synced: watch::Receiver<bool>,
) -> Result<()> {
    containers::container::become_subreaper()?;
    let node_ip = cfg
        .node_ip
        .or_else(node::default_node_ip)
        .context("no node IP given and this network namespace has no IPv4 address")?;
    private_dir(&cfg.data_dir)?;
    node::make_local_path_dir(&cfg)?;
    let cfg = match cfg.credentials {
        Some(_) => cfg,
        None => AgentConfig {
            credentials: Some(credentials::fetch(&cfg).await?),
            ..cfg
        },
    };
    let client =
        skiff_runtime::client::client(client_config(&cfg)?).context("building the API client")?;
    let since = chrono::Utc::now();
    let node = loop {
        match node::register(&client, &cfg, node_ip, since, None).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "registering the node; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tracing::info!(node = %cfg.node_name, ip = %node_ip, "node registered");
    node::record_start(
        &skiff_runtime::events::Recorder::new(client.clone(), "kubelet").with_host(&cfg.node_name),
        &cfg.node_name,
    );
    // The pod CIDR once known, for registering the Node again should it be deleted.
    let (cidr_tx, cidr_rx) = watch::channel(None);
    tokio::spawn(node::heartbeat(
        client.clone(),
        cfg.clone(),
        node_ip,
        since,
        node,
        cidr_rx,
    ));

    let (cni_tx, cni_rx) = watch::channel(None);
    {
        let client = client.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let cidr = node::wait_pod_cidr(&client, &cfg.node_name).await;
            cidr_tx.send_replace(Some(cidr.clone()));
            let waited = std::time::Instant::now();
            let wait = proxy_sync_wait();
            match tokio::time::timeout(wait, proxy_synced.wait_for(|s| *s)).await {
                Ok(Ok(_)) => tracing::info!(waited = ?waited.elapsed(), "the proxy has programmed the Services"),
                Ok(Err(_)) => {}
                Err(_) if wait.is_zero() => {}
                Err(_) => tracing::warn!(
                    "the service proxy has not programmed the Services after {wait:?}; starting pods anyway"
                ),
            }
            node::enable_forwarding();
            let cni = Cni {
                bin_dir: cfg.cni_bin_dir.clone(),
                state_dir: cfg.data_dir.join("cni"),
                pod_cidr: cidr.clone(),
                network: cfg.network,
            };
            if let Err(e) = cni.write_config() {
                tracing::warn!(error = %e, "writing the CNI config");
            }
            tracing::info!(pod_cidr = %cidr, network = %cfg.network, "pod network ready");
            cni_tx.send_replace(Some(cni));
            // The bridge exists after the first pod; bridge netfilter may only be
            // settable then.
            std::future::pending::<()>().await;
        });
    }

    let images = ImageStore::new(&cfg.data_dir, &cfg.skiff_binary);
    images.remove_partial();
    let service_exe = match &cfg.runtime_service {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding the runtime service executable")?,
    };
    let runtime = Runtime::new(cfg.runtime, &cfg.data_dir, service_exe);
    if cfg.runtime == RuntimeKind::Youki {
        // Started now, while the node waits for its pod CIDR, not by the first pods.
        let client = runtime.youki.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = client.warm() {
                tracing::warn!(error = %format!("{e:#}"), "starting the runtime service");
            }
        });
    }
    tracing::info!(runtime = %cfg.runtime, "container runtime");
    let k = Arc::new(Kubelet {
        client: client.clone(),
        cfg: cfg.clone(),
        node_ip,
        runtime: runtime.clone(),
        images,
        puller: containers::registry::Puller::new(cfg.registries.clone()),
        cni: cni_rx,
        host_resolv: host_resolv(cfg.resolv_conf.as_deref()),
        pods: Mutex::new(Default::default()),
        start_slots: tokio::sync::Semaphore::new(kubelet::start_slots()),
        services: Default::default(),
        events: skiff_runtime::events::Recorder::new(client.clone(), "kubelet")
            .with_host(&cfg.node_name),
        stats: stats::Stats::new(&cfg.node_name, since),
    });
    tokio::spawn(sample_stats(k.clone()));
    tokio::spawn(kubelet::imagegc::run(k.clone(), cfg.image_gc));
    // The built-in images are built on first use (a link to the binary and a copy of its
    // libraries; busybox and its applets' links). The cluster DNS's image is built now,
    // while the node waits for its pod CIDR, rather than in the DNS pod's start; busybox
    // (a few milliseconds) waits for a pod that wants it, so that the nodes of a new
    // cluster, starting together, spend no CPU on it.
    {
        let k = k.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = k.images.resolve("skiff") {
                tracing::warn!(image = "skiff", error = %format!("{e:#}"), "building a built-in image");
            }
        });
    }
    let tls = streaming::server::self_signed(&cfg.node_name, node_ip)?;
    let router = streaming::server::router(k.clone(), cfg.token.clone());
    let addr = SocketAddr::from(([0, 0, 0, 0], cfg.kubelet_port));
    let server = tokio::spawn(async move {
        if let Err(e) = streaming::server::serve(addr, tls, router).await {
            tracing::error!(error = %format!("{e:#}"), "kubelet endpoint stopped");
        }
    });
    tokio::select! {
        _ = k.clone().run() => {}
        _ = server => {}
    }
    anyhow::bail!("the agent's pod watch ended")
}

/// The resolv.conf pods with `dnsPolicy: Default` get: `--resolv-conf`'s, or the host's
/// (systemd-resolved's real one where `/etc/resolv.conf` names only its loopback stub).
fn host_resolv(configured: Option<&Path>) -> String {
    if let Some(path) = configured {
        return std::fs::read_to_string(path).unwrap_or_default();
    }
    let etc = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolved = std::fs::read_to_string(kubelet::dns::SYSTEMD_RESOLVED_CONF).ok();
    let (text, from) = kubelet::dns::default_host_resolv(&etc, resolved.as_deref());
    if kubelet::dns::only_loopback_nameservers(&text) {
        tracing::warn!(
            "{from} names only loopback nameservers, which pods cannot reach: names outside the cluster will not resolve (give --resolv-conf a file with reachable servers)"
        );
    } else if from != "/etc/resolv.conf" {
        tracing::info!("/etc/resolv.conf names a loopback stub: pods get {from}");
    }
    text
}

/// Imports an image tarball into a data dir's store (what `skiff image import` does).
pub fn import_image(data_dir: &Path, tarball: &Path) -> Result<Vec<String>> {
    images::import(data_dir, tarball)
}

/// Removes everything an agent left on the machine, for `skiff down` (after the agent
/// process is gone): its containers (under either runtime), the mounts under its data dir, its pod netns
/// (`<netns_prefix>*`; nothing when the prefix is empty) and its cgroups
/// (`/sys/fs/cgroup/*/skiff/<node>`). The data dir itself is left to the caller.
pub async fn cleanup_node(data_dir: &Path, node_name: &str, netns_prefix: &str) -> Result<()> {
    // Deleting needs no runtime service (nothing is cloned), so none is named.
    let runtime = Runtime::new(RuntimeKind::default(), data_dir, PathBuf::new());
    for (kind, id) in runtime.list().await {
        if let Err(e) = runtime.delete(kind, &id).await {
            tracing::warn!(container = %id, error = %format!("{e:#}"), "removing a container");
        }
    }
    let prefix = data_dir.to_string_lossy().into_owned();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&format!("{prefix}/")))
        .collect();
    // Deepest first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
    if !netns_prefix.is_empty() {
        for name in containers::netns::list(netns_prefix) {
            containers::netns::delete(&name).await?;
        }
    }
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for sub in rd.flatten() {
            let base = sub.path().join("skiff");
            remove_cgroup_tree(&base.join(node_name));
            let _ = std::fs::remove_dir(&base);
        }
    }
    Ok(())
}

/// Removes a cgroup directory and its children, deepest first (rmdir only removes empty
/// cgroups; ones with processes stay).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
