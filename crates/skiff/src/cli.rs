//! The command line: one definition per flag (PRODUCT.md fixes the command names).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A Kubernetes-compatible cluster in one binary.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about, propagate_version = true)]
pub struct Cli {
    /// Run inside this network namespace (a path such as /var/run/netns/NAME). Entered
    /// before anything else starts; `skiff up` uses it to start nodes.
    #[arg(long, global = true, hide = true)]
    pub netns: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring a local cluster up: nodes as network namespaces on this machine.
    Up(UpArgs),
    /// Stop a local cluster and remove everything it made.
    Down(ClusterArg),
    /// List the local clusters: nodes, IPs, API port, state.
    #[command(alias = "list")]
    Ls,
    /// Show things on this machine (`skiff get clusters`, as `kind get clusters`).
    #[command(subcommand)]
    Get(GetCommand),
    /// Print the admin kubeconfig of a local cluster or of a server's data dir.
    Kubeconfig(KubeconfigArgs),
    /// Commands on the nodes of a local cluster.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Run the control plane: API server, controllers and scheduler.
    Server(ServerArgs),
    /// Manage a server's datastore (copy it between SQLite and etcd).
    #[command(subcommand)]
    Datastore(DatastoreCommand),
    /// Run a node agent (kubelet, container runtime and service proxy).
    Agent(AgentArgs),
    /// Run the service proxy alone, against any Kubernetes API.
    Proxy(ProxyArgs),
    /// Run the cluster DNS server (as the `kube-system/coredns` pods do).
    Dns(DnsArgs),
    /// Manage a node's image store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Forward connections from a host loopback port to the first of several addresses
    /// that answers (run in the cluster's LAN namespace by `skiff up --servers N` for the
    /// API servers, and by `skiff up --port` for node ports).
    #[command(hide = true)]
    Lb(LbArgs),
    /// Serve the agent's in-process container runtime (youki's libcontainer) on the
    /// socket the agent passes as fd 3; started by `skiff agent`, one per core.
    #[command(hide = true, name = "runtime-service")]
    RuntimeService(RuntimeServiceArgs),
}

/// Arguments of `skiff runtime-service`.
#[derive(Debug, Args)]
pub struct RuntimeServiceArgs {
    /// libcontainer's state directory.
    #[arg(long)]
    pub root: PathBuf,
}

/// Arguments of `skiff lb`.
#[derive(Debug, Args)]
pub struct LbArgs {
    /// Loopback address on the host to listen on, bound before `--netns` is entered.
    #[arg(long)]
    pub host_listen: SocketAddr,
    /// The API servers' URLs, separated by commas.
    #[arg(long)]
    pub server: String,
    /// What the logs call it (a local cluster's `--port` forwarders name their ports).
    #[arg(long, hide = true, default_value = skiff_agent::apilb::API_LB)]
    pub label: String,
}

/// `skiff get ...`.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// The local clusters (as `skiff ls`).
    Clusters,
}

/// `--cluster NAME`.
#[derive(Debug, Args)]
pub struct ClusterArg {
    /// Local cluster name.
    #[arg(long, default_value = "skiff")]
    pub cluster: String,
}

