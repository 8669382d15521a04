//! Every Event the operator publishes about a QuarksJob, as one enum: its type, CamelCase
//! reason, action and note are defined here and nowhere else.
//!
//! Pure: the stages return these; [`super::apply`] hands them to the publisher.

use kube::runtime::events::EventType;

use k8s_openapi::api::core::v1::ObjectReference;

use crate::crd::OutputRecord;

/// An Event about a QuarksJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuarksJobEvent {
    /// The run's Job was created; `reasons` are the trigger policy's.
    RunStarted {
        job: String,
        run: u64,
        reasons: String,
    },
    RunSucceeded {
        job: String,
    },
    RunFailed {
        job: String,
        why: String,
    },
    /// One output file was written to Secrets, or not (`record.error` says why).
    Output(OutputRecord),
    /// The trigger policy decided not to run because something is missing (e.g. referenced
    /// config): `reason` is the policy's first reason code.
    Waiting {
        reason: String,
        reasons: String,
    },
    /// A policy could not be used or failed (`code` is the `PolicyError` code).
    PolicyFailed {
        code: &'static str,
        message: String,
        /// Waiting for a compilation is expected: a Normal Event, not a Warning.
        pending: bool,
    },
    /// `spec.template` has keys a JobTemplateSpec does not have (ignored).
    UnknownTemplateFields {
        message: String,
    },
    /// Staging Secret `secret` was not accepted as a hand-over of this QuarksJob's runs.
    OutputRejected {
        secret: String,
        message: String,
    },
    /// The run's Job could not be built from the template, or the API server refused it.
    JobNotCreated {
        reason: JobProblem,
        message: String,
    },
}

/// Why a run's Job does not exist: the reason of the `Ready=False` condition and its Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobProblem {
    /// The template cannot become a Job (e.g. no pod spec).
    JobInvalid,
    /// The API server refused the Job (validation, admission, quota, ...).
    JobRefused,
}

impl JobProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            JobProblem::JobInvalid => "JobInvalid",
            JobProblem::JobRefused => "JobRefused",
        }
    }
}

impl QuarksJobEvent {
    pub fn type_(&self) -> EventType {
        match self {
            QuarksJobEvent::RunFailed { .. }
            | QuarksJobEvent::JobNotCreated { .. }
            | QuarksJobEvent::OutputRejected { .. }
            | QuarksJobEvent::UnknownTemplateFields { .. }
            | QuarksJobEvent::PolicyFailed { pending: false, .. } => EventType::Warning,
            QuarksJobEvent::Output(record) if record.error.is_some() => EventType::Warning,
            _ => EventType::Normal,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            QuarksJobEvent::RunStarted { .. } => "RunStarted",
            QuarksJobEvent::RunSucceeded { .. } => "RunSucceeded",
            QuarksJobEvent::RunFailed { .. } => "RunFailed",
            QuarksJobEvent::Output(record) if record.error.is_some() => "OutputFailed",
            QuarksJobEvent::Output(_) => "OutputWritten",
            QuarksJobEvent::OutputRejected { .. } => "OutputRejected",
            QuarksJobEvent::UnknownTemplateFields { .. } => {
                super::template::UNKNOWN_TEMPLATE_FIELDS
            }
            QuarksJobEvent::Waiting { reason, .. } => reason,
            QuarksJobEvent::PolicyFailed { code, .. } => code,
            QuarksJobEvent::JobNotCreated { reason, .. } => reason.as_str(),
        }
    }

