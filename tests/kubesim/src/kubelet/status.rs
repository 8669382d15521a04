//! Pure pod-status rules: phase and conditions from container statuses, as the kubelet
//! computes them (`getPhase`, `GeneratePodReadyCondition`, ...).
//!
//! No I/O; the pod worker owns the container statuses and calls into this.

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The pod's `status.phase` given where its containers are.
///
/// * `init_done`: every (non-sidecar) init container has succeeded.
/// * `init_failed`: an init container failed and will not be restarted.
pub fn pod_phase(
    restart_policy: &str,
    init_done: bool,
    init_failed: bool,
    containers: &[ContainerStatus],
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in containers {
        let state = status.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if let Some(t) = status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
        {
            // Waiting to restart: counts as stopped with its last exit code.
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    match restart_policy {
        "Always" => "Running",
        "OnFailure" if stopped == succeeded => "Succeeded",
        "OnFailure" => "Running",
        _ if stopped > succeeded => "Failed",
        _ => "Succeeded",
    }
}

/// The four standard pod conditions. `previous` keeps `lastTransitionTime` for a condition
/// whose status did not change.
pub fn pod_conditions(
    phase: &str,
    init_done: bool,
    init_statuses: &[ContainerStatus],
    containers: &[ContainerStatus],
    scheduled_at: &Time,
    now: &Time,
    previous: &[PodCondition],
) -> Vec<PodCondition> {
    let terminal = phase == "Succeeded" || phase == "Failed";
    let mut out = Vec::new();
    let mut push =
        |type_: &str, ok: bool, reason: Option<String>, message: Option<String>, at: &Time| {
            let status = if ok { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| at.clone());
            out.push(PodCondition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason,
                message,
                last_transition_time: Some(since),
                last_probe_time: None,
                observed_generation: None,
            });
        };
    push("PodScheduled", true, None, None, scheduled_at);
    let incomplete: Vec<&str> = init_statuses
        .iter()
        .filter(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_none_or(|t| t.exit_code != 0)
        })
        .filter(|s| {
            !(init_done
                && s.state
                    .as_ref()
                    .and_then(|st| st.running.as_ref())
                    .is_some())
        })
        .map(|s| s.name.as_str())
        .collect();
    if init_done || incomplete.is_empty() {
        push("Initialized", true, None, None, now);
    } else {
        push(
            "Initialized",
            false,
            Some("ContainersNotInitialized".into()),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
            now,
        );
    }
    let unready: Vec<&str> = containers
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let (ok, reason, message) = if terminal {
        (false, Some("PodCompleted".to_string()), None)
    } else if unready.is_empty() && init_done {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    push("ContainersReady", ok, reason.clone(), message.clone(), now);
    push("Ready", ok, reason, message, now);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(v: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(v).expect("status")
    }
    fn running(name: &str) -> ContainerStatus {
        status(
            json!({"name": name, "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                      "state": {"running": {}}}),
        )
    }
    fn exited(name: &str, code: i32) -> ContainerStatus {
        status(
            json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                      "state": {"terminated": {"exitCode": code}}}),
        )
    }
    fn waiting(name: &str, last_exit: Option<i32>) -> ContainerStatus {
        let mut v = json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 1,
                           "state": {"waiting": {"reason": "CrashLoopBackOff"}}});
        if let Some(code) = last_exit {
            v["lastState"] = json!({"terminated": {"exitCode": code}});
        }
        status(v)
    }

    #[test]
    fn phases_follow_the_kubelet() {
        assert_eq!(
            pod_phase("Never", false, false, &[waiting("a", None)]),
            "Pending"
        );
        assert_eq!(pod_phase("Never", true, true, &[]), "Failed");
        assert_eq!(
            pod_phase("Never", true, false, &[waiting("a", None)]),
            "Pending"
        );
        assert_eq!(
            pod_phase("Never", true, false, &[running("a"), exited("b", 1)]),
            "Running"
        );
        assert_eq!(
            pod_phase("Never", true, false, &[exited("a", 0), exited("b", 0)]),
            "Succeeded"
        );
        assert_eq!(
            pod_phase("Never", true, false, &[exited("a", 0), exited("b", 2)]),
            "Failed"
        );
        assert_eq!(
            pod_phase("OnFailure", true, false, &[waiting("a", Some(1))]),
            "Running"
        );
        assert_eq!(
            pod_phase("OnFailure", true, false, &[exited("a", 0)]),
            "Succeeded"
        );
        assert_eq!(
            pod_phase("Always", true, false, &[exited("a", 0)]),
            "Running"
        );
    }

    #[test]
    fn conditions_explain_unready_containers_and_keep_transition_times() {
        let t0 = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).expect("ts"));
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(2_000).expect("ts"));
        let first = pod_conditions(
            "Pending",
            false,
            &[waiting("init", None)],
            &[waiting("main", None)],
            &t0,
            &t0,
            &[],
        );
        let init = first
            .iter()
            .find(|c| c.type_ == "Initialized")
            .expect("init");
        assert_eq!(init.status, "False");
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        let later = pod_conditions(
            "Running",
            true,
            &[exited("init", 0)],
            &[running("main")],
            &t0,
            &t1,
            &first,
        );
        let ready = later.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready.status, "True");
        let sched = later
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .expect("scheduled");
        assert_eq!(sched.last_transition_time, Some(t0.clone()));
        let done = pod_conditions(
            "Succeeded",
            true,
            &[],
            &[exited("main", 0)],
            &t0,
            &t1,
            &later,
        );
        let ready = done.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
    }
}
