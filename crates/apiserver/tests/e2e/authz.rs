//! Authorization as kube-apiserver answers it: RBAC through the real kubectl (`auth
//! can-i`, `--list`, `auth whoami`, impersonation with `--as`/`--as-group`, kube's 403
//! texts) and the review APIs through kube-rs (SubjectAccessReview and friends).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, NonResourceAttributes, ResourceAttributes, SelfSubjectRulesReview,
    SelfSubjectRulesReviewSpec, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use skiff_testkit::kubectl::{self, Kubectl};

use crate::common::{self, TestServer};

/// The ServiceAccount the tests bind.
const READER: &str = "system:serviceaccount:default:reader";

/// A Role to read pods, bound in `default` to the ServiceAccount `reader`, the user
/// `carol` and the group `readers`.
const POLICY: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: reader
  namespace: default
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
  namespace: default
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: read-pods
  namespace: default
subjects:
- kind: ServiceAccount
  name: reader
  namespace: default
- kind: User
  name: carol
  apiGroup: rbac.authorization.k8s.io
- kind: Group
  name: readers
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
"#;

/// How long a policy change may take to reach the authorizer (it follows a store watch).
const POLICY_DEADLINE: Duration = Duration::from_secs(20);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// Runs `probe` until it returns true, or panics with `what` after [`POLICY_DEADLINE`].
fn poll(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + POLICY_DEADLINE;
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kubectl apply -f -` of `yaml`, which must succeed.
fn apply(k: &Kubectl, yaml: &str) {
    let out = k.run_with(&["apply", "-f", "-"], Some(yaml));
    assert!(out.success, "{}: apply: {}", k.who(), out.describe());
}

/// `kubectl auth can-i` as the answer it prints and whether it exited 0.
fn can_i(k: &Kubectl, args: &[&str]) -> (bool, String) {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let (ok, out, _) = k.run(&all).parts();
    (ok, out.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_can_i_whoami_and_impersonation() {
    let bins = kubectl::versions(&["1.27", "1.33"]);
    assert!(!bins.is_empty(), "kubectl is missing");
    for bin in bins {
        let s = common::start().await;
        let k = s.kubectl(bin.clone());
        let token_config = s.dir.path().join("token-kubeconfig");
        let kubeconfig = s.kubeconfig();
        blocking(move || rbac_through_kubectl(&k, &kubeconfig, &token_config)).await;
        drop(s);
    }
}

fn rbac_through_kubectl(k: &Kubectl, kubeconfig: &std::path::Path, token_config: &PathBuf) {
    let who = k.who();
    apply(k, POLICY);
    let as_reader = format!("--as={READER}");
    poll("the RoleBinding to reach the authorizer", || {
        can_i(k, &["list", "pods", &as_reader]) == (true, "yes".into())
    });
    assert_eq!(
        can_i(k, &["delete", "pods", &as_reader]),
        (false, "no".into()),
        "{who}"
    );
    assert_eq!(
        can_i(k, &["get", "pods", "-n", "kube-system", &as_reader]),
        (false, "no".into()),
        "{who}: a RoleBinding grants in its namespace only"
    );
    assert_eq!(
        can_i(k, &["list", "pods", "--as=carol"]),
        (true, "yes".into())
    );
    assert_eq!(
        can_i(k, &["list", "pods", "--as=dave"]),
        (false, "no".into())
    );
    assert_eq!(
        can_i(k, &["list", "pods", "--as=dave", "--as-group=readers"]),
        (true, "yes".into()),
        "{who}: --as-group"
    );
    // The admin (system:masters) may do anything.
    assert_eq!(
        can_i(k, &["delete", "nodes"]),
        (true, "yes".into()),
        "{who}"
    );

    // --list: the caller's rules, as the table kubectl prints.
    let list = k.ok(&["auth", "can-i", "--list", &as_reader]);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec!["pods", "[]", "[]", "[get", "list", "watch]"]),
        "{who}: {list}"
    );
    assert!(
        rows.iter()
            .any(|r| r.first() == Some(&"selfsubjectaccessreviews.authorization.k8s.io")),
        "{who}: system:basic-user's rules are listed: {list}"
    );

    // A node's permissions cannot be listed: kubectl warns with the Node authorizer's
    // error.
    let (ok, _, err) = k
        .run(&[
            "auth",
            "can-i",
            "--list",
            "--as=system:node:n1",
            "--as-group=system:nodes",
        ])
        .parts();
    assert!(ok, "{who}: {err}");
    assert!(
        err.to_lowercase().contains(
            "warning: the list may be incomplete: node authorizer does not support user rule resolution"
        ),
        "{who}: {err}"
    );

    // whoami: the impersonated identity, with the service account's groups. kubectl
    // 1.27 asks for authentication.k8s.io v1alpha1/v1beta1 only, which kube-apiserver
    // 1.33 no longer serves: it fails as against kube.
    let me = k.run(&["auth", "whoami", &as_reader, "-o", "json"]);
    let (ok, out, err) = me.parts();
    if who.ends_with("1.27") {
        assert!(!ok);
        assert!(
            err.starts_with("error: the selfsubjectreviews API is not enabled in the cluster"),
            "{who}: {err}"
        );
    } else {
        assert!(ok, "{who}: {err}");
        let me: Value = serde_json::from_str(&out).expect("whoami JSON");
        assert_eq!(me["status"]["userInfo"]["username"], READER, "{who}");
        assert_eq!(
            me["status"]["userInfo"]["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ]),
            "{who}"
        );
    }

    // Refused actions through --as: kube's 403 texts.
    k.ok(&["run", "web", "--image=busybox", "--restart=Never"]);
    let (ok, _, err) = k.run(&["delete", "pod", "web", &as_reader]).parts();
    assert!(!ok);
    assert_eq!(
        err.trim(),
        format!(
            r#"Error from server (Forbidden): pods "web" is forbidden: User "{READER}" cannot delete resource "pods" in API group "" in the namespace "default""#
        ),
        "{who}"
    );
    let (ok, _, err) = k
        .run(&["create", "configmap", "c", "--from-literal=a=b", &as_reader])
        .parts();
    assert!(!ok);
    assert_eq!(
        err.trim(),
        format!(
            r#"error: failed to create configmap: configmaps is forbidden: User "{READER}" cannot create resource "configmaps" in API group "" in the namespace "default""#
        ),
        "{who}"
    );
    let (ok, out, err) = k.run(&["get", "pods", &as_reader, "-o", "name"]).parts();
    assert!(ok, "{who}: {err}");
    assert_eq!(out.trim(), "pod/web", "{who}");

    // The service account itself may not impersonate: kube's 403 for each kind.
    let token = k.ok(&["create", "token", "reader"]);
    std::fs::copy(kubeconfig, token_config).expect("copy the kubeconfig");
    let t = Kubectl::new(k.bin.clone(), token_config.clone());
    t.ok(&[
        "config",
        "set-credentials",
        "reader",
        &format!("--token={}", token.trim()),
    ]);
    t.ok(&["config", "set-context", "--current", "--user=reader"]);
    let (ok, out, err) = t.run(&["get", "pods", "-o", "name"]).parts();
    assert!(ok, "{who}: {err}");
    assert_eq!(out.trim(), "pod/web");
    let (ok, _, err) = t.run(&["get", "pods", "--as=bob"]).parts();
    assert!(!ok);
    assert_eq!(
        err.trim(),
        format!(
            r#"Error from server (Forbidden): users "bob" is forbidden: User "{READER}" cannot impersonate resource "users" in API group "" at the cluster scope"#
        ),
        "{who}"
    );
    let (ok, _, err) = t
        .run(&["get", "pods", "--as=system:serviceaccount:default:default"])
        .parts();
    assert!(!ok);
    assert_eq!(
        err.trim(),
        format!(
            r#"Error from server (Forbidden): serviceaccounts "default" is forbidden: User "{READER}" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "default""#
        ),
        "{who}"
    );
    // Without the verb on groups, an allowed user is not enough.
    apply(
        k,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: impersonate-carol
rules:
- apiGroups: [""]
  resources: ["users"]
  verbs: ["impersonate"]
  resourceNames: ["carol"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: reader-impersonates-carol
subjects:
- kind: ServiceAccount
  name: reader
  namespace: default
roleRef:
  kind: ClusterRole
  name: impersonate-carol
  apiGroup: rbac.authorization.k8s.io
"#,
    );
    poll("the impersonation grant to reach the authorizer", || {
        t.run(&["get", "pods", "--as=carol"]).parts().0
    });
    let (ok, _, err) = t
        .run(&["get", "pods", "--as=carol", "--as-group=admins"])
        .parts();
    assert!(!ok);
    assert_eq!(
        err.trim(),
        format!(
            r#"Error from server (Forbidden): groups "admins" is forbidden: User "{READER}" cannot impersonate resource "groups" in API group "" at the cluster scope"#
        ),
        "{who}"
    );
    let (ok, _, err) = t.run(&["get", "pods", "--as=dave"]).parts();
    assert!(!ok);
    assert!(err.contains(r#"users "dave" is forbidden"#), "{who}: {err}");
}

/// An Api of a cluster-scoped review kind for the admin.
fn reviews<K>(s: &TestServer) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    Api::all(s.client())
}

/// Creates [`POLICY`] as the admin, one YAML document at a time.
async fn create_policy(s: &TestServer) {
    for doc in POLICY.split("---") {
        let kind = doc
            .lines()
            .find_map(|l| l.strip_prefix("kind: "))
            .expect("a kind line");
        let path = match kind {
            "ServiceAccount" => "/api/v1/namespaces/default/serviceaccounts",
            "Role" => "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
            _ => "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        };
        let req = http::Request::post(path)
            .header("content-type", "application/yaml")
            .body(doc.as_bytes().to_vec())
            .expect("request");
        s.client()
            .request::<Value>(req)
            .await
            .unwrap_or_else(|e| panic!("create {kind}: {e}"));
    }
}

/// A SubjectAccessReview of `verb` on pods in `default` for `user` (and `groups`).
fn pods_review(user: &str, groups: &[&str], verb: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("default".into()),
                verb: Some(verb.into()),
                resource: Some("pods".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn subject_access_reviews_through_kube_rs() {
    let s = common::start().await;
    create_policy(&s).await;
    let sar: Api<SubjectAccessReview> = reviews(&s);
    let pp = PostParams::default();
    let deadline = Instant::now() + POLICY_DEADLINE;
    let allowed = loop {
        let r = sar
            .create(&pp, &pods_review(READER, &[], "list"))
            .await
            .expect("SubjectAccessReview");
        let status = r.status.expect("status");
        if status.allowed {
            break status;
        }
        assert!(Instant::now() < deadline, "the binding never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        allowed.reason.as_deref(),
        Some(
            r#"RBAC: allowed by RoleBinding "read-pods/default" of Role "pod-reader" to ServiceAccount "reader/default""#
        )
    );
    assert_eq!(allowed.denied, None);

    // Not allowed: no reason, not denied (RBAC has no opinion).
    let r = sar
        .create(&pp, &pods_review(READER, &[], "delete"))
        .await
        .expect("SubjectAccessReview");
    let status = r.status.expect("status");
    assert!(!status.allowed);
    assert_eq!((status.denied, status.reason), (None, None));

    // A group is a subject; system:masters is allowed by the privileged-group authorizer
    // without a reason.
    let r = sar
        .create(&pp, &pods_review("", &["readers"], "watch"))
        .await
        .expect("SubjectAccessReview");
    let status = r.status.expect("status");
    assert!(status.allowed);
    assert_eq!(
        status.reason.as_deref(),
        Some(
            r#"RBAC: allowed by RoleBinding "read-pods/default" of Role "pod-reader" to Group "readers""#
        )
    );
    let r = sar
        .create(&pp, &pods_review("root", &["system:masters"], "delete"))
        .await
        .expect("SubjectAccessReview");
    assert_eq!(r.status.map(|s| (s.allowed, s.reason)), Some((true, None)));

    // A missing role is RBAC's reason.
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "ghost"},
        "subjects": [{"kind": "User", "name": "ghosted", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "ClusterRole", "name": "nowhere", "apiGroup": "rbac.authorization.k8s.io"},
    });
    let req = http::Request::post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binding).expect("json"))
        .expect("request");
    s.client()
        .request::<Value>(req)
        .await
        .expect("create the binding");
    let deadline = Instant::now() + POLICY_DEADLINE;
    loop {
        let r = sar
            .create(&pp, &pods_review("ghosted", &[], "get"))
            .await
            .expect("SubjectAccessReview");
        let status = r.status.expect("status");
        assert!(!status.allowed);
        if status.reason.as_deref()
            == Some(r#"RBAC: clusterrole.rbac.authorization.k8s.io "nowhere" not found"#)
        {
            break;
        }
        assert!(Instant::now() < deadline, "reason {:?}", status.reason);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Non-resource attributes: system:discovery lets everyone authenticated read /api.
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("dave".into()),
            groups: Some(vec!["system:authenticated".into()]),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some("/api".into()),
                verb: Some("get".into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = sar.create(&pp, &review).await.expect("SubjectAccessReview");
    assert!(r.status.expect("status").allowed);

    // kube's validation.
    let mut neither = pods_review(READER, &[], "get");
    neither.spec.resource_attributes = None;
    match sar.create(&pp, &neither).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422);
            assert_eq!(
                e.message,
                r#"SubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified"#
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let mut nobody = pods_review("", &[], "get");
    nobody.spec.non_resource_attributes = review.spec.non_resource_attributes.clone();
    match sar.create(&pp, &nobody).await {
        Err(kube::Error::Api(e)) => assert_eq!(
            e.message,
            r#"SubjectAccessReview.authorization.k8s.io "" is invalid: [spec.nonResourceAttributes: Invalid value: authorization.NonResourceAttributes{Path:"/api", Verb:"get"}: cannot be specified in combination with resourceAttributes, spec.user: Invalid value: "": at least one of user or group must be specified]"#
        ),
        other => panic!("expected 422, got {other:?}"),
    }

    // A review is not an object to name.
    let mut named = pods_review(READER, &[], "get");
    named.metadata.name = Some("mine".into());
    match sar.create(&pp, &named).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422);
            assert!(
                e.message.starts_with(
                    r#"SubjectAccessReview.authorization.k8s.io "" is invalid: metadata: Invalid value: v1.ObjectMeta{Name:"mine", GenerateName:"""#
                ) && e.message.ends_with(": must be empty"),
                "{}",
                e.message
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }

    // LocalSubjectAccessReview: the attributes' namespace must be the review's.
    let local: Api<LocalSubjectAccessReview> = Api::namespaced(s.client(), "default");
    let mut l = LocalSubjectAccessReview {
        spec: pods_review(READER, &[], "get").spec,
        ..Default::default()
    };
    let r = local
        .create(&pp, &l)
        .await
        .expect("LocalSubjectAccessReview");
    assert!(r.status.expect("status").allowed);
    assert_eq!(r.metadata.namespace.as_deref(), Some("default"));
    if let Some(ra) = l.spec.resource_attributes.as_mut() {
        ra.namespace = Some("kube-system".into());
    }
    match local.create(&pp, &l).await {
        Err(kube::Error::Api(e)) => assert_eq!(
            e.message,
            r#"LocalSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes.namespace: Invalid value: "kube-system": must match metadata.namespace"#
        ),
        other => panic!("expected 422, got {other:?}"),
    }
    l.metadata.namespace = Some("kube-system".into());
    match local.create(&pp, &l).await {
        Err(kube::Error::Api(e)) => assert_eq!(
            (e.code, e.message.as_str()),
            (
                400,
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        ),
        other => panic!("expected 400, got {other:?}"),
    }

    // SelfSubjectRulesReview as the admin: cluster-admin's rules through system:masters.
    let rules: Api<SelfSubjectRulesReview> = reviews(&s);
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some("default".into()),
        },
        ..Default::default()
    };
    let r = rules
        .create(&pp, &review)
        .await
        .expect("SelfSubjectRulesReview");
    let status = r.status.expect("status");
    assert!(!status.incomplete);
    assert!(
        status.resource_rules.iter().any(|r| r.verbs == ["*"]
            && r.api_groups.as_deref() == Some(&["*".to_string()][..])
            && r.resources.as_deref() == Some(&["*".to_string()][..])),
        "{:?}",
        status.resource_rules
    );
    match rules.create(&pp, &SelfSubjectRulesReview::default()).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(
                (e.code, e.message.as_str()),
                (400, "no namespace on request")
            )
        }
        other => panic!("expected 400, got {other:?}"),
    }
}

#[tokio::test]
async fn impersonating_groups_without_a_user_is_kubes_error() {
    let s = common::start().await;
    let req = http::Request::get("/api/v1/namespaces/default/pods")
        .header("impersonate-group", "devs")
        .body(kube::client::Body::empty())
        .expect("request");
    let resp = s.client().send(req).await.expect("an answer");
    assert_eq!(resp.status(), 500);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        "Internal Server Error: \"/api/v1/namespaces/default/pods\": requested [{Group  devs    }] without impersonating a user\n"
    );
    // With a user, the admin may impersonate anyone: the request runs as them.
    let mut cfg = s.handle.admin_client_config();
    cfg.auth_info.impersonate = Some("carol".into());
    let carol = kube::Client::try_from(cfg).expect("client");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(carol, "default");
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(
            e.message,
            r#"pods is forbidden: User "carol" cannot list resource "pods" in API group "" in the namespace "default""#
        ),
        other => panic!("expected 403, got {other:?}"),
    }
}