/// Arguments of `skiff up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Local cluster name.
    #[arg(long, default_value = "skiff")]
    pub cluster: String,
    /// Number of nodes, the control-plane node `k8s-m` included.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Number of nodes that run a server (`k8s-m`, `k8s-m2`...). More than one runs an
    /// etcd cluster on those nodes, and the servers elect their controllers' leader.
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// Seconds to wait for the cluster to be ready.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Dataplane of the service proxies.
    #[arg(long, value_enum, default_value_t = ProxyModeArg::Iptables)]
    pub proxy_mode: ProxyModeArg,
    /// What wires pods to their node's bridge (`skiff agent --network`).
    #[arg(long, value_enum, default_value_t = NetworkArg::Builtin)]
    pub network: NetworkArg,
    /// The nodes' container runtime (`skiff agent --runtime`).
    #[arg(long, value_enum, default_value_t = RuntimeArg::Youki)]
    pub runtime: RuntimeArg,
    /// Seconds a node may be silent before it is marked NotReady/Unknown (must exceed the
    /// agents' 10 s lease renewal).
    #[arg(long, default_value_t = skiff_api::defaults::NODE_MONITOR_GRACE_SECONDS)]
    pub node_monitor_grace_period: u64,
    /// The nodes' LAN (default: the first /24 from 172.18.0.0 upward that no route or
    /// address of the host and no other cluster uses, as Docker picks its networks).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<ipnet::Ipv4Net>,
    /// Give the host no link to the cluster: node IPs are unreachable from it and pods
    /// reach nothing outside the cluster (nothing is added to the host's network).
    #[arg(long)]
    pub isolated: bool,
    /// Forward a port on the host's loopback to a node port: `HOST:NODEPORT` (as k3d's
    /// `-p`), e.g. `--port 8080:31688`; repeatable.
    #[arg(long = "port", short = 'p', value_name = "HOST:NODEPORT", value_parser = parse_port_mapping)]
    pub ports: Vec<(u16, u16)>,
    /// Which firewall gets the host's NAT and forward rules (default: iptables when the
    /// host has it, else nftables).
    #[arg(long, value_enum)]
    pub host_firewall: Option<HostFirewallArg>,
    /// The resolv.conf the nodes give pods with `dnsPolicy: Default`, and so cluster
    /// DNS's upstream servers (default: the host's /etc/resolv.conf).
    #[arg(long, value_name = "FILE")]
    pub resolv_conf: Option<PathBuf>,
    /// Every node's image registry config (`skiff agent --registry-config`).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// A mirror of an image registry for every node, `REGISTRY=URL`
    /// (`docker.io=http://127.0.0.1:5000`: a registry on the host's loopback is reached
    /// from the nodes at the host's LAN address; repeatable).
    #[arg(long = "registry-mirror", value_name = "REGISTRY=URL")]
    pub registry_mirrors: Vec<String>,
    /// Also run N hollow nodes (`skiff agent --hollow N` in the control-plane node, Nodes
    /// `<cluster>-hollow-<i>`): Nodes with their Leases and pods but no containers, for
    /// density tests (the cluster's pod network then spans 10.128.0.0/9, room for
    /// 32,768 nodes).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub hollow_nodes: usize,
    /// Every node's image garbage collection (`skiff agent`'s flags).
    #[command(flatten)]
    pub image_gc: ImageGcArgs,
}

/// Image garbage collection, kubelet's flags: unused images are removed, least recently
/// used first, when the filesystem holding the image store is this full.
#[derive(Debug, Clone, Default, Args)]
pub struct ImageGcArgs {
    /// Disk usage (percent of the image store's filesystem) at or above which unused
    /// images are removed [default: 85; 100 with no maximum age turns collection off].
    #[arg(long, value_name = "PERCENT")]
    pub image_gc_high_threshold: Option<u32>,
    /// The disk usage collection frees down to [default: 80].
    #[arg(long, value_name = "PERCENT")]
    pub image_gc_low_threshold: Option<u32>,
    /// An image seen for less long is never removed [default: 2m].
    #[arg(long, value_name = "DURATION")]
    pub image_minimum_gc_age: Option<String>,
    /// An image unused for longer is removed whatever the disk usage [default: 0, off].
    #[arg(long, value_name = "DURATION")]
    pub image_maximum_gc_age: Option<String>,
    /// How often collection runs (kubelet: 5m; for tests).
    #[arg(long, value_name = "DURATION", hide = true)]
    pub image_gc_period: Option<String>,
}

/// Firewalls for `skiff up --host-firewall`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HostFirewallArg {
    /// The `iptables` program (legacy or nf_tables backend).
    Iptables,
    /// An nft table of the cluster's own.
    Nftables,
}

/// Parses `HOST:NODEPORT` of `--port`.
fn parse_port_mapping(s: &str) -> Result<(u16, u16), String> {
    let (host, node) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:NODEPORT (e.g. 8080:31688)"))?;
    let port = |p: &str, what: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{what} {p:?} in {s:?} is not a port (1-65535)"))
    };
    let (host, node) = (port(host, "host port")?, port(node, "node port")?);
    let range = skiff_api::defaults::NODE_PORT_MIN..=skiff_api::defaults::NODE_PORT_MAX;
    if !range.contains(&node) {
        return Err(format!(
            "node port {node} in {s:?} is outside the node port range {}-{}",
            range.start(),
            range.end()
        ));
    }
    Ok((host, node))
}

/// Arguments of `skiff kubeconfig`.
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// Local cluster name (ignored when --data-dir is given).
    #[arg(long, default_value = "skiff")]
    pub cluster: String,
    /// A server's data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Server URL to put in the kubeconfig (with --data-dir).
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    pub server: String,
}

