//! Deciding whether a run starts: what happened since the last reconcile (the trigger event),
//! the input the namespace's trigger policy is asked with, the call itself (through the
//! namespace's fair share of policy time), and the strategy to write back.
//!
//! Everything but [`decide`] is pure. A policy that cannot decide fails closed: no run, a
//! [`PolicyFailure`] the QuarksJob's status and an Event report.

use crate::crd::{QuarksJob, Strategy};
use crate::policy::World;
pub use crate::policy::calls::PolicyFailure;
use crate::policy::contract::{
    JobOutcome, QuarksJobView, TriggerDecision, TriggerEvent, TriggerInput,
};
use crate::policy::resolver::Resolved;

use super::context::Context;

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

/// The strategy to write back: the one the policy wants, when it differs from the spec.
pub fn strategy_to_write(qjob: &QuarksJob, wanted: Option<Strategy>) -> Option<Strategy> {
    wanted.filter(|s| *s != qjob.spec.trigger.strategy)
}

/// The policy's reasons, as one line for conditions and Events.
pub fn reasons_text(decision: &TriggerDecision) -> String {
    decision
        .reasons
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A decision, and the module that made it.
pub struct Decided {
    pub decision: TriggerDecision,
    pub policy: Resolved,
}

/// Resolves the namespace's trigger policy and asks it.
pub async fn decide(
    ctx: &Context,
    namespace: &str,
    input: TriggerInput,
) -> Result<Decided, PolicyFailure> {
    let policy = ctx.policies.resolve(namespace, World::Trigger).await?;
    match ctx.policies.decide(namespace, &policy, input).await {
        Ok(decision) => Ok(Decided { decision, policy }),
        Err(error) => Err(PolicyFailure {
            world: World::Trigger,
            error,
            policy: Some(policy),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case of `fixtures/decide.yaml`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Case {
        name: String,
        strategy: Strategy,
        generation: i64,
        #[serde(default)]
        status: serde_json::Value,
        #[serde(default)]
        finished_now: Option<JobOutcome>,
        #[serde(default)]
        config_digest_now: Option<String>,
        #[serde(default)]
        missing_config: Vec<String>,
        #[serde(default)]
        run_active: bool,
        expect: Expected,
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Expected {
        event: TriggerEvent,
        /// A subset of the policy's input (kebab-case, as policies see it).
        #[serde(default)]
        input: Option<serde_json::Value>,
    }

    fn qjob(case: &Case) -> QuarksJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
            "metadata": {"name": "q", "namespace": "ns", "uid": "u-1", "generation": case.generation},
            "spec": {"trigger": {"strategy": case.strategy}, "template": {"spec": {"template": {}}}},
            "status": case.status,
        }))
        .unwrap()
    }

    #[test]
    fn decide_input_table() {
        let cases: Vec<Case> =
            serde_yaml::from_str(include_str!("fixtures/decide.yaml")).expect("fixture");
        assert!(cases.len() >= 6);
        for case in cases {
            let q = qjob(&case);
            let event = trigger_event(&q, case.finished_now, case.config_digest_now.as_deref());
            assert_eq!(event, case.expect.event, "case {:?}", case.name);
            let input = trigger_input(
                &q,
                event,
                case.config_digest_now.clone(),
                case.missing_config.clone(),
                case.run_active,
            );
            if let Some(expected) = &case.expect.input {
                let input = serde_json::to_value(&input).unwrap();
                let mismatch = crate::subset::subset_mismatch(expected, &input, "");
                assert_eq!(mismatch, None, "case {:?}: {input}", case.name);
            }
        }
    }

    #[test]
    fn only_a_different_strategy_is_written_back() {
        let q: QuarksJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "q"},
            "spec": {"trigger": {"strategy": "once"}, "template": {"spec": {"template": {}}}},
        }))
        .unwrap();
        assert_eq!(
            strategy_to_write(&q, Some(Strategy::Done)),
            Some(Strategy::Done)
        );
        assert_eq!(strategy_to_write(&q, Some(Strategy::Once)), None);
        assert_eq!(strategy_to_write(&q, None), None);
    }
}
