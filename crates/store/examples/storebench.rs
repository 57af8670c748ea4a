//! Store benchmark: creates/s (one writer, then 8 concurrent writers), get and list
//! latency, on SQLite and on real etcd clusters (1 and 3 members on loopback) in the
//! same run.
//!
//! `cargo run --release -p skiff-store --example storebench [-- OBJECTS]` (default 2000 objects
//! of 1 KiB, as a small Pod's JSON).

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_store::{SqliteStore, Store};
use skiff_testkit::etcd::EtcdCluster;

/// Size of each value (a small Pod is about 1-2 KiB of JSON).
const VALUE_SIZE: usize = 1024;
/// Concurrent writers in the parallel phase (API handlers run on many threads).
const WRITERS: usize = 8;
/// Repetitions of each latency measurement.
const REPEAT: usize = 20;

struct Figures {
    creates_seq: f64,
    creates_par: f64,
    get_p50: Duration,
    list_p50: Duration,
    list_p99: Duration,
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn run(store: Arc<dyn Store>, objects: usize) -> Figures {
    let value = vec![b'x'; VALUE_SIZE];
    let started = Instant::now();
    for i in 0..objects {
        store
            .create(&format!("/registry/core/pods/seq/p{i:06}"), &value)
            .expect("create");
    }
    let creates_seq = objects as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let value = value.clone();
            std::thread::spawn(move || {
                for i in 0..objects / WRITERS {
                    store
                        .create(&format!("/registry/core/pods/par/w{w}-{i:06}"), &value)
                        .expect("create");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    let creates_par = (objects / WRITERS * WRITERS) as f64 / started.elapsed().as_secs_f64();

    let gets: Vec<Duration> = (0..REPEAT * 10)
        .map(|i| {
            let t = Instant::now();
            store
                .get(&format!("/registry/core/pods/seq/p{:06}", i % objects))
                .expect("get");
            t.elapsed()
        })
        .collect();
    let lists: Vec<Duration> = (0..REPEAT)
        .map(|_| {
            let t = Instant::now();
            let (items, _) = store.list("/registry/core/pods/seq/").expect("list");
            assert_eq!(items.len(), objects);
            t.elapsed()
        })
        .collect();
    Figures {
        creates_seq,
        creates_par,
        get_p50: percentile(gets, 0.5),
        list_p50: percentile(lists.clone(), 0.5),
        list_p99: percentile(lists, 0.99),
    }
}

fn main() {
    let objects: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    println!(
        "{objects} objects of {VALUE_SIZE} B; parallel phase: {WRITERS} writers; list of all {objects}"
    );
    println!(
        "{:<22} {:>12} {:>16} {:>10} {:>12} {:>12}",
        "store", "creates/s", "creates/s (x8)", "get p50", "list p50", "list p99"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).expect("sqlite"));
    let etcd1 = EtcdCluster::start(1).expect("1-member etcd");
    let etcd3 = EtcdCluster::start(3).expect("3-member etcd");
    let stores: Vec<(&str, Arc<dyn Store>)> = vec![
        ("sqlite (file, WAL)", sqlite),
        (
            "etcd, 1 member",
            skiff_store::open(&etcd1.url("/bench")).expect("etcd"),
        ),
        (
            "etcd, 3 members",
            skiff_store::open(&etcd3.url("/bench")).expect("etcd"),
        ),
    ];
    for (name, store) in stores {
        let f = run(store, objects);
        println!(
            "{:<22} {:>12.0} {:>16.0} {:>10.2?} {:>12.2?} {:>12.2?}",
            name, f.creates_seq, f.creates_par, f.get_p50, f.list_p50, f.list_p99
        );
    }
}