/// `skiff node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a command on a node, in its network namespace.
    Exec {
        /// Local cluster name.
        #[arg(long, default_value = "skiff")]
        cluster: String,
        /// Node name (k8s-m, k8s-n1...).
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List the nodes of a local cluster.
    Ls(ClusterArg),
}

/// Arguments of `skiff server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where the server keeps its state, certificates and token.
    #[arg(long, default_value = "/var/lib/skiff/server")]
    pub data_dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub bind: SocketAddr,
    /// Also serve on this address, bound in the namespace skiff was started in (before
    /// --netns is entered): how a local cluster's API reaches the host's loopback.
    #[arg(long, hide = true)]
    pub host_listen: Option<SocketAddr>,
    /// Address other nodes reach this server at (default: the first non-loopback IPv4).
    #[arg(long)]
    pub advertise_address: Option<Ipv4Addr>,
    /// Datastore URL: `sqlite:///path/state.db` (default: <data-dir>/state.db) or
    /// `etcd://host1:2379,host2:2379[/prefix]` (a prefix lets clusters share an etcd).
    #[arg(long)]
    pub datastore: Option<String>,
    /// etcd client certificates.
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
    /// Pod network of the cluster.
    #[arg(long, default_value = skiff_api::defaults::CLUSTER_CIDR)]
    pub cluster_cidr: String,
    /// Range of cluster IPs.
    #[arg(long, default_value = skiff_api::defaults::SERVICE_CIDR)]
    pub service_cidr: String,
    /// Prefix length of each node's pod CIDR block (kube-controller-manager's
    /// `--node-cidr-mask-size`): /24 gives 256 nodes of 254 pods in a /16.
    #[arg(long, default_value_t = skiff_api::defaults::NODE_CIDR_MASK)]
    pub node_cidr_mask_size: u8,
    /// Seconds a node may be silent before it is marked NotReady/Unknown.
    #[arg(long, default_value_t = skiff_api::defaults::NODE_MONITOR_GRACE_SECONDS)]
    pub node_monitor_grace_period: u64,
    /// Do not install the DNS add-on (`coredns` Deployment and `kube-dns` Service).
    #[arg(long)]
    pub no_dns: bool,
    /// Run the controllers and the scheduler only while holding their Leases in
    /// kube-system, so that several servers can share one datastore (as
    /// kube-controller-manager's `--leader-elect`, on by default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
}

