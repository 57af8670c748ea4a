//! CRD conversion webhooks (`spec.conversion.strategy: Webhook`) as pure functions, after
//! apiextensions-apiserver's `pkg/apiserver/conversion/webhook_converter.go`: which
//! objects are sent, the `ConversionReview` request in the first review version the
//! server speaks, and the checks of the webhook's answer (uid, result, object count,
//! apiVersion, kind, name/namespace/uid kept, only labels and annotations changed), with
//! kube-apiserver's error texts. The HTTPS call is the API server's.

use serde_json::{json, Map, Value};

use crate::validation::{is_qualified_name, is_valid_label_value, FieldError};

/// The ConversionReview versions kube-apiserver speaks (`apiextensions.k8s.io`).
pub const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

pub use crate::registry::ConversionWebhook as Webhook;

/// The conversion webhook of `crd` (`None` under `strategy: None`, or when no review
/// version is spoken, which validation refuses).
pub fn webhook(crd: &Value) -> Option<Webhook> {
    let conv = crd.pointer("/spec/conversion")?;
    if conv.get("strategy").and_then(Value::as_str) != Some("Webhook") {
        return None;
    }
    let hook = conv.get("webhook")?;
    let review_version = hook
        .get("conversionReviewVersions")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|v| REVIEW_VERSIONS.iter().copied().find(|r| *r == v))?;
    Some(Webhook {
        client_config: hook.get("clientConfig").cloned().unwrap_or(Value::Null),
        review_version,
    })
}

/// Go's `schema.GroupVersionKind.String()`: `group/version, Kind=kind`.
pub fn gvk(api_version: &str, kind: &str) -> String {
    format!("{api_version}, Kind={kind}")
}

/// The indexes of `objects` that need converting to `desired` (those in another version).
pub fn to_convert(objects: &[Value], desired: &str) -> Vec<usize> {
    objects
        .iter()
        .enumerate()
        .filter(|(_, o)| o.get("apiVersion").and_then(Value::as_str) != Some(desired))
        .map(|(i, _)| i)
        .collect()
}

/// The `ConversionReview` sent to the webhook.
pub fn request(review_version: &str, uid: &str, desired: &str, objects: &[&Value]) -> Value {
    json!({
        "kind": "ConversionReview",
        "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects},
    })
}

/// What went wrong with a conversion, as kube-apiserver words it after
/// `conversion webhook for <gvk> `.
fn failed(from: &str, why: impl std::fmt::Display) -> String {
    format!("conversion webhook for {from} failed: {why}")
}

