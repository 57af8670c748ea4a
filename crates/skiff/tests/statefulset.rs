//! End-to-end: a StatefulSet behind its headless Service on a real local cluster
//! (`skiff up`), driven by the oldest and newest supported kubectl as a user would:
//! `rollout status`, a deleted pod that comes back with its name, DNS name and volume
//! (a claim from `volumeClaimTemplates` on the default StorageClass), `scale`, a rolled
//! template change and `rollout undo`. Needs root, as `cluster.rs`.

mod common;

use std::time::Duration;

use common::{assert_tools, wait_for, Cluster};
use skiff_testkit::kubectl::{self, Kubectl, NEWEST, OLDEST};

/// The headless Service `web` and the StatefulSet `web` of three httpd pods, each with
/// its claim `www-web-<ordinal>` mounted at `/data`.
const MANIFEST: &str = r#"apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80, name: http}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: httpd
        ports: [{containerPort: 80}]
        volumeMounts: [{name: www, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 5Mi}}}
"#;

/// A kubectl whose every command is in one namespace (`-n`).
struct Ns(Kubectl, String);

impl Ns {
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["-n", self.1.as_str()];
        v.extend_from_slice(args);
        v
    }

    fn run(&self, args: &[&str]) -> kubectl::Output {
        self.0.run(&self.args(args))
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.0.ok(&self.args(args))
    }

    #[track_caller]
    fn ok_quiet(&self, args: &[&str]) -> String {
        self.0.ok_quiet(&self.args(args))
    }

    fn deadline(&self, d: Duration) -> Ns {
        Ns(self.0.clone().deadline(d), self.1.clone())
    }
}

#[test]
#[ignore = "needs root"]
fn statefulset_keeps_names_and_dns_with_kubectl_old_and_new() {
    assert_tools();
    let c = Cluster::up("sts", 2, &[]);
    let clients = kubectl::versions(&[OLDEST, NEWEST]);
    assert_eq!(clients.len(), 2, "kubectl {OLDEST} and {NEWEST} are needed");
    for path in clients {
        let version = path.display().to_string();
        let ns = format!("sts-{}", version.rsplit('.').next().unwrap_or("x"));
        let k = Kubectl::new(path.clone(), &c.kubeconfig);
        k.ok_quiet(&["create", "namespace", &ns]);
        let k = Ns(k, ns.clone());
        let file = c.scratch().join(format!("{ns}.yaml"));
        std::fs::write(&file, MANIFEST).expect("writing the manifest");
        k.ok_quiet(&["apply", "-f", file.to_str().expect("utf-8 path")]);
        let rollout = k.ok(&["rollout", "status", "sts/web", "--timeout=180s"]);
        assert!(
            rollout.contains("partitioned roll out complete: 3 new pods have been updated"),
            "{version}: {rollout}"
        );
        let pods = |k: &Ns| {
            k.ok_quiet(&[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
            ])
        };
        let listed = pods(&k);
        let names: Vec<&str> = listed
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(names, ["web-0", "web-1", "web-2"], "{version}");
        let table = k.ok_quiet(&["get", "sts", "web"]);
        assert!(
            table.lines().nth(1).is_some_and(|l| l.contains("3/3")),
            "{version}: {table}"
        );

        // Each ordinal has its own bound claim; web-1 writes into its volume.
        let claims = k.ok_quiet(&[
            "get",
            "pvc",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}",
        ]);
        assert_eq!(
            claims.trim(),
            "www-web-0=Bound www-web-1=Bound www-web-2=Bound",
            "{version}"
        );
        k.ok_quiet(&["exec", "web-1", "--", "sh", "-c", "echo kept > /data/id"]);

        // web-1 deleted comes back with its name and its volume; its DNS name follows its
        // new IP.
        let uid = |k: &Ns| k.ok_quiet(&["get", "pod", "web-1", "-o", "jsonpath={.metadata.uid}"]);
        let old_uid = uid(&k);
        k.ok_quiet(&["delete", "pod", "web-1"]);
        wait_for("web-1 back", Duration::from_secs(120), || {
            let u = k.run(&["get", "pod", "web-1", "-o", "jsonpath={.metadata.uid}"]);
            !u.stdout.trim().is_empty() && u.stdout.trim() != old_uid
        });
        k.ok_quiet(&["rollout", "status", "sts/web", "--timeout=180s"]);
        assert_eq!(
            k.ok_quiet(&["exec", "web-1", "--", "cat", "/data/id"])
                .trim(),
            "kept",
            "{version}: web-1's volume came back with it"
        );
        let ip = k.ok_quiet(&["get", "pod", "web-1", "-o", "jsonpath={.status.podIP}"]);
        let fqdn = format!("web-1.web.{ns}.svc.cluster.local");
        let mut last = String::new();
        let resolved = (0..10).any(|i| {
            let out = k.deadline(Duration::from_secs(60)).run(&[
                "run",
                &format!("lookup-{i}"),
                "-i",
                "--rm",
                "--image=busybox",
                "--restart=Never",
                "--",
                "nslookup",
                &fqdn,
            ]);
            last = out.describe();
            let _ = k.run(&[
                "delete",
                "pod",
                &format!("lookup-{i}"),
                "--ignore-not-found",
            ]);
            out.stdout.contains(ip.trim())
        });
        assert!(resolved, "{version}: {fqdn} should resolve to {ip}: {last}");

        // Scale up and down: the new ordinal in order, then from the top.
        k.ok_quiet(&["scale", "sts/web", "--replicas=4"]);
        k.ok_quiet(&["rollout", "status", "sts/web", "--timeout=180s"]);
        wait_for("web-3", Duration::from_secs(60), || {
            pods(&k).lines().any(|l| l.starts_with("web-3 "))
        });
        k.ok_quiet(&["scale", "sts/web", "--replicas=2"]);
        wait_for("two pods", Duration::from_secs(120), || {
            let l = pods(&k);
            let names: Vec<&str> = l
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            names == ["web-0", "web-1"]
        });

        // A template change rolls; rollout undo brings the first template back.
        k.ok_quiet(&["set", "env", "sts/web", "STAGE=two"]);
        k.ok_quiet(&["rollout", "status", "sts/web", "--timeout=180s"]);
        let history = k.ok_quiet(&["rollout", "history", "sts/web"]);
        let revisions: Vec<&str> = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.parse::<u32>().is_ok())
            .collect();
        assert_eq!(revisions, ["1", "2"], "{version}: {history}");
        let env = k.ok_quiet(&[
            "get",
            "pod",
            "web-0",
            "-o",
            "jsonpath={.spec.containers[0].env}",
        ]);
        assert!(env.contains("STAGE"), "{version}: web-0 rolled, {env}");
        k.ok_quiet(&["rollout", "undo", "sts/web"]);
        k.ok_quiet(&["rollout", "status", "sts/web", "--timeout=180s"]);
        wait_for("web-0 undone", Duration::from_secs(120), || {
            let env = k.run(&[
                "get",
                "pod",
                "web-0",
                "-o",
                "jsonpath={.spec.containers[0].env}",
            ]);
            env.success && !env.stdout.contains("STAGE")
        });
        k.0.ok_quiet(&["delete", "namespace", &ns, "--wait=false"]);
    }
}
