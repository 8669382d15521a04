//! Reconciling one QuarksJob, as a pipeline: observe (Jobs, referenced config) → settle a
//! finished run → ask the trigger policy → create the run's Job → record status → write the
//! strategy back. Each step is idempotent, so a crash or conflict anywhere is repaired by the
//! next reconcile; every API effect of the operator on QuarksJobs and Jobs happens here.

pub mod context;
pub mod digest;
pub mod job;
pub mod observe;
pub mod plan;
pub mod references;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use crate::crd::{PolicyDigests, QuarksJob, QuarksJobStatus, Strategy};
use crate::names::FIELD_MANAGER;
use crate::names::job::job_name;
use crate::policy::contract::{JobOutcome, TriggerDecision};
use crate::policy::resolver::Resolved;
use crate::policy::{PolicyError, World};
use context::{Context, NamespaceOutputPolicy};
use job::{RunPlan, build_job, run_plan_of};
use observe::{referenced_config_now, run_jobs};
use plan::{
    CONDITION_FAILED, CONDITION_READY, CONDITION_RUNNING, JobState, job_failure, job_state,
    set_condition, strategy_to_write, trigger_event, trigger_input,
};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("building the Job: {0}")]
    Build(#[from] job::BuildError),
    #[error("serializing status: {0}")]
    Serialize(#[from] serde_json::Error),
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
    let namespace = qjob.namespace().unwrap_or_default();
    if !ctx.monitored.contains(&namespace) || qjob.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // A cached copy from before this operator's last write: the watch brings the newer one
    // (and with it a reconcile) in a moment; acting now would redo that write.
    if ctx.own_writes.predates_own_write(qjob) {
        tracing::debug!("cached QuarksJob predates our last write; waiting for the watch");
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let mut status = qjob.status.clone().unwrap_or_default();
    // The status as the API has it after this reconcile's writes so far.
    let mut written = qjob.status.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = qjob.metadata.generation;
    let jobs = run_jobs(&ctx.client, &ctx.jobs, qjob).await?;

    // Output handed over by the helpers of this QuarksJob's pods: write it before settling the
    // run, so a succeeded Job is only deleted (taking its staging Secrets) once they are used.
    // Only pods of a QuarksJob with output have a helper that stages files.
    let staged = match &qjob.spec.output {
        Some(_) => crate::output::write::pending_staging(&ctx.client, qjob).await?,
        None => Vec::new(),
    };
    if !staged.is_empty() {
        // Without the selected output policy nothing is written, and the staging Secrets (and
        // the Job owning them) stay until it is usable.
        let output_policy = match ctx.policies.resolve(&namespace, World::Output).await {
            Ok(policy) => policy,
            Err(error) => {
                return policy_failed(ctx, qjob, status, World::Output, error, None, &now).await;
            }
        };
        let output_digest = output_policy.policy.digest().to_string();
        let output_source = output_policy.reference.clone();
        let runner = NamespaceOutputPolicy {
            ctx,
            namespace: &namespace,
            policy: output_policy,
        };
        for staging_secret in &staged {
            let consumed =
                crate::output::write::consume(&ctx.client, &runner, qjob, staging_secret).await?;
            for record in consumed {
                status.outputs.retain(|r| {
                    r.job == record.job
                        && !(r.container == record.container && r.file == record.file)
                });
                let what = format!("{}/{}", record.container, record.file);
                // One Event series per file (the recorder would fold them into one).
                let field = format!(
                    "spec.output.outputMap[{:?}][{:?}]",
                    record.container, record.file
                );
                match &record.error {
                    Some(error) => {
                        ctx.event_about(
                            qjob,
                            field,
                            EventType::Warning,
                            "OutputFailed",
                            "WriteOutput",
                            format!("{what}: {error}"),
                        )
                        .await
                    }
                    None => {
                        ctx.event_about(
                            qjob,
                            field,
                            EventType::Normal,
                            "OutputWritten",
                            "WriteOutput",
                            format!("{what} → {}", record.secrets.join(", ")),
                        )
                        .await
                    }
                }
                status.outputs.push(record);
            }
        }
        let policies = status.policies.get_or_insert_with(Default::default);
        policies.output = Some(output_digest);
        policies.output_source = Some(output_source);
        write_status(ctx, qjob, &status).await?;
        written = Some(status.clone());
    }

    // A Job created for the next run but not recorded (crash or conflict after creating it):
    // adopt it, exactly as if this reconcile had created it.
    if let Some(next) = &jobs.next
        && let Some(plan) = run_plan_of(next)
    {
        info!(job = %next.name_any(), "adopting the Job of an unrecorded run");
        return record_run_started(ctx, qjob, status, &plan, None, &now).await;
    }

    // Settle a run whose Job finished since we last looked.
    let mut finished_now = None;
    if let Some(job) = &jobs.current {
        let state = job_state(job);
        let recorded = status.last_run_finished_at.is_some();
        match state {
            JobState::Succeeded if !recorded => {
                finished_now = Some(JobOutcome::Succeeded);
                status.completed = true;
                status.last_run_finished_at = Some(now.clone());
                status.last_failure = None;
                set_condition(
                    &mut status,
                    CONDITION_RUNNING,
                    false,
                    "JobSucceeded",
                    &format!("Job {} succeeded", job.name_any()),
                    generation,
                    &now,
                );
                set_condition(
                    &mut status,
                    CONDITION_FAILED,
                    false,
                    "JobSucceeded",
                    "the last run succeeded",
                    generation,
                    &now,
                );
                ctx.metrics.runs_succeeded_total.inc();
                ctx.event(
                    qjob,
                    EventType::Normal,
                    "RunSucceeded",
                    "Run",
                    format!(
                        "Job {} succeeded; deleting it with its pods",
                        job.name_any()
                    ),
                )
                .await;
            }
            JobState::Failed if !recorded => {
                finished_now = Some(JobOutcome::Failed);
                let why = job_failure(job);
                status.completed = false;
                status.last_run_finished_at = Some(now.clone());
                status.last_failure = Some(why.clone());
                set_condition(
                    &mut status,
                    CONDITION_RUNNING,
                    false,
                    "JobFailed",
                    &format!("Job {} failed", job.name_any()),
                    generation,
                    &now,
                );
                set_condition(
                    &mut status,
                    CONDITION_FAILED,
                    true,
                    "JobFailed",
                    &format!(
                        "Job {} failed: {why}; it is kept for inspection",
                        job.name_any()
                    ),
                    generation,
                    &now,
                );
                ctx.metrics.runs_failed_total.inc();
                ctx.event(
                    qjob,
                    EventType::Warning,
                    "RunFailed",
                    "Run",
                    format!("Job {} failed: {why}", job.name_any()),
                )
                .await;
            }
            _ => {}
        }
        if finished_now.is_some() {
            // Record before deleting: a crash in between leaves a recorded, succeeded Job that
            // the next reconcile deletes.
            write_status(ctx, qjob, &status).await?;
            written = Some(status.clone());
        }
        // (A cached Job may already be on its way out.)
        if state == JobState::Succeeded && job.metadata.deletion_timestamp.is_none() {
            delete_job(ctx, job).await?;
        }
    }
    let run_active = jobs
        .current
        .as_ref()
        .is_some_and(|j| job_state(j) == JobState::Active);

    // Ask the trigger policy.
    let config = referenced_config_now(&ctx.client, qjob).await?;
    let event = trigger_event(qjob, finished_now, config.digest.as_deref());
    let input = trigger_input(
        qjob,
        event,
        config.digest.clone(),
        config.missing.clone(),
        run_active,
    );
    let policy = match ctx.policies.resolve(&namespace, World::Trigger).await {
        Ok(policy) => policy,
        Err(error) => {
            return policy_failed(ctx, qjob, status, World::Trigger, error, None, &now).await;
        }
    };
    let decision = match ctx.call_trigger_policy(&namespace, &policy, input).await {
        Ok(decision) => decision,
        Err(error) => {
            return policy_failed(
                ctx,
                qjob,
                status,
                World::Trigger,
                error,
                Some(&policy),
                &now,
            )
            .await;
        }
    };
    tracing::debug!(?event, run = decision.run, "trigger decision");

    if decision.run {
        let run = u64::try_from(status.run_count).unwrap_or_default() + 1;
        let plan = RunPlan {
            run,
            write_strategy: strategy_to_write(qjob, decision.write_strategy),
            config_digest: config.digest.clone(),
            trigger_policy: policy.policy.digest().to_string(),
        };
        let mut job = build_job(qjob, &plan, &config.newest_versions)?;
        if let Some(output) = &qjob.spec.output {
            ctx.helper_identity.ensure(&ctx.client, &namespace).await?;
            if let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
                crate::output::pod::add_output_transport(
                    pod,
                    &qjob.name_any(),
                    output,
                    &ctx.helper,
                );
            }
        }
        let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
        match jobs_api
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &job,
            )
            .await
        {
            Ok(_) => {}
            // The same run's Job exists already (a retried create): it is this run.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        ctx.metrics.runs_started_total.inc();
        let reasons = reasons_text(&decision);
        ctx.event(
            qjob,
            EventType::Normal,
            "RunStarted",
            "Run",
            format!(
                "created Job {} (run {run}): {reasons}",
                job_name(&qjob.name_any(), run)
            ),
        )
        .await;
        return record_run_started(ctx, qjob, status, &plan, Some(&policy.reference), &now).await;
    }

    // No run: record why, and the config baseline of a one-off that never recorded one.
    let reason = decision
        .reasons
        .first()
        .map(|r| r.code.as_str())
        .unwrap_or("NoRun");
    let waiting = !config.missing.is_empty();
    // While the run started by this generation is active, Ready keeps saying so (this is the
    // usual decision right after a start, e.g. "strategy is done"; it is recorded when the
    // run ends or the spec changes, instead of a status write per run just for it).
    let ready_says_run_started = qjob
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_READY))
        .is_some_and(|c| c.status == "True" && c.reason == RUN_STARTED);
    let keep_run_started = run_active
        && !waiting
        && ready_says_run_started
        && qjob.status.as_ref().and_then(|s| s.observed_generation) == generation;
    if !keep_run_started {
        set_condition(
            &mut status,
            CONDITION_READY,
            !waiting,
            reason,
            &reasons_text(&decision),
            generation,
            &now,
        );
    }
    if waiting
        && qjob
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_READY))
            .is_none_or(|c| c.reason != reason)
    {
        ctx.event(
            qjob,
            EventType::Normal,
            reason,
            "Decide",
            reasons_text(&decision),
        )
        .await;
    }
    if status.config_digest.is_none() && qjob.spec.trigger.strategy == Strategy::Done {
        status.config_digest = config.digest.clone();
    }
    status.observed_generation = generation;
    status.observed_strategy = Some(qjob.spec.trigger.strategy);
    let policy_status = status.policies.get_or_insert_with(PolicyDigests::default);
    policy_status.trigger = Some(policy.policy.digest().to_string());
    policy_status.trigger_source = Some(policy.reference.clone());
    if Some(&status) != written.as_ref() {
        write_status(ctx, qjob, &status).await?;
    }
    if let Some(strategy) = strategy_to_write(qjob, decision.write_strategy) {
        write_strategy(ctx, qjob, strategy).await?;
    }
    // Settled: only an event changes anything. With a run active or config awaited, also look
    // again now and then, a safety net beside the watches (not kept for every idle QuarksJob:
    // a scheduled look-again costs ~650 bytes each, 6.5 MiB with 10 000 QuarksJobs).
    if run_active || waiting {
        Ok(Action::requeue(ctx.resync))
    } else {
        Ok(Action::await_change())
    }
}

