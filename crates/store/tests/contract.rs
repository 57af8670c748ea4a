//! The store contract, run against every backend: SQLite (in memory) and a real
//! one-member etcd cluster (Debian's `etcd-server`, started by the test on loopback).
//!
//! Revisions are compared relative to each other: etcd's start at 1 and count every write
//! of the whole etcd keyspace.

use std::sync::Arc;
use std::time::Duration;

use skiff_store::{Event, EventKind, SqliteStore, Store, StoreError, WatchReceiver};
use skiff_testkit::etcd::EtcdCluster;

/// What must live as long as the store (the etcd cluster).
type Guard = Option<EtcdCluster>;

fn sqlite() -> (Arc<dyn Store>, Guard) {
    (Arc::new(SqliteStore::in_memory().unwrap()), None)
}

fn etcd() -> (Arc<dyn Store>, Guard) {
    let cluster = EtcdCluster::start(1).expect("etcd starts");
    let store = skiff_store::open(&cluster.url("/contract")).expect("etcd store opens");
    (store, Some(cluster))
}

async fn next(rx: &mut WatchReceiver) -> Arc<Event> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("event within 10s")
        .expect("channel open")
        .expect("no error")
}

fn crud(s: &dyn Store) {
    let base = s.current_revision().unwrap();
    let r1 = s.create("/a/x", b"1").unwrap();
    assert!(r1 > base);
    assert_eq!(
        s.create("/a/x", b"2"),
        Err(StoreError::AlreadyExists("/a/x".into()))
    );
    let r2 = s.update("/a/x", b"2", Some(r1)).unwrap();
    assert!(r2 > r1);
    let kv = s.get("/a/x").unwrap().unwrap();
    assert_eq!(
        (
            kv.key.as_str(),
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision
        ),
        ("/a/x", &b"2"[..], r1, r2)
    );
    assert_eq!(
        s.update("/a/x", b"3", Some(r1)),
        Err(StoreError::Conflict {
            key: "/a/x".into(),
            expected: r1,
            actual: r2
        })
    );
    assert_eq!(
        s.update("/a/nope", b"3", None),
        Err(StoreError::NotFound("/a/nope".into()))
    );
    assert_eq!(
        s.update("/a/nope", b"3", Some(r1)),
        Err(StoreError::NotFound("/a/nope".into()))
    );
    assert!(matches!(
        s.delete("/a/x", Some(r1)),
        Err(StoreError::Conflict { .. })
    ));
    let (old, r3) = s.delete("/a/x", Some(r2)).unwrap();
    assert!(r3 > r2);
    assert_eq!(
        (old.key.as_str(), old.value.as_slice(), old.mod_revision),
        ("/a/x", &b"2"[..], r2)
    );
    assert_eq!(s.get("/a/x").unwrap(), None);
    assert_eq!(
        s.delete("/a/x", None),
        Err(StoreError::NotFound("/a/x".into()))
    );
    assert_eq!(s.current_revision().unwrap(), r3);
    // Recreated keys start a new life.
    let r4 = s.create("/a/x", b"4").unwrap();
    let kv = s.get("/a/x").unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r4));
}

fn list_by_prefix(s: &dyn Store) {
    s.create("/r/pods/b/1", b"x").unwrap();
    s.create("/r/pods/a/2", b"y").unwrap();
    let last = s.create("/r/podsx/a", b"z").unwrap();
    let (items, rev) = s.list("/r/pods/").unwrap();
    let keys: Vec<_> = items.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, vec!["/r/pods/a/2", "/r/pods/b/1"]);
    assert_eq!(rev, last);
    let (all, _) = s.list("").unwrap();
    assert_eq!(all.len(), 3);
    let (none, _) = s.list("/nothing/").unwrap();
    assert!(none.is_empty());
}

async fn watch_from_revision_then_live(s: &dyn Store) {
    let r1 = s.create("/p/a", b"1").unwrap();
    s.create("/q/a", b"other").unwrap();
    let r3 = s.update("/p/a", b"2", None).unwrap();
    let mut rx = s.watch("/p/", r1 - 1).unwrap();
    let e = next(&mut rx).await;
    assert_eq!(
        (e.kind, e.key.as_str(), e.revision, e.value.as_slice()),
        (EventKind::Added, "/p/a", r1, &b"1"[..])
    );
    assert_eq!(e.prev_value, None);
    let e = next(&mut rx).await;
    assert_eq!((e.kind, e.revision), (EventKind::Modified, r3));
    assert_eq!(e.prev_value.as_deref(), Some(&b"1"[..]));
    let (_, r4) = s.delete("/p/a", None).unwrap();
    let e = next(&mut rx).await;
    assert_eq!(
        (e.kind, e.revision, e.value.as_slice()),
        (EventKind::Deleted, r4, &b"2"[..])
    );
    assert_eq!(e.prev_value.as_deref(), Some(&b"2"[..]));
    s.create("/q/b", b"ignored").unwrap();
    let r6 = s.create("/p/b", b"3").unwrap();
    let e = next(&mut rx).await;
    assert_eq!((e.key.as_str(), e.revision), ("/p/b", r6));
    // A watch from the current revision sees only what comes next.
    let mut rx2 = s.watch("/p/", r6).unwrap();
    let r7 = s.update("/p/b", b"4", Some(r6)).unwrap();
    assert_eq!(next(&mut rx2).await.revision, r7);
    assert_eq!(next(&mut rx).await.revision, r7);
}

