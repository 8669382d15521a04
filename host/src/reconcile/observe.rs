//! Gathering what a reconcile needs from the API: the ConfigMaps and Secrets the pod template
//! references (with versioned references resolved to their newest version) and the Jobs of
//! the current and the next run (from a cache of the operator's Jobs, with a read through to
//! the API where a stale cache could mislead). Reads only; decisions are made elsewhere.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio_util::sync::CancellationToken;

use super::digest::{ConfigContent, config_digest};
use super::references::{ConfigKind, referenced_config, rewrite_versioned_references};
use crate::crd::QuarksJob;
use crate::names::job::{QJOB_NAME_LABEL, job_name, qjob_name_label_value};
use crate::output::write::{VersionTrust, read_newest_versions};

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
    trust: VersionTrust<'_>,
) -> Result<ConfigObservation, kube::Error> {
    let namespace = qjob.metadata.namespace.as_deref().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);

    let mut pod: PodSpec = qjob
        .spec
        .template
        .pod_spec()
        .map_err(kube::Error::SerdeError)?
        .unwrap_or_default();
    let refs_before = referenced_config(&pod);
    // Only list versioned secrets (metadata: only the operator's sealed versions count) when
    // the template could reference one.
    let newest = if refs_before.iter().any(|r| r.kind == ConfigKind::Secret) {
        read_newest_versions(&secrets, trust).await?
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

/// The staging Secrets the output helpers of this QuarksJob's pods handed over, oldest first
/// (only a QuarksJob with output has helpers).
pub async fn staged_output(
    client: &kube::Client,
    qjob: &QuarksJob,
) -> Result<Vec<Secret>, kube::Error> {
    match &qjob.spec.output {
        Some(_) => crate::output::write::pending_staging(client, qjob).await,
        None => Ok(Vec::new()),
    }
}

/// The Jobs of run `run_count` (the last recorded run) and `run_count + 1` (a run whose Job
/// was created but not yet recorded in status, e.g. after a crash).
pub struct RunJobs {
    pub current: Option<Job>,
    pub next: Option<Job>,
    /// Every other Job the QuarksJob controls, among them those no run of ours made (the Go
    /// operator's, on a cluster upgraded from it; see [`super::settle::settle_leftovers`]).
    pub others: Vec<Job>,
}

/// A Job as the operator caches it: its metadata (without managedFields) and status, what a
/// reconcile reads. Not a `Job` with `spec: None`: k8s-openapi holds the whole JobSpec (its pod
/// template, every optional field) inline, so such a `Job` still takes ~4 KiB; this ~2 KiB.
/// Watched as `batch/v1` `jobs` (the spec in each event is skipped while reading it).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct CachedJob {
    metadata: ObjectMeta,
    #[serde(default)]
    status: Option<JobStatus>,
}

impl CachedJob {
    /// The Job, with no spec (the cache has none).
    pub fn to_job(&self) -> Job {
        Job {
            metadata: self.metadata.clone(),
            spec: None,
            status: self.status.clone(),
        }
    }

    /// Drops what no reconcile reads before it is cached.
    pub fn slim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl kube::Resource for CachedJob {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind((): &()) -> std::borrow::Cow<'_, str> {
        Job::kind(&())
    }
    fn group((): &()) -> std::borrow::Cow<'_, str> {
        Job::group(&())
    }
    fn version((): &()) -> std::borrow::Cow<'_, str> {
        Job::version(&())
    }
    fn plural((): &()) -> std::borrow::Cow<'_, str> {
        Job::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The operator's Jobs (those with the `qjob-name` label), as a reflector caches them
/// ([`CachedJob`]s).
#[derive(Clone)]
pub struct JobCache {
    store: Store<CachedJob>,
    synced: CancellationToken,
    owners: Arc<JobOwners>,
}

/// The cached Jobs by the uid of the QuarksJob controlling them, kept current by whatever
/// writes the store (the Job watches): a QuarksJob's Jobs are looked up, not found by scanning
/// every cached Job of the cluster (which made reconciles quadratic in the number of Jobs).
#[derive(Default)]
pub struct JobOwners {
    by_owner: Mutex<HashMap<String, HashSet<ObjectRef<CachedJob>>>>,
}

impl JobOwners {
    /// A Job entered the store, or changed.
    pub fn applied(&self, job: &CachedJob) {
        if let Some(owner) = controller_uid(job) {
            self.lock()
                .entry(owner.to_owned())
                .or_default()
                .insert(ObjectRef::from_obj(job));
        }
    }

    /// A Job left the store.
    pub fn deleted(&self, job: &CachedJob) {
        let Some(owner) = controller_uid(job) else {
            return;
        };
        let mut by_owner = self.lock();
        if let Some(jobs) = by_owner.get_mut(owner) {
            jobs.remove(&ObjectRef::from_obj(job));
            if jobs.is_empty() {
                by_owner.remove(owner);
            }
        }
    }

