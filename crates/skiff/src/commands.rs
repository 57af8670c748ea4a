//! What each sub-command does: build the components' configs and run them.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use skiff_runtime::leader::{run_leading, Component, LeaseLock, Timing};

use crate::cli::{
    AgentArgs, Cli, Command, DnsArgs, GetCommand, HostFirewallArg, ImageCommand, ImageGcArgs,
    KubeconfigArgs, LbArgs, NodeCommand, NodesArgs, ProxyArgs, ProxyModeArg, ServerArgs, UpArgs,
};
use crate::cli::{DatastoreCommand, MigrateArgs};

/// How often the proxy rewrites every rule. As kube-proxy since partial syncs (KEP-3453):
/// hourly, because in between only changed Services are rewritten and the canary chains
/// catch a flushed table; a full rewrite also resets every rule's packet counters.
const PROXY_FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// A listening socket with a deep accept queue: std's `bind` asks for 128 pending
/// connections, which a thousand nodes connecting at once overflow (their connects then
/// wait out SYN retries). 4096 is what the kernel allows by default (`somaxconn`).
fn listen(addr: &std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(*addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&(*addr).into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // A listener on the host's loopback must be bound before entering the node's namespace.
    let host_listener = match &cli.command {
        Command::Server(ServerArgs {
            host_listen: Some(addr),
            ..
        })
        | Command::Lb(LbArgs {
            host_listen: addr, ..
        }) => Some(listen(addr).with_context(|| format!("binding {addr}"))?),
        _ => None,
    };
    if let Some(ns) = &cli.netns {
        // Before the runtime starts threads: setns applies to the calling thread only.
        skiff_cluster::netns::enter(ns)?;
    }
    if let Command::Node(NodeCommand::Exec {
        cluster,
        node,
        command,
    }) = &cli.command
    {
        return Err(skiff_cluster::node_exec(cluster, node, command));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up(args).await,
            Command::Down(args) => skiff_cluster::down(&args.cluster, &cluster_hooks()),
            Command::Ls | Command::Get(GetCommand::Clusters) => {
                print!(
                    "{}",
                    skiff_cluster::list::table(&skiff_cluster::list::clusters())
                );
                Ok(())
            }
            Command::Kubeconfig(args) => kubeconfig(args),
            Command::Node(NodeCommand::Ls(args)) => node_ls(&args.cluster),
            Command::Node(NodeCommand::Exec { .. }) => unreachable!("handled above"),
            Command::Server(args) => server(args, host_listener).await,
            Command::Datastore(DatastoreCommand::Migrate(args)) => migrate(args),
            Command::Agent(args) => agent(args).await,
            Command::Proxy(args) => proxy(args).await,
            Command::Dns(args) => dns(args).await,
            Command::Image(cmd) => image(cmd).await,
            Command::Lb(args) => lb(args, host_listener).await,
            Command::RuntimeService(_) => unreachable!("handled in main, single-threaded"),
        }
    })
}

