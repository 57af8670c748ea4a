//! The API through kube-rs: CRUD, conflicts, errors, watch, restart.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

use crate::common;

/// The parts of an API error Status the tests compare.
struct ApiErr {
    code: u16,
    reason: String,
    message: String,
}

fn err(e: kube::Error) -> ApiErr {
    match e {
        kube::Error::Api(s) => ApiErr {
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"a": "1"}})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conflict_and_not_found() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let created = api.create(&PostParams::default(), &cm("c1")).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let e = err(api
        .create(&PostParams::default(), &cm("c1"))
        .await
        .unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (409, "AlreadyExists", "configmaps \"c1\" already exists")
    );

    let mut updated = created.clone();
    updated.data = Some([("a".to_string(), "2".to_string())].into());
    let after = api
        .replace("c1", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_ne!(
        after.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );

    // The same stale object again: the resourceVersion no longer matches.
    let e = err(api
        .replace("c1", &PostParams::default(), &updated)
        .await
        .unwrap_err());
    assert_eq!(e.code, 409);
    assert_eq!(e.message, "Operation cannot be fulfilled on configmaps \"c1\": the object has been modified; please apply your changes to the latest version and try again");

    let patched = api
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.data.unwrap().get("b").map(String::as_str),
        Some("3")
    );

    api.delete("c1", &DeleteParams::default()).await.unwrap();
    let e = err(api.get("c1").await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "configmaps \"c1\" not found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_kubernetes_errors() {
    let s = common::start().await;
    let client = s.client();
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let e = err(nowhere
        .create(&PostParams::default(), &cm("x"))
        .await
        .unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nope\" not found")
    );

    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let bad: Service = serde_json::from_value(
        json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 0}]}}),
    )
    .unwrap();
    let e = err(svcs.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(e.code, 422);
    assert!(
        e.message.starts_with("Service \"x\" is invalid: "),
        "{}",
        e.message
    );
    assert!(
        e.message.contains(
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        ),
        "{}",
        e.message
    );

    // A taken node port is refused with the allocator's message.
    let np = |name: &str| -> Service {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 31688}]}})).unwrap()
    };
    svcs.create(&PostParams::default(), &np("a")).await.unwrap();
    let e = err(svcs
        .create(&PostParams::default(), &np("b"))
        .await
        .unwrap_err());
    assert_eq!(e.message, "Service \"b\" is invalid: spec.ports[0].nodePort: Invalid value: 31688: provided port is already allocated");

    // The bootstrap Service is there with its fixed address.
    let k = svcs.get("kubernetes").await.unwrap();
    assert_eq!(k.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.1"));
    // Its endpoints: this (only) server, in both APIs.
    let ep = Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(s.client(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    let subsets = ep.subsets.unwrap();
    let ips: Vec<_> = subsets[0]
        .addresses
        .iter()
        .flatten()
        .map(|a| a.ip.as_str())
        .collect();
    assert_eq!(ips, ["127.0.0.1"]);
    let slice =
        Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(s.client(), "default")
            .get("kubernetes")
            .await
            .unwrap();
    assert_eq!(slice.endpoints[0].addresses, ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_resource_version() {
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let c = api.create(&PostParams::default(), &cm("w1")).await.unwrap();
    let rv = c.metadata.resource_version.clone().unwrap();
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "9"}})),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &cm("w2")).await.unwrap();
    let stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap();
    let events: Vec<_> = stream.take(2).try_collect().await.unwrap();
    match (&events[0], &events[1]) {
        (WatchEvent::Modified(a), WatchEvent::Added(b)) => {
            assert_eq!(a.metadata.name.as_deref(), Some("w1"));
            assert_eq!(b.metadata.name.as_deref(), Some("w2"));
        }
        other => panic!("unexpected events {other:?}"),
    }
    // Label selectors apply to lists and watches.
    let lp = ListParams::default().labels("missing=label");
    assert!(api.list(&lp).await.unwrap().items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_objects_and_revisions() {
    let dir = tempfile::Builder::new()
        .prefix(&format!("skt-{}-restart-", std::process::id()))
        .tempdir()
        .unwrap();
    let rv1 = {
        let h = common::start_in(dir.path()).await;
        let api: Api<ConfigMap> = Api::namespaced(
            kube::Client::try_from(h.admin_client_config()).unwrap(),
            "default",
        );
        let c = api
            .create(&PostParams::default(), &cm("keep"))
            .await
            .unwrap();
        c.metadata.resource_version.unwrap().parse::<i64>().unwrap()
    };
    let h = common::start_in(dir.path()).await;
    let client = kube::Client::try_from(h.admin_client_config()).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert_eq!(api.get("keep").await.unwrap().data.unwrap()["a"], "1");
    let c2 = api
        .create(&PostParams::default(), &cm("later"))
        .await
        .unwrap();
    assert!(
        c2.metadata
            .resource_version
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > rv1
    );
    let ns: Api<Namespace> = Api::all(client);
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    tokio::time::timeout(Duration::from_secs(1), async {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_shared_by_both_apis_and_namespaces_finalize() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let s = common::start().await;
    let client = s.client();
    let new_api: Api<Event> = Api::namespaced(client.clone(), "default");
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reason": "Started", "note": "started it", "type": "Normal", "action": "Start",
        "reportingController": "skiff", "reportingInstance": "skiff-1",
        "regarding": {"kind": "Pod", "name": "p1", "namespace": "default"},
    }))
    .unwrap();
    new_api.create(&PostParams::default(), &ev).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let got = core
        .list(&ListParams::default().fields("involvedObject.name=p1,involvedObject.kind=Pod"))
        .await
        .unwrap();
    assert_eq!(got.items.len(), 1);
    assert_eq!(got.items[0].reason.as_deref(), Some("Started"));

    // Namespace deletion waits for the `kubernetes` finalizer, removed through /finalize.
    let ns: Api<Namespace> = Api::all(client.clone());
    let n: Namespace = serde_json::from_value(json!({"metadata": {"name": "gone"}})).unwrap();
    ns.create(&PostParams::default(), &n).await.unwrap();
    ns.delete("gone", &DeleteParams::default()).await.unwrap();
    let term = ns.get("gone").await.unwrap();
    assert_eq!(
        term.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Terminating")
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "gone");
    let e = err(cms
        .create(&PostParams::default(), &cm("x"))
        .await
        .unwrap_err());
    assert_eq!(e.code, 403);
    let mut fin = term.clone();
    fin.spec.as_mut().unwrap().finalizers = Some(vec![]);
    let body = serde_json::to_vec(&fin).unwrap();
    let req = http::Request::put("/api/v1/namespaces/gone/finalize")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let _: Namespace = client.request(req).await.unwrap();
    let e = err(ns.get("gone").await.unwrap_err());
    assert_eq!(e.code, 404);
}

