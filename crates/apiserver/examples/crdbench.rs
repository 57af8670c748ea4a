//! Custom resources against ConfigMaps in one run: a real `skiff-apiserver` in a child
//! process (this binary run with `--serve DIR`), driven over HTTPS with the admin client
//! certificate.
//!
//! `cargo build --release -p skiff-apiserver --example crdbench`, then
//! `target/release/examples/crdbench [--objects 10000]` (or `bench/crd.sh`).
//!
//! Creates N ConfigMaps of 20 keys, N custom objects of a CRD whose schema has 20 typed
//! fields (validation, pruning, defaulting), and N of the same CRD with two CEL rules
//! (`x-kubernetes-validations`), each with 8 concurrent clients; reports creates/s and
//! the p50/p99 of a LIST of all N of each.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};

use common::ServerProcess;

/// Concurrent writers.
const WRITERS: usize = 8;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let dir = PathBuf::from(args.get(1).context("--serve DIR")?);
        return common::serve(&dir).await;
    }
    let mut objects = 10_000usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--objects" => objects = it.next().context("--objects N")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    run(objects).await
}

async fn call(
    c: &kube::Client,
    method: &str,
    uri: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Bytes)> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("accept", "application/json");
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let resp = c
        .send(b.body(Body::from(body.unwrap_or_default()))?)
        .await?;
    let code = resp.status().as_u16();
    Ok((code, resp.into_body().collect().await?.to_bytes()))
}

/// A CRD of kind `kind` whose spec has 20 fields of mixed types, with `rules` on spec.
fn crd(plural: &str, kind: &str, rules: Value) -> Value {
    let mut props = serde_json::Map::new();
    for i in 0..20 {
        let schema = match i % 4 {
            0 => json!({"type": "string", "maxLength": 64}),
            1 => json!({"type": "integer", "minimum": 0, "maximum": 1_000_000}),
            2 => json!({"type": "boolean", "default": false}),
            _ => json!({"type": "string", "enum": ["a", "b", "c"]}),
        };
        props.insert(format!("f{i:02}"), schema);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.bench.example.com")},
        "spec": {"group": "bench.example.com", "scope": "Namespaced",
                 "names": {"plural": plural, "kind": kind},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                         "spec": {"type": "object", "properties": props,
                                  "x-kubernetes-validations": rules}}}}}]}
    })
}

fn spec(i: usize) -> Value {
    let mut m = serde_json::Map::new();
    for f in 0..20 {
        let v = match f % 4 {
            0 => json!(format!("value-{i}-{f}")),
            1 => json!(i + f),
            2 => json!(i.is_multiple_of(2)),
            _ => json!(["a", "b", "c"][(i + f) % 3]),
        };
        m.insert(format!("f{f:02}"), v);
    }
    Value::Object(m)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Creates `n` objects at `path` with 8 clients; returns creates/s.
async fn creates(
    cfg: &kube::Config,
    path: &str,
    n: usize,
    body: impl Fn(usize) -> Value + Send + Sync + Clone + 'static,
) -> Result<f64> {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let c = kube::Client::try_from(cfg.clone())?;
        let path = path.to_string();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(WRITERS) {
                let (code, b) =
                    call(&c, "POST", &path, Some(serde_json::to_vec(&body(i))?)).await?;
                if code != 201 {
                    bail!("create {i}: {code} {}", String::from_utf8_lossy(&b));
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// p50 and p99 of 20 LISTs of `path` (ms), checking the count.
async fn lists(c: &kube::Client, path: &str, n: usize) -> Result<(f64, f64)> {
    let mut lat = Vec::new();
    for _ in 0..20 {
        let s = Instant::now();
        let (code, b) = call(c, "GET", path, None).await?;
        lat.push(s.elapsed());
        let v: Value = serde_json::from_slice(&b)?;
        let got = v["items"].as_array().map(Vec::len).unwrap_or(0);
        if code != 200 || got != n {
            bail!("list {path}: {code}, {got} items");
        }
    }
    lat.sort();
    Ok((pct(&lat, 0.5), pct(&lat, 0.99)))
}

async fn run(n: usize) -> Result<()> {
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let (server, cfg) = ServerProcess::start("crdbench").await?;
    let c = kube::Client::try_from(cfg.clone())?;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}});
    call(
        &c,
        "POST",
        "/api/v1/namespaces",
        Some(serde_json::to_vec(&ns)?),
    )
    .await?;
    let rules = json!([
        {"rule": "self.f01 <= self.f05 + 1000000", "message": "f01 too large"},
        {"rule": "self.f00.startsWith('value-') && size(self.f04) < 64", "message": "bad f00"}
    ]);
    for (plural, kind, r) in [("plains", "Plain", json!([])), ("celds", "Celd", rules)] {
        let (code, b) = call(
            &c,
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(serde_json::to_vec(&crd(plural, kind, r))?),
        )
        .await?;
        if code != 201 {
            bail!("CRD {plural}: {code} {}", String::from_utf8_lossy(&b));
        }
    }
    // Established: the resources answer.
    let end = Instant::now() + Duration::from_secs(30);
    for plural in ["plains", "celds"] {
        let path = format!("/apis/bench.example.com/v1/namespaces/bench/{plural}");
        while call(&c, "GET", &path, None).await?.0 != 200 {
            if Instant::now() > end {
                bail!("{plural} not served");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let cm = |i: usize| {
        let data: serde_json::Map<String, Value> = spec(i)
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), json!(v.to_string().trim_matches('"'))))
            .collect();
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": format!("cm-{i:06}"), "namespace": "bench"}, "data": data})
    };
    let custom = |kind: &'static str| {
        move |i: usize| {
            json!({"apiVersion": "bench.example.com/v1", "kind": kind,
                   "metadata": {"name": format!("o-{i:06}"), "namespace": "bench"}, "spec": spec(i)})
        }
    };
    let rows = [
        (
            "ConfigMaps (20 keys)",
            "/api/v1/namespaces/bench/configmaps",
            None,
        ),
        (
            "custom objects (20-field schema)",
            "/apis/bench.example.com/v1/namespaces/bench/plains",
            Some("Plain"),
        ),
        (
            "custom objects (schema + 2 CEL rules)",
            "/apis/bench.example.com/v1/namespaces/bench/celds",
            Some("Celd"),
        ),
    ];
    for (label, path, kind) in rows {
        let cpu0 = server.cpu_secs();
        let rate = match kind {
            None => creates(&cfg, path, n, cm).await?,
            Some(k) => creates(&cfg, path, n, custom(k)).await?,
        };
        let cpu = server.cpu_secs() - cpu0;
        let (p50, p99) = lists(&c, path, n).await?;
        println!(
            "{label:<40} {rate:>7.0} creates/s (server CPU {:.2} ms/create)   list of {n}: p50 {p50:>7.1} ms  p99 {p99:>7.1} ms",
            cpu * 1000.0 / n as f64
        );
    }
    println!("server RSS: {} MiB", server.rss_mib().0);
    Ok(())
}
