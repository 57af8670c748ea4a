//! The `default/kubernetes` Service's endpoints: every live API server, as
//! kube-apiserver's lease endpoint reconciler keeps them.
//!
//! Each server writes `/registry/masterleases/<ip>` (its address, port and the time it last
//! renewed) every [`RENEW_EVERY`], and then sets the Endpoints and EndpointSlice of
//! `kubernetes` to the servers whose record is younger than [`LEASE_TTL`]. Kubernetes puts
//! a TTL on the etcd key instead; the store has no TTLs, so expiry is judged by the
//! renewal time and servers' clocks must agree to within a few seconds (as they must for
//! tokens and leases anyway). Expired records are deleted by whichever server sees them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_store::{Store, StoreError};

use crate::bootstrap::{ensure, info};
use crate::state::ApiState;
use crate::status::ApiResult;

/// Key prefix of the records (kube-apiserver: `/masterleases/`).
const PREFIX: &str = "/registry/masterleases/";
/// How often a server renews its record and reconciles the endpoints (Kubernetes: 10 s).
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long a record counts after its last renewal (Kubernetes: 15 s).
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// One server's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MasterLease {
    ip: Ipv4Addr,
    port: u16,
    /// Milliseconds since the Unix epoch.
    renewed_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The addresses of live servers among `leases` at `now_ms`, sorted, and the keys of
/// expired records.
fn live(leases: &[(String, MasterLease)], now_ms: u64) -> (BTreeSet<Ipv4Addr>, Vec<String>) {
    let ttl = LEASE_TTL.as_millis() as u64;
    let mut ips = BTreeSet::new();
    let mut expired = Vec::new();
    for (key, l) in leases {
        if l.renewed_ms + ttl > now_ms {
            ips.insert(l.ip);
        } else {
            expired.push(key.clone());
        }
    }
    (ips, expired)
}

/// Renews this server's record and sets the `kubernetes` endpoints to every live server.
pub(crate) async fn reconcile_once(state: &ApiState) -> ApiResult<()> {
    let me = MasterLease {
        ip: state.advertise,
        port: state.port,
        renewed_ms: now_ms(),
    };
    let key = format!("{PREFIX}{}", me.ip);
    let value = serde_json::to_vec(&me).unwrap_or_default();
    match state.store.update(&key, &value, None) {
        Err(StoreError::NotFound(_)) => match state.store.create(&key, &value) {
            // Another write of our own address won the race: just as good.
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        },
        other => {
            other?;
        }
    }
    // Servers starting together can each list the records before the others' land; a
    // writer that finds the set changed under it writes again, so the last write holds
    // every server.
    let mut written = None;
    for _ in 0..3 {
        let ips = live_servers(state, me.ip)?;
        if written.as_ref() == Some(&ips) {
            break;
        }
        write_endpoints(state, &ips).await?;
        written = Some(ips);
    }
    Ok(())
}

/// The live servers' addresses (`me` always among them); deletes expired records.
fn live_servers(state: &ApiState, me: Ipv4Addr) -> ApiResult<BTreeSet<Ipv4Addr>> {
    let (kvs, _) = state.store.list(PREFIX)?;
    let leases: Vec<(String, MasterLease)> = kvs
        .into_iter()
        .filter_map(|kv| Some((kv.key, serde_json::from_slice(&kv.value).ok()?)))
        .collect();
    let (mut ips, expired) = live(&leases, now_ms());
    ips.insert(me);
    for k in expired {
        // Gone already or renewed meanwhile: either way not ours to fight over.
        let _ = state.store.delete(&k, None);
    }
    Ok(ips)
}

/// Writes the `kubernetes` Endpoints and EndpointSlice for `ips` (no write when they are
/// already so).
async fn write_endpoints(state: &ApiState, ips: &BTreeSet<Ipv4Addr>) -> ApiResult<()> {
    let addresses: Vec<_> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": addresses, "ports": [{"name": "https", "port": state.port, "protocol": "TCP"}]}],
    });
    ensure(
        state,
        info("", "v1", "endpoints")?,
        Some("default"),
        ep,
        &["subsets"],
    )
    .await?;
    let endpoints: Vec<_> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "https", "port": state.port, "protocol": "TCP"}],
    });
    ensure(
        state,
        info("discovery.k8s.io", "v1", "endpointslices")?,
        Some("default"),
        slice,
        &["endpoints", "ports"],
    )
    .await
}

/// Renews and reconciles every [`RENEW_EVERY`] for as long as the server runs.
pub(crate) async fn run(state: Arc<ApiState>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        if let Err(e) = reconcile_once(&state).await {
            // A conflict with another server's write is settled on the next round.
            tracing::warn!("reconciling the kubernetes endpoints: {}", e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: [u8; 4], renewed_ms: u64) -> (String, MasterLease) {
        let ip = Ipv4Addr::from(ip);
        (
            format!("{PREFIX}{ip}"),
            MasterLease {
                ip,
                port: 6443,
                renewed_ms,
            },
        )
    }

    #[test]
    fn fresh_records_count_and_stale_ones_are_dropped() {
        let now = 100_000;
        let leases = [
            lease([10, 0, 0, 3], now - 1_000),
            lease([10, 0, 0, 1], now - 14_999),
            lease([10, 0, 0, 2], now - 15_000),
        ];
        let (ips, expired) = live(&leases, now);
        assert_eq!(
            ips.into_iter().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3)]
        );
        assert_eq!(expired, vec![format!("{PREFIX}10.0.0.2")]);
    }

    #[test]
    fn records_round_trip_as_json() {
        let (_, l) = lease([192, 0, 2, 7], 42);
        let text = serde_json::to_string(&l).unwrap();
        assert_eq!(text, r#"{"ip":"192.0.2.7","port":6443,"renewedMs":42}"#);
        assert_eq!(serde_json::from_str::<MasterLease>(&text).unwrap(), l);
    }
}
