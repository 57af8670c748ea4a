//! Hollow nodes: many Nodes in one process, as kubemark's hollow kubelets and kwok,
//! for density tests. Each hollow node has its own identity (the join token buys its
//! `system:node:<name>` certificate, so the Node authorizer and NodeRestriction judge
//! it as a real node), registers its Node, posts its status and renews its Lease with
//! the real agent's [`crate::node`] code (every 10 s), watches its pods with the
//! `spec.nodeName` field selector through the same tolerant watch as the kubelet, and
//! completes them without any process: the runtime is the seam. A pod gets an address
//! of the node's pod CIDR, its containers "start" at once (kubelet's `Pulled`,
//! `Created`, `Started` events), and it turns Ready once its readiness probes' initial
//! delay has passed; the status is built by the kubelet's own [`status::build`]. A pod
//! being deleted is stopped (`Killing`) and its deletion finalized as the kubelet does.
//!
//! The state per node is small on purpose (the target: under 2 MB a node): the
//! node's client, its watch, and a few words per pod; there is no task per pod.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Container as ContainerSpecK8s, Pod, PodCondition};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::json;
use sha2::{Digest, Sha256};
use skiff_runtime::events::{Recorder, NORMAL};
use skiff_runtime::tolerant;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::kubelet::status::{self, ContainerView, PodView, State};
use crate::{credentials, node, AgentConfig};

/// How many hollow nodes fetch their credentials and register at once: enough to
/// register thousands in seconds, few enough not to queue thousands of requests at the
/// API server at once.
const REGISTER_CONCURRENCY: usize = 64;

/// The name of hollow node `i` of a process whose node names start with `prefix`.
pub fn node_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}")
}

/// Runs `count` hollow nodes named `<base.node_name>-<i>` forever. `base` is an agent's
/// configuration (server, join token, CA, labels, taints); each node gets its own name,
/// credentials and a data directory name under `base.data_dir` (nothing is written
/// there: the Node's local-path annotation names it as a real agent's would).
pub async fn run(base: AgentConfig, node_ip: Ipv4Addr, count: usize) -> Result<()> {
    anyhow::ensure!(count > 0, "--hollow needs at least one node");
    let slots = Arc::new(Semaphore::new(REGISTER_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let name = node_name(&base.node_name, i);
        let cfg = AgentConfig {
            data_dir: base.data_dir.join(&name),
            node_name: name,
            node_ip: Some(node_ip),
            credentials: None,
            ..base.clone()
        };
        let slots = slots.clone();
        tasks.spawn(async move {
            let started = {
                let _slot = slots.acquire().await;
                start_node(cfg).await
            };
            match started {
                Ok(node) => node.run().await,
                Err(e) => tracing::error!(error = %format!("{e:#}"), "starting a hollow node"),
            }
        });
    }
    tracing::info!(count, "hollow nodes started");
    while tasks.join_next().await.is_some() {}
    anyhow::bail!("every hollow node stopped")
}

/// A registered hollow node, before its pod loop runs.
struct Started {
    client: Client,
    cfg: AgentConfig,
    node_ip: Ipv4Addr,
    cidr_tx: watch::Sender<Option<String>>,
}

/// Fetches the node's credentials, registers its Node (retrying as the agent does),
/// records kubelet's start events and starts the heartbeat.
async fn start_node(cfg: AgentConfig) -> Result<Started> {
    let node_ip = cfg.node_ip.context("a hollow node needs a node IP")?;
    let creds = credentials::fetch(&cfg).await?;
    let cfg = AgentConfig {
        credentials: Some(creds),
        ..cfg
    };
    let client = skiff_runtime::client::client(crate::client_config(&cfg)?)
        .context("building the API client")?;
    let since = Utc::now();
    let registered = loop {
        match node::register(&client, &cfg, node_ip, since, None).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(node = %cfg.node_name, error = %format!("{e:#}"), "registering the node; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    node::record_start(
        &Recorder::new(client.clone(), "kubelet").with_host(&cfg.node_name),
        &cfg.node_name,
    );
    let (cidr_tx, cidr_rx) = watch::channel(None);
    tokio::spawn(node::heartbeat(
        client.clone(),
        cfg.clone(),
        node_ip,
        since,
        registered,
        cidr_rx,
    ));
    Ok(Started {
        client,
        cfg,
        node_ip,
        cidr_tx,
    })
}

impl Started {
    /// Waits for the pod CIDR, then runs the node's pods forever.
    async fn run(self) {
        let cidr = node::wait_pod_cidr(&self.client, &self.cfg.node_name).await;
        self.cidr_tx.send_replace(Some(cidr.clone()));
        let net: Ipv4Net = match cidr.parse() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(node = %self.cfg.node_name, %cidr, error = %e, "the node's pod CIDR does not parse");
                return;
            }
        };
        let pods = HollowPods {
            events: Recorder::new(self.client.clone(), "kubelet").with_host(&self.cfg.node_name),
            client: self.client,
            node_name: self.cfg.node_name,
            host_ip: self.node_ip.to_string(),
            ips: IpPool::new(net),
            pods: HashMap::new(),
        };
        pods.run().await;
    }
}

