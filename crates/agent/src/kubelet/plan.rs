//! What one pass of a pod's worker should do, decided from the pod and what the worker
//! observes of its sandbox and containers, as kubelet's `computePodActions` decides
//! before the runtime acts: tear down a deleted pod, create the sandbox, restart or
//! finish exited containers (restart policy, crash-loop back-off), kill unhealthy ones,
//! start the next init container or the app containers. Pure: no IO, and the clock is
//! the `now` parameter, so every rule is tested without runc.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod, PodSpec};

use super::backoff::Backoff;
use super::probe;

/// What the worker knows when it plans.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The sandbox (netns, CNI, /etc files, volumes) is set up.
    pub sandbox_ready: bool,
    /// No sandbox setup before this (the back-off after a failed one).
    pub sandbox_retry_at: Instant,
    /// The pod network is configured (the node has its pod CIDR).
    pub network_ready: bool,
    /// The containers the worker has a record of, by name; one missing never started.
    pub containers: HashMap<String, Seen>,
}

/// One container as the worker sees it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Its instance's state.
    pub run: Run,
    /// Not to be started before this (back-off after an exit or a failed start).
    pub not_before: Option<Instant>,
    /// Its crash-loop back-off.
    pub backoff: Backoff,
}

/// A container's instance, as observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Run {
    /// No instance runs: never started, or waiting to start again.
    #[default]
    Idle,
    /// An instance runs; `unhealthy` names the probe that failed it, if one did.
    Running {
        /// The liveness or startup probe that crossed its failure threshold.
        unhealthy: Option<probe::Kind>,
    },
    /// The instance exited, and nothing was decided about it yet.
    Exited {
        /// Its exit code.
        code: i32,
        /// How long it ran (a long run resets the back-off).
        ran_for: Duration,
    },
    /// Finished for good under the restart policy.
    Done {
        /// It exited 0.
        succeeded: bool,
    },
}

/// What to do in this pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// Stop everything and remove the sandbox; nothing else happens.
    pub teardown: Option<Teardown>,
    /// The pod is finished, and nothing more starts.
    pub finished: Option<Finished>,
    /// Set the sandbox up now.
    pub create_sandbox: bool,
    /// What becomes of each exited instance, in spec order.
    pub exits: Vec<(String, AfterExit)>,
    /// Containers to kill.
    pub kill: Vec<Kill>,
    /// Containers to start, in order (at most one init container).
    pub start: Vec<Start>,
}

/// The pod is going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// Deleted through the API (grace period, preStop hooks, Killing events, deletion
    /// finalized) rather than gone from it.
    pub graceful: bool,
    /// The containers still running, to stop.
    pub stop: Vec<String>,
}

/// How a pod is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// It had finished before this worker took it on (its posted phase is Succeeded or
    /// Failed, and nothing of it runs here): no sandbox, no start, no status.
    Before,
    /// Its containers ran to completion under this worker (restart policy Never or
    /// OnFailure, or an init container failed under Never).
    Now,
}

/// What becomes of an exited instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterExit {
    /// It stays terminated (the restart policy says so).
    Done,
    /// It runs again, not before `at`.
    Restart {
        /// When it may start again.
        at: Instant,
        /// The container's back-off after this exit.
        backoff: Backoff,
        /// The back-off delay, when there is one: it waits in CrashLoopBackOff.
        waiting: Option<Waiting>,
    },
}

/// A container waiting, as its status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// `CrashLoopBackOff`...
    pub reason: String,
    /// kubelet's message.
    pub message: String,
}

/// A container to kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: KillReason,
}

/// Why a container is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// Its liveness or startup probe failed: it will be restarted.
    Unhealthy(probe::Kind),
    /// The sandbox it ran in is gone: it will run again in a new one.
    SandboxGone,
}

/// A container to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Its name.
    pub name: String,
    /// An init container.
    pub init: bool,
}

/// Whether a container that exited with `code` runs again under the pod's restart policy.
pub fn restart_wanted(policy: &str, is_init: bool, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        // Init containers of an Always pod are re-run only on failure.
        _ => !is_init || code != 0,
    }
}