    pub fn action(&self) -> &'static str {
        match self {
            QuarksJobEvent::RunStarted { .. }
            | QuarksJobEvent::RunSucceeded { .. }
            | QuarksJobEvent::RunFailed { .. }
            | QuarksJobEvent::JobNotCreated { .. } => "Run",
            QuarksJobEvent::Output(_) | QuarksJobEvent::OutputRejected { .. } => "WriteOutput",
            QuarksJobEvent::UnknownTemplateFields { .. } => "Validate",
            QuarksJobEvent::Waiting { .. } | QuarksJobEvent::PolicyFailed { .. } => "Decide",
        }
    }

    pub fn note(&self) -> String {
        match self {
            QuarksJobEvent::RunStarted { job, run, reasons } => {
                format!("created Job {job} (run {run}): {reasons}")
            }
            QuarksJobEvent::RunSucceeded { job } => {
                format!("Job {job} succeeded; deleting it with its pods")
            }
            QuarksJobEvent::RunFailed { job, why } => format!("Job {job} failed: {why}"),
            QuarksJobEvent::Output(record) => {
                let what = format!("{}/{}", record.container, record.file);
                match &record.error {
                    Some(error) => format!("{what}: {error}"),
                    None => format!("{what} → {}", record.secrets.join(", ")),
                }
            }
            QuarksJobEvent::Waiting { reasons, .. } => reasons.clone(),
            QuarksJobEvent::PolicyFailed { message, .. }
            | QuarksJobEvent::OutputRejected { message, .. }
            | QuarksJobEvent::UnknownTemplateFields { message }
            | QuarksJobEvent::JobNotCreated { message, .. } => message.clone(),
        }
    }

    /// The object the Event is also about (`related`), in the QuarksJob's namespace: a rejected
    /// staging Secret (which also keeps Events about different Secrets apart).
    pub fn related(&self, namespace: &str) -> Option<ObjectReference> {
        match self {
            QuarksJobEvent::OutputRejected { secret, .. } => Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
                name: Some(secret.clone()),
                namespace: Some(namespace.to_owned()),
                ..Default::default()
            }),
            _ => None,
        }
    }

    /// The field of the QuarksJob the Event is about (`regarding.fieldPath`). Events about
    /// different output files must stay apart: the recorder folds Events with the same object,
    /// reason and action into one series that keeps the first note.
    pub fn field_path(&self) -> Option<String> {
        match self {
            QuarksJobEvent::Output(record) => Some(format!(
                "spec.output.outputMap[{:?}][{:?}]",
                record.container, record.file
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(error: Option<&str>) -> OutputRecord {
        OutputRecord {
            job: "q-1".into(),
            container: "busybox".into(),
            file: "output.json".into(),
            secrets: if error.is_none() {
                vec!["foo-json".into()]
            } else {
                vec![]
            },
            reason: None,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn each_event_has_its_reason_type_and_note() {
        let cases = [
            (
                QuarksJobEvent::RunStarted {
                    job: "q-2".into(),
                    run: 2,
                    reasons: "StrategyNow: go".into(),
                },
                "RunStarted",
                EventType::Normal,
                "created Job q-2 (run 2): StrategyNow: go",
            ),
            (
                QuarksJobEvent::RunFailed {
                    job: "q-1".into(),
                    why: "BackoffLimitExceeded".into(),
                },
                "RunFailed",
                EventType::Warning,
                "Job q-1 failed: BackoffLimitExceeded",
            ),
            (
                QuarksJobEvent::Output(record(None)),
                "OutputWritten",
                EventType::Normal,
                "busybox/output.json → foo-json",
            ),
            (
                QuarksJobEvent::Output(record(Some("FileMissing: never written"))),
                "OutputFailed",
                EventType::Warning,
                "busybox/output.json: FileMissing: never written",
            ),
            (
                QuarksJobEvent::PolicyFailed {
                    code: "PolicyPending",
                    message: "compiling".into(),
                    pending: true,
                },
                "PolicyPending",
                EventType::Normal,
                "compiling",
            ),
            (
                QuarksJobEvent::JobNotCreated {
                    reason: JobProblem::JobRefused,
                    message: "exceeded quota".into(),
                },
                "JobRefused",
                EventType::Warning,
                "exceeded quota",
            ),
        ];
        for (event, reason, type_, note) in cases {
            assert_eq!(event.reason(), reason);
            assert_eq!(event.type_(), type_, "{reason}");
            assert_eq!(event.note(), note);
        }
    }

    #[test]
    fn output_events_are_about_their_file_and_others_about_the_whole_object() {
        assert_eq!(
            QuarksJobEvent::Output(record(None)).field_path().as_deref(),
            Some(r#"spec.output.outputMap["busybox"]["output.json"]"#)
        );
        let started = QuarksJobEvent::RunSucceeded { job: "q-1".into() };
        assert_eq!(started.field_path(), None);
    }
}
