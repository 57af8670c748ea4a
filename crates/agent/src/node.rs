//! The Node object: registration, status heartbeat, Lease renewal, and waiting for the
//! pod CIDR that the controllers' IPAM assigns.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::AgentConfig;

/// Version skiff's runtime reports in nodeInfo.containerRuntimeVersion.
pub const RUNTIME_VERSION: &str = "skiff://0.1.0";

/// This agent's local-path directory (`<data dir>/storage`), an absolute path.
pub fn local_path_dir(cfg: &AgentConfig) -> std::path::PathBuf {
    let dir = cfg.data_dir.join("storage");
    std::path::absolute(&dir).unwrap_or(dir)
}

/// Makes the local-path directory, 0700 (as the data dir: the volumes under it are
/// 0777 for any container user, so their parent keeps other users of the host out).
pub fn make_local_path_dir(cfg: &AgentConfig) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = local_path_dir(cfg);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// The Node's annotations the agent owns.
pub fn annotations(cfg: &AgentConfig) -> BTreeMap<String, String> {
    BTreeMap::from([(
        skiff_api::names::LOCAL_PATH_DIR_ANNOTATION.to_string(),
        local_path_dir(cfg).to_string_lossy().into_owned(),
    )])
}

/// First non-loopback IPv4 address of this network namespace.
pub fn default_node_ip() -> Option<Ipv4Addr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in().copied()) else {
            continue;
        };
        let ip = sin.ip();
        if !ip.is_loopback() {
            return Some(ip);
        }
    }
    None
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The machine's memory (MemTotal), in KiB: the Node's memory capacity and allocatable.
pub(crate) fn memory_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn disk_kib(path: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks() * s.fragment_size() / 1024)
        .unwrap_or(0)
}

/// Node conditions as the kubelet posts them, all healthy.
pub fn conditions(now: DateTime<Utc>, since: DateTime<Utc>) -> Value {
    let c = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// The Node's status (addresses, capacity, nodeInfo, conditions).
pub fn status(
    cfg: &AgentConfig,
    node_ip: Ipv4Addr,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
) -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let capacity = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", memory_kib()),
        "pods": "110",
        "ephemeral-storage": format!("{}Ki", disk_kib(&cfg.data_dir)),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    });
    let mut conds = conditions(now, since);
    if let Some(arr) = conds.as_array_mut() {
        arr.push(json!({"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated",
            "message": "skiff agent configured the pod network", "lastHeartbeatTime": now, "lastTransitionTime": since}));
    }
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": conds,
        "addresses": [
            {"type": "InternalIP", "address": node_ip.to_string()},
            {"type": "Hostname", "address": cfg.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        "images": images(cfg),
        "nodeInfo": {
            "machineID": read_trim("/etc/machine-id"),
            "systemUUID": read_trim("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": read_trim("/proc/sys/kernel/osrelease"),
            "osImage": os_image(),
            "containerRuntimeVersion": RUNTIME_VERSION,
            "kubeletVersion": skiff_api::defaults::KUBERNETES_VERSION,
            "kubeProxyVersion": skiff_api::defaults::KUBERNETES_VERSION,
            "operatingSystem": "linux",
            "architecture": arch(),
        },
    })
}

/// Most images a Node lists, as kubelet's `--node-status-max-images` default.
const MAX_IMAGES: usize = 50;

/// The Node's `status.images`, as kubelet lists them: the biggest first, each named by
/// its repo digests then its tags; built-in images once made.
fn images(cfg: &AgentConfig) -> Value {
    let mut list: Vec<_> = crate::containers::images::list(&cfg.data_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.size > 0)
        .collect();
    list.sort_by_key(|i| std::cmp::Reverse(i.size));
    Value::Array(
        list.into_iter()
            .take(MAX_IMAGES)
            .map(|i| {
                let names: Vec<String> = i.repo_digests.into_iter().chain(i.repo_tags).collect();
                json!({"names": names, "sizeBytes": i.size})
            })
            .collect(),
    )
}

/// The Node's labels.
pub fn labels(cfg: &AgentConfig) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(
        skiff_api::names::HOSTNAME_LABEL.to_string(),
        cfg.node_name.clone(),
    );
    l.insert("kubernetes.io/os".to_string(), "linux".to_string());
    l.insert("kubernetes.io/arch".to_string(), arch().to_string());
    l.insert("beta.kubernetes.io/os".to_string(), "linux".to_string());
    l.insert("beta.kubernetes.io/arch".to_string(), arch().to_string());
    l.extend(cfg.node_labels.clone());
    l
}

