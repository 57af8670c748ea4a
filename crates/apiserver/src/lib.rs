//! skiff-apiserver: a Kubernetes API server that real kubectl drives.
//!
//! [`Server::start`] makes or loads the PKI under the data directory, opens the datastore
//! (a SQLite file by default, or etcd), creates the bootstrap objects (system namespaces,
//! the `kubernetes` Service and its endpoints) and serves HTTPS on the configured listeners. Per-kind rules
//! (discovery, OpenAPI, defaults, validation, patching, tables) come from skiff-resources.

mod admission;
mod apiservices;
mod authn;
mod authz;
mod bootstrap;
mod conversion;
mod crds;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod masterleases;
mod metrics;
mod nodecreds;
mod nodemetrics;
mod nodeproxy;
pub mod pki;
mod proto;
mod request;
mod rest;
mod router;
mod selectors;
mod serve;
mod state;
mod status;
mod storage;
mod strategy;
mod watch;
mod watchcache;
mod webhookclient;

pub use metrics::MetricsSource;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine;

use crate::state::ApiState;

/// How to run the server.
#[derive(Debug)]
pub struct ServerConfig {
    /// Directory for `pki/`, `token` and `state.db` (the default datastore).
    pub data_dir: PathBuf,
    /// Address to listen on (default `0.0.0.0:6443`).
    pub bind: SocketAddr,
    /// Pre-bound sockets served the same way (e.g. `127.0.0.1:port` in another netns).
    pub extra_listeners: Vec<std::net::TcpListener>,
    /// Node IP: address of the `kubernetes` endpoints and a SAN of the serving
    /// certificate. Default: the first non-loopback IPv4 address of the host.
    pub advertise_address: Option<Ipv4Addr>,
    /// More SANs (names or IPs) for the serving certificate.
    pub extra_sans: Vec<String>,
    /// Range cluster IPs are allocated from (e.g. `10.96.0.0/12`).
    pub service_cidr: String,
    /// Inclusive range node ports are allocated from (e.g. `(30000, 32767)`).
    pub node_port_range: (u16, u16),
    /// Datastore URL (`sqlite:///path`, `etcd://host:2379,...[/prefix]`); default
    /// `sqlite://<data_dir>/state.db`.
    pub datastore: Option<String>,
    /// Settings of the datastore outside its URL (etcd client certificates).
    pub datastore_options: skiff_store::OpenOptions,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("/var/lib/skiff/server"),
            bind: SocketAddr::from(([0, 0, 0, 0], skiff_api::defaults::API_SERVER_PORT)),
            extra_listeners: Vec::new(),
            advertise_address: None,
            extra_sans: Vec::new(),
            service_cidr: skiff_api::defaults::SERVICE_CIDR.to_string(),
            node_port_range: (
                skiff_api::defaults::NODE_PORT_MIN,
                skiff_api::defaults::NODE_PORT_MAX,
            ),
            datastore: None,
            datastore_options: skiff_store::OpenOptions::default(),
        }
    }
}

/// The API server.
pub struct Server;

/// A running server.
pub struct ServerHandle {
    client_ip: Ipv4Addr,
    port: u16,
    ca_der: Vec<u8>,
    /// The CA, to sign the in-process components' certificates.
    pki: pki::Pki,
    admin_cert: String,
    admin_key: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    state: Arc<ApiState>,
}

/// Signs client identities for the server's own components (see
/// [`ServerHandle::issuer`]).
#[derive(Clone)]
pub struct ClientIssuer {
    /// The admin configuration, whose credentials are replaced.
    base: kube::Config,
    pki: pki::Pki,
}

impl ClientIssuer {
    /// Client configuration as the user `user` in `groups` (a fresh certificate).
    pub fn config_as(&self, user: &str, groups: &[&str]) -> Result<kube::Config> {
        let mut c = self.base.clone();
        let creds = pki::issue_client(&self.pki, user, groups)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        c.auth_info.client_certificate_data = Some(b64.encode(&creds.certificate));
        c.auth_info.client_key_data = Some(secrecy::SecretString::from(b64.encode(&creds.key)));
        Ok(c)
    }

    /// Client configuration as the service account `name` of `namespace`, with the
    /// groups kube gives service accounts (kube-controller-manager's controllers run so).
    pub fn config_as_service_account(&self, namespace: &str, name: &str) -> Result<kube::Config> {
        self.config_as(
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
            ],
        )
    }
}

