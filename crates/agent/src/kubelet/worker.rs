//! One pod's worker: a loop that plans each pass with [`plan::plan`] and carries the
//! actions out: the sandbox (netns + CNI + /etc files + volumes), containers started
//! (image, environment, [`container_config`], the runtime) and killed, exits recorded with
//! their back-off, probes, status updates, graceful deletion and cleanup.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Container as ContainerSpecK8s, ContainerStatus, Pod, PodCondition, Secret, Service,
};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::Api;
use sha2::{Digest, Sha256};
use skiff_runtime::events::{NORMAL, WARNING};
use tokio::sync::{mpsc, watch, Notify};

use super::backoff::Backoff;
use super::container_config::{container_config, image_user, Resolved};
use super::orphans::{self, SandboxState};
use super::status::{self, ContainerView, PodView, State};
use super::{dns, env, plan, probe, timing, volumes, ContainerEntry, Kubelet, PodEntry};
use crate::containers::cni::PortMapping;
use crate::containers::container::{self, Container, ContainerSpec, Exit};
use crate::containers::images::Image;
use crate::containers::netns;
use crate::containers::registry::{parse_docker_config, Credential};

struct Instance {
    container: Arc<Container>,
    _image: Image,
    probes: Option<tokio::task::JoinHandle<()>>,
    /// The liveness or startup probe that failed it (the next pass kills it).
    unhealthy: Option<probe::Kind>,
}

#[derive(Default)]
struct CState {
    restart_count: i32,
    attempts: u32,
    current: Option<Instance>,
    last: Option<State>,
    waiting: Option<(String, String)>,
    backoff: Backoff,
    pull_backoff: Backoff,
    /// When a failed pull may be tried again (ImagePullBackOff until then).
    pull_retry_at: Option<Instant>,
    not_before: Option<Instant>,
    ready: bool,
    started: bool,
    done: bool,
    image_id: String,
}

struct Worker {
    k: Arc<Kubelet>,
    entry: Arc<PodEntry>,
    dir: PathBuf,
    ip: Option<Ipv4Addr>,
    netns: Option<PathBuf>,
    volumes: volumes::Prepared,
    refresher: Option<tokio::task::JoinHandle<()>>,
    states: HashMap<String, CState>,
    exited: Arc<Notify>,
    probe_tx: mpsc::UnboundedSender<probe::Report>,
    start_time: DateTime<Utc>,
    last_status: Option<serde_json::Value>,
    sandbox_ready: bool,
    /// When the worker began, for the startup timings.
    began: Instant,
    /// The first status with every container running has been posted.
    running_posted: bool,
    /// An earlier agent made this pod's sandbox (the agent restarted): its status is
    /// posted only once the containers are taken back, so that the pod does not show
    /// ContainerCreating and NotReady meanwhile (kubelet posts what the runtime reports).
    adopting: bool,
    /// Since when the pod waits for volumes that cannot be mounted yet (a claim not
    /// bound), or since the last `FailedMount` about them.
    mount_wait: Option<Instant>,
    /// The eviction manager's message once the pod was evicted: it stays Failed.
    evicted: Option<String>,
    /// The next housekeeping pass (emptyDir usage against `sizeLimit`).
    housekeeping_at: Instant,
    /// The pod finished for good and its network was given back.
    network_released: bool,
}

/// How often a pod's emptyDir usage is measured against its `sizeLimit` (kubelet's
/// eviction manager runs every 10 s).
const HOUSEKEEPING: Duration = Duration::from_secs(10);
/// How soon setup is tried again while a claim is not bound (kubelet's volume manager
/// looks every 300 ms; a second keeps the API calls few).
const MOUNT_RETRY: Duration = Duration::from_secs(1);

fn spec_of(pod: &Pod) -> k8s_openapi::api::core::v1::PodSpec {
    pod.spec.clone().unwrap_or_default()
}

fn container_id(uid: &str, name: &str, attempt: u32) -> String {
    format!(
        "{:x}",
        Sha256::digest(format!("{uid}/{name}/{attempt}").as_bytes())
    )
}

/// Runs a pod until it is gone: deleted through the API (graceful) or from it.
pub async fn run(k: Arc<Kubelet>, entry: Arc<PodEntry>, mut rx: watch::Receiver<Option<Pod>>) {
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let start_time = rx
        .borrow()
        .as_ref()
        .and_then(|p| {
            p.status
                .as_ref()?
                .start_time
                .as_ref()
                .and_then(|t| status::to_chrono(&t.0))
        })
        .unwrap_or_else(Utc::now);
    let mut w = Worker {
        dir: k.pod_dir(&entry.uid),
        k,
        entry,
        ip: None,
        netns: None,
        volumes: volumes::Prepared::default(),
        refresher: None,
        states: HashMap::new(),
        exited: Arc::new(Notify::new()),
        probe_tx,
        start_time,
        last_status: None,
        sandbox_ready: false,
        began: Instant::now(),
        running_posted: false,
        adopting: false,
        mount_wait: None,
        evicted: None,
        housekeeping_at: Instant::now() + HOUSEKEEPING,
        network_released: false,
    };
    w.adopting = w.dir.join(orphans::FILE).exists();
    let mut setup_backoff = Backoff::default();
    let mut setup_not_before = Instant::now();
    let mut cni_rx = w.k.cni.clone();
    let mut cni_open = true;
    loop {
        let pod = rx.borrow_and_update().clone();
        let network_ready = cni_rx.borrow_and_update().is_some();
        let mut actions = plan::plan(
            pod.as_ref(),
            &w.observe(network_ready, setup_not_before),
            Instant::now(),
        );
        if let Some(t) = actions.teardown.take() {
            w.teardown(pod.as_ref().filter(|_| t.graceful), &t.stop)
                .await;
            return;
        }
        // A pod gone from the API is torn down above.
        let Some(pod) = pod else { return };
        if w.evicted.is_none() && Instant::now() >= w.housekeeping_at {
            w.housekeeping_at = Instant::now() + HOUSEKEEPING;
            w.housekeeping(&pod).await;
        }
        if let Some(msg) = w.evicted.clone() {
            // Evicted: nothing runs again; the Failed status stays until deletion.
            w.post_evicted_status(&pod, &msg).await;
            w.release_network().await;
            if rx.changed().await.is_err() {
                w.teardown(None, &w.running()).await;
                return;
            }
            continue;
        }
        let finished = actions.finished.is_some();
        if actions.finished != Some(plan::Finished::Before) {
            // A new pod keeps its start slot from sandbox to containers, so pods
            // started together come up in order.
            let k = w.k.clone();
            let mut slot = None;
            if actions.create_sandbox {
                let t = Instant::now();
                slot = k.start_slots.acquire().await.ok();
                timing::lap("slot-wait", t);
                match w.setup(&pod).await {
                    // The containers it took back count in the plan.
                    Ok(()) => {
                        w.mount_wait = None;
                        actions = plan::plan(
                            Some(&pod),
                            &w.observe(network_ready, setup_not_before),
                            Instant::now(),
                        )
                    }
                    Err(e) if e.downcast_ref::<volumes::NotReady>().is_some() => {
                        // Waiting for a claim to be bound: tried again soon, without
                        // a back-off; FailedMount once the wait is kubelet's timeout.
                        setup_not_before = Instant::now() + MOUNT_RETRY;
                        let since = *w.mount_wait.get_or_insert_with(Instant::now);
                        tracing::debug!(pod = %w.entry.name, error = %format!("{e:#}"), "volumes not ready");
                        if since.elapsed() >= volumes::MOUNT_TIMEOUT {
                            w.mount_wait = Some(Instant::now());
                            if let Some(nr) = e.downcast_ref::<volumes::NotReady>() {
                                event(
                                    &w.k,
                                    &pod,
                                    None,
                                    WARNING,
                                    "FailedMount",
                                    nr.failed_mount_message(),
                                );
                            }
                        }
                    }
                    Err(e) => {
                        let delay = setup_backoff
                            .on_exit(Duration::ZERO)
                            .max(Duration::from_secs(2));
                        setup_not_before = Instant::now() + delay;
                        tracing::warn!(pod = %w.entry.name, error = %format!("{e:#}"), "pod sandbox setup failed");
                        event(
                            &w.k,
                            &pod,
                            None,
                            WARNING,
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {e:#}"),
                        );
                    }
                }
            }
            w.sync(&pod, actions, slot.is_some()).await;
            drop(slot);
            if w.sandbox_ready || !w.adopting {
                w.post_status(&pod).await;
            }
        }
        if finished {
            // Nothing of it runs again: its address goes back to the node's range.
            w.release_network().await;
        }
        let mut next = plan::wake_at(&w.observe(network_ready, setup_not_before), Instant::now());
        if !w.volumes.limits.is_empty() {
            next = Some(next.map_or(w.housekeeping_at, |t| t.min(w.housekeeping_at)));
        }
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rx.changed() => { if r.is_err() { w.teardown(None, &w.running()).await; return; } }
            _ = w.exited.notified() => {}
            r = cni_rx.changed(), if !w.sandbox_ready && cni_open => cni_open = r.is_ok(),
            Some(report) = probe_rx.recv() => w.on_probe(&pod, report),
            _ = sleep => {}
        }
    }
}

