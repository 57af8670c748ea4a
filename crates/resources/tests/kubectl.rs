//! The real `kubectl` against this crate's documents: a minimal HTTP server (loopback
//! only, one thread, `Connection: close`) serves discovery, OpenAPI v3, Tables, and
//! records the bodies kubectl sends. Fails when `kubectl` is not installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{json, Value};
use skiff_resources::{discovery, lookup, openapi, IncludeObject};
use skiff_testkit::kubectl::{self, Kubectl};

/// One request as received.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

type Log = Arc<Mutex<Vec<Req>>>;

/// Whether the seed Deployment "exists" on the fake server.
type Exists = Arc<std::sync::atomic::AtomicBool>;

fn seed_service() -> Value {
    let last = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"annotations": {}, "name": "httpd-svc", "namespace": "default"},
        "spec": {"ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}], "selector": {"run": "httpd"}}});
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "httpd-svc", "namespace": "default", "uid": "u1", "resourceVersion": "5",
                     "creationTimestamp": "2026-01-01T00:00:00Z",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last.to_string()}},
        "spec": {"clusterIP": "10.110.212.171", "clusterIPs": ["10.110.212.171"],
                 "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}],
                 "selector": {"run": "httpd"}, "sessionAffinity": "None", "type": "ClusterIP"},
        "status": {"loadBalancer": {}}})
}

/// The seed Deployment as stored after `kubectl apply` (defaulted, in apps/v1beta1).
fn seed_deployment() -> Value {
    let manifest = json!({"apiVersion": "apps/v1beta1", "kind": "Deployment",
        "metadata": {"name": "httpd", "namespace": "default"},
        "spec": {"replicas": 4, "template": {"metadata": {"labels": {"run": "httpd"}},
            "spec": {"containers": [{"name": "httpd", "image": "httpd", "ports": [{"containerPort": 80}]}]}}}});
    let info = lookup("apps", "v1beta1", "deployments").expect("deployments");
    let mut last = manifest.clone();
    last["metadata"]["annotations"] = json!({});
    let mut d = skiff_resources::convert(manifest, "apps/v1");
    skiff_resources::default_object(info, &mut d);
    d["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": last.to_string()});
    d["metadata"]["uid"] = json!("u2");
    d["metadata"]["resourceVersion"] = json!("7");
    skiff_resources::convert(d, "apps/v1beta1")
}

