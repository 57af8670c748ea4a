//! The node's image store under `<data>/images/`: the built-in images (`httpd`,
//! `busybox`, `skiff`) made lazily from local binaries, images imported from OCI or
//! docker-archive tarballs, and images pulled from registries (`containers::registry`).
//! Each image is a directory `<id hex>/` with `image.json` (its config) and either an
//! unpacked `rootfs/` (built-in and imported images) or the list of its layers, each
//! unpacked once in the shared [`LayerStore`] (pulled images); `refs.json` maps
//! normalized references to IDs.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layers::{dir_size, LayerStore};
use super::reference;

/// Where Debian's busybox-static lives; the built-in images are made from it.
const BUSYBOX: &str = "/bin/busybox";
/// The page the built-in httpd serves, as Apache's default.
pub const HTTPD_PAGE: &str = "<html><body><h1>It works!</h1></body></html>\n";

/// The parts of an image's config that decide how its containers run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    /// ENTRYPOINT.
    pub entrypoint: Vec<String>,
    /// CMD.
    pub cmd: Vec<String>,
    /// ENV (`KEY=value`).
    pub env: Vec<String>,
    /// WORKDIR.
    pub working_dir: String,
    /// USER.
    pub user: String,
}

/// What `image.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    config: ImageConfig,
    builtin: bool,
    /// The diff IDs of its layers in the layer store, bottom first (a pulled image);
    /// empty for an image with its own `rootfs/`.
    #[serde(default)]
    layers: Vec<String>,
    /// Bytes of its blobs as the registry served them (a pulled image).
    #[serde(default)]
    size: u64,
    /// `repo@sha256:<manifest digest>` of each registry it was pulled from.
    #[serde(default)]
    repo_digests: Vec<String>,
    /// Loaded from an archive (`skiff image load`): never pulled again.
    #[serde(default)]
    loaded: bool,
}

/// An image ready to be used as a container's lower layer.
#[derive(Debug, Clone)]
pub struct Image {
    /// Image ID, `sha256:<hex>`.
    pub id: String,
    /// The normalized reference it was found under.
    pub reference: String,
    /// Its root filesystem as overlay lower dirs, topmost first: its layers in the
    /// layer store, or its one unpacked `rootfs/`.
    pub lowers: Vec<PathBuf>,
    /// How its containers run by default.
    pub config: ImageConfig,
    /// Pulled from a registry (not built in or imported), so `imagePullPolicy: Always`
    /// pulls it again.
    pub pulled: bool,
    /// Bytes of the image as its registry served it (0 if not pulled).
    pub size: u64,
}

impl Image {
    /// Reads a file of the image's root filesystem (`etc/passwd`), as the container
    /// would see it.
    pub fn read_file(&self, rel: &str) -> Option<Vec<u8>> {
        super::layers::read_file(&self.lowers, rel)
    }
}

/// One line of `skiff image ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image ID, `sha256:<hex>`.
    pub id: String,
    /// Normalized references naming it.
    pub repo_tags: Vec<String>,
    /// Bytes on disk of its rootfs (0 for a built-in not made yet).
    pub size: u64,
    /// Built from local binaries rather than imported.
    pub builtin: bool,
    /// `repo@sha256:<manifest digest>` for a pulled image.
    pub repo_digests: Vec<String>,
}

/// The image store of one agent.
#[derive(Debug)]
pub struct ImageStore {
    dir: PathBuf,
    /// The unpacked layers of pulled images.
    pub layers: LayerStore,
    skiff_binary: PathBuf,
    /// Serializes building and importing within this process.
    lock: Mutex<()>,
    /// The in-process half of [`ImageStore::exclusive`].
    changes: Mutex<()>,
    /// When each image was last resolved for a container: an image between its
    /// resolution and its container's start is in use for the garbage collector.
    resolved: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// One lock per built-in image being built: a second caller waits for the first
    /// build instead of making its own.
    builds: Mutex<std::collections::HashMap<String, Arc<Mutex<()>>>>,
}

impl ImageStore {
    /// The store under `<data_dir>/images`; `skiff_binary` is what the `skiff` image holds.
    pub fn new(data_dir: &Path, skiff_binary: &Path) -> Self {
        ImageStore {
            dir: data_dir.join("images"),
            layers: LayerStore::new(&data_dir.join("images")),
            skiff_binary: skiff_binary.to_path_buf(),
            lock: Mutex::new(()),
            changes: Mutex::new(()),
            resolved: Mutex::new(Default::default()),
            builds: Mutex::new(Default::default()),
        }
    }

