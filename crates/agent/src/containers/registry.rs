//! Image pulls over the OCI distribution API (`oci-client`): references as Docker
//! resolves them, mirrors and per-registry auth/TLS from the node's registry config (in
//! the spirit of k3s's `registries.yaml`), credentials from the pod's
//! `imagePullSecrets`, the bearer-token flow, image indexes resolved to linux and the
//! node's architecture, Docker v2 schema 2 and OCI manifests, every blob's digest
//! checked (the client checks the compressed blob, the layer store the unpacked tar
//! against the config's diff ID). Layers the node has are not downloaded; pulls of one
//! image, and downloads of one layer, are done once at a time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{ImageIndexEntry, OciDescriptor};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

use super::images::{Image, ImageStore};

/// The node's registry configuration (`skiff agent --registry-config FILE`), the shape of
/// k3s's `registries.yaml`:
///
/// ```yaml
/// mirrors:
///   docker.io:
///     endpoint: ["http://10.0.0.1:5000"]
/// configs:
///   "registry.example.com:5000":
///     auth: {username: u, password: p}
///     tls: {ca_file: /etc/ssl/registry-ca.pem}
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Per registry host (`docker.io`, `*` for all), the endpoints tried before it.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Per endpoint host (`host[:port]`), its credentials and TLS.
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
    /// Never fall back to a mirrored registry itself (k3s's
    /// `--disable-default-registry-endpoint`): for air-gapped nodes.
    #[serde(default)]
    pub disable_default_endpoint: bool,
}

/// The endpoints that serve a registry's images, in order; the registry itself is
/// tried after them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// `http://host:port` (plain HTTP) or `https://host[:port]` (or a bare host:
    /// HTTPS).
    #[serde(default)]
    pub endpoint: Vec<String>,
}

/// How to talk to one endpoint.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Its credentials.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Its TLS.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// Credentials for an endpoint: username and password, or `auth` (base64 of
/// `user:password`, as in a Docker config), or an identity token.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: String,
    /// base64 of `user:password`.
    #[serde(default)]
    pub auth: String,
    /// A bearer token for the registry.
    #[serde(default)]
    pub identitytoken: String,
}

/// TLS of an endpoint.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM CA bundle trusted beside the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl RegistryConfig {
    /// Reads a registry config file (YAML).
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The endpoints to try for a registry host, in order: its mirrors (or those of
    /// `*`), then the registry itself.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = self
            .mirrors
            .get(registry)
            .or_else(|| self.mirrors.get("*"))
            .map(|m| m.endpoint.iter().map(|e| Endpoint::parse(e)).collect())
            .unwrap_or_default();
        let own = Endpoint {
            host: if registry == "docker.io" {
                "index.docker.io".into()
            } else {
                registry.into()
            },
            http: is_loopback(registry),
        };
        let fallback = !self.disable_default_endpoint || out.is_empty();
        if fallback && !out.iter().any(|e| e.host == own.host) {
            out.push(own);
        }
        out
    }
}

/// A `REGISTRY=URL` mirror (`--registry-mirror`): the registry and the endpoint. A
/// loopback URL (`http://127.0.0.1:5000`) means the host's: the nodes of a local
/// cluster reach it at their LAN's gateway, which the agent finds at start.
pub fn parse_mirror(s: &str) -> Result<(String, String)> {
    let (registry, url) = s
        .split_once('=')
        .filter(|(r, u)| !r.is_empty() && !u.is_empty())
        .ok_or_else(|| anyhow!("--registry-mirror {s}: expected REGISTRY=URL"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--registry-mirror {s}: the URL must start with http:// or https://");
    }
    Ok((registry.to_string(), url.trim_end_matches('/').to_string()))
}

/// One endpoint of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP (an `http://` endpoint, or a loopback registry, as containerd allows).
    pub http: bool,
}