    fn of(&self, qjob_uid: &str) -> Vec<ObjectRef<CachedJob>> {
        self.lock()
            .get(qjob_uid)
            .map(|jobs| jobs.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<ObjectRef<CachedJob>>>> {
        self.by_owner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The uid of the QuarksJob controlling a Job.
fn controller_uid(job: &CachedJob) -> Option<&str> {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "QuarksJob")
        .map(|o| o.uid.as_str())
}

impl JobCache {
    /// `synced` is cancelled once the reflector filling `store` has listed all Jobs; `owners`
    /// is kept by the same writer.
    pub fn new(store: Store<CachedJob>, synced: CancellationToken, owners: Arc<JobOwners>) -> Self {
        JobCache {
            store,
            synced,
            owners,
        }
    }

    /// Whether Job `name` with this `uid` exists and is controlled by the QuarksJob with
    /// `qjob_uid`: from the cache, read through to the API when the cache does not have it.
    pub async fn is_run(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        uid: &str,
        qjob_uid: &str,
    ) -> Result<bool, kube::Error> {
        let job = match self.get(namespace, name) {
            Some(job) => Some(job),
            None => {
                Api::<Job>::namespaced(client.clone(), namespace)
                    .get_opt(name)
                    .await?
            }
        };
        Ok(job.is_some_and(|job| {
            job.metadata.uid.as_deref() == Some(uid) && super::job::is_controlled_by(&job, qjob_uid)
        }))
    }

    /// The cached Jobs in `namespace` controlled by the QuarksJob with `qjob_uid`.
    fn controlled_by(&self, namespace: &str, qjob_uid: &str) -> Vec<Job> {
        self.owners
            .of(qjob_uid)
            .into_iter()
            .filter_map(|reference| self.store.get(&reference))
            .map(|cached| cached.to_job())
            .filter(|job| {
                job.metadata.namespace.as_deref() == Some(namespace)
                    && super::job::is_controlled_by(job, qjob_uid)
            })
            .collect()
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Job> {
        self.store
            .get(&ObjectRef::new(name).within(namespace))
            .map(|cached| cached.to_job())
    }
}

/// The Jobs of the current and the next run of `qjob`.
///
/// From the cache once it is synced; it may lag behind the API, which is harmless except for
/// one case that is therefore read from the API: the current run is not finished according to
/// status but its Job is not in the cache (it may have been created a moment ago; deciding
/// without it would start a second run next to it). A next-run Job missing from the cache is
/// either adopted when its watch event arrives or met as a 409 on create (the same name).
pub async fn run_jobs(
    client: &kube::Client,
    cache: &JobCache,
    qjob: &QuarksJob,
) -> Result<RunJobs, kube::Error> {
    let namespace = qjob.metadata.namespace.as_deref().unwrap_or_default();
    let name = qjob.metadata.name.as_deref().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let status = qjob.status.as_ref();
    let run_count = status.map(|s| s.run_count).unwrap_or_default();
    let run_count = u64::try_from(run_count).unwrap_or_default();
    let running = status.is_some_and(|s| s.last_run_finished_at.is_none());
    let uid = qjob.metadata.uid.as_deref().unwrap_or_default();
    // Only Jobs this very QuarksJob controls count (not a namesake's from before a re-create).
    let ours = |job: Option<Job>| job.filter(|j| super::job::is_controlled_by(j, uid));
    let (current_name, next_name) = (job_name(name, run_count), job_name(name, run_count + 1));
    let not_a_run = |job: &Job| {
        let job_name = job.metadata.name.as_deref();
        job_name != Some(next_name.as_str()) && (run_count == 0 || job_name != Some(&current_name))
    };
    if !cache.synced.is_cancelled() {
        let current = if run_count > 0 {
            ours(jobs.get_opt(&current_name).await?)
        } else {
            None
        };
        let next = ours(jobs.get_opt(&next_name).await?);
        // Jobs are labelled with the QuarksJob's name (the Go operator's too).
        let labelled = format!("{QJOB_NAME_LABEL}={}", qjob_name_label_value(name));
        let others = jobs
            .list(&kube::api::ListParams::default().labels(&labelled))
            .await?
            .items
            .into_iter()
            .filter(|j| super::job::is_controlled_by(j, uid) && not_a_run(j))
            .collect();
        return Ok(RunJobs {
            current,
            next,
            others,
        });
    }
    let current = if run_count == 0 {
        None
    } else {
        match ours(cache.get(namespace, &current_name)) {
            None if running => ours(jobs.get_opt(&current_name).await?),
            cached => cached,
        }
    };
    let next = ours(cache.get(namespace, &next_name));
    let mut others = cache.controlled_by(namespace, uid);
    others.retain(not_a_run);
    Ok(RunJobs {
        current,
        next,
        others,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_found_by_the_quarks_job_controlling_them() {
        let job = |name: &str, owner: &str| -> CachedJob {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "ownerReferences": [{
                    "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
                    "name": "q", "uid": owner, "controller": true
                }]}
            }))
            .unwrap()
        };
        let owners = JobOwners::default();
        owners.applied(&job("q-1", "a"));
        owners.applied(&job("q-2", "a"));
        owners.applied(&job("r-1", "b"));
        owners.applied(&job("q-2", "a"));
        let mut of_a: Vec<String> = owners.of("a").into_iter().map(|r| r.name).collect();
        of_a.sort();
        assert_eq!(of_a, ["q-1", "q-2"]);
        owners.deleted(&job("q-1", "a"));
        owners.deleted(&job("q-2", "a"));
        assert!(owners.of("a").is_empty());
        assert_eq!(owners.of("b").len(), 1);
        assert!(
            owners.lock().get("a").is_none(),
            "empty entries are dropped"
        );
    }

    #[test]
    fn a_cached_job_keeps_metadata_and_status_and_reads_a_whole_job() {
        let whole = serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "q-1", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"quarks.cloudfoundry.org/qjob-name": "q"},
                "annotations": {"quarks.cloudfoundry.org/run": "1"},
                "managedFields": [{"manager": "quarks-job", "operation": "Update"}]},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"succeeded": 1},
        });
        let mut cached: CachedJob = serde_json::from_value(whole.clone()).unwrap();
        cached.slim();
        let job = cached.to_job();
        let mut expected: Job = serde_json::from_value(whole).unwrap();
        expected.spec = None;
        expected.metadata.managed_fields = None;
        assert_eq!(job, expected);
        assert_eq!(
            kube::api::ApiResource::erase::<CachedJob>(&()),
            kube::api::ApiResource::erase::<Job>(&())
        );
    }
}
