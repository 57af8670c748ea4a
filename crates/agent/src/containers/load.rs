//! `skiff image load`: the images of a `docker save`/`podman save` archive or an OCI
//! image layout (a directory, or its tar), or of a running Docker or Podman by name,
//! onto the image stores of several nodes, layer by layer.
//!
//! An archive is read as one stream, never written out whole: each layer is unpacked
//! into the first node's layer store as it passes (named by the digest of its
//! uncompressed tar, since an archive lists its layers after them), a layer whose blob
//! name is a digest the first node has is skipped unread, and the small files (configs,
//! manifests, `index.json`) are kept in memory. The other nodes get each layer they
//! lack as hard links of the first node's (one filesystem), not unpacked again. Every
//! layer is checked against its config's diff IDs. A name is loaded from whichever of
//! `docker` and `podman` has the image, streamed from `<engine> image save`; when every
//! node has the image already (same ID, same layers), nothing is saved at all.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::images::{
    blob_path, open_maybe_gzip, DockerManifest, ImageStore, OciIndex, OciManifest, StoreLock,
};
use super::reference;

/// Largest non-layer file kept in memory (configs and manifests are a few KiB).
const MAX_SMALL_FILE: u64 = 64 << 20;

/// What [`load`] did on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The node's data dir.
    pub data_dir: PathBuf,
    /// The references it now has.
    pub references: Vec<String>,
    /// Layers unpacked or linked in (0: it had them all).
    pub new_layers: usize,
}

/// One image of an archive: its config blob, its layers' paths in the archive (bottom
/// first) and the references it names.
struct Source {
    config: Vec<u8>,
    layers: Vec<String>,
    refs: Vec<String>,
}

/// Loads an archive file (optionally gzipped) or an OCI layout directory onto the
/// nodes whose data dirs are `data_dirs`.
pub fn load(data_dirs: &[PathBuf], source: &Path) -> Result<Vec<Loaded>> {
    if source.is_dir() {
        return load_dir(data_dirs, source);
    }
    load_stream(data_dirs, open_maybe_gzip(source)?)
        .with_context(|| format!("loading {}", source.display()))
}

/// Loads the images of a tar stream (a docker archive or an OCI layout's tar).
pub fn load_stream(data_dirs: &[PathBuf], reader: impl Read) -> Result<Vec<Loaded>> {
    let stores = stores(data_dirs)?;
    let _held = hold(&stores)?;
    let first = &stores[0];
    let before: HashSet<String> = first.layers.list().into_iter().collect();
    let mut fresh: Vec<String> = Vec::new();
    let result = stream_into(&stores, reader, &before, &mut fresh);
    if result.is_err() {
        // Layers this load unpacked that no image has (a bad archive) go again.
        let used = first.layers_in_use().unwrap_or_default();
        for d in fresh
            .iter()
            .filter(|d| !before.contains(*d) && !used.contains(*d))
        {
            let _ = first.layers.remove(d);
        }
    }
    result
}