impl Endpoint {
    fn parse(s: &str) -> Endpoint {
        let (http, rest) = if let Some(r) = s.strip_prefix("http://") {
            (true, r)
        } else {
            (false, s.strip_prefix("https://").unwrap_or(s))
        };
        let host = rest.split('/').next().unwrap_or(rest).to_string();
        Endpoint { host, http }
    }
}

fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// Credentials for one registry, from a pod's `kubernetes.io/dockerconfigjson` Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The registry host the Docker config names (normalized: no scheme or path,
    /// Docker Hub's names as `docker.io`).
    pub registry: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The credentials of a `.dockerconfigjson` (or legacy `.dockercfg`) document.
pub fn parse_docker_config(json: &[u8]) -> Result<Vec<Credential>> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
        #[serde(default)]
        auth: String,
    }
    let value: serde_json::Value =
        serde_json::from_slice(json).context("parsing the docker config")?;
    // `.dockerconfigjson` wraps the map in `auths`; `.dockercfg` is the map.
    let map = value.get("auths").cloned().unwrap_or(value);
    let entries: BTreeMap<String, Entry> =
        serde_json::from_value(map).context("parsing the docker config's auths")?;
    let mut out = Vec::new();
    for (key, e) in entries {
        let (username, password) = if e.auth.is_empty() {
            (e.username, e.password)
        } else {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(e.auth.trim())
                .context("decoding an auth entry")?;
            let text = String::from_utf8(decoded).context("decoding an auth entry")?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| anyhow!("an auth entry is not user:password"))?;
            (u.to_string(), p.to_string())
        };
        out.push(Credential {
            registry: registry_key(&key),
            username,
            password,
        });
    }
    Ok(out)
}

/// A Docker config key as a registry host: `https://index.docker.io/v1/` → `docker.io`.
fn registry_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        h => h.to_string(),
    }
}

/// A pull that succeeded.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image, ready to run.
    pub image: Image,
    /// Bytes of its blobs (config and layers, compressed) as the registry serves them.
    pub size: u64,
    /// How long the pull itself took.
    pub took: Duration,
    /// How long it took with the wait for another pull of the same image.
    pub with_waiting: Duration,
    /// Layers downloaded (0: the node had them all).
    pub downloaded_layers: usize,
}