/// The reason of the Ready condition while a run that just started is active.
const RUN_STARTED: &str = "RunStarted";

/// Writes the strategy back, then records the started run in status (the order spec.md asks:
/// the strategy only once the run's Job exists; status last, so that it observes the spec as
/// written back and the next reconcile has nothing left to write).
async fn record_run_started(
    ctx: &Context,
    qjob: &QuarksJob,
    mut status: QuarksJobStatus,
    plan: &RunPlan,
    trigger_source: Option<&str>,
    now: &Time,
) -> Result<Action, ReconcileError> {
    let mut generation = qjob.metadata.generation;
    let mut strategy = qjob.spec.trigger.strategy;
    if let Some(write) = plan
        .write_strategy
        .filter(|s| *s != qjob.spec.trigger.strategy)
    {
        // Not written when the user changed it meanwhile: their change is decided on next.
        if let Some(written) = write_strategy(ctx, qjob, write).await? {
            generation = Some(written);
            strategy = write;
        }
    }
    let job = job_name(&qjob.name_any(), plan.run);
    status.run_count = i64::try_from(plan.run).unwrap_or(i64::MAX);
    status.last_job_name = Some(job.clone());
    status.last_run_started_at = Some(now.clone());
    status.last_run_finished_at = None;
    status.completed = false;
    status.config_digest = plan.config_digest.clone();
    status.observed_generation = generation;
    status.observed_strategy = Some(strategy);
    // An adopted run keeps the recorded source: its decision was made before.
    let policies = status.policies.get_or_insert_with(PolicyDigests::default);
    policies.trigger = Some(plan.trigger_policy.clone());
    if let Some(source) = trigger_source {
        policies.trigger_source = Some(source.to_owned());
    }
    set_condition(
        &mut status,
        CONDITION_RUNNING,
        true,
        "JobCreated",
        &format!("Job {job} is running (run {})", plan.run),
        generation,
        now,
    );
    set_condition(
        &mut status,
        CONDITION_READY,
        true,
        RUN_STARTED,
        &format!("run {} started", plan.run),
        generation,
        now,
    );
    write_status(ctx, qjob, &status).await?;
    Ok(Action::requeue(ctx.resync))
}

