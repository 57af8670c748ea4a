//! The cluster's PKI under `<data-dir>/pki` and the join token in `<data-dir>/token`.
//!
//! On first start the CA, the admin client certificate (CN `kubernetes-admin`, O
//! `system:masters`), the service-account signing key and the join token are made; later
//! starts reuse them. The serving certificate is re-issued on every start so that its SANs
//! follow the current advertise address.
//!
//! Service-account tokens are signed with an ECDSA P-256 key (ES256): the `ring` crypto
//! provider cannot generate RSA keys, and kube-apiserver accepts ES256 signing keys too.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use skiff_api::names::{ADMIN_GROUP, ADMIN_USER};

/// Everything the server needs from the PKI, as PEM text.
#[derive(Clone)]
pub(crate) struct Pki {
    pub ca_cert: String,
    /// The CA's private key (PEM): the server signs node credentials with it.
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    /// PKCS#8 PEM of the service-account signing key.
    pub sa_key: String,
    /// SPKI PEM of the service-account verification key.
    pub sa_pub: String,
    pub join_token: String,
}

fn pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki")
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes a file only its owner may read (0600), narrowing the mode of an existing one
/// before anything is written to it.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {} to its owner", path.display()))?;
    f.set_len(0)
        .and_then(|()| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// Creates `dir` (and its parents) and makes it private to its owner (0700), also when
/// it existed with a wider mode.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {} to its owner", dir.display()))
}

/// Narrows the modes of what an older version left under a server's data directory:
/// the directory and `pki/` 0700, and every file with a secret in it (keys, the join
/// token, the SQLite database and its `-wal`/`-shm`, kubeconfigs) 0600.
pub fn secure_data_dir(data_dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    private_dir(data_dir)?;
    private_dir(&pki_dir(data_dir))?;
    let mut files: Vec<PathBuf> = ["token", "state.db", "state.db-wal", "state.db-shm"]
        .iter()
        .map(|f| data_dir.join(f))
        .collect();
    for dir in [data_dir.to_path_buf(), pki_dir(data_dir)] {
        let entries = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".key") || name.contains("kubeconfig") {
                files.push(entry.path());
            }
        }
    }
    for file in files {
        let Ok(meta) = fs::symlink_metadata(&file) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {} to its owner", file.display()))?;
        }
    }
    Ok(())
}

/// Loads the PKI from `data_dir`, making what is missing, and issues a fresh serving
/// certificate for `advertise` plus the usual names and `extra_sans`.
pub(crate) fn ensure(data_dir: &Path, advertise: Ipv4Addr, extra_sans: &[String]) -> Result<Pki> {
    let dir = pki_dir(data_dir);
    private_dir(&dir)?;
    let ca_crt_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    if !ca_crt_path.exists() || !ca_key_path.exists() {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kubernetes");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = params.self_signed(&key).context("signing the CA")?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        fs::write(&ca_crt_path, cert.pem())?;
    }
    let ca_cert = read(&ca_crt_path)?;
    let ca_key_pem = read(&ca_key_path)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("parsing ca.key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, &ca_key).context("parsing ca.crt")?;

    // Serving certificate: always re-issued (SANs follow the configuration).
    let mut sans: Vec<String> = vec![
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    for ip in [
        advertise,
        Ipv4Addr::LOCALHOST,
        skiff_api::defaults::KUBERNETES_SERVICE_IP,
    ] {
        sans.push(ip.to_string());
    }
    sans.extend(extra_sans.iter().cloned());
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut seen = std::collections::HashSet::new();
    for s in sans.iter().filter(|s| seen.insert(s.as_str())) {
        match s.parse::<std::net::IpAddr>() {
            Ok(ip) => params.subject_alt_names.push(SanType::IpAddress(ip)),
            Err(_) => params
                .subject_alt_names
                .push(SanType::DnsName(s.as_str().try_into()?)),
        }
    }
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    let server_key = KeyPair::generate()?;
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .context("signing the serving certificate")?;
    write_private(&dir.join("apiserver.key"), &server_key.serialize_pem())?;
    fs::write(dir.join("apiserver.crt"), server_cert.pem())?;

    let admin_crt_path = dir.join("admin.crt");
    let admin_key_path = dir.join("admin.key");
    if !admin_crt_path.exists() || !admin_key_path.exists() {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, ADMIN_GROUP);
        params
            .distinguished_name
            .push(DnType::CommonName, ADMIN_USER);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing the admin certificate")?;
        write_private(&admin_key_path, &key.serialize_pem())?;
        fs::write(&admin_crt_path, cert.pem())?;
    }

    let sa_key_path = dir.join("sa.key");
    let sa_pub_path = dir.join("sa.pub");
    if !sa_key_path.exists() || !sa_pub_path.exists() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        write_private(&sa_key_path, &key.serialize_pem())?;
        fs::write(&sa_pub_path, key.public_key_pem())?;
    }

    Ok(Pki {
        ca_cert,
        ca_key: ca_key_pem,
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        admin_cert: read(&admin_crt_path)?,
        admin_key: read(&admin_key_path)?,
        sa_key: read(&sa_key_path)?,
        sa_pub: read(&sa_pub_path)?,
        join_token: join_token(data_dir)?,
    })
}