/// Arguments of `skiff agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// URL of the API server, or several separated by commas: the agent then balances
    /// over them through a loopback listener and fails over when one stops.
    #[arg(long)]
    pub server: String,
    /// Join token (see `<server data dir>/token`).
    #[arg(long, env = "SKIFF_TOKEN", required_unless_present = "token_file")]
    pub token: Option<String>,
    /// File holding the join token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// CA certificate of the API server (without it the server's certificate is not checked).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Node name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Node IP (default: the first non-loopback IPv4).
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// Where the agent keeps images, pods and logs.
    #[arg(long, default_value = "/var/lib/skiff/agent")]
    pub data_dir: PathBuf,
    /// Prefix of the pods' network namespace names.
    #[arg(long, default_value = "skiff-pod-")]
    pub netns_prefix: String,
    /// Register as a control-plane node (the NoSchedule taint; the role label is the
    /// installer's to add, as NodeRestriction refuses it from a node).
    #[arg(long)]
    pub control_plane: bool,
    /// Extra node labels, `k=v,k2=v2`.
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Directory of the CNI plugins (every plugin with `--network cni`, `portmap` for
    /// hostPorts with either).
    #[arg(long, default_value = "/usr/lib/cni")]
    pub cni_bin_dir: PathBuf,
    /// What wires pods to the node's bridge `cni0`: `builtin` does what the CNI `bridge`
    /// and `host-local` plugins do, in process; `cni` runs those plugins. Both keep
    /// host-local's address files, so a node may be restarted with the other.
    #[arg(long, value_enum, default_value_t = NetworkArg::Builtin)]
    pub network: NetworkArg,
    /// What runs the containers: `youki` is youki's libcontainer in a runtime service
    /// the agent starts (no process per container operation); `runc` runs a `runc`
    /// process per operation. Containers started by either are stopped and cleaned up
    /// after a restart with the other.
    #[arg(long, value_enum, default_value_t = RuntimeArg::Youki)]
    pub runtime: RuntimeArg,
    /// Dataplane of the service proxy.
    #[arg(long, value_enum, default_value_t = ProxyModeArg::Iptables)]
    pub proxy_mode: ProxyModeArg,
    /// Pod network of the cluster (traffic from outside it is masqueraded).
    #[arg(long, default_value = skiff_api::defaults::CLUSTER_CIDR)]
    pub cluster_cidr: String,
    /// Where the service proxy serves `/metrics` and `/healthz`, unauthenticated: loopback
    /// by default, as kube-proxy's `--metrics-bind-address` (`0.0.0.0:10249` for every
    /// address).
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], skiff_api::defaults::PROXY_METRICS_PORT)))]
    pub proxy_metrics_bind_address: SocketAddr,
    /// The resolv.conf pods with `dnsPolicy: Default` get, and so the servers cluster DNS
    /// forwards to (as kubelet's and k3s's `--resolv-conf`; default: /etc/resolv.conf).
    #[arg(long)]
    pub resolv_conf: Option<PathBuf>,
    /// Image registries' mirrors, credentials and TLS: a YAML file in the shape of k3s's
    /// `registries.yaml` (`mirrors.<registry>.endpoint`, `configs.<host>.auth`/`.tls`).
    #[arg(long)]
    pub registry_config: Option<PathBuf>,
    /// A mirror of an image registry, `REGISTRY=URL` (`docker.io=http://10.0.0.1:5000`;
    /// repeatable), tried before the registry itself, after those of
    /// `--registry-config`.
    #[arg(long = "registry-mirror", value_name = "REGISTRY=URL")]
    pub registry_mirrors: Vec<String>,
    /// Run N hollow nodes instead of a real one, as kubemark and kwok do for density
    /// tests: Nodes `<node-name>-0`..`<node-name>-<N-1>`, each with its own identity,
    /// Lease and pod watch, whose pods get an address and a Running status but no
    /// process. No proxy runs and nothing on the machine is changed.
    #[arg(long, value_name = "N")]
    pub hollow: Option<usize>,
    /// Image garbage collection.
    #[command(flatten)]
    pub image_gc: ImageGcArgs,
}

/// Pod networks for `skiff agent --network`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NetworkArg {
    /// In process over rtnetlink, as the CNI bridge and host-local plugins.
    Builtin,
    /// The CNI plugin binaries (bridge, host-local, portmap).
    Cni,
}

impl NetworkArg {
    /// The agent's setting.
    pub fn network(self) -> skiff_agent::Network {
        match self {
            NetworkArg::Builtin => skiff_agent::Network::Builtin,
            NetworkArg::Cni => skiff_agent::Network::Plugins,
        }
    }
}

/// Container runtimes for `skiff agent --runtime`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RuntimeArg {
    /// youki's libcontainer, in the agent's long-lived runtime service.
    Youki,
    /// A runc process per container operation.
    Runc,
}

impl RuntimeArg {
    /// The agent's setting.
    pub fn runtime(self) -> skiff_agent::RuntimeKind {
        match self {
            RuntimeArg::Youki => skiff_agent::RuntimeKind::Youki,
            RuntimeArg::Runc => skiff_agent::RuntimeKind::Runc,
        }
    }
}

/// Proxy dataplanes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProxyModeArg {
    /// kube-proxy's iptables mode.
    Iptables,
    /// kube-proxy's nftables mode.
    Nftables,
}

/// Arguments of `skiff proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Kubeconfig to reach the API with.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Name of the node this proxy runs on (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Dataplane.
    #[arg(long, value_enum, default_value_t = ProxyModeArg::Iptables)]
    pub proxy_mode: ProxyModeArg,
    /// Pod network of the cluster.
    #[arg(long, default_value = skiff_api::defaults::CLUSTER_CIDR)]
    pub cluster_cidr: String,
    /// Where to serve `/metrics` and `/healthz` (kube-proxy's `--metrics-bind-address`,
    /// e.g. `127.0.0.1:10249`); nowhere by default.
    #[arg(long)]
    pub metrics_bind_address: Option<SocketAddr>,
}

