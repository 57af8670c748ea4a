//! `up`, `down` and `node exec`.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};

use ipnet::Ipv4Net;

use crate::hostnet::{self, Firewall};
use crate::layout::{self, ClusterState, HostLink, NodeState, ProcessState};
use crate::progress::Progress;
use crate::{kubeconfig, netns, process};

/// Builds the admin kubeconfig from the server's data dir, for a server URL, with cluster,
/// user and context all named by the given name.
pub type AdminKubeconfigFn = dyn Fn(&Path, &str, &str) -> anyhow::Result<String> + Send + Sync;

/// Removes what a stopped agent left on the machine (containers, mounts, pod namespaces,
/// cgroups), given its data dir, node name and pod netns prefix.
pub type CleanupNodeFn = dyn Fn(&Path, &str, &str) -> anyhow::Result<()> + Send + Sync;

/// What the binary lends to this crate, so that it need not depend on the API server or
/// the agent.
pub struct Hooks {
    /// See [`AdminKubeconfigFn`].
    pub admin_kubeconfig: Box<AdminKubeconfigFn>,
    /// See [`CleanupNodeFn`].
    pub cleanup_node: Box<CleanupNodeFn>,
}

/// Options of `skiff up`.
pub struct UpOptions {
    /// Cluster name.
    pub name: String,
    /// Number of nodes, control plane included.
    pub nodes: usize,
    /// Number of nodes that run a server (1, or several on an etcd cluster).
    pub servers: usize,
    /// The skiff binary to run the server and agents with.
    pub skiff_binary: PathBuf,
    /// How long to wait for nodes to be Ready and DNS to be available.
    pub timeout: Duration,
    /// Extra arguments for every agent (e.g. `--proxy-mode nftables`).
    pub agent_args: Vec<String>,
    /// Extra arguments for the server (e.g. `--node-monitor-grace-period 15`).
    pub server_args: Vec<String>,
    /// The LAN's subnet (`--subnet`); none: the first of [`layout::candidate_lans`] that
    /// collides with no route or address of the host and no other cluster.
    pub subnet: Option<Ipv4Net>,
    /// No link to the host (`--isolated`): node IPs unreachable from it, no way out.
    pub isolated: bool,
    /// Which firewall gets the host's rules; none: [`Firewall::detect`].
    pub firewall: Option<Firewall>,
    /// Ports on the host's loopback forwarded to a node port: `(host port, node port)`.
    pub ports: Vec<(u16, u16)>,
    /// Hollow nodes (`skiff agent --hollow N`) run beside the real ones, in the
    /// control-plane node's namespace: Nodes `<cluster>-hollow-<i>` for density tests.
    pub hollow_nodes: usize,
}

/// Most hollow nodes `up` runs: the pod network (10.244.0.0/16) split into /29 blocks.
pub const MAX_HOLLOW_NODES: usize = 8192;

/// The node CIDR mask that gives `total` nodes a block each out of the /16 pod network
/// (none: the default /24 is enough).
pub fn node_cidr_mask_for(total: usize) -> Option<u8> {
    let bits = usize::BITS - total.saturating_sub(1).leading_zeros();
    (bits > 8).then(|| 16 + bits as u8)
}

/// Brings a local cluster up and returns once every node is Ready and `coredns` is
/// available. Prints how long that took.
pub async fn up(opts: UpOptions, hooks: &Hooks) -> anyhow::Result<ClusterState> {
    let started = Instant::now();
    layout::validate_name(&opts.name)?;
    if let Some(subnet) = opts.subnet {
        layout::check_lan(subnet, opts.nodes)?;
    }
    anyhow::ensure!(
        (1..=200).contains(&opts.nodes),
        "--nodes must be between 1 and 200"
    );
    anyhow::ensure!(
        opts.hollow_nodes + opts.nodes <= MAX_HOLLOW_NODES,
        "--hollow-nodes and --nodes together must be at most {MAX_HOLLOW_NODES}"
    );
    anyhow::ensure!(
        (1..=opts.nodes.min(7)).contains(&opts.servers),
        "--servers must be between 1 and 7, and at most --nodes"
    );
    if let Ok(state) = ClusterState::load(&opts.name) {
        let running = process::alive(state.server_pid)
            && state.nodes.iter().all(|n| process::alive(n.agent_pid))
            && state.extra.iter().all(|p| process::alive(p.pid));
        if running {
            let have = state.nodes.len();
            if opts.nodes > have {
                return grow(state, &opts, hooks, started).await;
            }
            if opts.nodes < have {
                bail!(
                    "cluster {:?} has {have} nodes: skiff up adds nodes but does not remove them (--nodes {} is fewer; skiff down --cluster {} removes the cluster)",
                    opts.name,
                    opts.nodes,
                    opts.name
                );
            }
            bail!(
                "cluster {:?} already exists (skiff down --cluster {} removes it)",
                opts.name,
                opts.name
            );
        }
        let intact = !state.server_args.is_empty()
            && state.nodes.iter().all(|n| netns::path(&n.netns).exists());
        if intact {
            // A cluster made by an older version had world-readable files.
            crate::files::secure_cluster_dir(&ClusterState::dir(&opts.name))?;
            return restart(state, &opts, hooks, started).await;
        }
    }
    // Whatever a crashed earlier cluster of this name left behind goes first.
    cleanup(&opts.name, hooks);

    let mut progress = Progress::new();
    match start(&opts, hooks, &mut progress).await {
        Ok(state) => {
            progress.done();
            let context = kubeconfig::context_name(&opts.name);
            let admin = (hooks.admin_kubeconfig)(
                &ClusterState::server_dir(&opts.name),
                &state.host_url(),
                &context,
            )?;
            let path = kubeconfig::merge(&admin)?;
            println!(
                "Cluster \"{}\" is ready: {} node(s) in {:.2}s. kubectl context \"{}\" (in {}), API at {}",
                opts.name,
                opts.nodes,
                started.elapsed().as_secs_f64(),
                context,
                path.display(),
                state.host_url()
            );
            Ok(state)
        }
        Err(e) => {
            let phase = progress.failed().unwrap_or_default();
            let dir = ClusterState::dir(&opts.name);
            let logs = tail_logs(&dir);
            let kept = keep_logs(&opts.name, &dir)
                .map(|d| format!(" (logs kept in {})", d.display()))
                .unwrap_or_default();
            cleanup(&opts.name, hooks);
            Err(e.context(format!(
                "bringing cluster {:?} up failed at \"{phase}\"{kept}{logs}",
                opts.name
            )))
        }
    }
}

