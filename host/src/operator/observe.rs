//! Gathering what a reconcile needs from the API: the ConfigMaps and Secrets the pod template
//! references (with versioned references resolved to their newest version) and the Jobs of
//! the current and the next run. Reads only; decisions are made elsewhere.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use kube::Api;
use kube::api::ListParams;

use super::digest::{ConfigContent, config_digest};
use super::naming::job_name;
use super::references::{ConfigKind, referenced_config};
use super::versioned::{
    SECRET_KIND_LABEL, VERSIONED_SECRET_KIND, newest_versions, rewrite_versioned_references,
};
use crate::crd::QuarksJob;

/// The referenced config of a QuarksJob as it is now.
pub struct ConfigObservation {
    /// Digest of the content of every existing referenced object; `None` when a required one
    /// is missing (a digest of a partial set would look like a change once it appears).
    pub digest: Option<String>,
    /// Required references that do not exist, as `configmap/NAME` / `secret/NAME`.
    pub missing: Vec<String>,
    /// Newest version per versioned-secret prefix in the namespace.
    pub newest_versions: BTreeMap<String, u64>,
}

/// Reads the referenced ConfigMaps and Secrets (only those) and computes the digest.
pub async fn referenced_config_now(
    client: &kube::Client,
    qjob: &QuarksJob,
) -> Result<ConfigObservation, kube::Error> {
    let namespace = qjob.metadata.namespace.as_deref().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);

    let mut pod: PodSpec = qjob
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    let refs_before = referenced_config(&pod);
    // Only list versioned secrets when the template could reference one.
    let newest = if refs_before.iter().any(|r| r.kind == ConfigKind::Secret) {
        let versioned = secrets
            .list(
                &ListParams::default()
                    .labels(&format!("{SECRET_KIND_LABEL}={VERSIONED_SECRET_KIND}")),
            )
            .await?;
        newest_versions(&versioned.items)
    } else {
        BTreeMap::new()
    };
    rewrite_versioned_references(&mut pod, &newest);

    let mut found_maps = Vec::new();
    let mut found_secrets = Vec::new();
    let mut missing = Vec::new();
    for reference in referenced_config(&pod) {
        let present = match reference.kind {
            ConfigKind::ConfigMap => config_maps
                .get_opt(&reference.name)
                .await?
                .map(|c| found_maps.push(c)),
            ConfigKind::Secret => secrets
                .get_opt(&reference.name)
                .await?
                .map(|s| found_secrets.push(s)),
        };
        if present.is_none() && !reference.optional {
            missing.push(reference.display());
        }
    }
    let digest = missing.is_empty().then(|| {
        let contents: Vec<ConfigContent<'_>> = found_maps
            .iter()
            .map(ConfigContent::from_config_map)
            .chain(found_secrets.iter().map(ConfigContent::from_secret))
            .collect();
        config_digest(&contents)
    });
    Ok(ConfigObservation {
        digest,
        missing,
        newest_versions: newest,
    })
}

/// The Jobs of run `run_count` (the last recorded run) and `run_count + 1` (a run whose Job
/// was created but not yet recorded in status, e.g. after a crash).
pub struct RunJobs {
    pub current: Option<Job>,
    pub next: Option<Job>,
}

pub async fn run_jobs(client: &kube::Client, qjob: &QuarksJob) -> Result<RunJobs, kube::Error> {
    let namespace = qjob.metadata.namespace.as_deref().unwrap_or_default();
    let name = qjob.metadata.name.as_deref().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let run_count = qjob
        .status
        .as_ref()
        .map(|s| s.run_count)
        .unwrap_or_default();
    let run_count = u64::try_from(run_count).unwrap_or_default();
    let uid = qjob.metadata.uid.as_deref().unwrap_or_default();
    // Only Jobs this very QuarksJob controls count (not a namesake's from before a re-create).
    let ours = |job: Option<Job>| job.filter(|j| super::job_builder::is_controlled_by(j, uid));
    let current = if run_count > 0 {
        ours(jobs.get_opt(&job_name(name, run_count)).await?)
    } else {
        None
    };
    let next = ours(jobs.get_opt(&job_name(name, run_count + 1)).await?);
    Ok(RunJobs { current, next })
}
