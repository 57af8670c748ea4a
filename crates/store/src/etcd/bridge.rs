//! The bridge between the synchronous [`crate::Store`] trait and the async etcd client.
//!
//! The store owns a small multi-thread tokio runtime. A synchronous call spawns its future
//! there and blocks on a std channel until the answer comes back. The caller's thread
//! never runs the future itself, so the caller may be a worker of any runtime (even a
//! current-thread one, whose only thread is then blocked while our runtime does the work):
//! nothing the future needs runs on the caller's runtime, so there is no deadlock, and no
//! `block_on` ever nests inside another runtime.

use std::future::Future;

use tokio::runtime::{Handle, Runtime};

use crate::StoreError;

/// Worker threads of the store's runtime: the work is I/O (gRPC over one HTTP/2
/// connection per endpoint), two threads keep a slow decode from stalling every call.
const WORKER_THREADS: usize = 2;

/// A runtime owned by one store.
pub(super) struct Bridge {
    handle: Handle,
    /// `Some` until drop.
    runtime: Option<Runtime>,
}

impl Bridge {
    /// Starts the runtime's threads.
    pub(super) fn new() -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("skiff-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("starting the etcd client runtime: {e}")))?;
        Ok(Bridge {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// The runtime's handle, to spawn background tasks (watches) on.
    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` on the store's runtime and blocks the calling thread until it is done.
    pub(super) fn run<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            // The receiver is gone only if the caller's thread died; nothing to tell.
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| {
            StoreError::Backend("the etcd client runtime stopped during a request".into())
        })?
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end and panics inside an async
        // context; the store is often dropped in one. Background shutdown does neither:
        // open watches end (their receivers see the channel close).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_futures_from_plain_threads() {
        let b = Bridge::new().unwrap();
        assert_eq!(b.run(async { Ok(7) }).unwrap(), 7);
    }

    #[test]
    fn does_not_deadlock_inside_a_current_thread_runtime() {
        let b = Bridge::new().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let v = rt.block_on(async {
            b.run(async {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                Ok(1)
            })
        });
        assert_eq!(v.unwrap(), 1);
    }

    #[tokio::test]
    async fn can_be_dropped_inside_a_runtime() {
        let b = Bridge::new().unwrap();
        b.handle().spawn(std::future::pending::<()>());
        drop(b);
    }
}
