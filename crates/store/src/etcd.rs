//! The etcd backend: the store's keys under a prefix in an etcd v3 cluster.
//!
//! Revisions are etcd's own (one counter for the whole etcd keyspace), so an object's
//! `resourceVersion` is its key's mod revision, as in Kubernetes. Conditional writes are
//! single transactions comparing the key's create/mod revision; a failed comparison reads
//! the key in the same transaction to tell NotFound from Conflict. Watches use etcd's
//! watch API with `prev_kv` and resume by themselves when a member goes away.
//!
//! Compaction: etcd's compact revision `N` keeps every event from `N` on, so the store's
//! "compacted revision" (the last forgotten one) is `N - 1`, and [`Store::compact`]`(r)`
//! compacts etcd at `r + 1`. etcd does not report its compact revision directly; a read
//! at a compacted revision fails, so [`Store::compacted_revision`] finds it by bisection.

mod bridge;
mod retry;
mod watch;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn,
    TxnOp, TxnOpResponse,
};

use crate::{KeyValue, Store, StoreError, WatchReceiver};
use bridge::Bridge;
use retry::{retry, retry_write, Kind};

/// How long one store call may take, retries included.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings find a dead connection (a member that vanished without closing it).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Client certificate settings (PEM files), as kube-apiserver's `--etcd-cafile`,
/// `--etcd-certfile` and `--etcd-keyfile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle that signed the members' serving certificates (default: none, which
    /// fails against a private CA).
    pub ca_file: Option<PathBuf>,
    /// Client certificate presented to the members.
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate.
    pub key_file: Option<PathBuf>,
}

impl EtcdTls {
    /// Whether any file is set (then the endpoints are spoken to over TLS).
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    fn options(&self) -> Result<etcd_client::TlsOptions, StoreError> {
        let read = |p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| StoreError::Backend(format!("reading {}: {e}", p.display())))
        };
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca_file {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Backend(
                    "an etcd client certificate needs both a certificate and a key file".into(),
                ))
            }
        }
        Ok(tls)
    }
}