/// Reads the webhook's answer to the review `uid` (kube's
/// `getConvertedObjectsFromResponse` and the checks of `Convert`): the converted objects,
/// with the originals' metadata except labels and annotations, or the error text.
/// `from` is the GroupVersionKind of what was converted (`gvk`), `list` whether it was a
/// list (kube words the errors of lists and single objects differently).
pub fn read_response(
    review_version: &str,
    uid: &str,
    desired: &str,
    from: &str,
    list: bool,
    originals: &[&Value],
    answer: &Value,
) -> Result<Vec<Value>, String> {
    let expected_gvk = format!("apiextensions.k8s.io/{review_version}, Kind=ConversionReview");
    if review_version == "v1" {
        // v1beta1 answers were never checked for their kind and uid (kube keeps that).
        let got = gvk(
            answer
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or(""),
            answer.get("kind").and_then(Value::as_str).unwrap_or(""),
        );
        if got != expected_gvk {
            return Err(failed(
                from,
                format!("expected webhook response of {expected_gvk}, got {got}"),
            ));
        }
    }
    let Some(resp) = answer.get("response").filter(|r| r.is_object()) else {
        return Err(failed(from, "no response provided"));
    };
    if review_version == "v1" {
        let got = resp.get("uid").and_then(Value::as_str).unwrap_or("");
        if got != uid {
            return Err(failed(
                from,
                format!("expected response.uid={uid:?}, got {got:?}"),
            ));
        }
    }
    let status = resp
        .pointer("/result/status")
        .and_then(Value::as_str)
        .unwrap_or("");
    if status != "Success" {
        let msg = resp
            .pointer("/result/message")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !msg.is_empty() {
            return Err(failed(from, msg));
        }
        return Err(failed(
            from,
            format!("response.result.status was '{status}', not 'Success'"),
        ));
    }
    let converted: &[Value] = resp
        .get("convertedObjects")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if converted.len() != originals.len() {
        return Err(format!(
            "conversion webhook for {from} returned {} objects, expected {}",
            converted.len(),
            originals.len()
        ));
    }
    let mut out = Vec::with_capacity(converted.len());
    for (i, (orig, conv)) in originals.iter().zip(converted).enumerate() {
        // kube numbers the object from 1 in some of a list's errors (it counts it
        // before checking), and the single object as "index 0".
        let (invalid, invalid_meta) = if list {
            (
                format!("conversion webhook for {from} returned invalid converted object at index {}: ", i + 1),
                format!("conversion webhook for {from} returned invalid metadata in object at index {}: ", i + 1),
            )
        } else {
            (
                format!("conversion webhook for {from} returned invalid object at index 0: "),
                format!("conversion webhook for {from} returned invalid metadata: "),
            )
        };
        let Some(conv_obj) = conv.as_object() else {
            return Err(format!(
                "conversion webhook for {from} returned invalid converted object at index {i}: Object 'Kind' is missing in '{conv}'"
            ));
        };
        let got_av = conv_obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if got_av != desired {
            return Err(format!(
                "{invalid}invalid groupVersion (expected {desired}, received {got_av})"
            ));
        }
        let kind = |o: &Value| {
            o.get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        if kind(orig) != kind(conv) {
            return Err(format!(
                "{invalid}invalid kind (expected {}, received {})",
                kind(orig),
                kind(conv)
            ));
        }
        let same_object_prefix = if list {
            invalid.clone()
        } else {
            format!("conversion webhook for {from} returned invalid object: ")
        };
        for (field, name) in [("name", "name"), ("namespace", "namespace"), ("uid", "UID")] {
            let m = |o: &Value| {
                o.pointer(&format!("/metadata/{field}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            if m(orig) != m(conv) {
                return Err(format!(
                    "{same_object_prefix}must have the same {name}: {} != {}",
                    m(orig),
                    m(conv)
                ));
            }
        }
        let restored = restore_meta(orig, conv).map_err(|e| format!("{invalid_meta}{e}"))?;
        out.push(restored);
    }
    Ok(out)
}

/// kube's `restoreObjectMeta`: the converted object with the original's metadata, but
/// the labels and annotations the webhook returned (validated if it changed them).
fn restore_meta(orig: &Value, conv: &Value) -> Result<Value, String> {
    let resp_meta = match conv.get("metadata") {
        None => return Err("missing metadata in converted object".into()),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "invalid metadata of type {} in converted object",
                go_type(other)
            ))
        }
    };
    let mut meta: Map<String, Value> = orig
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (field, path) in [
        ("labels", "metadata.labels"),
        ("annotations", "metadata.annotation"),
    ] {
        let resp_field = match resp_meta.get(field) {
            None | Some(Value::Null) => {
                meta.remove(field);
                continue;
            }
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(format!(
                    "invalid metadata.{field} of type {} in converted object",
                    go_type(other)
                ))
            }
        };
        let orig_field = meta.get(field).and_then(Value::as_object);
        let mut changed = orig_field.map_or(0, Map::len) != resp_field.len();
        for (k, v) in resp_field {
            if !v.is_string() {
                return Err(format!(
                    "metadata.{field}[{k}] must be a string, but is {} in converted object",
                    go_type(v)
                ));
            }
            if orig_field.and_then(|o| o.get(k)) != Some(v) {
                changed = true;
            }
        }
        if changed {
            let errs = validate_string_map(resp_field, path, field == "labels");
            match errs.len() {
                0 => {}
                1 => return Err(errs[0].clone()),
                _ => return Err(format!("[{}]", errs.join(", "))),
            }
        }
        meta.insert(field.into(), Value::Object(resp_field.clone()));
    }
    let mut out = conv.clone();
    out["metadata"] = Value::Object(meta);
    Ok(out)
}

