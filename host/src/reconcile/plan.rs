//! Pure decisions of a reconcile that are not the policy's: what happened (the trigger event),
//! what the policy is asked, what a finished Job means, and how status conditions change.
//! No API calls here: the reconciler gathers observations, calls these, and applies the result.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{QuarksJob, QuarksJobStatus, Strategy};
use crate::policy::contract::{JobOutcome, QuarksJobView, TriggerEvent, TriggerInput};

/// Condition types on a QuarksJob.
pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_RUNNING: &str = "Running";
pub const CONDITION_FAILED: &str = "Failed";

/// Where a run's Job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Active,
    Succeeded,
    /// Failed for good (backoffLimit exhausted, deadline exceeded, ...).
    Failed,
}

/// Reads the Job's terminal conditions as the Job controller sets them.
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let is_true = |ty: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == ty && c.status == "True")
    };
    if is_true("Complete") {
        JobState::Succeeded
    } else if is_true("Failed") {
        JobState::Failed
    } else {
        JobState::Active
    }
}

/// The reason and message of a failed Job, for status and Events.
pub fn job_failure(job: &Job) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
        })
        .map(|c| {
            let reason = c.reason.clone().unwrap_or_else(|| "Failed".into());
            match &c.message {
                Some(message) if !message.is_empty() => format!("{reason}: {message}"),
                _ => reason,
            }
        })
        .unwrap_or_else(|| "Failed".into())
}

/// What happened since the last reconcile, as the trigger policy sees it.
pub fn trigger_event(
    qjob: &QuarksJob,
    finished_now: Option<JobOutcome>,
    config_digest_now: Option<&str>,
) -> TriggerEvent {
    let status = qjob.status.as_ref();
    let Some(observed_generation) = status.and_then(|s| s.observed_generation) else {
        return TriggerEvent::Created;
    };
    if let Some(outcome) = finished_now {
        return TriggerEvent::JobFinished { outcome };
    }
    if qjob.metadata.generation != Some(observed_generation) {
        let observed = status.and_then(|s| s.observed_strategy);
        return match observed {
            Some(previous) if previous != qjob.spec.trigger.strategy => {
                TriggerEvent::StrategyChanged { previous }
            }
            _ => TriggerEvent::SpecChanged,
        };
    }
    let last = status.and_then(|s| s.config_digest.as_deref());
    match (config_digest_now, last) {
        (Some(now), Some(last)) if now != last => TriggerEvent::ConfigChanged,
        _ => TriggerEvent::Resync,
    }
}

/// The input of the trigger policy for this QuarksJob.
pub fn trigger_input(
    qjob: &QuarksJob,
    event: TriggerEvent,
    config_digest_now: Option<String>,
    missing_config: Vec<String>,
    run_active: bool,
) -> TriggerInput {
    let status = qjob.status.clone().unwrap_or_default();
    TriggerInput {
        event,
        quarks_job: QuarksJobView {
            name: qjob.metadata.name.clone().unwrap_or_default(),
            namespace: qjob.metadata.namespace.clone().unwrap_or_default(),
            uid: qjob.metadata.uid.clone().unwrap_or_default(),
            generation: qjob.metadata.generation.unwrap_or_default(),
            labels: qjob.metadata.labels.clone().unwrap_or_default(),
            annotations: qjob.metadata.annotations.clone().unwrap_or_default(),
            strategy: qjob.spec.trigger.strategy,
            update_on_config_change: qjob.spec.update_on_config_change,
            completed: status.completed,
            run_count: u64::try_from(status.run_count).unwrap_or_default(),
            spec: serde_json::to_value(&qjob.spec).unwrap_or_default(),
        },
        config_digest_now,
        config_digest_last_run: status.config_digest,
        missing_config,
        run_active,
    }
}

/// Sets a condition, keeping `lastTransitionTime` when its status does not change.
pub fn set_condition(
    status: &mut QuarksJobStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let value = if value { "True" } else { "False" }.to_owned();
    let transition = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == value)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    status.conditions.retain(|c| c.type_ != type_);
    status.conditions.push(Condition {
        type_: type_.to_owned(),
        status: value,
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: transition,
    });
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Whether this strategy must be written back (it differs from the spec).
pub fn strategy_to_write(qjob: &QuarksJob, wanted: Option<Strategy>) -> Option<Strategy> {
    wanted.filter(|s| *s != qjob.spec.trigger.strategy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qjob(strategy: &str, generation: i64, status: serde_json::Value) -> QuarksJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
            "metadata": {"name": "q", "namespace": "ns", "generation": generation},
            "spec": {"trigger": {"strategy": strategy}, "template": {"spec": {"template": {}}}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn never_reconciled_is_created() {
        let q = qjob("once", 1, serde_json::json!({}));
        assert_eq!(trigger_event(&q, None, Some("d")), TriggerEvent::Created);
    }

    #[test]
    fn a_new_generation_with_another_strategy_is_a_strategy_change() {
        let q = qjob(
            "now",
            2,
            serde_json::json!({"observedGeneration": 1, "observedStrategy": "manual"}),
        );
        assert_eq!(
            trigger_event(&q, None, None),
            TriggerEvent::StrategyChanged {
                previous: Strategy::Manual
            }
        );
        let q = qjob(
            "manual",
            2,
            serde_json::json!({"observedGeneration": 1, "observedStrategy": "manual"}),
        );
        assert_eq!(trigger_event(&q, None, None), TriggerEvent::SpecChanged);
    }

    #[test]
    fn a_different_config_digest_is_a_config_change() {
        let q = qjob(
            "done",
            1,
            serde_json::json!({"observedGeneration": 1, "configDigest": "a"}),
        );
        assert_eq!(
            trigger_event(&q, None, Some("b")),
            TriggerEvent::ConfigChanged
        );
        assert_eq!(trigger_event(&q, None, Some("a")), TriggerEvent::Resync);
        assert_eq!(trigger_event(&q, None, None), TriggerEvent::Resync);
    }

    #[test]
    fn a_job_that_just_finished_is_reported_first() {
        let q = qjob(
            "done",
            1,
            serde_json::json!({"observedGeneration": 1, "configDigest": "a"}),
        );
        assert_eq!(
            trigger_event(&q, Some(JobOutcome::Failed), Some("b")),
            TriggerEvent::JobFinished {
                outcome: JobOutcome::Failed
            }
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let mut status = QuarksJobStatus::default();
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(1000).unwrap());
        let t2 = Time(k8s_openapi::jiff::Timestamp::from_second(2000).unwrap());
        set_condition(&mut status, CONDITION_READY, true, "A", "a", Some(1), &t1);
        set_condition(&mut status, CONDITION_READY, true, "B", "b", Some(2), &t2);
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].last_transition_time, t1);
        assert_eq!(status.conditions[0].reason, "B");
        set_condition(&mut status, CONDITION_READY, false, "C", "c", Some(2), &t2);
        assert_eq!(status.conditions[0].last_transition_time, t2);
    }

    #[test]
    fn job_state_reads_terminal_conditions() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}
        }))
        .unwrap();
        assert_eq!(job_state(&job), JobState::Failed);
        assert_eq!(
            job_failure(&job),
            "BackoffLimitExceeded: Job has reached the specified backoff limit"
        );
        assert_eq!(job_state(&Job::default()), JobState::Active);
    }
}
