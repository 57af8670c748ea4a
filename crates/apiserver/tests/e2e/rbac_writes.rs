//! Writes judged by who writes: RBAC's escalation check of roles and bindings, RBAC
//! validation, and NodeRestriction, with identities minted as client certificates signed
//! by the test cluster's CA, through kube-rs and the real kubectl.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use skiff_testkit::kubectl::{self, Kubectl};

use crate::common::{self, TestServer};

/// An identity of the test cluster: a client certificate and its key (PEM).
struct Creds {
    cert: String,
    key: String,
}

/// A client certificate for `user` in `group`, signed by the cluster CA.
fn mint(dir: &Path, user: &str, group: &str) -> Creds {
    let pki = dir.join("pki");
    let ca_cert = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert, &ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, group);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, user);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Creds {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kube-rs client with `c`.
fn client(s: &TestServer, c: &Creds) -> kube::Client {
    let mut cfg = s.handle.admin_client_config();
    cfg.auth_info.client_certificate_data = Some(b64(&c.cert));
    cfg.auth_info.client_key_data = Some(b64(&c.key).into());
    kube::Client::try_from(cfg).unwrap()
}

/// kubectl `bin` with `c`, through a kubeconfig of its own named `name`.
fn kubectl_as(s: &TestServer, bin: PathBuf, c: &Creds, name: &str) -> Kubectl {
    let ca = std::fs::read_to_string(s.dir.path().join("pki/ca.crt")).unwrap();
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "t", "cluster": {
            "server": format!("https://127.0.0.1:{}", s.handle.port()),
            "certificate-authority-data": b64(&ca)}}],
        "users": [{"name": "u", "user": {
            "client-certificate-data": b64(&c.cert), "client-key-data": b64(&c.key)}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
        "current-context": "t",
    });
    let path = s.dir.path().join(format!("kubeconfig-{name}"));
    std::fs::write(&path, config.to_string()).unwrap();
    Kubectl::new(bin, path).cache_dir(s.dir.path().join(format!("cache-{name}")))
}

/// kubectl 1.27 and 1.33, the oldest and newest clients skiff serves.
fn kubectls() -> Vec<PathBuf> {
    let bins = kubectl::versions(&["1.27", "1.33"]);
    assert_eq!(bins.len(), 2, "kubectl 1.27 and 1.33 are missing");
    bins
}

/// An API error's code and message.
fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Retries `f` until it succeeds: RBAC follows the store through a watch, so a grant
/// takes effect a moment after it is written.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut last = None;
    for _ in 0..100 {
        match f().await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: {last:?}");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

const BOB_GROUPS: &str = "[\"system:authenticated\"]";

/// Grants bob cluster-wide `rules` through a ClusterRole and binding named `name`.
async fn grant(admin: &kube::Client, name: &str, rules: Value) {
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    roles
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": name}, "rules": rules})),
        )
        .await
        .unwrap();
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    bindings
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "User", "name": "bob"}]})),
        )
        .await
        .unwrap();
}