/// The pod's ephemeral containers as the containers they run as (an
/// `EphemeralContainer` is a `Container` plus `targetContainerName`, whose fields the API
/// server already restricted).
pub fn ephemeral_containers(spec: &PodSpec) -> Vec<Container> {
    spec.ephemeral_containers
        .iter()
        .flatten()
        .map(ephemeral_as_container)
        .collect()
}

/// One ephemeral container as a `Container`.
pub fn ephemeral_as_container(ec: &EphemeralContainer) -> Container {
    let mut v = serde_json::to_value(ec).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("targetContainerName");
    }
    serde_json::from_value(v).unwrap_or_else(|_| Container {
        name: ec.name.clone(),
        ..Default::default()
    })
}

/// Whether `name` is one of the pod's ephemeral containers.
pub fn is_ephemeral(spec: &PodSpec, name: &str) -> bool {
    spec.ephemeral_containers
        .iter()
        .flatten()
        .any(|c| c.name == name)
}

fn policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// The actions of one pass for `pod` (None: gone from the API).
pub fn plan(pod: Option<&Pod>, observed: &Observed, now: Instant) -> Actions {
    let running: Vec<String> = {
        let mut names: Vec<&String> = observed
            .containers
            .iter()
            .filter(|(_, s)| matches!(s.run, Run::Running { .. }))
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names.into_iter().cloned().collect()
    };
    let pod = match pod {
        None => {
            return Actions {
                teardown: Some(Teardown {
                    graceful: false,
                    stop: running,
                }),
                ..Default::default()
            }
        }
        Some(p) if p.metadata.deletion_timestamp.is_some() => {
            return Actions {
                teardown: Some(Teardown {
                    graceful: true,
                    stop: running,
                }),
                ..Default::default()
            }
        }
        Some(p) => p,
    };
    let posted_finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    );
    if posted_finished && observed.containers.is_empty() {
        return Actions {
            finished: Some(Finished::Before),
            ..Default::default()
        };
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let mut actions = Actions {
        exits: exits(pod, observed, now),
        ..Default::default()
    };
    // The containers' states once the exits are decided.
    let mut states: HashMap<&str, (Run, Option<Instant>)> = observed
        .containers
        .iter()
        .map(|(n, s)| (n.as_str(), (s.run, s.not_before)))
        .collect();
    for (name, after) in &actions.exits {
        let exited = states.get(name.as_str()).map(|(r, _)| *r);
        let Some(Run::Exited { code, .. }) = exited else {
            continue;
        };
        let state = match after {
            AfterExit::Done => (
                Run::Done {
                    succeeded: code == 0,
                },
                None,
            ),
            AfterExit::Restart { at, .. } => (Run::Idle, Some(*at)),
        };
        states.insert(name.as_str(), state);
    }
    let state = |name: &str| states.get(name).copied().unwrap_or_default();
    if !observed.sandbox_ready {
        // kubelet kills what still runs of a pod whose sandbox is gone, and makes a
        // new one; nothing starts before it is there.
        actions.kill = running
            .into_iter()
            .map(|name| Kill {
                name,
                reason: KillReason::SandboxGone,
            })
            .collect();
        let host_network = spec.host_network.unwrap_or(false);
        actions.create_sandbox =
            (observed.network_ready || host_network) && now >= observed.sandbox_retry_at;
        return actions;
    }
    for name in &running {
        if let (
            Run::Running {
                unhealthy: Some(kind),
            },
            _,
        ) = state(name)
        {
            actions.kill.push(Kill {
                name: name.clone(),
                reason: KillReason::Unhealthy(kind),
            });
        }
    }
    let waits = |nb: Option<Instant>| nb.is_some_and(|t| t > now);
    // Ephemeral containers start once and are never restarted; like kubelet, before
    // the init containers, so that a pod whose init container fails can be debugged.
    if !posted_finished {
        for ec in spec.ephemeral_containers.iter().flatten() {
            if let (Run::Idle, nb) = state(&ec.name) {
                if !waits(nb) {
                    actions.start.push(Start {
                        name: ec.name.clone(),
                        init: false,
                    });
                }
            }
        }
    }
    // Init containers one at a time, in order; the app containers once all succeeded.
    for ic in spec.init_containers.iter().flatten() {
        match state(&ic.name) {
            (Run::Done { succeeded: true }, _) => continue,
            (Run::Done { succeeded: false }, _) => {
                // Only a Never pod leaves a failed init container done.
                actions.finished = Some(Finished::Now);
                return actions;
            }
            (Run::Idle, nb) if !waits(nb) => actions.start.push(Start {
                name: ic.name.clone(),
                init: true,
            }),
            _ => {}
        }
        return actions;
    }
    let mut all_done = !spec.containers.is_empty();
    for c in &spec.containers {
        match state(&c.name) {
            (Run::Done { .. }, _) => continue,
            (Run::Idle, nb) if !waits(nb) => actions.start.push(Start {
                name: c.name.clone(),
                init: false,
            }),
            _ => {}
        }
        all_done = false;
    }
    if all_done {
        actions.finished = Some(Finished::Now);
    }
    actions
}

