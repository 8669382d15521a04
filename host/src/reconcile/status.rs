//! The QuarksJob's status as a reconcile changes it: conditions and their reasons, and every
//! record of a run (started, settled, not started, blocked). One place builds the status that
//! [`super::apply`] writes, once per reconcile.
//!
//! Pure: functions of the status being built, the QuarksJob and the time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{PolicyDigests, QuarksJobStatus, Strategy};
use crate::names::job::job_name;

use super::job::RunPlan;

/// The condition types on a QuarksJob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// Whether the QuarksJob can run as asked (policy usable, config present, Job buildable).
    Ready,
    /// Whether a run's Job is active.
    Running,
    /// Whether the last run failed.
    Failed,
    /// `False` (reason `OutputRejected`) when a staging Secret that is not a hand-over of this
    /// QuarksJob's runs was found: someone tried to pass output off as this QuarksJob's.
    HandOver,
    /// `True` (reason `UnknownTemplateFields`) while `spec.template` has keys that are not
    /// fields of a JobTemplateSpec (ignored; see `reconcile::template`).
    UnknownFields,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Running => "Running",
            ConditionType::Failed => "Failed",
            ConditionType::HandOver => "HandOver",
            ConditionType::UnknownFields => "UnknownFields",
        }
    }
}

/// Condition reasons of the operator's own (policies and policy failures bring theirs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnReason {
    /// `Ready`: the run this generation started is active.
    RunStarted,
    /// `Running`: the run's Job exists.
    JobCreated,
    JobSucceeded,
    JobFailed,
    /// `Ready`: the policy gave no reason for not running.
    NoRun,
}

impl OwnReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnReason::RunStarted => "RunStarted",
            OwnReason::JobCreated => "JobCreated",
            OwnReason::JobSucceeded => "JobSucceeded",
            OwnReason::JobFailed => "JobFailed",
            OwnReason::NoRun => "NoRun",
        }
    }
}

/// The condition of `type_` in `status`, if set.
pub fn condition(status: Option<&QuarksJobStatus>, type_: ConditionType) -> Option<&Condition> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == type_.as_str())
}

/// Sets a condition, keeping `lastTransitionTime` when its status does not change.
pub fn set_condition(
    status: &mut QuarksJobStatus,
    type_: ConditionType,
    value: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let type_ = type_.as_str();
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

/// A run's Job finished: succeeded (`failure` is `None`) or failed for good (`failure` is its
/// reason and message).
pub fn record_finished(
    status: &mut QuarksJobStatus,
    job: &str,
    failure: Option<&str>,
    generation: Option<i64>,
    now: &Time,
) {
    status.completed = failure.is_none();
    status.last_run_finished_at = Some(now.clone());
    status.last_failure = failure.map(str::to_owned);
    let (reason, running, failed, why) = match failure {
        None => (
            OwnReason::JobSucceeded,
            format!("Job {job} succeeded"),
            false,
            "the last run succeeded".to_owned(),
        ),
        Some(why) => (
            OwnReason::JobFailed,
            format!("Job {job} failed"),
            true,
            format!("Job {job} failed: {why}; it is kept for inspection"),
        ),
    };
    let reason = reason.as_str();
    set_condition(
        status,
        ConditionType::Running,
        false,
        reason,
        &running,
        generation,
        now,
    );
    set_condition(
        status,
        ConditionType::Failed,
        failed,
        reason,
        &why,
        generation,
        now,
    );
}

/// The spec a status observes: the generation and strategy the reconcile acted on (after a
/// strategy write-back, the ones it wrote).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObservedSpec {
    pub generation: Option<i64>,
    pub strategy: Strategy,
}