/// The node's image puller.
#[derive(Debug)]
pub struct Puller {
    config: RegistryConfig,
    /// One lock per image reference and one per layer: concurrent pulls of one image,
    /// or of two images sharing a layer, download it once.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Puller {
    /// A puller with the node's registry configuration.
    pub fn new(config: RegistryConfig) -> Self {
        // reqwest is built without a rustls provider of its own: the workspace's ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Puller {
            config,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Pulls `image` into `store` (layers it has are not downloaded), with `creds` from
    /// the pod's pull secrets. The error's text is what kubelet shows after `Failed to
    /// pull image "x": `.
    pub async fn pull(
        &self,
        store: &ImageStore,
        image: &str,
        creds: &[Credential],
    ) -> Result<Pulled> {
        let asked = Instant::now();
        let reference: Reference = image.parse().map_err(|e| {
            anyhow!("failed to pull and unpack image \"{image}\": invalid reference format: {e}")
        })?;
        let whole = reference.whole();
        let lock = self.lock_for(&format!("image:{whole}"));
        let _guard = lock.lock().await;
        let start = Instant::now();
        let mut errors = Vec::new();
        for endpoint in self.config.endpoints(reference.registry()) {
            match self.pull_from(store, &reference, &endpoint, creds).await {
                Ok((image, size, downloaded_layers)) => {
                    return Ok(Pulled {
                        image,
                        size,
                        took: start.elapsed(),
                        with_waiting: asked.elapsed(),
                        downloaded_layers,
                    })
                }
                Err(e) => {
                    tracing::info!(image = %whole, endpoint = %endpoint.host, error = %format!("{e:#}"), "pull from an endpoint failed");
                    errors.push(e);
                }
            }
        }
        // The last endpoint is the registry itself: its answer is the reason.
        let e = errors.pop().unwrap_or_else(|| anyhow!("no endpoint"));
        Err(anyhow!(
            "failed to pull and unpack image \"{whole}\": {e:#}"
        ))
    }

    async fn pull_from(
        &self,
        store: &ImageStore,
        reference: &Reference,
        endpoint: &Endpoint,
        creds: &[Credential],
    ) -> Result<(Image, u64, usize)> {
        let whole = reference.whole();
        let host_cfg = self
            .config
            .configs
            .get(&endpoint.host)
            .cloned()
            .unwrap_or_default();
        let client = client_for(endpoint, &host_cfg)?;
        // The reference as this endpoint knows it (a mirror keeps the repository).
        let at = match (reference.digest(), reference.tag()) {
            (Some(d), _) => Reference::with_digest(
                endpoint.host.clone(),
                reference.repository().into(),
                d.into(),
            ),
            (None, t) => Reference::with_tag(
                endpoint.host.clone(),
                reference.repository().into(),
                t.unwrap_or("latest").into(),
            ),
        };
        let auth = auth_for(reference.registry(), &endpoint.host, creds, &host_cfg);
        let (manifest, digest) = client
            .pull_image_manifest(&at, &auth)
            .await
            .map_err(|e| resolve_error(&whole, e))?;
        let mut config_blob = Vec::new();
        client
            .pull_blob(&at, &manifest.config, &mut config_blob)
            .await
            .map_err(|e| {
                anyhow!(
                    "failed to fetch the config {}: {}",
                    manifest.config.digest,
                    e
                )
            })?;
        #[derive(Deserialize)]
        struct RootFs {
            #[serde(default)]
            diff_ids: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Config {
            rootfs: RootFs,
        }
        let config: Config =
            serde_json::from_slice(&config_blob).context("parsing the image config")?;
        let diff_ids = config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            bail!(
                "the image config lists {} layers, its manifest {}",
                diff_ids.len(),
                manifest.layers.len()
            );
        }
        let mut downloaded = 0;
        for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            if store.layers.has(diff_id) {
                continue;
            }
            let lock = self.lock_for(&format!("layer:{diff_id}"));
            let _guard = lock.lock().await;
            if store.layers.has(diff_id) {
                continue;
            }
            self.fetch_layer(&client, &at, store, layer, diff_id)
                .await?;
            downloaded += 1;
        }
        let size = manifest.config.size.max(0) as u64
            + manifest
                .layers
                .iter()
                .map(|l| l.size.max(0) as u64)
                .sum::<u64>();
        let repo_digest = format!(
            "{}/{}@{}",
            reference.registry(),
            reference.repository(),
            digest
        );
        let mut refs = vec![whole];
        // A pull by tag also answers to its digest.
        if reference.digest().is_none() {
            refs.push(repo_digest.clone());
        }
        // Two small files written: not worth a blocking thread.
        let store_image = {
            let _held = store.exclusive()?;
            store.record_pulled(&config_blob, &diff_ids, size, &refs, &repo_digest)?
        };
        Ok((store_image, size, downloaded))
    }

    /// Downloads one layer blob (its digest checked as it streams) to a temporary file,
    /// then unpacks it into the layer store (its diff ID checked).
    async fn fetch_layer(
        &self,
        client: &Client,
        at: &Reference,
        store: &ImageStore,
        layer: &OciDescriptor,
        diff_id: &str,
    ) -> Result<()> {
        let tmp_dir = store.layers.tmp_dir();
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let blob = tmp_dir.join(format!("blob-{}", uuid::Uuid::new_v4().simple()));
        let result = async {
            let file = tokio::fs::File::create(&blob).await?;
            client
                .pull_blob(at, layer, file)
                .await
                .map_err(|e| anyhow!("failed to fetch the layer {}: {}", layer.digest, e))?;
            let layers = store.layers.clone();
            let (path, id) = (blob.clone(), diff_id.to_string());
            tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path)?;
                layers.unpack(&id, f)
            })
            .await
            .map_err(|e| anyhow!("unpacking: {e}"))??;
            Ok::<(), anyhow::Error>(())
        }
        .await;
        let _ = tokio::fs::remove_file(&blob).await;
        result
    }
}