impl Worker {
    fn ns(&self) -> &str {
        &self.entry.namespace
    }

    fn save_sandbox(&self) {
        let state = SandboxState {
            uid: self.entry.uid.clone(),
            pod: format!("{}/{}", self.entry.namespace, self.entry.name),
            netns: self
                .netns
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
            ip: self.ip,
        };
        if let Ok(b) = serde_json::to_vec(&state) {
            let _ = std::fs::write(self.dir.join(orphans::FILE), b);
        }
    }

    /// Makes the sandbox: pod dir, netns + CNI (or host network), /etc files, volumes.
    /// The pod's claims are looked up first: while one is not bound, nothing is made
    /// ([`volumes::NotReady`]), as kubelet mounts volumes before it makes the sandbox.
    async fn setup(&mut self, pod: &Pod) -> Result<()> {
        let claims = volumes::resolve_claims(&self.k.client, pod).await?;
        let spec = spec_of(pod);
        std::fs::create_dir_all(self.dir.join("etc")).context("creating the pod directory")?;
        let host_network = spec.host_network.unwrap_or(false);
        let previous = SandboxState::read(&self.dir);
        if host_network {
            self.ip = Some(self.k.node_ip);
        } else {
            let mut cni_rx = self.k.cni.clone();
            let cni = cni_rx
                .wait_for(|c| c.is_some())
                .await
                .map_err(|_| anyhow!("the agent is stopping"))?
                .clone();
            let cni = cni.ok_or_else(|| anyhow!("no pod network"))?;
            let name = self.k.netns_name(&self.entry.uid);
            let t = Instant::now();
            let path = netns::create(&name).await?;
            let t = timing::lap("netns", t);
            self.netns = Some(path.clone());
            // A sandbox from before an agent restart keeps its address.
            match previous
                .and_then(|p| p.ip)
                .filter(|_| cni.cached_ids().contains(&self.entry.uid))
            {
                Some(ip) => self.ip = Some(ip),
                None => {
                    let ports: Vec<PortMapping> = spec
                        .containers
                        .iter()
                        .flat_map(|c| c.ports.iter().flatten())
                        .filter_map(|p| {
                            Some(PortMapping {
                                host_port: u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?,
                                container_port: u16::try_from(p.container_port).ok()?,
                                protocol: p
                                    .protocol
                                    .clone()
                                    .unwrap_or_else(|| "TCP".into())
                                    .to_ascii_lowercase(),
                                host_ip: p.host_ip.clone().unwrap_or_default(),
                            })
                        })
                        .collect();
                    let ip = cni.add(&self.entry.uid, &path, &ports).await?;
                    timing::lap("cni", t);
                    self.ip = Some(ip);
                }
            }
        }
        let t = Instant::now();
        *self.entry.ip.lock().unwrap_or_else(|e| e.into_inner()) = self.ip;
        *self.entry.netns.lock().unwrap_or_else(|e| e.into_inner()) = self.netns.clone();
        self.save_sandbox();
        let ip = self.ip.map(|i| i.to_string()).unwrap_or_default();
        let name = self.entry.name.clone();
        let cdns = dns::ClusterDns {
            server: self.k.cfg.cluster_dns,
            domain: self.k.cfg.cluster_domain.clone(),
        };
        let etc = self.dir.join("etc");
        let hosts = if host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            dns::hosts_file(&spec, self.ns(), &name, &ip, &cdns.domain)
        };
        std::fs::write(etc.join("hosts"), hosts)?;
        std::fs::write(
            etc.join("resolv.conf"),
            dns::resolv_conf(&spec, self.ns(), &cdns, &self.k.host_resolv),
        )?;
        let hostname = if host_network {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_string()
        } else {
            dns::hostname(&spec, &name)
        };
        std::fs::write(etc.join("hostname"), format!("{hostname}\n"))?;
        let ca = self
            .k
            .cfg
            .ca_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok());
        let t = timing::lap("etc-files", t);
        self.volumes =
            volumes::prepare(&self.k.client, pod, &self.dir, ca.as_deref(), &claims).await?;
        timing::lap("volumes", t);
        self.refresher =
            volumes::spawn_refresher(self.k.client.clone(), pod.clone(), &self.volumes);
        self.adopt(pod);
        self.sandbox_ready = true;
        Ok(())
    }

    /// Takes back containers an earlier agent started for this pod, with their probes.
    ///
    /// As kubelet does after a restart (its default since KEP-4781): an instance keeps
    /// the `started` its last posted status gave it, so its startup probe is not run
    /// again; it is ready without waiting for a probe if it has no readiness probe, or if
    /// it was running well before this agent started and the pod was Ready (the
    /// readiness probe, run at once, then confirms or withdraws it); otherwise readiness
    /// waits for the first success. Init containers that had completed stay completed.
    fn adopt(&mut self, pod: &Pod) {
        let spec = spec_of(pod);
        let init_names: HashSet<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        let ephemeral = plan::ephemeral_containers(&spec);
        let all: Vec<&ContainerSpecK8s> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .chain(ephemeral.iter())
            .collect();
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let pod_ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        // kubelet's grace: an instance started less than 10 s before the agent is
        // treated as new, its readiness unknown.
        let agent_start =
            Utc::now() - chrono::Duration::from_std(self.began.elapsed()).unwrap_or_default();
        let long_running = agent_start - chrono::Duration::seconds(RESTART_GRACE_SECONDS);
        let app_started = spec.containers.iter().any(|c| {
            self.dir
                .join("containers")
                .join(format!("{}-0", c.name))
                .exists()
        });
        for c in all {
            let mut attempt = 0;
            let mut latest = None;
            while self
                .dir
                .join("containers")
                .join(format!("{}-{attempt}", c.name))
                .exists()
            {
                latest = Some(attempt);
                attempt += 1;
            }
            let Some(last) = latest else { continue };
            let bundle = self
                .dir
                .join("containers")
                .join(format!("{}-{last}", c.name));
            let id = container_id(&self.entry.uid, &c.name, last);
            let cgroup = self.cgroup_path(&id);
            let running = container::is_mountpoint(&bundle.join("rootfs"));
            let posted = posted_status(pod, &c.name, &id);
            let adopted = if running {
                Some((
                    Container::adopt(&self.k.runtime, &bundle, &cgroup),
                    self.k.images.resolve(&c.image.clone().unwrap_or_default()),
                ))
            } else {
                None
            };
            if let Some((Ok(ctr), _)) = &adopted {
                self.watch_exit(ctr);
            }
            // A container started before bundles named their image: name it now, so
            // that image garbage collection sees its image in use.
            if let Some((_, Ok(Some(image)))) = &adopted {
                let file = bundle.join(crate::containers::images::BUNDLE_IMAGE_FILE);
                if !file.exists() {
                    let _ = std::fs::write(&file, &image.id);
                }
            }
            let ip = self
                .ip
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V4(self.k.node_ip));
            let logs: Vec<PathBuf> = (0..=last)
                .map(|a| self.dir.join("logs").join(&c.name).join(format!("{a}.log")))
                .filter(|p| p.exists())
                .collect();
            let st = self.states.entry(c.name.clone()).or_default();
            st.attempts = last + 1;
            st.restart_count = last as i32;
            let Some(adopted) = adopted else {
                // It ended while no agent watched it: what its last posted status says
                // (an exit seen before the agent went away) decides whether it runs again.
                let is_init = init_names.contains(c.name.as_str());
                let ended = posted.and_then(posted_termination).or_else(|| {
                    // App containers only start after every init container succeeded.
                    (is_init && app_started).then(|| State::Terminated {
                        exit_code: 0,
                        reason: "Completed".into(),
                        started_at: Utc::now(),
                        finished_at: Utc::now(),
                        container_id: format!("skiff://{id}"),
                    })
                });
                if plan::is_ephemeral(&spec, &c.name) {
                    // An ephemeral container never runs again, its end seen or not.
                    st.last = Some(ended.unwrap_or_else(|| State::Terminated {
                        exit_code: 0,
                        reason: "Completed".into(),
                        started_at: Utc::now(),
                        finished_at: Utc::now(),
                        container_id: format!("skiff://{id}"),
                    }));
                    st.done = true;
                    continue;
                }
                if let Some(ended) = ended {
                    let code = match &ended {
                        State::Terminated { exit_code, .. } => *exit_code,
                        _ => 0,
                    };
                    st.last = Some(ended);
                    st.done = !plan::restart_wanted(policy, is_init, code);
                }
                continue;
            };
            match adopted {
                (Ok(ctr), Ok(Some(image))) => {
                    tracing::info!(pod = %self.entry.name, container = %c.name, "took back a running container");
                    st.image_id = image.id.clone();
                    st.started = c.startup_probe.is_none()
                        || posted.and_then(|p| p.started).unwrap_or(false);
                    st.ready = st.started
                        && (c.readiness_probe.is_none()
                            || (pod_ready && ctr.started_at < long_running));
                    st.last = posted
                        .and_then(|p| p.last_state.as_ref())
                        .and_then(|l| l.terminated.as_ref())
                        .map(api_terminated);
                    let probes = (c.startup_probe.is_some()
                        || c.liveness_probe.is_some()
                        || c.readiness_probe.is_some())
                    .then(|| {
                        probe::spawn(
                            c.clone(),
                            ip,
                            self.k.runtime.clone(),
                            ctr.clone(),
                            self.probe_tx.clone(),
                            probe::Resume {
                                started: st.started,
                                stagger: true,
                            },
                        )
                    });
                    st.current = Some(Instance {
                        container: ctr.clone(),
                        _image: image,
                        probes,
                        unhealthy: None,
                    });
                    let mut map = self
                        .entry
                        .containers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let e = map.entry(c.name.clone()).or_default();
                    e.current = Some(ctr);
                    e.logs = logs;
                }
                (Err(e), _) => {
                    tracing::warn!(container = %c.name, error = %format!("{e:#}"), "cannot take back a container")
                }
                _ => {}
            }
        }
    }

    /// The PID and IPC namespaces an ephemeral container joins: its target's (the
    /// `targetContainerName` running now), else for IPC the first running app
    /// container's, the nearest skiff has to a pod's shared IPC namespace. (None, None)
    /// for other containers.
    fn ephemeral_namespaces(&self, pod: &Pod, name: &str) -> (Option<PathBuf>, Option<PathBuf>) {
        let spec = spec_of(pod);
        let Some(ec) = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .find(|c| c.name == name)
        else {
            return (None, None);
        };
        let pid_of = |n: &str| {
            self.states
                .get(n)
                .and_then(|st| st.current.as_ref())
                .map(|inst| inst.container.pid)
                .filter(|pid| *pid > 0)
        };
        let ns = |pid: i32, kind: &str| PathBuf::from(format!("/proc/{pid}/ns/{kind}"));
        let target = ec.target_container_name.as_deref().and_then(pid_of);
        let ipc_from = target.or_else(|| spec.containers.iter().find_map(|c| pid_of(&c.name)));
        (target.map(|p| ns(p, "pid")), ipc_from.map(|p| ns(p, "ipc")))
    }

    fn cgroup_path(&self, id: &str) -> String {
        format!("/skiff/{}/pod{}/{id}", self.k.cfg.node_name, self.entry.uid)
    }

    fn watch_exit(&self, c: &Arc<Container>) {
        let notify = self.exited.clone();
        let c = c.clone();
        tokio::spawn(async move {
            c.wait().await;
            notify.notify_one();
        });
    }

    /// What the plan sees: the sandbox and each container's instance and back-off.
    fn observe(&self, network_ready: bool, sandbox_retry_at: Instant) -> plan::Observed {
        let containers = self
            .states
            .iter()
            .map(|(name, st)| {
                let run = match &st.current {
                    Some(inst) => match inst.container.exit() {
                        Some(exit) => plan::Run::Exited {
                            code: exit.code,
                            ran_for: (exit.finished_at - inst.container.started_at)
                                .to_std()
                                .unwrap_or_default(),
                        },
                        None => plan::Run::Running {
                            unhealthy: inst.unhealthy,
                        },
                    },
                    None if st.done => plan::Run::Done {
                        succeeded: matches!(st.last, Some(State::Terminated { exit_code: 0, .. })),
                    },
                    None => plan::Run::Idle,
                };
                let seen = plan::Seen {
                    run,
                    not_before: st.not_before,
                    backoff: st.backoff.clone(),
                };
                (name.clone(), seen)
            })
            .collect();
        plan::Observed {
            sandbox_ready: self.sandbox_ready,
            sandbox_retry_at,
            network_ready,
            containers,
        }
    }

    /// The containers with a running instance.
    fn running(&self) -> Vec<String> {
        self.states
            .iter()
            .filter(|(_, st)| {
                st.current
                    .as_ref()
                    .is_some_and(|i| i.container.exit().is_none())
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Moves exited instances into `last` as the plan decided: done, or to start again
    /// after their back-off.
    fn record_exits(&mut self, pod: &Pod, exits: &[(String, plan::AfterExit)]) {
        for (name, after) in exits {
            let Some(st) = self.states.get_mut(name) else {
                continue;
            };
            let Some(inst) = st.current.take() else {
                continue;
            };
            let Some(exit) = inst.container.exit() else {
                st.current = Some(inst);
                continue;
            };
            if let Some(p) = &inst.probes {
                p.abort();
            }
            st.ready = false;
            st.last = Some(terminated(&inst.container, &exit));
            match after {
                plan::AfterExit::Done => {
                    st.done = true;
                    st.waiting = None;
                }
                plan::AfterExit::Restart {
                    at,
                    backoff,
                    waiting,
                } => {
                    st.backoff = backoff.clone();
                    st.not_before = Some(*at);
                    st.waiting = waiting.clone().map(|w| (w.reason, w.message));
                    if waiting.is_some() {
                        event(
                            &self.k,
                            pod,
                            Some(name),
                            WARNING,
                            "BackOff",
                            "Back-off restarting failed container".to_string(),
                        );
                    }
                }
            }
        }
    }

    /// Records the instances that exited since the last pass (the status must not show
    /// a finished container running).
    fn collect_exits(&mut self, pod: &Pod) {
        let now = Instant::now();
        let exits = plan::exits(pod, &self.observe(true, now), now);
        self.record_exits(pod, &exits);
    }

    /// Carries out a plan: records exits, kills, starts.
    async fn sync(&mut self, pod: &Pod, actions: plan::Actions, have_slot: bool) {
        self.record_exits(pod, &actions.exits);
        for kill in &actions.kill {
            self.kill(pod, kill);
        }
        let spec = spec_of(pod);
        let ephemeral = plan::ephemeral_containers(&spec);
        for start in &actions.start {
            let all = spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .chain(&ephemeral);
            let Some(c) = all.into_iter().find(|c| c.name == start.name) else {
                continue;
            };
            let k = self.k.clone();
            let _slot = if have_slot {
                None
            } else {
                k.start_slots.acquire().await.ok()
            };
            self.start(pod, c).await;
        }
    }

    /// Stops an instance (TERM, KILL after the pod's grace period); it restarts as its
    /// exit then decides.
    fn kill(&mut self, pod: &Pod, kill: &plan::Kill) {
        let Some(inst) = self
            .states
            .get_mut(&kill.name)
            .and_then(|st| st.current.as_mut())
        else {
            return;
        };
        inst.unhealthy = None;
        let name = &kill.name;
        match kill.reason {
            plan::KillReason::Unhealthy(kind) => {
                let what = if kind == probe::Kind::Startup {
                    "startup"
                } else {
                    "liveness"
                };
                event(
                    &self.k,
                    pod,
                    Some(name),
                    NORMAL,
                    "Killing",
                    format!("Container {name} failed {what} probe, will be restarted"),
                );
            }
            plan::KillReason::SandboxGone => event(
                &self.k,
                pod,
                None,
                NORMAL,
                "SandboxChanged",
                "Pod sandbox changed, it will be killed and re-created.".to_string(),
            ),
        }
        let ctr = inst.container.clone();
        self.stop_instance(pod, ctr);
    }

    /// Stops a running instance as a kill does: TERM, then KILL after the pod's grace
    /// period. Its exit is then handled as any other (restart policy, back-off).
    fn stop_instance(&self, pod: &Pod, ctr: Arc<Container>) {
        let grace = spec_of(pod)
            .termination_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64;
        let runtime = self.k.runtime.clone();
        tokio::spawn(async move {
            let _ = runtime.kill(ctr.runtime, &ctr.id, "TERM").await;
            if tokio::time::timeout(Duration::from_secs(grace), ctr.wait())
                .await
                .is_err()
            {
                let _ = runtime.kill(ctr.runtime, &ctr.id, "KILL").await;
            }
        });
    }

    async fn env_for(&self, pod: &Pod, c: &ContainerSpecK8s, image: &Image) -> Result<Vec<String>> {
        let spec = spec_of(pod);
        let mut services: Vec<Service> = Vec::new();
        if spec.enable_service_links != Some(false) {
            services = match self.k.services.in_namespace(self.ns()).await {
                Some(cached) => cached.iter().map(|s| (**s).clone()).collect(),
                None => {
                    let api: Api<Service> = Api::namespaced(self.k.client.clone(), self.ns());
                    // Object by object: a Service that does not decode is left out of
                    // the environment rather than failing the container's start.
                    skiff_runtime::tolerant::api(&api)
                        .list(&ListParams::default())
                        .await
                        .context("listing Services for the environment")?
                        .items
                        .into_iter()
                        .filter_map(skiff_runtime::tolerant::Decoded::ok)
                        .collect()
                }
            };
            services.retain(|s| {
                !(self.ns() == "default" && s.metadata.name.as_deref() == Some("kubernetes"))
            });
        }
        let cached_master = self.k.services.in_namespace("default").await.map(|svcs| {
            svcs.iter()
                .find(|s| s.metadata.name.as_deref() == Some("kubernetes"))
                .map(|s| (**s).clone())
        });
        let kube_svc = match cached_master {
            Some(found) => found,
            None => {
                let master: Api<Service> = Api::namespaced(self.k.client.clone(), "default");
                master.get_opt("kubernetes").await.ok().flatten()
            }
        };
        if let Some(kube_svc) = kube_svc {
            services.push(kube_svc);
        }
        services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let service_vars = env::service_env(&services);
        let (cms, secrets) = env::referenced(c);
        let mut sources = env::Sources::default();
        for name in cms {
            let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
                Api::namespaced(self.k.client.clone(), self.ns());
            if let Some(cm) = api.get_opt(&name).await? {
                sources
                    .config_maps
                    .insert(name, cm.data.unwrap_or_default());
            }
        }
        for name in secrets {
            let api: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(self.k.client.clone(), self.ns());
            if let Some(s) = api.get_opt(&name).await? {
                let data = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                sources.secrets.insert(name, data);
            }
        }
        // Downward fields need the IPs even before the status carries them.
        let mut pod = pod.clone();
        let status = pod.status.get_or_insert_with(Default::default);
        if let Some(ip) = self.ip {
            status.pod_ip = Some(ip.to_string());
        }
        status.host_ip = Some(self.k.node_ip.to_string());
        Ok(env::container_env(
            &pod,
            c,
            &image.config.env,
            &service_vars,
            &sources,
        )?)
    }

    /// Starts one container (a new attempt): image → environment → configuration →
    /// runtime. Failures leave it waiting with a reason.
    async fn start(&mut self, pod: &Pod, c: &ContainerSpecK8s) {
        let t = Instant::now();
        let Some(image) = self.image_for(pod, c).await else {
            return;
        };
        let t = timing::lap("image", t);
        let env = match self.env_for(pod, c, &image).await {
            Ok(e) => e,
            Err(e) => {
                let st = self.states.entry(c.name.clone()).or_default();
                st.waiting = Some(("CreateContainerConfigError".into(), format!("{e:#}")));
                st.not_before = Some(Instant::now() + Duration::from_secs(2));
                event(
                    &self.k,
                    pod,
                    Some(&c.name),
                    WARNING,
                    "Failed",
                    format!("Error: {e:#}"),
                );
                return;
            }
        };
        let t = timing::lap("env", t);
        let (join_pid, join_ipc) = self.ephemeral_namespaces(pod, &c.name);
        let st = self.states.entry(c.name.clone()).or_default();
        let attempt = st.attempts;
        let id = container_id(&self.entry.uid, &c.name, attempt);
        let hostname = std::fs::read_to_string(self.dir.join("etc").join("hostname"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let config = container_config(
            pod,
            c,
            &image.config,
            &self.dir,
            Resolved {
                env,
                image_user: image_user(&image.config.user, |rel| image.read_file(rel)),
                hostname,
                netns: self.netns.clone(),
                volume_mounts: volumes::mounts_for(c, &self.volumes),
                cgroups_path: self.cgroup_path(&id),
                join_pid,
                join_ipc,
            },
        );
        let log_path = self
            .dir
            .join("logs")
            .join(&c.name)
            .join(format!("{attempt}.log"));
        let spec_run = ContainerSpec {
            id: id.clone(),
            bundle: self
                .dir
                .join("containers")
                .join(format!("{}-{attempt}", c.name)),
            lower: image.lowers.clone(),
            image_id: image.id.clone(),
            config,
            log_path: log_path.clone(),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        };
        let st = self.states.entry(c.name.clone()).or_default();
        st.attempts += 1;
        let t = timing::lap("bundle-config", t);
        let started = Container::start(&self.k.runtime, spec_run).await;
        timing::lap("runtime-run", t);
        let ctr = match started {
            Ok(ctr) => ctr,
            Err(e) => return self.start_failed(pod, c, &id, format!("{e:#}")),
        };
        // As kubelet: the postStart hook runs before the container counts as running
        // (its probes start once the hook is done), and a failed hook kills it.
        let hook = match c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            Some(h) => {
                let ip = IpAddr::V4(self.ip.unwrap_or(self.k.node_ip));
                run_post_start(h, pod, c, ip, &self.k.runtime, &ctr).await
            }
            None => Ok(()),
        };
        self.started(pod, c, image, ctr.clone(), log_path);
        if let Err(msg) = hook {
            event(
                &self.k,
                pod,
                Some(&c.name),
                WARNING,
                "FailedPostStartHook",
                msg,
            );
            event(
                &self.k,
                pod,
                Some(&c.name),
                NORMAL,
                "Killing",
                "FailedPostStartHook".to_string(),
            );
            self.stop_instance(pod, ctr);
        }
    }

    /// The container's image as its pull policy says: the node's, or pulled now; None
    /// (with the container waiting on ErrImagePull / ImagePullBackOff, or
    /// ErrImageNeverPull) if it cannot have it yet.
    async fn image_for(&mut self, pod: &Pod, c: &ContainerSpecK8s) -> Option<Image> {
        let image_ref = c.image.clone().unwrap_or_default();
        let resolved = {
            let k = self.k.clone();
            let r = image_ref.clone();
            tokio::task::spawn_blocking(move || k.images.resolve(&r)).await
        };
        let present = match resolved {
            Ok(Ok(img)) => img,
            Ok(Err(e)) => {
                tracing::warn!(image = %image_ref, error = %format!("{e:#}"), "reading the image store");
                None
            }
            Err(_) => None,
        };
        let st = self.states.entry(c.name.clone()).or_default();
        let backing_off = st.pull_retry_at.is_some_and(|t| Instant::now() < t);
        let step = plan::image_step(
            &image_ref,
            c.image_pull_policy.as_deref(),
            present.as_ref().map(|i| i.pulled),
            backing_off,
        );
        let missing = match step {
            plan::ImageStep::UsePresent => {
                if let Some(img) = present {
                    event(
                        &self.k,
                        pod,
                        Some(&c.name),
                        NORMAL,
                        "Pulled",
                        format!("Container image \"{image_ref}\" already present on machine"),
                    );
                    return Some(img);
                }
                return None;
            }
            plan::ImageStep::NeverPulled => {
                let m = plan::never_pulled(&image_ref);
                // kubelet records ErrImageNeverPull at every sync; one event per episode here.
                let repeated = st.waiting.as_ref().is_some_and(|(r, _)| r == m.reason);
                st.not_before = Some(Instant::now() + Duration::from_secs(1));
                st.waiting = Some((m.reason.into(), m.message.clone()));
                if repeated {
                    return None;
                }
                m
            }
            plan::ImageStep::BackOff => {
                let m = plan::pull_backoff(&image_ref);
                st.not_before = st.pull_retry_at;
                st.waiting = Some((m.reason.into(), m.message.clone()));
                m
            }
            plan::ImageStep::Pull => {
                event(
                    &self.k,
                    pod,
                    Some(&c.name),
                    NORMAL,
                    "Pulling",
                    format!("Pulling image \"{image_ref}\""),
                );
                let creds = self.pull_credentials(pod).await;
                match self.k.puller.pull(&self.k.images, &image_ref, &creds).await {
                    Ok(pulled) => {
                        event(
                            &self.k,
                            pod,
                            Some(&c.name),
                            NORMAL,
                            "Pulled",
                            plan::pulled_message(
                                &image_ref,
                                pulled.took,
                                pulled.with_waiting,
                                pulled.size,
                            ),
                        );
                        let st = self.states.entry(c.name.clone()).or_default();
                        st.pull_backoff = Backoff::default();
                        st.pull_retry_at = None;
                        return Some(pulled.image);
                    }
                    Err(e) => {
                        let m = plan::pull_failed(&image_ref, &format!("{e:#}"));
                        let st = self.states.entry(c.name.clone()).or_default();
                        let delay = st
                            .pull_backoff
                            .on_exit(Duration::ZERO)
                            .max(super::backoff::INITIAL);
                        st.pull_retry_at = Some(Instant::now() + delay);
                        // Shown as ErrImagePull a moment, then ImagePullBackOff until
                        // the retry, as kubelet's next syncs do.
                        st.not_before = Some(Instant::now() + Duration::from_secs(1));
                        st.waiting = Some((m.reason.into(), m.message.clone()));
                        m
                    }
                }
            }
        };
        for (kind, reason, message) in missing.events {
            let kind = if kind == "Warning" { WARNING } else { NORMAL };
            event(&self.k, pod, Some(&c.name), kind, reason, message);
        }
        None
    }

    /// The registry credentials of the pod's `imagePullSecrets`, read through the API
    /// as kubelet does; a Secret it cannot read is an event
    /// (`FailedToRetrieveImagePullSecret`) and the pull goes on without it.
    async fn pull_credentials(&self, pod: &Pod) -> Vec<Credential> {
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.k.client.clone(), &ns);
        let mut creds = Vec::new();
        for name in names {
            let parsed = match api.get_opt(&name).await {
                Ok(Some(secret)) => {
                    let data = secret.data.unwrap_or_default();
                    let doc = match secret.type_.as_deref() {
                        Some("kubernetes.io/dockerconfigjson") => data.get(".dockerconfigjson"),
                        Some("kubernetes.io/dockercfg") => data.get(".dockercfg"),
                        _ => None,
                    };
                    doc.map(|d| parse_docker_config(&d.0))
                }
                _ => None,
            };
            match parsed {
                Some(Ok(c)) => creds.extend(c),
                _ => event(
                    &self.k,
                    pod,
                    None,
                    WARNING,
                    "FailedToRetrieveImagePullSecret",
                    format!(
                        "Unable to retrieve some image pull secrets ({name}); attempting to pull the image may not succeed."
                    ),
                ),
            }
        }
        creds
    }

    /// A new instance runs: its probes start, the streaming endpoint sees it.
    fn started(
        &mut self,
        pod: &Pod,
        c: &ContainerSpecK8s,
        image: Image,
        ctr: Arc<Container>,
        log_path: PathBuf,
    ) {
        let ip = self
            .ip
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V4(self.k.node_ip));
        let st = self.states.entry(c.name.clone()).or_default();
        if st.last.is_some() {
            st.restart_count += 1;
        }
        st.waiting = None;
        st.image_id = image.id.clone();
        st.started = c.startup_probe.is_none();
        st.ready = c.readiness_probe.is_none() && st.started;
        let probes = (c.startup_probe.is_some()
            || c.liveness_probe.is_some()
            || c.readiness_probe.is_some())
        .then(|| {
            probe::spawn(
                c.clone(),
                ip,
                self.k.runtime.clone(),
                ctr.clone(),
                self.probe_tx.clone(),
                probe::Resume::default(),
            )
        });
        st.current = Some(Instance {
            container: ctr.clone(),
            _image: image,
            probes,
            unhealthy: None,
        });
        {
            let mut map = self
                .entry
                .containers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let e: &mut ContainerEntry = map.entry(c.name.clone()).or_default();
            e.current = Some(ctr.clone());
            e.logs.push(log_path);
        }
        self.watch_exit(&ctr);
        let name = &c.name;
        event(
            &self.k,
            pod,
            Some(name),
            NORMAL,
            "Created",
            format!("Created container: {name}"),
        );
        event(
            &self.k,
            pod,
            Some(name),
            NORMAL,
            "Started",
            format!("Started container {name}"),
        );
    }

    /// The runtime could not start the instance: it counts as ended (StartError) and is
    /// tried again after a back-off.
    fn start_failed(&mut self, pod: &Pod, c: &ContainerSpecK8s, id: &str, msg: String) {
        let st = self.states.entry(c.name.clone()).or_default();
        tracing::warn!(pod = %self.entry.name, container = %c.name, error = %msg, "starting a container");
        st.last = Some(State::Terminated {
            exit_code: 128,
            reason: "StartError".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            container_id: format!("skiff://{id}"),
        });
        let delay = st
            .backoff
            .on_exit(Duration::ZERO)
            .max(Duration::from_secs(1));
        st.not_before = Some(Instant::now() + delay);
        st.waiting = Some(("RunContainerError".into(), msg.clone()));
        event(
            &self.k,
            pod,
            Some(&c.name),
            WARNING,
            "Failed",
            format!("Error: {msg}"),
        );
    }

    /// A probe crossed a threshold: readiness and started change; a failed liveness or
    /// startup probe marks the instance for the next pass to kill. (The loop plans and
    /// posts the status right after.)
    fn on_probe(&mut self, pod: &Pod, r: probe::Report) {
        let Some(st) = self.states.get_mut(&r.container) else {
            return;
        };
        let Some(inst) = &mut st.current else { return };
        if inst.container.id != r.id {
            return;
        }
        let c_spec = spec_of(pod)
            .containers
            .into_iter()
            .find(|c| c.name == r.container);
        if !r.ok {
            event(
                &self.k,
                pod,
                Some(&r.container),
                WARNING,
                "Unhealthy",
                format!("{} probe failed: {}", r.kind.title(), r.message),
            );
        }
        match (r.kind, r.ok) {
            (probe::Kind::Startup, true) => {
                st.started = true;
                st.ready = c_spec.as_ref().is_some_and(|c| c.readiness_probe.is_none());
            }
            (probe::Kind::Readiness, ok) => st.ready = ok && st.started,
            (probe::Kind::Liveness, false) | (probe::Kind::Startup, false) => {
                inst.unhealthy = Some(r.kind)
            }
            _ => {}
        }
    }

    fn view(&self, pod: &Pod) -> PodView {
        let spec = spec_of(pod);
        let mk = |c: &ContainerSpecK8s| -> ContainerView {
            let st = self.states.get(&c.name);
            let image = c.image.clone().unwrap_or_default();
            let Some(st) = st else {
                return ContainerView {
                    name: c.name.clone(),
                    image,
                    image_id: String::new(),
                    container_id: None,
                    state: State::Waiting {
                        reason: "ContainerCreating".into(),
                        message: String::new(),
                    },
                    last: None,
                    ready: false,
                    started: false,
                    restart_count: 0,
                };
            };
            let (state, last, container_id) = match (&st.current, &st.waiting) {
                (Some(inst), _) => (
                    State::Running {
                        started_at: inst.container.started_at,
                    },
                    st.last.clone(),
                    Some(format!("skiff://{}", inst.container.id)),
                ),
                (None, Some((reason, message))) => (
                    State::Waiting {
                        reason: reason.clone(),
                        message: message.clone(),
                    },
                    st.last.clone(),
                    last_id(&st.last),
                ),
                (None, None) if st.done || st.not_before.is_some() => match &st.last {
                    // Finished for good: the terminated state is current.
                    Some(t) if st.done => (t.clone(), None, last_id(&st.last)),
                    Some(_) => (
                        State::Waiting {
                            reason: "ContainerCreating".into(),
                            message: String::new(),
                        },
                        st.last.clone(),
                        last_id(&st.last),
                    ),
                    None => (
                        State::Waiting {
                            reason: "ContainerCreating".into(),
                            message: String::new(),
                        },
                        None,
                        None,
                    ),
                },
                (None, None) => (
                    State::Waiting {
                        reason: "ContainerCreating".into(),
                        message: String::new(),
                    },
                    st.last.clone(),
                    last_id(&st.last),
                ),
            };
            ContainerView {
                name: c.name.clone(),
                image,
                image_id: st.image_id.clone(),
                container_id,
                ready: st.ready && st.current.is_some(),
                started: st.started && st.current.is_some(),
                restart_count: st.restart_count,
                state,
                last,
            }
        };
        PodView {
            init: spec.init_containers.iter().flatten().map(mk).collect(),
            main: spec.containers.iter().map(mk).collect(),
            ephemeral: plan::ephemeral_containers(&spec).iter().map(mk).collect(),
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            sandbox_ready: self.sandbox_ready,
            pod_ip: self.ip.map(|i| i.to_string()),
            host_ip: self.k.node_ip.to_string(),
            start_time: self.start_time,
            qos_class: skiff_api::helpers::qos_class(&spec_of(pod)).to_string(),
        }
    }

    async fn post_status(&mut self, pod: &Pod) {
        self.collect_exits(pod);
        let status = status::build(&self.view(pod), &prev_conditions(pod), Utc::now());
        let all_running = !self.states.is_empty()
            && spec_of(pod).containers.iter().all(|c| {
                self.states
                    .get(&c.name)
                    .is_some_and(|s| s.current.is_some())
            });
        if self.send_status(status, "updating the pod status").await
            && all_running
            && !self.running_posted
        {
            self.running_posted = true;
            timing::lap("worker-running", self.began);
        }
    }

    /// Patches the pod's status to `status` unless that is what was posted last
    /// (conditions keep their transition times across our own updates); whether it
    /// patched. `what` names the update in the log when it fails.
    async fn send_status(&mut self, mut status: serde_json::Value, what: &str) -> bool {
        if let Some(last) = &self.last_status {
            keep_transition_times(&mut status, last);
        }
        if self.last_status.as_ref() == Some(&status) {
            return false;
        }
        let api: Api<Pod> = Api::namespaced(self.k.client.clone(), self.ns());
        let patch = serde_json::json!({"metadata": {"uid": self.entry.uid}, "status": status});
        let t = Instant::now();
        match api
            .patch_status(
                &self.entry.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                timing::lap("status-patch", t);
                self.last_status = Some(status);
                true
            }
            Err(e) => {
                tracing::warn!(pod = %self.entry.name, error = %e, "{what}");
                false
            }
        }
    }

    /// kubelet's eviction manager for this pod: an emptyDir over its `sizeLimit` evicts
    /// the pod (`localStorageEviction`: no grace period).
    async fn housekeeping(&mut self, pod: &Pod) {
        // Only a pod with something running is evicted (not one that finished).
        let active = self.states.values().any(|s| s.current.is_some());
        if self.volumes.limits.is_empty() || !active {
            return;
        }
        let limits = self.volumes.limits.clone();
        let over =
            tokio::task::spawn_blocking(move || volumes::over_limit(&limits, volumes::disk_usage))
                .await
                .ok()
                .flatten();
        if let Some(msg) = over {
            self.evict(pod, msg).await;
        }
    }

    /// Evicts the pod: the `Evicted` event, every container killed at once, and the
    /// Failed status that says why (posted by the caller's loop).
    async fn evict(&mut self, pod: &Pod, msg: String) {
        tracing::info!(pod = %self.entry.name, %msg, "evicting the pod");
        event(&self.k, pod, None, WARNING, "Evicted", msg.clone());
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        for st in self.states.values_mut() {
            let Some(inst) = st.current.take() else {
                continue;
            };
            if let Some(p) = &inst.probes {
                p.abort();
            }
            let _ = self
                .k
                .runtime
                .kill(inst.container.runtime, &inst.container.id, "KILL")
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(10), inst.container.wait()).await;
            if let Some(exit) = inst.container.exit() {
                st.last = Some(terminated(&inst.container, &exit));
            }
            st.ready = false;
            st.done = true;
            st.waiting = None;
            st.not_before = None;
        }
        self.evicted = Some(msg);
    }

    /// Posts the evicted pod's status: phase Failed, reason `Evicted`, the containers
    /// terminated, and the `DisruptionTarget` condition kubelet adds.
    async fn post_evicted_status(&mut self, pod: &Pod, msg: &str) {
        let prev = prev_conditions(pod);
        let mut view = self.view(pod);
        view.sandbox_ready = false;
        // Finished: the phase below is Failed whatever the restart policy says.
        view.restart_policy = "Never".into();
        let mut status = status::build(&view, &prev, Utc::now());
        status::mark_evicted(&mut status, &prev, msg, Utc::now());
        self.send_status(status, "posting the evicted status").await;
    }

    /// Gives the network of a pod that finished for good back (once): its status keeps
    /// the pod IP it had, as kubelet's does.
    async fn release_network(&mut self) {
        if self.network_released {
            return;
        }
        self.network_released = true;
        let sandbox = SandboxState::read(&self.dir);
        orphans::release_network(&self.k, sandbox.as_ref(), &self.entry.uid).await;
        *self.entry.netns.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Stops everything (gracefully when the pod is being deleted through the API),
    /// removes the sandbox, and finalizes the deletion.
    async fn teardown(&mut self, pod: Option<&Pod>, stop: &[String]) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        let grace = pod
            .and_then(|p| {
                p.metadata
                    .deletion_grace_period_seconds
                    .or(p.spec.as_ref()?.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64;
        let deadline = Instant::now() + Duration::from_secs(grace);
        let mut stops = Vec::new();
        for (name, st) in self.states.iter_mut() {
            let Some(inst) = st.current.take() else {
                continue;
            };
            if let Some(p) = &inst.probes {
                p.abort();
            }
            if !stop.contains(name) {
                continue;
            }
            if let Some(pod) = pod {
                event(
                    &self.k,
                    pod,
                    Some(name),
                    NORMAL,
                    "Killing",
                    format!("Stopping container {name}"),
                );
            }
            let spec = pod.and_then(|p| {
                spec_of(p)
                    .containers
                    .into_iter()
                    .chain(spec_of(p).init_containers.unwrap_or_default())
                    .find(|c| &c.name == name)
            });
            let runtime = self.k.runtime.clone();
            let ip = self.ip;
            stops.push(tokio::spawn(async move {
                let ctr = inst.container;
                if let Some(c) = spec {
                    run_pre_stop(&c, ip, &runtime, &ctr, deadline).await;
                }
                let _ = runtime.kill(ctr.runtime, &ctr.id, "TERM").await;
                if tokio::time::timeout_at(deadline.into(), ctr.wait())
                    .await
                    .is_err()
                {
                    let _ = runtime.kill(ctr.runtime, &ctr.id, "KILL").await;
                    let _ = tokio::time::timeout(Duration::from_secs(10), ctr.wait()).await;
                }
            }));
        }
        for s in stops {
            let _ = s.await;
        }
        orphans::cleanup_dir(&self.k, &self.dir, &self.entry.uid).await;
        if let Some(pod) = pod {
            let api: Api<Pod> = Api::namespaced(self.k.client.clone(), self.ns());
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.entry.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = api.delete(&self.entry.name, &dp).await {
                if !matches!(&e, kube::Error::Api(ae) if ae.code == 404 || ae.code == 409) {
                    tracing::warn!(pod = %self.entry.name, error = %e, "finalizing the pod deletion");
                }
            }
            let _ = pod;
        }
    }
}

/// Records an event about the pod, or one of its containers when `container` is set
/// (`involvedObject.fieldPath` `spec.containers{name}`, `spec.initContainers{name}` or
/// `spec.ephemeralContainers{name}`).
fn event(
    k: &Kubelet,
    pod: &Pod,
    container: Option<&str>,
    type_: &str,
    reason: &str,
    message: String,
) {
    let mut involved = skiff_runtime::events::object_ref(pod);
    involved.field_path = container.map(|c| {
        let init = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|ics| ics.iter().any(|ic| ic.name == c));
        let ephemeral = pod.spec.as_ref().is_some_and(|s| plan::is_ephemeral(s, c));
        if init {
            format!("spec.initContainers{{{c}}}")
        } else if ephemeral {
            format!("spec.ephemeralContainers{{{c}}}")
        } else {
            format!("spec.containers{{{c}}}")
        }
    });
    k.events.publish_ref(involved, type_, reason, message);
}

/// kubelet's grace after its own start: an instance that started less than this before
/// the agent did counts as new when it is taken back (`kubeletRestartGracePeriod`).
const RESTART_GRACE_SECONDS: i64 = 10;

/// The container's status as this pod's agent last posted it, if it is about the
/// instance `id`.
fn posted_status<'a>(pod: &'a Pod, name: &str, id: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    let want = format!("skiff://{id}");
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .chain(status.ephemeral_container_statuses.iter().flatten())
        .find(|c| c.name == name && c.container_id.as_deref() == Some(want.as_str()))
}

