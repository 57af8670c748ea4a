//! The SQLite backend: one connection (WAL), a `kv` table with the current values, a
//! `history` table with every event since the last compaction, and a `meta` table with
//! the current and compacted revisions (kept there so that revisions keep growing after
//! the history is compacted or the process restarts).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{broadcast, mpsc};

use crate::{Event, EventKind, KeyValue, Store, StoreError, WatchReceiver};

/// How many live events a slow watcher may fall behind before it re-reads the history.
/// The ring keeps its last events (values and previous values) alive, so it costs its
/// size times the size of the objects written, whether anyone lags or not.
const LIVE_CAPACITY: usize = 1024;
/// Buffer of each watch channel: what a watcher that stopped taking events pins, beyond
/// the shared ring (events past it are read again from the history when it resumes).
const WATCH_BUFFER: usize = 16;
/// Events read from the history table at once by a watch replaying it, so that a
/// watcher far behind holds one page of its backlog, not all of it.
const HISTORY_PAGE: i64 = 32;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    rev INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    value BLOB NOT NULL,
    prev BLOB,
    ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
";

/// A [`Store`] in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    live: broadcast::Sender<Arc<Event>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. The database holds every Secret
    /// of the cluster, so it and its `-wal` and `-shm` files are readable by their owner
    /// only (0600), older files included.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private(path)?;
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        let store = Self::with_connection(conn)?;
        // SQLite gives the -wal and -shm files it creates the database's mode; files left
        // by an older version with wider modes are narrowed here.
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            restrict_to_owner(Path::new(&name))?;
        }
        Ok(store)
    }

    /// A store that lives in memory only (for tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(conn: Connection) -> Result<Self, StoreError> {
        // WAL lets readers of other processes (sqlite3 for debugging) coexist with the
        // writer; NORMAL sync is durable enough in WAL mode and much faster.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Performance (see crates/apiserver/BENCH.md): a 16 MiB page cache keeps the kv
        // and history indexes in memory; temporary b-trees (ORDER BY) stay in memory too.
        conn.pragma_update(None, "cache_size", -16_384)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Statements are compiled once per connection, not per call.
        conn.set_prepared_statement_cache_capacity(32);
        conn.execute_batch(SCHEMA)?;
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                live,
            }),
        })
    }

    /// Compacts history older than both the last `keep_events` events and `keep_for`.
    /// Returns the new compacted revision.
    pub fn compact_old(&self, keep_events: i64, keep_for: Duration) -> Result<i64, StoreError> {
        let conn = self.inner.lock();
        let current = meta(&conn, "revision")?;
        let compacted = meta(&conn, "compacted")?;
        let cutoff_ts = now_secs() - keep_for.as_secs() as i64;
        let old_rev: Option<i64> = conn
            .query_row(
                "SELECT MAX(rev) FROM history WHERE ts <= ?1",
                params![cutoff_ts],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let target = (current - keep_events).min(old_rev.unwrap_or(0));
        if target > compacted {
            compact_locked(&conn, target)?;
            return Ok(target);
        }
        Ok(compacted)
    }

    /// Runs [`SqliteStore::compact_old`] every `every` until the runtime shuts down.
    pub fn spawn_compactor(&self, every: Duration, keep_events: i64, keep_for: Duration) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = store.compact_old(keep_events, keep_for) {
                    tracing::warn!("compacting the store: {e}");
                }
            }
        });
    }

    /// Writes one event: history row, revision, kv change, then tells live watchers.
    fn write(
        &self,
        key: &str,
        check: impl FnOnce(Option<&KeyValue>) -> Result<(), StoreError>,
        change: Change<'_>,
    ) -> Result<(Option<KeyValue>, i64), StoreError> {
        let mut conn = self.inner.lock();
        let tx = conn.transaction()?;
        let old = get_locked(&tx, key)?;
        check(old.as_ref())?;
        let rev = meta(&tx, "revision")? + 1;
        let (kind, value) = match change {
            Change::Put(v) => {
                let kind = if old.is_some() {
                    EventKind::Modified
                } else {
                    EventKind::Added
                };
                let create_rev = old.as_ref().map(|o| o.create_revision).unwrap_or(rev);
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![key, v, create_rev, rev])?;
                (kind, v.to_vec())
            }
            Change::Delete => {
                tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                    .execute(params![key])?;
                let prev = old.as_ref().map(|o| o.value.clone()).unwrap_or_default();
                (EventKind::Deleted, prev)
            }
        };
        let prev = old.as_ref().map(|o| o.value.clone());
        tx.prepare_cached(
            "INSERT INTO history (rev, key, kind, value, prev, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![rev, key, kind_code(kind), value, prev, now_secs()])?;
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
            .execute(params![rev])?;
        tx.commit()?;
        // Sent while the connection is still locked so live events go out in revision
        // order. No receivers is not an error.
        let _ = self.inner.live.send(Arc::new(Event {
            kind,
            key: key.to_string(),
            value,
            prev_value: prev,
            revision: rev,
        }));
        Ok((old, rev))
    }
}