    /// Removes what a build or unpack cut short left (at start, before any is running).
    pub fn remove_partial(&self) {
        self.layers.remove_partial();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(BUILD_PREFIX) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Finds an image: an imported one under this reference first, then a built-in (made
    /// now if needed). None if the store has no such image.
    pub fn resolve(&self, image: &str) -> Result<Option<Image>> {
        let reference = reference::normalize(image);
        {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            let refs = read_refs(&self.dir)?;
            if let Some(id) = refs.get(&reference) {
                let hex = id.trim_start_matches("sha256:");
                let stored = read_stored(&self.dir.join(hex))?;
                // A pulled image whose layers went away (removed by hand) is not present.
                if !stored.layers.iter().all(|l| self.layers.has(l)) {
                    return Ok(None);
                }
                return Ok(Some(self.image(id, reference, stored)));
            }
        }
        // A built-in image is made outside the store's lock, under its own, so building
        // one holds back no other image's lookup.
        let Some(name) = reference::builtin(image) else {
            return Ok(None);
        };
        let (config, id) = builtin_config(name, &self.skiff_binary)?;
        let hex = id.trim_start_matches("sha256:").to_string();
        let dir = self.dir.join(&hex);
        if !dir.join("image.json").exists() {
            let build = self
                .builds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(hex.clone())
                .or_default()
                .clone();
            let _building = build.lock().unwrap_or_else(|e| e.into_inner());
            if !dir.join("image.json").exists() {
                build_builtin(&self.dir, &hex, name, &config, &self.skiff_binary)
                    .with_context(|| format!("building the built-in image {name}"))?;
            }
        }
        Ok(Some(Image {
            id,
            reference,
            lowers: vec![dir.join("rootfs")],
            config,
            pulled: false,
            size: 0,
        }))
    }

    fn image(&self, id: &str, reference: String, stored: Stored) -> Image {
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), std::time::Instant::now());
        let hex = id.trim_start_matches("sha256:");
        let lowers = if stored.layers.is_empty() {
            vec![self.dir.join(hex).join("rootfs")]
        } else {
            stored
                .layers
                .iter()
                .rev()
                .map(|l| self.layers.path(l))
                .collect()
        };
        Image {
            id: id.to_string(),
            reference,
            lowers,
            config: stored.config,
            pulled: !stored.layers.is_empty() && !stored.loaded,
            size: stored.size,
        }
    }

