//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` package does it for kube-controller-manager and kube-scheduler.
//!
//! Candidates never trust each other's clocks: a lease counts as expired when *this*
//! candidate has seen the same record, unchanged, for longer than its duration (the
//! "observed time" of client-go). Writes are optimistic updates on the Lease's
//! resourceVersion, so two candidates can never both win the same term.
//!
//! [`run_leading`] runs a component on a tokio runtime of its own while this process leads
//! and shuts that runtime down, with every task the component spawned, when leadership is
//! lost; then it campaigns again. kube-controller-manager exits the process instead; skiff
//! runs its controllers inside the API server, which must keep serving.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};

/// Which Lease to hold, and as whom.
#[derive(Debug, Clone)]
pub struct LeaseLock {
    /// Namespace of the Lease (Kubernetes uses `kube-system`).
    pub namespace: String,
    /// Name of the Lease, e.g. `kube-controller-manager`.
    pub name: String,
    /// This candidate's identity, unique among candidates (client-go: `hostname_uuid`).
    pub identity: String,
}

/// How long a term lasts and how often it is renewed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long other candidates wait, after they last saw the lease change, before they
    /// take it over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timing {
    /// 10 s / 7 s / 2 s: shorter than Kubernetes' 15 / 10 / 2 so that a dead leader is
    /// replaced within 12 s (lease plus one retry), under the 15 s skiff promises.
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(7),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate does with the Lease it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it, holding it.
    Create,
    /// Another candidate holds an unexpired lease: wait.
    Wait {
        /// The current holder.
        holder: String,
    },
    /// The lease is ours: renew it.
    Renew,
    /// The lease is free or expired: take it over, as a new term.
    TakeOver {
        /// `leaseTransitions` to write.
        transitions: i32,
    },
}

/// Decides what to do with `current` (the Lease's spec, if it exists), given how long ago
/// this candidate first saw that exact record (`unchanged_for`).
pub fn decide(
    current: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Decision {
    let Some(spec) = current else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return Decision::Renew;
    }
    // The holder's own duration counts, as in client-go, so candidates with different
    // settings agree on when a term ends.
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(0) as u64))
        .unwrap_or(lease_duration);
    if !holder.is_empty() && unchanged_for < duration {
        return Decision::Wait {
            holder: holder.to_string(),
        };
    }
    Decision::TakeOver {
        transitions: spec.lease_transitions.unwrap_or(0) + 1,
    }
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    lock: LeaseLock,
    timing: Timing,
    /// The last record seen and when it was first seen, to time other holders' terms.
    observed: Option<(LeaseSpec, Instant)>,
}