fn respond(stream: &mut TcpStream, code: u16, ct: &str, body: &Value) {
    let b = serde_json::to_vec(body).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        b.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&b);
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn handle(mut stream: TcpStream, log: &Log, deployment_exists: &Exists) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let full = parts.next().unwrap_or("").to_string();
    let mut accept = String::new();
    let mut content_type = String::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((&h, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "accept" => accept = v.trim().to_string(),
            "content-type" => content_type = v.trim().to_string(),
            "content-length" => len = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let body = String::from_utf8_lossy(&body).to_string();
    let path = full
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    log.lock().expect("log").push(Req {
        method: method.clone(),
        path: full.clone(),
        content_type,
        body: body.clone(),
    });
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let aggregated = accept.contains("as=APIGroupDiscoveryList");
    let table = accept.contains("as=Table");
    const AGG: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    const JSON: &str = "application/json";
    let found = |s: &mut TcpStream, v: Option<Value>| match v {
        Some(v) => respond(s, 200, JSON, &v),
        None => respond(s, 404, JSON, &not_found()),
    };
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["version"]) => respond(
            &mut stream,
            200,
            JSON,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}),
        ),
        ("GET", ["api"]) if aggregated => {
            respond(&mut stream, 200, AGG, &discovery::aggregated(true, true))
        }
        ("GET", ["apis"]) if aggregated => {
            respond(&mut stream, 200, AGG, &discovery::aggregated(false, true))
        }
        ("GET", ["api"]) => respond(&mut stream, 200, JSON, &discovery::core_versions()),
        ("GET", ["apis"]) => respond(&mut stream, 200, JSON, &discovery::api_groups()),
        ("GET", ["api", v]) => found(&mut stream, discovery::resource_list("", v)),
        ("GET", ["apis", g, v]) => found(&mut stream, discovery::resource_list(g, v)),
        ("GET", ["openapi", "v3"]) => respond(&mut stream, 200, JSON, &openapi::v3_root()),
        ("GET", ["openapi", "v3", "api", v]) => found(&mut stream, openapi::v3_document("", v)),
        ("GET", ["openapi", "v3", "apis", g, v]) => found(&mut stream, openapi::v3_document(g, v)),
        ("GET", ["api", "v1", "namespaces", "default", "services", "httpd-svc"]) => {
            respond(&mut stream, 200, JSON, &seed_service())
        }
        ("GET", ["api", "v1", "namespaces", "default", "services"]) if table => {
            let info = lookup("", "v1", "services").expect("services");
            let t = skiff_resources::table(
                info,
                &[seed_service()],
                IncludeObject::Metadata,
                Utc::now(),
            );
            respond(
                &mut stream,
                200,
                "application/json;as=Table;v=v1;g=meta.k8s.io",
                &t,
            )
        }
        ("GET", ["apis", "apps", "v1beta1", "namespaces", "default", "deployments", "httpd"])
            if deployment_exists.load(std::sync::atomic::Ordering::SeqCst) =>
        {
            respond(&mut stream, 200, JSON, &seed_deployment())
        }
        ("PATCH", ["apis", "apps", "v1beta1", "namespaces", "default", "deployments", "httpd"]) => {
            let info = lookup("apps", "v1beta1", "deployments").expect("deployments");
            let patch: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            match skiff_resources::strategic_merge_patch(info, &seed_deployment(), &patch) {
                Ok(v) => respond(&mut stream, 200, JSON, &v),
                Err(e) => respond(
                    &mut stream,
                    422,
                    JSON,
                    &json!({"kind": "Status", "message": e.to_string(), "code": 422}),
                ),
            }
        }
        ("PATCH", ["api", "v1", "namespaces", "default", "services", "httpd-svc"]) => {
            let info = lookup("", "v1", "services").expect("services");
            let patch: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            match skiff_resources::strategic_merge_patch(info, &seed_service(), &patch) {
                Ok(v) => respond(&mut stream, 200, JSON, &v),
                Err(e) => respond(
                    &mut stream,
                    422,
                    JSON,
                    &json!({"kind": "Status", "message": e.to_string(), "code": 422}),
                ),
            }
        }
        ("POST", ["apis", g, v, "namespaces", ns, plural]) => {
            let info = lookup(g, v, plural).expect("registered");
            let mut obj: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            obj["metadata"]["namespace"] = json!(ns);
            let mut stored = skiff_resources::convert(obj, &info.storage_api_version());
            skiff_resources::default_object(info, &mut stored);
            let errs = skiff_resources::validate(info, &stored, None);
            if errs.is_empty() {
                respond(
                    &mut stream,
                    201,
                    JSON,
                    &skiff_resources::convert(stored, &info.api_version()),
                )
            } else {
                let name = stored["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                respond(
                    &mut stream,
                    422,
                    JSON,
                    &skiff_resources::validation::invalid_status(info, &name, &errs),
                )
            }
        }
        _ => respond(&mut stream, 404, JSON, &not_found()),
    }
}

struct Fake {
    log: Log,
    deployment_exists: Exists,
    kubectl: Kubectl,
    /// Holds the kubeconfig, kubectl's HOME and the tests' manifests.
    dir: tempfile::TempDir,
}

impl Fake {
    fn start() -> Fake {
        let bin = kubectl::default();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        let deployment_exists: Exists = Arc::default();
        let e2 = deployment_exists.clone();
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                handle(s, &l2, &e2);
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: f, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
             contexts: [{{name: f, context: {{cluster: f, user: u, namespace: default}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncurrent-context: f\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kc).expect("kubeconfig");
        let kubectl = Kubectl::new(bin, dir.path().join("kubeconfig"))
            .env("HOME", dir.path())
            .env("KUBECTL_NO_PROXY", "1");
        Fake {
            log,
            deployment_exists,
            kubectl,
            dir,
        }
    }

    /// Whether kubectl succeeded, and its stdout followed by its stderr.
    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = self.kubectl.run(args);
        (out.success, out.combined())
    }

    fn requests(&self, method: &str) -> Vec<Req> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|r| r.method == method)
            .cloned()
            .collect()
    }
}

