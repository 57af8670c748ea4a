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
            } else if s.code() == tonic::Code::Unavailable
                // A connection that broke mid-request (a member killed): tonic reports
                // it as `Unknown` with this message and the transport error as source.
                || (s.code() == tonic::Code::Unknown && msg == "transport error")
            {
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

/// How long one attempt of a write may take before it is retried. etcd answers "request
/// timed out" only after 7 s (5 s plus two election timeouts) when a proposal was dropped
/// in a leader change; a new attempt after an election (about 1 s) succeeds sooner.
const WRITE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a read until it succeeds, fails with an error other than [`Kind::Unavailable`],
/// or `timeout` has passed.
pub(super) async fn retry<T, F, Fut>(what: &str, timeout: Duration, op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    Ok(attempts(what, timeout, timeout, op).await?.0)
}

/// Runs a write as [`retry`] does, giving each attempt [`WRITE_ATTEMPT_TIMEOUT`]. Returns
/// whether there was more than one attempt: an earlier one may have been applied without
/// its answer arriving (the connection broke, or it was slow), so a failed comparison may
/// be the caller's own write. Transactions compare revisions, so no attempt applies a
/// change on top of another one.
pub(super) async fn retry_write<T, F, Fut>(
    what: &str,
    timeout: Duration,
    op: F,
) -> Result<(T, bool), StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let (v, tries) = attempts(what, timeout, WRITE_ATTEMPT_TIMEOUT, op).await?;
    Ok((v, tries > 1))
}

/// Tries `op` until it succeeds or fails for a reason other than unavailability or an
/// attempt's timeout, within `timeout` in all. Returns the result and the attempts made.
async fn attempts<T, F, Fut>(
    what: &str,
    timeout: Duration,
    attempt_timeout: Duration,
    mut op: F,
) -> Result<(T, u32), StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + timeout;
    let mut backoff = FIRST_BACKOFF;
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt_deadline = (Instant::now() + attempt_timeout).min(deadline);
        let why = match tokio::time::timeout_at(attempt_deadline, op()).await {
            Ok(Ok(v)) => return Ok((v, tries)),
            Ok(Err(e)) if kind(&e) == Kind::Unavailable => e.to_string(),
            Ok(Err(e)) => return Err(backend(what, e)),
            Err(_) => format!("no answer within {attempt_timeout:?}"),
        };
        if Instant::now() + backoff >= deadline {
            return Err(StoreError::Backend(format!(
                "etcd {what}: {why} (gave up after {tries} attempts in {timeout:?})"
            )));
        }
        tracing::debug!("etcd {what}: {why}; retrying in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg))
    }

    #[test]
    fn errors_are_classified() {
        use tonic::Code;
        assert_eq!(
            kind(&status(Code::Unavailable, "no leader")),
            Kind::Unavailable
        );
        assert_eq!(
            kind(&status(Code::Unknown, "transport error")),
            Kind::Unavailable
        );
        assert_eq!(kind(&status(Code::Unknown, "something else")), Kind::Other);
        assert_eq!(
            kind(&status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted"
            )),
            Kind::Compacted
        );
        assert_eq!(
            kind(&status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision"
            )),
            Kind::FutureRevision
        );
        assert_eq!(
            kind(&status(Code::FailedPrecondition, "key exists")),
            Kind::Other
        );
    }
}