/// Where and how to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs or `host:port` pairs of the members.
    pub endpoints: Vec<String>,
    /// Prepended to every key, e.g. `/cluster-a` so that two clusters share one etcd
    /// (`/cluster-a/registry/...`). Empty: the Kubernetes layout (`/registry/...`).
    pub prefix: String,
    /// Client certificates; `None` speaks plain HTTP/2.
    pub tls: Option<EtcdTls>,
    /// How long one store call may take, retries included.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// A configuration for `endpoints` with no prefix, no TLS and the default timeout.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: String::new(),
            tls: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A [`Store`] in etcd.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    prefix: String,
    timeout: Duration,
    /// `(when, current revision)` taken by each [`Store::compact_old`] call: the history
    /// kept is chosen by age from these.
    samples: Mutex<VecDeque<(Instant, i64)>>,
    /// Declared last: the runtime shuts down after the client is dropped.
    bridge: Bridge,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers (a linearizable read, which
    /// needs a leader).
    pub fn connect(config: &EtcdConfig) -> Result<Self, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd endpoints given".into()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            // A member cut off from its peers refuses instead of serving stale watches.
            .with_require_leader(true);
        if let Some(tls) = config.tls.as_ref().filter(|t| t.is_set()) {
            options = options.with_tls(tls.options()?);
        }
        let bridge = Bridge::new()?;
        let endpoints = config.endpoints.clone();
        let client = bridge.run(async move {
            Client::connect(&endpoints, Some(options))
                .await
                .map_err(|e| retry::backend(&format!("connecting to {endpoints:?}"), e))
        })?;
        let store = EtcdStore {
            inner: Arc::new(Inner {
                client,
                prefix: config.prefix.trim_end_matches('/').to_string(),
                timeout: config.request_timeout,
                samples: Mutex::new(VecDeque::new()),
                bridge,
            }),
        };
        store.current_revision().map_err(|e| {
            StoreError::Backend(format!(
                "etcd at {} does not answer: {e}",
                config.endpoints.join(",")
            ))
        })?;
        Ok(store)
    }

    /// The prefix every key is stored under.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// A key that is never written: reads of it only fetch the response header.
    fn probe_key(&self) -> String {
        format!("{}\u{0}skiff-probe", self.inner.prefix)
    }

    /// Runs `f` with a client on the store's runtime and waits for it.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Client, Duration, usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let fut = f(
            self.inner.client.clone(),
            self.inner.timeout,
            self.inner.prefix.len(),
        );
        self.inner.bridge.run(fut)
    }

    /// etcd's compact revision: the oldest revision a read or watch may start at (1
    /// when nothing was compacted), found by bisection on reads at old revisions.
    fn etcd_compact_revision(&self) -> Result<i64, StoreError> {
        let probe = self.probe_key();
        self.call(move |client, timeout, _| async move {
            let current = header_revision(&client, &probe, timeout).await?;
            etcd_compact_revision(&client, &probe, current, timeout).await
        })
    }

    /// The conditional transaction of update and delete: the key exists (and has
    /// `expected` as mod revision); else the key is read to tell why not.
    /// `written` is the value a put writes: a retried put whose comparison failed because
    /// an earlier attempt was applied finds it in the key.
    fn conditional(
        &self,
        key: &str,
        expected: Option<i64>,
        then: TxnOp,
        written: Option<Vec<u8>>,
    ) -> Result<(i64, Option<TxnOpResponse>), StoreError> {
        let full = self.full_key(key);
        let key = key.to_string();
        self.call(move |client, timeout, _| async move {
            let mut compares = vec![Compare::create_revision(
                full.clone(),
                CompareOp::Greater,
                0,
            )];
            if let Some(e) = expected {
                compares.push(Compare::mod_revision(full.clone(), CompareOp::Equal, e));
            }
            let txn = Txn::new()
                .when(compares)
                .and_then(vec![then])
                .or_else(vec![TxnOp::get(full.clone(), None)]);
            let (resp, retried) = retry_write("transaction", timeout, || {
                let mut kv = kv_client(&client);
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
            let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
            if resp.succeeded() {
                return Ok((rev, resp.op_responses().into_iter().next()));
            }
            let current = first_kv(resp.op_responses());
            if let (true, Some(kv), Some(written)) = (retried, &current, &written) {
                if kv.value() == written.as_slice()
                    && expected.is_none_or(|e| kv.mod_revision() > e)
                {
                    return Ok((kv.mod_revision(), None));
                }
            }
            Err(match (current.map(|kv| kv.mod_revision()), expected) {
                (Some(actual), Some(expected)) => StoreError::Conflict {
                    key,
                    expected,
                    actual,
                },
                _ => StoreError::NotFound(key),
            })
        })
    }
}

/// A KV client that accepts responses of any size: gRPC's default limit (4 MiB) fails
/// lists of a few thousand objects, which etcd sends in one message.
fn kv_client(client: &Client) -> etcd_client::KvClient {
    client.kv_client().max_decoding_message_size(MAX_MESSAGE)
}

/// The largest response accepted (etcd's own send limit is 2 GiB).
pub(crate) const MAX_MESSAGE: usize = i32::MAX as usize;

/// The key-value a transaction's first operation (a get) read, if any.
fn first_kv(ops: Vec<TxnOpResponse>) -> Option<etcd_client::KeyValue> {
    match ops.into_iter().next() {
        Some(TxnOpResponse::Get(mut g)) => g.take_kvs().into_iter().next(),
        _ => None,
    }
}

/// The revision in the header of a read of `probe` (the store's current revision).
async fn header_revision(
    client: &Client,
    probe: &str,
    timeout: Duration,
) -> Result<i64, StoreError> {
    let resp = retry("read", timeout, || {
        let mut kv = kv_client(client);
        let probe = probe.to_string();
        async move {
            kv.get(probe, Some(GetOptions::new().with_count_only()))
                .await
        }
    })
    .await?;
    Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
}

/// Whether a read at `revision` is still possible (not compacted).
async fn readable_at(
    client: &Client,
    probe: &str,
    revision: i64,
    timeout: Duration,
) -> Result<bool, StoreError> {
    let mut kv = kv_client(client);
    let options = GetOptions::new().with_count_only().with_revision(revision);
    match tokio::time::timeout(timeout, kv.get(probe.to_string(), Some(options))).await {
        Err(_) => Err(StoreError::Backend(format!(
            "etcd read at revision {revision}: no answer within {timeout:?}"
        ))),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => match retry::kind(&e) {
            Kind::Compacted => Ok(false),
            Kind::FutureRevision => Ok(true),
            _ => Err(retry::backend("read at an old revision", e)),
        },
    }
}

/// The smallest revision a read may use (etcd's compact revision, 1 if none).
async fn etcd_compact_revision(
    client: &Client,
    probe: &str,
    current: i64,
    timeout: Duration,
) -> Result<i64, StoreError> {
    if readable_at(client, probe, 1, timeout).await? {
        return Ok(1);
    }
    // Invariant: `lo` is compacted, `hi` is readable (the current revision always is).
    let (mut lo, mut hi) = (1, current.max(1));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if readable_at(client, probe, mid, timeout).await? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Converts one of etcd's key-values, stripping the store's prefix.
fn convert(prefix_len: usize, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = kv
        .key()
        .get(prefix_len..)
        .ok_or_else(|| StoreError::Backend("etcd returned a key outside the prefix".into()))?;
    let key = String::from_utf8(key.to_vec())
        .map_err(|_| StoreError::Backend("etcd returned a key that is not UTF-8".into()))?;
    Ok(KeyValue {
        key,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let full = self.full_key(key);
        self.call(move |client, timeout, prefix_len| async move {
            let resp = retry("read", timeout, || {
                let mut kv = kv_client(&client);
                let full = full.clone();
                async move { kv.get(full, None).await }
            })
            .await?;
            resp.kvs()
                .first()
                .map(|kv| convert(prefix_len, kv))
                .transpose()
        })
    }

    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let full = self.full_key(prefix);
        self.call(move |client, timeout, prefix_len| async move {
            let resp = retry("list", timeout, || {
                let mut kv = kv_client(&client);
                let full = full.clone();
                // etcd returns a range in key order.
                async move { kv.get(full, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
            let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
            let items = resp
                .kvs()
                .iter()
                .map(|kv| convert(prefix_len, kv))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((items, rev))
        })
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<i64, StoreError> {
        let full = self.full_key(key);
        let key = key.to_string();
        let value = value.to_vec();
        self.call(move |client, timeout, _| async move {
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    full.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![TxnOp::put(full.clone(), value.clone(), None)])
                .or_else(vec![TxnOp::get(full.clone(), None)]);
            let (resp, retried) = retry_write("create", timeout, || {
                let mut kv = kv_client(&client);
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
            if resp.succeeded() {
                return Ok(resp.header().map(|h| h.revision()).unwrap_or_default());
            }
            if retried {
                // An earlier attempt may have created the key: then it holds our bytes.
                if let Some(kv) = first_kv(resp.op_responses()) {
                    if kv.value() == value.as_slice() {
                        return Ok(kv.mod_revision());
                    }
                }
            }
            Err(StoreError::AlreadyExists(key))
        })
    }

    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError> {
        let put = TxnOp::put(self.full_key(key), value.to_vec(), None);
        let (rev, _) = self.conditional(key, expected_mod_revision, put, Some(value.to_vec()))?;
        Ok(rev)
    }

    fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<(KeyValue, i64), StoreError> {
        let del = TxnOp::delete(
            self.full_key(key),
            Some(DeleteOptions::new().with_prev_key()),
        );
        let (rev, resp) = self.conditional(key, expected_mod_revision, del, None)?;
        let prev = match resp {
            Some(TxnOpResponse::Delete(d)) => d.prev_kvs().first().cloned(),
            _ => None,
        };
        let prev = prev.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        Ok((convert(self.inner.prefix.len(), &prev)?, rev))
    }

    fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchReceiver, StoreError> {
        let full = self.full_key(prefix);
        let probe = self.probe_key();
        let handle = self.inner.bridge.handle().clone();
        self.call(move |client, timeout, prefix_len| async move {
            // A watch at a compacted revision is only cancelled asynchronously (etcd
            // checks its unsynced watchers every 100 ms); a read at the same revision
            // fails at once under the same rule, so it answers TooOld synchronously.
            if !readable_at(&client, &probe, from_revision + 1, timeout).await? {
                let current = header_revision(&client, &probe, timeout).await?;
                let compacted = etcd_compact_revision(&client, &probe, current, timeout).await?;
                return Err(StoreError::TooOld {
                    requested: from_revision,
                    compacted: compacted - 1,
                });
            }
            let w = watch::Watch {
                client,
                key: full,
                prefix_len,
                timeout,
            };
            let stream = w
                .open(from_revision)
                .await
                .map_err(|e| e.into_store_error(from_revision))?;
            Ok(w.spawn(&handle, stream, from_revision))
        })
    }

    fn current_revision(&self) -> Result<i64, StoreError> {
        let probe = self.probe_key();
        self.call(move |client, timeout, _| async move {
            header_revision(&client, &probe, timeout).await
        })
    }

    fn compacted_revision(&self) -> Result<i64, StoreError> {
        Ok(self.etcd_compact_revision()? - 1)
    }

    fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let probe = self.probe_key();
        self.call(move |client, timeout, _| async move {
            // Forgetting `revision` itself means compacting etcd at the next one; etcd
            // cannot compact past its current revision, whose event then stays.
            let current = header_revision(&client, &probe, timeout).await?;
            let target = (revision + 1).min(current);
            if target <= 1 {
                return Ok(());
            }
            let mut kv = kv_client(&client);
            // Physical: returns once the history is gone, so a watch right after a
            // compaction already sees TooOld.
            let options = CompactionOptions::new().with_physical();
            match tokio::time::timeout(timeout, kv.compact(target, Some(options))).await {
                Err(_) => Err(StoreError::Backend(format!(
                    "etcd compaction at {target}: no answer within {timeout:?}"
                ))),
                Ok(Ok(_)) => Ok(()),
                // Someone (another server, etcd's auto-compaction) compacted further.
                Ok(Err(e)) if retry::kind(&e) == Kind::Compacted => Ok(()),
                Ok(Err(e)) => Err(retry::backend(&format!("compaction at {target}"), e)),
            }
        })
    }

    fn list_at(&self, prefix: &str, revision: i64) -> Result<Vec<KeyValue>, StoreError> {
        let full = self.full_key(prefix);
        let probe = self.probe_key();
        self.call(move |client, timeout, prefix_len| async move {
            let mut kv = kv_client(&client);
            let options = GetOptions::new().with_prefix().with_revision(revision);
            let resp = match tokio::time::timeout(timeout, kv.get(full, Some(options))).await {
                Err(_) => {
                    return Err(StoreError::Backend(format!(
                        "etcd list at revision {revision}: no answer within {timeout:?}"
                    )))
                }
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) if retry::kind(&e) == Kind::Compacted => {
                    let current = header_revision(&client, &probe, timeout).await?;
                    let compacted =
                        etcd_compact_revision(&client, &probe, current, timeout).await?;
                    return Err(StoreError::TooOld {
                        requested: revision,
                        compacted: compacted - 1,
                    });
                }
                Ok(Err(e)) => {
                    return Err(retry::backend(&format!("list at revision {revision}"), e))
                }
            };
            resp.kvs()
                .iter()
                .map(|kv| convert(prefix_len, kv))
                .collect()
        })
    }

    fn compact_old(&self, keep_events: i64, keep_for: Duration) -> Result<i64, StoreError> {
        let current = self.current_revision()?;
        let now = Instant::now();
        let aged = {
            let mut samples = self.inner.samples.lock().unwrap_or_else(|p| p.into_inner());
            samples.push_back((now, current));
            // The newest sample at least `keep_for` old: its revision is the newest one
            // whose events are all that old.
            let mut aged = None;
            while let Some(&(at, rev)) = samples.front() {
                if now.duration_since(at) < keep_for {
                    break;
                }
                aged = Some(rev);
                samples.pop_front();
            }
            aged
        };
        if let Some(aged) = aged {
            let target = aged.min(current - keep_events);
            if target > 0 {
                self.compact(target)?;
            }
        }
        self.compacted_revision()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_cert_and_key_together() {
        let tls = EtcdTls {
            cert_file: Some("/nonexistent/c.pem".into()),
            ..Default::default()
        };
        assert!(tls.is_set());
        let err = tls.options().unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
        assert!(!EtcdTls::default().is_set());
    }

    #[test]
    fn tls_reports_unreadable_files() {
        let tls = EtcdTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = tls.options().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn no_endpoints_is_an_error() {
        let err = EtcdStore::connect(&EtcdConfig::new(vec![])).unwrap_err();
        assert!(err.to_string().contains("no etcd endpoints"), "{err}");
    }
}