/// What the local-cluster crate borrows from the API server and the agent.
fn cluster_hooks() -> skiff_cluster::Hooks {
    skiff_cluster::Hooks {
        admin_kubeconfig: Box::new(|dir: &Path, url: &str, name: &str| {
            skiff_apiserver::pki::admin_kubeconfig(dir, url, name)
        }),
        cleanup_node: Box::new(|dir: &Path, node: &str, prefix: &str| {
            // Called from within the runtime (by `up` and `down`): run the async cleanup
            // on this worker thread.
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(skiff_agent::cleanup_node(dir, node, prefix))
            })
        }),
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut agent_args = Vec::new();
    if let ProxyModeArg::Nftables = args.proxy_mode {
        agent_args.extend(["--proxy-mode".to_string(), "nftables".to_string()]);
    }
    agent_args.extend(["--network".to_string(), args.network.network().to_string()]);
    agent_args.extend(["--runtime".to_string(), args.runtime.runtime().to_string()]);
    if let Some(path) = &args.resolv_conf {
        // The agents read it when they start (and again after a restart): an absolute
        // path, checked now rather than by every node.
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("--resolv-conf {}", path.display()))?;
        agent_args.extend(["--resolv-conf".to_string(), path.display().to_string()]);
    }
    if let Some(path) = &args.registry_config {
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("--registry-config {}", path.display()))?;
        skiff_agent::containers::registry::RegistryConfig::load(&path)?;
        agent_args.extend(["--registry-config".to_string(), path.display().to_string()]);
    }
    for m in &args.registry_mirrors {
        skiff_agent::containers::registry::parse_mirror(m)?;
        agent_args.extend(["--registry-mirror".to_string(), m.clone()]);
    }
    // Checked now rather than by every node.
    image_gc_policy(&args.image_gc)?;
    agent_args.extend(image_gc_flags(&args.image_gc));
    let opts = skiff_cluster::UpOptions {
        name: args.cluster,
        nodes: args.nodes,
        servers: args.servers,
        skiff_binary: std::env::current_exe().context("finding the skiff binary")?,
        timeout: Duration::from_secs(args.timeout),
        agent_args,
        server_args: vec![
            "--node-monitor-grace-period".to_string(),
            args.node_monitor_grace_period.to_string(),
        ],
        subnet: args.subnet,
        isolated: args.isolated,
        firewall: args.host_firewall.map(|f| match f {
            HostFirewallArg::Iptables => skiff_cluster::Firewall::Iptables,
            HostFirewallArg::Nftables => skiff_cluster::Firewall::Nftables,
        }),
        ports: args.ports,
        hollow_nodes: args.hollow_nodes,
    };
    skiff_cluster::up(opts, &cluster_hooks()).await?;
    Ok(())
}

/// The agent's image garbage collection policy: kubelet's defaults, then the flags.
fn image_gc_policy(args: &ImageGcArgs) -> anyhow::Result<skiff_agent::kubelet::imagegc::Policy> {
    use skiff_agent::kubelet::imagegc::{parse_duration, Policy};
    let mut p = Policy::default();
    if let Some(v) = args.image_gc_high_threshold {
        p.high_threshold_percent = v;
    }
    if let Some(v) = args.image_gc_low_threshold {
        p.low_threshold_percent = v;
    }
    let duration = |flag: &str, v: &Option<String>, into: &mut Duration| -> anyhow::Result<()> {
        if let Some(v) = v {
            *into = parse_duration(v).with_context(|| format!("--{flag}"))?;
        }
        Ok(())
    };
    duration(
        "image-minimum-gc-age",
        &args.image_minimum_gc_age,
        &mut p.min_age,
    )?;
    duration(
        "image-maximum-gc-age",
        &args.image_maximum_gc_age,
        &mut p.max_age,
    )?;
    duration("image-gc-period", &args.image_gc_period, &mut p.period)?;
    anyhow::ensure!(!p.period.is_zero(), "--image-gc-period must be positive");
    p.validate().context("image garbage collection")?;
    Ok(p)
}

/// The image garbage collection flags given to `skiff up`, for its agents.
fn image_gc_flags(args: &ImageGcArgs) -> Vec<String> {
    let mut out = Vec::new();
    let mut flag = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            out.extend([format!("--{name}"), v]);
        }
    };
    flag(
        "image-gc-high-threshold",
        args.image_gc_high_threshold.map(|v| v.to_string()),
    );
    flag(
        "image-gc-low-threshold",
        args.image_gc_low_threshold.map(|v| v.to_string()),
    );
    flag("image-minimum-gc-age", args.image_minimum_gc_age.clone());
    flag("image-maximum-gc-age", args.image_maximum_gc_age.clone());
    flag("image-gc-period", args.image_gc_period.clone());
    out
}