/// Copies a failed cluster's logs out of its directory (which goes with it) to a
/// directory under the system's temporary one, and returns that (none: no logs yet).
fn keep_logs(name: &str, dir: &Path) -> Option<PathBuf> {
    let kept = std::env::temp_dir().join(format!("skiff-up-{name}"));
    let _ = std::fs::remove_dir_all(&kept);
    let mut any = false;
    let nodes = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for node in nodes.filter(|e| e.path().is_dir()) {
        for log in ["server.log", "agent.log", "etcd.log"] {
            let from = node.path().join(log);
            if from.exists() {
                let _ = crate::files::private_dir(&kept);
                let to = kept.join(format!("{}-{log}", node.file_name().to_string_lossy()));
                any |= std::fs::copy(&from, &to).is_ok();
            }
        }
    }
    any.then_some(kept)
}

/// The file under the cluster's directory that reserves its LAN from the moment `up`
/// chose it (the state file comes later).
const LAN_FILE: &str = "lan";

/// Locks what clusters share on the host (LAN choices, forwarding, iptables tables) until
/// the returned file is dropped: clusters coming up at the same time choose different
/// LANs, and one going down does not put forwarding back under one coming up.
fn lock_host() -> anyhow::Result<std::fs::File> {
    let root = Path::new(crate::CLUSTERS_DIR);
    crate::files::private_dir(root)?;
    let lock = std::fs::File::create(root.join(".host.lock")).context("opening the host lock")?;
    lock.lock().context("locking the host lock")?;
    Ok(lock)
}

/// Chooses the cluster's LAN (or checks `--subnet`) and reserves it (under
/// [`lock_host`]).
fn reserve_lan(name: &str, subnet: Option<Ipv4Net>) -> anyhow::Result<Ipv4Net> {
    let root = Path::new(crate::CLUSTERS_DIR);
    let mut others = Vec::new();
    for entry in std::fs::read_dir(root)?.flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        if other == name || !entry.path().is_dir() {
            continue;
        }
        let lan = std::fs::read_to_string(entry.path().join(LAN_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<Ipv4Net>().ok())
            .or_else(|| ClusterState::load(&other).ok().map(|s| s.lan));
        others.extend(lan.map(|l| (other, l)));
    }
    let host = netns::host_networks()?;
    let lan = match subnet {
        Some(lan) => {
            if let Some((other, _)) = others.iter().find(|(_, l)| layout::overlaps(*l, lan)) {
                bail!("--subnet {lan} overlaps the LAN of cluster {other:?}");
            }
            if let Some(net) = host.iter().find(|n| layout::overlaps(**n, lan)) {
                bail!(
                    "--subnet {lan} overlaps {net}, which the host routes or holds an address in"
                );
            }
            lan
        }
        None => {
            let mut taken = host;
            taken.extend(others.iter().map(|(_, l)| *l));
            layout::choose_lan(&taken).context(
                "no free subnet for the cluster's LAN in 172.18.0.0-172.31.255.0/24 or 192.168.0.0/16 (give one with --subnet)",
            )?
        }
    };
    let dir = ClusterState::dir(name);
    crate::files::private_dir(&dir)?;
    crate::files::write_private(&dir.join(LAN_FILE), lan.to_string().as_bytes())?;
    Ok(lan)
}

/// Links the host to the cluster's LAN and adds its rules; what it added.
fn link_host(name: &str, lan: Ipv4Net, fw: Firewall) -> anyhow::Result<HostLink> {
    let link = layout::host_link(name);
    netns::link_host(
        &layout::lan_netns(name),
        &link,
        layout::lan_gateway(lan),
        lan.prefix_len(),
    )?;
    hostnet::enable_forwarding()?;
    hostnet::add(name, lan, &link, fw)?;
    Ok(HostLink {
        link,
        firewall: fw.name().to_string(),
    })
}

/// Makes node `node` (the `i`-th) on the cluster's LAN: its namespace, and with a host
/// link the masquerade of its pods' outbound traffic.
fn make_node(
    name: &str,
    node: &str,
    i: usize,
    lan: Ipv4Net,
    host: Option<&HostLink>,
) -> anyhow::Result<()> {
    let ns = layout::node_netns(name, node);
    netns::create_node(
        &layout::lan_netns(name),
        &ns,
        i,
        layout::node_ip(lan, i),
        lan.prefix_len(),
        layout::lan_gateway(lan),
    )?;
    if let Some(h) = host {
        hostnet::add_node(&ns, lan, Firewall::parse(&h.firewall)?)
            .with_context(|| format!("on node {node}"))?;
    }
    crate::files::private_dir(&ClusterState::dir(name).join(node))
}

