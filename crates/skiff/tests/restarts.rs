//! Restart safety on a real local cluster (`skiff up`), as issue 13 §4 asks (needs root,
//! kubectl, runc, iptables and the CNI plugins; run with `--include-ignored`):
//!
//! - an agent killed with SIGKILL and started again takes its containers back (same
//!   IDs, no restarts) with their probes: every pod is Ready again within its probe
//!   period, readiness and liveness probes act on the adopted containers, and a startup
//!   probe that had passed is not run again;
//! - a Node deleted through the API is registered again by its running agent within
//!   10 s, with the same pod CIDR, and its pods are on it again.
//!
//! Each test brings up its own cluster (`<prefix><pid>`), removed also when it fails.

mod common;

use std::time::{Duration, Instant};

use common::{kill_and_reap, text, wait_for, Cluster};

/// Probe period of every probe below, in seconds.
const PERIOD: u64 = 2;

/// Pods pinned to k8s-n1, each with the probes a restart must bring back:
/// - `web`: httpd with HTTP readiness and TCP liveness probes;
/// - `plain`: httpd without probes (Ready at once);
/// - `gate`: readiness from a file (removed after the restart: the pod must go NotReady);
/// - `late`: readiness from a file that only appears after the restart (Ready then);
/// - `live`: liveness from a file (removed after the restart: the container restarts);
/// - `slow`: a startup probe that passed once and would never pass again: the adopted
///   container stays started (kubelet does not run a passed startup probe again).
const PODS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: web}
  spec:
    nodeSelector: {kubernetes.io/hostname: k8s-n1}
    containers:
    - name: httpd
      image: httpd
      readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 2}
      livenessProbe: {tcpSocket: {port: 80}, periodSeconds: 2}
- apiVersion: v1
  kind: Pod
  metadata: {name: plain}
  spec:
    nodeSelector: {kubernetes.io/hostname: k8s-n1}
    containers:
    - {name: httpd, image: httpd}
- apiVersion: v1
  kind: Pod
  metadata: {name: gate}
  spec:
    nodeSelector: {kubernetes.io/hostname: k8s-n1}
    containers:
    - name: app
      image: busybox
      command: [sh, -c, "touch /tmp/ready; exec sleep 3600"]
      readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 2, failureThreshold: 1}
- apiVersion: v1
  kind: Pod
  metadata: {name: late}
  spec:
    nodeSelector: {kubernetes.io/hostname: k8s-n1}
    containers:
    - name: app
      image: busybox
      command: [sh, -c, "exec sleep 3600"]
      readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 2}
- apiVersion: v1
  kind: Pod
  metadata: {name: live}
  spec:
    nodeSelector: {kubernetes.io/hostname: k8s-n1}
    containers:
    - name: app
      image: busybox
      command: [sh, -c, "touch /tmp/alive; exec sleep 3600"]
      livenessProbe: {exec: {command: [cat, /tmp/alive]}, periodSeconds: 2, failureThreshold: 1}
- apiVersion: v1
  kind: Pod
  metadata: {name: slow}
  spec:
    nodeSelector: {kubernetes.io/hostname: k8s-n1}
    containers:
    - name: app
      image: busybox
      command: [sh, -c, "touch /tmp/once; exec sleep 3600"]
      startupProbe: {exec: {command: [sh, -c, "rm /tmp/once"]}, periodSeconds: 2, failureThreshold: 1}
"#;

const READY: &str = "{.status.conditions[?(@.type==\"Ready\")].status}";

