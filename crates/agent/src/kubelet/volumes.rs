//! Pod volumes under `<pod dir>/volumes/<name>`: emptyDir (a tmpfs for `medium: Memory`;
//! a disk-backed one's `sizeLimit` enforced by [`over_limit`]), hostPath,
//! persistentVolumeClaim (the bound PersistentVolume's `hostPath` or `local` path),
//! configMap, secret, downwardAPI, projected (with service-account tokens from the
//! TokenRequest API), and the default service-account token volume at
//! `/var/run/secrets/kubernetes.io/serviceaccount`.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use kube::{Api, Client};
use serde_json::json;

use super::env::field_value;
use crate::containers::oci::BindMount;

/// Where the default service-account volume is mounted.
pub const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Name of the volume the agent adds when the pod has no service-account mount.
const DEFAULT_SA_VOLUME: &str = "kube-api-access-skiff";

/// A pod's prepared volumes.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Volume name → directory (or file, for hostPath files) on the node.
    pub paths: HashMap<String, PathBuf>,
    /// Volumes whose content is read-only by nature (configMap, secret, projected...).
    pub readonly: Vec<String>,
    /// Tokens to refresh: (volume directory, token request).
    tokens: Vec<TokenSpec>,
    /// Disk-backed emptyDir volumes with a `sizeLimit`, for the eviction check.
    pub limits: Vec<SizeLimit>,
}

/// A disk-backed emptyDir volume's `sizeLimit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeLimit {
    /// The volume's name.
    pub volume: String,
    /// Its directory on the node.
    pub path: PathBuf,
    /// The limit in bytes.
    pub bytes: u64,
    /// The limit as the pod spec writes it (`1Mi`), for the eviction message.
    pub text: String,
}

/// How long kubelet waits for a pod's volumes before it records `FailedMount`
/// (its `podAttachAndMountTimeout`, 2 min 3 s); the worker keeps retrying after it.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(123);

/// Volumes that cannot be mounted yet (a claim missing or not bound): the worker tries
/// again, and records `FailedMount` once that lasted [`MOUNT_TIMEOUT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// The volumes waited for, in spec order.
    pub volumes: Vec<String>,
    /// Why, one line per volume.
    pub reasons: Vec<String>,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.reasons.join("; "))
    }
}

impl std::error::Error for NotReady {}

impl NotReady {
    /// kubelet's `FailedMount` event message after its wait timed out (Go's `%v` of
    /// the lists: the claims' volumes are not mounted, and failed processing since
    /// their claim is not bound).
    pub fn failed_mount_message(&self) -> String {
        let names = self.volumes.join(" ");
        format!(
            "Unable to attach or mount volumes: unmounted volumes=[{names}], unattached volumes=[], \
             failed to process volumes=[{names}]: timed out waiting for the condition"
        )
    }
}

/// Where a PersistentVolume's data is on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMount {
    /// The directory (or file).
    pub path: PathBuf,
    /// Create the directory if missing (hostPath type `DirectoryOrCreate`).
    pub create: bool,
}

/// Where the claim's volume is, from the claim and its PersistentVolume as the API has
/// them (`None`: not found); `Err` says why the volume cannot be mounted yet, in
/// kubelet's words.
pub fn claim_mount(
    ns: &str,
    claim: &str,
    pvc: Option<&PersistentVolumeClaim>,
    pv: Option<&PersistentVolume>,
) -> std::result::Result<ClaimMount, String> {
    let Some(pvc) = pvc else {
        return Err(format!("persistentvolumeclaim \"{claim}\" not found"));
    };
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if phase != "Bound" || volume.is_empty() {
        return Err(format!(
            "PVC {ns}/{claim} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({volume:?})"
        ));
    }
    let Some(pv) = pv else {
        return Err(format!("persistentvolume \"{volume}\" not found"));
    };
    let spec = pv.spec.as_ref();
    if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        return Ok(ClaimMount {
            path: PathBuf::from(&h.path),
            create: h.type_.as_deref() == Some("DirectoryOrCreate"),
        });
    }
    if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        return Ok(ClaimMount {
            path: PathBuf::from(&l.path),
            create: false,
        });
    }
    Err(format!(
        "persistentvolume \"{volume}\" is neither hostPath nor local: skiff mounts only those"
    ))
}