/// A pod a hollow node runs.
struct HollowPod {
    ip: Ipv4Addr,
    started: DateTime<Utc>,
    /// Its containers are ready (their probes' initial delays have passed).
    ready: bool,
    /// Its deletion was finalized.
    deleting: bool,
}

/// The pods of one hollow node.
struct HollowPods {
    client: Client,
    node_name: String,
    host_ip: String,
    events: Recorder,
    ips: IpPool,
    pods: HashMap<String, HollowPod>,
}

impl HollowPods {
    /// Watches the node's pods (`spec.nodeName`) and runs each, forever.
    async fn run(mut self) {
        let api = tolerant::api(&Api::<Pod>::all(self.client.clone()));
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.node_name));
        let mut stream = tolerant::watcher_with(api, config, |_| None)
            .default_backoff()
            .boxed();
        // Pods whose readiness delay ended, by uid, with the pod as last seen.
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Pod>();
        let mut listed: HashSet<String> = HashSet::new();
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    None => return,
                    Some(Ok(Event::Init)) => listed.clear(),
                    Some(Ok(Event::InitApply(pod))) => {
                        if let Some(uid) = &pod.metadata.uid {
                            listed.insert(uid.clone());
                        }
                        self.apply(pod, &ready_tx).await;
                    }
                    Some(Ok(Event::InitDone)) => {
                        let gone: Vec<String> =
                            self.pods.keys().filter(|u| !listed.contains(*u)).cloned().collect();
                        for uid in gone {
                            self.forget(&uid);
                        }
                    }
                    Some(Ok(Event::Apply(pod))) => self.apply(pod, &ready_tx).await,
                    Some(Ok(Event::Delete(pod))) => {
                        if let Some(uid) = &pod.metadata.uid {
                            self.forget(uid);
                        }
                    }
                    Some(Err(e)) => tracing::warn!(node = %self.node_name, error = %e, "pod watch"),
                },
                Some(pod) = ready_rx.recv() => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if let Some(p) = self.pods.get_mut(&uid).filter(|p| !p.deleting) {
                        p.ready = true;
                        self.post_status(&pod).await;
                    }
                }
            }
        }
    }

    fn forget(&mut self, uid: &str) {
        if let Some(p) = self.pods.remove(uid) {
            self.ips.release(p.ip);
        }
    }

    /// Takes a pod as it was seen: starts a new one, stops one being deleted.
    async fn apply(&mut self, pod: Pod, ready_tx: &mpsc::UnboundedSender<Pod>) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            self.stop(&uid, &pod).await;
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if self.pods.contains_key(&uid) || matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        // A pod this node ran before the process restarted keeps its address.
        let posted_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
            .filter(|ip| self.ips.take(*ip));
        let Some(ip) = posted_ip.or_else(|| self.ips.allocate()) else {
            tracing::warn!(node = %self.node_name, pod = ?pod.metadata.name, "no pod address left in the node's CIDR");
            return;
        };
        let spec = pod.spec.clone().unwrap_or_default();
        for c in &spec.containers {
            let image = c.image.clone().unwrap_or_default();
            self.event(
                &pod,
                &c.name,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            self.event(
                &pod,
                &c.name,
                "Created",
                format!("Created container: {}", c.name),
            );
            self.event(
                &pod,
                &c.name,
                "Started",
                format!("Started container {}", c.name),
            );
        }
        let delay = readiness_delay(&spec.containers);
        self.pods.insert(
            uid,
            HollowPod {
                ip,
                started: Utc::now(),
                ready: delay.is_zero(),
                deleting: false,
            },
        );
        self.post_status(&pod).await;
        if !delay.is_zero() {
            let tx = ready_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(pod);
            });
        }
    }

    /// Stops a pod being deleted and finalizes its deletion (grace period 0, the uid as
    /// precondition), as the kubelet does once its containers are gone.
    async fn stop(&mut self, uid: &str, pod: &Pod) {
        if self.pods.get(uid).is_some_and(|p| p.deleting) {
            return;
        }
        if let Some(p) = self.pods.get_mut(uid) {
            p.deleting = true;
            for c in &pod.spec.clone().unwrap_or_default().containers {
                self.event(
                    pod,
                    &c.name,
                    "Killing",
                    format!("Stopping container {}", c.name),
                );
            }
        }
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = api.delete(&name, &dp).await {
            if !matches!(&e, kube::Error::Api(ae) if ae.code == 404 || ae.code == 409) {
                tracing::warn!(pod = %name, error = %e, "finalizing the pod deletion");
                if let Some(p) = self.pods.get_mut(uid) {
                    p.deleting = false;
                }
            }
        }
    }

    /// Patches the pod's status as the kubelet would with its containers running.
    async fn post_status(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(p) = self.pods.get(&uid) else { return };
        let view = view(pod, p, &self.host_ip);
        let prev: Vec<PodCondition> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let status = status::build(&view, &prev, Utc::now());
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let patch = json!({"metadata": {"uid": uid}, "status": status});
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(pod = %name, error = %e, "updating the pod status");
        }
    }

    /// An event about one of the pod's containers, as the kubelet records it.
    fn event(&self, pod: &Pod, container: &str, reason: &str, message: String) {
        let mut involved = skiff_runtime::events::object_ref(pod);
        involved.field_path = Some(format!("spec.containers{{{container}}}"));
        self.events.publish_ref(involved, NORMAL, reason, message);
    }
}

