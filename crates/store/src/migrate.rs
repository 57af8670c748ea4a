//! Copying a whole store into another (`skiff datastore migrate`).
//!
//! Values are copied byte for byte; revisions are not (the target numbers its own
//! writes), so every object's `resourceVersion` changes and clients must relist. Run it
//! with the servers stopped: writes during the copy may be missed.

use std::collections::BTreeSet;

use crate::{Store, StoreError};

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The target holds keys and overwriting was not asked for.
    #[error("the target datastore is not empty ({0} keys); force to replace its contents")]
    TargetNotEmpty(usize),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Keys written to the target.
    pub copied: usize,
    /// Keys removed from the target because the source does not have them (with force).
    pub removed: usize,
    /// The source's revision the copy was read at.
    pub source_revision: i64,
}

/// Copies every key of `from` into `to`. A non-empty target is refused unless `force`,
/// which makes the target's contents equal to the source's (keys it alone has are
/// deleted).
pub fn migrate(
    from: &dyn Store,
    to: &dyn Store,
    force: bool,
) -> Result<MigrateReport, MigrateError> {
    let (existing, _) = to.list("")?;
    if !existing.is_empty() && !force {
        return Err(MigrateError::TargetNotEmpty(existing.len()));
    }
    let (items, source_revision) = from.list("")?;
    let mut present: BTreeSet<String> = existing.into_iter().map(|kv| kv.key).collect();
    let mut copied = 0;
    for kv in &items {
        if present.remove(&kv.key) {
            to.update(&kv.key, &kv.value, None)?;
        } else {
            to.create(&kv.key, &kv.value)?;
        }
        copied += 1;
    }
    let removed = present.len();
    for key in present {
        to.delete(&key, None)?;
    }
    Ok(MigrateReport {
        copied,
        removed,
        source_revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    #[test]
    fn copies_values_and_refuses_a_non_empty_target() {
        let from = SqliteStore::in_memory().unwrap();
        from.create("/registry/a", b"1").unwrap();
        from.create("/registry/b", b"2").unwrap();
        from.update("/registry/b", b"3", None).unwrap();
        let to = SqliteStore::in_memory().unwrap();
        to.create("/registry/stale", b"x").unwrap();
        assert!(matches!(
            migrate(&from, &to, false),
            Err(MigrateError::TargetNotEmpty(1))
        ));
        to.create("/registry/a", b"old").unwrap();
        let report = migrate(&from, &to, true).unwrap();
        assert_eq!((report.copied, report.removed), (2, 1));
        let (items, _) = to.list("").unwrap();
        let got: Vec<_> = items
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![("/registry/a", &b"1"[..]), ("/registry/b", &b"3"[..])]
        );
    }
}
