//! Well-known names: labels, annotations, taints, namespaces, users.

/// Namespaces the API server creates on start.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Label every Deployment-owned ReplicaSet and Pod carries.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Annotation holding a Deployment's (and its ReplicaSets') rollout revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Annotation `kubectl apply` keeps the last applied configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages an EndpointSlice.
pub const ENDPOINTSLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Value of [`ENDPOINTSLICE_MANAGED_BY_LABEL`] for slices the controller owns.
pub const ENDPOINTSLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// Label every node carries with its name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Role label of control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// Taint kept on control-plane nodes (effect NoSchedule).
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";
/// Taint for nodes whose Ready condition is False.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// Taint for nodes whose Ready condition is Unknown.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Taint (as the scheduler sees it) of nodes marked unschedulable (`kubectl cordon`).
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// User name the admin client certificate carries (CN).
pub const ADMIN_USER: &str = "kubernetes-admin";
/// Group of the admin user (O of the client certificate), bound to cluster-admin.
pub const ADMIN_GROUP: &str = "system:masters";
/// Group of the nodes' identities (`system:node:<name>`), as kube's kubelets.
pub const NODES_GROUP: &str = "system:nodes";
/// Group of bootstrap identities: the join token, which may only fetch node credentials.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// Where an agent holding the join token fetches its node credentials (skiff's own, as
/// k3s's node certificate endpoints; kubeadm uses CertificateSigningRequests).
pub const NODE_CREDENTIALS_PATH: &str = "/skiff/v1/node-credentials";

/// The default StorageClass the server installs (kind's name for it).
pub const DEFAULT_STORAGE_CLASS: &str = "standard";
/// The provisioner of the default StorageClass (local-path-provisioner's name, as kind
/// and k3s ship it); skiff's controllers provision for it.
pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
/// Annotation the scheduler sets on an unbound WaitForFirstConsumer claim with the node
/// chosen for its first pod.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// Node annotation with the absolute directory the node's agent keeps local-path
/// volumes under (skiff's own).
pub const LOCAL_PATH_DIR_ANNOTATION: &str = "storage.skiff.dev/local-path";
/// Annotation on a PV naming the provisioner that made it.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// Annotation on a claim naming the provisioner asked to provision it.
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`STORAGE_PROVISIONER_ANNOTATION`], still set by kube.
pub const BETA_STORAGE_PROVISIONER_ANNOTATION: &str =
    "volume.beta.kubernetes.io/storage-provisioner";
/// Annotation the binder sets on a claim once it has finished binding.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Annotation the binder sets on a claim or volume whose binding it made.
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// Finalizer that keeps a claim while a pod uses it.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// Finalizer that keeps a volume while a claim is bound to it.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";