/// How long until the pod's containers are ready: the longest initial delay of their
/// readiness probes (a probe then succeeds at once; none: ready when running).
pub fn readiness_delay(containers: &[ContainerSpecK8s]) -> Duration {
    containers
        .iter()
        .filter_map(|c| c.readiness_probe.as_ref())
        .map(|p| Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64))
        .max()
        .unwrap_or_default()
}

/// The kubelet's view of a hollow pod: init containers completed, every container
/// running since the pod started, ready once its delay passed.
fn view(pod: &Pod, p: &HollowPod, host_ip: &str) -> PodView {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let cview = |c: &ContainerSpecK8s, state: State, ready: bool| {
        let image = c.image.clone().unwrap_or_default();
        ContainerView {
            name: c.name.clone(),
            image_id: format!("sha256:{:x}", Sha256::digest(image.as_bytes())),
            image,
            container_id: Some(format!(
                "skiff://{:x}",
                Sha256::digest(format!("{uid}/{}/0", c.name).as_bytes())
            )),
            state,
            last: None,
            ready,
            started: true,
            restart_count: 0,
        }
    };
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let done = State::Terminated {
                exit_code: 0,
                reason: "Completed".into(),
                started_at: p.started,
                finished_at: p.started,
                container_id: String::new(),
            };
            cview(c, done, false)
        })
        .collect();
    let main = spec
        .containers
        .iter()
        .map(|c| {
            let running = State::Running {
                started_at: p.started,
            };
            cview(c, running, p.ready)
        })
        .collect();
    PodView {
        init,
        main,
        // `kubectl debug` has nothing to attach to on a node without processes.
        ephemeral: Vec::new(),
        restart_policy: spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into()),
        sandbox_ready: true,
        pod_ip: Some(p.ip.to_string()),
        host_ip: host_ip.to_string(),
        start_time: p.started,
        qos_class: skiff_api::helpers::qos_class(&spec).to_string(),
    }
}

/// The addresses of a node's pod CIDR, as the CNI host-local IPAM hands them out: the
/// network address and the bridge's gateway (`.1`) are never given to a pod.
#[derive(Debug)]
pub struct IpPool {
    net: Ipv4Net,
    used: HashSet<Ipv4Addr>,
    /// Where the next search starts (host-local goes round, not back to the lowest).
    cursor: u32,
}

impl IpPool {
    /// A pool of `net`'s pod addresses.
    pub fn new(net: Ipv4Net) -> Self {
        IpPool {
            net,
            used: HashSet::new(),
            cursor: 0,
        }
    }

    fn first(&self) -> u32 {
        u32::from(self.net.network()) + 2
    }

    fn size(&self) -> u32 {
        // Without the network, gateway and broadcast addresses.
        (u32::from(self.net.broadcast()) - u32::from(self.net.network())).saturating_sub(2)
    }

    /// The next free address, if any.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let size = self.size();
        for step in 0..size {
            let ip = Ipv4Addr::from(self.first() + (self.cursor + step) % size);
            if self.used.insert(ip) {
                self.cursor = (self.cursor + step + 1) % size;
                return Some(ip);
            }
        }
        None
    }

    /// Takes `ip` if it is one of the pool's and free.
    pub fn take(&mut self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n >= self.first() && n < self.first() + self.size() && self.used.insert(ip)
    }

    /// Gives an address back.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_skips_network_and_gateway_and_goes_round() {
        let mut pool = IpPool::new("10.244.3.0/29".parse().unwrap());
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| pool.allocate()).collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 244, 3, i)).collect();
        assert_eq!(got, want);
        pool.release(Ipv4Addr::new(10, 244, 3, 3));
        assert_eq!(pool.allocate(), Some(Ipv4Addr::new(10, 244, 3, 3)));
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn pool_takes_only_its_free_addresses() {
        let mut pool = IpPool::new("10.244.3.0/24".parse().unwrap());
        assert!(pool.take(Ipv4Addr::new(10, 244, 3, 9)));
        assert!(!pool.take(Ipv4Addr::new(10, 244, 3, 9)));
        assert!(!pool.take(Ipv4Addr::new(10, 244, 3, 1)));
        assert!(!pool.take(Ipv4Addr::new(10, 244, 4, 9)));
        assert!(!pool.take(Ipv4Addr::new(10, 244, 3, 255)));
    }

    #[test]
    fn readiness_waits_for_the_longest_initial_delay() {
        let c = |delay: Option<i32>| ContainerSpecK8s {
            name: "c".into(),
            readiness_probe: delay.map(|d| k8s_openapi::api::core::v1::Probe {
                initial_delay_seconds: Some(d),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(readiness_delay(&[c(None)]), Duration::ZERO);
        assert_eq!(
            readiness_delay(&[c(Some(2)), c(None), c(Some(5))]),
            Duration::from_secs(5)
        );
    }
}