/// A listener with kube-apiserver's accept queue (the kernel's `somaxconn`, 4096 by
/// default): thousands of nodes reconnect at once after a restart, and tokio's `bind`
/// asks for 1024.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The first non-loopback IPv4 address of the host's interfaces (loopback if none).
fn default_advertise() -> Ipv4Addr {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Ipv4Addr::LOCALHOST;
    };
    for a in addrs {
        if let Some(ip) = a
            .address
            .as_ref()
            .and_then(|s| s.as_sockaddr_in())
            .map(|s| s.ip())
        {
            if !ip.is_loopback() && !ip.is_unspecified() {
                return ip;
            }
        }
    }
    Ipv4Addr::LOCALHOST
}

impl Server {
    /// Loads or makes the PKI and the store, bootstraps the built-in objects and serves.
    pub async fn start(cfg: ServerConfig) -> Result<ServerHandle> {
        // Several crates may pull in rustls providers; pick ring explicitly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The data directory holds the cluster's keys and (by default) its database:
        // private to the server's user, also when an older version made it wider.
        pki::secure_data_dir(&cfg.data_dir)?;
        let advertise = cfg.advertise_address.unwrap_or_else(default_advertise);
        // In-process clients connect to the bind address (loopback when bound to all).
        let client_ip = match cfg.bind.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => ip,
            _ => Ipv4Addr::LOCALHOST,
        };
        let mut sans = cfg.extra_sans.clone();
        sans.push(client_ip.to_string());
        let datastore = cfg
            .datastore
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", cfg.data_dir.join("state.db").display()));
        let store = skiff_store::open_with(&datastore, &cfg.datastore_options)
            .with_context(|| format!("opening the datastore {datastore}"))?;
        skiff_store::spawn_compactor(
            store.clone(),
            std::time::Duration::from_secs(60),
            10_000,
            std::time::Duration::from_secs(300),
        );
        // Cluster-wide secrets (CA, service-account key, join token) come from the
        // datastore when another server made them first, so that servers sharing one
        // datastore form one cluster.
        let adopted = pki::adopt_shared(&cfg.data_dir, &store)?;
        let mut pki = pki::ensure(&cfg.data_dir, advertise, &sans)?;
        if !adopted && !pki::publish_shared(&cfg.data_dir, &store)? {
            // Another server initialised the datastore meanwhile: take its secrets.
            pki::adopt_shared(&cfg.data_dir, &store)?;
            pki = pki::ensure(&cfg.data_dir, advertise, &sans)?;
        }
        let sa_keys = authn::tokens::SigningKeys::from_pem(&pki.sa_key, &pki.sa_pub)
            .context("loading the service-account key")?;
        let service_cidr: ipnet::Ipv4Net = cfg
            .service_cidr
            .parse()
            .with_context(|| format!("parsing service CIDR {}", cfg.service_cidr))?;

        let listener = listen(cfg.bind).with_context(|| format!("binding {}", cfg.bind))?;
        let port = listener.local_addr()?.port();
        // RBAC decides on the stored roles and bindings from the first request on.
        let rbac = Arc::new(authz::rbac::Rbac::new());
        let rbac_rev = authz::rbac::sync::load(store.as_ref(), &rbac)
            .context("loading the RBAC roles and bindings")?;
        // kube-apiserver's `--authorization-mode=Node,RBAC`, after the superusers; shared
        // with the RBAC escalation check, which asks it about `escalate` and `bind`.
        let authz = Arc::new(authz::Chain::new(vec![
            Box::new(authz::PrivilegedGroups::new(&[
                authz::PrivilegedGroups::MASTERS,
            ])),
            Box::new(authz::node::NodeAuthorizer::new(store.clone())),
            Box::new(rbac.clone()),
        ]));
        let state = Arc::new(ApiState {
            store: store.clone(),
            pki: pki.clone(),
            authn: authn::Authenticator::new(pki.join_token.clone(), sa_keys, store.clone()),
            authz: authz.clone(),
            service_cidr,
            advertise,
            port,
            admission: admission::Chain::new(vec![
                Box::new(admission::NamespaceLifecycle::new(store.clone())),
                Box::new(admission::NodeRestriction::new(store.clone())),
                Box::new(admission::ServiceAccount),
                Box::new(admission::ServiceIps::new(
                    store.clone(),
                    service_cidr,
                    cfg.node_port_range,
                )),
                Box::new(admission::RbacEscalation::new(
                    rbac.clone(),
                    authz,
                    store.clone(),
                )),
                Box::new(admission::DefaultStorageClass::new(store.clone())),
                Box::new(admission::StorageObjectInUseProtection),
                Box::new(admission::PodSecurity::new(store.clone())),
                Box::new(admission::CertificateRequester),
            ]),
            webhooks: admission::Webhooks::new(store.clone()),
            watch_metrics: Default::default(),
            request_metrics: Default::default(),
            watch_cache: Default::default(),
            extra_metrics: Default::default(),
            node_stats: Default::default(),
        });
        let rbac_sync = tokio::spawn(authz::rbac::sync::run(store.clone(), rbac, rbac_rev));
        // Services stored without reservations (by an older server) get them before
        // anything is allocated.
        admission::repair_allocations_once(store.as_ref())
            .map_err(|e| anyhow::anyhow!("repairing Service allocations: {}", e.message))?;
        bootstrap::run(&state)
            .await
            .map_err(|e| anyhow::anyhow!("creating the bootstrap objects: {}", e.message))?;
        // The kubernetes Service's endpoints: every live server, this one included.
        masterleases::reconcile_once(&state)
            .await
            .map_err(|e| anyhow::anyhow!("writing the kubernetes endpoints: {}", e.message))?;

