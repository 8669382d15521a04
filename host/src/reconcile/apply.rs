//! The API writes of a reconcile, in the one order that is safe: create the run's Job, write
//! the strategy back (only once the Job exists), write status (once), delete a succeeded Job
//! (only once status records it), publish the Events. A crash or conflict between any two is
//! repaired by the next reconcile.
//!
//! The only status change made here is the one that depends on a write's result: a run is
//! recorded as started only when its Job was created, observing the generation the strategy
//! write-back produced; a Job the API server refuses is recorded as `Ready=False, JobRefused`.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{
    DeleteParams, PartialObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::info;

use super::ReconcileError;
use super::context::Context;
use super::decide::PolicyFailure;
use super::events::{JobProblem, QuarksJobEvent};
use super::job::RunPlan;
use super::status::{ObservedSpec, observe_spec, record_blocked, record_run_started};
use crate::crd::{QuarksJob, QuarksJobStatus, Strategy};
use crate::names::FIELD_MANAGER;
use crate::names::job::job_name;
use crate::output::pod::{has_output_transport, set_handover_secret};

/// A run to start: its Job (`None` when adopting a Job created but never recorded), the plan
/// the status records, and how the trigger policy was named and why it decided so.
#[derive(Debug)]
pub struct StartRun {
    pub job: Option<Job>,
    pub plan: RunPlan,
    pub trigger_source: Option<String>,
    pub reasons: String,
}

/// Why a QuarksJob cannot go on: its `Ready=False` reason comes from here.
#[derive(Debug)]
pub enum Blocked {
    Policy(PolicyFailure),
    Job(JobProblem, String),
}

/// What the stages decided; [`apply`] carries it out.
#[derive(Debug)]
pub struct Effects {
    /// The status as the stages built it.
    pub status: QuarksJobStatus,
    pub run: Option<StartRun>,
    /// The strategy to write back when no run starts (a run writes its plan's).
    pub write_strategy: Option<Strategy>,
    /// Record the spec this reconcile acted on; not when it was blocked, so that the spec is
    /// decided on as new once unblocked.
    pub observe_spec: bool,
    /// A succeeded Job to delete with its pods.
    pub delete_job: Option<String>,
    /// Succeeded Jobs no run of ours made (the Go operator's), deleted with their pods.
    pub delete_leftovers: Vec<String>,
    pub events: Vec<QuarksJobEvent>,
    /// What the controller does next when everything was written.
    pub then: Action,
}

impl Effects {
    /// Nothing yet: the QuarksJob's status as it is, wait for a change.
    pub fn new(qjob: &QuarksJob) -> Effects {
        Effects {
            status: qjob.status.clone().unwrap_or_default(),
            run: None,
            write_strategy: None,
            observe_spec: false,
            delete_job: None,
            delete_leftovers: Vec::new(),
            events: Vec::new(),
            then: Action::await_change(),
        }
    }

    /// Fail closed: no run, no strategy write, the reason in `Ready` (and an Event when it is
    /// news); what earlier stages recorded (output, a settled run) is kept.
    pub fn block(&mut self, qjob: &QuarksJob, blocked: Blocked, now: &Time) {
        if let Blocked::Policy(failure) = &blocked
            && failure.error.is_host_side()
        {
            // Not the namespace's policy failing (its previous call still runs, the engine is
            // at capacity): nothing recorded, tried again soon.
            self.run = None;
            self.write_strategy = None;
            self.observe_spec = false;
            self.then = Action::requeue(failure.retry_after());
            return;
        }
        let (reason, message) = match &blocked {
            Blocked::Policy(failure) => (failure.error.code(), failure.message()),
            Blocked::Job(problem, message) => (problem.as_str(), message.clone()),
        };
        let generation = qjob.metadata.generation;
        if record_blocked(
            &mut self.status,
            qjob.status.as_ref(),
            reason,
            &message,
            generation,
            now,
        ) {
            self.events.push(match &blocked {
                Blocked::Policy(failure) => QuarksJobEvent::PolicyFailed {
                    code: failure.error.code(),
                    message,
                    pending: matches!(failure.error, crate::policy::PolicyError::Pending(_)),
                },
                Blocked::Job(problem, _) => QuarksJobEvent::JobNotCreated {
                    reason: *problem,
                    message,
                },
            });
        }
        self.run = None;
        self.write_strategy = None;
        self.observe_spec = false;
        self.then = match blocked {
            Blocked::Policy(failure) => Action::requeue(failure.retry_after()),
            // Only a change of the spec makes the template buildable.
            Blocked::Job(..) => Action::await_change(),
        };
    }
}

