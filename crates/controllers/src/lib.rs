//! skiff-controllers: kube-controller-manager's control loops, each a client of the API
//! through kube-rs, so that each could run against any Kubernetes API server.
//!
//! Every controller follows client-go's pattern: shared informers (one watch per kind,
//! see [`informer`]) feed a deduplicating [`queue::WorkQueue`] of object keys, and
//! workers reconcile one key at a time from the informers' caches.

pub mod clusterroleaggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub use skiff_runtime::events;
pub mod gc;
pub mod hash;
pub mod hpa;
pub use skiff_runtime::informer;
pub mod ipam;
pub mod job;
pub mod loadbalancer;
pub mod localpath;
pub mod mirroring;
pub mod namespace;
pub mod nodelifecycle;
pub mod podcontrol;
pub mod podendpoint;
pub mod podrank;
pub mod pvbinder;
pub mod queue;
pub mod replicaset;
pub mod rollout;
pub mod serviceaccount;
pub mod statefulset;
#[cfg(test)]
mod testing;
pub mod triggers;
pub mod ttlafterfinished;
pub mod util;
pub mod volumeprotection;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Service,
    ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{Api, Client};

use crate::informer::Informer;

/// Settings of the controllers (kube-controller-manager's flags of the same meaning).
#[derive(Debug, Clone)]
pub struct ControllersConfig {
    /// `--cluster-cidr`: the pod network nodes get their blocks from.
    pub cluster_cidr: String,
    /// `--node-cidr-mask-size`: prefix length of each node's block.
    pub node_cidr_mask: u8,
    /// `--node-monitor-grace-period`: how long a node may be silent before it is Unknown.
    pub node_monitor_grace_period: Duration,
    /// Eviction delay for pods without a toleration for the unreachable/not-ready taints
    /// (admission normally adds one of 300 s, which takes precedence).
    pub pod_eviction_timeout_default: Duration,
    /// Issuer of service account tokens (unused: the API server signs tokens).
    pub service_account_issuer: String,
    /// `--controllers`: which controllers run. `*` is every one, `name` enables one,
    /// `-name` disables one (names as kube-controller-manager's: `endpoint`,
    /// `endpointslice`, `endpointslicemirroring`, `replicaset`, `deployment`, `daemonset`,
    /// `garbage-collector`, `namespace`, `nodeipam`, `nodelifecycle`, `serviceaccount`,
    /// `service-lb-controller`, `clusterrole-aggregation`, `job`, `cronjob`, `ttl-after-finished`,
    /// `disruption`, `horizontalpodautoscaling`, `persistentvolume-binder`, `pvc-protection`, `pv-protection`,
    /// `statefulset`; and skiff's `local-path-provisioner`).
    pub controllers: Vec<String>,
}

impl ControllersConfig {
    /// Whether the controller `name` runs under [`ControllersConfig::controllers`]
    /// (an explicit `name` or `-name` wins over `*`).
    pub fn enabled(&self, name: &str) -> bool {
        let mut star = false;
        for c in &self.controllers {
            if c == name {
                return true;
            }
            if c.strip_prefix('-') == Some(name) {
                return false;
            }
            star |= c == "*";
        }
        star
    }
}

impl Default for ControllersConfig {
    fn default() -> Self {
        ControllersConfig {
            cluster_cidr: skiff_api::defaults::CLUSTER_CIDR.to_string(),
            node_cidr_mask: skiff_api::defaults::NODE_CIDR_MASK,
            node_monitor_grace_period: Duration::from_secs(
                skiff_api::defaults::NODE_MONITOR_GRACE_SECONDS,
            ),
            pod_eviction_timeout_default: Duration::from_secs(
                skiff_api::defaults::DEFAULT_TOLERATION_SECONDS as u64,
            ),
            service_account_issuer: "https://kubernetes.default.svc.cluster.local".to_string(),
            controllers: vec!["*".to_string()],
        }
    }
}

