//! Datastore URLs: which backend a server uses, as k3s's `--datastore-endpoint`.
//!
//! - `sqlite:///var/lib/skiff/server/state.db`: one SQLite file (one server).
//! - `etcd://10.0.0.1:2379,10.0.0.2:2379/cluster-a`: an etcd cluster; the path, if any, is
//!   a key prefix so that several clusters can share one etcd (without it, keys are
//!   Kubernetes' own `/registry/...`). TLS comes from [`OpenOptions::etcd_tls`].

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::{EtcdConfig, EtcdStore, EtcdTls, SqliteStore, Store, StoreError};

/// A parsed datastore URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// An etcd cluster.
    Etcd {
        /// `host:port` of each member.
        endpoints: Vec<String>,
        /// Key prefix (empty, or `/name`).
        prefix: String,
    },
}

impl FromStr for Datastore {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, StoreError> {
        let invalid =
            |why: &str| StoreError::Backend(format!("invalid datastore URL {url:?}: {why}"));
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(invalid("no file path (sqlite:///path/state.db)"));
            }
            return Ok(Datastore::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("etcd://") {
            let (hosts, prefix) = match rest.find('/') {
                Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
                None => (rest, ""),
            };
            let endpoints: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect();
            if endpoints.is_empty() {
                return Err(invalid(
                    "no etcd endpoint (etcd://host:2379[,host:2379...])",
                ));
            }
            if let Some(bad) = endpoints.iter().find(|h| !h.contains(':')) {
                return Err(invalid(&format!("endpoint {bad:?} has no port")));
            }
            return Ok(Datastore::Etcd {
                endpoints,
                prefix: prefix.to_string(),
            });
        }
        Err(invalid(
            "expected sqlite:///path or etcd://host:port[,host:port...][/prefix]",
        ))
    }
}

/// Settings of [`open_with`] that do not fit in a URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Client certificates for etcd (ignored for SQLite).
    pub etcd_tls: EtcdTls,
}

/// Opens the datastore a URL names, without TLS.
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, &OpenOptions::default())
}

/// Opens the datastore a URL names: creates the SQLite file if needed, or connects to
/// etcd and checks that it answers.
pub fn open_with(url: &str, options: &OpenOptions) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url.parse::<Datastore>()? {
        Datastore::Sqlite(path) => Arc::new(SqliteStore::open(&path)?),
        Datastore::Etcd { endpoints, prefix } => {
            let mut config = EtcdConfig::new(endpoints);
            config.prefix = prefix;
            config.tls = Some(options.etcd_tls.clone()).filter(EtcdTls::is_set);
            Arc::new(EtcdStore::connect(&config)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd(endpoints: &[&str], prefix: &str) -> Datastore {
        Datastore::Etcd {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            "sqlite:///var/lib/skiff/state.db"
                .parse::<Datastore>()
                .unwrap(),
            Datastore::Sqlite("/var/lib/skiff/state.db".into())
        );
        assert_eq!(
            "etcd://10.0.0.1:2379".parse::<Datastore>().unwrap(),
            etcd(&["10.0.0.1:2379"], "")
        );
        assert_eq!(
            "etcd://a:2379,b:2379, c:2379/cluster-a/"
                .parse::<Datastore>()
                .unwrap(),
            etcd(&["a:2379", "b:2379", "c:2379"], "/cluster-a")
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for (url, why) in [
            ("postgres://x", "expected sqlite"),
            ("sqlite://", "no file path"),
            ("etcd://", "no etcd endpoint"),
            ("etcd://host/x", "has no port"),
        ] {
            let err = url.parse::<Datastore>().unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn opens_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let s = open(&url).unwrap();
        assert!(s.create("/k", b"v").unwrap() > 0);
        assert!(dir.path().join("s.db").exists());
    }
}
