//! End-to-end: `kubectl debug` on a real local cluster (`skiff up`), with the oldest and
//! the newest kubectl: an ephemeral container in a running pod's process namespace
//! (`--target`), attached to and read back with `kubectl attach` and `kubectl logs`; a
//! refused target with kube-apiserver's message; a copy of the pod (`--copy-to`, which
//! kubectl creates as protobuf); a node's debugging pod (`node/x`: the host's PID
//! namespace, its root at `/host`). kubectl must print no warning. Needs root, as
//! `cluster.rs`.

mod common;

use std::time::Duration;

use common::{assert_tools, wait_for, Cluster};
use skiff_testkit::kubectl::{self, Kubectl, Output};

/// The pod to debug: a long sleep, found by its command line in the target's PID
/// namespace.
const APP: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers:
  - name: c
    image: busybox
    command: [sleep, "3600"]
"#;

/// stderr with kubectl's informational lines removed (`Targeting container`, the
/// prompt hint): what remains would be a warning or an error.
fn unexpected(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !l.starts_with("Targeting container")
                && !l.starts_with("If you don't see a command prompt")
                && !l.starts_with("All commands and output from this session")
                && !l.starts_with("Session ended")
        })
        .collect()
}

#[track_caller]
fn quiet(out: &Output, what: &str) {
    assert!(out.success, "{what}: {}", out.describe());
    assert!(
        unexpected(&out.stderr).is_empty(),
        "{what}: {}",
        out.describe()
    );
}

