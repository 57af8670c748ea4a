//! AdmissionReview v1 as kube-apiserver writes and reads it (`webhook/request`): the
//! request sent to a webhook, and what its response means: allowed or denied (with
//! kube's `admission webhook "x" denied the request` text), a JSONPatch to apply, and
//! warnings. Pure functions.

use serde_json::{json, Value};
use skiff_resources::ResourceInfo;

use crate::authn::Identity;
use crate::status::ApiError;

/// Everything of one call that goes into the request.
pub(crate) struct Call<'a> {
    /// The request's uid (the response must echo it).
    pub uid: &'a str,
    /// The resource at the version the webhook gets (`kind`/`resource`).
    pub info: &'a ResourceInfo,
    /// The resource the client named (`requestKind`/`requestResource`).
    pub requested: &'a ResourceInfo,
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub operation: &'a str,
    pub user: Option<&'a Identity>,
    /// The object (`None` for a delete), in `info`'s version.
    pub object: Option<&'a Value>,
    /// The stored object (update, delete), in `info`'s version.
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

fn gvk(i: &ResourceInfo) -> Value {
    json!({"group": i.group, "version": i.version, "kind": i.kind})
}

fn gvr(i: &ResourceInfo) -> Value {
    json!({"group": i.group, "version": i.version, "resource": i.plural})
}

/// The `AdmissionReview` a webhook is sent.
pub(crate) fn request(c: &Call<'_>) -> Value {
    let mut r = json!({
        "uid": c.uid,
        "kind": gvk(c.info),
        "resource": gvr(c.info),
    });
    if !c.subresource.is_empty() {
        r["subResource"] = json!(c.subresource);
    }
    r["requestKind"] = gvk(c.requested);
    r["requestResource"] = gvr(c.requested);
    if !c.subresource.is_empty() {
        r["requestSubResource"] = json!(c.subresource);
    }
    if !c.name.is_empty() {
        r["name"] = json!(c.name);
    }
    if !c.namespace.is_empty() {
        r["namespace"] = json!(c.namespace);
    }
    r["operation"] = json!(c.operation);
    r["userInfo"] = match c.user {
        Some(u) => json!({"username": u.user, "groups": u.groups}),
        None => json!({"username": "system:apiserver", "groups": ["system:masters"]}),
    };
    r["object"] = c.object.cloned().unwrap_or(Value::Null);
    r["oldObject"] = c.old.cloned().unwrap_or(Value::Null);
    r["dryRun"] = json!(c.dry_run);
    let options_kind = match c.operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    r["options"] = json!({"kind": options_kind, "apiVersion": "meta.k8s.io/v1"});
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": r})
}

/// What a webhook answered.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// A JSONPatch to apply (mutating webhooks only).
    pub patch: Option<json_patch::Patch>,
    /// `response.warnings`.
    pub warnings: Vec<String>,
}

/// Reads a webhook's answer: `Ok` when it allowed the request, the error kube-apiserver
/// returns when it denied it, `Err(Err(why))` when the answer is not a valid response
/// (a call failure, subject to the failure policy).
pub(crate) fn read_response(
    hook: &str,
    uid: &str,
    body: &Value,
) -> Result<Verdict, Result<ApiError, String>> {
    let Some(resp) = body.get("response").filter(|r| r.is_object()) else {
        return Err(Err("response was absent".into()));
    };
    let got = resp.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(Err(format!("expected response.uid={uid:?}, got {got:?}")));
    }
    if body.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || body.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err(Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
            body.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            body.get("kind").and_then(Value::as_str).unwrap_or("")
        )));
    }
    let warnings: Vec<String> = resp
        .get("warnings")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(sanitize_warning)
                .collect()
        })
        .unwrap_or_default();
    if resp.get("allowed").and_then(Value::as_bool) != Some(true) {
        return Err(Ok(denied(hook, resp.get("status"))));
    }
    let patch = match resp.get("patch").and_then(Value::as_str) {
        None | Some("") => None,
        Some(b64) => {
            match resp.get("patchType").and_then(Value::as_str) {
                Some("JSONPatch") => {}
                Some(other) => {
                    return Err(Err(format!("unsupported patch type {other:?}")));
                }
                None => return Err(Err("patchType must be set if patch is set".into())),
            }
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| Err(format!("decoding the patch: {e}")))?;
            let p: json_patch::Patch = serde_json::from_slice(&bytes)
                .map_err(|e| Err(format!("decoding the patch: {e}")))?;
            Some(p)
        }
    };
    Ok(Verdict { patch, warnings })
}