/// The run of `plan` started (its Job exists), decided by the trigger policy named
/// `trigger_source` (`None` for an adopted run: its decision was recorded before).
pub fn record_run_started(
    status: &mut QuarksJobStatus,
    qjob_name: &str,
    plan: &RunPlan,
    trigger_source: Option<&str>,
    observed: ObservedSpec,
    now: &Time,
) {
    let job = job_name(qjob_name, plan.run);
    let generation = observed.generation;
    status.run_count = i64::try_from(plan.run).unwrap_or(i64::MAX);
    status.last_job_name = Some(job.clone());
    status.last_run_started_at = Some(now.clone());
    status.last_run_finished_at = None;
    status.completed = false;
    status.config_digest = plan.config_digest.clone();
    observe_spec(status, observed);
    let policies = status.policies.get_or_insert_with(PolicyDigests::default);
    policies.trigger = Some(plan.trigger_policy.clone());
    if let Some(source) = trigger_source {
        policies.trigger_source = Some(source.to_owned());
    }
    let running = format!("Job {job} is running (run {})", plan.run);
    let reason = OwnReason::JobCreated.as_str();
    set_condition(
        status,
        ConditionType::Running,
        true,
        reason,
        &running,
        generation,
        now,
    );
    let ready = format!("run {} started", plan.run);
    let reason = OwnReason::RunStarted.as_str();
    set_condition(
        status,
        ConditionType::Ready,
        true,
        reason,
        &ready,
        generation,
        now,
    );
}

/// Records the generation and strategy the status was computed for.
pub fn observe_spec(status: &mut QuarksJobStatus, observed: ObservedSpec) {
    status.observed_generation = observed.generation;
    status.observed_strategy = Some(observed.strategy);
}

/// Fail closed on a blocked QuarksJob (policy unusable, Job not buildable or refused):
/// `Ready=False` with the reason. Returns whether this is news (the same reason and message
/// were not recorded already), i.e. whether an Event should say it.
pub fn record_blocked(
    status: &mut QuarksJobStatus,
    previous: Option<&QuarksJobStatus>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    let already = condition(previous, ConditionType::Ready)
        .is_some_and(|c| c.status == "False" && c.reason == reason && c.message == message);
    set_condition(
        status,
        ConditionType::Ready,
        false,
        reason,
        message,
        generation,
        now,
    );
    !already
}

/// A decision not to run, as status records it.
#[derive(Clone, Debug)]
pub struct NoRun<'a> {
    /// The policy's first reason code (`NoRun` when it gave none).
    pub reason: &'a str,
    /// All its reasons, as one line.
    pub message: &'a str,
    /// Required referenced config is missing: `Ready=False` until it appears.
    pub waiting: bool,
    pub run_active: bool,
    /// The digest of the referenced config now.
    pub config_digest: Option<&'a str>,
    /// The trigger policy that decided, and how the namespace named it.
    pub trigger_policy: &'a str,
    pub trigger_source: &'a str,
}