    /// Records an image pulled from a registry whose layers (`diff_ids`, bottom first)
    /// are all in the layer store, under `references` (normalized here); returns it.
    /// The caller holds [`ImageStore::exclusive`].
    pub fn record_pulled(
        &self,
        config_blob: &[u8],
        diff_ids: &[String],
        size: u64,
        references: &[String],
        repo_digest: &str,
    ) -> Result<Image> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let hex = format!("{:x}", Sha256::digest(config_blob));
        let id = format!("sha256:{hex}");
        let dir = self.dir.join(&hex);
        let mut repo_digests = read_stored(&dir)
            .map(|s| s.repo_digests)
            .unwrap_or_default();
        if !repo_digest.is_empty() && !repo_digests.iter().any(|d| d == repo_digest) {
            repo_digests.push(repo_digest.to_string());
        }
        let stored = Stored {
            config: parse_config(config_blob)?,
            builtin: false,
            layers: diff_ids.to_vec(),
            size,
            repo_digests,
            loaded: false,
        };
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".image.json.{}", uuid::Uuid::new_v4().simple()));
        fs::write(&tmp, serde_json::to_vec_pretty(&stored)?)?;
        fs::rename(&tmp, dir.join("image.json")).context("writing image.json")?;
        let mut all = read_refs(&self.dir)?;
        for r in references {
            all.insert(reference::normalize(r), id.clone());
        }
        write_refs(&self.dir, &all)?;
        let reference = references
            .first()
            .map(|r| reference::normalize(r))
            .unwrap_or_default();
        Ok(self.image(&id, reference, stored))
    }

    /// Records an image loaded from an archive whose layers are in the layer store: as
    /// a pulled one, but local (never pulled again) and with no registry digest. The
    /// caller holds [`ImageStore::exclusive`].
    pub fn record_layered(
        &self,
        config_blob: &[u8],
        diff_ids: &[String],
        size: u64,
        references: &[String],
    ) -> Result<Image> {
        let mut image = self.record_pulled(config_blob, diff_ids, size, references, "")?;
        image.pulled = false;
        let dir = self.dir.join(image.id.trim_start_matches("sha256:"));
        let mut stored = read_stored(&dir)?;
        stored.loaded = true;
        fs::write(dir.join("image.json"), serde_json::to_vec_pretty(&stored)?)?;
        Ok(image)
    }

    /// Every image the store holds (built-ins once made), for the Node's
    /// `status.images`.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        list(self.dir.parent().unwrap_or(Path::new("/")))
    }

    /// The images resolved within the last `within` (and so perhaps about to be a
    /// container's).
    pub fn recently_resolved(&self, within: std::time::Duration) -> Vec<String> {
        let mut map = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, at| at.elapsed() < within);
        map.keys().cloned().collect()
    }

    /// The store's directory (`<data>/images`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The images that may be removed (every image but the built-ins), with their
    /// layers and own bytes, for the image garbage collector.
    pub fn entries(&self) -> Result<Vec<StoreEntry>> {
        let refs = read_refs(&self.dir)?;
        let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (r, id) in refs {
            by_id.entry(id).or_default().push(r);
        }
        let mut out = Vec::new();
        for (id, references) in by_id {
            let dir = self.dir.join(id.trim_start_matches("sha256:"));
            let Ok(stored) = read_stored(&dir) else {
                continue;
            };
            if stored.builtin {
                continue;
            }
            let own_bytes = if stored.layers.is_empty() {
                dir_size(&dir.join("rootfs"))
            } else {
                0
            };
            out.push(StoreEntry {
                id,
                references,
                layers: stored.layers,
                own_bytes,
            });
        }
        Ok(out)
    }

    /// The ID of the image a reference, an image ID (`sha256:<hex>`) or a prefix of at
    /// least 4 hex digits of one names (as crictl takes them); built-ins included.
    pub fn find(&self, name: &str) -> Result<Option<String>> {
        let refs = read_refs(&self.dir)?;
        if let Some(id) = refs.get(&reference::normalize(name)) {
            return Ok(Some(id.clone()));
        }
        let hex = name.trim_start_matches("sha256:");
        if hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut ids: Vec<&String> = refs
                .values()
                .filter(|id| id.trim_start_matches("sha256:").starts_with(hex))
                .collect();
            ids.sort();
            ids.dedup();
            if let [id] = ids[..] {
                return Ok(Some(id.clone()));
            }
        }
        if let Some(b) = reference::builtin(name) {
            let (_, id) = builtin_config(b, &self.skiff_binary)?;
            return Ok(Some(id));
        }
        Ok(None)
    }

    /// Removes an image: every reference to it, its directory, and the layers no
    /// remaining image has (each renamed out of `sha256/` first, so no half-removed
    /// layer is ever seen). Returns the bytes that freed. Built-in images are refused.
    /// The caller holds [`ImageStore::exclusive`].
    pub fn remove(&self, id: &str) -> Result<u64> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let hex = id.trim_start_matches("sha256:");
        let dir = self.dir.join(hex);
        let stored = read_stored(&dir).ok();
        if stored.as_ref().is_some_and(|s| s.builtin) {
            bail!("{id} is a built-in image");
        }
        let mut refs = read_refs(&self.dir)?;
        refs.retain(|_, v| v != id);
        write_refs(&self.dir, &refs)?;
        let mut freed = dir_size(&dir);
        remove_any(&dir);
        let Some(stored) = stored else {
            return Ok(freed);
        };
        // The layers the remaining images still have.
        let mut kept = std::collections::HashSet::new();
        for other in refs.values() {
            if let Ok(s) = read_stored(&self.dir.join(other.trim_start_matches("sha256:"))) {
                kept.extend(s.layers);
            }
        }
        for layer in stored.layers.iter().filter(|l| !kept.contains(*l)) {
            freed += self.layers.remove(layer)?;
        }
        Ok(freed)
    }

    /// The layers the recorded images have.
    pub fn layers_in_use(&self) -> Result<std::collections::HashSet<String>> {
        let mut used = std::collections::HashSet::new();
        for id in read_refs(&self.dir)?.values() {
            if let Ok(s) = read_stored(&self.dir.join(id.trim_start_matches("sha256:"))) {
                used.extend(s.layers);
            }
        }
        Ok(used)
    }

    /// Whether the store has this image (its record and every layer).
    pub fn has_image(&self, id: &str) -> bool {
        read_stored(&self.dir.join(id.trim_start_matches("sha256:")))
            .is_ok_and(|s| s.layers.iter().all(|l| self.layers.has(l)))
    }

    /// Gives an image the store has more names (the caller holds
    /// [`ImageStore::exclusive`]).
    pub fn tag(&self, id: &str, references: &[String]) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = read_refs(&self.dir)?;
        for r in references {
            all.insert(reference::normalize(r), id.to_string());
        }
        write_refs(&self.dir, &all)
    }

    /// Holds the store for a change of its images (recording, tagging or removing
    /// them, a whole load, a whole garbage collection pass) against other changes in
    /// this process and in others (`skiff image load`/`rm` beside the agent): an
    /// in-process mutex and a `flock` on `<images>/.lock`. Not re-entrant: the record,
    /// tag and remove methods expect their caller to hold it.
    pub fn exclusive(&self) -> Result<StoreLock<'_>> {
        let guard = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let flock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))?;
        Ok(StoreLock {
            _flock: flock,
            _guard: guard,
        })
    }
}