/// Carries out `effects` (see the module docs for the order).
pub async fn apply(
    ctx: &Context,
    qjob: &QuarksJob,
    mut effects: Effects,
    now: &Time,
) -> Result<Action, ReconcileError> {
    if let Some(job) = effects.run.as_mut().and_then(|r| r.job.as_mut()) {
        let handover = prepare_handover(ctx, qjob, job).await?;
        let created = create_job(ctx, job).await;
        let namespace = qjob.namespace().unwrap_or_default();
        match (&handover, &created) {
            (Some(secret), Ok(Ok(Some(created)))) => {
                crate::output::handover::own_by_job(&ctx.client, secret, created).await?;
            }
            // No Job of this run will mount it (refused, failed, or the Job existed already).
            (Some(secret), _) => {
                crate::output::handover::discard(&ctx.client, &namespace, secret).await;
            }
            (None, _) => {}
        }
        if let Err(refusal) = created? {
            effects.block(
                qjob,
                Blocked::Job(JobProblem::JobRefused, refusal.clone()),
                now,
            );
            write_status_if_changed(ctx, qjob, &effects.status).await?;
            publish(ctx, qjob, &effects.events);
            return Err(ReconcileError::JobRefused(refusal));
        }
    }
    let wanted = match &effects.run {
        Some(run) => run.plan.write_strategy,
        None => effects.write_strategy,
    };
    let mut observed = ObservedSpec {
        generation: qjob.metadata.generation,
        strategy: qjob.spec.trigger.strategy,
    };
    if let Some(strategy) = wanted.filter(|s| *s != qjob.spec.trigger.strategy) {
        // Not written when the user changed it meanwhile: their change is decided on next.
        if let Some(generation) = write_strategy(ctx, qjob, strategy).await? {
            observed = ObservedSpec {
                generation: Some(generation),
                strategy,
            };
        }
    }
    if let Some(run) = &effects.run {
        let name = qjob.name_any();
        let source = run.trigger_source.as_deref();
        record_run_started(&mut effects.status, &name, &run.plan, source, observed, now);
        if run.job.is_some() {
            effects.events.push(QuarksJobEvent::RunStarted {
                job: job_name(&name, run.plan.run),
                run: run.plan.run,
                reasons: run.reasons.clone(),
            });
        }
    } else if effects.observe_spec {
        observe_spec(&mut effects.status, observed);
    }
    write_status_if_changed(ctx, qjob, &effects.status).await?;
    if let Some(job) = &effects.delete_job {
        delete_job(ctx, qjob, job).await?;
    }
    for job in &effects.delete_leftovers {
        info!(job = %job, "deleting a succeeded Job no run of this operator made (the Go operator's), with its pods");
        delete_job(ctx, qjob, job).await?;
    }
    publish(ctx, qjob, &effects.events);
    Ok(effects.then)
}

/// Queues the Events (published in the background) and counts the runs they report.
fn publish(ctx: &Context, qjob: &QuarksJob, events: &[QuarksJobEvent]) {
    for event in events {
        let runs = match event {
            QuarksJobEvent::RunStarted { .. } => Some(&ctx.metrics.runs_started_total),
            QuarksJobEvent::RunSucceeded { .. } => Some(&ctx.metrics.runs_succeeded_total),
            QuarksJobEvent::RunFailed { .. } => Some(&ctx.metrics.runs_failed_total),
            _ => None,
        };
        if let Some(counter) = runs {
            counter.inc();
        }
        ctx.publish(qjob, event);
    }
}

