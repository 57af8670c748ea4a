//! Stored objects are JSON without `metadata.resourceVersion` (the store's revision is
//! the resourceVersion). LIST and WATCH answers need it set; instead of decoding every
//! object into a `serde_json::Value` and encoding it again, the revision is spliced into
//! the stored bytes: a scan of the top-level object finds `metadata`'s opening brace.
//!
//! The scanner only skips over values (strings with escapes, nested containers); it
//! does not validate. Anything unexpected (not an object, no `metadata` object, a
//! `resourceVersion` already there) makes [`splice_resource_version`] decline, and the
//! caller takes the decoding path.

/// Appends the stored object `bytes` to `out` with `metadata.resourceVersion` set to
/// `rev`. Returns `false`, leaving `out` unchanged, when the bytes do not have the
/// expected shape.
pub(crate) fn splice_resource_version(bytes: &[u8], rev: i64, out: &mut Vec<u8>) -> bool {
    let Some(open) = field_value(bytes, b"metadata") else {
        return false;
    };
    if bytes.get(open) != Some(&b'{') {
        return false;
    }
    // A resourceVersion already present would be duplicated.
    if field_value(&bytes[open..], b"resourceVersion").is_some() {
        return false;
    }
    let after = open + 1;
    let empty = bytes[after..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'}');
    out.reserve(bytes.len() + 40);
    out.extend_from_slice(&bytes[..after]);
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(rev.to_string().as_bytes());
    out.push(b'"');
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&bytes[after..]);
    true
}

/// Appends only the stored object's `metadata`, with `resourceVersion` set to `rev` (a
/// Table row's partial object). Returns `false`, leaving `out` unchanged, when the bytes
/// do not have the expected shape.
pub(crate) fn metadata_with_resource_version(bytes: &[u8], rev: i64, out: &mut Vec<u8>) -> bool {
    let Some(open) = field_value(bytes, b"metadata") else {
        return false;
    };
    if bytes.get(open) != Some(&b'{') {
        return false;
    }
    let Some(end) = skip_value(bytes, open) else {
        return false;
    };
    let meta = &bytes[open..end];
    if field_value(meta, b"resourceVersion").is_some() {
        return false;
    }
    let empty = meta[1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'}');
    out.extend_from_slice(b"{\"resourceVersion\":\"");
    out.extend_from_slice(rev.to_string().as_bytes());
    out.push(b'"');
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&meta[1..]);
    true
}

/// The stored object without `metadata.managedFields` (which no printer reads), for
/// decoding the objects of a Table; `None` when there is nothing to cut.
pub(crate) fn without_managed_fields(bytes: &[u8]) -> Option<Vec<u8>> {
    let open = field_value(bytes, b"metadata")?;
    if bytes.get(open) != Some(&b'{') {
        return None;
    }
    let end = skip_value(bytes, open)?;
    let (key_start, _, value_end) = field_span(&bytes[open..end], b"managedFields")?;
    let (mut cut_from, mut cut_to) = (open + key_start, open + value_end);
    // Take one separating comma with the member: the one after it, else the one before.
    let after = skip_ws(bytes, cut_to);
    if bytes.get(after) == Some(&b',') {
        cut_to = after + 1;
    } else {
        let before = bytes[open + 1..cut_from]
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map(|p| open + 1 + p);
        match before {
            Some(b) if bytes[b] == b',' => cut_from = b,
            // The only member: leave `{}`.
            _ => {
                cut_from = open + 1;
                cut_to = end - 1;
            }
        }
    }
    let mut out = Vec::with_capacity(bytes.len() - (cut_to - cut_from));
    out.extend_from_slice(&bytes[..cut_from]);
    out.extend_from_slice(&bytes[cut_to..]);
    Some(out)
}

/// Offset of the value of the top-level `key` of the JSON object `s`, if `s` is an
/// object with that key.
fn field_value(s: &[u8], key: &[u8]) -> Option<usize> {
    field_span(s, key).map(|(_, value, _)| value)
}

