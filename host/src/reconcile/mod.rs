//! Reconciling one QuarksJob, as a staged pipeline:
//!
//! 0. [`template`] — pure: keys of `spec.template` that are no JobTemplateSpec field, reported;
//! 1. [`observe`] — API reads: the run's Jobs, staged output, the referenced config;
//! 2. [`output`] — staged output → the output policy → Secrets (before settling: a succeeded
//!    Job owns its staging Secrets);
//! 3. [`settle`] — pure: a finished Job → status records, the Event, the Job to delete;
//! 4. [`decide`] — the trigger policy's decision on the pure [`decide::trigger_input`], once a
//!    config change has settled ([`config_settle`]);
//! 5. [`job`] — pure: decision + template → the exact Job to create;
//! 6. [`status`] — pure: conditions and records, built into one status;
//! 7. [`apply`] — API writes: the Job, the strategy write-back, status (once), the deletion of
//!    a succeeded Job, [`events`].
//!
//! Each step is idempotent, so a crash or conflict anywhere is repaired by the next reconcile.

pub mod apply;
pub mod config_settle;
pub mod context;
pub mod decide;
pub mod digest;
pub mod events;
pub mod job;
pub mod observe;
mod output;
pub mod own_writes;
pub mod recorder;
pub mod references;
pub mod retention;
pub mod settle;
pub mod status;
pub mod template;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{instrument, warn};

use crate::crd::QuarksJob;
use crate::policy::contract::TriggerEvent;
use apply::{Blocked, Effects, StartRun};
use context::Context;
use decide::{Decided, decide, reasons_text, strategy_to_write, trigger_event, trigger_input};
use events::{JobProblem, QuarksJobEvent};
use job::{RunPlan, run_job, run_plan_of};
use observe::{ConfigObservation, referenced_config_now, run_jobs};
use own_writes::StaleCopy;
use status::{NoRun, record_no_run};

/// How long a QuarksJob with a run active or config awaited waits, without any event, before
/// it is looked at again: a safety net only. Every real trigger is watch-driven (its Job's
/// watch, its references' watches, which relist after any gap); settled ones wait for events.
/// Spread per QuarksJob over [`LOOK_AGAIN`, `LOOK_AGAIN` + `LOOK_AGAIN_SPREAD`), so that
/// thousands of runs started together are not all looked at again in the same second (with
/// 100 000 runs active and 5 minutes, these look-agains alone cost 17 % of a core).
const LOOK_AGAIN: Duration = Duration::from_secs(30 * 60);
const LOOK_AGAIN_SPREAD: Duration = Duration::from_secs(6 * 60);
/// When to decide again after finding a selection the cache does not have yet (a safety net:
/// the selection's watch event reconciles the namespace's QuarksJobs as soon as it arrives).
const SELECTION_CATCH_UP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serializing a patch: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The API server refused the run's Job; retried with backoff (a quota or admission
    /// policy may change), reported as `Ready=False, JobRefused`.
    #[error("{0}")]
    JobRefused(String),
}

/// Entry point for the controller: one QuarksJob, with metrics around it.
pub async fn reconcile(qjob: Arc<QuarksJob>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = reconcile_inner(&qjob, &ctx).await;
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.is_ok());
    if result.is_ok() {
        ctx.backoff.reset(&qjob);
    }
    result
}