/// No run: why (in `Ready`), the trigger policy that decided, and the config baseline of a
/// `done` one-off that never recorded one. Returns whether this starts a wait (an Event says
/// so once, not on every reconcile).
pub fn record_no_run(
    status: &mut QuarksJobStatus,
    qjob: &crate::crd::QuarksJob,
    no_run: &NoRun<'_>,
    now: &Time,
) -> bool {
    let previous = condition(qjob.status.as_ref(), ConditionType::Ready);
    let generation = qjob.metadata.generation;
    // While the run started by this generation is active, Ready keeps saying so (this is the
    // usual decision right after a start, e.g. "strategy is done"; it is recorded when the run
    // ends or the spec changes, instead of a status write per run just for it).
    let keep_run_started = no_run.run_active
        && !no_run.waiting
        && previous
            .is_some_and(|c| c.status == "True" && c.reason == OwnReason::RunStarted.as_str())
        && qjob.status.as_ref().and_then(|s| s.observed_generation) == generation;
    if !keep_run_started {
        let ready = !no_run.waiting;
        set_condition(
            status,
            ConditionType::Ready,
            ready,
            no_run.reason,
            no_run.message,
            generation,
            now,
        );
    }
    if status.config_digest.is_none() && qjob.spec.trigger.strategy == Strategy::Done {
        status.config_digest = no_run.config_digest.map(str::to_owned);
    }
    let policies = status.policies.get_or_insert_with(PolicyDigests::default);
    policies.trigger = Some(no_run.trigger_policy.to_owned());
    policies.trigger_source = Some(no_run.trigger_source.to_owned());
    no_run.waiting && previous.is_none_or(|c| c.reason != no_run.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_stays() {
        let mut status = QuarksJobStatus::default();
        set_condition(
            &mut status,
            ConditionType::Ready,
            true,
            "A",
            "a",
            Some(1),
            &at(10),
        );
        set_condition(
            &mut status,
            ConditionType::Ready,
            true,
            "B",
            "b",
            Some(2),
            &at(20),
        );
        let ready = condition(Some(&status), ConditionType::Ready).unwrap();
        assert_eq!(
            (ready.reason.as_str(), ready.last_transition_time.clone()),
            ("B", at(10))
        );
        set_condition(
            &mut status,
            ConditionType::Ready,
            false,
            "C",
            "c",
            Some(2),
            &at(30),
        );
        let ready = condition(Some(&status), ConditionType::Ready).unwrap();
        assert_eq!(ready.last_transition_time, at(30));
        assert_eq!(status.conditions.len(), 1);
    }

    #[test]
    fn a_blocked_reason_is_news_once() {
        let mut status = QuarksJobStatus::default();
        assert!(record_blocked(
            &mut status,
            None,
            "JobInvalid",
            "no pod spec",
            Some(1),
            &at(1)
        ));
        let previous = status.clone();
        assert!(!record_blocked(
            &mut status,
            Some(&previous),
            "JobInvalid",
            "no pod spec",
            Some(1),
            &at(2)
        ));
        assert!(record_blocked(
            &mut status,
            Some(&previous),
            "JobRefused",
            "quota",
            Some(1),
            &at(3)
        ));
    }

    /// One case of `fixtures/status.yaml`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Case {
        name: String,
        generation: i64,
        strategy: Strategy,
        #[serde(default)]
        status: QuarksJobStatus,
        record: Record,
        expect: serde_json::Value,
        #[serde(default)]
        news: Option<bool>,
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    enum Record {
        #[serde(rename_all = "camelCase")]
        RunStarted {
            run: u64,
            config_digest: Option<String>,
            trigger_policy: String,
            trigger_source: String,
            observed_generation: i64,
            observed_strategy: Strategy,
        },
        #[serde(rename_all = "camelCase")]
        NoRun {
            reason: String,
            message: String,
            #[serde(default)]
            waiting: bool,
            #[serde(default)]
            run_active: bool,
            #[serde(default)]
            config_digest: Option<String>,
            trigger_policy: String,
            trigger_source: String,
        },
        Blocked {
            reason: String,
            message: String,
        },
    }

    #[test]
    fn status_records_table() {
        // Through JSON: serde_yaml wants YAML tags for enums; the fixture uses plain maps.
        let yaml: serde_json::Value =
            serde_yaml::from_str(include_str!("fixtures/status.yaml")).expect("fixture");
        let cases: Vec<Case> = serde_json::from_value(yaml).expect("fixture cases");
        assert!(cases.len() >= 6);
        let now = at(1_000_000);
        for case in cases {
            let qjob: crate::crd::QuarksJob = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "q", "namespace": "ns", "generation": case.generation},
                "spec": {"trigger": {"strategy": case.strategy}, "template": {}},
                "status": case.status,
            }))
            .unwrap();
            let mut status = case.status.clone();
            let news = match &case.record {
                Record::RunStarted {
                    run,
                    config_digest,
                    trigger_policy,
                    trigger_source,
                    observed_generation,
                    observed_strategy,
                } => {
                    let plan = RunPlan {
                        run: *run,
                        write_strategy: None,
                        config_digest: config_digest.clone(),
                        trigger_policy: trigger_policy.clone(),
                    };
                    let observed = ObservedSpec {
                        generation: Some(*observed_generation),
                        strategy: *observed_strategy,
                    };
                    record_run_started(
                        &mut status,
                        "q",
                        &plan,
                        Some(trigger_source),
                        observed,
                        &now,
                    );
                    None
                }
                Record::NoRun {
                    reason,
                    message,
                    waiting,
                    run_active,
                    config_digest,
                    trigger_policy,
                    trigger_source,
                } => {
                    let no_run = NoRun {
                        reason,
                        message,
                        waiting: *waiting,
                        run_active: *run_active,
                        config_digest: config_digest.as_deref(),
                        trigger_policy,
                        trigger_source,
                    };
                    Some(record_no_run(&mut status, &qjob, &no_run, &now))
                }
                Record::Blocked { reason, message } => Some(record_blocked(
                    &mut status,
                    qjob.status.as_ref(),
                    reason,
                    message,
                    Some(case.generation),
                    &now,
                )),
            };
            let got = serde_json::to_value(&status).unwrap();
            let mismatch = crate::subset::subset_mismatch(&case.expect, &got, "");
            assert_eq!(mismatch, None, "case {:?}: {got}", case.name);
            assert_eq!(news, case.news, "case {:?}", case.name);
        }
    }
}
