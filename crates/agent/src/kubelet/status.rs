//! The pod status the kubelet posts: phase, conditions and container statuses, computed
//! from the worker's view of its containers (pure, so it is tested without runc).

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::core::v1::PodCondition;
use serde_json::{json, Value};

/// A container state as Kubernetes shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not running: ContainerCreating, CrashLoopBackOff, ErrImagePull...
    Waiting {
        /// Reason.
        reason: String,
        /// Message (may be empty).
        message: String,
    },
    /// Running since.
    Running {
        /// Start time.
        started_at: DateTime<Utc>,
    },
    /// Ended.
    Terminated {
        /// Exit code.
        exit_code: i32,
        /// Completed, Error, OOMKilled.
        reason: String,
        /// When it started.
        started_at: DateTime<Utc>,
        /// When it ended.
        finished_at: DateTime<Utc>,
        /// `skiff://<id>`.
        container_id: String,
    },
}

impl State {
    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } if message.is_empty() => {
                json!({"waiting": {"reason": reason}})
            }
            State::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated {
                exit_code,
                reason,
                started_at,
                finished_at,
                container_id,
            } => json!({"terminated": {
                "exitCode": exit_code, "reason": reason, "startedAt": started_at,
                "finishedAt": finished_at, "containerID": container_id}}),
        }
    }
}

/// One container as the worker sees it.
#[derive(Debug, Clone)]
pub struct ContainerView {
    /// Name.
    pub name: String,
    /// The image as the spec names it.
    pub image: String,
    /// The image ID, once resolved.
    pub image_id: String,
    /// `skiff://<id>` of the latest instance, if any.
    pub container_id: Option<String>,
    /// Current state.
    pub state: State,
    /// The previous instance's end (a Terminated state), if it restarted.
    pub last: Option<State>,
    /// Readiness.
    pub ready: bool,
    /// Started (startup probe passed, or running without one).
    pub started: bool,
    /// Restarts so far.
    pub restart_count: i32,
}

impl ContainerView {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "state": self.state.to_json(),
            "lastState": self.last.as_ref().map(State::to_json).unwrap_or_else(|| json!({})),
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": self.image,
            "imageID": self.image_id,
            "started": self.started,
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v
    }

    fn terminated_code(&self) -> Option<i32> {
        match &self.state {
            State::Terminated { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }

    fn last_code(&self) -> Option<i32> {
        match &self.last {
            Some(State::Terminated { exit_code, .. }) => Some(*exit_code),
            _ => None,
        }
    }
}

/// Everything the status is made from.
#[derive(Debug, Clone)]
pub struct PodView {
    /// Init containers in spec order.
    pub init: Vec<ContainerView>,
    /// App containers in spec order.
    pub main: Vec<ContainerView>,
    /// Ephemeral containers in spec order (they count for neither phase nor readiness).
    pub ephemeral: Vec<ContainerView>,
    /// Always, OnFailure or Never.
    pub restart_policy: String,
    /// The netns is wired.
    pub sandbox_ready: bool,
    /// Pod IP, once known.
    pub pod_ip: Option<String>,
    /// Node IP.
    pub host_ip: String,
    /// When the agent took the pod on.
    pub start_time: DateTime<Utc>,
    /// The pod's QoS class.
    pub qos_class: String,
}

fn init_done(v: &ContainerView) -> bool {
    v.terminated_code() == Some(0)
}

/// The pod phase, as the kubelet's getPhase decides it.
pub fn phase(v: &PodView) -> &'static str {
    let never = v.restart_policy == "Never";
    let mut pending_init = false;
    for ic in &v.init {
        if init_done(ic) {
            continue;
        }
        let failed = matches!(ic.terminated_code(), Some(c) if c != 0)
            || matches!(ic.last_code(), Some(c) if c != 0);
        if failed && never {
            return "Failed";
        }
        pending_init = true;
    }
    if pending_init {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &v.main {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated { exit_code, .. } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } => match c.last_code() {
                Some(code) => {
                    stopped += 1;
                    if code == 0 {
                        succeeded += 1;
                    }
                }
                None => waiting += 1,
            },
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match v.restart_policy.as_str() {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ => "Failed",
        }
    } else {
        "Pending"
    }
}

/// Converts an API timestamp (k8s-openapi's jiff) to chrono.
pub fn to_chrono(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
}

