//! The cluster CA's CSR signers, as kube-controller-manager's `csrsigning` controller
//! runs them: when a CertificateSigningRequest for `kubernetes.io/kube-apiserver-client`
//! or `kubernetes.io/kube-apiserver-client-kubelet` is approved, the server checks it
//! against the signer's rules and writes `status.certificate` (signed by the cluster CA,
//! valid for `expirationSeconds` up to a year), or a `Failed` condition saying why not.
//! skiff signs right after the approval is written (the server holds the CA key), not
//! in a separate controller.

use base64::Engine;
use rand::Rng;
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use serde_json::{json, Value};
use skiff_resources::ResourceInfo;

use super::write::{update_object, UpdateMode, WriteOpts};
use crate::pki::Pki;
use crate::state::ApiState;
use crate::status::ApiResult;

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// kube-controller-manager's `--cluster-signing-duration` default.
const MAX_SECONDS: i64 = 365 * 24 * 3600;

fn has_condition(csr: &Value, t: &str) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
}

/// Signs `csr` (as just written) when it is approved and one of the cluster CA's
/// signers is asked; returns the object as stored after.
pub(crate) async fn sign_if_approved(
    state: &ApiState,
    info: &'static ResourceInfo,
    name: &str,
    csr: Value,
) -> ApiResult<Value> {
    let signer = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let issued = csr
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty());
    if !has_condition(&csr, "Approved")
        || has_condition(&csr, "Denied")
        || has_condition(&csr, "Failed")
        || issued
        || ![CLIENT, KUBELET_CLIENT].contains(&signer)
    {
        return Ok(csr);
    }
    let mut out = csr.clone();
    if !out.get("status").is_some_and(Value::is_object) {
        out["status"] = json!({});
    }
    match sign(&state.pki, &csr, signer) {
        Ok(pem) => {
            out["status"]["certificate"] =
                json!(base64::engine::general_purpose::STANDARD.encode(pem));
        }
        Err(why) => {
            let now = crate::storage::now_ts();
            let mut conds = out["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            conds.push(json!({"type": "Failed", "status": "True",
                              "reason": "SignerValidationFailure", "message": why,
                              "lastUpdateTime": now, "lastTransitionTime": now}));
            out["status"]["conditions"] = json!(conds);
        }
    }
    update_object(
        state,
        info,
        None,
        name,
        out,
        UpdateMode::Status,
        None,
        &WriteOpts::internal(),
    )
    .await
}

fn usages(csr: &Value) -> Vec<&str> {
    csr.pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The signer's checks (kube's `validAPIServerClientUsages`, `IsKubeletClientCSR`).
fn check(
    signer: &str,
    params: &CertificateSigningRequestParams,
    usages: &[&str],
) -> Result<(), String> {
    let allowed = ["digital signature", "key encipherment", "client auth"];
    for u in usages {
        if !allowed.contains(u) {
            return Err(format!("invalid usage for client certificate: {u}"));
        }
    }
    if !usages.contains(&"client auth") {
        return Err("missing required usage for client certificate: client auth".into());
    }
    if signer == KUBELET_CLIENT {
        let dn = &params.params.distinguished_name;
        let cn = dn
            .get(&rcgen::DnType::CommonName)
            .map(dn_text)
            .unwrap_or_default();
        let orgs: Vec<String> = dn
            .iter()
            .filter(|(t, _)| **t == rcgen::DnType::OrganizationName)
            .map(|(_, v)| dn_text(v))
            .collect();
        if orgs != ["system:nodes"] {
            return Err("subject organization is not system:nodes".into());
        }
        if !cn.starts_with("system:node:") {
            return Err("subject common name does not begin with system:node:".into());
        }
        if !params.params.subject_alt_names.is_empty() {
            return Err("subjectAltNames are not allowed".into());
        }
    }
    Ok(())
}

fn dn_text(v: &rcgen::DnValue) -> String {
    match v {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_string(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_string(),
        rcgen::DnValue::TeletexString(s) => s.as_str().to_string(),
        other => format!("{other:?}"),
    }
}

/// How many organizations (groups) the request's subject names.
fn organizations(pem: &str) -> usize {
    let Some(der) = rustls_pemfile::read_one(&mut pem.as_bytes())
        .ok()
        .flatten()
        .and_then(|item| match item {
            rustls_pemfile::Item::Csr(der) => Some(der),
            _ => None,
        })
    else {
        return 0;
    };
    use x509_parser::prelude::FromDer;
    x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
        .map(|(_, r)| {
            r.certification_request_info
                .subject
                .iter_organization()
                .count()
        })
        .unwrap_or(0)
}

/// The certificate (PEM) for `csr`, or why the signer refuses it.
fn sign(pki: &Pki, csr: &Value, signer: &str) -> Result<String, String> {
    let b64 = csr
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .unwrap_or("");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("unable to decode the request: {e}"))?;
    let pem = String::from_utf8(pem).map_err(|_| "unable to parse csr: not PEM".to_string())?;
    let mut req = CertificateSigningRequestParams::from_pem(&pem)
        .map_err(|e| format!("unable to parse csr: {e}"))?;
    if organizations(&pem) > 1 {
        // rcgen keeps one value per attribute type: the groups would not all survive.
        return Err("skiff signs subjects with at most one organization".into());
    }
    let usages = usages(csr);
    check(signer, &req, &usages)?;
    let p = &mut req.params;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = usages
        .iter()
        .filter_map(|u| match *u {
            "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            _ => None,
        })
        .collect();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let secs = csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(MAX_SECONDS)
        .min(MAX_SECONDS);
    let now = time::OffsetDateTime::now_utc();
    // Back-dated a little for clocks a few minutes apart, as kube's signer does.
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::seconds(secs);
    let serial: [u8; 16] = rand::rng().random();
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.use_authority_key_identifier_extension = true;
    let ca_key = KeyPair::from_pem(&pki.ca_key).map_err(|e| e.to_string())?;
    let issuer = Issuer::from_ca_cert_pem(&pki.ca_cert, &ca_key).map_err(|e| e.to_string())?;
    let cert = req.signed_by(&issuer).map_err(|e| e.to_string())?;
    Ok(cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cn: &str, orgs: &[&str]) -> CertificateSigningRequestParams {
        let key = KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        CertificateSigningRequestParams::from_pem(&pem).unwrap()
    }

    #[test]
    fn signer_rules() {
        let r = request("jane", &["dev"]);
        assert_eq!(
            check(CLIENT, &r, &["client auth", "digital signature"]),
            Ok(())
        );
        assert_eq!(
            check(CLIENT, &r, &["server auth", "client auth"]),
            Err("invalid usage for client certificate: server auth".into())
        );
        assert_eq!(
            check(CLIENT, &r, &["digital signature"]),
            Err("missing required usage for client certificate: client auth".into())
        );
        assert_eq!(
            check(KUBELET_CLIENT, &r, &["client auth"]),
            Err("subject organization is not system:nodes".into())
        );
        let n = request("system:node:n1", &["system:nodes"]);
        assert_eq!(
            check(KUBELET_CLIENT, &n, &["client auth", "digital signature"]),
            Ok(())
        );
    }
}