/// The containerd-like text of a failure to resolve the manifest.
fn resolve_error(whole: &str, e: OciDistributionError) -> anyhow::Error {
    use oci_client::errors::OciErrorCode as Code;
    let text = e.to_string();
    let codes: Vec<&Code> = match &e {
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().map(|x| &x.code).collect()
        }
        _ => Vec::new(),
    };
    let not_found = matches!(e, OciDistributionError::ImageManifestNotFoundError(_))
        || codes.iter().any(|c| {
            matches!(
                c,
                Code::ManifestUnknown | Code::NameUnknown | Code::NotFound
            )
        });
    let unauthorized = matches!(
        e,
        OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_)
    ) || codes
        .iter()
        .any(|c| matches!(c, Code::Unauthorized | Code::Denied));
    if not_found {
        anyhow!("failed to resolve reference \"{whole}\": {whole}: not found")
    } else if unauthorized {
        anyhow!("failed to resolve reference \"{whole}\": failed to authorize: 401 Unauthorized ({text})")
    } else {
        anyhow!("failed to resolve reference \"{whole}\": {text}")
    }
}

/// The client for one endpoint: HTTP or HTTPS, its CA, and indexes resolved to linux
/// and this node's architecture.
fn client_for(endpoint: &Endpoint, cfg: &HostConfig) -> Result<Client> {
    let mut config = ClientConfig {
        protocol: if endpoint.http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        platform_resolver: Some(Box::new(node_platform)),
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    if let Some(tls) = &cfg.tls {
        if let Some(ca) = &tls.ca_file {
            let data = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        config.accept_invalid_certificates = tls.insecure_skip_verify;
    }
    Ok(Client::new(config))
}

/// The GOARCH of this node.
pub fn node_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

/// Picks the manifest of linux on this node's architecture from an index.
fn node_platform(manifests: &[ImageIndexEntry]) -> Option<String> {
    pick_platform(manifests, node_arch())
}

/// Picks the first manifest of linux on `arch` from an index.
pub fn pick_platform(manifests: &[ImageIndexEntry], arch: &str) -> Option<String> {
    manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os.to_string() == "linux" && p.architecture.to_string() == arch)
        })
        .map(|m| m.digest.clone())
}