/// Fail closed: no run (or no output write), the reason on the QuarksJob (condition + Event)
/// and in metrics. `policy` is the module that failed, when one was resolved.
async fn policy_failed(
    ctx: &Context,
    qjob: &QuarksJob,
    mut status: QuarksJobStatus,
    world: World,
    error: PolicyError,
    policy: Option<&Resolved>,
    now: &Time,
) -> Result<Action, ReconcileError> {
    let code = error.code();
    // Failures of calls are counted where the call is made.
    if policy.is_none() {
        ctx.count_policy_error(world, &error, None);
    }
    let message = match policy {
        Some(p) => format!(
            "{world} policy {} ({}): {error}",
            p.reference,
            p.policy.digest()
        ),
        None => format!("{world} policy: {error}"),
    };
    let already = qjob
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_READY))
        .is_some_and(|c| c.reason == code && c.message == message);
    set_condition(
        &mut status,
        CONDITION_READY,
        false,
        code,
        &message,
        qjob.metadata.generation,
        now,
    );
    if !already {
        // Waiting for a compilation is expected; everything else is a problem to fix.
        let type_ = match error {
            PolicyError::Pending(_) => EventType::Normal,
            _ => EventType::Warning,
        };
        ctx.event(qjob, type_, code, "Decide", message).await;
    }
    if Some(&status) != qjob.status.as_ref() {
        write_status(ctx, qjob, &status).await?;
    }
    Ok(Action::requeue(match error {
        PolicyError::BudgetExhausted { retry_after, .. } => retry_after,
        // Woken when compilation ends; this is only a safety net.
        PolicyError::Pending(_) => Duration::from_secs(10),
        // A change of selection or module reconciles at once; this is a safety net.
        _ => Duration::from_secs(30),
    }))
}