/// What becomes of each exited instance: done under the restart policy, or restarted
/// after the crash-loop back-off (the first restart at once, then 10 s doubling).
pub fn exits(pod: &Pod, observed: &Observed, now: Instant) -> Vec<(String, AfterExit)> {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = policy(&spec);
    let pod_name = format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    );
    let init = spec.init_containers.iter().flatten().map(|c| (c, true));
    let app = spec.containers.iter().map(|c| (c, false));
    let mut out = Vec::new();
    // An ephemeral container that exited stays terminated, whatever the policy.
    for ec in spec.ephemeral_containers.iter().flatten() {
        if let Some(Seen {
            run: Run::Exited { .. },
            ..
        }) = observed.containers.get(&ec.name)
        {
            out.push((ec.name.clone(), AfterExit::Done));
        }
    }
    for (c, is_init) in init.chain(app) {
        let Some(seen) = observed.containers.get(&c.name) else {
            continue;
        };
        let Run::Exited { code, ran_for } = seen.run else {
            continue;
        };
        if !restart_wanted(policy, is_init, code) {
            out.push((c.name.clone(), AfterExit::Done));
            continue;
        }
        let mut backoff = seen.backoff.clone();
        let delay = backoff.on_exit(ran_for);
        let waiting = (!delay.is_zero()).then(|| Waiting {
            reason: "CrashLoopBackOff".into(),
            message: format!(
                "back-off {} restarting failed container={} pod={pod_name}",
                fmt_duration(delay),
                c.name
            ),
        });
        out.push((
            c.name.clone(),
            AfterExit::Restart {
                at: now + delay,
                backoff,
                waiting,
            },
        ));
    }
    out
}

/// When the worker must look again by itself: the earliest back-off end of a container
/// waiting to start, else the end of the sandbox's back-off; None when only an event
/// (pod update, exit, probe, pod network) can change anything.
pub fn wake_at(observed: &Observed, now: Instant) -> Option<Instant> {
    observed
        .containers
        .values()
        .filter(|s| s.run == Run::Idle)
        .filter_map(|s| s.not_before)
        .filter(|t| *t > now)
        .min()
        .or(Some(observed.sandbox_retry_at).filter(|t| !observed.sandbox_ready && *t > now))
}

/// A duration as Go prints it in kubelet's back-off messages (`40s`, `1m20s`, `5m0s`).
fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m0s", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// What the worker does about a container's image (kubelet's `EnsureImageExists`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStep {
    /// Run the image the node has (event `Container image "x" already present on
    /// machine`).
    UsePresent,
    /// Pull it now.
    Pull,
    /// A pull failed a moment ago: wait for the pull back-off (`ImagePullBackOff`).
    BackOff,
    /// Missing with `imagePullPolicy: Never` (`ErrImageNeverPull`).
    NeverPulled,
}

/// kubelet's pull decision: `Never` uses what the node has, `IfNotPresent` pulls what
/// it lacks, `Always` pulls every time (no policy: as the API server defaults it, from
/// the tag). `present` is whether the node has the image and whether it came from a
/// registry: built-in and imported images have no registry to ask, so they count as
/// pulled already. `backing_off`: a pull failed and its back-off has not passed.
pub fn image_step(
    image: &str,
    policy: Option<&str>,
    present: Option<bool>,
    backing_off: bool,
) -> ImageStep {
    let policy = match policy {
        Some(p) => p,
        None if image_tag_is_latest(image) => "Always",
        None => "IfNotPresent",
    };
    match (policy, present) {
        ("Never", Some(_)) => ImageStep::UsePresent,
        ("Never", None) => ImageStep::NeverPulled,
        ("Always", Some(false)) => ImageStep::UsePresent,
        ("Always", _) | (_, None) if backing_off => ImageStep::BackOff,
        ("Always", _) | (_, None) => ImageStep::Pull,
        (_, Some(_)) => ImageStep::UsePresent,
    }
}