/// What [`ImageStore::exclusive`] holds until dropped.
pub struct StoreLock<'a> {
    _flock: nix::fcntl::Flock<fs::File>,
    _guard: std::sync::MutexGuard<'a, ()>,
}

/// An image [`ImageStore::entries`] lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    /// Image ID, `sha256:<hex>`.
    pub id: String,
    /// The normalized references naming it.
    pub references: Vec<String>,
    /// Its layers' diff IDs, bottom first (none for an image with its own rootfs).
    pub layers: Vec<String>,
    /// Bytes of its own `rootfs/` (an imported image).
    pub own_bytes: u64,
}

/// The file in a container's bundle that names its image ID.
pub const BUNDLE_IMAGE_FILE: &str = "image";

/// The images the containers on a node use, running or exited but not removed: each
/// container's bundle (`<data>/pods/<uid>/containers/<name>-<n>/`) names its image in
/// [`BUNDLE_IMAGE_FILE`]. Maps image ID → one container's ID.
pub fn in_use(data_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(pods) = fs::read_dir(data_dir.join("pods")) else {
        return out;
    };
    for pod in pods.flatten() {
        let Ok(containers) = fs::read_dir(pod.path().join("containers")) else {
            continue;
        };
        for c in containers.flatten() {
            if let Ok(id) = fs::read_to_string(c.path().join(BUNDLE_IMAGE_FILE)) {
                let container = format!(
                    "{}-{}",
                    pod.file_name().to_string_lossy(),
                    c.file_name().to_string_lossy()
                );
                out.entry(id.trim().to_string()).or_insert(container);
            }
        }
    }
    out
}

/// The config of an OCI/Docker image config blob, as its containers run.
pub fn parse_config(config_blob: &[u8]) -> Result<ImageConfig> {
    let parsed: ConfigFile =
        serde_json::from_slice(config_blob).context("parsing the image config")?;
    let inner = parsed.config.unwrap_or_default();
    Ok(ImageConfig {
        entrypoint: inner.entrypoint.unwrap_or_default(),
        cmd: inner.cmd.unwrap_or_default(),
        env: inner.env.unwrap_or_default(),
        working_dir: inner.working_dir.unwrap_or_default(),
        user: inner.user.unwrap_or_default(),
    })
}

/// The config and ID of a built-in image. The ID covers the source binary's size and
/// modification time, so a new skiff or busybox gives a new image.
fn builtin_config(name: &str, skiff_binary: &Path) -> Result<(ImageConfig, String)> {
    let src = if name == "skiff" {
        skiff_binary
    } else {
        Path::new(BUSYBOX)
    };
    let meta = fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let path_env = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string();
    let config = match name {
        // busybox httpd ignores SIGTERM as PID 1 (no handler), whereas Apache's image
        // stops at once on it: a shell that traps TERM gives the same behaviour.
        "httpd" => ImageConfig {
            cmd: [
                "sh",
                "-c",
                "trap 'exit 0' TERM; httpd -f -v -p 80 -h /var/www & wait",
            ]
            .map(String::from)
            .to_vec(),
            env: vec![path_env],
            working_dir: "/".into(),
            ..Default::default()
        },
        "busybox" => ImageConfig {
            cmd: vec!["sh".into()],
            env: vec![path_env],
            ..Default::default()
        },
        _ => ImageConfig {
            entrypoint: vec!["/usr/local/bin/skiff".into()],
            env: vec![path_env],
            ..Default::default()
        },
    };
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&config)?);
    h.update(format!("builtin:{name}:{}:{:?}", meta.len(), mtime).as_bytes());
    Ok((config, format!("sha256:{:x}", h.finalize())))
}