/// The claims of the pod's `persistentVolumeClaim` volumes, resolved through the API
/// (volume name → where its data is). A claim not yet bound is [`NotReady`].
pub async fn resolve_claims(client: &Client, pod: &Pod) -> Result<HashMap<String, ClaimMount>> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut out = HashMap::new();
    let mut pending = NotReady {
        volumes: Vec::new(),
        reasons: Vec::new(),
    };
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in volumes {
        let Some(src) = &v.persistent_volume_claim else {
            continue;
        };
        let pvc = claims
            .get_opt(&src.claim_name)
            .await
            .with_context(|| format!("reading persistentvolumeclaim {ns}/{}", src.claim_name))?;
        let volume_name = pvc
            .as_ref()
            .and_then(|c| c.spec.as_ref()?.volume_name.clone())
            .filter(|n| !n.is_empty());
        let pv = match &volume_name {
            Some(n) => pvs
                .get_opt(n)
                .await
                .with_context(|| format!("reading persistentvolume {n}"))?,
            None => None,
        };
        match claim_mount(&ns, &src.claim_name, pvc.as_ref(), pv.as_ref()) {
            Ok(m) => {
                out.insert(v.name.clone(), m);
            }
            Err(reason) => {
                pending.volumes.push(v.name.clone());
                pending.reasons.push(reason);
            }
        }
    }
    if !pending.volumes.is_empty() {
        return Err(pending.into());
    }
    Ok(out)
}

/// The size of a `medium: Memory` emptyDir's tmpfs, as kubelet sizes it: the node's
/// allocatable memory, or less: the pod's memory limit, the volume's `sizeLimit`.
pub fn tmpfs_size(
    node_allocatable: u64,
    pod_memory_limit: Option<u64>,
    size_limit: Option<u64>,
) -> u64 {
    [Some(node_allocatable), pod_memory_limit, size_limit]
        .into_iter()
        .flatten()
        .filter(|v| *v > 0)
        .min()
        .unwrap_or(node_allocatable)
}

/// The pod's memory limit (its containers' limits summed, as resourcehelper.PodLimits),
/// if any container sets one.
pub fn pod_memory_limit(pod: &Pod) -> Option<u64> {
    let spec = pod.spec.as_ref()?;
    let limits: Vec<u64> = spec
        .containers
        .iter()
        .filter_map(|c| c.resources.as_ref()?.limits.as_ref()?.get("memory"))
        .filter_map(|q| skiff_api::quantity::parse(&q.0))
        .map(|v| v.ceil() as u64)
        .collect();
    (!limits.is_empty()).then(|| limits.iter().sum())
}

/// The first emptyDir volume whose usage (bytes, from `usage`) exceeds its `sizeLimit`,
/// as kubelet's eviction manager words it (`emptyDirMessageFmt`, with its trailing
/// space).
pub fn over_limit(limits: &[SizeLimit], usage: impl Fn(&Path) -> u64) -> Option<String> {
    limits.iter().find(|l| usage(&l.path) > l.bytes).map(|l| {
        format!(
            "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
            l.volume, l.text
        )
    })
}

/// Disk usage of a directory tree in bytes (allocated blocks, as `du`), not following
/// symlinks nor crossing into other filesystems.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let dev = root.dev();
    let mut total = root.blocks() * 512;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Whether `dir` is a mount point in this mount namespace.
fn is_mount_point(dir: &Path) -> bool {
    let d = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(&*d)))
        .unwrap_or(false)
}

/// Mounts a tmpfs of `size` bytes at `dir` (once: a worker taking the pod back after an
/// agent restart finds it mounted).
fn mount_tmpfs(dir: &Path, size: u64) -> Result<()> {
    if is_mount_point(dir) {
        return Ok(());
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some(format!("size={size}").as_str()),
    )
    .with_context(|| format!("mounting a tmpfs at {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// Unmounts the tmpfs volumes under a pod directory (teardown: the pod's memory is
/// freed, and the directory can be removed).
pub fn unmount_all(pod_dir: &Path) {
    let prefix = format!("{}/", pod_dir.join("volumes").to_string_lossy());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        if let Err(e) = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %m, error = %e, "unmounting a pod volume");
        }
    }
}