async fn start(
    opts: &UpOptions,
    hooks: &Hooks,
    progress: &mut Progress,
) -> anyhow::Result<ClusterState> {
    let name = &opts.name;
    let dir = ClusterState::dir(name);
    crate::files::private_dir(&dir)?;
    progress.log_to(&dir.join("up.log"));

    progress.phase("Preparing the network");
    let host_lock = lock_host()?;
    let lan_net = reserve_lan(name, opts.subnet)?;
    anyhow::ensure!(
        layout::lan_capacity(lan_net) >= opts.nodes,
        "the cluster's LAN {lan_net} holds {} nodes",
        layout::lan_capacity(lan_net)
    );
    let lan = layout::lan_netns(name);
    // With a host link the host holds the gateway; the LAN namespace keeps an address of
    // its own to reach the nodes from (the API balancer, the port forwarders).
    let lan_addr = if opts.isolated {
        layout::lan_gateway(lan_net)
    } else {
        layout::bridge_ip(lan_net)
    };
    netns::create_lan(&lan, lan_addr, lan_net.prefix_len())?;
    let host = if opts.isolated {
        None
    } else {
        let fw = opts.firewall.unwrap_or_else(Firewall::detect);
        Some(link_host(name, lan_net, fw)?)
    };
    drop(host_lock);
    let servers = opts.servers.clamp(1, opts.nodes);
    let names = layout::node_names_with_servers(opts.nodes, servers);
    for (i, node) in names.iter().enumerate() {
        make_node(name, node, i, lan_net, host.as_ref())?;
    }
    for (host_port, _) in &opts.ports {
        TcpListener::bind(("127.0.0.1", *host_port))
            .with_context(|| format!("--port {host_port}: 127.0.0.1:{host_port} is in use"))?;
    }
    progress.phase("Starting the control plane");

    let api_port = free_loopback_port()?;
    let mut extra = Vec::new();
    // Several servers share an etcd cluster, one member on each server node.
    let datastore = if servers > 1 {
        for (i, node) in names[..servers].iter().enumerate() {
            extra.push(spawn_extra(
                opts,
                "etcd",
                node,
                etcd_args(name, lan_net, &names[..servers], i),
                dir.join(node).join("etcd.log"),
            )?);
        }
        let members: Vec<String> = (0..servers)
            .map(|i| format!("{}:{ETCD_CLIENT_PORT}", layout::node_ip(lan_net, i)))
            .collect();
        Some(format!("etcd://{}", members.join(",")))
    } else {
        None
    };
    let server_args = |i: usize, node: &str| {
        let mut args = vec![
            "--netns".to_string(),
            netns::path(&layout::node_netns(name, node))
                .display()
                .to_string(),
            "server".into(),
            "--data-dir".into(),
            ClusterState::server_dir_on(name, node)
                .display()
                .to_string(),
            "--bind".into(),
            format!("0.0.0.0:{}", skiff_api::defaults::API_SERVER_PORT),
            "--advertise-address".into(),
            layout::node_ip(lan_net, i).to_string(),
        ];
        match &datastore {
            Some(ds) => args.extend(["--datastore".to_string(), ds.clone()]),
            // One server: the host reaches it through a loopback listener of its own.
            None => args.extend(["--host-listen".to_string(), format!("127.0.0.1:{api_port}")]),
        }
        if let Some(mask) = node_cidr_mask_for(opts.nodes + opts.hollow_nodes) {
            args.extend(["--node-cidr-mask-size".to_string(), mask.to_string()]);
        }
        args.extend(opts.server_args.iter().cloned());
        args
    };
    let server_urls: Vec<String> = (0..servers)
        .map(|i| {
            format!(
                "https://{}:{}",
                layout::node_ip(lan_net, i),
                skiff_api::defaults::API_SERVER_PORT
            )
        })
        .collect();
    let first_args = server_args(0, &names[0]);
    let server_log = dir.join(layout::CONTROL_PLANE_NODE).join("server.log");
    let server_pid = process::spawn_detached(&opts.skiff_binary, &first_args, &server_log)?;
    if servers > 1 {
        // The host reaches the servers through a balancer in the LAN namespace.
        let args = vec![
            "--netns".to_string(),
            netns::path(&lan).display().to_string(),
            "lb".into(),
            "--host-listen".into(),
            format!("127.0.0.1:{api_port}"),
            "--server".into(),
            server_urls.join(","),
        ];
        extra.push(spawn_extra(opts, "lb", "lan", args, dir.join("lb.log"))?);
    }
    for (host_port, node_port) in &opts.ports {
        let args = port_args(name, lan_net, opts.nodes, *host_port, *node_port);
        let log = dir.join(format!("port-{host_port}.log"));
        extra.push(spawn_extra(opts, "port", "lan", args, log)?);
    }
    let mut state = ClusterState {
        name: name.clone(),
        api_port,
        server_pid,
        server_args: first_args,
        nodes: Vec::new(),
        lan: lan_net,
        host,
        extra,
    };
    state.save()?;

    let deadline = Instant::now() + opts.timeout;
    let client = wait_for_api(&state, hooks, deadline).await?;
    // The other servers join once the first has put the cluster's secrets in etcd.
    for (i, node) in names.iter().enumerate().take(servers).skip(1) {
        let log = dir.join(node).join("server.log");
        let p = spawn_extra(opts, "server", node, server_args(i, node), log)?;
        state.extra.push(p);
    }

    progress.phase("Starting the nodes");
    let urls = server_urls.join(",");
    for (i, node) in names.iter().enumerate() {
        start_agent(opts, &mut state, node, i, i < servers, &urls)?;
    }
    state.save()?;
    wait_until_ready(&state, &client, deadline, Some(&mut *progress)).await?;
    if opts.hollow_nodes > 0 {
        // After cluster DNS is placed, so that its pods run on real nodes.
        progress.phase("Starting the hollow nodes");
        let cp = layout::CONTROL_PLANE_NODE;
        let args = hollow_args(opts, state.lan, &urls);
        let log = dir.join(cp).join("hollow.log");
        state
            .extra
            .push(spawn_extra(opts, HOLLOW_ROLE, cp, args, log)?);
        state.save()?;
        let want = state.nodes.len() + opts.hollow_nodes;
        wait_until(deadline, "every hollow node to be Ready", || {
            let client = client.clone();
            async move { Ok(ready_nodes(&client).await? == want) }
        })
        .await?;
    }
    Ok(state)
}