/// The agent's registry config: the file's, then the `--registry-mirror` endpoints.
fn registries(
    file: Option<&Path>,
    mirrors: &[String],
) -> anyhow::Result<skiff_agent::containers::registry::RegistryConfig> {
    use skiff_agent::containers::registry::{parse_mirror, RegistryConfig};
    let mut cfg = match file {
        Some(path) => RegistryConfig::load(path)?,
        None => RegistryConfig::default(),
    };
    for m in mirrors {
        let (registry, endpoint) = parse_mirror(m)?;
        cfg.mirrors
            .entry(registry)
            .or_default()
            .endpoint
            .push(endpoint);
    }
    Ok(cfg)
}

/// `skiff lb`: the host's way in to a cluster with several servers, and the `--port`
/// forwarders.
async fn lb(args: LbArgs, listener: Option<TcpListener>) -> anyhow::Result<()> {
    let listener = listener.context("no host listener")?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let servers = skiff_agent::apilb::parse_servers(&args.server);
    anyhow::ensure!(!servers.is_empty(), "--server names no API server");
    skiff_agent::apilb::serve(listener, servers, &args.label).await;
    Ok(())
}

fn kubeconfig(args: KubeconfigArgs) -> anyhow::Result<()> {
    let yaml = match args.data_dir {
        Some(dir) => skiff_apiserver::pki::admin_kubeconfig(&dir, &args.server, "skiff")?,
        None => {
            let state = skiff_cluster::ClusterState::load(&args.cluster)?;
            skiff_apiserver::pki::admin_kubeconfig(
                &skiff_cluster::ClusterState::server_dir(&args.cluster),
                &state.host_url(),
                &skiff_cluster::kubeconfig::context_name(&args.cluster),
            )?
        }
    };
    print!("{yaml}");
    Ok(())
}

fn node_ls(cluster: &str) -> anyhow::Result<()> {
    let state = skiff_cluster::ClusterState::load(cluster)?;
    println!("{:<10} {:<15} NETNS", "NAME", "IP");
    for n in &state.nodes {
        println!("{:<10} {:<15} {}", n.name, n.ip, n.netns);
    }
    Ok(())
}

async fn server(args: ServerArgs, host_listener: Option<TcpListener>) -> anyhow::Result<()> {
    let config = skiff_apiserver::ServerConfig {
        data_dir: args.data_dir.clone(),
        bind: args.bind,
        extra_listeners: host_listener.into_iter().collect(),
        advertise_address: args.advertise_address,
        extra_sans: Vec::new(),
        service_cidr: args.service_cidr.clone(),
        node_port_range: (
            skiff_api::defaults::NODE_PORT_MIN,
            skiff_api::defaults::NODE_PORT_MAX,
        ),
        datastore: args.datastore.clone(),
        datastore_options: args.etcd_tls.open_options(),
    };
    let handle = skiff_apiserver::Server::start(config).await?;
    let client = Client::try_from(handle.admin_client_config())?;
    // kube-controller-manager serves its work queues' metrics on its own port; here the
    // controllers share the API server's process, so they share its `/metrics`.
    handle.add_metrics_source(std::sync::Arc::new(
        skiff_controllers::queue::metrics::render,
    ));

    let controllers = skiff_controllers::ControllersConfig {
        cluster_cidr: args.cluster_cidr.clone(),
        node_cidr_mask: args.node_cidr_mask_size,
        node_monitor_grace_period: Duration::from_secs(args.node_monitor_grace_period),
        ..Default::default()
    };
    // The controllers run as kube-controller-manager with
    // `--use-service-account-credentials`: its shared informers as
    // `system:kube-controller-manager`, each controller as its service account.
    let issuer = handle.issuer();
    let kcm_config = with_user_agent(
        issuer.config_as("system:kube-controller-manager", &[])?,
        "kube-controller-manager",
    );
    let kcm_lease_client = Client::try_from(kcm_config.clone())?;
    let run_controllers: Component = Box::new(move || {
        let (config, controllers, issuer) =
            (kcm_config.clone(), controllers.clone(), issuer.clone());
        Box::pin(log_exit("controllers", async move {
            let client_for = move |sa: &str| -> anyhow::Result<Client> {
                let c = issuer.config_as_service_account("kube-system", sa)?;
                Ok(Client::try_from(with_user_agent(
                    c,
                    "kube-controller-manager",
                ))?)
            };
            skiff_controllers::run_as(Client::try_from(config)?, &client_for, controllers).await
        }))
    });
    // The scheduler runs as kube-scheduler does: `system:kube-scheduler`, which the
    // default policy binds to its role.
    let kube_config = with_user_agent(
        handle.client_config_as("system:kube-scheduler", &[])?,
        "kube-scheduler",
    );
    let scheduler_lease_client = Client::try_from(kube_config.clone())?;
    let run_scheduler: Component = Box::new(move || {
        let config = kube_config.clone();
        Box::pin(log_exit("scheduler", async move {
            skiff_scheduler::run(Client::try_from(config)?).await
        }))
    });
    if args.leader_elect {
        // As kube-controller-manager and kube-scheduler: one Lease each in kube-system,
        // so several servers on one datastore run them on one leader at a time.
        let identity = leader_identity(&args.data_dir)?;
        // Each elects under its own identity, which its role lets write its Lease.
        for (name, component, lease_client) in [
            ("kube-controller-manager", run_controllers, kcm_lease_client),
            ("kube-scheduler", run_scheduler, scheduler_lease_client),
        ] {
            let lock = LeaseLock {
                namespace: "kube-system".into(),
                name: name.into(),
                identity: identity.clone(),
            };
            tokio::spawn(run_leading(
                lease_client,
                lock,
                Timing::default(),
                component,
            ));
        }
    } else {
        tokio::spawn(run_controllers());
        tokio::spawn(run_scheduler());
    }
    if !args.no_dns {
        install_addons(&client, skiff_dns::addon::objects()).await?;
    }
    handle.wait().await
}