/// Offsets of the top-level member `key` of the JSON object `s`: where its key starts,
/// where its value starts and just past its value.
fn field_span(s: &[u8], key: &[u8]) -> Option<(usize, usize, usize)> {
    let mut i = skip_ws(s, 0);
    if s.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(s, i);
        match s.get(i)? {
            b'}' => return None,
            b'"' => {}
            _ => return None,
        }
        let key_start = i + 1;
        let key_end = skip_string(s, i)?;
        // `key_end` is just past the closing quote. Keys with escapes never equal ours.
        let this = &s[key_start..key_end - 1];
        i = skip_ws(s, key_end);
        if s.get(i)? != &b':' {
            return None;
        }
        i = skip_ws(s, i + 1);
        let value_start = i;
        i = skip_value(s, i)?;
        if this == key {
            return Some((key_start - 1, value_start, i));
        }
        i = skip_ws(s, i);
        match s.get(i)? {
            b',' => i += 1,
            b'}' => return None,
            _ => return None,
        }
    }
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// `s[i]` is an opening quote: the offset just past the closing one.
fn skip_string(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match s.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The offset just past the value starting at `s[i]`.
fn skip_value(s: &[u8], i: usize) -> Option<usize> {
    match s.get(i)? {
        b'"' => skip_string(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match s.get(j)? {
                    b'"' => {
                        j = skip_string(s, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            // Number, true, false, null: up to the next delimiter.
            let mut j = i;
            while let Some(b) = s.get(j) {
                if matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace() {
                    break;
                }
                j += 1;
            }
            Some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spliced(v: &Value, rev: i64) -> Option<Value> {
        let bytes = serde_json::to_vec(v).expect("encode");
        let mut out = Vec::new();
        if !splice_resource_version(&bytes, rev, &mut out) {
            assert!(out.is_empty());
            return None;
        }
        Some(serde_json::from_slice(&out).expect("spliced bytes are JSON"))
    }

    #[test]
    fn sets_the_revision_in_top_level_metadata_only() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "spec": {"template": {"metadata": {"name": "inner"}}, "x": [1, {"a": "}"}], "s": "q\"{"},
            "metadata": {"name": "p", "labels": {"a": "b"}}, "status": {}});
        let out = spliced(&pod, 42).expect("spliced");
        let mut want = pod.clone();
        want["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(out, want);
        assert!(out["spec"]["template"]["metadata"]
            .get("resourceVersion")
            .is_none());
    }

    #[test]
    fn metadata_alone() {
        let v = json!({"kind": "Pod", "metadata": {"name": "p", "x": {"y": [1]}}, "spec": {}});
        let bytes = serde_json::to_vec(&v).expect("encode");
        let mut out = Vec::new();
        assert!(metadata_with_resource_version(&bytes, 3, &mut out));
        let m: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            m,
            json!({"resourceVersion": "3", "name": "p", "x": {"y": [1]}})
        );
        let mut out = Vec::new();
        assert!(metadata_with_resource_version(
            b"{\"metadata\":{}}",
            4,
            &mut out
        ));
        assert_eq!(out, b"{\"resourceVersion\":\"4\"}");
        assert!(!metadata_with_resource_version(
            b"{\"metadata\":{\"a\":",
            4,
            &mut out
        ));
        assert!(!metadata_with_resource_version(
            b"{\"kind\":1}",
            4,
            &mut out
        ));
    }

    #[test]
    fn managed_fields_are_cut() {
        let cases = [
            json!({"metadata": {"name": "p", "managedFields": [{"m": "x"}], "uid": "u"}, "spec": {}}),
            json!({"metadata": {"name": "p", "managedFields": [{"m": "x"}]}, "spec": {}}),
            json!({"metadata": {"managedFields": [{"m": "x"}], "name": "p"}}),
            json!({"metadata": {"managedFields": []}}),
        ];
        for v in cases {
            let bytes = serde_json::to_vec(&v).expect("encode");
            let out = without_managed_fields(&bytes).expect("cut");
            let got: Value = serde_json::from_slice(&out).expect("still JSON");
            let mut want = v.clone();
            want["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("managedFields");
            assert_eq!(got, want);
        }
        let spaced = b"{ \"metadata\" : { \"a\" : 1 , \"managedFields\" : [ ] } }";
        let got: Value =
            serde_json::from_slice(&without_managed_fields(spaced).expect("cut")).expect("json");
        assert_eq!(got, json!({"metadata": {"a": 1}}));
        assert!(without_managed_fields(b"{\"metadata\":{\"name\":\"p\"}}").is_none());
        assert!(without_managed_fields(b"{\"metadata\":{\"managedFields\":[").is_none());
    }

    #[test]
    fn empty_metadata_and_whitespace() {
        let text = br#" { "kind" : "X" , "metadata" : { } } "#;
        let mut out = Vec::new();
        assert!(splice_resource_version(text, 7, &mut out));
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v,
            json!({"kind": "X", "metadata": {"resourceVersion": "7"}})
        );
    }

    #[test]
    fn declines_unexpected_shapes() {
        assert!(spliced(&json!({"kind": "X"}), 1).is_none());
        assert!(spliced(&json!({"metadata": "str"}), 1).is_none());
        assert!(spliced(&json!([1, 2]), 1).is_none());
        assert!(spliced(&json!({"metadata": {"resourceVersion": "3"}}), 1).is_none());
        let mut out = Vec::new();
        for bad in [
            &b""[..],
            b"{",
            b"{\"a",
            b"{\"a\":",
            b"{\"a\":\"x",
            b"{\"a\":[1,",
            b"{\"metadata\"",
        ] {
            assert!(!splice_resource_version(bad, 1, &mut out), "{bad:?}");
        }
        assert!(out.is_empty());
    }

    #[test]
    fn keys_with_escapes_and_nested_resource_versions() {
        let v = json!({"a\"b": {"metadata": 1}, "metadata": {"ownerReferences": [{"resourceVersion": "9"}], "name": "n"}});
        let out = spliced(&v, 5).expect("spliced");
        assert_eq!(out["metadata"]["resourceVersion"], "5");
        assert_eq!(
            out["metadata"]["ownerReferences"][0]["resourceVersion"],
            "9"
        );
    }
}