/// Makes a built-in image's directory: built in a temporary directory, then renamed, so
/// a half-made image is never seen.
fn build_builtin(
    images: &Path,
    hex: &str,
    name: &str,
    config: &ImageConfig,
    skiff: &Path,
) -> Result<()> {
    let tmp = build_dir(images, hex);
    let rootfs = tmp.join("rootfs");
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/local/bin",
        "etc",
        "root",
        "proc",
        "sys",
        "dev",
        "var/www",
        "home",
    ] {
        fs::create_dir_all(rootfs.join(d))
            .with_context(|| format!("creating {d} in the rootfs"))?;
    }
    fs::create_dir_all(rootfs.join("tmp"))?;
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnobody:x:65534:\n")?;
    if name == "skiff" {
        link_or_copy(skiff, &rootfs.join("usr/local/bin/skiff"))?;
        for lib in shared_libraries(skiff)? {
            let rel = lib.strip_prefix("/").unwrap_or(&lib);
            let dst = rootfs.join(rel);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(&lib, &dst).with_context(|| format!("copying {}", lib.display()))?;
        }
    } else {
        // A copy of its own, whose applets are hard links to it, as in Docker's busybox
        // image: a link allocates no inode, and on a filesystem without a journal
        // (ext4 then skips recently deleted inodes one by one) each of some 270
        // symlinks cost about a millisecond, more than the rest of a node's start.
        let busybox = rootfs.join("bin/busybox");
        fs::copy(BUSYBOX, &busybox).with_context(|| format!("copying {BUSYBOX}"))?;
        let out = Command::new(BUSYBOX)
            .arg("--list-full")
            .output()
            .context("running busybox --list-full")?;
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let applet = applet.trim();
            if applet.is_empty() || applet == "bin/busybox" {
                continue;
            }
            let dst = rootfs.join(applet);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            if dst.symlink_metadata().is_err() {
                fs::hard_link(&busybox, &dst).with_context(|| format!("linking {applet}"))?;
            }
        }
        fs::write(rootfs.join("var/www/index.html"), HTTPD_PAGE)?;
    }
    let stored = Stored {
        config: config.clone(),
        builtin: true,
        layers: Vec::new(),
        size: 0,
        repo_digests: Vec::new(),
        loaded: false,
    };
    fs::write(tmp.join("image.json"), serde_json::to_vec_pretty(&stored)?)?;
    let dst = images.join(hex);
    match fs::rename(&tmp, &dst) {
        Ok(()) => Ok(()),
        // Another process made it first.
        Err(_) if dst.join("image.json").exists() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("moving the image into {}", dst.display())),
    }
}

/// The name prefix of an image directory being made (removed at start if left over).
const BUILD_PREFIX: &str = ".tmp-";