/// Creates the Node (or takes over an existing one) and posts its first status.
///
/// `pod_cidr` is the block this agent's pods already have addresses in, when it
/// registers again after its Node was deleted: the new Node asks for the same block
/// (the IPAM controller keeps a block a Node names), so the pods keep their addresses
/// and the other nodes' routes to them stay right.
pub async fn register(
    client: &Client,
    cfg: &AgentConfig,
    node_ip: Ipv4Addr,
    since: DateTime<Utc>,
    pod_cidr: Option<&str>,
) -> Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut spec = json!({"taints": cfg.register_with_taints});
    if let Some(cidr) = pod_cidr {
        spec["podCIDR"] = json!(cidr);
        spec["podCIDRs"] = json!([cidr]);
    }
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.node_name, "labels": labels(cfg), "annotations": annotations(cfg)},
        "spec": spec,
        "status": status(cfg, node_ip, Utc::now(), since),
    }))
    .context("building the Node")?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Registered before (agent restart): refresh our labels and annotations,
            // keep the rest.
            let meta =
                json!({"metadata": {"labels": labels(cfg), "annotations": annotations(cfg)}});
            nodes
                .patch(&cfg.node_name, &PatchParams::default(), &Patch::Merge(meta))
                .await
                .context("updating the existing Node's labels and annotations")?;
        }
        Err(e) => return Err(e).context("creating the Node"),
    }
    post_status(client, cfg, node_ip, since).await
}

/// Posts the Node status (the heartbeat).
pub async fn post_status(
    client: &Client,
    cfg: &AgentConfig,
    node_ip: Ipv4Addr,
    since: DateTime<Utc>,
) -> Result<Node> {
    patch_status(client, cfg, status(cfg, node_ip, Utc::now(), since)).await
}

async fn patch_status(client: &Client, cfg: &AgentConfig, status: Value) -> Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &cfg.node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .context("posting the Node status")
}

/// How often the status is posted when nothing in it changed (kubelet's
/// `nodeStatusReportFrequency`): the Lease is the heartbeat, so an unchanged status
/// every 10 s would only be a write fanned out to every Node watcher (the scheduler, the
/// controllers, each node's proxy), 100 a second with a thousand nodes.
pub const STATUS_REPORT_PERIOD: Duration = Duration::from_secs(300);

/// A status without its heartbeat times: what tells whether it changed.
fn without_heartbeats(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(conds) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastHeartbeatTime");
            }
        }
    }
    s
}

/// Whether a status must be posted: it changed since `last` (as [`without_heartbeats`]
/// sees it, when it was posted) or the report period has passed.
fn status_due(last: Option<&(Value, std::time::Instant)>, key: &Value) -> bool {
    last.is_none_or(|(prev, at)| prev != key || at.elapsed() >= STATUS_REPORT_PERIOD)
}

/// Renews the node's Lease in kube-node-lease (creating it the first time). The owner
/// reference names the current Node, so a Node registered again takes its Lease over
/// instead of leaving it to the garbage collector.
pub async fn renew_lease(client: &Client, node: &Node) -> Result<()> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let owners = json!([{
        "apiVersion": "v1", "kind": "Node", "name": name,
        "uid": node.metadata.uid.clone().unwrap_or_default()}]);
    let patch = json!({
        "metadata": {"ownerReferences": owners},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
    });
    match leases
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": owners},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
            }))?;
            leases
                .create(&PostParams::default(), &lease)
                .await
                .context("creating the node Lease")?;
            Ok(())
        }
        Err(e) => Err(e).context("renewing the node Lease"),
    }
}

/// Whether an error is the API's 404: the object does not exist.
fn not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<kube::Error>(),
            Some(kube::Error::Api(ae)) if ae.code == 404
        )
    })
}

/// The Node as kubelet's events name it: an involvedObject whose uid is the node's
/// name, which `kubectl describe node` looks for.
pub fn node_ref(node_name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("Node".into()),
        name: Some(node_name.to_string()),
        uid: Some(node_name.to_string()),
        ..Default::default()
    }
}

/// Records the events kubelet records when it starts on its node (`Starting`, the node's
/// conditions, `NodeReady`), about the node as kubelet names it: an involvedObject
/// whose uid is the node's name, which `kubectl describe node` looks for.
pub fn record_start(events: &skiff_runtime::events::Recorder, node_name: &str) {
    let node_ref = node_ref(node_name);
    let normal = |reason: &str, message: String| {
        events.publish_ref(node_ref.clone(), "Normal", reason, message);
    };
    normal("Starting", "Starting kubelet.".into());
    normal(
        "NodeAllocatableEnforced",
        "Updated Node Allocatable limit across pods".into(),
    );
    for reason in [
        "NodeHasSufficientMemory",
        "NodeHasNoDiskPressure",
        "NodeHasSufficientPID",
        "NodeReady",
    ] {
        normal(reason, format!("Node {node_name} status is now: {reason}"));
    }
}

