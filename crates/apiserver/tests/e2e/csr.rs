//! CertificateSigningRequests through the real kubectl (1.27 and 1.33): created with the
//! requester recorded, `kubectl certificate approve` issues a certificate signed by the
//! cluster CA that authenticates as the user and group the request names; `deny`, a
//! signer's refusal (`Failed`) and kube's validation messages.

use base64::Engine;
use skiff_testkit::kubectl::{self, Kubectl};

use crate::common;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// A key and a CSR for `cn` in `orgs` (PEM).
fn key_and_request(cn: &str, orgs: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    for o in orgs {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key.serialize_pem(), csr)
}

fn csr_yaml(name: &str, request_pem: &str, usages: &str) -> String {
    let req = base64::engine::general_purpose::STANDARD.encode(request_pem);
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {req}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [{usages}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_issues_a_working_client_certificate_with_real_kubectl() {
    let bins = kubectl::versions(&["1.27", "1.33"]);
    assert!(!bins.is_empty(), "kubectl is missing");
    for bin in bins {
        let s = common::start().await;
        let dir = s.dir.path().to_path_buf();
        let kubeconfig = s.kubeconfig();
        let k = s.kubectl(bin.clone());
        blocking(move || scenario(&k, &bin, &dir, &kubeconfig)).await;
    }
}

fn scenario(
    k: &Kubectl,
    bin: &std::path::Path,
    dir: &std::path::Path,
    kubeconfig: &std::path::Path,
) {
    let who = k.who();
    let (key, req) = key_and_request("jane", &["dev"]);
    let (ok, out, err) = k
        .run_with(
            &["create", "-f", "-"],
            Some(&csr_yaml("jane", &req, "client auth, digital signature")),
        )
        .parts();
    assert!(ok && err.is_empty(), "{who}: {out} {err}");
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/jane created",
        "{who}"
    );
    let row = k.ok_quiet(&["get", "csr", "jane", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[2..],
        [
            "kubernetes.io/kube-apiserver-client",
            "kubernetes-admin",
            "24h",
            "Pending"
        ],
        "{who}: {row}"
    );

    let out = k.ok_quiet(&["certificate", "approve", "jane"]);
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/jane approved",
        "{who}"
    );
    let cond = k.ok_quiet(&[
        "get",
        "csr",
        "jane",
        "--no-headers",
        "-o",
        "custom-columns=C:.status.conditions[0].type",
    ]);
    assert_eq!(cond.trim(), "Approved", "{who}");
    let row = k.ok_quiet(&["get", "csr", "jane", "--no-headers"]);
    assert!(row.trim_end().ends_with("Approved,Issued"), "{who}: {row}");
    let cert_b64 = k.ok_quiet(&["get", "csr", "jane", "-o", "jsonpath={.status.certificate}"]);
    let cert = base64::engine::general_purpose::STANDARD
        .decode(cert_b64.trim())
        .unwrap();

    // The certificate authenticates as jane in dev and qa.
    let user_cfg = dir.join("jane.kubeconfig");
    std::fs::copy(kubeconfig, &user_cfg).unwrap();
    std::fs::write(dir.join("jane.crt"), &cert).unwrap();
    std::fs::write(dir.join("jane.key"), &key).unwrap();
    let jane = Kubectl::new(bin, &user_cfg).cache_dir(dir.join("cache-jane"));
    jane.ok_quiet(&[
        "config",
        "set-credentials",
        "jane",
        &format!("--client-certificate={}", dir.join("jane.crt").display()),
        &format!("--client-key={}", dir.join("jane.key").display()),
        "--embed-certs=true",
    ]);
    jane.ok_quiet(&["config", "set-context", "--current", "--user=jane"]);
    let review = "apiVersion: authentication.k8s.io/v1\nkind: SelfSubjectReview\n";
    let (ok, out, err) = jane
        .run_with(
            &[
                "create",
                "-f",
                "-",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
            ],
            Some(review),
        )
        .parts();
    assert!(ok, "{who}: {err}");
    assert_eq!(out, r#"jane ["dev","system:authenticated"]"#, "{who}");
    // As jane, nothing more than an authenticated user may.
    let (ok, _, err) = jane.run(&["get", "secrets"]).parts();
    assert!(
        !ok && err.contains("User \"jane\" cannot list resource \"secrets\""),
        "{who}: {err}"
    );

    // Denied: no certificate.
    let (_, req2) = key_and_request("joe", &[]);
    k.run_with(
        &["create", "-f", "-"],
        Some(&csr_yaml("joe", &req2, "client auth")),
    )
    .parts();
    let out = k.ok_quiet(&["certificate", "deny", "joe"]);
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/joe denied",
        "{who}"
    );
    let row = k.ok_quiet(&["get", "csr", "joe", "--no-headers"]);
    assert!(row.trim_end().ends_with("Denied"), "{who}: {row}");

    // A usage the signer does not grant: approved, then Failed.
    let (_, req3) = key_and_request("srv", &[]);
    k.run_with(
        &["create", "-f", "-"],
        Some(&csr_yaml("srv", &req3, "client auth, server auth")),
    )
    .parts();
    k.ok_quiet(&["certificate", "approve", "srv"]);
    let row = k.ok_quiet(&["get", "csr", "srv", "--no-headers"]);
    assert!(row.trim_end().ends_with("Approved,Failed"), "{who}: {row}");
    let msg = k.ok_quiet(&[
        "get",
        "csr",
        "srv",
        "-o",
        "jsonpath={.status.conditions[1].message}",
    ]);
    assert_eq!(
        msg, "invalid usage for client certificate: server auth",
        "{who}"
    );

    // Validation.
    let bad = csr_yaml("bad", &req3, "client auth")
        .replace("expirationSeconds: 86400", "expirationSeconds: 60");
    let (ok, _, err) = k.run_with(&["create", "-f", "-"], Some(&bad)).parts();
    assert!(!ok, "{who}");
    assert!(
        err.contains("spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)"),
        "{who}: {err}"
    );
}