fn reasons_text(decision: &TriggerDecision) -> String {
    decision
        .reasons
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Server-side apply of the whole status, owned by one field manager: fields we stop setting
/// (for example `lastFailure` after a success) are removed.
async fn write_status(
    ctx: &Context,
    qjob: &QuarksJob,
    status: &QuarksJobStatus,
) -> Result<(), ReconcileError> {
    let api: Api<QuarksJob> =
        Api::namespaced(ctx.client.clone(), &qjob.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": QuarksJob::api_version(&()),
        "kind": QuarksJob::kind(&()),
        "status": status,
    });
    api.patch_status(
        &qjob.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    let generation = qjob.metadata.generation.max(status.observed_generation);
    ctx.own_writes.record(qjob, generation, status);
    Ok(())
}

/// Writes `spec.trigger.strategy` back, only if it is still what this reconcile acted on (a
/// JSON patch `test`): a user's change in between wins and is decided on next. Returns the
/// generation the write made, `None` when it was not written.
async fn write_strategy(
    ctx: &Context,
    qjob: &QuarksJob,
    strategy: Strategy,
) -> Result<Option<i64>, ReconcileError> {
    let api: Api<QuarksJob> =
        Api::namespaced(ctx.client.clone(), &qjob.namespace().unwrap_or_default());
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": "/spec/trigger/strategy", "value": qjob.spec.trigger.strategy},
        {"op": "replace", "path": "/spec/trigger/strategy", "value": strategy},
    ]))?;
    match api
        .patch(
            &qjob.name_any(),
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(patched) => {
            info!(
                from = qjob.spec.trigger.strategy.as_str(),
                to = strategy.as_str(),
                "strategy written back"
            );
            // (The API server always sets it.)
            Ok(Some(patched.metadata.generation.unwrap_or_default()))
        }
        // The strategy changed meanwhile: leave it to the user's newer intent.
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a succeeded Job with its pods.
async fn delete_job(ctx: &Context, job: &Job) -> Result<(), ReconcileError> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