#[derive(Debug, Clone)]
struct TokenSpec {
    file: PathBuf,
    audience: Option<String>,
    expiration: i64,
}

/// Writes a file atomically with a mode.
fn write_file(dir: &Path, rel: &str, data: &[u8], mode: u32) -> Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    mode: u32,
    what: &str,
) -> Result<()> {
    match items {
        Some(items) => {
            for it in items {
                let Some(v) = data.get(&it.key) else {
                    bail!("{what}: key {} not found", it.key)
                };
                write_file(dir, &it.path, v, it.mode.map(|m| m as u32).unwrap_or(mode))?;
            }
        }
        None => {
            for (k, v) in data {
                write_file(dir, k, v, mode)?;
            }
        }
    }
    Ok(())
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.clone().unwrap_or_default() {
        out.insert(k, v.0);
    }
    out
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.clone().unwrap_or_default() {
        out.insert(k, v.into_bytes());
    }
    out
}

async fn get_config_map(client: &Client, ns: &str, name: &str) -> Result<Option<ConfigMap>> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading configmap {name}"))
}

async fn get_secret(client: &Client, ns: &str, name: &str) -> Result<Option<Secret>> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading secret {name}"))
}

/// Requests a bound service-account token (TokenRequest API).
pub async fn request_token(
    client: &Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration: i64,
) -> Result<String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let mut spec = json!({
        "expirationSeconds": expiration,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "uid": pod.metadata.uid},
    });
    if let Some(a) = audience {
        spec["audiences"] = json!([a]);
    }
    let body =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let req = http::Request::post(format!(
        "/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"
    ))
    .header("Content-Type", "application/json")
    .body(serde_json::to_vec(&body)?)
    .context("building the TokenRequest")?;
    let resp: serde_json::Value = client
        .request(req)
        .await
        .with_context(|| format!("requesting a token for {ns}/{sa}"))?;
    resp["status"]["token"]
        .as_str()
        .map(String::from)
        .context("the TokenRequest answer has no token")
}

