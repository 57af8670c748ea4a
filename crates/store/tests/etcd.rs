//! etcd-only behaviour with real clusters: members dying, watches resuming, prefixes.

use std::time::{Duration, Instant};

use skiff_store::{EtcdConfig, EtcdStore, Store, StoreError, WatchReceiver};
use skiff_testkit::etcd::EtcdCluster;

/// Receives events until `n` arrived, failing after `within`.
async fn collect(rx: &mut WatchReceiver, n: usize, within: Duration) -> Vec<(String, i64)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(ev))) => got.push((ev.key.clone(), ev.revision)),
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

/// A CA, a serving certificate for 127.0.0.1 and a client certificate, as PEM files.
fn make_certs(dir: &std::path::Path) -> (skiff_testkit::etcd::ServerTls, skiff_store::EtcdTls) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        SanType,
    };
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let ca_file = write("ca.pem", ca_cert.pem());

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(vec!["skiff".to_string()]).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();

    let server_tls = skiff_testkit::etcd::ServerTls {
        ca_file: ca_file.clone(),
        cert_file: write("server.pem", server_cert.pem()),
        key_file: write("server-key.pem", server_key.serialize_pem()),
    };
    let client_tls = skiff_store::EtcdTls {
        ca_file: Some(ca_file),
        cert_file: Some(write("client.pem", client_cert.pem())),
        key_file: Some(write("client-key.pem", client_key.serialize_pem())),
    };
    (server_tls, client_tls)
}

#[tokio::test]
async fn client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = make_certs(certs.path());
    let cluster = EtcdCluster::start_tls(1, server_tls).expect("etcd with TLS starts");
    let connect = |tls: Option<skiff_store::EtcdTls>| {
        let mut config = EtcdConfig::new(cluster.endpoints());
        config.tls = tls;
        config.request_timeout = Duration::from_secs(2);
        EtcdStore::connect(&config)
    };
    // Plain HTTP/2 to a TLS port, and TLS without a client certificate, are refused.
    assert!(connect(None).is_err());
    let no_client_cert = skiff_store::EtcdTls {
        cert_file: None,
        key_file: None,
        ..client_tls.clone()
    };
    assert!(connect(Some(no_client_cert)).is_err());
    // With the client certificate, everything works (through the URL as the server's
    // --datastore and --etcd-* flags do).
    let options = skiff_store::OpenOptions {
        etcd_tls: client_tls,
    };
    let store = skiff_store::open_with(&cluster.url("/tls"), &options).unwrap();
    let base = store.current_revision().unwrap();
    let mut rx = store.watch("/k/", base).unwrap();
    let written = write_round(&*store, 0, 3);
    assert_eq!(collect(&mut rx, 3, Duration::from_secs(10)).await, written);
}
