//! Other clients than kubectl against a real local cluster (`skiff up`): the official
//! Kubernetes Python client (from PyPI; `scripts/install-deps.sh` installs it) runs
//! `tests/clients/python_suite.py`, which covers what that client does differently from
//! kubectl (WebSocket exec with stdin in its own frames, port-forward, watch-list
//! bookmarks, server-side apply, metadata-only PATCH, eviction); kube-rs, the Rust client
//! skiff's own components use, runs the same list and the metrics API in
//! [`the_kube_rs_client_execs_forwards_watches_applies_evicts_and_reads_metrics`]. Needs
//! root, as `cluster.rs`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_tools, text, Cluster, PAGE};

#[test]
#[ignore = "needs root"]
fn the_python_client_execs_forwards_watches_applies_and_evicts() {
    assert_tools();
    let has_client = Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_client,
        "the Python kubernetes client is missing (scripts/install-deps.sh installs it)"
    );
    let c = Cluster::up("py", 2, &[]);
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_suite.py");
    let out = Command::new("timeout")
        .arg("300")
        .arg("python3")
        .arg(&suite)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("SUITE_NAMESPACE", format!("python-{}", std::process::id()))
        .env("SUITE_PAGE", PAGE)
        .output()
        .expect("running python3");
    let report = text(&out);
    assert!(out.status.success(), "the Python suite failed:\n{report}");
    for check in [
        "exec_with_stdin",
        "port_forward",
        "watch_with_bookmarks",
        "server_side_apply",
        "metadata_only_patch",
        "eviction",
    ] {
        assert!(report.contains(&format!("ok {check}\n")), "{report}");
    }
}

/// kube-rs against a local cluster: exec with stdin, port-forward, a watch-list ending in
/// its bookmark, server-side apply, a metadata-only PATCH, eviction and PodMetrics from
/// `metrics.k8s.io`.
#[test]
#[ignore = "needs root"]
fn the_kube_rs_client_execs_forwards_watches_applies_evicts_and_reads_metrics() {
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
    use kube::api::{
        Api, ApiResource, AttachParams, DynamicObject, EvictParams, GroupVersionKind, Patch,
        PatchParams, PostParams, WatchEvent, WatchParams,
    };
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    assert_tools();
    let c = Cluster::up("kr", 1, &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cfg = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&c.kubeconfig).expect("kubeconfig"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("config");
        let client = kube::Client::try_from(cfg).expect("client");
        let ns = format!("kube-rs-{}", std::process::id());
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace"),
        )
        .await
        .expect("namespace created");
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web"},
                "spec": {"containers": [{"name": "web", "image": "httpd",
                    "ports": [{"containerPort": 80}]}]}}))
            .expect("pod"),
        )
        .await
        .expect("pod created");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let p = pods.get("web").await.expect("pod");
            let ready = p
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "pod web never Ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // exec with stdin: cat echoes what it is sent until stdin closes.
        let mut proc = pods
            .exec(
                "web",
                ["cat"],
                &AttachParams::default().stdin(true).stderr(false),
            )
            .await
            .expect("exec");
        let mut stdin = proc.stdin().expect("stdin");
        let mut stdout = proc.stdout().expect("stdout");
        stdin.write_all(b"from-kube-rs\n").await.expect("write");
        stdin.shutdown().await.expect("close stdin");
        drop(stdin);
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(30), stdout.read_to_string(&mut out))
            .await
            .expect("exec output in time")
            .expect("read");
        assert_eq!(out, "from-kube-rs\n");
        println!("ok exec_with_stdin");

        // port-forward to the pod's httpd.
        let mut pf = pods.portforward("web", &[80]).await.expect("port-forward");
        let mut s = pf.take_stream(80).expect("stream");
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .expect("request");
        let mut page = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut page))
            .await
            .expect("page in time")
            .expect("read");
        assert!(String::from_utf8_lossy(&page).contains(PAGE));
        drop(s);
        pf.abort();
        println!("ok port_forward");

        // A watch-list: the pods, then the bookmark that ends the initial events.
        let mut stream = pods
            .watch(&WatchParams::streaming_lists().timeout(30), "0")
            .await
            .expect("watch")
            .boxed();
        let mut added = Vec::new();
        let bookmark = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(e) = stream.next().await {
                match e.expect("event") {
                    WatchEvent::Added(p) => added.push(p.metadata.name.unwrap_or_default()),
                    WatchEvent::Bookmark(b) => return Some(b),
                    _ => {}
                }
            }
            None
        })
        .await
        .expect("initial events in time")
        .expect("a bookmark");
        assert_eq!(added, ["web"]);
        assert_eq!(
            bookmark
                .metadata
                .annotations
                .get("k8s.io/initial-events-end")
                .map(String::as_str),
            Some("true")
        );
        println!("ok watch_with_bookmarks");

        // Server-side apply: created, then owned by the field manager.
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let applied = cms
            .patch(
                "settings",
                &PatchParams::apply("kube-rs-suite"),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "settings"}, "data": {"a": "1"}})),
            )
            .await
            .expect("apply");
        assert_eq!(
            applied.data.and_then(|d| d.get("a").cloned()).as_deref(),
            Some("1")
        );
        let managers: Vec<String> = applied
            .metadata
            .managed_fields
            .into_iter()
            .flatten()
            .filter_map(|m| m.manager)
            .collect();
        assert_eq!(managers, ["kube-rs-suite"]);
        println!("ok server_side_apply");

        // A metadata-only PATCH answers PartialObjectMetadata.
        let meta = cms
            .patch_metadata(
                "settings",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"suite": "kube-rs"}}})),
            )
            .await
            .expect("metadata patch");
        assert_eq!(
            meta.types.as_ref().map(|t| t.kind.as_str()),
            Some("PartialObjectMetadata")
        );
        assert_eq!(
            meta.metadata
                .labels
                .and_then(|l| l.get("suite").cloned())
                .as_deref(),
            Some("kube-rs")
        );
        println!("ok metadata_only_patch");

        // PodMetrics through the API, once the agent sampled twice.
        let gvk = GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics");
        let metrics: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &ApiResource::from_gvk_with_plural(&gvk, "pods"),
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(m) = metrics.get("web").await {
                let containers = m.data["containers"].as_array().cloned().unwrap_or_default();
                if containers
                    .iter()
                    .any(|c| c["name"] == "web" && c["usage"]["memory"].is_string())
                {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "no PodMetrics for web");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("ok metrics");

        // Eviction: 201 with a Status, the pod going away.
        let st = pods
            .evict("web", &EvictParams::default())
            .await
            .expect("evict");
        assert_eq!(st.code, 201, "{st:?}");
        println!("ok eviction");

        let _ = nss.delete(&ns, &Default::default()).await;
    });
}
