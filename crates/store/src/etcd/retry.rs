//! Deadlines, retries and the classification of etcd's errors.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::StoreError;

/// First pause before retrying a request that found no reachable member or no leader.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What an etcd error means to the store.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// The member could not be reached or has no leader: another try (through another
    /// member, or after an election) may succeed.
    Unavailable,
    /// The requested revision has been compacted.
    Compacted,
    /// The requested revision is newer than the store's.
    FutureRevision,
    /// Anything else.
    Other,
}

/// Classifies an error by its gRPC code and etcd's messages (etcd's `rpctypes` errors
/// carry no structured detail beyond the code).
pub(super) fn kind(e: &etcd_client::Error) -> Kind {
    match e {
        etcd_client::Error::TransportError(_) => Kind::Unavailable,
        etcd_client::Error::GRpcStatus(s) => {
            let msg = s.message();
            if msg.contains("required revision has been compacted") {
                Kind::Compacted
            } else if msg.contains("required revision is a future revision") {
                Kind::FutureRevision
            } else if s.code() == tonic::Code::Unavailable {
                Kind::Unavailable
            } else {
                Kind::Other
            }
        }
        _ => Kind::Other,
    }
}

/// A store error for a failed etcd request.
pub(super) fn backend(what: &str, e: etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd {what}: {e}"))
}

/// Runs `op` until it succeeds, fails with an error other than [`Kind::Unavailable`], or
/// `timeout` has passed. Writes are retried too: etcd answers "unavailable" before a
/// proposal is committed (no leader, leader changed, connection refused), so the retry
/// does not apply a change twice; when a connection breaks after the commit, a retried
/// create reports AlreadyExists and a retried conditional update Conflict, which callers
/// already handle by re-reading.
pub(super) async fn retry<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + timeout;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match tokio::time::timeout_at(deadline, op()).await {
            Err(_) => {
                return Err(StoreError::Backend(format!(
                    "etcd {what}: no answer within {timeout:?}"
                )))
            }
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if kind(&e) == Kind::Unavailable && Instant::now() + backoff < deadline => {
                tracing::debug!("etcd {what}: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Ok(Err(e)) => return Err(backend(what, e)),
        }
    }
}
