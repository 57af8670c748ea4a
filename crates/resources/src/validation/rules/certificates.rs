//! CertificateSigningRequest, with kube-apiserver's messages
//! (`pkg/apis/certificates/validation`): the request, signer name, usages, expiration,
//! and the conditions an approval may set.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::{arr, s, Errs};
use crate::validation::{is_dns1123_subdomain, FieldError};

/// Key usages a CSR may ask for (`certificates.KeyUsage`).
const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

pub(super) fn validate_csr(obj: &Value, e: &mut Errs) {
    match s(obj, "/spec/request") {
        None | Some("") => e.push(FieldError::required("spec.request", "")),
        Some(b64) => {
            use base64::Engine;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&pem);
            if !text.contains("-----BEGIN CERTIFICATE REQUEST-----") {
                e.push(FieldError::invalid(
                    "spec.request",
                    json!("<request>"),
                    "PEM block type must be CERTIFICATE REQUEST",
                ));
            }
        }
    }
    match s(obj, "/spec/signerName") {
        None | Some("") => e.push(FieldError::required("spec.signerName", "")),
        Some(name) => {
            if let Some(msg) = signer_name_error(name) {
                e.push(FieldError::invalid("spec.signerName", json!(name), msg));
            }
        }
    }
    let usages = arr(obj, "/spec/usages");
    if usages.is_empty() {
        e.push(FieldError::required("spec.usages", ""));
    }
    let mut seen = HashSet::new();
    for (i, u) in usages.iter().enumerate() {
        let u = u.as_str().unwrap_or("");
        if !USAGES.contains(&u) {
            e.push(FieldError::not_supported(
                format!("spec.usages[{i}]"),
                json!(u),
                USAGES,
            ));
        } else if !seen.insert(u) {
            e.push(FieldError::duplicate(format!("spec.usages[{i}]"), json!(u)));
        }
    }
    if let Some(secs) = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
    {
        if secs < 600 {
            e.push(FieldError::invalid(
                "spec.expirationSeconds",
                json!(secs),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    validate_conditions(obj, e);
}

/// `ValidateSignerName`: `<fully qualified domain>/<path>`.
fn signer_name_error(name: &str) -> Option<String> {
    const FORM: &str =
        "must be a fully qualified domain and path of the form 'example.com/signer-name'";
    let Some((domain, path)) = name.split_once('/') else {
        return Some(FORM.into());
    };
    if path.is_empty() || !domain.contains('.') || !is_dns1123_subdomain(domain).is_empty() {
        return Some(FORM.into());
    }
    None
}

/// Approved and Denied exclude each other, appear once, and are `True`.
fn validate_conditions(obj: &Value, e: &mut Errs) {
    let conds = arr(obj, "/status/conditions");
    let mut seen = HashSet::new();
    let has = |t: &str| conds.iter().any(|c| c["type"] == t);
    for (i, c) in conds.iter().enumerate() {
        let t = s(c, "/type").unwrap_or("");
        let p = format!("status.conditions[{i}]");
        if t.is_empty() {
            e.push(FieldError::required(format!("{p}.type"), ""));
            continue;
        }
        if matches!(t, "Approved" | "Denied" | "Failed") {
            if !seen.insert(t) {
                e.push(FieldError::duplicate(format!("{p}.type"), json!(t)));
            }
            let st = s(c, "/status").unwrap_or("");
            if st != "True" {
                e.push(FieldError::not_supported(
                    format!("{p}.status"),
                    json!(st),
                    &["True"],
                ));
            }
        }
        if (t == "Approved" && has("Denied")) || (t == "Denied" && has("Approved")) {
            e.push(FieldError::invalid(
                format!("{p}.type"),
                json!(t),
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(obj: Value) -> Vec<String> {
        let mut e = Errs::new();
        validate_csr(&obj, &mut e);
        e.iter()
            .map(|e| format!("{}: {}", e.path, e.body()))
            .collect()
    }

    #[test]
    fn kube_messages() {
        use base64::Engine;
        let req = base64::engine::general_purpose::STANDARD.encode(
            "-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----\n",
        );
        let ok = json!({"spec": {"request": req, "signerName": "kubernetes.io/kube-apiserver-client",
                                 "usages": ["client auth"]}});
        assert_eq!(errs(ok.clone()), Vec::<String>::new());
        let mut bad = ok.clone();
        bad["spec"]["signerName"] = json!("foo");
        bad["spec"]["expirationSeconds"] = json!(599);
        bad["spec"]["usages"] = json!(["client auth", "flying"]);
        assert_eq!(
            errs(bad),
            vec![
                "spec.signerName: Invalid value: \"foo\": must be a fully qualified domain and path of the form 'example.com/signer-name'".to_string(),
                format!("spec.usages[1]: Unsupported value: \"flying\": supported values: {}", USAGES.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ")),
                "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)".to_string(),
            ]
        );
        let mut both = ok;
        both["status"] = json!({"conditions": [{"type": "Approved", "status": "True"},
                                               {"type": "Denied", "status": "True"}]});
        assert_eq!(errs(both).len(), 2);
    }
}
