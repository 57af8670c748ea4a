//! The API through the real kubectl (skipped when kubectl is not installed).

use std::path::Path;

use skiff_testkit::kubectl::{self, Kubectl};

use crate::common;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/seed/manifests"
);

/// kubectl binaries to try: the 1.33 and 1.28 clients and the dispatcher on PATH.
fn kubectls() -> Vec<std::path::PathBuf> {
    let mut out = kubectl::versions(&["1.33", "1.28"]);
    out.extend(kubectl::on_path());
    out
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_steps_with_real_kubectl() {
    let bins = kubectls();
    assert!(!bins.is_empty(), "kubectl is missing");
    assert!(
        Path::new(SEED).exists(),
        "the seed manifests are missing: {SEED}"
    );
    for bin in bins {
        let s = common::start().await;
        let k = s.kubectl(bin);
        blocking(move || seed_steps(&k)).await;
    }
}

fn seed_steps(k: &Kubectl) {
    let who = k.bin.display().to_string();
    let (ok, out, err) = k
        .run(&["apply", "-f", &format!("{SEED}/Httpd-Deployment.yaml")])
        .parts();
    assert!(ok, "{who}: {err}");
    assert_eq!(out.trim_end(), "deployment.apps/httpd created", "{who}");
    assert_eq!(err, "", "{who}: apply must not warn");

    let svc = k.ok(&["get", "svc"]);
    let line = svc
        .lines()
        .find(|l| l.starts_with("kubernetes "))
        .unwrap_or_default();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        &["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"],
        "{who}: {svc}"
    );

    let (ok, out, err) = k
        .run(&["apply", "-f", &format!("{SEED}/Httpd-Service.yaml")])
        .parts();
    assert!(ok && err.is_empty(), "{who}: {err}");
    assert_eq!(out.trim_end(), "service/httpd-svc created");
    let ip1 = k.ok(&[
        "get",
        "svc",
        "httpd-svc",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let (ok, out, err) = k
        .run(&[
            "apply",
            "-f",
            &format!("{SEED}/Httpd-Service-NodePort.yaml"),
        ])
        .parts();
    assert!(ok && err.is_empty(), "{who}: {err}");
    assert_eq!(out.trim_end(), "service/httpd-svc configured");
    let ip2 = k.ok(&[
        "get",
        "svc",
        "httpd-svc",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort} {.spec.type}",
    ]);
    assert_eq!(ip2, format!("{ip1} 31688 NodePort"), "{who}");

    let out = k.ok(&["create", "service", "nodeport", "auto-np", "--tcp=80:80"]);
    assert_eq!(out.trim_end(), "service/auto-np created");
    let np: u16 = k
        .ok(&[
            "get",
            "svc",
            "auto-np",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .parse()
        .unwrap();
    assert!((30000..=32767).contains(&np), "{who}: {np}");

    let desc = k.ok(&["describe", "service", "httpd-svc"]);
    for want in [
        "Name:",
        "httpd-svc",
        "Selector:",
        "run=httpd",
        "Type:",
        "NodePort",
        "TargetPort:",
        "80/TCP",
        "Session Affinity:",
    ] {
        assert!(desc.contains(want), "{who}: describe lacks {want}: {desc}");
    }

    let wide = k.ok(&["get", "pod", "-o", "wide", "-A"]);
    let (ok, _, err) = k.run(&["get", "pod", "nope"]).parts();
    assert!(!ok);
    assert_eq!(
        err.trim_end(),
        "Error from server (NotFound): pods \"nope\" not found",
        "{who}"
    );
    let _ = wide;

    let ns = k.ok(&["get", "ns"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            ns.lines().any(|l| l.starts_with(n) && l.contains("Active")),
            "{who}: {ns}"
        );
    }

    let out = k.ok(&["delete", "svc", "auto-np"]);
    assert_eq!(out.trim_end(), "service \"auto-np\" deleted");
    let out = k.ok(&["run", "bb", "--image=busybox", "--restart=Never"]);
    assert_eq!(out.trim_end(), "pod/bb created");
    let header = k.ok(&["get", "pod", "-o", "wide"]);
    let cols: Vec<&str> = header
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        cols,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{who}"
    );
    let out = k.ok(&["scale", "deployment", "httpd", "--replicas=2"]);
    assert_eq!(out.trim_end(), "deployment.apps/httpd scaled");
    assert_eq!(
        k.ok(&["get", "deploy", "httpd", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );
}