/// Arguments of `skiff dns`.
#[derive(Debug, Args)]
pub struct DnsArgs {
    /// Cluster domain.
    #[arg(long, default_value = skiff_api::defaults::CLUSTER_DOMAIN)]
    pub domain: String,
    /// TTL of cluster records, in seconds.
    #[arg(long, default_value_t = 5)]
    pub ttl: u32,
    /// Address to answer on (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0:53")]
    pub listen: SocketAddr,
    /// Upstream servers for other names (default: those of /etc/resolv.conf).
    #[arg(long, value_delimiter = ',')]
    pub upstream: Vec<SocketAddr>,
    /// Kubeconfig (default: in-cluster service-account credentials).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Do not serve: wait up to SECONDS for the DNS server beside this one (same
    /// network namespace) to be ready (`/ready` on 127.0.0.1:8181 answering 200), then
    /// exit 0 either way. The cluster DNS addon runs this as its postStart hook.
    #[arg(long, value_name = "SECONDS")]
    pub wait_ready: Option<u64>,
}

/// `skiff image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI or docker-archive tarball.
    Import {
        /// The tarball.
        file: PathBuf,
        /// Import into every node of this local cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// The agent's data directory (without --cluster).
        #[arg(long, default_value = "/var/lib/skiff/agent")]
        data_dir: PathBuf,
    },
    /// Load images onto nodes, skipping the layers each node has: from a `docker
    /// save`/`podman save` archive or an OCI image layout (directory or tar), or by name
    /// (`NAME[:TAG]`) from a running Docker or Podman, as `kind load docker-image`.
    Load {
        /// The archive or layout, or an image of Docker or Podman.
        source: String,
        #[command(flatten)]
        nodes: NodesArgs,
    },
    /// Pull an image from its registry into a node's store (as the kubelet would).
    Pull {
        /// The image reference (`nginx:1.27`, `registry:5000/app@sha256:...`).
        reference: String,
        /// Pull into every node of this local cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// The agent's data directory (without --cluster).
        #[arg(long, default_value = "/var/lib/skiff/agent")]
        data_dir: PathBuf,
        /// Registry mirrors, credentials and TLS (as `skiff agent --registry-config`).
        #[arg(long)]
        registry_config: Option<PathBuf>,
        /// A registry mirror, `REGISTRY=URL` (repeatable).
        #[arg(long = "registry-mirror", value_name = "REGISTRY=URL")]
        registry_mirrors: Vec<String>,
    },
    /// List a node's images, as `crictl images`: one table per node with several.
    Ls {
        #[command(flatten)]
        nodes: NodesArgs,
        /// Only the image IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images (references, IDs or ID prefixes) from nodes, as `crictl rmi`; an
    /// image a container on the node uses is refused.
    Rm {
        /// The images.
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
        #[command(flatten)]
        nodes: NodesArgs,
    },
}

/// Which nodes' image stores a `skiff image` command acts on.
#[derive(Debug, Clone, Args)]
pub struct NodesArgs {
    /// Every node of this local cluster (or those of `--nodes`).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Only these nodes of the cluster (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// The agent's data directory (without --cluster).
    #[arg(long, default_value = "/var/lib/skiff/agent")]
    pub data_dir: PathBuf,
}

/// Client certificates for an etcd datastore (kube-apiserver's flags).
#[derive(Debug, Clone, Default, Args)]
pub struct EtcdTlsArgs {
    /// CA bundle that signed the etcd members' serving certificates.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate presented to etcd.
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    /// Key of the client certificate.
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
}

impl EtcdTlsArgs {
    /// The store's options for these flags.
    pub fn open_options(&self) -> skiff_store::OpenOptions {
        skiff_store::OpenOptions {
            etcd_tls: skiff_store::EtcdTls {
                ca_file: self.etcd_cafile.clone(),
                cert_file: self.etcd_certfile.clone(),
                key_file: self.etcd_keyfile.clone(),
            },
        }
    }
}

/// `skiff datastore ...`.
#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Copy every key of one datastore into another, e.g. a server's SQLite file into
    /// etcd. Stop the servers first. Values are copied as they are; every object's
    /// resourceVersion changes, so clients relist.
    Migrate(MigrateArgs),
}

/// Arguments of `skiff datastore migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Datastore URL to read (e.g. sqlite:///var/lib/skiff/server/state.db).
    #[arg(long)]
    pub from: String,
    /// Datastore URL to write (e.g. etcd://10.0.0.1:2379,10.0.0.2:2379).
    #[arg(long)]
    pub to: String,
    /// Replace the target's contents even if it is not empty.
    #[arg(long)]
    pub force: bool,
    /// etcd client certificates (used for whichever side is etcd).
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
}
