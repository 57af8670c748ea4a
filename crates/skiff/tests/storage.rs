//! End-to-end: storage on a real local cluster (`skiff up`), driven by the oldest and
//! newest supported kubectl: a claim of the default StorageClass bound on its first
//! pod's node (`get pv,pvc`), its data kept across pods and removed with the claim, a
//! `medium: Memory` emptyDir as a tmpfs in the container, a pod evicted for going
//! over its emptyDir `sizeLimit`; a local volume made by hand that decides its pod's
//! node, and a ReadWriteOncePod claim. Needs root, as `cluster.rs`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{assert_tools, wait_for, Cluster};
use skiff_testkit::kubectl::{self, Kubectl, NEWEST, OLDEST};

/// A claim `name` of the default class (no `storageClassName`) and a pod `pod` that
/// runs `script` with the claim at /data.
fn claim_and_pod(claim: &str, pod: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {claim}}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 10Mi}}}}
---
{}"#,
        pod_with_claim(claim, pod, script)
    )
}

fn pod_with_claim(claim: &str, pod: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, {script:?}]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - {{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}
"#
    )
}

/// A pod with an emptyDir `scratch` at /scratch (`medium` and `sizeLimit` as given).
fn empty_dir_pod(pod: &str, medium: &str, limit: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, {script:?}]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  volumes:
  - name: scratch
    emptyDir: {{medium: "{medium}", sizeLimit: {limit}}}
"#
    )
}

fn apply(c: &Cluster, k: &Kubectl, name: &str, manifest: &str) {
    let file = c.scratch().join(format!("{name}.yaml"));
    std::fs::write(&file, manifest).expect("writing the manifest");
    k.ok_quiet(&["apply", "-f", file.to_str().expect("utf-8 path")]);
}

fn get(k: &Kubectl, what: &[&str], jsonpath: &str) -> String {
    let out = format!("jsonpath={jsonpath}");
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend(["-o", &out]);
    k.ok_quiet(&args)
}

#[test]
#[ignore = "needs root"]
fn claims_memory_volumes_and_size_limits_with_kubectl_old_and_new() {
    assert_tools();
    let c = Cluster::up("st", 2, &[]);
    let clients = kubectl::versions(&[OLDEST, NEWEST]);
    assert_eq!(clients.len(), 2, "kubectl {OLDEST} and {NEWEST} are needed");
    for path in clients {
        let k = Kubectl::new(path.clone(), &c.kubeconfig);
        let version = path.display().to_string();
        let v = version.rsplit('.').next().unwrap_or("x").to_string();
        let claim = format!("data-{v}");

        // The first pod binds the claim on its node, and writes into the volume.
        let writer = format!("writer-{v}");
        apply(
            &c,
            &k,
            &writer,
            &claim_and_pod(
                &claim,
                &writer,
                &format!("echo hello-{v} > /data/f && sleep 3600"),
            ),
        );
        k.ok_quiet(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{writer}"),
            "--timeout=120s",
        ]);
        let node = get(&k, &["pod", &writer], "{.spec.nodeName}");
        assert_eq!(node, "k8s-n1", "{version}");
        let pv = get(&k, &["pvc", &claim], "{.spec.volumeName}");
        let uid = get(&k, &["pvc", &claim], "{.metadata.uid}");
        assert_eq!(pv, format!("pvc-{uid}"), "{version}");
        let table = k.ok_quiet(&["get", "pv,pvc"]);
        let row = |name: &str| -> Vec<String> {
            table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{version}: no row {name} in\n{table}"))
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        let pvc_row = row(&format!("persistentvolumeclaim/{claim}"));
        for want in ["Bound", pv.as_str(), "10Mi", "RWO", "standard"] {
            assert!(
                pvc_row.iter().any(|c| c == want),
                "{version}: {want} in\n{table}"
            );
        }
        let pv_row = row(&format!("persistentvolume/{pv}"));
        for want in [
            "10Mi",
            "RWO",
            "Delete",
            "Bound",
            &format!("default/{claim}"),
            "standard",
        ] {
            assert!(
                pv_row.iter().any(|c| c == want),
                "{version}: {want} in\n{table}"
            );
        }

        // On the node: under the directory its Node names, the volume with the file.
        let base = get(
            &k,
            &["node", &node],
            "{.metadata.annotations.storage\\.skiff\\.dev/local-path}",
        );
        let dir = PathBuf::from(&base).join(format!("pvc-{uid}_default_{claim}"));
        assert_eq!(
            std::fs::read_to_string(dir.join("f")).expect("the file on the node"),
            format!("hello-{v}\n"),
            "{version}"
        );

        // Another pod with the same claim reads what the first wrote.
        k.ok_quiet(&["delete", "pod", &writer, "--wait=true"]);
        let reader = format!("reader-{v}");
        apply(
            &c,
            &k,
            &reader,
            &pod_with_claim(&claim, &reader, "cat /data/f"),
        );
        k.ok_quiet(&[
            "wait",
            "--for=jsonpath={.status.phase}=Succeeded",
            &format!("pod/{reader}"),
            "--timeout=120s",
        ]);
        assert_eq!(
            k.ok_quiet(&["logs", &reader]),
            format!("hello-{v}\n"),
            "{version}"
        );
        k.ok_quiet(&["delete", "pod", &reader, "--wait=true"]);

        // Deleting the claim deletes its volume (reclaimPolicy Delete), data too.
        k.ok_quiet(&["delete", "pvc", &claim, "--wait=true"]);
        wait_for("the PV to be deleted", Duration::from_secs(60), || {
            !k.run(&["get", "pv", &pv]).parts().0
        });
        wait_for(
            "the volume directory to be removed",
            Duration::from_secs(60),
            || !dir.exists(),
        );

        // medium: Memory is a tmpfs of the size limit.
        let mem = format!("mem-{v}");
        apply(
            &c,
            &k,
            &mem,
            &empty_dir_pod(&mem, "Memory", "16Mi", "sleep 3600"),
        );
        k.ok_quiet(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{mem}"),
            "--timeout=120s",
        ]);
        let mounts = k.ok_quiet(&["exec", &mem, "--", "cat", "/proc/mounts"]);
        let line = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("/scratch"))
            .unwrap_or_else(|| panic!("{version}: /scratch not mounted:\n{mounts}"));
        assert!(
            line.starts_with("tmpfs /scratch tmpfs "),
            "{version}: {line}"
        );
        assert!(line.contains("size=16384k"), "{version}: {line}");
        k.ok_quiet(&["delete", "pod", &mem, "--wait=true"]);

        // Over its sizeLimit: evicted, with the kubelet's words.
        let hog = format!("hog-{v}");
        apply(
            &c,
            &k,
            &hog,
            &empty_dir_pod(
                &hog,
                "",
                "1Mi",
                "dd if=/dev/zero of=/scratch/f bs=1024 count=4096; sleep 3600",
            ),
        );
        k.ok_quiet(&[
            "wait",
            "--for=jsonpath={.status.phase}=Failed",
            &format!("pod/{hog}"),
            "--timeout=120s",
        ]);
        let message = "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ";
        assert_eq!(
            get(&k, &["pod", &hog], "{.status.reason}"),
            "Evicted",
            "{version}"
        );
        assert_eq!(
            get(&k, &["pod", &hog], "{.status.message}"),
            message,
            "{version}"
        );
        let events = k.ok_quiet(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={hog},reason=Evicted"),
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        assert_eq!(events, message, "{version}");
        k.ok_quiet(&["delete", "pod", &hog, "--wait=true"]);
    }
}

