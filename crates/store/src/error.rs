//! Errors of the store.

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The key does not exist.
    #[error("key {0} not found")]
    NotFound(String),
    /// The key exists already.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// The key's revision is not the expected one.
    #[error("key {key} has revision {actual}, expected {expected}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: i64,
        /// The key's revision.
        actual: i64,
    },
    /// The requested revision has been compacted away.
    #[error("required revision {requested} has been compacted (oldest is {compacted})")]
    TooOld {
        /// The revision asked for.
        requested: i64,
        /// The compacted revision; watches may start from it.
        compacted: i64,
    },
    /// The database failed.
    #[error("storage backend: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}