/// A client certificate and its key (PEM), as [`issue_client`] makes them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClientCredentials {
    /// The certificate, signed by the cluster CA.
    pub certificate: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// A client certificate for `user` in `groups` (CN and O, as kube-apiserver reads them),
/// signed by the cluster CA, valid for a year.
pub(crate) fn issue_client(pki: &Pki, user: &str, groups: &[&str]) -> Result<ClientCredentials> {
    let ca_key = KeyPair::from_pem(&pki.ca_key).context("parsing the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&pki.ca_cert, &ca_key).context("parsing the CA")?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.distinguished_name.push(DnType::CommonName, user);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    // A little back-dating tolerates clocks a few minutes apart, as kube's signer does.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365);
    let cert = params
        .signed_by(&key, &issuer)
        .with_context(|| format!("signing a client certificate for {user}"))?;
    Ok(ClientCredentials {
        certificate: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Key under which the cluster-wide secrets live in the datastore, so that every server
/// of a cluster shares one CA, one service-account key and one join token (k3s keeps its
/// bootstrap data in the datastore likewise). Anyone who can read the datastore can read
/// every Secret of the cluster too, so the values are stored as they are on disk.
const SHARED_KEY: &str = "/registry/skiff/bootstrap";

/// The files under the data dir that make up the cluster-wide secrets; the serving
/// certificate stays per server.
const SHARED_FILES: [&str; 7] = [
    "pki/ca.crt",
    "pki/ca.key",
    "pki/admin.crt",
    "pki/admin.key",
    "pki/sa.key",
    "pki/sa.pub",
    "token",
];

/// If the datastore already holds a cluster's secrets, writes them into `data_dir`
/// (replacing local ones: the datastore's cluster wins). Returns whether it did.
pub(crate) fn adopt_shared(data_dir: &Path, store: &dyn skiff_store::Store) -> Result<bool> {
    let Some(kv) = store
        .get(SHARED_KEY)
        .context("reading the shared secrets")?
    else {
        return Ok(false);
    };
    let files: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&kv.value).context("decoding the shared secrets")?;
    private_dir(&pki_dir(data_dir))?;
    for name in SHARED_FILES {
        let Some(text) = files.get(name) else {
            anyhow::bail!("the datastore's shared secrets lack {name}");
        };
        let path = data_dir.join(name);
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if path.exists() {
                tracing::warn!(file = %path.display(), "replacing with the datastore's copy");
            }
            write_private(&path, text)?;
        }
    }
    Ok(true)
}

/// Stores `data_dir`'s cluster-wide secrets in the datastore unless some are there
/// already. Returns `false` when another server stored its own first.
pub(crate) fn publish_shared(data_dir: &Path, store: &dyn skiff_store::Store) -> Result<bool> {
    let mut files = std::collections::BTreeMap::new();
    for name in SHARED_FILES {
        files.insert(name, read(&data_dir.join(name))?);
    }
    let value = serde_json::to_vec(&files).context("encoding the shared secrets")?;
    match store.create(SHARED_KEY, &value) {
        Ok(_) => Ok(true),
        Err(skiff_store::StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e).context("storing the shared secrets"),
    }
}

/// The join token agents authenticate with (`<6 chars>.<16 chars>`, as kubeadm's), made
/// on first use and kept in `<data-dir>/token`.
pub fn join_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("token");
    if let Ok(t) = fs::read_to_string(&path) {
        let t = t.trim();
        if !t.is_empty() {
            return Ok(t.to_string());
        }
    }
    private_dir(data_dir)?;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut part = |n: usize| -> String {
        (0..n)
            .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
            .collect()
    };
    let token = format!("{}.{}", part(6), part(16));
    write_private(&path, &format!("{token}\n"))?;
    Ok(token)
}

/// A kubeconfig for the admin user of the cluster at `server_url`, with the CA and the
/// admin client certificate embedded. The cluster, user and context are all named
/// `cluster_name`.
pub fn admin_kubeconfig(data_dir: &Path, server_url: &str, cluster_name: &str) -> Result<String> {
    let dir = pki_dir(data_dir);
    let b64 = |p: &str| -> Result<String> {
        Ok(base64::engine::general_purpose::STANDARD.encode(read(&dir.join(p))?))
    };
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server_url}
  name: {cluster_name}
contexts:
- context:
    cluster: {cluster_name}
    user: {cluster_name}
  name: {cluster_name}
current-context: {cluster_name}
preferences: {{}}
users:
- name: {cluster_name}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64("ca.crt")?,
        cert = b64("admin.crt")?,
        key = b64("admin.key")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure(
            dir.path(),
            Ipv4Addr::new(10, 0, 0, 1),
            &["example.org".into()],
        )
        .unwrap();
        let b = ensure(dir.path(), Ipv4Addr::new(10, 0, 0, 2), &[]).unwrap();
        assert_eq!(a.ca_cert, b.ca_cert);
        assert_eq!(a.admin_cert, b.admin_cert);
        assert_eq!(a.join_token, b.join_token);
        assert_ne!(a.server_cert, b.server_cert);
        let tok = &a.join_token;
        assert_eq!(tok.len(), 23);
        assert_eq!(tok.as_bytes()[6], b'.');
        let kc = admin_kubeconfig(dir.path(), "https://127.0.0.1:6443", "skiff").unwrap();
        assert!(kc.contains("server: https://127.0.0.1:6443"));
        assert!(kc.contains("current-context: skiff"));
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn secrets_are_private_and_old_modes_are_narrowed() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("server");
        secure_data_dir(&data).unwrap();
        ensure(&data, Ipv4Addr::new(10, 0, 0, 1), &[]).unwrap();
        let secrets = [
            "token",
            "pki/ca.key",
            "pki/apiserver.key",
            "pki/admin.key",
            "pki/sa.key",
        ];
        for f in secrets {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("pki")), 0o700);
        // What an older version left: everything readable by everyone.
        let wide =
            |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        wide(&data, 0o755);
        wide(&data.join("pki"), 0o755);
        for f in secrets {
            wide(&data.join(f), 0o644);
        }
        fs::write(data.join("state.db"), "").unwrap();
        wide(&data.join("state.db"), 0o644);
        secure_data_dir(&data).unwrap();
        for f in secrets.iter().chain(&["state.db"]) {
            assert_eq!(mode(&data.join(f)), 0o600, "{f} narrowed");
        }
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("pki")), 0o700);
        // Public parts stay readable.
        assert_eq!(mode(&data.join("pki/ca.crt")) & 0o044, 0o044);
    }

    #[test]
    fn servers_on_one_datastore_share_the_cluster_secrets() {
        let store = skiff_store::SqliteStore::in_memory().unwrap();
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // The first server makes the secrets and publishes them.
        assert!(!adopt_shared(one.path(), &store).unwrap());
        let a = ensure(one.path(), Ipv4Addr::new(10, 0, 0, 1), &[]).unwrap();
        assert!(publish_shared(one.path(), &store).unwrap());
        // The second had made its own once; the datastore's replace them.
        let own = ensure(two.path(), Ipv4Addr::new(10, 0, 0, 2), &[]).unwrap();
        assert_ne!(own.ca_cert, a.ca_cert);
        assert!(adopt_shared(two.path(), &store).unwrap());
        let b = ensure(two.path(), Ipv4Addr::new(10, 0, 0, 2), &[]).unwrap();
        assert!(!publish_shared(two.path(), &store).unwrap());
        assert_eq!(a.ca_cert, b.ca_cert);
        assert_eq!(a.sa_key, b.sa_key);
        assert_eq!(a.join_token, b.join_token);
        assert_eq!(a.admin_cert, b.admin_cert);
        assert_ne!(a.server_cert, b.server_cert);
    }
}