/// A local volume made by hand (a class without provisioner, WaitForFirstConsumer):
/// the scheduler places the claim's pod on the volume's node and the binder binds the
/// claim there; a ReadWriteOncePod claim serves one pod at a time, the second waits
/// with kube-scheduler's reason until the first is gone.
#[test]
#[ignore = "needs root"]
fn a_local_volume_made_by_hand_decides_the_node_and_read_write_once_pod_holds() {
    assert_tools();
    let c = Cluster::up("lv", 3, &[]);
    let k = Kubectl::new(kubectl::versions(&[NEWEST]).remove(0), &c.kubeconfig);
    let disk = c.scratch().join("disk-n2");
    std::fs::create_dir_all(&disk).expect("the volume's directory");
    let manifest = format!(
        r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: manual}}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: disk-n2}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOncePod]
  storageClassName: manual
  local: {{path: {disk:?}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [k8s-n2]}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: solo}}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOncePod]
  resources: {{requests: {{storage: 100Mi}}}}
---
{}"#,
        pod_with_claim("solo", "first", "echo mine > /data/f && sleep 3600")
    );
    apply(&c, &k, "local", &manifest);
    k.ok_quiet(&[
        "wait",
        "--for=condition=Ready",
        "pod/first",
        "--timeout=120s",
    ]);
    assert_eq!(get(&k, &["pod", "first"], "{.spec.nodeName}"), "k8s-n2");
    assert_eq!(get(&k, &["pvc", "solo"], "{.spec.volumeName}"), "disk-n2");
    assert_eq!(
        std::fs::read_to_string(disk.join("f")).expect("written through the volume"),
        "mine\n"
    );

    // A second pod of the same claim waits.
    apply(
        &c,
        &k,
        "second",
        &pod_with_claim("solo", "second", "cat /data/f; sleep 3600"),
    );
    let reason = "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";
    wait_for("the second pod refused", Duration::from_secs(60), || {
        let events = k.ok_quiet(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=second,reason=FailedScheduling",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        events.contains("0/3 nodes are available: ") && events.contains(&format!("2 {reason}"))
    });
    assert_eq!(get(&k, &["pod", "second"], "{.status.phase}"), "Pending");
    k.ok_quiet(&["delete", "pod", "first", "--wait=true"]);
    k.ok_quiet(&[
        "wait",
        "--for=condition=Ready",
        "pod/second",
        "--timeout=120s",
    ]);
    assert_eq!(k.ok_quiet(&["logs", "second"]), "mine\n");
    k.ok_quiet(&["delete", "pod", "second", "--wait=true"]);
}