/// kube's `webhookerrors.ToStatusErr`: the webhook's status, its message prefixed with
/// who denied, its code at least 400.
pub(crate) fn denied(hook: &str, status: Option<&Value>) -> ApiError {
    let by = format!("admission webhook {hook:?} denied the request");
    let st = status.cloned().unwrap_or(Value::Null);
    let code = st
        .get("code")
        .and_then(Value::as_u64)
        .filter(|c| *c >= 400 && *c < 600)
        .unwrap_or(400) as u16;
    let reason = st.get("reason").and_then(Value::as_str).unwrap_or("");
    let message = match st.get("message").and_then(Value::as_str).unwrap_or("") {
        "" if !reason.is_empty() => format!("{by}: {reason}"),
        "" => format!("{by} without explanation"),
        m => format!("{by}: {m}"),
    };
    let mut e = ApiError::new(code, skiff_resources::registry::intern_str(reason), message);
    if let Some(d) = st.get("details").filter(|d| d.is_object()) {
        e = e.with_details(d.clone());
    }
    e
}

/// kube-apiserver's error for a webhook it could not call (or that answered nonsense)
/// under `failurePolicy: Fail`: an internal error naming the webhook.
pub(crate) fn call_failed(hook: &str, why: &str) -> ApiError {
    let msg = format!("failed calling webhook {hook:?}: {why}");
    ApiError::internal(format!("Internal error occurred: {msg}"))
        .with_details(json!({"causes": [{"message": msg}]}))
}

/// A warning as kube keeps it: one line of printable characters.
fn sanitize_warning(w: &str) -> String {
    w.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Applies a webhook's patch to `obj`; kube-apiserver's error when it does not apply.
pub(crate) fn apply_patch(obj: &mut Value, patch: &json_patch::Patch) -> Result<(), String> {
    json_patch::patch(obj, patch).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn response(resp: Value) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
    }

    #[test]
    fn request_names_both_versions() {
        let v1 = skiff_resources::registry::lookup("apps", "v1", "deployments").unwrap();
        let v1b1 = skiff_resources::registry::lookup("apps", "v1beta1", "deployments").unwrap();
        let obj = json!({"metadata": {"name": "d"}});
        let r = request(&Call {
            uid: "u1",
            info: v1,
            requested: v1b1,
            subresource: "",
            name: "d",
            namespace: "default",
            operation: "CREATE",
            user: None,
            object: Some(&obj),
            old: None,
            dry_run: true,
        });
        assert_eq!(
            r["request"]["kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(r["request"]["requestResource"]["version"], "v1beta1");
        assert_eq!(r["request"]["oldObject"], Value::Null);
        assert_eq!(r["request"]["dryRun"], true);
        assert_eq!(r["request"]["options"]["kind"], "CreateOptions");
        assert!(r["request"].get("subResource").is_none());
    }

    #[test]
    fn allowed_with_a_patch_and_warnings() {
        let patch = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#);
        let v = read_response(
            "h.example.com",
            "u",
            &response(
                json!({"uid": "u", "allowed": true, "patchType": "JSONPatch",
                             "patch": patch, "warnings": ["careful\nnow"]}),
            ),
        )
        .unwrap();
        let mut obj = json!({"metadata": {}});
        apply_patch(&mut obj, v.patch.as_ref().unwrap()).unwrap();
        assert_eq!(obj, json!({"metadata": {"labels": {"a": "b"}}}));
        assert_eq!(v.warnings, vec!["careful now".to_string()]);
    }

    #[test]
    fn denials_carry_kube_text() {
        let e = read_response(
            "deny.example.com",
            "u",
            &response(json!({"uid": "u", "allowed": false,
                             "status": {"code": 403, "reason": "Forbidden", "message": "no pods today"}})),
        )
        .unwrap_err()
        .unwrap();
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            "admission webhook \"deny.example.com\" denied the request: no pods today"
        );
        let e = read_response(
            "d.example.com",
            "u",
            &response(json!({"uid": "u", "allowed": false})),
        )
        .unwrap_err()
        .unwrap();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"d.example.com\" denied the request without explanation"
        );
    }

    #[test]
    fn malformed_answers_are_call_failures() {
        let why = read_response(
            "h.example.com",
            "u",
            &response(json!({"uid": "x", "allowed": true})),
        )
        .unwrap_err()
        .unwrap_err();
        assert_eq!(why, "expected response.uid=\"u\", got \"x\"");
        let why = read_response(
            "h.example.com",
            "u",
            &response(json!({"uid": "u", "allowed": true, "patch": "W10="})),
        )
        .unwrap_err()
        .unwrap_err();
        assert_eq!(why, "patchType must be set if patch is set");
        let e = call_failed(
            "h.example.com",
            "failed to call webhook: connection refused",
        );
        assert_eq!(e.code, 500);
        assert_eq!(
            e.message,
            "Internal error occurred: failed calling webhook \"h.example.com\": failed to call webhook: connection refused"
        );
    }
}
