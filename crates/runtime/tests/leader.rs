//! Leader election against the real API server (in process): one leader at a time,
//! takeover after the leader stops renewing, immediate takeover after a release, and a
//! component that stops when its leadership is taken away.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::{Api, Client};
use skiff_runtime::leader::{run_leading, Component, LeaderElector, LeaseLock, Timing};

use common::server;

const FAST: Timing = Timing {
    lease_duration: Duration::from_secs(2),
    renew_deadline: Duration::from_millis(1500),
    retry_period: Duration::from_millis(200),
};

fn lock(name: &str, identity: &str) -> LeaseLock {
    LeaseLock {
        namespace: "kube-system".into(),
        name: name.into(),
        identity: identity.into(),
    }
}

async fn holder(client: &Client, name: &str) -> (Option<String>, i32) {
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get(name)
        .await
        .expect("lease");
    let spec = lease.spec.unwrap_or_default();
    (spec.holder_identity, spec.lease_transitions.unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_then_takeover_then_release() {
    let (client, _server, _dir) = server().await;
    let mut a = LeaderElector::new(client.clone(), lock("ctl", "a"), FAST);
    let mut b = LeaderElector::new(client.clone(), lock("ctl", "b"), FAST);

    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a creates the lease"
    );
    assert!(!b.try_acquire_or_renew().await.unwrap(), "b must wait");
    assert_eq!(holder(&client, "ctl").await, (Some("a".into()), 0));

    // a renews for a while: b never gets in.
    for _ in 0..5 {
        tokio::time::sleep(FAST.retry_period).await;
        assert!(a.try_acquire_or_renew().await.unwrap());
        assert!(!b.try_acquire_or_renew().await.unwrap());
    }

    // a stops renewing (as if killed): b takes over once a's term has run out, not before.
    let stopped = Instant::now();
    let mut took = None;
    while stopped.elapsed() < Duration::from_secs(10) {
        if b.try_acquire_or_renew().await.unwrap() {
            took = Some(stopped.elapsed());
            break;
        }
        tokio::time::sleep(FAST.retry_period).await;
    }
    let took = took.expect("b took over");
    assert!(took >= FAST.lease_duration, "b took over early: {took:?}");
    assert!(
        took < FAST.lease_duration + Duration::from_secs(1),
        "b took over late: {took:?}"
    );
    assert_eq!(holder(&client, "ctl").await, (Some("b".into()), 1));
    assert!(!a.try_acquire_or_renew().await.unwrap(), "a lost its term");

    // b releases: a gets it at its next attempt.
    b.release().await.unwrap();
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder(&client, "ctl").await, (Some("a".into()), 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_stops_when_leadership_is_taken() {
    let (client, _server, _dir) = server().await;
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let component: Component = Box::new(move || {
        let t = t.clone();
        Box::pin(async move {
            // Work spawned by the component must stop with it, too.
            tokio::spawn(async move {
                loop {
                    t.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            std::future::pending::<()>().await
        })
    });
    let campaign = tokio::spawn(run_leading(
        client.clone(),
        lock("sched", "a"),
        FAST,
        component,
    ));

    let deadline = Instant::now() + Duration::from_secs(10);
    while ticks.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "component never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Someone else writes the lease with a long term: the leader sees it at its next
    // renewal and stops the component.
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-system");
    let mut lease = leases.get("sched").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("usurper".into());
    spec.lease_duration_seconds = Some(3600);
    leases
        .replace("sched", &PostParams::default(), &lease)
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = ticks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if ticks.load(Ordering::SeqCst) == before {
            break;
        }
        assert!(Instant::now() < deadline, "component still running");
    }
    assert_eq!(holder(&client, "sched").await.0.as_deref(), Some("usurper"));
    campaign.abort();
}