fn cluster_role(name: &str, verbs: &[&str]) -> ClusterRole {
    obj(json!({"metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}]}))
}

fn role_binding(name: &str, kind: &str, role: &str) -> RoleBinding {
    obj(json!({"metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"kind": "User", "name": "alice"}]}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_bindings_grant_only_what_the_writer_holds() {
    let s = common::start().await;
    let admin = s.client();
    let bob_creds = mint(s.dir.path(), "bob", "system:authenticated");
    let bob = client(&s, &bob_creds);
    // bob reads pods and writes RBAC objects, nothing more.
    grant(
        &admin,
        "bob",
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "clusterroles", "rolebindings", "clusterrolebindings"], "verbs": ["create", "update", "get"]},
        ]),
    )
    .await;
    let roles: Api<ClusterRole> = Api::all(bob.clone());
    let pp = PostParams::default();
    let reader = cluster_role("reader", &["get"]);
    eventually("bob creates a role he holds", || roles.create(&pp, &reader)).await;
    let (code, msg) = api_err(
        roles
            .create(&pp, &cluster_role("deleter", &["get", "delete"]))
            .await,
    );
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        format!("clusterroles.rbac.authorization.k8s.io \"deleter\" is forbidden: user \"bob\" (groups={BOB_GROUPS}) is attempting to grant RBAC permissions not currently held:\n{{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}}")
    );
    // A Role in a namespace is checked against what bob holds there.
    let ns_roles: Api<Role> = Api::namespaced(bob.clone(), "default");
    let (code, msg) = api_err(
        ns_roles
            .create(&pp, &obj(json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})))
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        msg.starts_with("roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"bob\""),
        "{msg}"
    );
    // Updating his own role to more than he holds is refused too.
    let mut reader = roles.get("reader").await.unwrap();
    reader.rules.as_mut().unwrap()[0]
        .verbs
        .push("delete".into());
    let (code, _) = api_err(roles.replace("reader", &pp, &reader).await);
    assert_eq!(code, 403);

    // Bindings: to a role bob holds, yes; to admin, no; to a missing role, 404.
    let rbs: Api<RoleBinding> = Api::namespaced(bob.clone(), "default");
    rbs.create(&pp, &role_binding("to-reader", "ClusterRole", "reader"))
        .await
        .unwrap();
    let (code, msg) = api_err(
        rbs.create(&pp, &role_binding("to-admin", "ClusterRole", "admin"))
            .await,
    );
    assert_eq!(code, 403, "{msg}");
    assert!(
        msg.starts_with(&format!("rolebindings.rbac.authorization.k8s.io \"to-admin\" is forbidden: user \"bob\" (groups={BOB_GROUPS}) is attempting to grant RBAC permissions not currently held:\n{{APIGroups:[")),
        "{msg}"
    );
    let (code, msg) = api_err(
        rbs.create(&pp, &role_binding("to-missing", "Role", "missing"))
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (404, "roles.rbac.authorization.k8s.io \"missing\" not found")
    );

    // `bind` on the admin ClusterRole, in default only, lets bob bind it there.
    let admin_roles: Api<Role> = Api::namespaced(admin.clone(), "default");
    admin_roles
        .create(&pp, &obj(json!({"metadata": {"name": "bind-admin"}, "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["admin"]}]})))
        .await
        .unwrap();
    let admin_rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    admin_rbs
        .create(&pp, &obj(json!({"metadata": {"name": "bind-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bind-admin"},
            "subjects": [{"kind": "User", "name": "bob"}]})))
        .await
        .unwrap();
    let to_admin = role_binding("to-admin", "ClusterRole", "admin");
    eventually("bob binds admin with bind", || rbs.create(&pp, &to_admin)).await;
    let crbs: Api<ClusterRoleBinding> = Api::all(bob.clone());
    let crb: ClusterRoleBinding = obj(json!({"metadata": {"name": "to-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "alice"}]}));
    let (code, _) = api_err(crbs.create(&pp, &crb).await);
    assert_eq!(
        code, 403,
        "bind in default does not reach the cluster scope"
    );

    // `escalate` on clusterroles lets bob write any ClusterRole.
    grant(
        &admin,
        "escalate",
        json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["escalate"]}]),
    )
    .await;
    let deleter = cluster_role("deleter", &["delete"]);
    eventually("bob escalates", || roles.create(&pp, &deleter)).await;
    // The admin (system:masters) is never checked.
    Api::<ClusterRole>::all(admin.clone())
        .create(&pp, &obj(json!({"metadata": {"name": "everything"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})))
        .await
        .unwrap();

    // kubectl shows kube's message.
    for bin in kubectls() {
        let k = kubectl_as(&s, bin, &bob_creds, "bob");
        let out = blocking(move || {
            k.run(&[
                "create",
                "role",
                "killer",
                "--verb=delete",
                "--resource=secrets",
            ])
        })
        .await;
        let (ok, _, err) = out.parts();
        assert!(!ok);
        assert!(
            err.contains(&format!("roles.rbac.authorization.k8s.io \"killer\" is forbidden: user \"bob\" (groups={BOB_GROUPS}) is attempting to grant RBAC permissions not currently held:\n{{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"delete\"]}}")),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_keep_their_role_ref_and_are_validated() {
    let s = common::start().await;
    let admin = s.client();
    let pp = PostParams::default();
    let rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    rbs.create(&pp, &role_binding("b", "ClusterRole", "view"))
        .await
        .unwrap();
    let mut b = rbs.get("b").await.unwrap();
    b.role_ref.name = "edit".into();
    let (code, msg) = api_err(rbs.replace("b", &pp, &b).await);
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "RoleBinding.rbac.authorization.k8s.io \"b\" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"
    );
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let bad: ClusterRoleBinding = obj(json!({"metadata": {"name": "bad"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default"}, {"kind": "Robot", "name": "r"}]}));
    let (code, msg) = api_err(crbs.create(&pp, &bad).await);
    assert_eq!(code, 422);
    assert_eq!(
        msg,
        "ClusterRoleBinding.rbac.authorization.k8s.io \"bad\" is invalid: [roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\", subjects[0].namespace: Required value, subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"]"
    );
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let (code, msg) = api_err(roles.create(&pp, &cluster_role("noverbs", &[])).await);
    assert_eq!(
        (code, msg.as_str()),
        (422, "ClusterRole.rbac.authorization.k8s.io \"noverbs\" is invalid: rules[0].verbs: Required value: verbs must contain at least one value")
    );
    // RBAC objects carry no generation.
    let r = roles
        .create(&pp, &cluster_role("plain", &["get"]))
        .await
        .unwrap();
    assert_eq!(r.metadata.generation, None);

    // kubectl apply of a changed roleRef shows the 422.
    for bin in kubectls() {
        let k = s.kubectl(bin);
        let manifest = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: b\n  namespace: default\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: admin\nsubjects:\n- kind: User\n  name: alice\n";
        let out = blocking(move || k.run_with(&["apply", "-f", "-"], Some(manifest))).await;
        let (ok, _, err) = out.parts();
        assert!(!ok);
        assert!(
            err.contains("roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"admin\"}: cannot change roleRef"),
            "{err}"
        );
    }
}

fn pod(name: &str, node: &str) -> Pod {
    obj(json!({"metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}))
}

fn node(name: &str, labels: Value) -> Node {
    obj(json!({"metadata": {"name": name, "labels": labels}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_write_only_their_own_objects() {
    let s = common::start().await;
    let admin = s.client();
    let n1_creds = mint(s.dir.path(), "system:node:n1", "system:nodes");
    let n1 = client(&s, &n1_creds);
    let pp = PostParams::default();

    // Its own Node, with the kubelet's labels; not another's.
    let nodes: Api<Node> = Api::all(n1.clone());
    nodes
        .create(
            &pp,
            &node(
                "n1",
                json!({"kubernetes.io/hostname": "n1", "node.kubernetes.io/pool": "a"}),
            ),
        )
        .await
        .unwrap();
    let (code, msg) = api_err(nodes.create(&pp, &node("n2", json!({}))).await);
    assert_eq!(
        (code, msg.as_str()),
        (
            403,
            "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
        )
    );
    Api::<Node>::all(admin.clone())
        .create(&pp, &node("n2", json!({})))
        .await
        .unwrap();
    let relabel = Patch::Merge(
        json!({"metadata": {"labels": {"node-restriction.kubernetes.io/trusted": "yes"}}}),
    );
    let (code, msg) = api_err(nodes.patch("n1", &PatchParams::default(), &relabel).await);
    assert_eq!(
        (code, msg.as_str()),
        (403, "nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/trusted")
    );
    let taint = Patch::Merge(json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}));
    let (code, msg) = api_err(nodes.patch("n1", &PatchParams::default(), &taint).await);
    assert_eq!(
        (code, msg.as_str()),
        (
            403,
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints"
        )
    );
    let (code, msg) = api_err(
        nodes
            .patch_status(
                "n2",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running"}})),
            )
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            403,
            "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
        )
    );

    // Pods: status and deletion of its own only; no creates.
    let admin_pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    admin_pods.create(&pp, &pod("here", "n1")).await.unwrap();
    admin_pods.create(&pp, &pod("there", "n2")).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(n1.clone(), "default");
    let running = Patch::Merge(json!({"status": {"phase": "Running"}}));
    pods.patch_status("here", &PatchParams::default(), &running)
        .await
        .unwrap();
    let (code, msg) = api_err(
        pods.patch_status("there", &PatchParams::default(), &running)
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (403, "pods \"there\" is forbidden: node \"n1\" can only update pod status for pods with spec.nodeName set to itself")
    );
    let (code, msg) = api_err(pods.create(&pp, &pod("mine", "n1")).await);
    assert_eq!(
        (code, msg.as_str()),
        (403, "pods \"mine\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods")
    );
    let (code, msg) = api_err(pods.delete("there", &DeleteParams::default()).await);
    assert_eq!(
        (code, msg.as_str()),
        (403, "pods \"there\" is forbidden: node \"n1\" can only delete pods with spec.nodeName set to itself")
    );
    pods.delete("here", &DeleteParams::default()).await.unwrap();

    // Leases: its own, in kube-node-lease.
    let leases: Api<Lease> = Api::namespaced(n1.clone(), "kube-node-lease");
    leases
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}})),
        )
        .await
        .unwrap();
    let (code, msg) = api_err(
        leases
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "n2"}, "spec": {"holderIdentity": "n1"}})),
            )
            .await,
    );
    assert_eq!(
        (code, msg.as_str()),
        (403, "leases.coordination.k8s.io \"n2\" is forbidden: can only access node lease with the same name as the requesting node")
    );

    // What a user of kubectl with the node's credentials sees.
    for bin in kubectls() {
        let k = kubectl_as(&s, bin, &n1_creds, "n1");
        let out = blocking(move || {
            let label = k.run(&[
                "label",
                "node",
                "n1",
                "node-restriction.kubernetes.io/trusted=yes",
            ]);
            let delete = k.run(&["delete", "pod", "there", "--wait=false"]);
            (label, delete)
        })
        .await;
        let (ok, _, err) = out.0.parts();
        assert!(!ok);
        assert!(
            err.contains("nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/trusted"),
            "{err}"
        );
        let (ok, _, err) = out.1.parts();
        assert!(!ok);
        assert!(
            err.contains("pods \"there\" is forbidden: node \"n1\" can only delete pods with spec.nodeName set to itself"),
            "{err}"
        );
    }
}

/// What a cluster admin does with kubectl's `create` generators, and what it grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_roles_and_bindings_that_take_effect() {
    let s = common::start().await;
    for (i, bin) in kubectls().into_iter().enumerate() {
        let k = s.kubectl(bin);
        let who = k.who();
        let (cr, crb, role, rb, user) = (
            format!("pod-reader-{i}"),
            format!("pod-readers-{i}"),
            format!("cm-writer-{i}"),
            format!("cm-writers-{i}"),
            format!("alice-{i}"),
        );
        let run = |args: Vec<String>| {
            let k = k.clone();
            blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                k.ok_quiet(&args)
            })
        };
        let created = [
            (
                vec![
                    "create",
                    "clusterrole",
                    &cr,
                    "--verb=get,list",
                    "--resource=pods",
                ],
                format!("clusterrole.rbac.authorization.k8s.io/{cr} created"),
            ),
            (
                vec![
                    "create",
                    "clusterrolebinding",
                    &crb,
                    "--clusterrole",
                    &cr,
                    "--user",
                    &user,
                ],
                format!("clusterrolebinding.rbac.authorization.k8s.io/{crb} created"),
            ),
            (
                vec![
                    "create",
                    "role",
                    &role,
                    "--verb=create,update",
                    "--resource=configmaps",
                ],
                format!("role.rbac.authorization.k8s.io/{role} created"),
            ),
            (
                vec![
                    "create",
                    "rolebinding",
                    &rb,
                    "--role",
                    &role,
                    "--user",
                    &user,
                ],
                format!("rolebinding.rbac.authorization.k8s.io/{rb} created"),
            ),
        ];
        for (args, want) in created {
            let out = run(args.iter().map(|a| a.to_string()).collect()).await;
            assert_eq!(out.trim(), want, "{who}");
        }
        // RBAC follows the store through a watch: poll until the grant shows.
        let can = |verb: &str, what: &str, ns: &str| {
            run(["auth", "can-i", verb, what, "--as", &user, "-n", ns]
                .iter()
                .map(|a| a.to_string())
                .collect())
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while can("list", "pods", "kube-system").await.trim() != "yes" {
            assert!(
                std::time::Instant::now() < deadline,
                "{who}: grant not seen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while can("create", "configmaps", "default").await.trim() != "yes" {
            assert!(
                std::time::Instant::now() < deadline,
                "{who}: grant not seen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The Role grants in its namespace only; nothing grants deletes.
        let k2 = k.clone();
        let u = user.clone();
        let out = blocking(move || {
            k2.run(&[
                "auth",
                "can-i",
                "create",
                "configmaps",
                "--as",
                &u,
                "-n",
                "kube-system",
            ])
        })
        .await;
        assert_eq!(out.stdout.trim(), "no", "{who}");
        let k2 = k.clone();
        let u = user.clone();
        let out = blocking(move || k2.run(&["auth", "can-i", "delete", "pods", "--as", &u])).await;
        assert_eq!(out.stdout.trim(), "no", "{who}");
    }
    // The default policy is there for kubectl to list.
    let k = s.kubectl(kubectls().remove(0));
    let names = blocking(move || k.ok_quiet(&["get", "clusterroles", "-o", "name"])).await;
    for want in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:node",
        "system:kube-scheduler",
    ] {
        assert!(
            names
                .lines()
                .any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{want}")),
            "{want} missing from {names}"
        );
    }
}