/// Makes every volume of the pod (and the default service-account volume when due);
/// `claims` are the pod's claims as [`resolve_claims`] found them.
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    pod_dir: &Path,
    ca: Option<&[u8]>,
    claims: &HashMap<String, ClaimMount>,
) -> Result<Prepared> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = pod.spec.clone().unwrap_or_default();
    let root = pod_dir.join("volumes");
    let mut p = Prepared::default();
    for v in spec.volumes.iter().flatten() {
        let dir = root.join(&v.name);
        if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            match h.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => std::fs::create_dir_all(&path)
                    .with_context(|| format!("creating hostPath {}", h.path))?,
                "FileOrCreate" if !path.exists() => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&path, b"")?;
                }
                "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice"
                    if !path.exists() =>
                {
                    bail!(
                        "hostPath type check failed: {} is not a {}",
                        h.path,
                        h.type_.as_deref().unwrap_or_default()
                    )
                }
                _ => {}
            }
            p.paths.insert(v.name.clone(), path);
            continue;
        }
        if let Some(src) = &v.persistent_volume_claim {
            let m = claims.get(&v.name).with_context(|| {
                format!("claim {} of volume {} not resolved", src.claim_name, v.name)
            })?;
            if m.create && !m.path.exists() {
                // As local-path-provisioner makes its volumes: writable by any user.
                std::fs::create_dir_all(&m.path)
                    .with_context(|| format!("creating {}", m.path.display()))?;
                std::fs::set_permissions(&m.path, std::fs::Permissions::from_mode(0o777))
                    .with_context(|| format!("setting the mode of {}", m.path.display()))?;
            } else if !m.path.exists() {
                bail!(
                    "the volume of claim {} is missing: {}",
                    src.claim_name,
                    m.path.display()
                );
            }
            if src.read_only == Some(true) {
                p.readonly.push(v.name.clone());
            }
            p.paths.insert(v.name.clone(), m.path.clone());
            continue;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating volume {}", v.name))?;
        if let Some(ed) = &v.empty_dir {
            // kubelet makes emptyDir volumes writable by any user.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .with_context(|| format!("setting the mode of {}", dir.display()))?;
            let limit = ed.size_limit.as_ref().and_then(|q| {
                let bytes = skiff_api::quantity::parse(&q.0)?.ceil() as u64;
                Some((bytes, q.0.clone()))
            });
            if ed.medium.as_deref() == Some("Memory") {
                let node = crate::node::memory_kib() * 1024;
                let size = tmpfs_size(node, pod_memory_limit(pod), limit.as_ref().map(|l| l.0));
                mount_tmpfs(&dir, size)?;
            } else if let Some((bytes, text)) = limit.filter(|l| l.0 > 0) {
                p.limits.push(SizeLimit {
                    volume: v.name.clone(),
                    path: dir.clone(),
                    bytes,
                    text,
                });
            }
        }
        if let Some(cm) = &v.config_map {
            let mode = cm.default_mode.unwrap_or(0o644) as u32;
            match get_config_map(client, &ns, &cm.name).await? {
                Some(obj) => write_items(
                    &dir,
                    &config_map_data(&obj),
                    cm.items.as_ref(),
                    mode,
                    &format!("configmap {}", cm.name),
                )?,
                None if cm.optional == Some(true) => {}
                None => bail!("configmap \"{}\" not found", cm.name),
            }
            p.readonly.push(v.name.clone());
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let mode = s.default_mode.unwrap_or(0o644) as u32;
            match get_secret(client, &ns, &name).await? {
                Some(obj) => write_items(
                    &dir,
                    &secret_data(&obj),
                    s.items.as_ref(),
                    mode,
                    &format!("secret {name}"),
                )?,
                None if s.optional == Some(true) => {}
                None => bail!("secret \"{name}\" not found"),
            }
            p.readonly.push(v.name.clone());
        } else if let Some(d) = &v.downward_api {
            let mode = d.default_mode.unwrap_or(0o644) as u32;
            for it in d.items.iter().flatten() {
                let value = it
                    .field_ref
                    .as_ref()
                    .and_then(|f| field_value(pod, &f.field_path))
                    .unwrap_or_default();
                write_file(
                    &dir,
                    &it.path,
                    value.as_bytes(),
                    it.mode.map(|m| m as u32).unwrap_or(mode),
                )?;
            }
            p.readonly.push(v.name.clone());
        } else if let Some(proj) = &v.projected {
            let mode = proj.default_mode.unwrap_or(0o644) as u32;
            for src in proj.sources.iter().flatten() {
                if let Some(t) = &src.service_account_token {
                    let file = dir.join(&t.path);
                    let ts = TokenSpec {
                        file,
                        audience: t.audience.clone(),
                        expiration: t.expiration_seconds.unwrap_or(3607),
                    };
                    let token =
                        request_token(client, pod, ts.audience.as_deref(), ts.expiration).await?;
                    write_file(&dir, &t.path, token.as_bytes(), mode)?;
                    p.tokens.push(ts);
                }
                if let Some(cm) = &src.config_map {
                    match get_config_map(client, &ns, &cm.name).await? {
                        Some(obj) => write_items(
                            &dir,
                            &config_map_data(&obj),
                            cm.items.as_ref(),
                            mode,
                            &format!("configmap {}", cm.name),
                        )?,
                        // The root CA ConfigMap may not be published yet: the agent's CA is the same.
                        None if cm.name == "kube-root-ca.crt" => {
                            if let Some(ca) = ca {
                                write_file(&dir, "ca.crt", ca, mode)?;
                            }
                        }
                        None if cm.optional == Some(true) => {}
                        None => bail!("configmap \"{}\" not found", cm.name),
                    }
                }
                if let Some(s) = &src.secret {
                    match get_secret(client, &ns, &s.name).await? {
                        Some(obj) => write_items(
                            &dir,
                            &secret_data(&obj),
                            s.items.as_ref(),
                            mode,
                            &format!("secret {}", s.name),
                        )?,
                        None if s.optional == Some(true) => {}
                        None => bail!("secret \"{}\" not found", s.name),
                    }
                }
                if let Some(d) = &src.downward_api {
                    for it in d.items.iter().flatten() {
                        let value = it
                            .field_ref
                            .as_ref()
                            .and_then(|f| field_value(pod, &f.field_path))
                            .unwrap_or_default();
                        write_file(
                            &dir,
                            &it.path,
                            value.as_bytes(),
                            it.mode.map(|m| m as u32).unwrap_or(mode),
                        )?;
                    }
                }
            }
            p.readonly.push(v.name.clone());
        }
        // emptyDir: the directory itself.
        p.paths.insert(v.name.clone(), dir);
    }
    if wants_default_sa(pod) {
        let dir = root.join(DEFAULT_SA_VOLUME);
        std::fs::create_dir_all(&dir)?;
        let ts = TokenSpec {
            file: dir.join("token"),
            audience: None,
            expiration: 3607,
        };
        // The token may not be available yet (the ServiceAccount is made by a
        // controller): the pod starts anyway and the refresher keeps asking.
        match request_token(client, pod, None, ts.expiration).await {
            Ok(token) => write_file(&dir, "token", token.as_bytes(), 0o644)?,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "no service-account token yet"),
        }
        write_file(&dir, "namespace", ns.as_bytes(), 0o644)?;
        if let Some(ca) = ca {
            write_file(&dir, "ca.crt", ca, 0o644)?;
        }
        p.tokens.push(ts);
        p.paths.insert(DEFAULT_SA_VOLUME.into(), dir);
        p.readonly.push(DEFAULT_SA_VOLUME.into());
    }
    Ok(p)
}

