//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! into JSON. client-go's generated clientsets (used by `kubectl create`, `kubectl run`,
//! ...) always send built-in kinds as protobuf, so the server must read it.
//!
//! The body is `k8s\0` + a `runtime.Unknown` envelope naming apiVersion and kind, whose
//! `raw` is the object's message. Field numbers and types come from `schema.txt`, which is
//! generated from the `generated.proto` files of k8s.io/api and k8s.io/apimachinery (one
//! `M <message>` line per message, then `F <number> <jsonName> <type> <o|r|m>` per field).
//! Well-known messages (Time, IntOrString, Quantity, RawExtension...) get their JSON forms.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{json, Map, Value};

const SCHEMA: &str = include_str!("proto/schema.txt");
const MAGIC: &[u8] = b"k8s\0";

struct Field {
    name: String,
    ty: String,
    label: u8,
}

type Schema = HashMap<String, HashMap<u64, Field>>;

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let mut s: Schema = HashMap::new();
        let mut cur = String::new();
        for line in SCHEMA.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["M", name] => {
                    cur = name.to_string();
                    s.entry(cur.clone()).or_default();
                }
                ["F", num, name, ty, label] => {
                    if let Ok(n) = num.parse() {
                        s.entry(cur.clone()).or_default().insert(
                            n,
                            Field {
                                name: name.to_string(),
                                ty: ty.trim_start_matches('.').to_string(),
                                label: label.as_bytes()[0],
                            },
                        );
                    }
                }
                _ => {}
            }
        }
        s
    })
}

/// Whether a body is Kubernetes protobuf.
pub(crate) fn is_protobuf(content_type: &str) -> bool {
    content_type.starts_with("application/vnd.kubernetes.protobuf")
}

/// One wire-format value.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err("varint too long".into());
        }
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (num, wt) = (tag >> 3, tag & 7);
        let w = match wt {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                let b = buf.get(pos..pos + 8).ok_or("truncated fixed64")?;
                pos += 8;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().map_err(|_| "fixed64")?))
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let b = buf.get(pos..pos + len).ok_or("truncated bytes")?;
                pos += len;
                Wire::Bytes(b)
            }
            5 => {
                let b = buf.get(pos..pos + 4).ok_or("truncated fixed32")?;
                pos += 4;
                Wire::Fixed32(u32::from_le_bytes(b.try_into().map_err(|_| "fixed32")?))
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((num, w));
    }
    Ok(out)
}

fn scalar(ty: &str, w: &Wire<'_>) -> Result<Value, String> {
    Ok(match (ty, w) {
        ("string", Wire::Bytes(b)) => json!(String::from_utf8_lossy(b)),
        ("bytes", Wire::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ("bool", Wire::Varint(v)) => json!(*v != 0),
        ("int32", Wire::Varint(v)) => json!(*v as i64 as i32),
        ("int64", Wire::Varint(v)) => json!(*v as i64),
        ("uint32", Wire::Varint(v)) | ("uint64", Wire::Varint(v)) => json!(*v),
        ("double", Wire::Fixed64(v)) => json!(f64::from_bits(*v)),
        ("float", Wire::Fixed32(v)) => json!(f32::from_bits(*v)),
        (t, _) => return Err(format!("unexpected wire value for {t}")),
    })
}

fn is_scalar(ty: &str) -> bool {
    matches!(
        ty,
        "string" | "bytes" | "bool" | "int32" | "int64" | "uint32" | "uint64" | "double" | "float"
    )
}

/// Packed repeated scalars (proto2 does not pack, but accept both forms).
fn repeated_scalars(ty: &str, w: &Wire<'_>) -> Result<Vec<Value>, String> {
    match (ty, w) {
        ("string" | "bytes", _)
        | (_, Wire::Varint(_))
        | (_, Wire::Fixed32(_))
        | (_, Wire::Fixed64(_)) => Ok(vec![scalar(ty, w)?]),
        (_, Wire::Bytes(b)) => {
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < b.len() {
                out.push(scalar(ty, &Wire::Varint(varint(b, &mut pos)?))?);
            }
            Ok(out)
        }
    }
}

fn time(buf: &[u8], micro: bool) -> Result<Value, String> {
    let mut secs = 0i64;
    let mut nanos = 0i64;
    for (n, w) in fields(buf)? {
        if let Wire::Varint(v) = w {
            match n {
                1 => secs = v as i64,
                2 => nanos = v as i64,
                _ => {}
            }
        }
    }
    let t = chrono::DateTime::from_timestamp(secs, nanos as u32).ok_or("bad time")?;
    Ok(json!(if micro {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }))
}

fn message(ty: &str, buf: &[u8]) -> Result<Value, String> {
    match ty {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => return time(buf, false),
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => return time(buf, true),
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            let (mut kind, mut i, mut s) = (0u64, 0i64, String::new());
            for (n, w) in fields(buf)? {
                match (n, w) {
                    (1, Wire::Varint(v)) => kind = v,
                    (2, Wire::Varint(v)) => i = v as i64 as i32 as i64,
                    (3, Wire::Bytes(b)) => s = String::from_utf8_lossy(b).into_owned(),
                    _ => {}
                }
            }
            return Ok(if kind == 1 { json!(s) } else { json!(i) });
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            for (n, w) in fields(buf)? {
                if let (1, Wire::Bytes(b)) = (n, w) {
                    return Ok(json!(String::from_utf8_lossy(b)));
                }
            }
            return Ok(json!("0"));
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            for (n, w) in fields(buf)? {
                if let (1, Wire::Bytes(b)) = (n, w) {
                    return Ok(serde_json::from_slice(b).unwrap_or(Value::Null));
                }
            }
            return Ok(Value::Null);
        }
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => {
            for (n, w) in fields(buf)? {
                if let (1, Wire::Varint(v)) = (n, w) {
                    return Ok(json!(format!("{}s", (v as i64) / 1_000_000_000)));
                }
            }
            return Ok(json!("0s"));
        }
        _ => {}
    }
    let Some(desc) = schema().get(ty) else {
        return Err(format!("unknown protobuf message {ty}"));
    };
    let mut out = Map::new();
    for (n, w) in fields(buf)? {
        let Some(f) = desc.get(&n) else { continue };
        match f.label {
            b'm' => {
                let Wire::Bytes(entry) = w else { continue };
                let (mut k, mut v) = (String::new(), Value::Null);
                for (en, ew) in fields(entry)? {
                    match (en, &ew) {
                        (1, Wire::Bytes(b)) => k = String::from_utf8_lossy(b).into_owned(),
                        (2, _) => {
                            v = if is_scalar(&f.ty) {
                                scalar(&f.ty, &ew)?
                            } else if let Wire::Bytes(b) = ew {
                                message(&f.ty, b)?
                            } else {
                                Value::Null
                            }
                        }
                        _ => {}
                    }
                }
                if v.is_null() && f.ty == "string" {
                    v = json!("");
                }
                let m = out.entry(f.name.clone()).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
            }
            b'r' => {
                let vals = if is_scalar(&f.ty) {
                    repeated_scalars(&f.ty, &w)?
                } else if let Wire::Bytes(b) = w {
                    vec![message(&f.ty, b)?]
                } else {
                    continue;
                };
                let a = out.entry(f.name.clone()).or_insert_with(|| json!([]));
                if let Some(a) = a.as_array_mut() {
                    a.extend(vals);
                }
            }
            _ => {
                let v = if is_scalar(&f.ty) {
                    let v = scalar(&f.ty, &w)?;
                    // Go's protobuf writes empty non-pointer strings; JSON omits them.
                    if v.as_str() == Some("") {
                        continue;
                    }
                    v
                } else if let Wire::Bytes(b) = w {
                    // The zero Time (an unset timestamp) is written too; JSON has null.
                    if f.ty.ends_with("meta.v1.Time") && b.is_empty() {
                        continue;
                    }
                    message(&f.ty, b)?
                } else {
                    continue;
                };
                out.insert(f.name.clone(), v);
            }
        }
    }
    Ok(Value::Object(out))
}