/// Arguments of the skiff binary that forward `127.0.0.1:<host_port>` on the host to
/// `node_port` on the first of the `nodes` nodes that answers (`skiff lb` in the LAN's
/// namespace, so `--isolated` clusters have them too and `down` ends them).
fn port_args(
    name: &str,
    lan: Ipv4Net,
    nodes: usize,
    host_port: u16,
    node_port: u16,
) -> Vec<String> {
    let targets: Vec<String> = (0..nodes)
        .map(|i| format!("{}:{node_port}", layout::node_ip(lan, i)))
        .collect();
    vec![
        "--netns".to_string(),
        netns::path(&layout::lan_netns(name)).display().to_string(),
        "lb".into(),
        "--host-listen".into(),
        format!("127.0.0.1:{host_port}"),
        "--server".into(),
        targets.join(","),
        "--label".into(),
        format!("port forwarder 127.0.0.1:{host_port} to node port {node_port}"),
    ]
}

/// The role of the hollow nodes' process among a cluster's extra processes.
const HOLLOW_ROLE: &str = "hollow";

/// The arguments of the hollow nodes' process: `skiff agent --hollow N` in the
/// control-plane node's namespace, with that node's IP as every hollow node's.
fn hollow_args(opts: &UpOptions, lan: Ipv4Net, servers: &str) -> Vec<String> {
    let name = &opts.name;
    let cp = layout::CONTROL_PLANE_NODE;
    let server_dir = ClusterState::server_dir(name);
    vec![
        "--netns".to_string(),
        netns::path(&layout::node_netns(name, cp))
            .display()
            .to_string(),
        "agent".into(),
        "--hollow".into(),
        opts.hollow_nodes.to_string(),
        "--server".into(),
        servers.to_string(),
        "--token-file".into(),
        server_dir.join("token").display().to_string(),
        "--ca-file".into(),
        server_dir.join("pki").join("ca.crt").display().to_string(),
        "--node-name".into(),
        format!("{name}-hollow"),
        "--node-ip".into(),
        layout::node_ip(lan, 0).to_string(),
        "--data-dir".into(),
        ClusterState::dir(name).join("hollow").display().to_string(),
    ]
}

/// How many hollow nodes the cluster's hollow process runs (0: none).
fn hollow_count(state: &ClusterState) -> usize {
    state
        .extra
        .iter()
        .filter(|p| p.role == HOLLOW_ROLE)
        .filter_map(|p| {
            let i = p.args.iter().position(|a| a == "--hollow")?;
            p.args.get(i + 1)?.parse::<usize>().ok()
        })
        .sum()
}

/// Starts node `node`'s (the `i`-th) agent, joining the servers at `urls`, and records it
/// in `state` (not yet saved).
fn start_agent(
    opts: &UpOptions,
    state: &mut ClusterState,
    node: &str,
    i: usize,
    server: bool,
    urls: &str,
) -> anyhow::Result<()> {
    let args = agent_args(opts, state.lan, node, i, server, urls);
    let log = ClusterState::dir(&state.name).join(node).join("agent.log");
    let agent_pid = process::spawn_detached(&opts.skiff_binary, &args, &log)?;
    state.nodes.push(NodeState {
        name: node.to_string(),
        ip: layout::node_ip(state.lan, i),
        netns: layout::node_netns(&state.name, node),
        agent_pid,
        agent_args: args,
    });
    Ok(())
}

/// The arguments of node `node`'s (the `i`-th) agent, joining the servers at `servers`
/// (comma-separated URLs).
fn agent_args(
    opts: &UpOptions,
    lan: Ipv4Net,
    node: &str,
    i: usize,
    control_plane: bool,
    servers: &str,
) -> Vec<String> {
    let name = &opts.name;
    let server_dir = ClusterState::server_dir(name);
    let mut args = vec![
        "--netns".to_string(),
        netns::path(&layout::node_netns(name, node))
            .display()
            .to_string(),
        "agent".into(),
        "--server".into(),
        servers.to_string(),
        "--token-file".into(),
        server_dir.join("token").display().to_string(),
        "--ca-file".into(),
        server_dir.join("pki").join("ca.crt").display().to_string(),
        "--node-name".into(),
        node.to_string(),
        "--node-ip".into(),
        layout::node_ip(lan, i).to_string(),
        "--data-dir".into(),
        ClusterState::agent_dir(name, node).display().to_string(),
        "--netns-prefix".into(),
        layout::pod_netns_prefix(name, node),
    ];
    if control_plane {
        args.push("--control-plane".into());
    }
    let gateway = layout::lan_gateway(lan);
    let mut mirror = false;
    for a in &opts.agent_args {
        args.push(if mirror {
            loopback_to(a, gateway)
        } else {
            a.clone()
        });
        mirror = a == "--registry-mirror";
    }
    args
}

