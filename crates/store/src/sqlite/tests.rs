//! Unit tests of the SQLite backend: revisions, prefix lists, watches (resume, compaction, lagging watchers), file modes.

use super::*;
use std::time::Duration;

async fn next(rx: &mut WatchReceiver) -> Arc<Event> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("event within 5s")
        .expect("channel open")
        .expect("no error")
}

#[test]
fn create_get_update_delete_with_revisions() {
    let s = SqliteStore::in_memory().unwrap();
    assert_eq!(s.current_revision().unwrap(), 0);
    let r1 = s.create("/a/x", b"1").unwrap();
    assert_eq!(r1, 1);
    assert_eq!(
        s.create("/a/x", b"2"),
        Err(StoreError::AlreadyExists("/a/x".into()))
    );
    let r2 = s.update("/a/x", b"2", Some(r1)).unwrap();
    assert_eq!(r2, 2);
    let kv = s.get("/a/x").unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"2"[..], 1, 2)
    );
    assert!(matches!(
        s.update("/a/x", b"3", Some(r1)),
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert!(matches!(
        s.update("/a/nope", b"3", None),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete("/a/x", Some(1)),
        Err(StoreError::Conflict { .. })
    ));
    let (old, r3) = s.delete("/a/x", Some(2)).unwrap();
    assert_eq!((old.value.as_slice(), r3), (&b"2"[..], 3));
    assert_eq!(s.get("/a/x").unwrap(), None);
    assert!(matches!(
        s.delete("/a/x", None),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn list_by_prefix() {
    let s = SqliteStore::in_memory().unwrap();
    s.create("/r/pods/b/1", b"x").unwrap();
    s.create("/r/pods/a/2", b"y").unwrap();
    s.create("/r/podsx/a", b"z").unwrap();
    let (items, rev) = s.list("/r/pods/").unwrap();
    let keys: Vec<_> = items.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, vec!["/r/pods/a/2", "/r/pods/b/1"]);
    assert_eq!(rev, 3);
}

#[tokio::test]
async fn watch_from_revision_then_live() {
    let s = SqliteStore::in_memory().unwrap();
    let r1 = s.create("/p/a", b"1").unwrap();
    s.create("/q/a", b"other").unwrap();
    s.update("/p/a", b"2", None).unwrap();
    let mut rx = s.watch("/p/", r1 - 1).unwrap();
    let e = next(&mut rx).await;
    assert_eq!(
        (e.kind, e.revision, e.value.as_slice()),
        (EventKind::Added, 1, &b"1"[..])
    );
    let e = next(&mut rx).await;
    assert_eq!((e.kind, e.revision), (EventKind::Modified, 3));
    assert_eq!(e.prev_value.as_deref(), Some(&b"1"[..]));
    s.delete("/p/a", None).unwrap();
    let e = next(&mut rx).await;
    assert_eq!(
        (e.kind, e.revision, e.value.as_slice()),
        (EventKind::Deleted, 4, &b"2"[..])
    );
    s.create("/q/b", b"ignored").unwrap();
    s.create("/p/b", b"3").unwrap();
    let e = next(&mut rx).await;
    assert_eq!((e.key.as_str(), e.revision), ("/p/b", 6));
}

#[tokio::test]
async fn watch_too_old_after_compaction() {
    let s = SqliteStore::in_memory().unwrap();
    for i in 0..5 {
        s.create(&format!("/k/{i}"), b"v").unwrap();
    }
    s.compact(3).unwrap();
    assert_eq!(s.compacted_revision().unwrap(), 3);
    assert!(matches!(
        s.watch("/k/", 2),
        Err(StoreError::TooOld {
            requested: 2,
            compacted: 3
        })
    ));
    let mut rx = s.watch("/k/", 3).unwrap();
    assert_eq!(next(&mut rx).await.revision, 4);
}

#[test]
fn compact_old_keeps_recent_events() {
    let s = SqliteStore::in_memory().unwrap();
    for i in 0..20 {
        s.create(&format!("/k/{i}"), b"v").unwrap();
    }
    // Everything is younger than an hour: nothing goes.
    assert_eq!(s.compact_old(5, Duration::from_secs(3600)).unwrap(), 0);
    // Age zero: all but the last 5 events go.
    assert_eq!(s.compact_old(5, Duration::ZERO).unwrap(), 15);
}

#[tokio::test]
async fn resume_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create("/k/a", b"1").unwrap();
        s.update("/k/a", b"2", None).unwrap();
        s.compact(1).unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.current_revision().unwrap(), 2);
    assert_eq!(s.get("/k/a").unwrap().unwrap().value, b"2");
    let mut rx = s.watch("/k/", 1).unwrap();
    assert_eq!(next(&mut rx).await.revision, 2);
    assert_eq!(s.create("/k/b", b"x").unwrap(), 3);
    assert_eq!(next(&mut rx).await.revision, 3);
    assert!(matches!(s.watch("/k/", 0), Err(StoreError::TooOld { .. })));
}

#[test]
fn database_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let mode = |suffix: &str| {
        let p = dir.path().join(format!("state.db{suffix}"));
        std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let first = SqliteStore::open(&path).expect("open");
    first.create("/k", b"secret").expect("create");
    for suffix in ["", "-wal", "-shm"] {
        assert_eq!(mode(suffix), 0o600, "state.db{suffix}");
    }
    // An older version left them world-readable (the first connection keeps the -wal and
    // -shm files there): opening narrows them.
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("state.db{suffix}"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let s = SqliteStore::open(&path).expect("reopen");
    s.create("/k2", b"secret").expect("create");
    drop(first);
    for suffix in ["", "-wal", "-shm"] {
        assert_eq!(mode(suffix), 0o600, "state.db{suffix} after reopening");
    }
}

/// A watcher far behind — a backlog of several history pages, then more live events
/// than the live ring holds while it does not take any — still gets every event once,
/// in order; the history is read a page at a time.
#[tokio::test]
async fn a_watcher_far_behind_gets_every_event_in_order() {
    let s = SqliteStore::in_memory().unwrap();
    let backlog = 3 * HISTORY_PAGE as usize + 7;
    for i in 0..backlog {
        s.create(&format!("/w/{i}"), b"v").unwrap();
        s.create(&format!("/other/{i}"), b"v").unwrap();
    }
    let mut rx = s.watch("/w/", 0).unwrap();
    // Written while the watcher takes nothing: it overruns the channel and the ring.
    let live = LIVE_CAPACITY + WATCH_BUFFER + 10;
    for i in 0..live {
        s.update(&format!("/w/{}", i % backlog), b"u", None)
            .unwrap();
    }
    let mut last = 0;
    for n in 0..backlog + live {
        let ev = next(&mut rx).await;
        assert!(
            ev.revision > last,
            "event {n}: {} after {last}",
            ev.revision
        );
        assert!(ev.key.starts_with("/w/"));
        let kind = if n < backlog {
            EventKind::Added
        } else {
            EventKind::Modified
        };
        assert_eq!(ev.kind, kind, "event {n}");
        last = ev.revision;
    }
    assert_eq!(last, s.current_revision().unwrap());
    assert!(rx.try_recv().is_err(), "nothing more");
}
