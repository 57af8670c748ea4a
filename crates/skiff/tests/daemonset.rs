//! End-to-end: a DaemonSet on a real local cluster (`skiff up`), driven by the oldest
//! and newest supported kubectl as a user would (`get ds`, `rollout status`, `rollout
//! history`, `rollout undo`). Needs root, as `cluster.rs`.

mod common;

use common::{assert_tools, Cluster};
use skiff_testkit::kubectl::{self, Kubectl, NEWEST, OLDEST};

/// A DaemonSet `name` of busybox sleepers that also runs on the control plane. `sleep` is
/// its container's PID 1, which ignores SIGTERM: a grace period of 1 s (not the default
/// 30 s) keeps each rollout's pod replacements quick.
fn manifest(name: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{ds: {name}}}}}
  template:
    metadata: {{labels: {{ds: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}}
      containers:
      - {{name: c, image: busybox, command: [sleep, "3600"]}}
"#
    )
}

#[test]
#[ignore = "needs root"]
fn daemonset_rolls_out_with_kubectl_old_and_new() {
    assert_tools();
    let c = Cluster::up("ds", 2, &[]);
    let clients = kubectl::versions(&[OLDEST, NEWEST]);
    assert_eq!(clients.len(), 2, "kubectl {OLDEST} and {NEWEST} are needed");
    for path in clients {
        let k = Kubectl::new(path.clone(), &c.kubeconfig);
        let version = path.display().to_string();
        let name = format!("agent-{}", version.rsplit('.').next().unwrap_or("x"));
        let file = c.scratch().join(format!("{name}.yaml"));
        std::fs::write(&file, manifest(&name)).expect("writing the manifest");
        k.ok_quiet(&["apply", "-f", file.to_str().expect("utf-8 path")]);
        let ds = format!("ds/{name}");
        k.ok_quiet(&["rollout", "status", &ds, "--timeout=120s"]);

        // DESIRED CURRENT READY UP-TO-DATE AVAILABLE: one pod on each of the two nodes.
        let table = k.ok_quiet(&["get", "ds", &name]);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0][..6],
            [
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE"
            ],
            "{version}: {table}"
        );
        assert_eq!(
            rows[1][1..6],
            ["2", "2", "2", "2", "2"],
            "{version}: {table}"
        );
        let nodes = k.ok_quiet(&[
            "get",
            "pods",
            "-l",
            &format!("ds={name}"),
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ]);
        let mut nodes: Vec<&str> = nodes.lines().collect();
        nodes.sort();
        assert_eq!(nodes, ["k8s-m", "k8s-n1"], "{version}");

        // A template change rolls; its revisions are the ControllerRevisions.
        k.ok_quiet(&["set", "env", &ds, "STAGE=two"]);
        k.ok_quiet(&["rollout", "status", &ds, "--timeout=120s"]);
        let history = k.ok_quiet(&["rollout", "history", &ds]);
        let revisions: Vec<&str> = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.parse::<u32>().is_ok())
            .collect();
        assert_eq!(revisions, ["1", "2"], "{version}: {history}");
        k.ok_quiet(&["rollout", "undo", &ds]);
        k.ok_quiet(&["rollout", "status", &ds, "--timeout=120s"]);
        let env = k.ok_quiet(&[
            "get",
            &ds,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env}",
        ]);
        assert!(!env.contains("STAGE"), "{version}: undone, {env}");
        k.ok_quiet(&["delete", &ds]);
    }
}

#[test]
#[ignore = "needs root"]
fn a_node_added_with_skiff_up_gets_the_daemon_pod() {
    assert_tools();
    let c = Cluster::up("dsgrow", 1, &[]);
    c.apply(&manifest("grow"));
    c.ok_quiet(&["rollout", "status", "ds/grow", "--timeout=120s"]);

    // `skiff up --nodes 2` of the running 1-node cluster adds k8s-n1...
    let out = c.skiff(&["up", "--nodes", "2"]);
    assert!(out.status.success(), "growing: {}", common::text(&out));
    // ...and fewer nodes are refused, saying why.
    let out = c.skiff(&["up", "--nodes", "1"]);
    assert!(!out.status.success(), "shrinking was accepted");
    let said = common::text(&out);
    assert!(
        said.contains("has 2 nodes: skiff up adds nodes but does not remove them"),
        "{said}"
    );

    let clients = kubectl::versions(&[OLDEST, NEWEST]);
    assert_eq!(clients.len(), 2, "kubectl {OLDEST} and {NEWEST} are needed");
    for path in clients {
        let k = Kubectl::new(path.clone(), &c.kubeconfig);
        let version = path.display().to_string();
        k.ok_quiet(&["rollout", "status", "ds/grow", "--timeout=120s"]);
        let nodes = k.ok_quiet(&[
            "get",
            "pods",
            "-l",
            "ds=grow",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ]);
        let mut nodes: Vec<&str> = nodes.lines().collect();
        nodes.sort();
        assert_eq!(nodes, ["k8s-m", "k8s-n1"], "{version}");
        let table = k.ok_quiet(&["get", "ds", "grow", "--no-headers"]);
        let row: Vec<&str> = table.split_whitespace().collect();
        assert_eq!(row[1..6], ["2", "2", "2", "2", "2"], "{version}: {table}");
    }
}