/// A `--registry-mirror REGISTRY=URL` as the nodes reach it: a URL on the host's
/// loopback (`127.0.0.1`, `localhost`) names the host, which the nodes reach at their
/// LAN's gateway.
fn loopback_to(mirror: &str, gateway: std::net::Ipv4Addr) -> String {
    let Some((registry, url)) = mirror.split_once('=') else {
        return mirror.to_string();
    };
    for host in ["127.0.0.1", "localhost"] {
        for scheme in ["http://", "https://"] {
            let prefix = format!("{scheme}{host}");
            if let Some(rest) = url.strip_prefix(&prefix) {
                if rest.is_empty() || rest.starts_with(':') || rest.starts_with('/') {
                    return format!("{registry}={scheme}{gateway}{rest}");
                }
            }
        }
    }
    mirror.to_string()
}

/// Adds nodes to a running cluster up to `opts.nodes` (`skiff up --nodes N` of a
/// smaller cluster): a network namespace and an agent each, named and addressed as
/// `start` would have made them; the servers stay as they are.
async fn grow(
    mut state: ClusterState,
    opts: &UpOptions,
    hooks: &Hooks,
    started: Instant,
) -> anyhow::Result<ClusterState> {
    let name = &opts.name;
    let deadline = Instant::now() + opts.timeout;
    let servers = state
        .nodes
        .iter()
        .filter(|n| n.agent_args.iter().any(|a| a == "--control-plane"))
        .count()
        .max(1);
    // The servers the agents join, as the first agent was told.
    let urls = state.nodes[0]
        .agent_args
        .iter()
        .skip_while(|a| *a != "--server")
        .nth(1)
        .cloned()
        .context("the first agent's --server")?;
    let names = layout::node_names_with_servers(opts.nodes, servers);
    let have = state.nodes.len();
    anyhow::ensure!(
        layout::lan_capacity(state.lan) >= opts.nodes,
        "the cluster's LAN {} holds {} nodes",
        state.lan,
        layout::lan_capacity(state.lan)
    );
    for (i, node) in names.iter().enumerate().skip(have) {
        make_node(name, node, i, state.lan, state.host.as_ref())?;
        start_agent(opts, &mut state, node, i, false, &urls)?;
        state.save()?;
    }
    retarget_ports(&mut state, opts)?;
    state.save()?;
    let client = wait_for_api(&state, hooks, deadline).await?;
    wait_until_ready(&state, &client, deadline, None).await?;
    println!(
        "Cluster \"{}\" now has {} node(s) (added {}) in {:.2}s, API at {}",
        state.name,
        state.nodes.len(),
        state.nodes.len() - have,
        started.elapsed().as_secs_f64(),
        state.host_url()
    );
    Ok(state)
}

/// Starts the `--port` forwarders of `state` again over all its nodes (after nodes were
/// added), so a port still answers while any node does.
fn retarget_ports(state: &mut ClusterState, opts: &UpOptions) -> anyhow::Result<()> {
    for p in state.extra.iter_mut().filter(|p| p.role == "port") {
        let Some((host_port, node_port)) = forwarded_ports(&p.args) else {
            continue;
        };
        // The old forwarder holds the host port: it must be gone before the new one binds.
        process::stop_all(&[p.pid], Duration::from_secs(2));
        let args = port_args(
            &state.name,
            state.lan,
            state.nodes.len(),
            host_port,
            node_port,
        );
        *p = spawn_extra(opts, "port", "lan", args, p.log.clone())?;
    }
    Ok(())
}

/// The host port and node port a forwarder made by [`port_args`] serves.
fn forwarded_ports(args: &[String]) -> Option<(u16, u16)> {
    let value = |flag: &str| {
        args.iter()
            .skip_while(|a| *a != flag)
            .nth(1)
            .map(String::as_str)
    };
    let host_port = value("--host-listen")?.rsplit(':').next()?.parse().ok()?;
    let first = value("--server")?.split(',').next()?;
    let node_port = first.rsplit(':').next()?.parse().ok()?;
    Some((host_port, node_port))
}

/// etcd's client port.
const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port.
const ETCD_PEER_PORT: u16 = 2380;

