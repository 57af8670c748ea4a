//! APIServices through the real kubectl: one local, available APIService per served
//! group/version, as `kubectl get apiservices` shows on kubeadm, following CRDs.

use std::time::{Duration, Instant};

use skiff_testkit::kubectl;

use crate::common;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sprockets.apisvc-test.example.com
spec:
  group: apisvc-test.example.com
  scope: Namespaced
  names: {plural: sprockets, kind: Sprocket}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiservices_list_every_served_version() {
    let s = common::start().await;
    let k = s.kubectl(kubectl::default());
    tokio::task::spawn_blocking(move || {
        let table = k.ok_quiet(&["get", "apiservices"]);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["NAME", "SERVICE", "AVAILABLE", "AGE"], "{table}");
        for want in [
            "v1.",
            "v1.apps",
            "v1.admissionregistration.k8s.io",
            "v1.certificates.k8s.io",
            "v2.autoscaling",
        ] {
            let row = rows
                .iter()
                .find(|r| r[0] == want)
                .unwrap_or_else(|| panic!("{want} in {table}"));
            assert_eq!(row[1..3], ["Local", "True"], "{table}");
        }
        let prio = k.ok_quiet(&[
            "get",
            "apiservice",
            "v1.apps",
            "-o",
            "jsonpath={.spec.group} {.spec.groupPriorityMinimum} {.spec.versionPriority}",
        ]);
        assert_eq!(prio, "apps 17800 15");
        k.run_with(&["apply", "-f", "-"], Some(CRD)).parts();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (ok, out, _) = k
                .run(&[
                    "get",
                    "apiservice",
                    "v1.apisvc-test.example.com",
                    "-o",
                    "jsonpath={.spec.groupPriorityMinimum}",
                ])
                .parts();
            if ok && out == "1000" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the CRD's APIService did not appear"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        k.ok_quiet(&["delete", "crd", "sprockets.apisvc-test.example.com"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while k
            .run(&["get", "apiservice", "v1.apisvc-test.example.com"])
            .parts()
            .0
        {
            assert!(Instant::now() < deadline, "the CRD's APIService stayed");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
}