/// A new directory name under `images` to make image `hex` in before its rename into
/// place: unique to the call, so that two builds never share one.
fn build_dir(images: &Path, hex: &str) -> PathBuf {
    images.join(format!(
        "{BUILD_PREFIX}{hex}-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    if fs::hard_link(src, dst).is_err() {
        fs::copy(src, dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    }
    Ok(())
}

/// The shared libraries `ldd` lists for a binary (none for a static one).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn read_refs(images: &Path) -> Result<BTreeMap<String, String>> {
    match fs::read(images.join("refs.json")) {
        Ok(b) => serde_json::from_slice(&b).context("parsing refs.json"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).context("reading refs.json"),
    }
}

fn write_refs(images: &Path, refs: &BTreeMap<String, String>) -> Result<()> {
    let tmp = images.join(format!(".refs.json.{}", uuid::Uuid::new_v4().simple()));
    fs::write(&tmp, serde_json::to_vec_pretty(refs)?)?;
    fs::rename(&tmp, images.join("refs.json")).context("writing refs.json")
}

fn read_stored(dir: &Path) -> Result<Stored> {
    let b = fs::read(dir.join("image.json"))
        .with_context(|| format!("reading {}/image.json", dir.display()))?;
    serde_json::from_slice(&b).context("parsing image.json")
}

/// Lists the images of the store under `data_dir`: imported ones and the built-ins
/// (which are always available; their size is 0 until first used).
pub fn list(data_dir: &Path) -> Result<Vec<ImageInfo>> {
    let images = data_dir.join("images");
    let refs = read_refs(&images)?;
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (r, id) in refs {
        by_id.entry(id).or_default().push(r);
    }
    let layers = LayerStore::new(&images);
    let mut out: Vec<ImageInfo> = by_id
        .into_iter()
        .map(|(id, repo_tags)| {
            let dir = images.join(id.trim_start_matches("sha256:"));
            let stored = read_stored(&dir).ok();
            let (size, repo_digests) = match stored {
                Some(s) if !s.layers.is_empty() => (
                    s.layers.iter().map(|l| layers.size(l)).sum(),
                    s.repo_digests,
                ),
                _ => (dir_size(&dir.join("rootfs")), Vec::new()),
            };
            let repo_tags = repo_tags.into_iter().filter(|r| !r.contains('@')).collect();
            ImageInfo {
                id,
                repo_tags,
                size,
                builtin: false,
                repo_digests,
            }
        })
        .collect();
    let skiff = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/skiff"));
    for name in reference::BUILTINS {
        if let Ok((_, id)) = builtin_config(name, &skiff) {
            let size = dir_size(&images.join(id.trim_start_matches("sha256:")).join("rootfs"));
            out.push(ImageInfo {
                id,
                repo_tags: vec![reference::normalize(name)],
                size,
                builtin: true,
                repo_digests: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// Imports an OCI image layout or docker-archive tarball (optionally gzipped) into the
/// store under `data_dir`; returns the references it now answers to.
pub fn import(data_dir: &Path, tarball: &Path) -> Result<Vec<String>> {
    let images = data_dir.join("images");
    fs::create_dir_all(&images).with_context(|| format!("creating {}", images.display()))?;
    let work = images.join(format!(".import-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let result = (|| {
        let mut archive = tar::Archive::new(open_maybe_gzip(tarball)?);
        archive
            .unpack(&work)
            .with_context(|| format!("unpacking {}", tarball.display()))?;
        if work.join("index.json").exists() {
            import_oci(&images, &work)
        } else if work.join("manifest.json").exists() {
            import_docker(&images, &work)
        } else {
            bail!(
                "{} is neither an OCI image layout nor a docker archive",
                tarball.display()
            )
        }
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

pub(super) fn open_maybe_gzip(path: &Path) -> Result<Box<dyn Read>> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = fs::File::open(path)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

/// The parts of an OCI/Docker image config we read.
#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ConfigInner>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigInner {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// Stores one image from its config blob and layer files; returns its ID.
fn store_image(
    images: &Path,
    config_blob: &[u8],
    layers: &[PathBuf],
    refs: &[String],
) -> Result<String> {
    let hex = format!("{:x}", Sha256::digest(config_blob));
    let id = format!("sha256:{hex}");
    let config = parse_config(config_blob)?;
    let dir = images.join(&hex);
    if !dir.join("image.json").exists() {
        let tmp = build_dir(images, &hex);
        let rootfs = tmp.join("rootfs");
        fs::create_dir_all(&rootfs)?;
        for layer in layers {
            apply_layer(open_maybe_gzip(layer)?, &rootfs)
                .with_context(|| format!("applying layer {}", layer.display()))?;
        }
        fs::write(
            tmp.join("image.json"),
            serde_json::to_vec_pretty(&Stored {
                config,
                builtin: false,
                layers: Vec::new(),
                size: 0,
                repo_digests: Vec::new(),
                loaded: false,
            })?,
        )?;
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&tmp, &dir)?;
    }
    let mut all = read_refs(images)?;
    for r in refs {
        all.insert(reference::normalize(r), id.clone());
    }
    write_refs(images, &all)?;
    Ok(id)
}

/// Unpacks one layer tarball over a rootfs, honouring OCI whiteouts (`.wh.NAME` removes
/// NAME, `.wh..wh..opq` empties its directory).
pub fn apply_layer(reader: impl Read, rootfs: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = rootfs.join(path.parent().unwrap_or(Path::new("")));
        if name == ".wh..wh..opq" {
            if let Ok(rd) = fs::read_dir(&parent) {
                for e in rd.flatten() {
                    remove_any(&e.path());
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            remove_any(&parent.join(hidden));
            continue;
        }
        let target = rootfs.join(&path);
        if let Ok(meta) = target.symlink_metadata() {
            if !(meta.is_dir() && entry.header().entry_type().is_dir()) {
                remove_any(&target);
            }
        }
        entry
            .unpack_in(rootfs)
            .with_context(|| format!("unpacking {}", path.display()))?;
    }
    Ok(())
}

fn remove_any(p: &Path) {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

pub(super) fn blob_path(root: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    root.join("blobs").join(alg).join(hex)
}

#[derive(Deserialize)]
pub(super) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub(super) media_type: String,
    pub(super) digest: String,
    #[serde(default)]
    pub(super) annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
pub(super) struct OciIndex {
    pub(super) manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
pub(super) struct OciManifest {
    pub(super) config: Descriptor,
    pub(super) layers: Vec<Descriptor>,
}

fn import_oci(images: &Path, root: &Path) -> Result<Vec<String>> {
    let index: OciIndex = serde_json::from_slice(&fs::read(root.join("index.json"))?)
        .context("parsing index.json")?;
    let mut names = Vec::new();
    for desc in index.manifests {
        let name = desc
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| desc.annotations.get("org.opencontainers.image.ref.name"))
            .cloned();
        let mut manifest_desc = desc;
        // A nested index (multi-platform): take the linux/amd64 or first manifest.
        if manifest_desc.media_type.contains("index")
            || manifest_desc.media_type.contains("manifest.list")
        {
            let nested: OciIndex =
                serde_json::from_slice(&fs::read(blob_path(root, &manifest_desc.digest))?)?;
            let Some(first) = nested.manifests.into_iter().next() else {
                continue;
            };
            manifest_desc = first;
        }
        let manifest: OciManifest =
            serde_json::from_slice(&fs::read(blob_path(root, &manifest_desc.digest))?)
                .context("parsing an image manifest")?;
        let config = fs::read(blob_path(root, &manifest.config.digest))
            .context("reading the image config")?;
        let layers: Vec<PathBuf> = manifest
            .layers
            .iter()
            .map(|l| blob_path(root, &l.digest))
            .collect();
        let refs: Vec<String> = name.into_iter().collect();
        let id = store_image(images, &config, &layers, &refs)?;
        if refs.is_empty() {
            names.push(id);
        } else {
            names.extend(refs.iter().map(|r| reference::normalize(r)));
        }
    }
    Ok(names)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DockerManifest {
    pub(super) config: String,
    #[serde(default)]
    pub(super) repo_tags: Option<Vec<String>>,
    pub(super) layers: Vec<String>,
}

fn import_docker(images: &Path, root: &Path) -> Result<Vec<String>> {
    let manifests: Vec<DockerManifest> =
        serde_json::from_slice(&fs::read(root.join("manifest.json"))?)
            .context("parsing manifest.json")?;
    let mut names = Vec::new();
    for m in manifests {
        let config = fs::read(root.join(&m.config)).context("reading the image config")?;
        let layers: Vec<PathBuf> = m.layers.iter().map(|l| root.join(l)).collect();
        let refs = m.repo_tags.unwrap_or_default();
        let id = store_image(images, &config, &layers, &refs)?;
        if refs.is_empty() {
            names.push(id);
        } else {
            names.extend(refs.iter().map(|r| reference::normalize(r)));
        }
    }
    Ok(names)
}

pub use super::load::{load, load_from_engine, load_stream, Loaded};

#[cfg(test)]
mod tests {
    use super::*;

    use crate::containers::layers::tests::tar_of as layer;

    #[test]
    fn whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        apply_layer(
            &layer(&[
                ("a/", None),
                ("a/x", Some(b"1")),
                ("a/y", Some(b"2")),
                ("b", Some(b"3")),
            ])[..],
            root,
        )
        .unwrap();
        apply_layer(
            &layer(&[
                ("a/.wh..wh..opq", Some(b"")),
                ("a/z", Some(b"4")),
                (".wh.b", Some(b"")),
            ])[..],
            root,
        )
        .unwrap();
        assert!(!root.join("a/x").exists());
        assert!(root.join("a/z").exists());
        assert!(!root.join("b").exists());
    }

    /// The agent builds the built-in images at start while the first pods ask for them:
    /// every caller gets a whole image, built once.
    #[test]
    fn concurrent_resolves_build_a_builtin_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path(), Path::new(BUSYBOX));
        let images: Vec<Image> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| store.resolve("busybox").unwrap().unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for img in &images {
            assert_eq!(img.id, images[0].id);
            assert!(img.lowers[0].join("bin/sh").exists());
        }
        let entries: Vec<String> = fs::read_dir(dir.path().join("images"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }

    #[test]
    fn imports_docker_archive_and_builds_builtins() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let layer_tar = layer(&[("etc/", None), ("etc/motd", Some(b"hello\n"))]);
        let config = br#"{"config":{"Cmd":["cat","/etc/motd"],"Env":["A=b"]}}"#;
        let manifest =
            br#"[{"Config":"c.json","RepoTags":["example.com/motd:v1"],"Layers":["l/layer.tar"]}]"#;
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in [
            ("manifest.json", &manifest[..]),
            ("c.json", &config[..]),
            ("l/layer.tar", &layer_tar[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            b.append_data(&mut h, p, d).unwrap();
        }
        let tarball = dir.path().join("img.tar");
        fs::write(&tarball, b.into_inner().unwrap()).unwrap();
        assert_eq!(
            import(&data, &tarball).unwrap(),
            vec!["example.com/motd:v1".to_string()]
        );
        let store = ImageStore::new(&data, Path::new(BUSYBOX));
        let img = store.resolve("example.com/motd:v1").unwrap().unwrap();
        assert_eq!(img.config.cmd, vec!["cat", "/etc/motd"]);
        assert_eq!(img.read_file("etc/motd").unwrap(), b"hello\n");
        assert!(store.resolve("nginx").unwrap().is_none());
        let httpd = store.resolve("httpd:2.4").unwrap().unwrap();
        assert_eq!(
            String::from_utf8(httpd.read_file("var/www/index.html").unwrap()).unwrap(),
            HTTPD_PAGE
        );
        // Applets are hard links to the image's own busybox.
        use std::os::unix::fs::MetadataExt;
        let sh = fs::metadata(httpd.lowers[0].join("bin/sh")).unwrap();
        let busybox = fs::metadata(httpd.lowers[0].join("bin/busybox")).unwrap();
        assert_eq!(sh.ino(), busybox.ino());
        assert!(sh.nlink() > 100, "{}", sh.nlink());
        let again = store.resolve("docker.io/library/httpd").unwrap().unwrap();
        assert_eq!(again.id, httpd.id);
        let listed = list(&data).unwrap();
        assert!(listed
            .iter()
            .any(|i| i.repo_tags == vec!["example.com/motd:v1".to_string()]));
        assert!(listed.iter().any(|i| i.builtin && i.id == httpd.id));
    }

    #[test]
    fn loads_onto_nodes_skipping_and_linking_layers() {
        let dir = tempfile::tempdir().unwrap();
        let base = layer(&[("etc/", None), ("etc/os", Some(b"test\n"))]);
        let app = layer(&[("app", Some(b"v1"))]);
        let diff = |b: &[u8]| format!("sha256:{:x}", Sha256::digest(b));
        let config = serde_json::to_vec(&serde_json::json!({
            "config": {"Cmd": ["/app"]},
            "rootfs": {"type": "layers", "diff_ids": [diff(&base), diff(&app)]},
        }))
        .unwrap();
        let manifest = br#"[{"Config":"c.json","RepoTags":["example.com/app:v1"],"Layers":["a/layer.tar","b/layer.tar"]}]"#;
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in [
            ("manifest.json", &manifest[..]),
            ("c.json", &config[..]),
            ("a/layer.tar", &base[..]),
            ("b/layer.tar", &app[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            b.append_data(&mut h, p, d).unwrap();
        }
        let archive = dir.path().join("img.tar");
        fs::write(&archive, b.into_inner().unwrap()).unwrap();
        let nodes = vec![dir.path().join("n1"), dir.path().join("n2")];
        let loaded = load(&nodes, &archive).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].references, vec!["example.com/app:v1".to_string()]);
        assert_eq!((loaded[0].new_layers, loaded[1].new_layers), (2, 2));
        let store = ImageStore::new(&nodes[1], Path::new(BUSYBOX));
        let img = store.resolve("example.com/app:v1").unwrap().unwrap();
        assert!(!img.pulled, "a loaded image is never pulled");
        assert_eq!(img.read_file("app").unwrap(), b"v1");
        assert_eq!(img.read_file("etc/os").unwrap(), b"test\n");
        // The second node's layer files are the first's (hard links).
        use std::os::unix::fs::MetadataExt;
        let ino = |n: &Path| {
            fs::metadata(
                n.join("images/layers/sha256")
                    .join(diff(&app).trim_start_matches("sha256:"))
                    .join("app"),
            )
            .unwrap()
            .ino()
        };
        assert_eq!(ino(&nodes[0]), ino(&nodes[1]));
        // Again: nothing new.
        let again = load(&nodes, &archive).unwrap();
        assert_eq!((again[0].new_layers, again[1].new_layers), (0, 0));
        // A layer whose digest is not the config's is refused.
        let bad_config = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": [diff(b"x")]},
        }))
        .unwrap();
        let layout = dir.path().join("bad");
        fs::create_dir_all(&layout).unwrap();
        fs::write(
            layout.join("manifest.json"),
            br#"[{"Config":"c.json","RepoTags":["bad:v1"],"Layers":["l.tar"]}]"#,
        )
        .unwrap();
        fs::write(layout.join("c.json"), bad_config).unwrap();
        fs::write(layout.join("l.tar"), &app).unwrap();
        let err = load(&nodes[..1], &layout).unwrap_err();
        assert!(
            format!("{err:#}").contains("layer digest mismatch"),
            "{err:#}"
        );
    }
}
