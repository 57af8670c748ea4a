//! The pod-template-hash: Kubernetes' `controller.ComputeHash` (FNV-1a 32 over the
//! template, then the collision count as 4 little-endian bytes, then
//! `rand.SafeEncodeString` of the decimal sum).
//!
//! Kubernetes hashes Go's `%#v` dump of the template, which cannot be reproduced outside
//! Go; skiff hashes the template's canonical JSON instead (fields in declaration order,
//! maps sorted, empty values dropped). The value therefore differs from kube's for the
//! same template, but it has the same shape and is stable across restarts and versions.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// The alphabet of `rand.SafeEncodeString` and of generated names: no vowels (no words)
/// and no look-alike characters.
pub const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `rand.SafeEncodeString`: maps each byte of `s` onto [`SAFE_ALPHANUMS`].
pub fn safe_encode_string(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHANUMS[b as usize % SAFE_ALPHANUMS.len()] as char)
        .collect()
}

/// FNV-1a, 32 bits.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Drops nulls, empty maps and empty arrays, recursively, so that nil and empty compare
/// equal (as `apiequality.Semantic.DeepEqual` treats them).
pub fn normalize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normalize(v)))
                .filter(|(_, v)| !is_empty_value(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The template as canonical JSON, without the pod-template-hash label.
pub fn canonical_template(template: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = v
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(|l| l.as_object_mut())
    {
        labels.remove(skiff_api::names::POD_TEMPLATE_HASH_LABEL);
    }
    normalize(v)
}

/// Whether two templates are equal but for the pod-template-hash label
/// (deploymentutil.EqualIgnoreHash).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    canonical_template(a) == canonical_template(b)
}

/// The pod-template-hash of `template` with `collision_count`.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut data = serde_json::to_vec(&canonical_template(template)).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode_string(&fnv32a(&data).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn safe_encode_matches_kubernetes() {
        // Bytes 48..57 ('0'..'9'): 48 % 27 = 21 -> '4', 49 -> '5' ...
        assert_eq!(safe_encode_string("0123456789"), "456789bcdf");
    }

    fn template(labels: &[(&str, &str)], image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_,_>>()},
            "spec": {"containers": [{"name": "httpd", "image": image, "ports": [{"containerPort": 80}]}]}
        }))
        .expect("template")
    }

    #[test]
    fn hash_is_stable_and_ignores_the_hash_label() {
        let a = template(&[("run", "httpd")], "httpd");
        let h = compute_hash(&a, None);
        assert!((6..=10).contains(&h.len()), "{h}");
        assert!(h.bytes().all(|b| SAFE_ALPHANUMS.contains(&b)));
        assert_eq!(h, compute_hash(&a.clone(), None));
        let mut b = a.clone();
        b.metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert("pod-template-hash".into(), h.clone());
        assert_eq!(compute_hash(&b, None), h);
        assert!(equal_ignore_hash(&a, &b));
        assert_ne!(compute_hash(&a, Some(1)), h);
        assert_ne!(
            compute_hash(&template(&[("run", "httpd")], "httpd:2"), None),
            h
        );
        // Golden value: changing it breaks the names of every existing ReplicaSet.
        assert_eq!(h, "86bf6859f5");
    }
}