/// Whether a reference means `:latest` (no tag, or that tag; a digest pins it).
fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

/// What the worker shows for a container whose image it could not get: its waiting
/// reason and message, and the events to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingImage {
    /// The container's waiting reason.
    pub reason: &'static str,
    /// The container's waiting message.
    pub message: String,
    /// The events to record: type (`Normal`/`Warning`), reason and message.
    pub events: Vec<(&'static str, &'static str, String)>,
}

/// `ErrImageNeverPull`, as kubelet says it.
pub fn never_pulled(image: &str) -> MissingImage {
    let message = format!("Container image \"{image}\" is not present with pull policy of Never");
    MissingImage {
        reason: "ErrImageNeverPull",
        message: message.clone(),
        events: vec![
            ("Warning", "ErrImageNeverPull", message),
            ("Warning", "Failed", "Error: ErrImageNeverPull".into()),
        ],
    }
}

/// A failed pull (`ErrImagePull`): `error` is the puller's reason.
pub fn pull_failed(image: &str, error: &str) -> MissingImage {
    MissingImage {
        reason: "ErrImagePull",
        message: error.to_string(),
        events: vec![
            (
                "Warning",
                "Failed",
                format!("Failed to pull image \"{image}\": {error}"),
            ),
            ("Warning", "Failed", "Error: ErrImagePull".into()),
        ],
    }
}

/// Waiting out the pull back-off (`ImagePullBackOff`).
pub fn pull_backoff(image: &str) -> MissingImage {
    let message = format!("Back-off pulling image \"{image}\"");
    MissingImage {
        reason: "ImagePullBackOff",
        message: message.clone(),
        events: vec![
            ("Normal", "BackOff", message),
            ("Warning", "Failed", "Error: ImagePullBackOff".into()),
        ],
    }
}

/// The event of a pull that succeeded, in kubelet's words: durations as Go prints them,
/// truncated to the millisecond.
pub fn pulled_message(image: &str, took: Duration, with_waiting: Duration, size: u64) -> String {
    format!(
        "Successfully pulled image \"{image}\" in {} ({} including waiting). Image size: {size} bytes.",
        go_duration_ms(took),
        go_duration_ms(with_waiting)
    )
}

