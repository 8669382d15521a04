//! Example trigger policy: the built-in behaviour (spec.md §2), but a run starts only once the
//! QuarksJob carries the annotation `quarks.cloudfoundry.org/approved: "true"`.
//!
//! Until then the decision is "no run" with reason `NotApproved`, and the strategy is left as
//! it is: a `once` or `now` QuarksJob runs as soon as someone approves it (the annotation
//! change makes the operator decide again).
//!
//! Build: `cargo build -p example-approval-trigger --target wasm32-wasip2 --release`, then see
//! the README ("Writing a policy") for storing and selecting it.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::vec;

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::trigger::{Guest, TriggerDecision, TriggerInput};

// No `quarks_policy_sdk::no_std_runtime!()` here: `trigger-default` brings it (a component has one
// allocator and one panic handler). A policy without such a dependency declares it.

/// The annotation that approves a QuarksJob's runs.
pub const APPROVAL_ANNOTATION: &str = "quarks.cloudfoundry.org/approved";

pub struct ApprovalTrigger;

impl Guest for ApprovalTrigger {
    fn decide(input: TriggerInput) -> Result<TriggerDecision, Reason> {
        Ok(decide(&input))
    }
}

#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::export_trigger!(ApprovalTrigger);

/// The built-in decision, held back while the QuarksJob is not approved.
pub fn decide(input: &TriggerInput) -> TriggerDecision {
    let decision = trigger_default::decide(input);
    if !decision.run || approved(input) {
        return decision;
    }
    let wanted = decision
        .reasons
        .first()
        .map(|r| r.message.as_str())
        .unwrap_or("a run is due");
    TriggerDecision {
        run: false,
        write_strategy: None,
        reasons: vec![Reason::new(
            "NotApproved",
            format!(
                "{wanted}; waiting for approval: annotate the QuarksJob with {APPROVAL_ANNOTATION}=true"
            ),
        )],
    }
}

fn approved(input: &TriggerInput) -> bool {
    input
        .quarks_job
        .annotations
        .iter()
        .any(|(key, value)| key == APPROVAL_ANNOTATION && value == "true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarks_policy_sdk::trigger::{QuarksJob, Strategy, TriggerEvent};

    fn once(annotations: &[(&str, &str)]) -> TriggerInput {
        TriggerInput {
            event: TriggerEvent::Created,
            quarks_job: QuarksJob {
                name: "deploy".into(),
                namespace: "team-b".into(),
                uid: "uid-1".into(),
                generation: 1,
                labels: vec![],
                annotations: annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                strategy: Strategy::Once,
                update_on_config_change: false,
                completed: false,
                run_count: 0,
                spec_json: "{}".into(),
            },
            config_digest_now: None,
            config_digest_last_run: None,
            missing_config: vec![],
            run_active: false,
        }
    }

    #[test]
    fn an_unapproved_one_off_waits_and_keeps_its_strategy() {
        let decision = decide(&once(&[]));
        assert!(!decision.run);
        assert_eq!(decision.write_strategy, None);
        assert_eq!(decision.reasons[0].code, "NotApproved");
        // "false" is not an approval either.
        assert!(!decide(&once(&[(APPROVAL_ANNOTATION, "false")])).run);
    }

    #[test]
    fn an_approved_one_off_runs_as_the_built_in_decides() {
        let decision = decide(&once(&[(APPROVAL_ANNOTATION, "true")]));
        assert!(decision.run);
        assert_eq!(decision.write_strategy, Some(Strategy::Done));
    }
}
