//! Reads of the past: the keys under a prefix as they were at an old revision, rebuilt
//! from the current rows and the history after that revision (undone newest first).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{history_since, meta, row_to_kv};
use crate::{EventKind, KeyValue, StoreError};

/// The keys under `prefix` at `revision`. The revisions of a restored key come from the
/// history when it still holds them; a key last written before the compacted revision
/// gets `revision` as its mod revision (the closest bound known).
pub(super) fn list_at(
    conn: &Connection,
    prefix: &str,
    revision: i64,
) -> Result<Vec<KeyValue>, StoreError> {
    let current = meta(conn, "revision")?;
    if revision > current {
        return Err(StoreError::Backend(format!(
            "revision {revision} is newer than the store's {current}"
        )));
    }
    let later = history_since(conn, prefix, revision)?;
    let mut keys: BTreeMap<String, KeyValue> = conn
        .prepare_cached(
            "SELECT key, value, create_rev, mod_rev FROM kv
             WHERE substr(key, 1, length(?1)) = ?1",
        )?
        .query_map(params![prefix], row_to_kv)?
        .map(|kv| kv.map(|kv| (kv.key.clone(), kv)))
        .collect::<Result<_, _>>()?;
    for ev in later.iter().rev() {
        match ev.kind {
            EventKind::Added => {
                keys.remove(&ev.key);
            }
            EventKind::Modified | EventKind::Deleted => {
                let value = match ev.kind {
                    EventKind::Deleted => ev.value.clone(),
                    _ => ev.prev_value.clone().unwrap_or_default(),
                };
                let create = match (ev.kind, keys.get(&ev.key)) {
                    (EventKind::Modified, Some(kv)) => kv.create_revision,
                    _ => last_write(conn, &ev.key, revision, true)?.unwrap_or(revision),
                };
                let modified = last_write(conn, &ev.key, revision, false)?.unwrap_or(revision);
                keys.insert(
                    ev.key.clone(),
                    KeyValue {
                        key: ev.key.clone(),
                        value,
                        create_revision: create,
                        mod_revision: modified,
                    },
                );
            }
        }
    }
    Ok(keys.into_values().collect())
}

/// The revision of the last write (or creation) of `key` at or before `revision`, if the
/// history still has it.
fn last_write(
    conn: &Connection,
    key: &str,
    revision: i64,
    creation: bool,
) -> Result<Option<i64>, StoreError> {
    let sql = if creation {
        "SELECT MAX(rev) FROM history WHERE key = ?1 AND rev <= ?2 AND kind = 0"
    } else {
        "SELECT MAX(rev) FROM history WHERE key = ?1 AND rev <= ?2"
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params![key, revision], |r| r.get(0))
        .optional()?
        .flatten())
}