fn manifest(name: &str) -> String {
    format!(
        "{}/../../../shared/seed/manifests/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn kubectl_explain_reads_openapi_v3() {
    let f = Fake::start();
    let (ok, out) = f.kubectl(&["explain", "deployment.spec.strategy"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("FIELD: strategy <DeploymentStrategy>"),
        "{out}"
    );
    let (ok, out) = f.kubectl(&["explain", "svc.spec.ports.targetPort"]);
    assert!(ok, "{out}");
    assert!(out.contains("targetPort"), "{out}");
}

#[test]
fn kubectl_apply_nodeport_sends_the_seed_patch() {
    let f = Fake::start();
    let m = manifest("Httpd-Service-NodePort.yaml");
    assert!(
        std::path::Path::new(&m).exists(),
        "seed manifests not found: {m}"
    );
    let (ok, out) = f.kubectl(&["apply", "-f", &m]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "service/httpd-svc configured");
    let patches = f.requests("PATCH");
    assert_eq!(patches.len(), 1);
    assert!(
        patches[0].path.contains("fieldValidation=Strict"),
        "{}",
        patches[0].path
    );
    assert_eq!(
        patches[0].content_type,
        "application/strategic-merge-patch+json"
    );
    let p: Value = serde_json::from_str(&patches[0].body).expect("patch json");
    assert_eq!(
        p["spec"],
        json!({"$setElementOrder/ports": [{"port": 8080}],
        "ports": [{"nodePort": 31688, "port": 8080}], "type": "NodePort"})
    );
}

#[test]
fn kubectl_apply_v1beta1_deployment_creates() {
    let f = Fake::start();
    let m = manifest("Httpd-Deployment.yaml");
    assert!(
        std::path::Path::new(&m).exists(),
        "seed manifests not found: {m}"
    );
    let (ok, out) = f.kubectl(&["apply", "-f", &m]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "deployment.apps/httpd created");
    let posts = f.requests("POST");
    assert!(posts[0]
        .path
        .starts_with("/apis/apps/v1beta1/namespaces/default/deployments"));
}

#[test]
fn kubectl_apply_changed_deployment_patches_by_container_name() {
    let f = Fake::start();
    f.deployment_exists
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let changed = "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata:\n  name: httpd\nspec:\n  replicas: 2\n  template:\n    metadata:\n      labels:\n        run: httpd\n    spec:\n      containers:\n      - name: httpd\n        image: httpd:2.4\n        ports:\n        - containerPort: 80\n      - name: sidecar\n        image: busybox\n";
    let file = f.dir.path().join("d.yaml");
    std::fs::write(&file, changed).expect("manifest");
    let (ok, out) = f.kubectl(&["apply", "-f", file.to_str().expect("path")]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "deployment.apps/httpd configured");
    let patches = f.requests("PATCH");
    let p: Value = serde_json::from_str(&patches[0].body).expect("patch json");
    assert_eq!(
        p["spec"]["template"]["spec"]["$setElementOrder/containers"],
        json!([{"name": "httpd"}, {"name": "sidecar"}])
    );
    let info = lookup("apps", "v1beta1", "deployments").expect("deployments");
    let merged =
        skiff_resources::strategic_merge_patch(info, &seed_deployment(), &p).expect("merge");
    let cs = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs[0]["image"], "httpd:2.4");
    assert_eq!(
        cs[0]["terminationMessagePath"], "/dev/termination-log",
        "server-set fields stay"
    );
    assert_eq!(
        cs[0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(cs[1]["name"], "sidecar");
    assert_eq!(merged["spec"]["replicas"], 2);
}

#[test]
fn kubectl_get_svc_prints_the_table() {
    let f = Fake::start();
    let (ok, out) = f.kubectl(&["get", "svc", "-o", "wide"]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..5],
        [
            "httpd-svc",
            "ClusterIP",
            "10.110.212.171",
            "<none>",
            "8080/TCP"
        ]
    );
    assert_eq!(row[6], "run=httpd");
}
