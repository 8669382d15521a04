//! Settling a run: what the current run's Job says about it (still active, succeeded, failed)
//! and what that changes — status records, the Event, whether the Job is deleted.
//!
//! Pure: the Job comes from [`super::observe`]; [`super::apply`] deletes a succeeded Job only
//! after the status that records it is written (a crash in between leaves a recorded,
//! succeeded Job that the next reconcile deletes).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::events::QuarksJobEvent;
use super::status::record_finished;
use crate::crd::QuarksJobStatus;
use crate::policy::contract::JobOutcome;

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

/// What settling the current run found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settlement {
    /// The run's outcome, when its Job finished since the last reconcile recorded it.
    pub finished_now: Option<JobOutcome>,
    /// The run's Job is still running.
    pub run_active: bool,
    /// The name of a succeeded Job to delete with its pods.
    pub delete_job: Option<String>,
    pub event: Option<QuarksJobEvent>,
}

/// Settles the current run's Job (`None`: no run, or its Job is gone) into `status`.
pub fn settle(
    current: Option<&Job>,
    status: &mut QuarksJobStatus,
    generation: Option<i64>,
    now: &Time,
) -> Settlement {
    let Some(job) = current else {
        return Settlement::default();
    };
    let name = job.name_any();
    let state = job_state(job);
    let recorded = status.last_run_finished_at.is_some();
    let mut settlement = Settlement {
        run_active: state == JobState::Active,
        // (A cached Job may already be on its way out.)
        delete_job: (state == JobState::Succeeded && job.metadata.deletion_timestamp.is_none())
            .then(|| name.clone()),
        ..Settlement::default()
    };
    match state {
        JobState::Succeeded if !recorded => {
            record_finished(status, &name, None, generation, now);
            settlement.finished_now = Some(JobOutcome::Succeeded);
            settlement.event = Some(QuarksJobEvent::RunSucceeded { job: name });
        }
        JobState::Failed if !recorded => {
            let why = job_failure(job);
            record_finished(status, &name, Some(&why), generation, now);
            settlement.finished_now = Some(JobOutcome::Failed);
            settlement.event = Some(QuarksJobEvent::RunFailed { job: name, why });
        }
        _ => {}
    }
    settlement
}

/// What the Jobs of a QuarksJob that no run of this operator made mean now: the Go operator's
/// (random names, the `qjob-name` label, an owner reference to the QuarksJob, none of our run
/// annotations), found on a cluster upgraded from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// One of them still runs: no run of ours starts next to it (as for an active run).
    pub active: bool,
    /// The succeeded ones, deleted with their pods (Background propagation) like ours; failed
    /// ones are kept for inspection, like ours.
    pub delete: Vec<String>,
}

/// Whether `job` (controlled by the QuarksJob) was made by something else than one of our runs:
/// every Job of ours carries its run number.
pub fn is_leftover(job: &Job) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_none_or(|a| !a.contains_key(super::job::RUN_ANNOTATION))
}

/// Settles the leftover Jobs among `controlled` (every Job the QuarksJob controls). A succeeded
/// one, while no run of ours is recorded, is what the Go operator recorded as `completed: true`:
/// so does `status` (a QuarksJob it left mid-run keeps its meaning).
pub fn settle_leftovers(controlled: &[Job], status: &mut QuarksJobStatus) -> Leftovers {
    let mut leftovers = Leftovers::default();
    for job in controlled.iter().filter(|j| is_leftover(j)) {
        match job_state(job) {
            JobState::Active => leftovers.active = true,
            JobState::Succeeded => {
                if status.run_count == 0 {
                    status.completed = true;
                }
                if job.metadata.deletion_timestamp.is_none() {
                    leftovers.delete.push(job.name_any());
                }
            }
            JobState::Failed => {}
        }
    }
    leftovers.delete.sort();
    leftovers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case of `fixtures/settle.yaml`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Case {
        name: String,
        /// The current run's Job (absent: none).
        #[serde(default)]
        job: Option<Job>,
        #[serde(default)]
        status: QuarksJobStatus,
        expect: Expected,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Expected {
        #[serde(default)]
        finished_now: Option<JobOutcome>,
        #[serde(default)]
        run_active: bool,
        #[serde(default)]
        delete_job: Option<String>,
        /// The Event's reason, if one.
        #[serde(default)]
        event: Option<String>,
        completed: bool,
        #[serde(default)]
        last_failure: Option<String>,
        /// Condition type → (status, reason) after settling.
        #[serde(default)]
        conditions: std::collections::BTreeMap<String, (String, String)>,
    }

    #[test]
    fn settle_table() {
        let cases: Vec<Case> =
            serde_yaml::from_str(include_str!("fixtures/settle.yaml")).expect("fixture");
        assert!(cases.len() >= 5);
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap());
        for mut case in cases {
            let settlement = settle(case.job.as_ref(), &mut case.status, Some(3), &now);
            let got = Expected {
                finished_now: settlement.finished_now,
                run_active: settlement.run_active,
                delete_job: settlement.delete_job,
                event: settlement.event.map(|e| e.reason().to_owned()),
                completed: case.status.completed,
                last_failure: case.status.last_failure.clone(),
                conditions: case
                    .status
                    .conditions
                    .iter()
                    .map(|c| (c.type_.clone(), (c.status.clone(), c.reason.clone())))
                    .collect(),
            };
            assert_eq!(got, case.expect, "case {:?}", case.name);
        }
    }

    /// One case of `fixtures/leftovers.yaml`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct LeftoverCase {
        name: String,
        /// The Jobs the QuarksJob controls.
        jobs: Vec<Job>,
        #[serde(default)]
        status: QuarksJobStatus,
        expect: LeftoverExpected,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct LeftoverExpected {
        #[serde(default)]
        active: bool,
        #[serde(default)]
        delete: Vec<String>,
        completed: bool,
    }

    #[test]
    fn leftovers_table() {
        let cases: Vec<LeftoverCase> =
            serde_yaml::from_str(include_str!("fixtures/leftovers.yaml")).expect("fixture");
        assert!(cases.len() >= 5);
        for mut case in cases {
            let leftovers = settle_leftovers(&case.jobs, &mut case.status);
            let got = LeftoverExpected {
                active: leftovers.active,
                delete: leftovers.delete,
                completed: case.status.completed,
            };
            assert_eq!(got, case.expect, "case {:?}", case.name);
        }
    }
}