/// True if the agent must add the service-account token volume: automount is not off
/// and no container already mounts something at its path.
fn wants_default_sa(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    if spec.automount_service_account_token == Some(false) {
        return false;
    }
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    !all.flat_map(|c| c.volume_mounts.iter().flatten())
        .any(|m| m.mount_path.trim_end_matches('/') == SA_MOUNT)
}

/// The bind mounts of a container's volumeMounts (plus the default token volume).
pub fn mounts_for(c: &Container, p: &Prepared) -> Vec<BindMount> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(src) = p.paths.get(&m.name) else {
            continue;
        };
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let s = src.join(sub);
                if !s.exists() {
                    let _ = std::fs::create_dir_all(&s);
                }
                s
            }
            None => src.clone(),
        };
        out.push(BindMount {
            source,
            destination: m.mount_path.clone(),
            readonly: m.read_only.unwrap_or(false) || p.readonly.contains(&m.name),
        });
    }
    if let Some(dir) = p.paths.get(DEFAULT_SA_VOLUME) {
        out.push(BindMount {
            source: dir.clone(),
            destination: SA_MOUNT.into(),
            readonly: true,
        });
    }
    out
}

/// Refreshes the pod's tokens at 80% of their lifetime, forever (abort it at teardown).
pub fn spawn_refresher(
    client: Client,
    pod: Pod,
    p: &Prepared,
) -> Option<tokio::task::JoinHandle<()>> {
    if p.tokens.is_empty() {
        return None;
    }
    let tokens = p.tokens.clone();
    Some(tokio::spawn(async move {
        loop {
            let shortest = tokens.iter().map(|t| t.expiration).min().unwrap_or(3607);
            let missing = tokens.iter().any(|t| !t.file.exists());
            let wait = if missing {
                2
            } else {
                (shortest as u64 * 8 / 10).max(60)
            };
            tokio::time::sleep(Duration::from_secs(wait)).await;
            for t in &tokens {
                match request_token(&client, &pod, t.audience.as_deref(), t.expiration).await {
                    Ok(token) => {
                        if let (Some(dir), Some(name)) = (t.file.parent(), t.file.file_name()) {
                            let _ =
                                write_file(dir, &name.to_string_lossy(), token.as_bytes(), 0o644);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "refreshing a service-account token")
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(v: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).expect("claim")
    }

    #[test]
    fn a_claim_mounts_its_bound_volume_path() {
        let pending = claim(json!({"metadata": {"name": "data"}, "status": {"phase": "Pending"}}));
        assert_eq!(
            claim_mount("default", "data", None, None),
            Err("persistentvolumeclaim \"data\" not found".to_string())
        );
        assert_eq!(
            claim_mount("default", "data", Some(&pending), None),
            Err("PVC default/data has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")".to_string())
        );
        let bound = claim(
            json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pvc-1"}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(
            claim_mount("default", "data", Some(&bound), None),
            Err("persistentvolume \"pvc-1\" not found".to_string())
        );
        let host: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pvc-1"},
            "spec": {"hostPath": {"path": "/s/pvc-1_default_data", "type": "DirectoryOrCreate"}}}))
        .expect("pv");
        assert_eq!(
            claim_mount("default", "data", Some(&bound), Some(&host)),
            Ok(ClaimMount {
                path: "/s/pvc-1_default_data".into(),
                create: true
            })
        );
        let local: PersistentVolume = serde_json::from_value(
            json!({"metadata": {"name": "pvc-1"}, "spec": {"local": {"path": "/mnt/disk"}}}),
        )
        .expect("pv");
        assert_eq!(
            claim_mount("default", "data", Some(&bound), Some(&local)),
            Ok(ClaimMount {
                path: "/mnt/disk".into(),
                create: false
            })
        );
        let nfs: PersistentVolume = serde_json::from_value(
            json!({"metadata": {"name": "pvc-1"}, "spec": {"nfs": {"server": "x", "path": "/"}}}),
        )
        .expect("pv");
        assert!(claim_mount("default", "data", Some(&bound), Some(&nfs)).is_err());
    }

    #[test]
    fn failed_mount_message_is_kubelets() {
        let nr = NotReady {
            volumes: vec!["data".into(), "logs".into()],
            reasons: vec![],
        };
        assert_eq!(
            nr.failed_mount_message(),
            "Unable to attach or mount volumes: unmounted volumes=[data logs], unattached volumes=[], \
             failed to process volumes=[data logs]: timed out waiting for the condition"
        );
    }

    #[test]
    fn tmpfs_is_the_smallest_of_node_memory_pod_limit_and_size_limit() {
        let gi = 1 << 30;
        assert_eq!(tmpfs_size(8 * gi, None, None), 8 * gi);
        assert_eq!(tmpfs_size(8 * gi, Some(gi), None), gi);
        assert_eq!(tmpfs_size(8 * gi, Some(gi), Some(64 << 20)), 64 << 20);
        assert_eq!(tmpfs_size(8 * gi, None, Some(16 * gi)), 8 * gi);
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
                {"name": "a", "resources": {"limits": {"memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"memory": "64Mi"}}},
                {"name": "c"}
            ]}}))
            .expect("pod");
        assert_eq!(pod_memory_limit(&pod), Some(128 << 20));
    }

    #[test]
    fn eviction_names_the_first_emptydir_over_its_limit() {
        let limits = vec![
            SizeLimit {
                volume: "cache".into(),
                path: "/p/cache".into(),
                bytes: 1 << 20,
                text: "1Mi".into(),
            },
            SizeLimit {
                volume: "scratch".into(),
                path: "/p/scratch".into(),
                bytes: 1 << 20,
                text: "1Mi".into(),
            },
        ];
        let usage = |cache: u64, scratch: u64| {
            move |p: &Path| if p.ends_with("cache") { cache } else { scratch }
        };
        assert_eq!(over_limit(&limits, usage(1 << 20, 0)), None);
        assert_eq!(
            over_limit(&limits, usage(0, (1 << 20) + 1)).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ")
        );
    }

    #[test]
    fn disk_usage_counts_allocated_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = disk_usage(dir.path());
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/f"), vec![1u8; 2 << 20]).expect("write");
        assert!(disk_usage(dir.path()) >= before + (2 << 20));
    }
}