/// Per-object exponential backoff: one failing QuarksJob never delays the others.
pub fn error_policy(qjob: Arc<QuarksJob>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next(&qjob);
    warn!(name = %qjob.name_any(), namespace = ?qjob.namespace(), %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

#[instrument(skip_all, fields(namespace = %qjob.namespace().unwrap_or_default(), name = %qjob.name_any()))]
async fn reconcile_inner(qjob: &QuarksJob, ctx: &Context) -> Result<Action, ReconcileError> {
    if let Some(wait) = not_now(qjob, ctx) {
        return Ok(wait);
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let namespace = qjob.namespace().unwrap_or_default();
    let mut effects = Effects::new(qjob);
    let unknown_fields = template::record_unknown_fields(&mut effects.status, qjob, &now);
    effects.events.extend(unknown_fields);

    let jobs = run_jobs(&ctx.client, &ctx.caches.jobs, qjob).await?;
    let staged = observe::staged_output(&ctx.client, qjob).await?;
    let (status, events) = (&mut effects.status, &mut effects.events);
    if let Err(failure) =
        output::write_staged_output(ctx, qjob, &staged, status, events, &now).await?
    {
        effects.block(qjob, Blocked::Policy(failure), &now);
        return apply::apply(ctx, qjob, effects, &now).await;
    }
    // A Job created for the next run but not recorded (crash or conflict after creating it):
    // adopt it, exactly as if this reconcile had created it.
    if let Some(plan) = jobs.next.as_ref().and_then(run_plan_of) {
        tracing::info!("adopting the Job of an unrecorded run");
        effects.run = Some(StartRun {
            job: None,
            plan,
            trigger_source: None,
            reasons: String::new(),
        });
        effects.then = Action::requeue(look_again_after(qjob));
        return apply::apply(ctx, qjob, effects, &now).await;
    }

    let generation = qjob.metadata.generation;
    let settled = settle::settle(jobs.current.as_ref(), &mut effects.status, generation, &now);
    effects.delete_job = settled.delete_job;
    effects.events.extend(settled.event);
    // Jobs the Go operator left (a cluster upgraded from it): cleaned like ours.
    let leftovers = settle::settle_leftovers(&jobs.others, &mut effects.status);
    effects.delete_leftovers = leftovers.delete;

    let config = referenced_config_now(&ctx.client, qjob, ctx.version_trust()).await?;
    let event = trigger_event(qjob, settled.finished_now, config.digest.as_deref());
    if event == TriggerEvent::ConfigChanged
        && let Some(wait) = ctx.config_settle.wait(&ObjectRef::from_obj(qjob))
    {
        // More of the change may be on its way (one manifest's objects are written one by one).
        tracing::debug!(
            ?wait,
            "referenced config changed: deciding once the change settled"
        );
        effects.then = Action::requeue(wait);
        return apply::apply(ctx, qjob, effects, &now).await;
    }
    let run_active = settled.run_active || leftovers.active;
    let input = trigger_input(
        qjob,
        event,
        config.digest.clone(),
        config.missing.clone(),
        run_active,
    );
    let decided = match decide(ctx, &namespace, input).await {
        Ok(decided) => decided,
        Err(failure) => {
            effects.block(qjob, Blocked::Policy(failure), &now);
            return apply::apply(ctx, qjob, effects, &now).await;
        }
    };
    tracing::debug!(?event, run = decided.decision.run, "trigger decision");
    if decided.decision.run
        && decided.policy.unselected
        && ctx.policies.resolver.selection_exists(&namespace).await?
    {
        // The defaults decided, but the namespace has chosen its policy: its watch delivers
        // the selection in a moment (which reconciles the namespace's QuarksJobs again).
        tracing::debug!("the namespace's policy selection is not cached yet: deciding again");
        return Ok(Action::requeue(SELECTION_CATCH_UP));
    }
    if decided.decision.run {
        start_run(ctx, qjob, &mut effects, &decided, &config, &now);
    } else {
        no_run(qjob, &mut effects, &decided, &config, run_active, &now);
    }
    apply::apply(ctx, qjob, effects, &now).await
}

/// The decision is to run: the run's plan and Job (or, when the template is no Job, why).
fn start_run(
    ctx: &Context,
    qjob: &QuarksJob,
    effects: &mut Effects,
    decided: &Decided,
    config: &ConfigObservation,
    now: &Time,
) {
    let (decision, policy) = (&decided.decision, &decided.policy);
    let plan = RunPlan {
        run: u64::try_from(effects.status.run_count).unwrap_or_default() + 1,
        write_strategy: strategy_to_write(qjob, decision.write_strategy),
        config_digest: config.digest.clone(),
        trigger_policy: policy.policy.digest().to_string(),
    };
    match run_job(qjob, &plan, &config.newest_versions, &ctx.helper) {
        Ok(job) => {
            effects.run = Some(StartRun {
                job: Some(job),
                plan,
                trigger_source: Some(policy.reference.clone()),
                reasons: reasons_text(decision),
            });
            effects.then = Action::requeue(look_again_after(qjob));
        }
        Err(error) => {
            let blocked = Blocked::Job(JobProblem::JobInvalid, error.to_string());
            effects.block(qjob, blocked, now);
        }
    }
}

/// The decision is not to run: why, the strategy to write back, the spec observed.
fn no_run(
    qjob: &QuarksJob,
    effects: &mut Effects,
    decided: &Decided,
    config: &ConfigObservation,
    run_active: bool,
    now: &Time,
) {
    let (decision, policy) = (&decided.decision, &decided.policy);
    let message = reasons_text(decision);
    let no_run = NoRun {
        reason: decision
            .reasons
            .first()
            .map_or("NoRun", |r| r.code.as_str()),
        message: &message,
        waiting: !config.missing.is_empty(),
        run_active,
        config_digest: config.digest.as_deref(),
        trigger_policy: &policy.policy.digest().to_string(),
        trigger_source: &policy.reference,
    };
    if record_no_run(&mut effects.status, qjob, &no_run, now) {
        let reason = no_run.reason.to_owned();
        effects.events.push(QuarksJobEvent::Waiting {
            reason,
            reasons: message.clone(),
        });
    }
    effects.write_strategy = strategy_to_write(qjob, decision.write_strategy);
    effects.observe_spec = true;
    // Settled: only an event changes anything. With a run active or config awaited, also look
    // again now and then, a safety net beside the watches (not kept for every idle QuarksJob:
    // a scheduled look-again costs ~650 bytes each, 6.5 MiB with 10 000 QuarksJobs).
    if run_active || no_run.waiting {
        effects.then = Action::requeue(look_again_after(qjob));
    }
}

/// When `qjob` is looked at again without any event: [`LOOK_AGAIN`] plus a share of
/// [`LOOK_AGAIN_SPREAD`] fixed by its uid (the same on every reconcile and every replica).
fn look_again_after(qjob: &QuarksJob) -> Duration {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: stable across processes, unlike `RandomState`.
    let mut hasher = std::hash::DefaultHasher::new();
    qjob.metadata.uid.hash(&mut hasher);
    let spread = u64::try_from(LOOK_AGAIN_SPREAD.as_millis()).unwrap_or(u64::MAX);
    LOOK_AGAIN + Duration::from_millis(hasher.finish() % spread.max(1))
}

/// `Some(action)` when this QuarksJob is not to be acted on now: its namespace is not
/// monitored, it is being deleted, or the cached copy predates the operator's last write (the
/// watch brings the newer one in a moment, or has brought it meanwhile; acting now would redo
/// that write).
fn not_now(qjob: &QuarksJob, ctx: &Context) -> Option<Action> {
    let namespace = qjob.namespace().unwrap_or_default();
    if !ctx.caches.monitored.contains(&namespace) || qjob.meta().deletion_timestamp.is_some() {
        return Some(Action::await_change());
    }
    if ctx.caches.own_writes.predates_own_write(qjob) {
        return Some(match ctx.caches.own_echoes.stale_copy(qjob) {
            StaleCopy::LookAgain => {
                tracing::debug!("cached QuarksJob predates our last write; the cache has it now");
                Action::requeue(Duration::ZERO)
            }
            StaleCopy::AwaitEcho => {
                tracing::debug!("cached QuarksJob predates our last write; waiting for the watch");
                // A safety net: the write's echo reconciles it.
                Action::requeue(Duration::from_secs(5))
            }
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_uid(uid: &str) -> QuarksJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
            "metadata": {"name": "q", "uid": uid},
            "spec": {"trigger": {"strategy": "once"}, "template": {}},
        }))
        .expect("a QuarksJob")
    }

    #[test]
    fn look_agains_are_spread_per_quarks_job_and_stable_for_each() {
        let delays: Vec<Duration> = (0..200)
            .map(|i| look_again_after(&with_uid(&format!("uid-{i}"))))
            .collect();
        for delay in &delays {
            assert!(*delay >= LOOK_AGAIN && *delay < LOOK_AGAIN + LOOK_AGAIN_SPREAD);
        }
        assert_eq!(look_again_after(&with_uid("uid-7")), delays[7]);
        let later_half = delays
            .iter()
            .filter(|d| **d >= LOOK_AGAIN + LOOK_AGAIN_SPREAD / 2)
            .count();
        assert!(
            (60..=140).contains(&later_half),
            "{later_half} of 200 in the later half"
        );
    }
}