fn condition(
    prev: &[PodCondition],
    now: DateTime<Utc>,
    t: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let since = prev
        .iter()
        .find(|c| c.type_ == t && c.status == status)
        .and_then(|c| {
            c.last_transition_time
                .as_ref()
                .and_then(|t| to_chrono(&t.0))
        })
        .unwrap_or(now);
    let mut v =
        json!({"type": t, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
    if let Some(r) = reason {
        v["reason"] = json!(r);
    }
    if let Some(m) = message {
        v["message"] = json!(m);
    }
    v
}

/// The whole status object (`status` of a merge patch on pods/status).
pub fn build(v: &PodView, prev: &[PodCondition], now: DateTime<Utc>) -> Value {
    let phase = phase(v);
    let completed = phase == "Succeeded" || phase == "Failed";
    let not_init: Vec<&str> = v
        .init
        .iter()
        .filter(|c| !init_done(c))
        .map(|c| c.name.as_str())
        .collect();
    let unready: Vec<&str> = v
        .main
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let initialized = not_init.is_empty();
    let ready = unready.is_empty() && initialized && !completed;
    let (r_reason, r_msg) = if ready {
        (None, None)
    } else if completed {
        (Some("PodCompleted"), None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    // Condition times have whole seconds, as metav1.Time does on the wire: a status
    // built again from the stored pod is then equal to the one posted, and is not
    // posted twice.
    let now = now.trunc_subsecs(0);
    // Whatever the scheduler said stays, in the same shape as the other conditions.
    let scheduled = match prev.iter().find(|c| c.type_ == "PodScheduled") {
        Some(c) => condition(
            prev,
            now,
            "PodScheduled",
            c.status == "True",
            c.reason.as_deref(),
            c.message.clone(),
        ),
        None => condition(prev, now, "PodScheduled", true, None, None),
    };
    let conditions = vec![
        condition(
            prev,
            now,
            "PodReadyToStartContainers",
            v.sandbox_ready && !completed,
            None,
            None,
        ),
        if initialized {
            condition(
                prev,
                now,
                "Initialized",
                true,
                completed
                    .then_some("PodCompleted")
                    .filter(|_| !v.init.is_empty()),
                None,
            )
        } else {
            condition(
                prev,
                now,
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    not_init.join(" ")
                )),
            )
        },
        condition(prev, now, "Ready", ready, r_reason, r_msg.clone()),
        condition(prev, now, "ContainersReady", ready, r_reason, r_msg),
        scheduled,
    ];
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": v.host_ip,
        "hostIPs": [{"ip": v.host_ip}],
        "startTime": v.start_time,
        "qosClass": v.qos_class,
        "containerStatuses": v.main.iter().map(ContainerView::to_json).collect::<Vec<_>>(),
    });
    if !v.init.is_empty() {
        status["initContainerStatuses"] = json!(v
            .init
            .iter()
            .map(ContainerView::to_json)
            .collect::<Vec<_>>());
    }
    if !v.ephemeral.is_empty() {
        status["ephemeralContainerStatuses"] = json!(v
            .ephemeral
            .iter()
            .map(ContainerView::to_json)
            .collect::<Vec<_>>());
    }
    if let Some(ip) = &v.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

/// Makes `status` (from [`build`]) an evicted pod's, as kubelet's eviction manager
/// posts it: phase Failed, reason `Evicted` with its message, and the `DisruptionTarget`
/// condition (reason `TerminationByKubelet`).
pub fn mark_evicted(status: &mut Value, prev: &[PodCondition], message: &str, now: DateTime<Utc>) {
    status["phase"] = json!("Failed");
    status["reason"] = json!("Evicted");
    status["message"] = json!(message);
    let cond = condition(
        prev,
        now.trunc_subsecs(0),
        "DisruptionTarget",
        true,
        Some("TerminationByKubelet"),
        Some(message.to_string()),
    );
    if let Some(cs) = status["conditions"].as_array_mut() {
        cs.retain(|c| c["type"] != "DisruptionTarget");
        cs.insert(0, cond);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T22:15:04Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cv(name: &str, state: State, last: Option<State>, ready: bool) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "httpd".into(),
            image_id: "sha256:1".into(),
            container_id: Some("skiff://abc".into()),
            state,
            last,
            ready,
            started: ready,
            restart_count: 0,
        }
    }

    fn term(code: i32) -> State {
        State::Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            started_at: t(),
            finished_at: t(),
            container_id: "skiff://abc".into(),
        }
    }

    fn pod(init: Vec<ContainerView>, main: Vec<ContainerView>, policy: &str) -> PodView {
        PodView {
            init,
            main,
            ephemeral: Vec::new(),
            restart_policy: policy.into(),
            sandbox_ready: true,
            pod_ip: Some("10.244.1.2".into()),
            host_ip: "192.168.1.2".into(),
            start_time: t(),
            qos_class: "BestEffort".into(),
        }
    }

    #[test]
    fn phases() {
        let creating = State::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        };
        assert_eq!(
            phase(&pod(
                vec![],
                vec![cv("a", creating.clone(), None, false)],
                "Always"
            )),
            "Pending"
        );
        assert_eq!(
            phase(&pod(
                vec![],
                vec![cv("a", State::Running { started_at: t() }, None, true)],
                "Always"
            )),
            "Running"
        );
        assert_eq!(
            phase(&pod(vec![], vec![cv("a", term(0), None, false)], "Never")),
            "Succeeded"
        );
        assert_eq!(
            phase(&pod(vec![], vec![cv("a", term(1), None, false)], "Never")),
            "Failed"
        );
        let backoff = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: String::new(),
        };
        assert_eq!(
            phase(&pod(
                vec![],
                vec![cv("a", backoff, Some(term(1)), false)],
                "Always"
            )),
            "Running"
        );
        assert_eq!(
            phase(&pod(
                vec![cv("i", State::Running { started_at: t() }, None, false)],
                vec![cv("a", creating.clone(), None, false)],
                "Always"
            )),
            "Pending"
        );
        assert_eq!(
            phase(&pod(
                vec![cv("i", term(2), None, false)],
                vec![cv("a", creating, None, false)],
                "Never"
            )),
            "Failed"
        );
    }

    #[test]
    fn conditions_and_statuses() {
        let p = pod(
            vec![],
            vec![cv("web", State::Running { started_at: t() }, None, true)],
            "Always",
        );
        let s = build(&p, &[], t());
        assert_eq!(s["phase"], "Running");
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            vec![
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(s["conditions"][2]["status"], "True");
        assert_eq!(
            s["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2026-11-25T22:15:04Z"
        );
        assert_eq!(s["podIPs"][0]["ip"], "10.244.1.2");
        let p = pod(
            vec![],
            vec![cv("web", State::Running { started_at: t() }, None, false)],
            "Always",
        );
        let s = build(&p, &[], t());
        assert_eq!(s["conditions"][2]["reason"], "ContainersNotReady");
        assert_eq!(
            s["conditions"][2]["message"],
            "containers with unready status: [web]"
        );
    }
    #[test]
    fn a_status_built_again_from_the_stored_pod_is_the_same() {
        let p = pod(
            vec![],
            vec![cv("web", State::Running { started_at: t() }, None, true)],
            "Always",
        );
        let first = build(&p, &[], t() + chrono::Duration::nanoseconds(123_456_789));
        // What the API server stores and sends back.
        let stored: Vec<PodCondition> =
            serde_json::from_value(first["conditions"].clone()).unwrap();
        let again = build(&p, &stored, t() + chrono::Duration::seconds(3));
        assert_eq!(first, again);
        assert_eq!(
            first["conditions"][4]["lastTransitionTime"],
            "2026-11-25T22:15:04Z"
        );
    }

    #[test]
    fn an_evicted_pod_is_failed_with_the_reason_and_a_disruption_target() {
        let v = pod(vec![], vec![], "Always");
        let now = Utc::now();
        let mut s = build(&v, &[], now);
        mark_evicted(
            &mut s,
            &[],
            "Usage of EmptyDir volume \"x\" exceeds the limit \"1Mi\". ",
            now,
        );
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["reason"], "Evicted");
        assert_eq!(
            s["message"],
            "Usage of EmptyDir volume \"x\" exceeds the limit \"1Mi\". "
        );
        let dt = &s["conditions"][0];
        assert_eq!(dt["type"], "DisruptionTarget");
        assert_eq!(dt["status"], "True");
        assert_eq!(dt["reason"], "TerminationByKubelet");
    }
}
