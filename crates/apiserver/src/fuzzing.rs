//! Entry points for the fuzz targets in `crates/apiserver/fuzz` and for their regression
//! tests: the request decoders exactly as the REST handlers call them. Not a stable API.
//!
//! Every function must return (an error is fine) for any input: a panic here is a
//! request that would have killed a connection task of the server.

use bytes::Bytes;
use serde_json::{json, Value};

/// A Deployment with the lists strategic merge patch merges by key (containers, ports,
/// env, volumes), the object patches are applied to.
pub fn sample_deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "annotations": {"a": "b"}, "finalizers": ["x/y"]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
                    {"name": "side", "image": "busybox", "args": ["sleep", "1"]}],
                  "volumes": [{"name": "v", "emptyDir": {}}],
                  "tolerations": [{"key": "k", "operator": "Exists"}]}}},
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}})
}

/// A Pod that selectors are matched against.
pub fn sample_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web", "tier": "a-b.c_d"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": "10.244.0.5"}})
}

/// Decodes a request body as the REST handlers do: protobuf when `content_type` says
/// so, YAML for `application/yaml`, otherwise JSON.
pub fn decode_body(content_type: &str, body: &[u8]) -> Result<Value, String> {
    if crate::proto::is_protobuf(content_type) {
        return crate::proto::decode(body);
    }
    let media = crate::rest::body::media(content_type).map_err(|e| e.message)?;
    crate::rest::body::parse(media, body).map_err(|e| e.message)
}

/// Decodes a JSON `body` into the kind `sel` picks (among the kinds with a typed form)
/// as the write path does, and checks the invariant between the typed decode and the
/// stored form: what decoding accepts, the kind's `k8s-openapi` type deserializes too
/// (but for required fields left out, which validation reports). Returns the violation.
pub fn typed_decode(sel: u8, body: &[u8]) -> Option<String> {
    let kinds: Vec<_> = skiff_resources::resources()
        .iter()
        .filter(|r| skiff_resources::schema::typed_check(r.group, r.version, r.kind).is_some())
        .collect();
    let info = kinds.get(sel as usize % kinds.len().max(1))?;
    let obj: Value = serde_json::from_slice(body).ok()?;
    let mut decoded = skiff_resources::decode::decode(info, obj).ok()?.object;
    if let Some(o) = decoded.as_object_mut() {
        o.insert("apiVersion".into(), json!(info.api_version()));
        o.insert("kind".into(), json!(info.kind));
    }
    match skiff_resources::decode::check_typed(info.group, info.version, info.kind, &decoded) {
        Err(e) if !e.contains("missing field") => Some(format!("{}: {e}: {decoded}", info.kind)),
        _ => None,
    }
}

/// The patch types of PATCH requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// A patch type chosen by one input byte.
    pub fn from_byte(b: u8) -> Self {
        match b % 4 {
            0 => PatchType::Json,
            1 => PatchType::Merge,
            2 => PatchType::Strategic,
            _ => PatchType::Apply,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Applies `body` as a patch of type `ty` to [`sample_deployment`]; server-side apply
/// also runs field management (sets, conflicts, managedFields) as a second manager.
pub fn patch(ty: PatchType, body: &[u8]) -> Result<Value, String> {
    let info = skiff_resources::lookup("apps", "v1", "deployments")
        .ok_or_else(|| "deployments are not registered".to_string())?;
    let cur = sample_deployment();
    let body = Bytes::copy_from_slice(body);
    let patched =
        crate::rest::apply_patch(info, ty.content_type(), &cur, &body).map_err(|e| e.message)?;
    if ty == PatchType::Apply {
        let config: Value = crate::rest::body::parse_yaml(&body)?;
        let first = skiff_resources::managedfields::Operation {
            manager: "kubectl",
            api_version: "apps/v1",
            subresource: None,
            time: "2026-01-01T00:00:00Z",
        };
        let live = skiff_resources::managedfields::apply(info, None, &cur, &first, false)
            .map_err(|e| format!("{e:?}"))?;
        let second = skiff_resources::managedfields::Operation {
            manager: "fuzz",
            ..first
        };
        for force in [false, true] {
            let _ =
                skiff_resources::managedfields::apply(info, Some(&live), &config, &second, force);
        }
    }
    Ok(patched)
}

/// Parses a label selector and matches it against [`sample_pod`].
pub fn label_selector(s: &str) -> Result<bool, String> {
    let sel = crate::selectors::LabelSelector::parse(s)?;
    Ok(sel.matches_object(&sample_pod()))
}

/// Parses a field selector and matches it against [`sample_pod`].
pub fn field_selector(s: &str) -> Result<bool, String> {
    let sel = crate::selectors::FieldSelector::parse(s)?.for_kind("", "v1", "Pod")?;
    Ok(sel.matches_object(&sample_pod()))
}

/// Splices a revision into bytes as LIST and WATCH do with stored objects; the result,
/// when there is one, must be JSON if the input was.
pub fn splice_resource_version(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    crate::storage::splice_resource_version(bytes, 42, &mut out).then_some(out)
}

/// Cuts `metadata.managedFields` as Table printing does; the result, when there is one,
/// must be JSON if the input was.
pub fn without_managed_fields(bytes: &[u8]) -> Option<Vec<u8>> {
    crate::storage::without_managed_fields(bytes)
}

#[cfg(test)]
mod tests {
    //! Inputs the fuzz targets found (regressions) and the seeds they start from: each
    //! must return without panicking.
    use super::*;

    #[test]
    fn seeds_decode_and_patch() {
        let pod = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#;
        assert_eq!(
            decode_body("application/json", pod).expect("json")["kind"],
            "Pod"
        );
        assert!(decode_body("application/yaml", b"kind: Pod\nmetadata: {name: p}\n").is_ok());
        assert!(decode_body("application/json", b"kind: Pod\n").is_err());
        assert_eq!(
            typed_decode(0, br#"{"metadata":{"name":"x","labels":{"a":"b"}}}"#),
            None
        );
        assert!(decode_body("application/vnd.kubernetes.protobuf", b"k8s\0").is_err());
        let p = patch(
            PatchType::Json,
            br#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
        )
        .expect("json patch");
        assert_eq!(p["spec"]["replicas"], 3);
        assert!(patch(PatchType::Merge, br#"{"spec":{"replicas":null}}"#).is_ok());
        assert!(patch(
            PatchType::Strategic,
            br#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"n2"}]}}}}"#
        )
        .is_ok());
        assert!(patch(
            PatchType::Apply,
            b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 5}\n"
        )
        .is_ok());
        assert_eq!(label_selector("app=web,tier"), Ok(true));
        assert_eq!(field_selector("spec.nodeName=n2"), Ok(false));
        assert!(splice_resource_version(b"{\"metadata\":{}}").is_some());
    }
}
