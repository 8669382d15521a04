//! PURE: keys under `spec.template` that a JobTemplateSpec does not have. Manifests written
//! for the original operator (its own examples among them) put `backoffLimit` there; the
//! original's schema kept such keys and ignored them. They are kept and ignored here too, and
//! reported: condition `UnknownFields=True` (reason `UnknownTemplateFields`) naming each key
//! and where it probably belongs, and a Warning Event when that is news.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::events::QuarksJobEvent;
use super::status::{ConditionType, condition, set_condition};
use crate::crd::{JobTemplate, QuarksJob, QuarksJobStatus};

/// The fields of a `batch/v1` JobSpec: a key of one of these names under `spec.template`
/// was meant for `spec.template.spec`.
const JOB_SPEC_FIELDS: &[&str] = &[
    "activeDeadlineSeconds",
    "backoffLimit",
    "backoffLimitPerIndex",
    "completionMode",
    "completions",
    "managedBy",
    "manualSelector",
    "maxFailedIndexes",
    "parallelism",
    "podFailurePolicy",
    "podReplacementPolicy",
    "selector",
    "successPolicy",
    "suspend",
    "template",
    "ttlSecondsAfterFinished",
];

/// Fields of ObjectMeta a template may carry: meant for `spec.template.metadata`.
const METADATA_FIELDS: &[&str] = &["labels", "annotations"];

/// What to tell the user about the unknown keys of `template`; `None` when there are none.
pub fn unknown_fields_message(template: &JobTemplate) -> Option<String> {
    if template.unknown.is_empty() {
        return None;
    }
    let keys: Vec<String> = template
        .unknown
        .keys()
        .map(|key| {
            if JOB_SPEC_FIELDS.contains(&key.as_str()) {
                format!("spec.template.{key} (it belongs in spec.template.spec.{key})")
            } else if METADATA_FIELDS.contains(&key.as_str()) {
                format!("spec.template.{key} (it belongs in spec.template.metadata.{key})")
            } else {
                format!("spec.template.{key}")
            }
        })
        .collect();
    Some(format!(
        "ignored, not a field of a JobTemplateSpec: {}",
        keys.join(", ")
    ))
}

/// Sets or clears the `UnknownFields` condition; the Event to publish when it is news.
pub fn record_unknown_fields(
    status: &mut QuarksJobStatus,
    qjob: &QuarksJob,
    now: &Time,
) -> Option<QuarksJobEvent> {
    let Some(message) = unknown_fields_message(&qjob.spec.template) else {
        status
            .conditions
            .retain(|c| c.type_ != ConditionType::UnknownFields.as_str());
        return None;
    };
    let before = condition(qjob.status.as_ref(), ConditionType::UnknownFields);
    let news = before.is_none_or(|c| c.message != message);
    set_condition(
        status,
        ConditionType::UnknownFields,
        true,
        UNKNOWN_TEMPLATE_FIELDS,
        &message,
        qjob.metadata.generation,
        now,
    );
    news.then_some(QuarksJobEvent::UnknownTemplateFields { message })
}

/// The reason of the condition and of its Event.
pub const UNKNOWN_TEMPLATE_FIELDS: &str = "UnknownTemplateFields";

#[cfg(test)]
mod tests {
    use super::*;

    fn qjob(template: serde_json::Value, status: Option<serde_json::Value>) -> QuarksJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
            "metadata": {"name": "q", "namespace": "ns", "generation": 1},
            "spec": {"trigger": {"strategy": "manual"}, "template": template},
            "status": status,
        }))
        .unwrap()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn an_unknown_key_is_named_with_where_it_belongs_once() {
        let q = qjob(
            serde_json::json!({"backoffLimit": 2, "labels": {}, "odd": 1, "spec": {"template": {}}}),
            None,
        );
        let mut status = QuarksJobStatus::default();
        let event = record_unknown_fields(&mut status, &q, &now()).expect("news");
        let QuarksJobEvent::UnknownTemplateFields { message } = event else {
            panic!("{event:?}")
        };
        assert!(
            message.contains(
                "spec.template.backoffLimit (it belongs in spec.template.spec.backoffLimit)"
            ),
            "{message}"
        );
        assert!(
            message.contains("spec.template.labels (it belongs in spec.template.metadata.labels)")
        );
        assert!(message.contains("spec.template.odd"));
        let cond = condition(Some(&status), ConditionType::UnknownFields).unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("True", UNKNOWN_TEMPLATE_FIELDS)
        );
        // Recorded already: no second Event.
        let again = qjob(
            serde_json::json!({"backoffLimit": 2, "labels": {}, "odd": 1, "spec": {"template": {}}}),
            Some(serde_json::to_value(&status).unwrap()),
        );
        let mut next = status.clone();
        assert!(record_unknown_fields(&mut next, &again, &now()).is_none());
    }

    #[test]
    fn a_template_without_unknown_keys_clears_the_condition() {
        let q = qjob(serde_json::json!({"backoffLimit": 2, "spec": {}}), None);
        let mut status = QuarksJobStatus::default();
        record_unknown_fields(&mut status, &q, &now());
        let fixed = qjob(serde_json::json!({"spec": {"backoffLimit": 2}}), None);
        assert!(record_unknown_fields(&mut status, &fixed, &now()).is_none());
        assert!(condition(Some(&status), ConditionType::UnknownFields).is_none());
    }
}