/// This server's candidate identity for leader election: `<hostname>_<uuid>`, as
/// client-go's, with the uuid kept in the data dir so that a restarted server resumes its
/// own terms at once instead of waiting for them to expire.
fn leader_identity(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("leader-identity");
    let id = match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "skiff".into());
            let id = format!("{host}_{}", uuid::Uuid::new_v4());
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            id
        }
    };
    Ok(id)
}

async fn log_exit(what: &'static str, fut: impl std::future::Future<Output = anyhow::Result<()>>) {
    if let Err(e) = fut.await {
        tracing::error!("{what} stopped: {e:#}");
    }
}

/// Creates each add-on object unless it exists: a user's changes survive restarts, and a
/// deleted add-on comes back on the next start (as k3s's add-ons do).
async fn install_addons(client: &Client, objects: Vec<serde_json::Value>) -> anyhow::Result<()> {
    for obj in objects {
        let obj: DynamicObject = serde_json::from_value(obj).context("add-on object")?;
        let types = obj
            .types
            .clone()
            .context("add-on object without apiVersion/kind")?;
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), types.api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &types.kind);
        let plural = format!("{}s", types.kind.to_lowercase());
        let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
        let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let name = obj.metadata.name.clone().unwrap_or_default();
        if api.get_opt(&name).await?.is_none() {
            match api.create(&PostParams::default(), &obj).await {
                // Another server of the same cluster installed it meanwhile.
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("creating add-on {} {name}", types.kind))
                }
            }
        }
    }
    Ok(())
}

fn read_token(args: &AgentArgs) -> anyhow::Result<String> {
    match (&args.token, &args.token_file) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(f)) => Ok(std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_string()),
        (None, None) => anyhow::bail!("--token or --token-file is required"),
    }
}