/// Arguments of the skiff binary that run etcd member `i` of the server nodes `servers`
/// on its node (`skiff node exec` enters the node's namespace and becomes etcd).
fn etcd_args(cluster: &str, lan: Ipv4Net, servers: &[String], i: usize) -> Vec<String> {
    let ip = layout::node_ip(lan, i);
    let members: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(j, n)| format!("{n}=http://{}:{ETCD_PEER_PORT}", layout::node_ip(lan, j)))
        .collect();
    let node = &servers[i];
    [
        "node",
        "exec",
        "--cluster",
        cluster,
        node,
        "--",
        "etcd",
        "--name",
        node,
        "--data-dir",
        &ClusterState::dir(cluster)
            .join(node)
            .join("etcd")
            .display()
            .to_string(),
        "--listen-client-urls",
        &format!("http://{ip}:{ETCD_CLIENT_PORT},http://127.0.0.1:{ETCD_CLIENT_PORT}"),
        "--advertise-client-urls",
        &format!("http://{ip}:{ETCD_CLIENT_PORT}"),
        "--listen-peer-urls",
        &format!("http://{ip}:{ETCD_PEER_PORT}"),
        "--initial-advertise-peer-urls",
        &format!("http://{ip}:{ETCD_PEER_PORT}"),
        "--initial-cluster",
        &members.join(","),
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        cluster,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts one of the extra processes of a cluster with several servers.
fn spawn_extra(
    opts: &UpOptions,
    role: &str,
    node: &str,
    args: Vec<String>,
    log: PathBuf,
) -> anyhow::Result<ProcessState> {
    let pid = process::spawn_detached(&opts.skiff_binary, &args, &log)?;
    Ok(ProcessState {
        role: role.to_string(),
        node: node.to_string(),
        pid,
        args,
        log,
    })
}

/// Starts again the processes of a cluster that stopped (killed, crashed): its namespaces
/// and data are still there, so it comes back with every object it had.
async fn restart(
    mut state: ClusterState,
    opts: &UpOptions,
    hooks: &Hooks,
    started: Instant,
) -> anyhow::Result<ClusterState> {
    let dir = ClusterState::dir(&state.name);
    let deadline = Instant::now() + opts.timeout;
    // etcd first: the servers need it.
    for p in state.extra.iter_mut().filter(|p| p.role == "etcd") {
        if !process::alive(p.pid) {
            p.pid = process::spawn_detached(&opts.skiff_binary, &p.args, &p.log)?;
        }
    }
    if !process::alive(state.server_pid) {
        // A server that was just killed may still hold its sockets for a moment (with
        // several servers the port is the balancer's, which is not restarted yet).
        let port_free = || TcpListener::bind(("127.0.0.1", state.api_port)).is_ok();
        while state.extra.is_empty() && !port_free() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = dir.join(layout::CONTROL_PLANE_NODE).join("server.log");
        state.server_pid = process::spawn_detached(&opts.skiff_binary, &state.server_args, &log)?;
    }
    for p in state.extra.iter_mut().filter(|p| p.role != "etcd") {
        if !process::alive(p.pid) {
            p.pid = process::spawn_detached(&opts.skiff_binary, &p.args, &p.log)?;
        }
    }
    state.save()?;
    let client = wait_for_api(&state, hooks, deadline).await?;
    for node in &mut state.nodes {
        if !process::alive(node.agent_pid) {
            let log = dir.join(&node.name).join("agent.log");
            node.agent_pid = process::spawn_detached(&opts.skiff_binary, &node.agent_args, &log)?;
        }
    }
    state.save()?;
    wait_until_ready(&state, &client, deadline, None).await?;
    println!(
        "Cluster \"{}\" is running again: {} node(s) in {:.2}s, API at {}",
        state.name,
        state.nodes.len(),
        started.elapsed().as_secs_f64(),
        state.host_url()
    );
    Ok(state)
}

/// Every node Ready, `coredns` available, and the system Services working from every node.
async fn wait_until_ready(
    state: &ClusterState,
    client: &Client,
    deadline: Instant,
    mut progress: Option<&mut Progress>,
) -> anyhow::Result<()> {
    wait_until(deadline, "every node to be Ready", || {
        let client = client.clone();
        let want = state.nodes.len() + hollow_count(state);
        async move { Ok(ready_nodes(&client).await? == want) }
    })
    .await?;
    label_control_planes(state, client).await?;
    let servers = 1 + state.extra.iter().filter(|p| p.role == "server").count();
    if servers > 1 {
        wait_until(deadline, "every server in the kubernetes endpoints", || {
            let client = client.clone();
            async move { Ok(kubernetes_endpoints(&client).await? == servers) }
        })
        .await?;
    }
    if let Some(p) = progress.as_deref_mut() {
        p.phase("Starting cluster DNS");
    }
    wait_until(deadline, "kube-system/coredns to be available", || {
        let client = client.clone();
        async move { coredns_available(&client).await }
    })
    .await?;
    let dns_pods = ready_dns_pods(client).await?;
    if let Some(p) = progress {
        p.phase("Checking Services from every node");
    }
    check_services_from_every_node(state, &dns_pods, deadline).await
}

/// Labels the server nodes `node-role.kubernetes.io/control-plane`, as kubeadm does once
/// they registered: NodeRestriction keeps kubelets from setting `node-role` labels on
/// themselves, so the installer, holding the admin credentials, sets it. In a cluster
/// of server nodes only (`skiff up --nodes 1`), their control-plane taint goes too, as
/// kind removes it when it has no workers: otherwise no workload could be scheduled.
async fn label_control_planes(state: &ClusterState, client: &Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let is_server = |n: &NodeState| n.agent_args.iter().any(|a| a == "--control-plane");
    let workers = state.nodes.iter().any(|n| !is_server(n));
    for n in state.nodes.iter().filter(|n| is_server(n)) {
        let mut attempts = 0;
        loop {
            let mut patch = serde_json::json!({"metadata": {"labels": {
                skiff_api::names::CONTROL_PLANE_LABEL: "",
            }}});
            if !workers {
                let node = nodes
                    .get(&n.name)
                    .await
                    .with_context(|| format!("reading node {}", n.name))?;
                let taints: Vec<_> = node
                    .spec
                    .and_then(|s| s.taints)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.key != skiff_api::names::CONTROL_PLANE_TAINT)
                    .collect();
                // Taints are one list: the resourceVersion keeps a concurrent change
                // (the node lifecycle controller's) from being overwritten.
                patch["metadata"]["resourceVersion"] =
                    serde_json::json!(node.metadata.resource_version);
                patch["spec"] = serde_json::json!({"taints": taints});
            }
            match nodes
                .patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 409 && attempts < 5 => attempts += 1,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("labelling {} as a control-plane node", n.name))
                }
            }
        }
    }
    Ok(())
}