async fn watch_too_old_after_compaction(s: &dyn Store) {
    assert_eq!(s.compacted_revision().unwrap(), 0);
    let revs: Vec<i64> = (0..5)
        .map(|i| s.create(&format!("/k/{i}"), b"v").unwrap())
        .collect();
    s.compact(revs[2]).unwrap();
    assert_eq!(s.compacted_revision().unwrap(), revs[2]);
    assert_eq!(
        s.watch("/k/", revs[1]).err(),
        Some(StoreError::TooOld {
            requested: revs[1],
            compacted: revs[2]
        })
    );
    let mut rx = s.watch("/k/", revs[2]).unwrap();
    assert_eq!(next(&mut rx).await.revision, revs[3]);
    assert_eq!(next(&mut rx).await.revision, revs[4]);
    // Compacting an already compacted revision is not an error.
    s.compact(revs[1]).unwrap();
    assert_eq!(s.compacted_revision().unwrap(), revs[2]);
}

fn compact_old_keeps_recent_events(s: &dyn Store) {
    for i in 0..20 {
        s.create(&format!("/k/{i}"), b"v").unwrap();
    }
    // Everything is younger than an hour: nothing goes.
    assert_eq!(s.compact_old(5, Duration::from_secs(3600)).unwrap(), 0);
    // Age zero: all but the last 5 events go.
    let current = s.current_revision().unwrap();
    assert_eq!(s.compact_old(5, Duration::ZERO).unwrap(), current - 5);
}

fn list_at_old_revisions(s: &dyn Store) {
    let r1 = s.create("/s/a", b"1").unwrap();
    let r2 = s.create("/s/b", b"1").unwrap();
    let r3 = s.update("/s/a", b"2", None).unwrap();
    let (_, r4) = s.delete("/s/b", None).unwrap();
    let r5 = s.create("/s/c", b"1").unwrap();
    s.create("/t/x", b"other prefix").unwrap();
    let view = |rev: i64| -> Vec<(String, String, i64, i64)> {
        s.list_at("/s/", rev)
            .unwrap()
            .into_iter()
            .map(|kv| {
                let v = String::from_utf8(kv.value).unwrap();
                (kv.key, v, kv.create_revision, kv.mod_revision)
            })
            .collect()
    };
    let e = |k: &str, v: &str, c: i64, m: i64| (k.to_string(), v.to_string(), c, m);
    assert_eq!(view(r1), vec![e("/s/a", "1", r1, r1)]);
    assert_eq!(
        view(r2),
        vec![e("/s/a", "1", r1, r1), e("/s/b", "1", r2, r2)]
    );
    assert_eq!(
        view(r3),
        vec![e("/s/a", "2", r1, r3), e("/s/b", "1", r2, r2)]
    );
    assert_eq!(view(r4), vec![e("/s/a", "2", r1, r3)]);
    assert_eq!(
        view(r5),
        vec![e("/s/a", "2", r1, r3), e("/s/c", "1", r5, r5)]
    );
    assert_eq!(s.list_at("/s/", r5).unwrap(), s.list("/s/").unwrap().0);
    s.compact(r2).unwrap();
    assert!(matches!(
        s.list_at("/s/", r1),
        Err(StoreError::TooOld { requested, compacted }) if requested == r1 && compacted == r2
    ));
    let values: Vec<_> = view(r3).into_iter().map(|(k, v, _, _)| (k, v)).collect();
    assert_eq!(
        values,
        vec![("/s/a".into(), "2".into()), ("/s/b".into(), "1".into())]
    );
}

/// Read-modify-write loops from several threads: every increment lands exactly once.
fn conflicting_writers(s: Arc<dyn Store>) {
    s.create("/counter", b"0").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut conflicts = 0;
                for _ in 0..15 {
                    loop {
                        let kv = s.get("/counter").unwrap().unwrap();
                        let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                        match s.update(
                            "/counter",
                            (n + 1).to_string().as_bytes(),
                            Some(kv.mod_revision),
                        ) {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => conflicts += 1,
                            Err(e) => panic!("update: {e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.get("/counter").unwrap().unwrap().value, b"60");
}

macro_rules! contract {
    ($backend:ident) => {
        mod $backend {
            #[test]
            fn crud() {
                let (s, _guard) = super::$backend();
                super::crud(&*s);
            }

            #[test]
            fn list_by_prefix() {
                let (s, _guard) = super::$backend();
                super::list_by_prefix(&*s);
            }

            // A current-thread runtime: the store's synchronous calls must not need it.
            #[tokio::test]
            async fn watch_from_revision_then_live() {
                let (s, _guard) = super::$backend();
                super::watch_from_revision_then_live(&*s).await;
            }

            #[tokio::test]
            async fn watch_too_old_after_compaction() {
                let (s, _guard) = super::$backend();
                super::watch_too_old_after_compaction(&*s).await;
            }

            #[test]
            fn compact_old_keeps_recent_events() {
                let (s, _guard) = super::$backend();
                super::compact_old_keeps_recent_events(&*s);
            }

            #[test]
            fn list_at_old_revisions() {
                let (s, _guard) = super::$backend();
                super::list_at_old_revisions(&*s);
            }

            #[test]
            fn conflicting_writers() {
                let (s, _guard) = super::$backend();
                super::conflicting_writers(s);
            }
        }
    };
}

contract!(sqlite);
contract!(etcd);
