//! The API-facing kubelet: watches the pods bound to this node and runs one worker per
//! pod on top of [`crate::containers`]. Each pass of a worker ([`worker`]) asks
//! [`plan`] what to do (pure, as kubelet's `computePodActions`), carries it out, builds
//! each container's configuration with [`container_config`] (pure) and posts the status
//! [`status`] computes (pure); [`orphans`] removes what pods leave behind.

pub mod backoff;
pub mod container_config;
pub mod dns;
pub mod env;
pub mod imagegc;
pub mod orphans;
pub mod plan;
pub mod probe;
pub mod quantity;
pub mod services;
pub mod status;
pub mod timing;
pub mod volumes;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tracing::Instrument as _;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use skiff_runtime::events::Recorder;
use skiff_runtime::tolerant;
use tokio::sync::watch;

use crate::containers::cni::Cni;
use crate::containers::container::Container;
use crate::containers::images::ImageStore;
use crate::containers::registry::Puller;
use crate::containers::runtime::Runtime;
use crate::AgentConfig;

/// How many pods may set up their sandbox and start containers at once: twice the
/// cores (the work is mostly the runtime and the CNI plugins, processes that also wait), or
/// `SKIFF_AGENT_START_SLOTS`.
pub fn start_slots() -> usize {
    std::env::var("SKIFF_AGENT_START_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() * 2)
                .unwrap_or(4)
        })
}

/// What the streaming endpoint can see of one container.
#[derive(Debug, Default, Clone)]
pub struct ContainerEntry {
    /// The latest instance (running or exited).
    pub current: Option<Arc<Container>>,
    /// Log files by attempt, oldest first.
    pub logs: Vec<PathBuf>,
}

/// A pod the agent runs, as the streaming endpoint looks it up.
#[derive(Debug)]
pub struct PodEntry {
    /// Pod UID.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pod IP once wired.
    pub ip: Mutex<Option<Ipv4Addr>>,
    /// The pod's netns path (None: host network).
    pub netns: Mutex<Option<PathBuf>>,
    /// Containers by name.
    pub containers: Mutex<HashMap<String, ContainerEntry>>,
    /// The latest pod object for its worker (None: gone from the API).
    pub updates: watch::Sender<Option<Pod>>,
}

impl PodEntry {
    /// The container's latest instance.
    pub fn container(&self, name: &str) -> Option<Arc<Container>> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)?
            .current
            .clone()
    }

    /// The container's log files, oldest first.
    pub fn logs(&self, name: &str) -> Vec<PathBuf> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|c| c.logs.clone())
            .unwrap_or_default()
    }

    /// Names of the containers known so far.
    pub fn container_names(&self) -> Vec<String> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// The kubelet's shared state.
pub struct Kubelet {
    /// API client (join token).
    pub client: Client,
    /// The agent's configuration.
    pub cfg: AgentConfig,
    /// This node's IP.
    pub node_ip: Ipv4Addr,
    /// The container runtimes, with the agent's state roots.
    pub runtime: Runtime,
    /// The image store.
    pub images: ImageStore,
    /// Pulls images from registries into [`Kubelet::images`].
    pub puller: Puller,
    /// The pod network, once the node has its pod CIDR.
    pub cni: watch::Receiver<Option<Cni>>,
    /// The node's own resolv.conf (for dnsPolicy Default).
    pub host_resolv: String,
    /// Pods by UID.
    pub pods: Mutex<HashMap<String, Arc<PodEntry>>>,
    /// Bounds concurrent sandbox and container starts: with many pods at once, each
    /// then finishes in turn instead of all of them at the end.
    pub start_slots: tokio::sync::Semaphore,
    /// Services for the containers' environment (started by [`Kubelet::run`]).
    pub services: services::ServiceCache,
    /// Events about pods, as kubelet records them: source component `kubelet`, host
    /// this node; repeats folded into a count, a pod's flood cut as client-go does.
    pub events: Recorder,
    /// The sampled CPU and memory of the node and its pods (`/stats/summary`).
    pub stats: crate::stats::Stats,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("node", &self.cfg.node_name)
            .finish()
    }
}