fn stream_into(
    stores: &[ImageStore],
    reader: impl Read,
    before: &HashSet<String>,
    fresh: &mut Vec<String>,
) -> Result<Vec<Loaded>> {
    let first = &stores[0];
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut layers: HashMap<String, String> = HashMap::new();
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("reading the archive")? {
        let entry = entry.context("reading the archive")?;
        let path = clean(&entry.path()?.to_string_lossy());
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name()? {
                let target = target.to_string_lossy().into_owned();
                let target = if kind.is_symlink() {
                    join_relative(&path, &target)
                } else {
                    clean(&target)
                };
                links.insert(path, target);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        sizes.insert(path.clone(), size);
        // The first bytes tell a layer (a pipe may hand them over in pieces).
        let mut entry = entry;
        let mut head = Vec::with_capacity(512);
        (&mut entry).take(512).read_to_end(&mut head)?;
        let is_layer = looks_like_layer(&head);
        let mut reader = io::BufReader::with_capacity(1 << 20, io::Cursor::new(head).chain(entry));
        if is_layer {
            // A blob named by a digest the first node has: nothing to unpack.
            if let Some(d) = digest_in_name(&path).filter(|d| first.layers.has(d)) {
                io::copy(&mut reader, &mut io::sink())?;
                layers.insert(path, d);
                continue;
            }
            let diff_id = first
                .layers
                .unpack_unknown(reader)
                .with_context(|| format!("unpacking the layer {path}"))?;
            fresh.push(diff_id.clone());
            layers.insert(path, diff_id);
        } else {
            if size > MAX_SMALL_FILE {
                bail!("{path} is neither a layer nor a small metadata file ({size} bytes)");
            }
            let mut buf = Vec::with_capacity(size as usize);
            reader.read_to_end(&mut buf)?;
            small.insert(path, buf);
        }
    }
    let resolve = |p: &str| -> String {
        let mut p = clean(p);
        for _ in 0..8 {
            match links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    };
    let read = |p: &str| -> Result<Vec<u8>> {
        small
            .get(&resolve(p))
            .cloned()
            .with_context(|| format!("the archive has no {p}"))
    };
    let sources = if small.contains_key("manifest.json") {
        docker_sources(&read)?
    } else if small.contains_key("index.json") {
        oci_sources(&read)?
    } else {
        bail!("neither an OCI image layout nor a docker archive (no index.json or manifest.json)")
    };
    let had = |d: &str| before.contains(d);
    record(stores, &sources, &had, |store, _, path| {
        let path = resolve(path);
        let size = sizes.get(&path).copied().unwrap_or(0);
        if let Some(d) = layers.get(&path) {
            return Ok((d.clone(), size));
        }
        // A layer that did not look like one (an empty tar is all zeros).
        let bytes = small
            .get(&path)
            .with_context(|| format!("the archive has no layer {path}"))?;
        Ok((store.layers.unpack_unknown(&bytes[..])?, size))
    })
}

/// An OCI layout directory: layers are read from their files, by their known digests.
fn load_dir(data_dirs: &[PathBuf], root: &Path) -> Result<Vec<Loaded>> {
    let stores = stores(data_dirs)?;
    let _held = hold(&stores)?;
    let read = |p: &str| -> Result<Vec<u8>> {
        fs::read(root.join(p)).with_context(|| format!("reading {}", root.join(p).display()))
    };
    let sources = if root.join("index.json").exists() {
        oci_sources(&read)?
    } else if root.join("manifest.json").exists() {
        docker_sources(&read)?
    } else {
        bail!(
            "{} is neither an OCI image layout nor a docker archive",
            root.display()
        )
    };
    let first = &stores[0];
    let before: HashSet<String> = first.layers.list().into_iter().collect();
    let had = |d: &str| before.contains(d);
    record(&stores, &sources, &had, |store, diff_id, path| {
        let file = root.join(path);
        let size = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        if !store.layers.has(diff_id) {
            let f = fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            store.layers.unpack(diff_id, f)?;
        }
        Ok((diff_id.to_string(), size))
    })
}

/// Holds every node's store for the whole load (in the nodes' order, so that two
/// loads never wait on each other crosswise): the garbage collector of a node then
/// sees the images before or after the load, never its layers without their image.
fn hold(stores: &[ImageStore]) -> Result<Vec<StoreLock<'_>>> {
    stores.iter().map(ImageStore::exclusive).collect()
}

fn stores(data_dirs: &[PathBuf]) -> Result<Vec<ImageStore>> {
    anyhow::ensure!(!data_dirs.is_empty(), "no node to load onto");
    Ok(data_dirs
        .iter()
        .map(|d| ImageStore::new(d, Path::new("/bin/busybox")))
        .collect())
}

/// Records each image on every node: `layer(first store, expected diff ID, path)` gives
/// a layer's diff ID (unpacked into the first store) and its blob's size; the other
/// stores get the layers they lack as hard links of the first's.
fn record(
    stores: &[ImageStore],
    sources: &[Source],
    had: &dyn Fn(&str) -> bool,
    mut layer: impl FnMut(&ImageStore, &str, &str) -> Result<(String, u64)>,
) -> Result<Vec<Loaded>> {
    let first = &stores[0];
    let mut out: Vec<Loaded> = stores
        .iter()
        .map(|s| Loaded {
            data_dir: s.dir().parent().unwrap_or(Path::new("/")).to_path_buf(),
            references: Vec::new(),
            new_layers: 0,
        })
        .collect();
    for src in sources {
        let diff_ids = config_diff_ids(&src.config)?;
        if diff_ids.len() != src.layers.len() {
            bail!(
                "the image config lists {} layers, its manifest {}",
                diff_ids.len(),
                src.layers.len()
            );
        }
        let mut size = src.config.len() as u64;
        for (expected, path) in diff_ids.iter().zip(&src.layers) {
            let (actual, bytes) = layer(first, expected, path)?;
            if &actual != expected {
                bail!("layer digest mismatch: expected {expected}, got {actual}");
            }
            size += bytes;
            if !had(expected) {
                out[0].new_layers += 1;
            }
        }
        let refs = if src.refs.is_empty() {
            vec![format!("sha256:{:x}", Sha256::digest(&src.config))]
        } else {
            src.refs.clone()
        };
        for (i, store) in stores.iter().enumerate() {
            if i > 0 {
                for d in &diff_ids {
                    if !store.layers.has(d) {
                        store.layers.link_from(d, &first.layers.path(d))?;
                        out[i].new_layers += 1;
                    }
                }
            }
            store.record_layered(&src.config, &diff_ids, size, &refs)?;
            out[i]
                .references
                .extend(refs.iter().map(|r| reference::normalize(r)));
        }
    }
    Ok(out)
}

fn config_diff_ids(config: &[u8]) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    let c: Config = serde_json::from_slice(config).context("parsing the image config")?;
    Ok(c.rootfs.diff_ids)
}