/// IPs of the Ready CoreDNS pods.
async fn ready_dns_pods(client: &Client) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
    let pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default().labels("k8s-app=kube-dns"))
        .await?;
    Ok(pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let ready = status
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then(|| status.pod_ip.as_ref()?.parse().ok())?
        })
        .collect())
}

/// See [`crate::selfcheck`]: the nodes are checked in parallel.
async fn check_services_from_every_node(
    state: &ClusterState,
    dns_pods: &[std::net::Ipv4Addr],
    deadline: Instant,
) -> anyhow::Result<()> {
    let checks: Vec<_> = state
        .nodes
        .iter()
        .map(|n| {
            let path = netns::path(&n.netns);
            let name = n.name.clone();
            let dns_pods = dns_pods.to_vec();
            tokio::task::spawn_blocking(move || {
                crate::selfcheck::check_node(&path, &dns_pods, deadline)
                    .with_context(|| format!("Services do not work from node {name}"))
            })
        })
        .collect();
    for check in checks {
        check.await??;
    }
    Ok(())
}

fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

async fn wait_for_api(
    state: &ClusterState,
    hooks: &Hooks,
    deadline: Instant,
) -> anyhow::Result<Client> {
    let server_dir = ClusterState::server_dir(&state.name);
    loop {
        if !process::alive(state.server_pid) {
            bail!("skiff server exited");
        }
        if server_dir.join("token").exists() {
            let yaml = (hooks.admin_kubeconfig)(
                &server_dir,
                &state.host_url(),
                &kubeconfig::context_name(&state.name),
            );
            if let Ok(yaml) = yaml {
                if let Ok(client) = client_from_yaml(&yaml).await {
                    if client.apiserver_version().await.is_ok() {
                        return Ok(client);
                    }
                }
            }
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for the API server");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client for a kubeconfig given as YAML text.
pub async fn client_from_yaml(yaml: &str) -> anyhow::Result<Client> {
    let kc: kube::config::Kubeconfig = serde_yaml_ng::from_str(yaml)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(Client::try_from(config)?)
}

async fn wait_until<F, Fut>(deadline: Instant, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let mut last_err = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            let why = last_err
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!("timed out waiting for {what}{why}");
        }
        // Each poll is one small GET; a short period keeps `up` from waiting on its own
        // polling (it polls twice on the way to ready).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ready_nodes(client: &Client) -> anyhow::Result<usize> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(nodes
        .items
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count())
}

/// How many addresses the `kubernetes` Service's endpoints list (one per live server).
async fn kubernetes_endpoints(client: &Client) -> anyhow::Result<usize> {
    let ep = Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(client.clone(), "default")
        .get_opt("kubernetes")
        .await?;
    Ok(ep
        .and_then(|e| e.subsets)
        .unwrap_or_default()
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum())
}

async fn coredns_available(client: &Client) -> anyhow::Result<bool> {
    let api = Api::<Deployment>::namespaced(client.clone(), "kube-system");
    let Some(d) = api.get_opt("coredns").await? else {
        return Ok(false);
    };
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let available = d
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    Ok(available >= want && want > 0)
}

fn tail_logs(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(nodes) = std::fs::read_dir(dir) else {
        return out;
    };
    for node in nodes.filter_map(|e| e.ok()) {
        for log in ["server.log", "agent.log", "etcd.log"] {
            let path = node.path().join(log);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
                out.push_str(&format!("\n  {}:\n    {tail}", path.display()));
            }
        }
    }
    out
}

/// Stops every process of a cluster and removes every namespace, mount and file it made.
/// Works from the cluster's name alone, so it also cleans up after `kill -9` of everything.
pub fn down(name: &str, hooks: &Hooks) -> anyhow::Result<()> {
    layout::validate_name(name)?;
    let existed = ClusterState::dir(name).exists() || !cluster_netns(name).is_empty();
    cleanup(name, hooks);
    let _ = kubeconfig::remove(name);
    if !existed {
        eprintln!("cluster {name:?} not found; nothing to remove");
    }
    Ok(())
}

/// The cluster's network namespaces: its LAN, its nodes and their pods.
fn cluster_netns(name: &str) -> Vec<String> {
    let lan = layout::lan_netns(name);
    let nodes = format!("{}k8s-", layout::netns_prefix(name));
    netns::list()
        .into_iter()
        .filter(|ns| *ns == lan || ns.starts_with(&nodes))
        .collect()
}