/// For a run with output: the helper's identity in the namespace and the run's hand-over
/// Secret, named in the Job's pod. Returns the Secret's name.
async fn prepare_handover(
    ctx: &Context,
    qjob: &QuarksJob,
    job: &mut Job,
) -> Result<Option<String>, ReconcileError> {
    let Some(pod) = job
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .filter(|pod| has_output_transport(pod))
    else {
        return Ok(None);
    };
    let namespace = qjob.namespace().unwrap_or_default();
    ctx.helper_identity.ensure(&ctx.client, &namespace).await?;
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let secret = crate::output::handover::create(
        &ctx.client,
        qjob,
        &job_name,
        &ctx.handover,
        ctx.helper.deadline_seconds,
    )
    .await?;
    set_handover_secret(pod, &secret);
    Ok(Some(secret))
}

/// Creates the run's Job: the created Job's metadata, `None` when this run's Job existed
/// already. `Ok(Err(message))`: the API server refused it for good (invalid, forbidden by
/// admission or quota): the user has to change something.
async fn create_job(
    ctx: &Context,
    job: &Job,
) -> Result<Result<Option<PartialObjectMeta<Job>>, String>, ReconcileError> {
    let namespace = job.namespace().unwrap_or_default();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let request = kube::core::Request::new(Job::url_path(&(), Some(&namespace)))
        .create(&params, serde_json::to_vec(job)?)
        .map_err(kube::Error::BuildRequest)?;
    match metadata_of_write(&ctx.client, request).await {
        Ok(created) => {
            ctx.caches
                .job_echoes
                .expect(&created, created.resource_version());
            Ok(Ok(Some(created)))
        }
        // The same run's Job exists already (a retried create): it is this run.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Ok(None)),
        Err(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 422) => Ok(Err(format!(
            "the API server refused Job {}: {}",
            job.name_any(),
            e.message
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Writes the status when it differs from what the QuarksJob has (the one way status is
/// written).
pub async fn write_status_if_changed(
    ctx: &Context,
    qjob: &QuarksJob,
    status: &QuarksJobStatus,
) -> Result<(), ReconcileError> {
    if Some(status) == qjob.status.as_ref() {
        return Ok(());
    }
    let namespace = qjob.namespace().unwrap_or_default();
    // Server-side apply of the whole status, owned by one field manager: fields we stop
    // setting (for example `lastFailure` after a success) are removed.
    let patch = serde_json::json!({
        "apiVersion": QuarksJob::api_version(&()),
        "kind": QuarksJob::kind(&()),
        "status": status,
    });
    let request = kube::core::Request::new(QuarksJob::url_path(&(), Some(&namespace)))
        .patch_subresource(
            "status",
            &qjob.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .map_err(kube::Error::BuildRequest)?;
    let written: PartialObjectMeta<QuarksJob> = metadata_of_write(&ctx.client, request).await?;
    ctx.caches
        .own_echoes
        .expect(qjob, written.resource_version());
    let generation = qjob.metadata.generation.max(status.observed_generation);
    ctx.caches.own_writes.record(qjob, generation, status);
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
    // The response is the metadata only (the write needs the generation it made).
    let api: Api<PartialObjectMeta<QuarksJob>> =
        Api::namespaced(ctx.client.clone(), &qjob.namespace().unwrap_or_default());
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": "/spec/trigger/strategy", "value": qjob.spec.trigger.strategy},
        {"op": "replace", "path": "/spec/trigger/strategy", "value": strategy},
    ]))?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch(&qjob.name_any(), &params, &Patch::Json::<()>(patch))
        .await
    {
        Ok(patched) => {
            ctx.caches
                .own_echoes
                .expect(qjob, patched.resource_version());
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

/// How a write asks for the written object's metadata only in its response (kube-apiserver
/// renders any verb's response this way on request).
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// Sends a write (`request`) and reads back the written object's metadata only: the operator
/// needs its uid, generation and resource version, and parsing whole objects back was about a
/// third of the deserialization a run costs.
async fn metadata_of_write<K>(
    client: &kube::Client,
    mut request: http::Request<Vec<u8>>,
) -> Result<PartialObjectMeta<K>, kube::Error>
where
    PartialObjectMeta<K>: serde::de::DeserializeOwned,
{
    request.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static(METADATA_ONLY),
    );
    client.request(request).await
}

/// Deletes a succeeded Job with its pods.
async fn delete_job(ctx: &Context, qjob: &QuarksJob, name: &str) -> Result<(), ReconcileError> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &qjob.namespace().unwrap_or_default());
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