fn oci_sources(read: &dyn Fn(&str) -> Result<Vec<u8>>) -> Result<Vec<Source>> {
    let index: OciIndex =
        serde_json::from_slice(&read("index.json")?).context("parsing index.json")?;
    let blob = |digest: &str| {
        blob_path(Path::new(""), digest)
            .to_string_lossy()
            .into_owned()
    };
    let mut out = Vec::new();
    for desc in index.manifests {
        let name = desc
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| desc.annotations.get("org.opencontainers.image.ref.name"))
            .cloned();
        let mut digest = desc.digest.clone();
        if desc.media_type.contains("index") || desc.media_type.contains("manifest.list") {
            let nested: serde_json::Value = serde_json::from_slice(&read(&blob(&digest))?)?;
            let entries: Vec<oci_client::manifest::ImageIndexEntry> =
                serde_json::from_value(nested["manifests"].clone()).unwrap_or_default();
            let Some(d) = super::registry::pick_platform(&entries, super::registry::node_arch())
                .or_else(|| entries.first().map(|e| e.digest.clone()))
            else {
                continue;
            };
            digest = d;
        }
        let manifest: OciManifest =
            serde_json::from_slice(&read(&blob(&digest))?).context("parsing an image manifest")?;
        // A bare tag (`v1`, as `skopeo copy oci:DIR:v1` writes) names no repository.
        let refs = name
            .filter(|n| n.contains('/') || n.contains(':'))
            .into_iter()
            .collect();
        out.push(Source {
            config: read(&blob(&manifest.config.digest)).context("reading the image config")?,
            layers: manifest.layers.iter().map(|l| blob(&l.digest)).collect(),
            refs,
        });
    }
    Ok(out)
}

fn docker_sources(read: &dyn Fn(&str) -> Result<Vec<u8>>) -> Result<Vec<Source>> {
    let manifests: Vec<DockerManifest> =
        serde_json::from_slice(&read("manifest.json")?).context("parsing manifest.json")?;
    manifests
        .into_iter()
        .map(|m| {
            Ok(Source {
                config: read(&m.config).context("reading the image config")?,
                layers: m.layers.iter().map(|l| clean(l)).collect(),
                refs: m.repo_tags.unwrap_or_default(),
            })
        })
        .collect()
}

/// Whether a file's first bytes are a layer's: gzip, zstd, or a tar header.
fn looks_like_layer(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.get(257..262) == Some(b"ustar")
}

/// The digest a blob's name gives (`blobs/sha256/<hex>`, podman's `<hex>.tar`).
fn digest_in_name(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let hex = name.strip_suffix(".tar").unwrap_or(name);
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// A path in an archive without `./` and empty components.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// A symlink's target relative to the link's directory.
fn join_relative(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return clean(target);
    }
    let dir = link.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    clean(&format!("{dir}/{target}"))
}

/// Docker and Podman, the engines an image may be loaded from by name.
pub const ENGINES: [&str; 2] = ["docker", "podman"];