enum Change<'a> {
    Put(&'a [u8]),
    Delete,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll
        // back on drop), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn kind_code(kind: EventKind) -> i64 {
    match kind {
        EventKind::Added => 0,
        EventKind::Modified => 1,
        EventKind::Deleted => 2,
    }
}

fn kind_from_code(code: i64) -> EventKind {
    match code {
        0 => EventKind::Added,
        1 => EventKind::Modified,
        _ => EventKind::Deleted,
    }
}

/// Creates `path` with mode 0600 unless it exists (SQLite would create it 0644), and
/// narrows an existing file to 0600.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", path.display())))?;
    }
    restrict_to_owner(path)
}

/// Mode 0600 for a file that exists.
fn restrict_to_owner(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
                StoreError::Backend(format!("restricting {} to its owner: {e}", path.display()))
            })
        }
        _ => Ok(()),
    }
}

fn meta(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row(params![name], |r| r.get(0))?)
}

fn get_locked(conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT key, value, create_rev, mod_rev FROM kv WHERE key = ?1")?
        .query_row(params![key], row_to_kv)
        .optional()?)
}

fn row_to_kv(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: r.get(0)?,
        value: r.get(1)?,
        create_revision: r.get(2)?,
        mod_revision: r.get(3)?,
    })
}

fn compact_locked(conn: &Connection, revision: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM history WHERE rev <= ?1", params![revision])?;
    conn.execute(
        "UPDATE meta SET value = MAX(value, ?1) WHERE name = 'compacted'",
        params![revision],
    )?;
    Ok(())
}

/// History events after `from` under `prefix`, or `TooOld` if compacted.
fn history_since(conn: &Connection, prefix: &str, from: i64) -> Result<Vec<Event>, StoreError> {
    history_page(conn, prefix, from, -1)
}

