//! etcd-only behaviour with real clusters: members dying, watches resuming, prefixes.

use std::time::{Duration, Instant};

use skiff_store::testing::EtcdCluster;
use skiff_store::{EtcdConfig, EtcdStore, Store, StoreError, WatchReceiver};

/// Receives events until `n` arrived, failing after `within`.
async fn collect(rx: &mut WatchReceiver, n: usize, within: Duration) -> Vec<(String, i64)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(ev))) => got.push((ev.key, ev.revision)),
            Ok(Some(Err(e))) => panic!("watch failed after {} events: {e}", got.len()),
            Ok(None) => panic!("watch closed after {} events", got.len()),
            Err(_) => panic!("only {} of {n} events within {within:?}", got.len()),
        }
    }
    got
}

/// Writes `keys` keys named `/k/<round>-<i>` and returns their revisions.
fn write_round(s: &dyn Store, round: usize, keys: usize) -> Vec<(String, i64)> {
    (0..keys)
        .map(|i| {
            let key = format!("/k/{round}-{i:03}");
            let t = Instant::now();
            let rev = s.create(&key, format!("v{i}").as_bytes()).unwrap();
            if t.elapsed() > Duration::from_millis(200) {
                eprintln!("slow write {key}: {:?}", t.elapsed());
            }
            (key, rev)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_members_loses_nothing_and_watches_resume() {
    let mut cluster = EtcdCluster::start(3).expect("3-member etcd starts");
    let store = skiff_store::open(&cluster.url("/ha")).unwrap();
    let base = store.current_revision().unwrap();
    let mut rx = store.watch("/k/", base).unwrap();
    let mut written = Vec::new();
    // Kill each member in turn (bringing the previous one back first): whichever held
    // the watch's connection or the leadership, writes go on and the watch resumes.
    for victim in 0..3 {
        written.extend(write_round(&*store, victim, 20));
        cluster.kill(victim).unwrap();
        let started = Instant::now();
        written.extend(write_round(&*store, 10 + victim, 20));
        eprintln!(
            "member m{victim} killed: 20 writes took {:?}",
            started.elapsed()
        );
        cluster.restart(victim).unwrap();
    }
    let (items, _) = store.list("/k/").unwrap();
    assert_eq!(items.len(), written.len(), "every write is kept");
    let events = collect(&mut rx, written.len(), Duration::from_secs(60)).await;
    assert_eq!(events, written, "every event, once, in order");
}

#[tokio::test]
async fn a_watch_survives_the_restart_of_a_single_member() {
    let mut cluster = EtcdCluster::start(1).unwrap();
    let store = skiff_store::open(&cluster.url("")).unwrap();
    let base = store.current_revision().unwrap();
    let mut rx = store.watch("/k/", base).unwrap();
    let mut written = write_round(&*store, 0, 5);
    cluster.restart(0).unwrap();
    written.extend(write_round(&*store, 1, 5));
    let events = collect(&mut rx, written.len(), Duration::from_secs(30)).await;
    assert_eq!(events, written);
}

#[test]
fn prefixes_keep_clusters_apart() {
    let cluster = EtcdCluster::start(1).unwrap();
    let a = skiff_store::open(&cluster.url("/cluster-a")).unwrap();
    let b = skiff_store::open(&cluster.url("/cluster-b")).unwrap();
    let raw = skiff_store::open(&cluster.url("")).unwrap();
    a.create("/registry/core/pods/default/web", b"a").unwrap();
    b.create("/registry/core/pods/default/web", b"b").unwrap();
    let (items, _) = a.list("").unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].key, "/registry/core/pods/default/web");
    assert_eq!(items[0].value, b"a");
    let (all, _) = raw.list("/").unwrap();
    let keys: Vec<_> = all.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "/cluster-a/registry/core/pods/default/web",
            "/cluster-b/registry/core/pods/default/web"
        ]
    );
}

#[test]
fn unreachable_etcd_fails_with_context() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = EtcdConfig::new(vec![format!("127.0.0.1:{port}")]);
    config.request_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = EtcdStore::connect(&config).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let StoreError::Backend(msg) = err else {
        panic!("unexpected error {err:?}")
    };
    assert!(msg.contains("does not answer"), "{msg}");
}

#[test]
fn migrate_from_sqlite_to_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("state.db").display());
    let from = skiff_store::open(&sqlite_url).unwrap();
    for i in 0..50 {
        from.create(
            &format!("/registry/core/configmaps/default/c{i}"),
            format!("{{\"n\":{i}}}").as_bytes(),
        )
        .unwrap();
    }
    let cluster = EtcdCluster::start(1).unwrap();
    let to = skiff_store::open(&cluster.url("/migrated")).unwrap();
    let report = skiff_store::migrate(&*from, &*to, false).unwrap();
    assert_eq!(report.copied, 50);
    let (a, _) = from.list("").unwrap();
    let (b, _) = to.list("").unwrap();
    let pairs = |v: &[skiff_store::KeyValue]| -> Vec<(String, Vec<u8>)> {
        v.iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect()
    };
    assert_eq!(pairs(&a), pairs(&b));
    assert!(matches!(
        skiff_store::migrate(&*from, &*to, false),
        Err(skiff_store::MigrateError::TargetNotEmpty(50))
    ));
}

#[test]
fn lists_larger_than_grpcs_default_message_limit() {
    let cluster = EtcdCluster::start(1).unwrap();
    let store = skiff_store::open(&cluster.url("")).unwrap();
    // 60 values of 100 KiB: a 6 MB response, over gRPC's default 4 MiB limit.
    let value = vec![b'v'; 100 * 1024];
    for i in 0..60 {
        store.create(&format!("/big/{i:02}"), &value).unwrap();
    }
    let (items, _) = store.list("/big/").unwrap();
    assert_eq!(items.len(), 60);
    assert!(items.iter().all(|kv| kv.value.len() == value.len()));
}