/// The shared informers the controllers read from.
#[derive(Clone)]
pub struct Informers {
    /// All pods.
    pub pods: std::sync::Arc<Informer<Pod>>,
    /// All nodes.
    pub nodes: std::sync::Arc<Informer<Node>>,
    /// All ReplicaSets.
    pub replicasets: std::sync::Arc<Informer<ReplicaSet>>,
    /// All Deployments.
    pub deployments: std::sync::Arc<Informer<Deployment>>,
    /// All Services.
    pub services: std::sync::Arc<Informer<Service>>,
    /// All Namespaces.
    pub namespaces: std::sync::Arc<Informer<Namespace>>,
    /// All ServiceAccounts.
    pub serviceaccounts: std::sync::Arc<Informer<ServiceAccount>>,
    /// Leases of `kube-node-lease`.
    pub node_leases: std::sync::Arc<Informer<Lease>>,
    /// All Endpoints (the Endpoints and mirroring controllers share one watch).
    pub endpoints: std::sync::Arc<Informer<Endpoints>>,
    /// All EndpointSlices (the EndpointSlice and mirroring controllers share one watch).
    pub endpointslices: std::sync::Arc<Informer<EndpointSlice>>,
    /// All ClusterRoles.
    pub clusterroles: std::sync::Arc<Informer<ClusterRole>>,
    /// All DaemonSets.
    pub daemonsets: std::sync::Arc<Informer<DaemonSet>>,
    /// All ControllerRevisions.
    pub controllerrevisions: std::sync::Arc<Informer<ControllerRevision>>,
    /// All Jobs.
    pub jobs: std::sync::Arc<Informer<Job>>,
    /// All CronJobs.
    pub cronjobs: std::sync::Arc<Informer<CronJob>>,
    /// All PodDisruptionBudgets.
    pub pdbs: std::sync::Arc<Informer<PodDisruptionBudget>>,
    /// All PersistentVolumeClaims.
    pub pvcs: std::sync::Arc<Informer<PersistentVolumeClaim>>,
    /// All PersistentVolumes.
    pub pvs: std::sync::Arc<Informer<PersistentVolume>>,
    /// All StorageClasses.
    pub storageclasses: std::sync::Arc<Informer<StorageClass>>,
    /// All StatefulSets.
    pub statefulsets: std::sync::Arc<Informer<StatefulSet>>,
}

impl Informers {
    /// Starts every shared informer.
    pub fn start(client: &Client) -> Self {
        Informers {
            pods: Informer::spawn_indexed(Api::all(client.clone()), podendpoint::pod_index),
            nodes: Informer::spawn(Api::all(client.clone())),
            replicasets: Informer::spawn_indexed(
                Api::all(client.clone()),
                podendpoint::owned_index,
            ),
            deployments: Informer::spawn(Api::all(client.clone())),
            services: Informer::spawn_indexed(Api::all(client.clone()), podendpoint::service_index),
            namespaces: Informer::spawn(Api::all(client.clone())),
            serviceaccounts: Informer::spawn(Api::all(client.clone())),
            node_leases: Informer::spawn(Api::namespaced(client.clone(), "kube-node-lease")),
            endpoints: Informer::spawn(Api::all(client.clone())),
            endpointslices: Informer::spawn(Api::all(client.clone())),
            clusterroles: Informer::spawn(Api::all(client.clone())),
            daemonsets: Informer::spawn(Api::all(client.clone())),
            controllerrevisions: Informer::spawn(Api::all(client.clone())),
            jobs: Informer::spawn(Api::all(client.clone())),
            cronjobs: Informer::spawn(Api::all(client.clone())),
            pdbs: Informer::spawn(Api::all(client.clone())),
            pvcs: Informer::spawn(Api::all(client.clone())),
            pvs: Informer::spawn(Api::all(client.clone())),
            storageclasses: Informer::spawn(Api::all(client.clone())),
            statefulsets: Informer::spawn(Api::all(client.clone())),
        }
    }
}

/// Gives each controller its client: `client_for(service_account)` is the client of the
/// controller whose identity is that service account of `kube-system` (kube-controller-
/// manager's `--use-service-account-credentials`, so that each runs under its
/// `system:controller:<name>` role).
pub type ClientFor = dyn Fn(&str) -> anyhow::Result<Client> + Send + Sync;