/// The credentials for a pull: the pod's pull secrets that name the image's registry
/// (or the endpoint), else the node config's for the endpoint, else anonymous.
fn auth_for(
    registry: &str,
    endpoint: &str,
    creds: &[Credential],
    cfg: &HostConfig,
) -> RegistryAuth {
    if let Some(c) = creds
        .iter()
        .find(|c| c.registry == registry || c.registry == endpoint)
    {
        return RegistryAuth::Basic(c.username.clone(), c.password.clone());
    }
    match &cfg.auth {
        Some(a) if !a.identitytoken.is_empty() => RegistryAuth::Bearer(a.identitytoken.clone()),
        Some(a) if !a.auth.is_empty() => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(a.auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let (u, p) = decoded.split_once(':').unwrap_or((&decoded, ""));
            RegistryAuth::Basic(u.into(), p.into())
        }
        Some(a) if !a.username.is_empty() => {
            RegistryAuth::Basic(a.username.clone(), a.password.clone())
        }
        _ => RegistryAuth::Anonymous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_entries() {
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dTpw"},
            "127.0.0.1:5000":{"username":"a","password":"b:c"}}}"#;
        let creds = parse_docker_config(json).unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[0].registry, "127.0.0.1:5000");
        assert_eq!(
            (creds[0].username.as_str(), creds[0].password.as_str()),
            ("a", "b:c")
        );
        assert_eq!(creds[1].registry, "docker.io");
        assert_eq!(
            (creds[1].username.as_str(), creds[1].password.as_str()),
            ("u", "p")
        );
        // The legacy `.dockercfg` has no `auths`.
        let legacy = parse_docker_config(br#"{"quay.io":{"auth":"dTpw"}}"#).unwrap();
        assert_eq!(legacy[0].registry, "quay.io");
        assert!(parse_docker_config(br#"{"auths":{"x":{"auth":"bm9jb2xvbg=="}}}"#).is_err());
        assert!(!format!("{:?}", creds[0]).contains("b:c"));
    }

    #[test]
    fn endpoints_mirrors_first_then_the_registry() {
        let cfg: RegistryConfig = serde_yaml_ng::from_str(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://10.1.0.1:5000\", \"https://m.example\"]\n\
             configs:\n  m.example:\n    auth: {username: u, password: p}\n    tls: {insecure_skip_verify: true}\n",
        )
        .unwrap();
        let hosts: Vec<(String, bool)> = cfg
            .endpoints("docker.io")
            .into_iter()
            .map(|e| (e.host, e.http))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("10.1.0.1:5000".to_string(), true),
                ("m.example".to_string(), false),
                ("index.docker.io".to_string(), false),
            ]
        );
        assert_eq!(
            cfg.endpoints("localhost:5000"),
            vec![Endpoint {
                host: "localhost:5000".into(),
                http: true
            }]
        );
        assert!(!cfg.endpoints("quay.io")[0].http);
        let auth = auth_for("docker.io", "m.example", &[], &cfg.configs["m.example"]);
        assert_eq!(auth, RegistryAuth::Basic("u".into(), "p".into()));
        assert!(serde_yaml_ng::from_str::<RegistryConfig>("mirror: {}").is_err());
        // Air-gapped: only the mirrors.
        let air = RegistryConfig {
            disable_default_endpoint: true,
            ..cfg.clone()
        };
        assert_eq!(air.endpoints("docker.io").len(), 2);
        assert_eq!(air.endpoints("quay.io")[0].host, "quay.io");
        assert_eq!(
            parse_mirror("docker.io=http://127.0.0.1:5000/").unwrap(),
            ("docker.io".to_string(), "http://127.0.0.1:5000".to_string())
        );
        assert!(parse_mirror("docker.io").is_err());
        assert!(parse_mirror("docker.io=127.0.0.1:5000").is_err());
    }

    #[test]
    fn pull_secrets_come_before_the_node_config() {
        let creds = vec![Credential {
            registry: "r.example".into(),
            username: "pod".into(),
            password: "s".into(),
        }];
        let node = HostConfig {
            auth: Some(AuthConfig {
                auth: "bm9kZTpu".into(),
                ..Default::default()
            }),
            tls: None,
        };
        assert_eq!(
            auth_for("r.example", "r.example", &creds, &node),
            RegistryAuth::Basic("pod".into(), "s".into())
        );
        assert_eq!(
            auth_for("other.example", "other.example", &creds, &node),
            RegistryAuth::Basic("node".into(), "n".into())
        );
        assert_eq!(
            auth_for(
                "other.example",
                "other.example",
                &creds,
                &HostConfig::default()
            ),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn indexes_resolve_to_linux_on_the_node_arch() {
        let index: Vec<ImageIndexEntry> = serde_json::from_value(serde_json::json!([
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:win", "size": 1,
             "platform": {"os": "windows", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:arm", "size": 1,
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:amd", "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}}
        ]))
        .unwrap();
        assert_eq!(
            pick_platform(&index, "amd64").as_deref(),
            Some("sha256:amd")
        );
        assert_eq!(
            pick_platform(&index, "arm64").as_deref(),
            Some("sha256:arm")
        );
        assert_eq!(pick_platform(&index, "s390x"), None);
    }
}
