//! skiff-store: a revisioned key-value store with watch.
//!
//! Every write gets the next value of one global, monotonically increasing revision; the
//! API server uses it as `resourceVersion`. A history of events is kept so that watches
//! can resume from a revision, also after a restart, until the history is compacted.
//! The store knows nothing about Kubernetes: keys are strings, values are bytes.
//!
//! The [`Store`] trait is synchronous (SQLite calls take microseconds); watches deliver
//! events on a tokio channel, so they must be opened from inside a tokio runtime.
//!
//! Two backends: [`SqliteStore`] (one file, one server) and [`EtcdStore`] (an etcd v3
//! cluster, several servers). [`open`] picks one from a datastore URL
//! (`sqlite:///path/state.db`, `etcd://host1:2379,host2:2379/prefix`); [`migrate`] copies
//! every key from one to another.

mod compactor;
mod datastore;
mod error;
mod etcd;
mod migrate;
mod sqlite;

pub use compactor::spawn_compactor;
pub use datastore::{open, open_with, Datastore, OpenOptions};
pub use error::StoreError;
pub use etcd::{EtcdConfig, EtcdStore, EtcdTls};
pub use migrate::{migrate, MigrateError, MigrateReport};
pub use sqlite::SqliteStore;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

/// One stored key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/pods/default/web`.
    pub key: String,
    /// The stored bytes (JSON text for the API server).
    pub value: Vec<u8>,
    /// Revision of the write that created this key.
    pub create_revision: i64,
    /// Revision of the last write to this key (the object's `resourceVersion`).
    pub mod_revision: i64,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created.
    Added,
    /// The key's value was replaced.
    Modified,
    /// The key was deleted.
    Deleted,
}

/// One change, as watches deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The key that changed.
    pub key: String,
    /// The new value; for [`EventKind::Deleted`] the last value before the deletion.
    pub value: Vec<u8>,
    /// The value before this change (`None` for [`EventKind::Added`]).
    pub prev_value: Option<Vec<u8>>,
    /// Revision of this change.
    pub revision: i64,
}

/// A watch: events in revision order, or one [`StoreError::TooOld`] and the end.
/// Events are shared (`Arc`): a write is seen by every watcher of its prefix, and
/// copying the object per watcher cost thousands of copies per write with a watch per
/// node.
pub type WatchReceiver = mpsc::Receiver<Result<Arc<Event>, StoreError>>;

/// A revisioned key-value store.
pub trait Store: Send + Sync {
    /// The key's current value, if any.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// Every key starting with `prefix`, in key order, and the store's current revision.
    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StoreError>;
    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists. Returns the
    /// new revision.
    fn create(&self, key: &str, value: &[u8]) -> Result<i64, StoreError>;
    /// Replaces `key`'s value. With `expected_mod_revision`, only if the key's
    /// `mod_revision` is that (else [`StoreError::Conflict`]). Fails with
    /// [`StoreError::NotFound`] if the key does not exist. Returns the new revision.
    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError>;
    /// Deletes `key` (only if its `mod_revision` is `expected_mod_revision` when given).
    /// Returns the deleted value and the revision of the deletion.
    fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<(KeyValue, i64), StoreError>;
    /// Events for keys starting with `prefix` with revisions greater than
    /// `from_revision`. Fails with [`StoreError::TooOld`] when that part of the history
    /// has been compacted. Must be called within a tokio runtime.
    fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchReceiver, StoreError>;
    /// The revision of the last write.
    fn current_revision(&self) -> Result<i64, StoreError>;
    /// The oldest revision a watch may start from.
    fn compacted_revision(&self) -> Result<i64, StoreError>;
    /// Forgets history up to and including `revision`.
    fn compact(&self, revision: i64) -> Result<(), StoreError>;
    /// Compacts the history older than both the last `keep_events` events and
    /// `keep_for` (the age is measured from the calls, so call it periodically: see
    /// [`spawn_compactor`]). Returns the compacted revision.
    fn compact_old(&self, keep_events: i64, keep_for: Duration) -> Result<i64, StoreError>;
    /// The keys starting with `prefix` as they were at `revision` (no later than the
    /// current one), in key order: `resourceVersionMatch=Exact` lists. Fails with
    /// [`StoreError::TooOld`] when that state has been compacted away.
    fn list_at(&self, prefix: &str, revision: i64) -> Result<Vec<KeyValue>, StoreError>;
}

/// A shared store is a store: an `Arc<dyn Store>` (what [`open`] returns) goes wherever a
/// store is expected, and its methods resolve through the trait like a concrete store's.
impl<S: Store + ?Sized> Store for Arc<S> {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        (**self).get(key)
    }
    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StoreError> {
        (**self).list(prefix)
    }
    fn create(&self, key: &str, value: &[u8]) -> Result<i64, StoreError> {
        (**self).create(key, value)
    }
    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError> {
        (**self).update(key, value, expected_mod_revision)
    }
    fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<(KeyValue, i64), StoreError> {
        (**self).delete(key, expected_mod_revision)
    }
    fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchReceiver, StoreError> {
        (**self).watch(prefix, from_revision)
    }
    fn current_revision(&self) -> Result<i64, StoreError> {
        (**self).current_revision()
    }
    fn compacted_revision(&self) -> Result<i64, StoreError> {
        (**self).compacted_revision()
    }
    fn compact(&self, revision: i64) -> Result<(), StoreError> {
        (**self).compact(revision)
    }
    fn compact_old(&self, keep_events: i64, keep_for: Duration) -> Result<i64, StoreError> {
        (**self).compact_old(keep_events, keep_for)
    }
    fn list_at(&self, prefix: &str, revision: i64) -> Result<Vec<KeyValue>, StoreError> {
        (**self).list_at(prefix, revision)
    }
}
