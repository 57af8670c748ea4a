//! End-to-end: resource metrics and autoscaling on a real local cluster (`skiff up`),
//! driven by the newest kubectl as a user would: a busy busybox Deployment shows its CPU
//! in `kubectl top pods --containers -A` and the nodes in `kubectl top nodes` (the
//! agents' cgroup statistics through `metrics.k8s.io`), then `kubectl autoscale` scales
//! it up on CPU utilisation. Needs root, as `cluster.rs`.

mod common;

use std::time::Duration;

use common::{assert_tools, wait_for, Cluster};

/// One busybox spinning a CPU, requesting a tenth of a core.
const BUSY: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: busy}
spec:
  replicas: 1
  selector: {matchLabels: {app: busy}}
  template:
    metadata: {labels: {app: busy}}
    spec:
      containers:
      - name: spin
        image: busybox
        command: [sh, -c, "while true; do :; done"]
        resources: {requests: {cpu: 100m, memory: 16Mi}}
"#;

/// Millicores of a `kubectl top` CPU cell (`950m`, `1`).
fn millicores(cell: &str) -> u64 {
    match cell.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => cell.parse::<u64>().map(|c| c * 1000).unwrap_or(0),
    }
}

#[test]
#[ignore = "needs root"]
fn top_shows_a_busy_pod_and_the_autoscaler_scales_it() {
    assert_tools();
    let c = Cluster::up("mt", 2, &[]);
    c.apply(BUSY);
    c.ok_quiet(&["rollout", "status", "deploy/busy", "--timeout=120s"]);

    // Two samples of the agent (10 s apart) give the first rate.
    let mut table = String::new();
    wait_for(
        "the busy pod's CPU in kubectl top",
        Duration::from_secs(90),
        || {
            let out = c.kubectl(&["top", "pods", "--containers", "-A"]);
            table = out.stdout.clone();
            out.stderr.is_empty()
                && table.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() == 5
                        && f[1].starts_with("busy-")
                        && f[2] == "spin"
                        && millicores(f[3]) > 100
                })
        },
    );
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{table}"
    );
    // The pods of one namespace, with a label selector.
    let one = c.ok_quiet(&["top", "pods", "-l", "app=busy", "--no-headers"]);
    assert!(one.starts_with("busy-"), "{one}");

    let nodes = c.ok_quiet(&["top", "nodes"]);
    let rows: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
        "{nodes}"
    );
    let mut names: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    names.sort();
    assert_eq!(names, ["k8s-m", "k8s-n1"], "{nodes}");
    assert!(rows[1..].iter().all(|r| millicores(r[1]) > 0), "{nodes}");

    // The metrics objects themselves, as metrics-server serves them.
    let node = c.ok_quiet(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/k8s-n1"]);
    let node: serde_json::Value = serde_json::from_str(&node).expect("NodeMetrics JSON");
    assert_eq!(node["kind"], "NodeMetrics");
    assert_eq!(node["window"], "10s");
    let missing = c.kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope"]);
    assert!(
        missing.stderr.contains("NotFound") || missing.stderr.contains("not found"),
        "{}",
        missing.describe()
    );

    // kubectl autoscale (autoscaling/v2): one pod spinning a whole CPU is far above 50%
    // of its 100m request, so the controller scales to the maximum, 3.
    c.ok_quiet(&[
        "autoscale",
        "deployment",
        "busy",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    wait_for(
        "the autoscaler to scale busy to 3",
        Duration::from_secs(120),
        || c.ok(&["get", "deploy", "busy", "-o", "jsonpath={.spec.replicas}"]) == "3",
    );
    let hpa = c.ok_quiet(&["get", "hpa", "busy"]);
    let rows: Vec<Vec<&str>> = hpa
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ],
        "{hpa}"
    );
    assert_eq!(rows[1][..3], ["busy", "Deployment/busy", "cpu:"], "{hpa}");
    let (current, target) = rows[1][3].split_once('/').expect("current/target");
    assert_eq!(target, "50%", "{hpa}");
    assert!(
        current
            .trim_end_matches('%')
            .parse::<u32>()
            .is_ok_and(|p| p > 50),
        "{hpa}"
    );
    assert_eq!(rows[1][4..6], ["1", "3"], "{hpa}");
    let reason = |t: &str| {
        c.ok_quiet(&[
            "get",
            "hpa",
            "busy",
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"{t}\")].reason}}"),
        ])
    };
    assert_eq!(reason("ScalingActive"), "ValidMetricFound");
    assert_eq!(reason("ScalingLimited"), "TooManyReplicas");
    let events = c.ok_quiet(&[
        "get",
        "events",
        "--field-selector",
        "reason=SuccessfulRescale",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains(
            "New size: 3; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{events}"
    );
}