/// kube's `ValidateLabels` (keys qualified names, values label values) or
/// `ValidateAnnotations` (keys qualified names, lowercased), as `path: message` lines.
fn validate_string_map(m: &Map<String, Value>, path: &str, labels: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in m {
        let key = if labels { k.clone() } else { k.to_lowercase() };
        for msg in is_qualified_name(&key) {
            let e = FieldError::invalid(path, json!(k), msg);
            out.push(format!("{}: {}", e.path, e.body()));
        }
        if labels {
            let v = v.as_str().unwrap_or("");
            for msg in is_valid_label_value(v) {
                let e = FieldError::invalid(path, json!(v), msg);
                out.push(format!("{}: {}", e.path, e.body()));
            }
        }
    }
    out
}

/// The Go type `encoding/json` decodes a value into, for kube's `%T` messages.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// kube's `validateCustomResourceConversion` for a v1 CRD, with its field paths (those
/// of the internal type: `spec.conversion.webhookClientConfig`). `require_known`: at
/// least one review version must be one the server speaks (on create, and on update
/// unless the old CRD already had none). `old`: the CRD being updated; a `caBundle` is
/// checked only on the update of an established CRD whose bundle was valid (kube's
/// `allowInvalidCABundle`).
pub fn validate(crd: &Value, old: Option<&Value>, e: &mut Vec<FieldError>) {
    let require_known = old.is_none_or(old_requires_known);
    let check_ca = old.is_some_and(|o| {
        super::condition_true(o, "Established")
            && o.pointer("/spec/conversion/webhook/clientConfig/caBundle")
                .and_then(Value::as_str)
                .is_some_and(|b| !b.is_empty() && ca_bundle_ok(b))
    });
    let Some(conv) = crd.pointer("/spec/conversion").filter(|c| c.is_object()) else {
        return;
    };
    let p = "spec.conversion";
    let strategy = conv.get("strategy").and_then(Value::as_str).unwrap_or("");
    if strategy.is_empty() {
        e.push(FieldError::required(format!("{p}.strategy"), ""));
    } else if strategy != "None" && strategy != "Webhook" {
        e.push(FieldError::not_supported(
            format!("{p}.strategy"),
            json!(strategy),
            &["None", "Webhook"],
        ));
    }
    let hook = conv.get("webhook").filter(|h| h.is_object());
    let cc = hook
        .and_then(|h| h.get("clientConfig"))
        .filter(|c| c.is_object());
    let review_versions: Vec<&str> = hook
        .and_then(|h| h.get("conversionReviewVersions"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let ccp = format!("{p}.webhookClientConfig");
    if strategy == "Webhook" {
        match cc {
            None => e.push(FieldError::required(
                ccp,
                "required when strategy is set to Webhook",
            )),
            Some(cc) => {
                crate::validation::validate_webhook_client_config(cc, &ccp, e);
                if let Some(b) = cc.get("caBundle").and_then(Value::as_str) {
                    if check_ca && !b.is_empty() && !ca_bundle_ok(b) {
                        e.push(FieldError::invalid(
                            format!("{ccp}.caBundle"),
                            json!(b),
                            "unable to load root certificates: unable to parse bytes as PEM block",
                        ));
                    }
                }
            }
        }
        let vp = format!("{p}.conversionReviewVersions");
        if review_versions.is_empty() {
            e.push(FieldError::required(vp, ""));
        } else {
            let mut seen: Vec<&str> = Vec::new();
            let mut known = false;
            for (i, v) in review_versions.iter().enumerate() {
                if seen.contains(v) {
                    e.push(FieldError::invalid(
                        format!("{vp}[{i}]"),
                        json!(v),
                        "duplicate version",
                    ));
                    continue;
                }
                seen.push(v);
                for msg in crate::validation::is_dns1035_label(v) {
                    e.push(FieldError::invalid(format!("{vp}[{i}]"), json!(v), msg));
                }
                known |= REVIEW_VERSIONS.contains(v);
            }
            if require_known && !known {
                // Go prints the set sorted: "v1, v1beta1".
                e.push(FieldError::invalid(
                    vp,
                    json!(review_versions),
                    "must include at least one of v1, v1beta1",
                ));
            }
        }
    } else {
        if cc.is_some() {
            e.push(FieldError::forbidden(
                ccp,
                "should not be set when strategy is not set to Webhook",
            ));
        }
        if !review_versions.is_empty() {
            e.push(FieldError::forbidden(
                format!("{p}.conversionReviewVersions"),
                "should not be set when strategy is not set to Webhook",
            ));
        }
    }
}

/// Whether an old CRD's review versions let an update keep unknown ones (kube's
/// `hasValidConversionReviewVersionOrEmpty`): the update must then name a known one
/// only if the old CRD did, or had none.
fn old_requires_known(old: &Value) -> bool {
    let vs: Vec<&str> = old
        .pointer("/spec/conversion/webhook/conversionReviewVersions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    vs.is_empty() || vs.iter().any(|v| REVIEW_VERSIONS.contains(v))
}

/// Whether a `caBundle` (base64 of PEM) holds at least one certificate block.
fn ca_bundle_ok(b64: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|pem| String::from_utf8(pem).ok())
        .is_some_and(|pem| pem.contains("-----BEGIN CERTIFICATE-----"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(conversion: Value) -> Value {
        json!({"spec": {"conversion": conversion}})
    }

    fn errs(conversion: Value) -> Vec<String> {
        let mut e = Vec::new();
        validate(&crd(conversion), None, &mut e);
        e.iter()
            .map(|e| format!("{}: {}", e.path, e.body()))
            .collect()
    }

    #[test]
    fn validation_has_kube_messages() {
        assert!(errs(json!({"strategy": "None"})).is_empty());
        assert_eq!(
            errs(json!({"strategy": "Webhook"})),
            [
                "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook",
                "spec.conversion.conversionReviewVersions: Required value",
            ]
        );
        assert_eq!(
            errs(json!({"strategy": "Webhook", "webhook": {
                "clientConfig": {"url": "http://x/convert"},
                "conversionReviewVersions": ["v2", "v2"]}})),
            [
                "spec.conversion.webhookClientConfig.url: Invalid value: \"http://x/convert\": 'https' is the only allowed URL scheme",
                "spec.conversion.conversionReviewVersions[1]: Invalid value: \"v2\": duplicate version",
                "spec.conversion.conversionReviewVersions: Invalid value: []string{\"v2\", \"v2\"}: must include at least one of v1, v1beta1",
            ]
        );
        assert_eq!(
            errs(json!({"strategy": "Webhook", "webhook": {
                "clientConfig": {"service": {"name": "conv"}},
                "conversionReviewVersions": ["v1"]}})),
            ["spec.conversion.webhookClientConfig.service.namespace: Required value: service namespace is required"]
        );
        assert_eq!(
            errs(json!({"strategy": "None", "webhook": {
                "clientConfig": {"url": "https://x"}, "conversionReviewVersions": ["v1"]}})),
            [
                "spec.conversion.webhookClientConfig: Forbidden: should not be set when strategy is not set to Webhook",
                "spec.conversion.conversionReviewVersions: Forbidden: should not be set when strategy is not set to Webhook",
            ]
        );
    }

    #[test]
    fn a_bad_ca_bundle_is_refused_only_once_established_with_a_good_one() {
        let hook = |ca: &str| {
            json!({"strategy": "Webhook", "webhook": {
                "clientConfig": {"url": "https://x", "caBundle": ca},
                "conversionReviewVersions": ["v1"]}})
        };
        let good = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        );
        let mut old = crd(hook(&good));
        let mut e = Vec::new();
        validate(&crd(hook("bm9wZQ==")), None, &mut e);
        validate(&crd(hook("bm9wZQ==")), Some(&old), &mut e);
        assert!(e.is_empty(), "{e:?}");
        old["status"] = json!({"conditions": [{"type": "Established", "status": "True"}]});
        validate(&crd(hook("bm9wZQ==")), Some(&old), &mut e);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "spec.conversion.webhookClientConfig.caBundle");
    }

    #[test]
    fn first_spoken_review_version_is_used() {
        let w = webhook(&crd(json!({"strategy": "Webhook", "webhook": {
            "clientConfig": {"url": "https://x"}, "conversionReviewVersions": ["v9", "v1beta1", "v1"]}})))
        .unwrap();
        assert_eq!(w.review_version, "v1beta1");
        assert!(webhook(&crd(json!({"strategy": "None"}))).is_none());
        let r = request("v1", "u1", "example.com/v2", &[&json!({"a": 1})]);
        assert_eq!(r["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(r["request"]["desiredAPIVersion"], "example.com/v2");
        assert_eq!(r["request"]["objects"][0]["a"], 1);
    }

    fn obj(av: &str) -> Value {
        json!({"apiVersion": av, "kind": "Widget",
               "metadata": {"name": "w", "namespace": "ns", "uid": "u", "resourceVersion": "5",
                            "labels": {"a": "b"}},
               "spec": {"size": 1}})
    }

    fn answer(uid: &str, objects: Vec<Value>) -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
               "response": {"uid": uid, "result": {"status": "Success"}, "convertedObjects": objects}})
    }

    fn read(answer: &Value, list: bool) -> Result<Vec<Value>, String> {
        let o = obj("example.com/v1");
        read_response(
            "v1",
            "u1",
            "example.com/v2",
            "example.com/v1, Kind=Widget",
            list,
            &[&o],
            answer,
        )
    }

    #[test]
    fn answers_are_checked_as_kube_checks_them() {
        let mut good = obj("example.com/v2");
        good["metadata"]["labels"]["c"] = json!("d");
        good["metadata"]["generation"] = json!(99);
        let out = read(&answer("u1", vec![good]), false).unwrap();
        // Labels from the webhook, the rest of metadata from the original.
        assert_eq!(out[0]["metadata"]["labels"], json!({"a": "b", "c": "d"}));
        assert_eq!(out[0]["metadata"]["resourceVersion"], "5");
        assert!(out[0]["metadata"].get("generation").is_none());

        let pre = "conversion webhook for example.com/v1, Kind=Widget";
        assert_eq!(
            read(&answer("other", vec![]), false).unwrap_err(),
            format!("{pre} failed: expected response.uid=\"u1\", got \"other\"")
        );
        assert_eq!(
            read(&answer("u1", vec![]), false).unwrap_err(),
            format!("{pre} returned 0 objects, expected 1")
        );
        assert_eq!(
            read(&answer("u1", vec![obj("example.com/v1")]), false).unwrap_err(),
            format!("{pre} returned invalid object at index 0: invalid groupVersion (expected example.com/v2, received example.com/v1)")
        );
        let mut renamed = obj("example.com/v2");
        renamed["metadata"]["name"] = json!("x");
        assert_eq!(
            read(&answer("u1", vec![renamed.clone()]), false).unwrap_err(),
            format!("{pre} returned invalid object: must have the same name: w != x")
        );
        assert_eq!(
            read(&answer("u1", vec![renamed]), true).unwrap_err(),
            format!("{pre} returned invalid converted object at index 1: must have the same name: w != x")
        );
        let mut bad_label = obj("example.com/v2");
        bad_label["metadata"]["labels"]["a"] = json!("not ok!");
        assert!(read(&answer("u1", vec![bad_label]), false)
            .unwrap_err()
            .starts_with(&format!(
                "{pre} returned invalid metadata: metadata.labels: Invalid value: \"not ok!\""
            )));
        let failed = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "u1", "result": {"status": "Failure", "message": "cannot convert size"}}});
        assert_eq!(
            read(&failed, false).unwrap_err(),
            format!("{pre} failed: cannot convert size")
        );
        assert_eq!(
            read(&json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}), false)
                .unwrap_err(),
            format!("{pre} failed: expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got admission.k8s.io/v1, Kind=AdmissionReview")
        );
    }
}
