//! Writes the discovery and OpenAPI documents to a directory laid out like the URL paths
//! (`<dir>/api`, `<dir>/apis/apps/v1`, `<dir>/openapi/v3/apis/apps/v1`...), so that a
//! static file server can stand in for the API server's read-only endpoints when trying
//! real `kubectl explain`/`kubectl apply` against them.
//!
//! `cargo run -p skiff-resources --example dump_api -- /tmp/api`

use std::path::Path;

use serde_json::Value;

fn write(dir: &Path, rel: &str, v: &Value) -> std::io::Result<()> {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, serde_json::to_vec(v).unwrap_or_default())
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "api-dump".into());
    let dir = Path::new(&dir);
    use skiff_resources::{discovery, openapi, resources};
    write(dir, "api/index.json", &discovery::core_versions())?;
    write(dir, "apis/index.json", &discovery::api_groups())?;
    write(
        dir,
        "aggregated/api.json",
        &discovery::aggregated(true, true),
    )?;
    write(
        dir,
        "aggregated/apis.json",
        &discovery::aggregated(false, true),
    )?;
    write(dir, "openapi/v3/index.json", &openapi::v3_root())?;
    let mut done = Vec::new();
    for r in resources() {
        if done.contains(&(r.group, r.version)) {
            continue;
        }
        done.push((r.group, r.version));
        let key = openapi::path_key(r.group, r.version);
        if let Some(l) = discovery::resource_list(r.group, r.version) {
            write(dir, &format!("{key}/index.json"), &l)?;
        }
        if let Some(d) = openapi::v3_document(r.group, r.version) {
            write(dir, &format!("openapi/v3/{key}/index.json"), &d)?;
        }
        if !r.group.is_empty() {
            if let Some(g) = discovery::api_group_document(r.group) {
                write(dir, &format!("apis/{}/index.json", r.group), &g)?;
            }
        }
    }
    Ok(())
}