        // Custom resources are served from the first request on.
        let crd_controllers = crds::start(state.clone()).await?;

        let tls = serve::tls_config(&pki)?;
        let mut tasks = vec![
            rbac_sync,
            crd_controllers,
            tokio::spawn(serve::accept_loop(listener, tls.clone(), state.clone())),
            tokio::spawn(masterleases::run(state.clone())),
            tokio::spawn(admission::repair_allocations(store.clone())),
        ];
        for l in cfg.extra_listeners {
            l.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(l)?;
            tasks.push(tokio::spawn(serve::accept_loop(
                l,
                tls.clone(),
                state.clone(),
            )));
        }
        let ca_der = rustls_pemfile::certs(&mut pki.ca_cert.as_bytes())
            .next()
            .context("no CA certificate")??
            .to_vec();
        tracing::info!(%port, %advertise, "API server listening");
        Ok(ServerHandle {
            client_ip,
            port,
            ca_der,
            admin_cert: pki.admin_cert.clone(),
            admin_key: pki.admin_key.clone(),
            pki,
            tasks,
            state,
        })
    }
}

impl ServerHandle {
    /// The port the main listener is bound to (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Client configuration for `https://127.0.0.1:<port>` (or the bind address when the
    /// server is bound to one address) as the admin user.
    pub fn admin_client_config(&self) -> kube::Config {
        let url = format!("https://{}:{}", self.client_ip, self.port);
        let mut c = kube::Config::new(url.parse().unwrap_or_default());
        c.root_cert = Some(vec![self.ca_der.clone()]);
        let b64 = base64::engine::general_purpose::STANDARD;
        c.auth_info.client_certificate_data = Some(b64.encode(&self.admin_cert));
        c.auth_info.client_key_data =
            Some(secrecy::SecretString::from(b64.encode(&self.admin_key)));
        c
    }

    /// Client configuration for the same address as the user `user` in `groups`, with
    /// a client certificate the cluster CA signs now (the in-process components' own
    /// identities, as kube-scheduler's and kube-controller-manager's kubeconfigs).
    pub fn client_config_as(&self, user: &str, groups: &[&str]) -> Result<kube::Config> {
        self.issuer().config_as(user, groups)
    }

    /// Serves `source`'s text on `/metrics` too, after the server's own metrics: how the
    /// controllers and the scheduler running in this process publish theirs.
    pub fn add_metrics_source(&self, source: metrics::MetricsSource) {
        self.state.extra_metrics.add(source);
    }

    /// What signs the in-process components' identities, to keep after the handle.
    pub fn issuer(&self) -> ClientIssuer {
        ClientIssuer {
            base: self.admin_client_config(),
            pki: self.pki.clone(),
        }
    }

    /// Serves until a listener fails.
    pub async fn wait(mut self) -> Result<()> {
        for t in std::mem::take(&mut self.tasks) {
            t.await.context("listener task")?;
        }
        Ok(())
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