/// The first `limit` history events after `from` under `prefix` (all of them for a
/// negative `limit`), or `TooOld` if compacted.
fn history_page(
    conn: &Connection,
    prefix: &str,
    from: i64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let compacted = meta(conn, "compacted")?;
    if from < compacted {
        return Err(StoreError::TooOld {
            requested: from,
            compacted,
        });
    }
    let mut stmt = conn.prepare_cached(
        "SELECT rev, key, kind, value, prev FROM history
         WHERE rev > ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY rev LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![from, prefix, limit], |r| {
        Ok(Event {
            revision: r.get(0)?,
            key: r.get(1)?,
            kind: kind_from_code(r.get(2)?),
            value: r.get(3)?,
            prev_value: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Sends the history from `first` (a page read after `last`) on, a page at a time, each
/// read only once the watcher has taken the previous one. `false` when the watch ended
/// (the receiver went away, or the history was compacted under it).
async fn replay(
    inner: &Inner,
    prefix: &str,
    last: &mut i64,
    first: Vec<Event>,
    tx: &mpsc::Sender<Result<Arc<Event>, StoreError>>,
) -> bool {
    let mut page = first;
    loop {
        let more = page.len() as i64 == HISTORY_PAGE;
        for ev in page {
            *last = ev.revision;
            if tx.send(Ok(Arc::new(ev))).await.is_err() {
                return false;
            }
        }
        if !more {
            return true;
        }
        let next = {
            let conn = inner.lock();
            history_page(&conn, prefix, *last, HISTORY_PAGE)
        };
        page = match next {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return false;
            }
        };
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        get_locked(&self.inner.lock(), key)
    }

    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let conn = self.inner.lock();
        let rev = meta(&conn, "revision")?;
        let items = match prefix_end(prefix) {
            // A range of the primary key's index instead of a scan of every key.
            Some(end) => conn
                .prepare_cached(
                    "SELECT key, value, create_rev, mod_rev FROM kv
                     WHERE key >= ?1 AND key < ?2 ORDER BY key",
                )?
                .query_map(params![prefix, end], row_to_kv)?
                .collect::<Result<Vec<_>, _>>()?,
            None => conn
                .prepare_cached(
                    "SELECT key, value, create_rev, mod_rev FROM kv
                     WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
                )?
                .query_map(params![prefix], row_to_kv)?
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok((items, rev))
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<i64, StoreError> {
        let (_, rev) = self.write(
            key,
            |old| match old {
                Some(_) => Err(StoreError::AlreadyExists(key.to_string())),
                None => Ok(()),
            },
            Change::Put(value),
        )?;
        Ok(rev)
    }

    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError> {
        let (_, rev) = self.write(
            key,
            |old| check_expected(key, old, expected_mod_revision),
            Change::Put(value),
        )?;
        Ok(rev)
    }

    fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<(KeyValue, i64), StoreError> {
        let (old, rev) = self.write(
            key,
            |old| check_expected(key, old, expected_mod_revision),
            Change::Delete,
        )?;
        let old = old.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        Ok((old, rev))
    }

    fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchReceiver, StoreError> {
        let (first, mut live) = {
            let conn = self.inner.lock();
            // Subscribing under the lock means no write falls between the history read
            // and the live stream.
            let live = self.inner.live.subscribe();
            (
                history_page(&conn, prefix, from_revision, HISTORY_PAGE)?,
                live,
            )
        };
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let inner = self.inner.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut last = from_revision;
            if !replay(&inner, &prefix, &mut last, first, &tx).await {
                return;
            }
            loop {
                match live.recv().await {
                    Ok(ev) => {
                        if ev.revision <= last {
                            continue;
                        }
                        last = ev.revision;
                        if ev.key.starts_with(&prefix) && tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the live stream: catch up from the history table.
                        let first = {
                            let conn = inner.lock();
                            history_page(&conn, &prefix, last, HISTORY_PAGE)
                        };
                        let first = match first {
                            Ok(page) => page,
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        };
                        if !replay(&inner, &prefix, &mut last, first, &tx).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(rx)
    }

    fn current_revision(&self) -> Result<i64, StoreError> {
        meta(&self.inner.lock(), "revision")
    }

    fn compacted_revision(&self) -> Result<i64, StoreError> {
        meta(&self.inner.lock(), "compacted")
    }

    fn compact(&self, revision: i64) -> Result<(), StoreError> {
        compact_locked(&self.inner.lock(), revision)
    }

    fn compact_old(&self, keep_events: i64, keep_for: Duration) -> Result<i64, StoreError> {
        SqliteStore::compact_old(self, keep_events, keep_for)
    }

    fn list_at(&self, prefix: &str, revision: i64) -> Result<Vec<KeyValue>, StoreError> {
        snapshot::list_at(&self.inner.lock(), prefix, revision)
    }
}

/// The smallest string greater than every string starting with `prefix` (in SQLite's
/// binary collation), when the prefix ends in a printable ASCII character (API server
/// prefixes end in `/`); `None` otherwise (the caller scans).
fn prefix_end(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    if !(0x20..0x7e).contains(&last) {
        return None;
    }
    let mut end = prefix[..prefix.len() - 1].to_string();
    end.push(char::from(last + 1));
    Some(end)
}

fn check_expected(
    key: &str,
    old: Option<&KeyValue>,
    expected: Option<i64>,
) -> Result<(), StoreError> {
    let old = old.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
    match expected {
        Some(e) if e != old.mod_revision => Err(StoreError::Conflict {
            key: key.to_string(),
            expected: e,
            actual: old.mod_revision,
        }),
        _ => Ok(()),
    }
}

mod snapshot;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_range() {
        assert_eq!(
            prefix_end("/registry/pods/").as_deref(),
            Some("/registry/pods0")
        );
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a~"), None);
        assert_eq!(prefix_end("é"), None);
    }

    #[test]
    fn list_takes_exactly_the_prefix() {
        let s = SqliteStore::in_memory().expect("store");
        for k in [
            "/r/pods/a",
            "/r/pods/b/x",
            "/r/pods0",
            "/r/pods",
            "/r/podsz/a",
            "/r/pod/a",
            "/r/pods/é",
        ] {
            s.create(k, b"{}").expect("create");
        }
        let (items, rev) = s.list("/r/pods/").expect("list");
        let keys: Vec<&str> = items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/r/pods/a", "/r/pods/b/x", "/r/pods/é"]);
        assert_eq!(rev, 7);
        // Prefixes without a computable end scan instead.
        let (items, _) = s.list("/r/pods/\u{e9}").expect("list");
        assert_eq!(items.len(), 1);
        let (all, _) = s.list("").expect("list");
        assert_eq!(all.len(), 7);
    }
}