#[test]
#[ignore = "needs root"]
fn kubectl_debug_ephemeral_copy_and_node() {
    assert_tools();
    let c = Cluster::up("dbg", 1, &[]);
    c.apply(APP);
    c.ok_quiet(&["wait", "--for=condition=Ready", "pod/app", "--timeout=120s"]);
    let node = c
        .ok_quiet(&["get", "pod", "app", "-o", "jsonpath={.spec.nodeName}"])
        .trim()
        .to_string();
    let host_init = std::fs::read_to_string("/proc/1/comm").expect("/proc/1/comm");

    let bins = kubectl::versions(&[kubectl::OLDEST, kubectl::NEWEST]);
    assert_eq!(
        bins.len(),
        2,
        "kubectl {} and {}",
        kubectl::OLDEST,
        kubectl::NEWEST
    );
    for bin in bins {
        let v = bin
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("kubectl."))
            .unwrap_or("x")
            .replace('.', "");
        let k = Kubectl::new(&bin, &c.kubeconfig).deadline(Duration::from_secs(180));

        // An ephemeral container in the target's PID namespace sees its sleep.
        let dbg = format!("dbg{v}");
        let out = k.run_with(
            &[
                "debug",
                "-i",
                "pod/app",
                "--image=busybox",
                "--target=c",
                "--profile=general",
                &format!("--container={dbg}"),
                "--",
                "sh",
            ],
            Some("ps -o pid,args\necho marker-$((6*7))\nexit\n"),
        );
        quiet(&out, "kubectl debug --target");
        assert!(out.stdout.contains("sleep 3600"), "{}", out.describe());
        assert!(out.stdout.contains("marker-42"), "{}", out.describe());
        // Its status ends terminated, and its log keeps what it printed.
        wait_for(
            "the ephemeral container's terminated status",
            Duration::from_secs(60),
            || {
                let path = format!(
                    "jsonpath={{.status.ephemeralContainerStatuses[?(@.name==\"{dbg}\")].state.terminated.exitCode}}"
                );
                k.run(&["get", "pod", "app", "-o", &path]).stdout.trim() == "0"
            },
        );
        let logs = k.run(&["logs", "app", "-c", &dbg]);
        quiet(&logs, "kubectl logs of the ephemeral container");
        assert!(logs.stdout.contains("marker-42"), "{}", logs.describe());

        // kubectl attach to an ephemeral container left running.
        let waiter = format!("wait{v}");
        let out = k.run(&[
            "debug",
            "pod/app",
            "-i",
            "--attach=false",
            "--image=busybox",
            "--profile=general",
            &format!("--container={waiter}"),
            "--",
            "sh",
        ]);
        quiet(&out, "kubectl debug --attach=false");
        wait_for(
            "the ephemeral container to run",
            Duration::from_secs(60),
            || {
                let path = format!(
                    "jsonpath={{.status.ephemeralContainerStatuses[?(@.name==\"{waiter}\")].state.running.startedAt}}"
                );
                !k.run(&["get", "pod", "app", "-o", &path])
                    .stdout
                    .trim()
                    .is_empty()
            },
        );
        let out = k.run_with(
            &["attach", "-i", "app", "-c", &waiter],
            Some("echo attached-$((40+2))\nexit\n"),
        );
        quiet(&out, "kubectl attach");
        assert!(out.stdout.contains("attached-42"), "{}", out.describe());

        // A target that is no container of the pod: kube-apiserver's 422.
        let out = k.run(&[
            "debug",
            "pod/app",
            "--image=busybox",
            "--target=nope",
            "--profile=general",
            &format!("--container=bad{v}"),
        ]);
        assert!(!out.success, "{}", out.describe());
        assert!(
            out.stderr.contains(&format!(
                "Pod \"app\" is invalid: spec.ephemeralContainers[{}].targetContainerName: Not found: \"nope\"",
                ephemeral_count(&k)
            )),
            "{}",
            out.describe()
        );

        // A copy of the pod with a debugging container beside the app's.
        let copy = format!("app-copy{v}");
        let out = k.run(&[
            "debug",
            "app",
            &format!("--copy-to={copy}"),
            "--image=busybox",
            "--profile=general",
            "--container=debugger",
            "--",
            "sleep",
            "600",
        ]);
        quiet(&out, "kubectl debug --copy-to");
        let ready = k.run(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{copy}"),
            "--timeout=120s",
        ]);
        quiet(&ready, "the copy's readiness");
        let names = k.run(&[
            "get",
            "pod",
            &copy,
            "-o",
            "jsonpath={.spec.containers[*].name}",
        ]);
        assert_eq!(names.stdout.trim(), "c debugger", "{}", names.describe());

        // A node's debugging pod: the host's PID namespace and root.
        let out = k.run(&[
            "debug",
            &format!("node/{node}"),
            "--image=busybox",
            "--profile=general",
            "--",
            "sh",
            "-c",
            "cat /proc/1/comm; test -d /host/proc && echo host-root-ok",
        ]);
        quiet(&out, "kubectl debug node");
        let pod = out
            .stdout
            .split_whitespace()
            .find(|w| w.starts_with("node-debugger-"))
            .unwrap_or_else(|| panic!("no debugging pod named: {}", out.describe()))
            .to_string();
        wait_for(
            "the node's debugging pod to finish",
            Duration::from_secs(120),
            || {
                k.run(&["get", "pod", &pod, "-o", "jsonpath={.status.phase}"])
                    .stdout
                    .trim()
                    == "Succeeded"
            },
        );
        let spec = k.run(&[
            "get",
            "pod",
            &pod,
            "-o",
            "jsonpath={.spec.hostPID} {.spec.hostNetwork} {.spec.hostIPC}",
        ]);
        assert_eq!(spec.stdout.trim(), "true true true", "{}", spec.describe());
        let logs = k.run(&["logs", &pod]);
        quiet(&logs, "the node debugging pod's logs");
        assert!(logs.stdout.contains("host-root-ok"), "{}", logs.describe());
        assert_eq!(
            logs.stdout.lines().next().unwrap_or_default().trim(),
            host_init.trim(),
            "PID 1 is the host's: {}",
            logs.describe()
        );
    }
}

/// How many ephemeral containers pod `app` has (the index a new one gets).
fn ephemeral_count(k: &Kubectl) -> usize {
    k.run(&[
        "get",
        "pod",
        "app",
        "-o",
        "jsonpath={.spec.ephemeralContainers[*].name}",
    ])
    .stdout
    .split_whitespace()
    .count()
}