fn cleanup(name: &str, hooks: &Hooks) {
    let dir = ClusterState::dir(name);
    let namespaces = cluster_netns(name);

    // What the host got (link, rules, forwarding), found by the names the cluster's name
    // gives, whether or not a state file says so.
    let host_lock = lock_host();
    if let Err(e) = netns::unlink_host(&layout::host_link(name)) {
        eprintln!("warning: {e:#}");
    }
    if let Err(e) = hostnet::remove(name) {
        eprintln!("warning: {e:#}");
    }
    if let Err(e) = hostnet::restore_host(others_linked(name)) {
        eprintln!("warning: {e:#}");
    }
    drop(host_lock);

    // Every process living in one of the cluster's namespaces (server, agents, containers)
    // or started with the cluster's directory on its command line.
    let inodes: Vec<u64> = namespaces
        .iter()
        .filter_map(|ns| std::fs::metadata(netns::path(ns)).ok())
        .map(|m| m.ino())
        .collect();
    let mut pids = process::find_by_cmdline(&dir.display().to_string());
    pids.extend(pids_in_netns(&inodes));
    pids.sort_unstable();
    pids.dedup();
    // No grace period: everything they could save is deleted next, and a container's
    // PID 1 without a TERM handler (`sleep`, the DNS server) ignores TERM, which cost
    // `down` 3 s every time. (kind's `delete cluster` kills its node containers alike.)
    process::stop_all(&pids, Duration::ZERO);

    // Each agent's containers, mounts, pod namespaces and cgroups, the nodes at once
    // (each waits mostly on `runc`).
    if let Ok(nodes) = std::fs::read_dir(&dir) {
        let nodes: Vec<_> = nodes
            .filter_map(|e| e.ok())
            .filter(|n| n.path().join("agent").is_dir())
            .collect();
        // The hook may need the runtime `down` runs in: each thread enters it.
        let rt = tokio::runtime::Handle::try_current().ok();
        std::thread::scope(|scope| {
            for node in &nodes {
                let rt = rt.clone();
                scope.spawn(move || {
                    let _rt = rt.as_ref().map(|h| h.enter());
                    let node_name = node.file_name().to_string_lossy().into_owned();
                    let prefix = layout::pod_netns_prefix(name, &node_name);
                    let agent_dir = node.path().join("agent");
                    if let Err(e) = (hooks.cleanup_node)(&agent_dir, &node_name, &prefix) {
                        eprintln!("warning: cleaning up node {node_name}: {e:#}");
                    }
                });
            }
        });
    }
    unmount_under(&dir);
    // Pods' namespaces before the nodes' (their veth peers live in the node namespaces).
    let mut namespaces = namespaces;
    namespaces.sort_by_key(|ns| std::cmp::Reverse(ns.len()));
    for ns in &namespaces {
        if let Err(e) = netns::delete(ns) {
            eprintln!("warning: {e:#}");
        }
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!("warning: removing {}: {e}", dir.display());
        }
    }
}

/// Whether another cluster than `name` still has its link on the host: any link named as
/// [`layout::host_link`] names them (a cluster whose directory is gone still counts).
fn others_linked(name: &str) -> bool {
    let ours = layout::host_link(name);
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .any(|link| link != ours && layout::is_host_link(&link))
}

fn pids_in_netns(inodes: &[u64]) -> Vec<u32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| inodes.contains(&m.ino()))
                .unwrap_or(false)
        })
        .collect()
}

/// Lazily unmounts everything mounted under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Runs `cmd` on a node of a cluster (in its network namespace). Only returns on error:
/// on success the process becomes `cmd`.
pub fn node_exec(cluster: &str, node: &str, cmd: &[String]) -> anyhow::Error {
    let ns = netns::path(&layout::node_netns(cluster, node));
    if !ns.exists() {
        return anyhow::anyhow!("no node {node:?} in cluster {cluster:?} (is it up?)");
    }
    let Some((program, args)) = cmd.split_first() else {
        return anyhow::anyhow!("no command given: skiff node exec NODE -- CMD...");
    };
    if let Err(e) = netns::enter(&ns) {
        return e;
    }
    let err = std::process::Command::new(program).args(args).exec();
    anyhow::Error::new(err).context(format!("running {program}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hollow_nodes_get_smaller_pod_cidrs_only_when_needed() {
        assert_eq!(node_cidr_mask_for(1), None);
        assert_eq!(node_cidr_mask_for(256), None);
        assert_eq!(node_cidr_mask_for(257), Some(25));
        assert_eq!(node_cidr_mask_for(1000), Some(26));
        assert_eq!(node_cidr_mask_for(5003), Some(29));
        assert_eq!(node_cidr_mask_for(MAX_HOLLOW_NODES), Some(29));
    }

    #[test]
    fn a_forwarder_s_ports_are_read_back_from_its_arguments() {
        let lan: Ipv4Net = "172.18.0.0/24".parse().unwrap();
        let args = port_args("c", lan, 3, 8080, 31688);
        assert_eq!(forwarded_ports(&args), Some((8080, 31688)));
        assert_eq!(forwarded_ports(&["lb".to_string()]), None);
    }

    #[test]
    fn loopback_mirrors_are_the_hosts_lan_address() {
        let gw = std::net::Ipv4Addr::new(172, 18, 0, 1);
        assert_eq!(
            super::loopback_to("docker.io=http://127.0.0.1:5000", gw),
            "docker.io=http://172.18.0.1:5000"
        );
        assert_eq!(
            super::loopback_to("quay.io=https://localhost/x", gw),
            "quay.io=https://172.18.0.1/x"
        );
        assert_eq!(
            super::loopback_to("docker.io=http://127.0.0.10:5000", gw),
            "docker.io=http://127.0.0.10:5000"
        );
        assert_eq!(
            super::loopback_to("docker.io=https://mirror.local:5000", gw),
            "docker.io=https://mirror.local:5000"
        );
    }
}
