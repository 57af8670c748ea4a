//! Create-only kinds that are answered, not stored: access reviews (every authenticated
//! identity may do everything), SelfSubjectReview, TokenReview, and `bindings`.

use serde_json::{json, Value};

use super::Reply;
use crate::authn::Identity;
use crate::state::ApiState;
use crate::status::ApiResult;

fn answered(mut body: Value, kind: &str, api_version: &str, status: Value) -> Reply {
    if !body.is_object() {
        body = json!({});
    }
    body["kind"] = json!(kind);
    body["apiVersion"] = json!(api_version);
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    body["status"] = status;
    Reply::ok(201, body)
}

/// The answer for a create of one of these kinds, or `None` for stored kinds.
pub(crate) fn answer(
    state: &ApiState,
    ident: &Identity,
    kind: &str,
    body: &Value,
) -> Option<ApiResult<Reply>> {
    let body = body.clone();
    let reply = match kind {
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => answered(
            body,
            kind,
            "authorization.k8s.io/v1",
            json!({"allowed": true, "reason": "skiff authorizes every authenticated identity"}),
        ),
        "SelfSubjectRulesReview" => answered(
            body,
            kind,
            "authorization.k8s.io/v1",
            json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            }),
        ),
        "SelfSubjectReview" => answered(
            body,
            kind,
            "authentication.k8s.io/v1",
            json!({"userInfo": {"username": ident.user, "groups": ident.groups}}),
        ),
        "TokenReview" => {
            let token = body
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            // Audiences the reviewer wants the token for (the API server's by default).
            let wanted = crate::authn::tokens::spec_audiences(&body);
            let status = match state.authn.review(&token, &wanted) {
                Ok((who, audiences)) => json!({
                    "authenticated": true,
                    "user": {"username": who.user, "groups": who.groups},
                    "audiences": audiences,
                }),
                Err(why) => json!({"authenticated": false, "error": why}),
            };
            answered(body, kind, "authentication.k8s.io/v1", status)
        }
        _ => return None,
    };
    Some(Ok(reply))
}