/// A client with the kubelet credentials the server issues to node `name` for the join
/// token, as an agent gets them.
async fn node_client(s: &common::TestServer, name: &str) -> kube::Client {
    let join = skiff_apiserver::pki::join_token(s.dir.path()).unwrap();
    let mut cfg = s.handle.admin_client_config();
    cfg.auth_info = Default::default();
    cfg.auth_info.token = Some(join.into());
    let req = http::Request::post("/skiff/v1/node-credentials")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({ "nodeName": name })).unwrap())
        .unwrap();
    let creds: serde_json::Value = kube::Client::try_from(cfg.clone())
        .unwrap()
        .request(req)
        .await
        .unwrap();
    let b64 = |k: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(creds["kubelet"][k].as_str().unwrap())
    };
    cfg.auth_info = Default::default();
    cfg.auth_info.client_certificate_data = Some(b64("certificate"));
    cfg.auth_info.client_key_data = Some(b64("key").into());
    kube::Client::try_from(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reads_the_secrets_of_its_own_pods_only() {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    let s = common::start().await;
    let admin = s.client();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "db"}, "stringData": {"pw": "x"}}))
            .unwrap();
    Api::<Secret>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {
            "nodeName": "n2",
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "db", "secret": {"secretName": "db"}}],
        }
    }))
    .unwrap();
    Api::<Pod>::namespaced(admin, "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    // The node the pod is bound to reads the Secret; another node may not.
    let n2: Api<Secret> = Api::namespaced(node_client(&s, "n2").await, "default");
    n2.get("db").await.unwrap();
    let n1: Api<Secret> = Api::namespaced(node_client(&s, "n1").await, "default");
    let e = err(n1.get("db").await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            403,
            "secrets \"db\" is forbidden: User \"system:node:n1\" cannot get resource \
             \"secrets\" in API group \"\" in the namespace \"default\": no relationship \
             found between node 'n1' and this object"
        )
    );
    // Nor list them, its own pods' included.
    let e = err(n2.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(e.code, 403);
    assert!(
        e.message
            .ends_with("can only get individual resources of this type"),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_and_join_token_authenticate() {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let s = common::start().await;
    let client = s.client();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": []}})).unwrap();
    let body = serde_json::to_vec(&tr).unwrap();
    let req = http::Request::post("/api/v1/namespaces/default/serviceaccounts/robot/token")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let got: TokenRequest = client.request(req).await.unwrap();
    let token = got.status.unwrap().token;

    let with_bearer = |t: &str| {
        let mut cfg = s.handle.admin_client_config();
        cfg.auth_info = Default::default();
        cfg.auth_info.token = Some(t.to_string().into());
        kube::Client::try_from(cfg).unwrap()
    };
    // Authenticated, but RBAC grants a fresh service account nothing.
    let as_sa: Api<ConfigMap> = Api::namespaced(with_bearer(&token), "default");
    let e = err(as_sa.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            403,
            "configmaps is forbidden: User \"system:serviceaccount:default:robot\" cannot list \
             resource \"configmaps\" in API group \"\" in the namespace \"default\""
        )
    );
    // The join token is a bootstrap identity: it may fetch node credentials, nothing else.
    let join = skiff_apiserver::pki::join_token(s.dir.path()).unwrap();
    let id = join.split('.').next().unwrap();
    let as_bootstrap: Api<ConfigMap> = Api::namespaced(with_bearer(&join), "default");
    let e = err(as_bootstrap.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(e.code, 403);
    assert!(
        e.message
            .contains(&format!("User \"system:bootstrap:{id}\" cannot list")),
        "{}",
        e.message
    );
    let as_node = node_client(&s, "n1").await;
    // The node reads nodes (the Node authorizer's rules), not configmaps no pod of its uses.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(as_node.clone());
    nodes.list(&ListParams::default()).await.unwrap();
    let e = err(Api::<ConfigMap>::namespaced(as_node, "default")
        .get("kube-root-ca.crt")
        .await
        .unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            403,
            "configmaps \"kube-root-ca.crt\" is forbidden: User \"system:node:n1\" cannot get \
             resource \"configmaps\" in API group \"\" in the namespace \"default\": no \
             relationship found between node 'n1' and this object"
        )
    );
    // A token nobody issued.
    let nobody: Api<ConfigMap> = Api::namespaced(with_bearer("abc.def"), "default");
    let e = err(nobody.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (401, "Unauthorized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_with_streaming_lists_and_selector_exits() {
    use kube::runtime::watcher::{self, Event};
    let s = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let labelled = |name: &str, v: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"k": v}}})).unwrap()
    };
    api.create(&PostParams::default(), &labelled("a", "yes"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &labelled("b", "no"))
        .await
        .unwrap();
    let cfg = watcher::Config::default().labels("k=yes").streaming_lists();
    let mut stream = Box::pin(watcher::watcher(api.clone(), cfg));
    macro_rules! next {
        () => {
            tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("event in time")
                .expect("stream open")
                .expect("no error")
        };
    }
    assert!(matches!(next!(), Event::Init));
    match next!() {
        Event::InitApply(o) => assert_eq!(o.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(next!(), Event::InitDone));
    // Relabelling `a` out of the selector is a deletion for this watcher.
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"k": "no"}}})),
    )
    .await
    .unwrap();
    match next!() {
        Event::Delete(o) => assert_eq!(o.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"k": "yes"}}})),
    )
    .await
    .unwrap();
    match next!() {
        Event::Apply(o) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_and_graceful_pod_deletion() {
    use k8s_openapi::api::core::v1::Pod;
    let s = common::start().await;
    let client = s.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(
        created
            .spec
            .as_ref()
            .unwrap()
            .service_account_name
            .as_deref(),
        Some("default")
    );
    let bind = |node: &str| {
        let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": node}})).unwrap();
        http::Request::post("/api/v1/namespaces/default/pods/p/binding")
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    };
    let _: serde_json::Value = client.request(bind("n1")).await.unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("n1")
    );
    let e = err(client
        .request::<serde_json::Value>(bind("n2"))
        .await
        .unwrap_err());
    assert_eq!(e.code, 409);
    assert!(
        e.message.contains("already assigned to node \"n1\""),
        "{}",
        e.message
    );

    // A scheduled pod is only marked; its node finishes with gracePeriodSeconds=0.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let marked = pods.get("p").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(err(pods.get("p").await.unwrap_err()).code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_reach_health_and_version_only() {
    let s = common::start().await;
    let mut cfg = s.handle.admin_client_config();
    cfg.auth_info = Default::default();
    let anonymous = kube::Client::try_from(cfg).unwrap();
    let get = |path: &str| {
        let anonymous = anonymous.clone();
        let req = http::Request::get(path).body(Vec::new()).unwrap();
        async move { anonymous.request_text(req).await }
    };
    // What kube-apiserver's system:public-info-viewer lets anyone read.
    for open in ["/healthz", "/livez", "/readyz", "/version"] {
        get(open).await.unwrap_or_else(|e| panic!("{open}: {e}"));
    }
    for closed in [
        "/api",
        "/apis",
        "/api/v1/namespaces/default/pods",
        "/openapi/v2",
        "/metrics",
    ] {
        let e = err(get(closed).await.unwrap_err());
        assert_eq!(
            (e.code, e.message.as_str(), e.reason.as_str()),
            (401, "Unauthorized", "Unauthorized"),
            "{closed}"
        );
    }
}
