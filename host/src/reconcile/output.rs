//! The run's output: staging Secrets the output helpers handed over → the namespace's output
//! policy → Secrets (`output::write`), recorded in status with an Event per file. Runs before
//! the run is settled, so a succeeded Job (which owns its staging Secrets) is deleted only
//! once they are used. Without a usable output policy nothing is written and the staging
//! Secrets stay until it is.
//!
//! A staging Secret that is not a hand-over of this QuarksJob's runs (a forgery: see
//! `output::staging::authenticate`) writes nothing, is left where it is, and is reported once
//! per operator process: condition `HandOver=False, OutputRejected` and a Warning Event.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::ReconcileError;
use super::context::{Context, NamespaceOutputPolicy};
use super::decide::PolicyFailure;
use super::events::QuarksJobEvent;
use super::status::{ConditionType, set_condition};
use crate::crd::{OutputRecord, QuarksJob, QuarksJobStatus};
use crate::output::staging::claimed_job;
use crate::output::write::{Consumed, HandOverCheck, consume};
use crate::policy::World;

/// Writes the output of `staged` and records it in `status` and `events`.
pub async fn write_staged_output(
    ctx: &Context,
    qjob: &QuarksJob,
    staged: &[Secret],
    status: &mut QuarksJobStatus,
    events: &mut Vec<QuarksJobEvent>,
    now: &Time,
) -> Result<Result<(), PolicyFailure>, ReconcileError> {
    if staged.is_empty() {
        return Ok(Ok(()));
    }
    let namespace = qjob.metadata.namespace.clone().unwrap_or_default();
    let policy = match ctx.policies.resolve(&namespace, World::Output).await {
        Ok(policy) => policy,
        Err(failure) => return Ok(Err(failure)),
    };
    let policies = status.policies.get_or_insert_with(Default::default);
    policies.output = Some(policy.policy.digest().to_string());
    policies.output_source = Some(policy.reference.clone());
    let runner = NamespaceOutputPolicy {
        ctx,
        namespace: &namespace,
        policy,
    };
    let qjob_uid = qjob.uid().unwrap_or_default();
    for listed in staged {
        if ctx.rejected_hand_overs.seen(listed) {
            continue;
        }
        let claimed_job_is_a_run = match claimed_job(listed) {
            Some(job) => {
                ctx.caches
                    .jobs
                    .is_run(&ctx.client, &namespace, &job.name, &job.uid, &qjob_uid)
                    .await?
            }
            None => false,
        };
        let check = HandOverCheck {
            key: &ctx.handover.key,
            claimed_job_is_a_run,
        };
        // What this staging Secret's run wrote already (status lists the latest run's files).
        let job = claimed_job(listed)
            .map(|j| j.name.clone())
            .unwrap_or_default();
        let mut run_written = status
            .outputs
            .iter()
            .filter(|r| r.job == job)
            .map(|r| r.secrets.len())
            .sum();
        match consume(
            &ctx.client,
            &runner,
            qjob,
            listed,
            check,
            ctx.version_trust(),
            &mut run_written,
        )
        .await?
        {
            Consumed::Written(records) => {
                prune_versions(ctx, qjob, &records).await?;
                for record in records {
                    record_output(status, &record);
                    events.push(QuarksJobEvent::Output(record));
                }
            }
            Consumed::Rejected { secret, why } => {
                ctx.rejected_hand_overs.remember(listed);
                tracing::warn!(%secret, %why, "rejected a staging Secret");
                let message = format!("staging Secret {secret} was not accepted: {why}");
                let generation = qjob.metadata.generation;
                set_condition(
                    status,
                    ConditionType::HandOver,
                    false,
                    "OutputRejected",
                    &message,
                    generation,
                    now,
                );
                events.push(QuarksJobEvent::OutputRejected { secret, message });
            }
            Consumed::Gone => {}
        }
    }
    Ok(Ok(()))
}

/// After new versions were written: older ones beyond the file's `keepVersions`.
async fn prune_versions(
    ctx: &Context,
    qjob: &QuarksJob,
    records: &[OutputRecord],
) -> Result<(), ReconcileError> {
    let namespace = qjob.namespace().unwrap_or_default();
    let output_map = qjob.spec.output.as_ref().map(|o| &o.output_map);
    let mut pruned = std::collections::BTreeSet::new();
    for record in records.iter().filter(|r| r.error.is_none()) {
        let Some(options) = output_map
            .and_then(|m| m.get(&record.container))
            .and_then(|files| files.get(&record.file))
            .filter(|o| o.versioned)
        else {
            continue;
        };
        let keep = options.keep_versions.unwrap_or(0) as usize;
        if keep == 0 {
            continue;
        }
        for secret in &record.secrets {
            let Some(version) = crate::names::versioned::parse_versioned_name(secret) else {
                continue;
            };
            if pruned.insert(version.prefix.clone()) {
                super::retention::prune(
                    &ctx.client,
                    &namespace,
                    &version.prefix,
                    keep,
                    &ctx.handover.key,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// A file's record replaces the one of the same file from the same Job, and those of earlier
/// Jobs (status lists the outputs of the latest run).
fn record_output(status: &mut QuarksJobStatus, record: &OutputRecord) {
    status.outputs.retain(|r| {
        r.job == record.job && !(r.container == record.container && r.file == record.file)
    });
    status.outputs.push(record.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(job: &str, file: &str) -> OutputRecord {
        OutputRecord {
            job: job.into(),
            container: "c".into(),
            file: file.into(),
            secrets: vec![format!("{job}-{file}")],
            reason: None,
            error: None,
        }
    }

    #[test]
    fn a_new_record_replaces_its_file_and_the_records_of_earlier_jobs() {
        let mut status = QuarksJobStatus::default();
        record_output(&mut status, &record("q-1", "a.json"));
        record_output(&mut status, &record("q-2", "a.json"));
        record_output(&mut status, &record("q-2", "b.json"));
        record_output(&mut status, &record("q-2", "a.json"));
        let files: Vec<(&str, &str)> = status
            .outputs
            .iter()
            .map(|r| (r.job.as_str(), r.file.as_str()))
            .collect();
        assert_eq!(files, [("q-2", "b.json"), ("q-2", "a.json")]);
    }
}