/// The end of an instance, as its posted status recorded it.
fn posted_termination(c: &ContainerStatus) -> Option<State> {
    c.state.as_ref()?.terminated.as_ref().map(api_terminated)
}

fn api_terminated(t: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> State {
    let time = |v: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        v.as_ref()
            .and_then(|t| status::to_chrono(&t.0))
            .unwrap_or_else(Utc::now)
    };
    State::Terminated {
        exit_code: t.exit_code,
        reason: t.reason.clone().unwrap_or_default(),
        started_at: time(&t.started_at),
        finished_at: time(&t.finished_at),
        container_id: t.container_id.clone().unwrap_or_default(),
    }
}

fn last_id(last: &Option<State>) -> Option<String> {
    match last {
        Some(State::Terminated { container_id, .. }) => Some(container_id.clone()),
        _ => None,
    }
}

fn terminated(c: &Container, exit: &Exit) -> State {
    State::Terminated {
        exit_code: exit.code,
        reason: exit.reason().into(),
        started_at: c.started_at,
        finished_at: exit.finished_at,
        container_id: format!("skiff://{}", c.id),
    }
}

/// The pod's conditions as the API has them.
fn prev_conditions(pod: &Pod) -> Vec<PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn keep_transition_times(status: &mut serde_json::Value, last: &serde_json::Value) {
    let Some(conds) = status["conditions"].as_array_mut() else {
        return;
    };
    for c in conds {
        let same = last["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["type"] == c["type"] && l["status"] == c["status"]);
        if let Some(l) = same {
            c["lastTransitionTime"] = l["lastTransitionTime"].clone();
        }
    }
}

/// How long a postStart hook may run. kubelet sets no limit (its pod worker waits as
/// long as the hook does); skiff bounds it so that a hung hook cannot hold the pod's
/// worker, and so its deletion, forever.
const POST_START_LIMIT: Duration = Duration::from_secs(120);

/// Runs a container's postStart hook; on failure, kubelet's message for the
/// `FailedPostStartHook` event (`pkg/kubelet/lifecycle/handlers.go`).
async fn run_post_start(
    hook: &k8s_openapi::api::core::v1::LifecycleHandler,
    pod: &Pod,
    c: &ContainerSpecK8s,
    ip: IpAddr,
    runtime: &crate::containers::runtime::Runtime,
    ctr: &Container,
) -> Result<(), String> {
    if let Some(s) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(());
    }
    let probe = k8s_openapi::api::core::v1::Probe {
        exec: hook.exec.clone(),
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        timeout_seconds: Some(POST_START_LIMIT.as_secs() as i32),
        ..Default::default()
    };
    let err = match probe::run_once(&probe, c, ip, runtime, ctr).await {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let pod_name = format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    );
    let name = &c.name;
    Err(match (&hook.exec, &hook.http_get) {
        (Some(e), _) => format!(
            "Exec lifecycle hook ([{}]) for Container {name:?} in Pod {pod_name:?} failed - error: {err}, message: \"\"",
            e.command.iter().flatten().cloned().collect::<Vec<_>>().join(" ")
        ),
        (None, Some(h)) => format!(
            "HTTP lifecycle hook ({}) for Container {name:?} in Pod {pod_name:?} failed - error: {err}",
            h.path.as_deref().unwrap_or_default()
        ),
        _ => format!("Cannot run handler: {err}"),
    })
}

async fn run_pre_stop(
    c: &ContainerSpecK8s,
    ip: Option<Ipv4Addr>,
    runtime: &crate::containers::runtime::Runtime,
    ctr: &Container,
    deadline: Instant,
) {
    let Some(pre) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
        return;
    };
    let probe = k8s_openapi::api::core::v1::Probe {
        exec: pre.exec.clone(),
        http_get: pre.http_get.clone(),
        tcp_socket: pre.tcp_socket.clone(),
        timeout_seconds: Some(
            deadline
                .saturating_duration_since(Instant::now())
                .as_secs()
                .max(1) as i32,
        ),
        ..Default::default()
    };
    if let Some(s) = &pre.sleep {
        let _ = tokio::time::timeout_at(
            deadline.into(),
            tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)),
        )
        .await;
        return;
    }
    let ip = IpAddr::V4(ip.unwrap_or(Ipv4Addr::LOCALHOST));
    let _ = tokio::time::timeout_at(
        deadline.into(),
        probe::run_once(&probe, c, ip, runtime, ctr),
    )
    .await;
}