fn proxy_mode(mode: ProxyModeArg) -> skiff_proxy::ProxyMode {
    match mode {
        ProxyModeArg::Iptables => skiff_proxy::ProxyMode::Iptables,
        ProxyModeArg::Nftables => skiff_proxy::ProxyMode::Nftables,
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// `config` with a component's User-Agent (which names its field manager).
fn with_user_agent(mut config: kube::Config, component: &str) -> kube::Config {
    if let Ok(v) = skiff_api::defaults::user_agent(component).parse() {
        config.headers.push((http::header::USER_AGENT, v));
    }
    config
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let token = read_token(&args)?;
    let node_name = args.node_name.clone().unwrap_or_else(hostname);
    let mut node_labels = BTreeMap::new();
    for kv in &args.node_labels {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        node_labels.insert(k.to_string(), v.to_string());
    }
    let mut taints = Vec::new();
    if args.control_plane {
        // The `node-role` label is the installer's to set (NodeRestriction refuses it
        // from a kubelet); the taint a kubelet may register with.
        taints.push(k8s_openapi::api::core::v1::Taint {
            key: skiff_api::names::CONTROL_PLANE_TAINT.to_string(),
            effect: "NoSchedule".to_string(),
            ..Default::default()
        });
    }
    // Several servers: the node's clients go through a local balancer that fails over.
    let servers = skiff_agent::apilb::parse_servers(&args.server);
    let server_url = if servers.len() > 1 {
        let lb = skiff_agent::apilb::start(SocketAddr::from(([127, 0, 0, 1], 0)), servers)
            .await
            .context("starting the API load balancer")?;
        format!("https://{lb}")
    } else {
        args.server.clone()
    };
    let config = skiff_agent::AgentConfig {
        server_url: server_url.clone(),
        token: token.clone(),
        ca_file: args.ca_file.clone(),
        node_name: node_name.clone(),
        node_ip: args.node_ip,
        data_dir: args.data_dir.clone(),
        netns_prefix: args.netns_prefix.clone(),
        node_labels,
        register_with_taints: taints,
        cluster_dns: skiff_api::defaults::DNS_SERVICE_IP,
        cluster_domain: skiff_api::defaults::CLUSTER_DOMAIN.to_string(),
        cni_bin_dir: args.cni_bin_dir.clone(),
        network: args.network.network(),
        runtime: args.runtime.runtime(),
        runtime_service: None,
        kubelet_port: skiff_api::defaults::KUBELET_PORT,
        skiff_binary: std::env::current_exe().context("finding the skiff binary")?,
        credentials: None,
        resolv_conf: args.resolv_conf.clone(),
        registries: registries(args.registry_config.as_deref(), &args.registry_mirrors)?,
        image_gc: image_gc_policy(&args.image_gc)?,
    };
    if let Some(count) = args.hollow {
        let node_ip = args
            .node_ip
            .or_else(skiff_agent::node::default_node_ip)
            .context("no --node-ip given and this network namespace has no IPv4 address")?;
        return skiff_agent::hollow::run(config, node_ip, count).await;
    }
    // The join token buys the node's identities; the kubelet (with the pod routes) and
    // the proxy each run under their own, as kube's do.
    let creds = skiff_agent::credentials::fetch(&config).await?;
    let config = skiff_agent::AgentConfig {
        credentials: Some(creds.clone()),
        ..config
    };
    let node_client = skiff_runtime::client::client(skiff_agent::client_config(&config)?)?;
    let mut proxy_config = skiff_agent::client_config(&config)?;
    creds.kube_proxy.apply(&mut proxy_config);
    proxy_config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    let client = skiff_runtime::client::client(with_user_agent(proxy_config, "kube-proxy"))?;
    let proxy = skiff_proxy::ProxyConfig {
        node_name,
        cluster_cidr: args.cluster_cidr.clone(),
        mode: proxy_mode(args.proxy_mode),
        node_ips: args.node_ip.into_iter().collect(),
        sync_period: PROXY_FULL_SYNC_PERIOD,
        metrics_bind: Some(args.proxy_metrics_bind_address),
        ..Default::default()
    };
    tokio::spawn(log_exit(
        "pod routes",
        skiff_agent::podroutes::run(node_client, config.node_name.clone()),
    ));
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let proxy = skiff_proxy::ProxyConfig {
        synced: Some(synced_tx),
        ..proxy
    };
    tokio::spawn(log_exit("proxy", skiff_proxy::run(client, proxy)));
    // Pods start once the proxy has programmed the Services (see `run_after_proxy`).
    skiff_agent::run_after_proxy(config, synced_rx).await
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let kc = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    let client = skiff_runtime::client::client(with_user_agent(config, "kube-proxy"))?;
    let cfg = skiff_proxy::ProxyConfig {
        node_name: args.node_name.unwrap_or_else(hostname),
        cluster_cidr: args.cluster_cidr,
        mode: proxy_mode(args.proxy_mode),
        sync_period: PROXY_FULL_SYNC_PERIOD,
        metrics_bind: args.metrics_bind_address,
        ..Default::default()
    };
    skiff_proxy::run(client, cfg).await
}

async fn dns(args: DnsArgs) -> anyhow::Result<()> {
    if let Some(secs) = args.wait_ready {
        let addr = std::net::SocketAddr::from((
            [127, 0, 0, 1],
            skiff_dns::DnsConfig::default().ready_bind.port(),
        ));
        if !skiff_dns::http::wait_ready(addr, Duration::from_secs(secs)).await {
            eprintln!("{addr} was not ready within {secs}s");
        }
        return Ok(());
    }
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::incluster().context("in-cluster configuration")?,
    };
    let client = skiff_runtime::client::client(with_user_agent(config, "coredns"))?;
    let cfg = skiff_dns::DnsConfig {
        listen: args.listen,
        domain: args.domain,
        ttl: args.ttl,
        upstreams: args.upstream,
        ..Default::default()
    };
    skiff_dns::run(client, cfg).await
}

async fn image(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Import {
            file,
            cluster,
            data_dir,
        } => {
            let dirs = match cluster {
                Some(c) => skiff_cluster::ClusterState::load(&c)?
                    .nodes
                    .iter()
                    .map(|n| skiff_cluster::ClusterState::agent_dir(&c, &n.name))
                    .collect(),
                None => vec![data_dir],
            };
            for dir in dirs {
                for name in skiff_agent::images::import(&dir, &file)? {
                    println!("imported {name} into {}", dir.display());
                }
            }
            Ok(())
        }
        ImageCommand::Load { source, nodes } => {
            let started = std::time::Instant::now();
            let targets = node_dirs(&nodes)?;
            let dirs: Vec<std::path::PathBuf> = targets.iter().map(|(_, d)| d.clone()).collect();
            let path = Path::new(&source);
            let loaded = if path.exists() {
                skiff_agent::images::load(&dirs, path)?
            } else {
                let (found, loaded) = skiff_agent::images::load_from_engine(&dirs, &source)?;
                eprintln!("image {source} ({}) from {}", found.id, found.engine);
                loaded
            };
            for ((node, _), loaded) in targets.iter().zip(&loaded) {
                for r in &loaded.references {
                    println!("loaded {r} onto {node} ({} new layers)", loaded.new_layers);
                }
            }
            eprintln!("done in {:.2}s", started.elapsed().as_secs_f64());
            Ok(())
        }
        ImageCommand::Pull {
            reference,
            cluster,
            data_dir,
            registry_config,
            registry_mirrors,
        } => {
            let dirs: Vec<std::path::PathBuf> = match cluster {
                Some(c) => skiff_cluster::ClusterState::load(&c)?
                    .nodes
                    .iter()
                    .map(|n| skiff_cluster::ClusterState::agent_dir(&c, &n.name))
                    .collect(),
                None => vec![data_dir],
            };
            let puller = skiff_agent::containers::registry::Puller::new(registries(
                registry_config.as_deref(),
                &registry_mirrors,
            )?);
            let skiff = std::env::current_exe().context("finding the skiff binary")?;
            for dir in dirs {
                let store = skiff_agent::images::ImageStore::new(&dir, &skiff);
                let pulled = puller.pull(&store, &reference, &[]).await?;
                println!(
                    "pulled {} into {} in {:.3}s: {} bytes, {} layers downloaded",
                    pulled.image.reference,
                    dir.display(),
                    pulled.took.as_secs_f64(),
                    pulled.size,
                    pulled.downloaded_layers
                );
            }
            Ok(())
        }
        ImageCommand::Ls { nodes, quiet } => {
            let targets = node_dirs(&nodes)?;
            let several = targets.len() > 1;
            let mut ids = std::collections::BTreeSet::new();
            for (i, (node, dir)) in targets.iter().enumerate() {
                let list = skiff_agent::images::list(dir)?;
                if quiet {
                    ids.extend(list.into_iter().map(|l| l.id));
                    continue;
                }
                if several {
                    if i > 0 {
                        println!();
                    }
                    println!("NODE {node}");
                }
                print!("{}", skiff_agent::containers::crictl::images_table(&list));
            }
            for id in ids {
                println!("{id}");
            }
            Ok(())
        }
        ImageCommand::Rm { references, nodes } => {
            use skiff_agent::containers::crictl::{remove, Removed};
            let targets = node_dirs(&nodes)?;
            let several = targets.len() > 1;
            let mut failed = false;
            for (node, dir) in &targets {
                let prefix = if several {
                    format!("{node}: ")
                } else {
                    String::new()
                };
                for r in remove(dir, &references)? {
                    match r {
                        Removed::Deleted(lines, _) => {
                            for l in lines {
                                println!("{prefix}{l}");
                            }
                        }
                        Removed::Failed(message) => {
                            eprintln!("{prefix}{message}");
                            failed = true;
                        }
                    }
                }
            }
            anyhow::ensure!(!failed, "unable to remove the image(s)");
            Ok(())
        }
    }
}