impl Kubelet {
    /// Finds a pod by namespace and name.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<PodEntry>> {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|p| p.namespace == namespace && p.name == name)
            .cloned()
    }

    /// The images containers on this node use (running, or exited and not removed),
    /// and those just resolved for a container about to start.
    pub fn images_in_use(&self) -> HashSet<String> {
        let mut used: HashSet<String> = crate::containers::images::in_use(&self.cfg.data_dir)
            .into_keys()
            .collect();
        used.extend(
            self.images
                .recently_resolved(std::time::Duration::from_secs(60)),
        );
        used
    }

    /// Directory of a pod's files.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.data_dir.join("pods").join(uid)
    }

    /// The pod's netns name.
    pub fn netns_name(&self, uid: &str) -> String {
        format!(
            "{}{}",
            self.cfg.netns_prefix,
            uid.chars().take(13).collect::<String>()
        )
    }

    fn dispatch(self: &Arc<Self>, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = pods.get(&uid) {
            entry.updates.send_replace(Some(pod));
            return;
        }
        // A pod that is already finished and being deleted before we ever ran it
        // still needs its deletion finalized, so the worker runs for it too.
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let entry = Arc::new(PodEntry {
            uid: uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ip: Mutex::new(None),
            netns: Mutex::new(None),
            containers: Mutex::new(HashMap::new()),
            updates: tx,
        });
        pods.insert(uid.clone(), entry.clone());
        drop(pods);
        let k = self.clone();
        // The pod names every line its worker logs (e.g. the steps of its start).
        let span =
            tracing::info_span!("pod", pod = %format_args!("{}/{}", entry.namespace, entry.name));
        tokio::spawn(async move {
            worker::run(k.clone(), entry, rx).instrument(span).await;
            k.pods
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&uid);
        });
    }

    fn gone(&self, uid: &str) {
        if let Some(entry) = self.pods.lock().unwrap_or_else(|e| e.into_inner()).get(uid) {
            entry.updates.send_replace(None);
        }
    }

    /// Watches this node's pods forever, starting and stopping workers. A pod object that
    /// does not decode is skipped and logged (`skiff_runtime::tolerant`); one that stops
    /// decoding keeps running as last seen, also across a relist, rather than being
    /// taken for deleted.
    pub async fn run(self: Arc<Self>) {
        self.services.start(self.client.clone());
        let api = tolerant::api(&Api::<Pod>::all(self.client.clone()));
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.cfg.node_name));
        let k = self.clone();
        let last_good = move |m: &ObjectMeta| {
            let pods = k.pods.lock().unwrap_or_else(|e| e.into_inner());
            let entry = pods.get(m.uid.as_deref()?)?;
            let pod = entry.updates.borrow().clone();
            pod
        };
        let mut stream = tolerant::watcher_with(api, config, last_good)
            .default_backoff()
            .boxed();
        let mut listed: HashSet<String> = HashSet::new();
        let mut first_list = true;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => listed.clear(),
                Ok(Event::InitApply(pod)) => {
                    if let Some(uid) = &pod.metadata.uid {
                        listed.insert(uid.clone());
                    }
                    self.dispatch(pod);
                }
                Ok(Event::InitDone) => {
                    let known: Vec<String> = self
                        .pods
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .keys()
                        .cloned()
                        .collect();
                    for uid in known.iter().filter(|u| !listed.contains(*u)) {
                        self.gone(uid);
                    }
                    if first_list {
                        first_list = false;
                        let k = self.clone();
                        let keep = listed.clone();
                        tokio::spawn(async move { orphans::clean_orphans(&k, &keep).await });
                    }
                }
                Ok(Event::Apply(pod)) => self.dispatch(pod),
                Ok(Event::Delete(pod)) => {
                    if let Some(uid) = &pod.metadata.uid {
                        self.gone(uid);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "pod watch"),
            }
        }
    }
}