#[test]
#[ignore = "needs root"]
fn a_killed_agent_takes_back_its_pods_with_their_probes() {
    let c = Cluster::up("rst", 2, &[]);
    c.apply(PODS);
    let ready_except_late = || {
        let rows = c.pods_on("k8s-n1", READY);
        rows.iter()
            .filter(|r| r.starts_with("default/"))
            .all(|r| r.ends_with("=True") || r.starts_with("default/late="))
            && rows.iter().filter(|r| r.starts_with("default/")).count() == 6
    };
    wait_for(
        "the pods on k8s-n1 to be Ready",
        Duration::from_secs(60),
        ready_except_late,
    );
    let ids =
        "{.status.containerStatuses[*].containerID}/{.status.containerStatuses[*].restartCount}";
    let before = c.pods_on("k8s-n1", ids);

    for pid in c.agent_pids("k8s-n1") {
        kill_and_reap(pid);
    }
    // `skiff up` starts the killed agent again (and waits for the cluster to be ready,
    // CoreDNS included, which fails if a CoreDNS pod of k8s-n1 stayed NotReady).
    let restarted = Instant::now();
    let out = c.skiff(&["up"]);
    assert!(out.status.success(), "restarting the agent: {}", text(&out));

    // Every pod that was Ready is Ready within one probe period of the agent's start
    // (plus the agent's own start-up), without restarts or new containers.
    let mut rows = c.pods_on("k8s-n1", READY);
    let all_ready = |rows: &[String]| {
        rows.iter()
            .all(|r| r.ends_with("=True") || r.starts_with("default/late="))
    };
    while !all_ready(&rows) {
        assert!(
            restarted.elapsed() < Duration::from_secs(PERIOD + 10),
            "pods on k8s-n1 not Ready again {:?} after the agent's restart: {rows:?}",
            restarted.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
        rows = c.pods_on("k8s-n1", READY);
    }
    eprintln!(
        "pods Ready {:?} after the agent's restart began",
        restarted.elapsed()
    );
    // ...and they stay Ready (a readiness that was reset and never probed again would
    // show as False here once the agent posts its first status).
    let watch_until = Instant::now() + Duration::from_secs(PERIOD * 2);
    while Instant::now() < watch_until {
        let rows = c.pods_on("k8s-n1", READY);
        assert!(
            rows.iter()
                .all(|r| r.ends_with("=True") || r.starts_with("default/late=")),
            "a pod went NotReady after the agent's restart: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        c.pods_on("k8s-n1", ids),
        before,
        "the restarted agent took its containers back (same IDs, no restarts)"
    );
    let started = c.ok(&[
        "get",
        "pod",
        "slow",
        "-o",
        "jsonpath={.status.containerStatuses[0].started}",
    ]);
    assert_eq!(started, "true", "a passed startup probe is not run again");

    // Readiness probes run on the adopted containers: `gate` goes NotReady, `late`
    // becomes Ready.
    c.ok(&["exec", "gate", "--", "rm", "/tmp/ready"]);
    c.ok(&["exec", "late", "--", "touch", "/tmp/ready"]);
    let ready = |pod: &str| c.ok(&["get", "pod", pod, "-o", &format!("jsonpath={READY}")]);
    wait_for(
        "gate to become NotReady",
        Duration::from_secs(PERIOD * 3),
        || ready("gate") == "False",
    );
    wait_for(
        "late to become Ready",
        Duration::from_secs(PERIOD * 3),
        || ready("late") == "True",
    );
    // Liveness probes too: `live` is restarted once its probe fails.
    c.ok(&["exec", "live", "--", "rm", "/tmp/alive"]);
    wait_for(
        "live to be restarted by its liveness probe",
        Duration::from_secs(PERIOD * 3 + 35),
        || {
            c.ok(&[
                "get",
                "pod",
                "live",
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount}",
            ]) == "1"
        },
    );
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "slow",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]),
        "0",
        "the startup probe that had passed was not run again"
    );
}

#[test]
#[ignore = "needs root"]
fn a_deleted_node_is_registered_again_by_its_agent() {
    let c = Cluster::up("rrg", 2, &[]);
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: stay}
spec:
  nodeSelector: {kubernetes.io/hostname: k8s-n1}
  containers:
  - {name: httpd, image: httpd}
"#,
    );
    c.ok(&["wait", "--for=condition=Ready", "pod/stay", "--timeout=60s"]);
    let cidr = |c: &Cluster| c.ok(&["get", "node", "k8s-n1", "-o", "jsonpath={.spec.podCIDR}"]);
    let uid = |c: &Cluster| c.ok(&["get", "node", "k8s-n1", "-o", "jsonpath={.metadata.uid}"]);
    let (old_cidr, old_uid) = (cidr(&c), uid(&c));
    let pod_ip = c.ok(&["get", "pod", "stay", "-o", "jsonpath={.status.podIP}"]);

    c.ok(&["delete", "node", "k8s-n1", "--wait=true"]);
    let deleted = Instant::now();
    wait_for(
        "k8s-n1 to be registered again",
        Duration::from_secs(10),
        || c.kubectl(&["get", "node", "k8s-n1", "-o", "name"]).success,
    );
    eprintln!(
        "k8s-n1 registered again {:?} after its deletion",
        deleted.elapsed()
    );
    assert_ne!(uid(&c), old_uid, "a new Node object");
    assert_eq!(
        cidr(&c),
        old_cidr,
        "the Node asks for the pod CIDR its pods use"
    );
    let labels = c.ok(&[
        "get",
        "node",
        "k8s-n1",
        "-o",
        "jsonpath={.metadata.labels.kubernetes\\.io/hostname}",
    ]);
    assert_eq!(labels, "k8s-n1", "registered with its labels");
    wait_for("k8s-n1 to be Ready", Duration::from_secs(20), || {
        c.ok(&["get", "node", "k8s-n1", "-o", &format!("jsonpath={READY}")]) == "True"
    });
    // Its pod is on it again, unchanged.
    let pods: Vec<String> = c
        .pods_on("k8s-n1", "{.status.phase}/{.status.podIP}")
        .into_iter()
        .filter(|p| p.starts_with("default/"))
        .collect();
    assert_eq!(pods, vec![format!("default/stay=Running/{pod_ip}")]);
    // The node Lease belongs to the new Node (else the garbage collector removes it).
    let new_uid = uid(&c);
    wait_for(
        "the node Lease to name the new Node as its owner",
        Duration::from_secs(15),
        || {
            c.kubectl(&[
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                "k8s-n1",
                "-o",
                "jsonpath={.metadata.ownerReferences[0].uid}",
            ])
            .stdout
                == new_uid
        },
    );
}