impl LeaderElector {
    /// A candidate that will use `client` to read and write the Lease.
    pub fn new(client: Client, lock: LeaseLock, timing: Timing) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &lock.namespace),
            lock,
            timing,
            observed: None,
        }
    }

    /// One attempt to acquire or renew the lease: `Ok(true)` when this candidate holds it
    /// after the call.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let existing = self.api.get_opt(&self.lock.name).await?;
        let spec = existing.as_ref().and_then(|l| l.spec.clone());
        let unchanged_for = match (&self.observed, &spec) {
            (Some((seen, at)), Some(cur)) if seen == cur => now.duration_since(*at),
            (_, Some(cur)) => {
                self.observed = Some((cur.clone(), now));
                Duration::ZERO
            }
            (_, None) => Duration::ZERO,
        };
        let decision = decide(
            spec.as_ref(),
            &self.lock.identity,
            unchanged_for,
            self.timing.lease_duration,
        );
        let stamp = MicroTime(Timestamp::now());
        let mut next = LeaseSpec {
            holder_identity: Some(self.lock.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_duration.as_secs() as i32),
            acquire_time: Some(stamp.clone()),
            renew_time: Some(stamp),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        };
        let result = match (decision, existing) {
            (Decision::Wait { .. }, _) => return Ok(false),
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.lock.name.clone()),
                        namespace: Some(self.lock.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(next.clone()),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Decision::Renew, Some(mut lease)) => {
                let cur = spec.unwrap_or_default();
                next.acquire_time = cur.acquire_time;
                next.lease_transitions = cur.lease_transitions;
                lease.spec = Some(next.clone());
                self.api
                    .replace(&self.lock.name, &PostParams::default(), &lease)
                    .await
            }
            (Decision::TakeOver { transitions }, Some(mut lease)) => {
                next.lease_transitions = Some(transitions);
                lease.spec = Some(next.clone());
                self.api
                    .replace(&self.lock.name, &PostParams::default(), &lease)
                    .await
            }
            (Decision::Renew | Decision::TakeOver { .. }, None) => return Ok(false),
        };
        match result {
            Ok(_) => {
                self.observed = Some((next, Instant::now()));
                Ok(true)
            }
            // Someone else wrote first: they won this round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Returns once this candidate holds the lease, retrying every `retry_period`.
    pub async fn acquire(&mut self) {
        let mut waiting_on: Option<String> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.lock.name, identity = %self.lock.identity, "successfully acquired lease");
                    return;
                }
                Ok(false) => {
                    let holder = self
                        .observed
                        .as_ref()
                        .and_then(|(s, _)| s.holder_identity.clone());
                    if holder != waiting_on {
                        tracing::info!(lease = %self.lock.name, holder = ?holder, "lease held by another candidate; waiting");
                        waiting_on = holder;
                    }
                }
                Err(e) => tracing::warn!(lease = %self.lock.name, "acquiring lease: {e}"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the lease every `retry_period`; returns when it could not be renewed for
    /// `renew_deadline`, i.e. when leadership is lost.
    pub async fn hold(&mut self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => {
                    tracing::warn!(lease = %self.lock.name, "lease taken by another candidate");
                    return;
                }
                Err(e) => tracing::warn!(lease = %self.lock.name, "renewing lease: {e}"),
            }
            if last_renewal.elapsed() >= self.timing.renew_deadline {
                tracing::warn!(lease = %self.lock.name, "failed to renew lease within the deadline");
                return;
            }
        }
    }

    /// Gives the lease up (empty holder, 1 s duration, as client-go's ReleaseOnCancel) so
    /// that another candidate takes over without waiting for the term to run out.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.lock.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(&self.lock.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let stamp = MicroTime(Timestamp::now());
        spec.acquire_time = Some(stamp.clone());
        spec.renew_time = Some(stamp);
        self.api
            .replace(&self.lock.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

/// A component to run while leading: called once per term, on the term's own runtime.
pub type Component = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Campaigns for the lease forever; while this candidate leads, `component` runs on a
/// dedicated two-thread tokio runtime, which is shut down (stopping every task the
/// component spawned) as soon as leadership is lost.
pub async fn run_leading(client: Client, lock: LeaseLock, timing: Timing, component: Component) {
    let mut elector = LeaderElector::new(client, lock.clone(), timing);
    loop {
        elector.acquire().await;
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("{}-leader", lock.name))
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(lease = %lock.name, "cannot start a runtime for the leader: {e}");
                let _ = elector.release().await;
                tokio::time::sleep(timing.retry_period).await;
                continue;
            }
        };
        rt.spawn(component());
        elector.hold().await;
        tracing::warn!(lease = %lock.name, "leaderelection lost; stopping until re-elected");
        rt.shutdown_background();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, secs: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(secs),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    const D: Duration = Duration::from_secs(10);

    #[test]
    fn missing_lease_is_created() {
        assert_eq!(decide(None, "a", Duration::ZERO, D), Decision::Create);
    }

    #[test]
    fn own_lease_is_renewed_even_when_old() {
        let s = spec(Some("a"), 10, 3);
        assert_eq!(
            decide(Some(&s), "a", Duration::from_secs(60), D),
            Decision::Renew
        );
    }

    #[test]
    fn live_lease_of_another_is_respected() {
        let s = spec(Some("b"), 10, 0);
        assert_eq!(
            decide(Some(&s), "a", Duration::from_secs(9), D),
            Decision::Wait { holder: "b".into() }
        );
    }

    #[test]
    fn expired_lease_is_taken_over_as_a_new_term() {
        let s = spec(Some("b"), 10, 4);
        assert_eq!(
            decide(Some(&s), "a", Duration::from_secs(10), D),
            Decision::TakeOver { transitions: 5 }
        );
    }

    #[test]
    fn the_holders_duration_counts() {
        // A released lease (1 s) is free after one second, whatever our own duration.
        let s = spec(Some("b"), 1, 0);
        assert_eq!(
            decide(Some(&s), "a", Duration::from_secs(1), D),
            Decision::TakeOver { transitions: 1 }
        );
    }

    #[test]
    fn released_lease_is_free_at_once() {
        let s = spec(None, 1, 2);
        assert_eq!(
            decide(Some(&s), "a", Duration::ZERO, D),
            Decision::TakeOver { transitions: 3 }
        );
    }
}
