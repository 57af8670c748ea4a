//! Defence in depth (issue 13): objects of the wrong types written straight into the
//! datastore — a Service with a port named `5`, a ConfigMap with `data: {a: 1}` and
//! `annotations: {a: 1}`, a Deployment with `replicas: 1.5` — as objects stored before
//! the API server checked types would be. After the server and the agent restart with
//! them in the store, the cluster must still serve: DNS answers, Services reach their
//! pods through the proxy, a new CoreDNS pod becomes Ready, a good Deployment scales,
//! and the namespace holding the bad objects can be deleted.
//!
//! Needs root, kubectl, runc, iptables, curl, the CNI plugins and busybox-static, like
//! the other local-cluster tests.

mod common;

use std::time::Duration;

use common::{gone, kill, seed, text, wait_for, Cluster, PAGE};

use serde_json::{json, Value};
use skiff_store::{SqliteStore, Store};

/// The objects that will be corrupted, created valid first.
const JUNK: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: junk}
---
apiVersion: v1
kind: Service
metadata: {name: bad-svc, namespace: junk}
spec:
  selector: {app: nothing}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: bad-cm, namespace: junk}
data: {a: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad-deploy, namespace: junk}
spec:
  replicas: 0
  selector: {matchLabels: {app: bad-deploy}}
  template:
    metadata: {labels: {app: bad-deploy}}
    spec:
      containers: [{name: httpd, image: httpd}]
"#;

/// Rewrites the stored object at `key` with `edit`, in the (stopped) server's database.
fn corrupt(store: &SqliteStore, key: &str, edit: impl FnOnce(&mut Value)) {
    let kv = store
        .get(key)
        .expect("reading the store")
        .unwrap_or_else(|| panic!("{key} is stored"));
    let mut obj: Value = serde_json::from_slice(&kv.value).expect("stored JSON");
    edit(&mut obj);
    store
        .update(key, &serde_json::to_vec(&obj).expect("JSON"), None)
        .expect("writing the store");
}

/// Names of the Ready pods matching `selector` in `ns`.
fn ready_pods(c: &Cluster, ns: &str, selector: &str) -> Vec<String> {
    let rows = c.ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\" \"}{end}",
    ]);
    rows.split_whitespace()
        .filter_map(|r| r.strip_suffix("=True"))
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs root"]
fn a_cluster_with_bad_objects_in_its_store_still_serves() {
    let c = Cluster::up("bad", 2, &[]);
    c.ok(&[
        "apply",
        "-f",
        seed("Httpd-Deployment.yaml").to_str().expect("path"),
    ]);
    c.ok(&[
        "apply",
        "-f",
        seed("Httpd-Service.yaml").to_str().expect("path"),
    ]);
    let junk = c.scratch().join("junk.yaml");
    std::fs::write(&junk, JUNK).expect("manifest");
    c.ok(&["apply", "-f", junk.to_str().expect("path")]);
    c.ok(&["rollout", "status", "deployment/httpd", "--timeout=120s"]);

    // Stop everything, write the bad objects, start again.
    let pids = c.pids();
    for pid in &pids {
        kill(*pid);
    }
    for pid in &pids {
        wait_for(
            "a killed process to be gone",
            Duration::from_secs(10),
            || gone(*pid),
        );
    }
    {
        let db = c.dir().join("k8s-m/server/state.db");
        let store = SqliteStore::open(&db).expect("opening state.db");
        corrupt(&store, "/registry/core/services/junk/bad-svc", |o| {
            o["spec"]["ports"][0]["name"] = json!(5)
        });
        corrupt(&store, "/registry/core/configmaps/junk/bad-cm", |o| {
            o["data"]["a"] = json!(1);
            o["metadata"]["annotations"] = json!({"a": 1});
        });
        corrupt(&store, "/registry/apps/deployments/junk/bad-deploy", |o| {
            o["spec"]["replicas"] = json!(1.5)
        });
    }
    let out = c.skiff(&["up"]);
    assert!(out.status.success(), "restarting: {}", text(&out));
    // The bad objects are served as stored (what typed clients used to choke on).
    let raw = c.ok(&["get", "--raw", "/api/v1/namespaces/junk/services/bad-svc"]);
    let svc: Value = serde_json::from_str(&raw).expect("JSON");
    assert_eq!(svc["spec"]["ports"][0]["name"], json!(5), "{raw}");

    // A good Deployment still rolls out and scales (the Deployment controller's
    // informer lists the bad Deployment too); the restart also gives the pods that the
    // restarted agent runs a fresh start.
    c.ok(&["rollout", "restart", "deployment/httpd"]);
    c.ok(&["rollout", "status", "deployment/httpd", "--timeout=120s"]);
    c.ok(&["scale", "deployment/httpd", "--replicas=5"]);
    wait_for(
        "httpd to have 5 ready pods",
        Duration::from_secs(120),
        || ready_pods(&c, "default", "run=httpd").len() == 5,
    );

    // A new CoreDNS pod becomes Ready (its watch lists the bad Service).
    let old = ready_pods(&c, "kube-system", "k8s-app=kube-dns");
    c.ok(&[
        "delete",
        "pod",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "--wait=false",
    ]);
    wait_for(
        "a new CoreDNS pod to be Ready",
        Duration::from_secs(120),
        || {
            ready_pods(&c, "kube-system", "k8s-app=kube-dns")
                .iter()
                .any(|p| !old.contains(p))
        },
    );

    // The restarted proxy programs a Service made now, and DNS answers for it.
    c.ok(&[
        "expose",
        "deployment/httpd",
        "--name=after",
        "--port=8081",
        "--target-port=80",
    ]);
    let cip = c.ok(&["get", "svc", "after", "-o", "jsonpath={.spec.clusterIP}"]);
    for node in ["k8s-m", "k8s-n1"] {
        wait_for(
            &format!("the new Service to answer from {node}"),
            Duration::from_secs(60),
            || {
                let out = c.node_exec(node, &["curl", "-s", "-m", "2", &format!("{cip}:8081")]);
                String::from_utf8_lossy(&out.stdout).trim_end() == PAGE
            },
        );
    }
    let mut attempt = 0;
    wait_for(
        "a pod to reach the Services by name",
        Duration::from_secs(90),
        || {
            attempt += 1;
            c.pod_fetches(&format!("fetch-{attempt}"), "httpd-svc:8080")
                && c.pod_fetches(&format!("fetch-after-{attempt}"), "after:8081")
        },
    );

    // Each bad object was skipped and named, with the field at fault.
    let logs = || {
        let mut all = String::new();
        for node in ["k8s-m", "k8s-n1"] {
            for log in ["server.log", "agent.log"] {
                let path = c.dir().join(node).join(log);
                all.push_str(&std::fs::read_to_string(path).unwrap_or_default());
            }
        }
        all
    };
    for (key, field) in [
        ("junk/bad-svc", "spec.ports[0].name"),
        ("junk/bad-deploy", "spec.replicas"),
    ] {
        wait_for(
            &format!("a log line naming {key}"),
            Duration::from_secs(10),
            || {
                logs().lines().any(|l| {
                    l.contains("skipping an object that does not decode")
                        && l.contains(key)
                        && l.contains(field)
                })
            },
        );
    }

    // The namespace with the bad objects goes away.
    c.ok(&["delete", "namespace", "junk", "--wait=false"]);
    wait_for(
        "namespace junk to be deleted",
        Duration::from_secs(90),
        || {
            let out = c.kubectl(&["get", "namespace", "junk"]);
            !out.success && out.stderr.contains("NotFound")
        },
    );
}