/// The proto package of an API group (`apps` → `k8s.io.api.apps.v1`).
fn package(api_version: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    match group {
        "" => format!("k8s.io.api.core.{version}"),
        "meta.k8s.io" => format!("k8s.io.apimachinery.pkg.apis.meta.{version}"),
        g => format!("k8s.io.api.{}.{version}", g.split('.').next().unwrap_or(g)),
    }
}

/// Decodes a protobuf body into the object's JSON (with apiVersion and kind).
pub(crate) fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body without the k8s envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields(rest)? {
        match (n, w) {
            (1, Wire::Bytes(tm)) => {
                for (tn, tw) in fields(tm)? {
                    if let Wire::Bytes(b) = tw {
                        match tn {
                            1 => api_version = String::from_utf8_lossy(b).into_owned(),
                            2 => kind = String::from_utf8_lossy(b).into_owned(),
                            _ => {}
                        }
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let ty = if kind == "DeleteOptions" {
        "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions".to_string()
    } else {
        format!("{}.{kind}", package(&api_version))
    };
    let mut v = message(&ty, raw)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64, wt: u64) -> Vec<u8> {
        enc_varint((n << 3) | wt)
    }
    fn enc_varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }
    fn bytes_field(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = key(n, 2);
        out.extend(enc_varint(b.len() as u64));
        out.extend_from_slice(b);
        out
    }
    fn varint_field(n: u64, v: u64) -> Vec<u8> {
        let mut out = key(n, 0);
        out.extend(enc_varint(v));
        out
    }

    #[test]
    fn decodes_a_service() {
        let mut labels_entry = bytes_field(1, b"app");
        labels_entry.extend(bytes_field(2, b"web"));
        let mut meta = bytes_field(1, b"auto-np");
        meta.extend(bytes_field(11, &labels_entry));
        meta.extend(bytes_field(8, b"")); // zero creationTimestamp
        let mut target = varint_field(1, 0);
        target.extend(varint_field(2, 80));
        let mut port = bytes_field(1, b"80-80");
        port.extend(bytes_field(2, b"TCP"));
        port.extend(varint_field(3, 80));
        port.extend(bytes_field(4, &target));
        let mut spec = bytes_field(1, &port);
        spec.extend(bytes_field(4, b"NodePort"));
        spec.extend(bytes_field(3, b""));
        let mut svc = bytes_field(1, &meta);
        svc.extend(bytes_field(2, &spec));
        let mut tm = bytes_field(1, b"v1");
        tm.extend(bytes_field(2, b"Service"));
        let mut body = MAGIC.to_vec();
        body.extend(bytes_field(1, &tm));
        body.extend(bytes_field(2, &svc));
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "auto-np", "labels": {"app": "web"}},
                   "spec": {"ports": [{"name": "80-80", "protocol": "TCP", "port": 80, "targetPort": 80}], "type": "NodePort"},
                   "apiVersion": "v1", "kind": "Service"})
        );
    }
}