/// Go's `time.Duration.String()` of a duration truncated to milliseconds (`523ms`,
/// `1.5s`, `2m0.03s`, `1h0m0s`).
pub fn go_duration_ms(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str, init: &[&str], app: &[&str]) -> Pod {
        let ctrs = |names: &[&str]| -> Vec<serde_json::Value> {
            names
                .iter()
                .map(|n| serde_json::json!({"name": n, "image": "busybox"}))
                .collect()
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "initContainers": ctrs(init),
                "containers": ctrs(app),
            }
        }))
        .unwrap()
    }

    fn observed(containers: &[(&str, Seen)]) -> Observed {
        Observed {
            sandbox_ready: true,
            sandbox_retry_at: t0(),
            network_ready: true,
            containers: containers
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
        }
    }

    fn t0() -> Instant {
        // A fixed point well after the process start, so t0() - x is representable.
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(|| Instant::now() + Duration::from_secs(3600))
    }

    fn seen(run: Run) -> Seen {
        Seen {
            run,
            ..Default::default()
        }
    }

    fn running() -> Seen {
        seen(Run::Running { unhealthy: None })
    }

    fn exited(code: i32) -> Seen {
        seen(Run::Exited {
            code,
            ran_for: Duration::from_secs(5),
        })
    }

    fn starts(a: &Actions) -> Vec<&str> {
        a.start.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn fresh_pod_creates_its_sandbox_then_starts_its_containers() {
        let p = pod("Always", &[], &["web", "side"]);
        let mut o = observed(&[]);
        o.sandbox_ready = false;
        let a = plan(Some(&p), &o, t0());
        assert!(a.create_sandbox);
        assert!(a.start.is_empty());
        // No pod network yet: only a host-network pod could start.
        o.network_ready = false;
        assert!(!plan(Some(&p), &o, t0()).create_sandbox);
        let mut host = p.clone();
        host.spec.as_mut().unwrap().host_network = Some(true);
        assert!(plan(Some(&host), &o, t0()).create_sandbox);
        // A failed setup waits for its back-off.
        o.network_ready = true;
        o.sandbox_retry_at = t0() + Duration::from_secs(2);
        assert!(!plan(Some(&p), &o, t0()).create_sandbox);
        assert_eq!(wake_at(&o, t0()), Some(t0() + Duration::from_secs(2)));

        let a = plan(Some(&p), &observed(&[]), t0());
        assert!(!a.create_sandbox);
        assert_eq!(starts(&a), vec!["web", "side"]);
        assert!(a.start.iter().all(|s| !s.init));
        assert_eq!(a.finished, None);
    }

    #[test]
    fn ephemeral_containers_start_once_and_never_restart() {
        let mut p = pod("Always", &["init"], &["web"]);
        p.spec.as_mut().unwrap().ephemeral_containers = Some(vec![EphemeralContainer {
            name: "debugger".into(),
            image: Some("busybox".into()),
            target_container_name: Some("web".into()),
            ..Default::default()
        }]);
        // Started with the sandbox up, even while an init container is pending.
        let a = plan(Some(&p), &observed(&[]), t0());
        assert_eq!(starts(&a), vec!["debugger", "init"]);
        // Its exit is final under an Always pod.
        let done = seen(Run::Done { succeeded: true });
        let a = plan(
            Some(&p),
            &observed(&[
                ("init", done.clone()),
                ("web", running()),
                ("debugger", exited(1)),
            ]),
            t0(),
        );
        assert_eq!(a.exits, vec![("debugger".to_string(), AfterExit::Done)]);
        assert!(a.start.is_empty());
        let a = plan(
            Some(&p),
            &observed(&[
                ("init", done.clone()),
                ("web", running()),
                ("debugger", seen(Run::Done { succeeded: false })),
            ]),
            t0(),
        );
        assert!(a.start.is_empty());
        assert_eq!(a.finished, None);
        // It runs as a container, without its target.
        let c = ephemeral_as_container(
            &p.spec
                .as_ref()
                .unwrap()
                .ephemeral_containers
                .as_ref()
                .unwrap()[0],
        );
        assert_eq!(
            (c.name.as_str(), c.image.as_deref()),
            ("debugger", Some("busybox"))
        );
        assert!(is_ephemeral(p.spec.as_ref().unwrap(), "debugger"));
        assert!(!is_ephemeral(p.spec.as_ref().unwrap(), "web"));
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order() {
        let p = pod("Always", &["one", "two"], &["web"]);
        let a = plan(Some(&p), &observed(&[]), t0());
        assert_eq!(
            a.start,
            vec![Start {
                name: "one".into(),
                init: true
            }]
        );
        // While it runs, nothing else starts.
        let a = plan(Some(&p), &observed(&[("one", running())]), t0());
        assert!(a.start.is_empty());
        // Its success (exit 0) starts the next one in the same pass.
        let a = plan(Some(&p), &observed(&[("one", exited(0))]), t0());
        assert_eq!(a.exits, vec![("one".to_string(), AfterExit::Done)]);
        assert_eq!(starts(&a), vec!["two"]);
        // Then the app containers.
        let done = seen(Run::Done { succeeded: true });
        let a = plan(
            Some(&p),
            &observed(&[("one", done.clone()), ("two", exited(0))]),
            t0(),
        );
        assert_eq!(starts(&a), vec!["web"]);
    }

    #[test]
    fn a_failing_init_container_under_each_restart_policy() {
        for policy in ["Always", "OnFailure"] {
            let p = pod(policy, &["init"], &["web"]);
            let a = plan(Some(&p), &observed(&[("init", exited(1))]), t0());
            // Restarted at once the first time, the app containers still waiting.
            assert!(
                matches!(&a.exits[..], [(n, AfterExit::Restart { at, waiting: None, .. })]
                    if n == "init" && *at == t0()),
                "{policy}: {a:?}"
            );
            assert_eq!(starts(&a), vec!["init"], "{policy}");
            assert_eq!(a.finished, None);
        }
        let p = pod("Never", &["init"], &["web"]);
        let a = plan(Some(&p), &observed(&[("init", exited(1))]), t0());
        assert_eq!(a.exits, vec![("init".to_string(), AfterExit::Done)]);
        assert!(a.start.is_empty());
        assert_eq!(a.finished, Some(Finished::Now));
    }

    #[test]
    fn restart_policies_after_exits() {
        // (policy, exit code, restarted)
        let cases = [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 1, true),
            ("Never", 0, false),
            ("Never", 1, false),
        ];
        for (policy, code, restarted) in cases {
            let p = pod(policy, &[], &["web"]);
            let a = plan(Some(&p), &observed(&[("web", exited(code))]), t0());
            match &a.exits[..] {
                [(_, AfterExit::Restart { .. })] => {
                    assert!(restarted, "{policy} {code}");
                    assert_eq!(starts(&a), vec!["web"], "{policy} {code}");
                    assert_eq!(a.finished, None);
                }
                [(_, AfterExit::Done)] => {
                    assert!(!restarted, "{policy} {code}");
                    assert!(a.start.is_empty());
                    assert_eq!(a.finished, Some(Finished::Now), "{policy} {code}");
                }
                other => panic!("{policy} {code}: {other:?}"),
            }
        }
        // Init containers of an Always pod are not re-run after success.
        assert!(!restart_wanted("Always", true, 0));
        assert!(restart_wanted("Always", true, 2));
    }

    #[test]
    fn back_off_not_yet_elapsed_then_elapsed() {
        let p = pod("Always", &[], &["web"]);
        // A second quick exit: 10 s of back-off, CrashLoopBackOff meanwhile.
        let mut s = exited(1);
        s.backoff.on_exit(Duration::from_secs(1));
        let a = plan(Some(&p), &observed(&[("web", s)]), t0());
        let [(_, AfterExit::Restart { at, waiting, .. })] = &a.exits[..] else {
            panic!("{a:?}");
        };
        assert_eq!(*at, t0() + Duration::from_secs(10));
        let w = waiting.as_ref().unwrap();
        assert_eq!(w.reason, "CrashLoopBackOff");
        assert_eq!(
            w.message,
            "back-off 10s restarting failed container=web pod=p_ns(u1)"
        );
        assert!(a.start.is_empty());
        // Waiting: not before its time, and the worker wakes up then.
        let waiting = Seen {
            run: Run::Idle,
            not_before: Some(t0() + Duration::from_secs(10)),
            backoff: Backoff::default(),
        };
        let o = observed(&[("web", waiting)]);
        assert!(plan(Some(&p), &o, t0() + Duration::from_secs(9))
            .start
            .is_empty());
        assert_eq!(wake_at(&o, t0()), Some(t0() + Duration::from_secs(10)));
        assert_eq!(
            starts(&plan(Some(&p), &o, t0() + Duration::from_secs(10))),
            vec!["web"]
        );
        assert_eq!(wake_at(&o, t0() + Duration::from_secs(10)), None);
        // A long run starts the back-off over.
        let mut s = seen(Run::Exited {
            code: 1,
            ran_for: super::super::backoff::RESET_AFTER,
        });
        s.backoff.on_exit(Duration::from_secs(1));
        s.backoff.on_exit(Duration::from_secs(1));
        let a = plan(Some(&p), &observed(&[("web", s)]), t0());
        assert!(
            matches!(&a.exits[..], [(_, AfterExit::Restart { at, waiting: None, .. })] if *at == t0())
        );
    }

    #[test]
    fn deletion_kills_everything() {
        let mut p = pod("Always", &[], &["web", "side", "gone"]);
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        let o = observed(&[
            ("web", running()),
            ("side", running()),
            ("gone", seen(Run::Done { succeeded: true })),
        ]);
        let a = plan(Some(&p), &o, t0());
        assert_eq!(
            a,
            Actions {
                teardown: Some(Teardown {
                    graceful: true,
                    stop: vec!["side".into(), "web".into()]
                }),
                ..Default::default()
            }
        );
        // Gone from the API: stopped without grace.
        let a = plan(None, &o, t0());
        assert_eq!(a.teardown.map(|t| t.graceful), Some(false));
    }

    #[test]
    fn sandbox_gone_is_made_again() {
        let p = pod("Always", &[], &["web"]);
        let mut o = observed(&[("web", running())]);
        o.sandbox_ready = false;
        let a = plan(Some(&p), &o, t0());
        assert!(a.create_sandbox);
        assert_eq!(
            a.kill,
            vec![Kill {
                name: "web".into(),
                reason: KillReason::SandboxGone
            }]
        );
        assert!(a.start.is_empty());
    }

    #[test]
    fn unhealthy_containers_are_killed() {
        let p = pod("Always", &[], &["web"]);
        let o = observed(&[(
            "web",
            seen(Run::Running {
                unhealthy: Some(probe::Kind::Liveness),
            }),
        )]);
        assert_eq!(
            plan(Some(&p), &o, t0()).kill,
            vec![Kill {
                name: "web".into(),
                reason: KillReason::Unhealthy(probe::Kind::Liveness)
            }]
        );
    }

    #[test]
    fn a_pod_finished_before_the_worker_is_left_alone() {
        let mut p = pod("Never", &[], &["web"]);
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let mut o = observed(&[]);
        o.sandbox_ready = false;
        let a = plan(Some(&p), &o, t0());
        assert_eq!(a.finished, Some(Finished::Before));
        assert!(!a.create_sandbox);
        // Nothing to wait for either (no busy loop on a past sandbox back-off).
        assert_eq!(wake_at(&o, t0()), None);
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(fmt_duration(Duration::from_secs(40)), "40s");
        assert_eq!(fmt_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn pull_policies_as_kubelet() {
        use ImageStep::*;
        // A pulled image (Some(true)), a local one (Some(false)), none (None).
        assert_eq!(image_step("x:1", Some("Never"), None, false), NeverPulled);
        assert_eq!(
            image_step("x:1", Some("Never"), Some(true), false),
            UsePresent
        );
        assert_eq!(
            image_step("x:1", Some("IfNotPresent"), Some(true), false),
            UsePresent
        );
        assert_eq!(image_step("x:1", Some("IfNotPresent"), None, false), Pull);
        assert_eq!(image_step("x:1", Some("IfNotPresent"), None, true), BackOff);
        assert_eq!(image_step("x:1", Some("Always"), Some(true), false), Pull);
        assert_eq!(
            image_step("x:1", Some("Always"), Some(false), false),
            UsePresent
        );
        assert_eq!(image_step("x:1", Some("Always"), Some(true), true), BackOff);
        // No policy: defaulted from the tag.
        assert_eq!(image_step("x", None, Some(true), false), Pull);
        assert_eq!(image_step("r:5000/x:latest", None, Some(true), false), Pull);
        assert_eq!(image_step("r:5000/x", None, Some(true), false), Pull);
        assert_eq!(image_step("x:1", None, Some(true), false), UsePresent);
        assert_eq!(
            image_step("x@sha256:ab", None, Some(true), false),
            UsePresent
        );
    }

    #[test]
    fn image_messages_as_kubelet() {
        let never = never_pulled("busybox:9");
        assert_eq!(never.reason, "ErrImageNeverPull");
        assert_eq!(
            never.message,
            "Container image \"busybox:9\" is not present with pull policy of Never"
        );
        let failed = pull_failed(
            "x:1",
            "failed to pull and unpack image \"docker.io/library/x:1\": nope",
        );
        assert_eq!(failed.reason, "ErrImagePull");
        assert_eq!(
            failed.events[0].2,
            "Failed to pull image \"x:1\": failed to pull and unpack image \"docker.io/library/x:1\": nope"
        );
        assert_eq!(failed.events[1].2, "Error: ErrImagePull");
        let back = pull_backoff("x:1");
        assert_eq!(back.reason, "ImagePullBackOff");
        assert_eq!(back.message, "Back-off pulling image \"x:1\"");
        assert_eq!(
            pulled_message("x:1", Duration::from_millis(1234), Duration::from_micros(1_500_900), 42),
            "Successfully pulled image \"x:1\" in 1.234s (1.5s including waiting). Image size: 42 bytes."
        );
        assert_eq!(go_duration_ms(Duration::from_micros(523_900)), "523ms");
        assert_eq!(go_duration_ms(Duration::from_millis(120_030)), "2m0.03s");
        assert_eq!(go_duration_ms(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration_ms(Duration::ZERO), "0s");
    }
}