/// The nodes a `skiff image` command acts on, with their agents' data dirs: the
/// cluster's (all, or `--nodes`; `--nodes` alone means the cluster `skiff`), or the
/// one `--data-dir`.
fn node_dirs(args: &NodesArgs) -> anyhow::Result<Vec<(String, std::path::PathBuf)>> {
    let cluster = match (&args.cluster, args.nodes.is_empty()) {
        (Some(c), _) => c.clone(),
        (None, false) => "skiff".to_string(),
        (None, true) => return Ok(vec![("local".to_string(), args.data_dir.clone())]),
    };
    let state = skiff_cluster::ClusterState::load(&cluster)?;
    for n in &args.nodes {
        anyhow::ensure!(
            state.nodes.iter().any(|s| &s.name == n),
            "cluster {cluster} has no node {n}"
        );
    }
    Ok(state
        .nodes
        .iter()
        .filter(|n| args.nodes.is_empty() || args.nodes.contains(&n.name))
        .map(|n| {
            (
                n.name.clone(),
                skiff_cluster::ClusterState::agent_dir(&cluster, &n.name),
            )
        })
        .collect())
}

/// `skiff datastore migrate`: copies every key from one datastore to another.
fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    // Opening a SQLite URL creates the file: a mistyped source would copy nothing.
    if let Ok(skiff_store::Datastore::Sqlite(path)) = args.from.parse() {
        anyhow::ensure!(path.exists(), "{} does not exist", path.display());
    }
    let options = args.etcd_tls.open_options();
    let from = skiff_store::open_with(&args.from, &options)
        .with_context(|| format!("opening {}", args.from))?;
    let to = skiff_store::open_with(&args.to, &options)
        .with_context(|| format!("opening {}", args.to))?;
    let report = skiff_store::migrate(&*from, &*to, args.force).map_err(|e| match e {
        skiff_store::MigrateError::TargetNotEmpty(n) => anyhow::anyhow!(
            "{} is not empty ({n} keys): pass --force to replace its contents",
            args.to
        ),
        e => anyhow::anyhow!("copying {} to {}: {e}", args.from, args.to),
    })?;
    println!(
        "copied {} keys from {} (revision {}) to {}{}",
        report.copied,
        args.from,
        report.source_revision,
        args.to,
        match report.removed {
            0 => String::new(),
            n => format!(", removed {n} keys the source does not have"),
        }
    );
    println!("resourceVersions have changed: clients (kubectl watches, agents) relist");
    Ok(())
}