/// Runs every controller forever, every one with `client` (tests; an admin client).
pub async fn run(client: Client, cfg: ControllersConfig) -> anyhow::Result<()> {
    let each = client.clone();
    run_as(client, &move |_| Ok(each.clone()), cfg).await
}

/// Runs every controller forever: the shared informers read with `informers` (kube-
/// controller-manager's own identity, which may list and watch everything), each
/// controller writes with its own identity from `client_for`.
pub async fn run_as(
    informers: Client,
    client_for: &ClientFor,
    cfg: ControllersConfig,
) -> anyhow::Result<()> {
    let alloc = ipam::RangeAllocator::new(&cfg.cluster_cidr, cfg.node_cidr_mask)?;
    let inf = Informers::start(&informers);
    let on = |name: &str| cfg.enabled(name);
    // kube's controller names and the service accounts they run as.
    if on("nodeipam") {
        ipam::run(client_for("node-controller")?, inf.nodes.clone(), alloc);
    }
    if on("replicaset") {
        replicaset::run(client_for("replicaset-controller")?, &inf);
    }
    if on("daemonset") {
        daemonset::run(client_for("daemon-set-controller")?, &inf);
    }
    if on("statefulset") {
        statefulset::run(client_for("statefulset-controller")?, &inf);
    }
    if on("deployment") {
        deployment::run(client_for("deployment-controller")?, &inf);
    }
    if on("endpoint") {
        endpoints::run(client_for("endpoint-controller")?, &inf);
    }
    if on("endpointslice") {
        endpointslice::run(client_for("endpointslice-controller")?, &inf);
    }
    if on("endpointslicemirroring") {
        mirroring::run(client_for("endpointslicemirroring-controller")?, &inf);
    }
    if on("serviceaccount") {
        serviceaccount::run(client_for("service-account-controller")?, &inf);
    }
    if on("service-lb-controller") {
        loadbalancer::run(client_for("service-controller")?, &inf);
    }
    if on("nodelifecycle") {
        nodelifecycle::run(client_for("node-controller")?, &inf, &cfg);
    }
    if on("clusterrole-aggregation") {
        clusterroleaggregation::run(client_for("clusterrole-aggregation-controller")?, &inf);
    }
    if on("job") {
        job::run(client_for("job-controller")?, &inf);
    }
    if on("cronjob") {
        cronjob::run(client_for("cronjob-controller")?, &inf);
    }
    if on("ttl-after-finished") {
        ttlafterfinished::run(client_for("ttl-after-finished-controller")?, &inf);
    }
    if on("disruption") {
        disruption::run(client_for("disruption-controller")?, &inf);
    }
    if on("persistentvolume-binder") {
        pvbinder::run(client_for("persistent-volume-binder")?, &inf);
    }
    if on("pvc-protection") {
        volumeprotection::run_pvc_protection(client_for("pvc-protection-controller")?, &inf);
    }
    if on("pv-protection") {
        volumeprotection::run_pv_protection(client_for("pv-protection-controller")?, &inf);
    }
    if on("local-path-provisioner") {
        localpath::run(client_for("local-path-provisioner")?, &inf);
    }
    if on("horizontalpodautoscaling") {
        hpa::run(client_for("horizontal-pod-autoscaler")?);
    }
    if on("namespace") {
        namespace::run(client_for("namespace-controller")?, &inf);
    }
    if on("garbage-collector") {
        gc::run(client_for("generic-garbage-collector")?).await
    } else {
        futures::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag_enables_and_disables_by_name() {
        let cfg = |v: &[&str]| ControllersConfig {
            controllers: v.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(ControllersConfig::default().enabled("endpoint"));
        assert!(!cfg(&["*", "-endpoint"]).enabled("endpoint"));
        assert!(cfg(&["*", "-endpoint"]).enabled("endpointslice"));
        assert!(cfg(&["replicaset"]).enabled("replicaset"));
        assert!(!cfg(&["replicaset"]).enabled("deployment"));
        assert!(!cfg(&[]).enabled("replicaset"));
    }
}