/// What an engine says of an image (`<engine> image inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineImage {
    /// `docker` or `podman`.
    pub engine: String,
    /// Its ID (the config's digest for Podman and Docker's classic store).
    pub id: String,
    /// Its layers' diff IDs.
    pub layers: Vec<String>,
    /// Its names, as the engine writes them.
    pub repo_tags: Vec<String>,
}

/// Finds the engine that has `name`: Docker first, then Podman. The error says what
/// each engine answered (not installed, daemon down, no such image).
pub fn find_in_engines(name: &str) -> Result<EngineImage> {
    let mut answers = Vec::new();
    for engine in ENGINES {
        let out = Command::new(engine)
            .args(["image", "inspect", name])
            .stdin(Stdio::null())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                answers.push(format!("{engine}: not installed"));
                continue;
            }
            Err(e) => {
                answers.push(format!("{engine}: {e}"));
                continue;
            }
        };
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            answers.push(format!(
                "{engine}: {}",
                if err.is_empty() { "no such image" } else { err }
            ));
            continue;
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Inspect {
            id: String,
            #[serde(default, rename = "RootFS")]
            root_fs: Option<RootFs>,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct RootFs {
            #[serde(default)]
            layers: Vec<String>,
        }
        // Both print a JSON array of the images the name matches.
        let parsed: Vec<Inspect> = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("parsing `{engine} image inspect {name}`"))?;
        let Some(parsed) = parsed.into_iter().next() else {
            answers.push(format!("{engine}: no such image"));
            continue;
        };
        let id = if parsed.id.contains(':') {
            parsed.id
        } else {
            format!("sha256:{}", parsed.id)
        };
        return Ok(EngineImage {
            engine: engine.to_string(),
            id,
            layers: parsed.root_fs.map(|r| r.layers).unwrap_or_default(),
            repo_tags: parsed.repo_tags.unwrap_or_default(),
        });
    }
    bail!(
        "image {name:?} is neither a file nor an image of Docker or Podman ({})",
        answers.join("; ")
    )
}

/// Loads `name` from a running Docker or Podman onto the nodes, as `kind load
/// docker-image` does: `<engine> image save` streamed straight into the stores (no
/// file in between). Nodes that have the image already (its ID and every layer) are
/// only given the name; when all have it, nothing is saved.
pub fn load_from_engine(data_dirs: &[PathBuf], name: &str) -> Result<(EngineImage, Vec<Loaded>)> {
    let found = find_in_engines(name)?;
    let stores = stores(data_dirs)?;
    let has_all = |s: &ImageStore| {
        !found.layers.is_empty()
            && found.layers.iter().all(|l| s.layers.has(l))
            && s.has_image(&found.id)
    };
    if stores.iter().all(has_all) {
        let refs = engine_refs(&found.repo_tags, name);
        let _held = hold(&stores)?;
        let mut out = Vec::new();
        for s in &stores {
            s.tag(&found.id, &refs)?;
            out.push(Loaded {
                data_dir: s.dir().parent().unwrap_or(Path::new("/")).to_path_buf(),
                references: refs.iter().map(|r| reference::normalize(r)).collect(),
                new_layers: 0,
            });
        }
        return Ok((found, out));
    }
    let mut child = Command::new(&found.engine)
        .args(["image", "save", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} image save", found.engine))?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let loaded = load_stream(data_dirs, &mut stdout);
    // The archive's reader stops at its last entry: the rest (tar's end blocks) is read
    // here, so that the engine does not die of SIGPIPE writing it, with no message.
    let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    drop(stdout);
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {} image save", found.engine))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let why = if stderr.is_empty() {
            out.status.to_string()
        } else {
            stderr
        };
        bail!("{} image save {name}: {why}", found.engine);
    }
    let loaded = loaded.with_context(|| format!("loading {name} from {}", found.engine))?;
    Ok((found, loaded))
}

/// The names of an engine's image (its `RepoTags`) that `name` picks: the one it
/// names, as the engine writes it (Podman puts `localhost/` before a bare name).
fn engine_refs(tags: &[String], name: &str) -> Vec<String> {
    let wanted = reference::normalize(name);
    let picked: Vec<String> = tags
        .iter()
        .filter(|t| reference::normalize(t) == wanted || t.ends_with(&format!("/{name}")))
        .cloned()
        .collect();
    if picked.is_empty() {
        tags.to_vec()
    } else {
        picked
    }
}