/// Heartbeats forever: status and Lease every 10 s. When the Node is deleted through
/// the API (seen at once by a watch on it, or by a status update answered 404), the agent
/// registers it again as it did at start, with the pod CIDR its pods use (`pod_cidr`),
/// as kubelet's registration loop does when its Node is not found.
pub async fn heartbeat(
    client: Client,
    cfg: AgentConfig,
    node_ip: Ipv4Addr,
    since: DateTime<Utc>,
    mut node: Node,
    pod_cidr: tokio::sync::watch::Receiver<Option<String>>,
) {
    let period = Duration::from_secs(skiff_api::defaults::NODE_LEASE_RENEW_SECONDS);
    let deleted = Arc::new(Notify::new());
    let watcher = tokio::spawn(watch_deletion(
        client.clone(),
        cfg.node_name.clone(),
        deleted.clone(),
    ));
    let _stop_watcher = AbortOnDrop(watcher);
    // What was last posted (registration posted the first), and when.
    let mut reported: Option<(Value, std::time::Instant)> = Some((
        without_heartbeats(&status(&cfg, node_ip, Utc::now(), since)),
        std::time::Instant::now(),
    ));
    loop {
        if let Err(e) = renew_lease(&client, &node).await {
            tracing::warn!(error = %format!("{e:#}"), "lease renewal failed");
        }
        // Woken early: the Node was deleted, or someone else (the node lifecycle
        // controller) changed its Ready condition: post at once, changed or not.
        let woken = tokio::select! {
            _ = tokio::time::sleep(period) => false,
            _ = deleted.notified() => true,
        };
        let current = status(&cfg, node_ip, Utc::now(), since);
        let key = without_heartbeats(&current);
        if !woken && !status_due(reported.as_ref(), &key) {
            continue;
        }
        match patch_status(&client, &cfg, current).await {
            Ok(n) => {
                node = n;
                reported = Some((key, std::time::Instant::now()));
            }
            Err(e) if not_found(&e) => {
                let cidr = pod_cidr.borrow().clone();
                match register(&client, &cfg, node_ip, since, cidr.as_deref()).await {
                    Ok(n) => {
                        tracing::info!(node = %cfg.node_name, pod_cidr = ?cidr, "the Node was deleted; registered it again");
                        node = n;
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "registering the deleted Node again");
                        // Soon again, not a whole period later.
                        deleted.notify_one();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "node status update failed"),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches this node's Node object and wakes `deleted` when it is deleted (or found
/// missing when the watch starts over), so the heartbeat registers it again at once, or
/// when its Ready condition is not True, so the heartbeat posts its status at once.
async fn watch_deletion(client: Client, name: String, deleted: Arc<Notify>) {
    let nodes: Api<Node> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(nodes, config).default_backoff().boxed();
    let mut seen = false;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => seen = false,
            Ok(watcher::Event::InitApply(n)) | Ok(watcher::Event::Apply(n)) => {
                seen = true;
                // The status is only posted when it changes: one marked not Ready by
                // someone else must be put right now, not at the next report.
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                    .map(|c| c.status.as_str());
                if ready.is_some_and(|r| r != "True") {
                    deleted.notify_one();
                }
            }
            Ok(watcher::Event::InitDone) => {
                if !seen {
                    deleted.notify_one();
                }
            }
            Ok(watcher::Event::Delete(_)) => {
                seen = false;
                deleted.notify_one();
            }
            Err(e) => tracing::debug!(error = %e, "watching this Node"),
        }
    }
}

/// Waits until the Node has spec.podCIDR, watching it (the IPAM controller sets it right
/// after registration; polling added up to a period to every node's start).
pub async fn wait_pod_cidr(client: &Client, name: &str) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    let cidr_of = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
    };
    loop {
        let has_cidr = |n: Option<&Node>| n.and_then(cidr_of).is_some();
        match kube::runtime::wait::await_condition(nodes.clone(), name, has_cidr).await {
            Ok(Some(n)) => {
                if let Some(cidr) = cidr_of(&n) {
                    return cidr;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "watching the Node for its pod CIDR"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Turns on forwarding and bridge netfilter in this netns, as pod networking and the
/// proxy's rules need.
pub fn enable_forwarding() {
    for (path, what) in [
        ("/proc/sys/net/ipv4/ip_forward", "IP forwarding"),
        (
            "/proc/sys/net/bridge/bridge-nf-call-iptables",
            "bridge netfilter",
        ),
    ] {
        if let Err(e) = std::fs::write(path, "1") {
            tracing::warn!(error = %e, "cannot enable {what} ({path})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_status_waits_for_the_report_period_a_changed_one_does_not() {
        let since = Utc::now() - chrono::Duration::seconds(60);
        let at = |t: DateTime<Utc>| {
            json!({
                "conditions": conditions(t, since),
                "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
            })
        };
        let t0 = Utc::now();
        let first = without_heartbeats(&at(t0));
        let later = at(t0 + chrono::Duration::seconds(10));
        let now = std::time::Instant::now();
        let reported = (first.clone(), now);
        // Only the heartbeat times moved: not due.
        assert_ne!(at(t0), later);
        assert!(!status_due(Some(&reported), &without_heartbeats(&later)));
        // Never posted, or something else changed: due.
        assert!(status_due(None, &first));
        let mut changed = without_heartbeats(&later);
        changed["addresses"][0]["address"] = "10.0.0.3".into();
        assert!(status_due(Some(&reported), &changed));
        // The report period passed.
        let old = (first.clone(), now - STATUS_REPORT_PERIOD);
        assert!(status_due(Some(&old), &first));
    }
}
