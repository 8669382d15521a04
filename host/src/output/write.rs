//! The operator's side of output, its API reads and writes: consume the staging Secrets of a
//! QuarksJob's runs, ask the output policy for each file (through [`OutputPolicyRunner`]), and
//! write what [`super::files`] decides — overwritten, or as a new immutable version. A bad file writes nothing and is reported (status + Event);
//! the others are written. Also sets up the helper's least-privilege identity per namespace.
//! Secret values never reach logs, Events or status.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::files::{self, FileOutcome, FilePlan, StagedFile};
use super::pod::{DEFAULT_HELPER_CLUSTER_ROLE, HELPER_SERVICE_ACCOUNT};
use super::problem::OutputProblem;
use super::staging::{self, Rejection, STAGING_LABEL};
use crate::crd::{OutputRecord, QuarksJob};
use crate::names::FIELD_MANAGER;
use crate::names::job::{QJOB_NAME_LABEL, qjob_name_label_value};
use crate::names::versioned::{
    SECRET_KIND_LABEL, VERSIONED_SECRET_KIND, newest_versions, versioned_name,
};
use crate::policy::contract::{OutputInput, SecretSpec};
use crate::seal::OperatorKey;

/// How often a versioned write retries with the next number when another writer took it.
const VERSION_ATTEMPTS: u64 = 8;

/// Staging Secrets waiting for this QuarksJob, metadata only (their data is read one at a
/// time, when consumed), oldest hand-over first.
pub async fn pending_staging(
    client: &kube::Client,
    qjob: &QuarksJob,
) -> Result<Vec<Secret>, kube::Error> {
    let secrets: Api<Secret> =
        Api::namespaced(client.clone(), &qjob.namespace().unwrap_or_default());
    let selector = format!(
        "{STAGING_LABEL}=true,{QJOB_NAME_LABEL}={}",
        qjob_name_label_value(&qjob.name_any())
    );
    let mut staged: Vec<Secret> = secrets
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .map(|m| Secret {
            metadata: m.metadata,
            ..Default::default()
        })
        .collect();
    // Oldest hand-over first: a retried pod's output overwrites the failed attempt's.
    staged.sort_by_cached_key(|s| {
        (
            s.metadata.creation_timestamp.clone().map(|t| t.0),
            staging::staged_at_micros(s),
            s.name_any(),
        )
    });
    Ok(staged)
}

/// Everything output needs from the operator: the API and a way to run the output policy.
pub trait OutputPolicyRunner {
    fn transform(
        &self,
        input: OutputInput,
    ) -> impl std::future::Future<
        Output = Result<crate::policy::contract::OutputResult, crate::policy::PolicyError>,
    > + Send;
}

/// What became of one staging Secret.
#[derive(Debug)]
pub enum Consumed {
    /// It was the run's own hand-over: its files, each with its record; it is deleted.
    Written(Vec<OutputRecord>),
    /// It is not a hand-over of this QuarksJob's runs: nothing written, and it is left as it is
    /// (it is not the operator's to delete).
    Rejected { secret: String, why: Rejection },
    /// It was deleted meanwhile.
    Gone,
}

/// How the operator tells its helpers' hand-overs from forgeries.
pub struct HandOverCheck<'a> {
    pub key: &'a OperatorKey,
    /// Whether the Job that a staging Secret claims (its owner) is a run of this QuarksJob.
    pub claimed_job_is_a_run: bool,
}

/// Consumes one staging Secret (`listed`: its metadata): read, authenticated, then every
/// mapped file → policy → validated Secrets → written. A genuine staging Secret is deleted
/// afterwards, also when files were bad (they are reported).
pub async fn consume(
    client: &kube::Client,
    policy: &impl OutputPolicyRunner,
    qjob: &QuarksJob,
    listed: &Secret,
    check: HandOverCheck<'_>,
    trust: VersionTrust<'_>,
    run_written: &mut usize,
) -> Result<Consumed, kube::Error> {
    let namespace = qjob.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let name = listed.name_any();
    let qjob_uid = qjob.uid().unwrap_or_default();
    let rejected = |why| Consumed::Rejected {
        secret: name.clone(),
        why,
    };
    // What the metadata already shows is refused without reading the data.
    if let Err(why) = staging::authenticate_claim(listed, check.claimed_job_is_a_run) {
        return Ok(rejected(why));
    }
    let Some(staging_secret) = secrets.get_opt(&name).await? else {
        return Ok(Consumed::Gone);
    };
    if let Err(why) = staging::authenticate(
        &staging_secret,
        check.key,
        &qjob_uid,
        check.claimed_job_is_a_run,
    ) {
        return Ok(rejected(why));
    }
    let job = files::staging_job(&staging_secret);
    let records = match staging::parse(&staging_secret) {
        Err(problem) => vec![files::record(&job, "", "", vec![], Some(&problem))],
        Ok((manifest, data)) => {
            let staged = files::staged_files(qjob, &manifest, data);
            write_files(&secrets, policy, qjob, &job, staged, trust, run_written).await?
        }
    };
    match secrets.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    Ok(Consumed::Written(records))
}

/// Asks the policy for each handed-over file and writes what it comes to; one record per file.
async fn write_files(
    secrets: &Api<Secret>,
    policy: &impl OutputPolicyRunner,
    qjob: &QuarksJob,
    job: &str,
    staged: Vec<StagedFile>,
    trust: VersionTrust<'_>,
    run_written: &mut usize,
) -> Result<Vec<OutputRecord>, kube::Error> {
    let mut versions = None;
    let mut records = Vec::with_capacity(staged.len());
    for file in staged {
        let outcome = match file.plan {
            FilePlan::Report(problem) => FileOutcome::Nothing(problem),
            FilePlan::Transform(input) => files::outcome(policy.transform(*input).await),
        };
        let mut written = Vec::new();
        let outcome = match outcome {
            FileOutcome::Write(specs) => {
                match files::within_run_budget(specs.len(), *run_written) {
                    Ok(()) => FileOutcome::Write(specs),
                    Err(problem) => FileOutcome::Nothing(problem),
                }
            }
            nothing => nothing,
        };
        let problem = match outcome {
            FileOutcome::Nothing(problem) => Some(problem),
            FileOutcome::Write(specs) => match not_owned(secrets, qjob, &specs).await? {
                Some(problem) => Some(problem),
                None => {
                    for spec in &specs {
                        written.push(if spec.versioned {
                            write_versioned(secrets, spec, qjob, trust, &mut versions).await?
                        } else {
                            write_plain(secrets, spec, qjob).await?
                        });
                    }
                    *run_written += specs.len();
                    None
                }
            },
        };
        records.push(files::record(
            job,
            &file.container,
            &file.file,
            written,
            problem.as_ref(),
        ));
    }
    Ok(records)
}

/// The first plain Secret of a file's output that exists and is not this QuarksJob's output
/// (checked for all before any is written: a file is written whole or not at all).
async fn not_owned(
    secrets: &Api<Secret>,
    qjob: &QuarksJob,
    specs: &[SecretSpec],
) -> Result<Option<OutputProblem>, kube::Error> {
    for spec in specs.iter().filter(|s| !s.versioned) {
        if let Some(existing) = secrets.get_metadata_opt(&spec.name).await?
            && !files::is_output_of(&existing.metadata, qjob)
        {
            return Ok(Some(OutputProblem::SecretNotOwned {
                secret: spec.name.clone(),
            }));
        }
    }
    Ok(None)
}

/// Overwrites (server-side apply, one field manager): keys of an earlier run that this run
/// does not write are removed, as "output of previous runs is overwritten" says. Only a Secret
/// that is this QuarksJob's output already, or none ([`not_owned`]).
async fn write_plain(
    secrets: &Api<Secret>,
    spec: &SecretSpec,
    qjob: &QuarksJob,
) -> Result<String, kube::Error> {
    secrets
        .patch(
            &spec.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&files::plain_secret(spec, qjob)),
        )
        .await?;
    Ok(spec.name.clone())
}

/// Newest version per prefix in the namespace: read once (metadata only) when a staging Secret
/// first writes a versioned secret, then kept current by its own writes and refreshed when
/// another writer took a version.
type NewestVersions = BTreeMap<String, u64>;

/// Which Secrets count as versions: those the operator sealed; with `unsealed` (the
/// operator's `--trust-unsealed-versions`) also unsealed ones other writers made, such as the
/// Quarks operator's own versioned secrets. A Secret with a seal that does not verify never
/// counts.
#[derive(Clone, Copy, Debug)]
pub struct VersionTrust<'a> {
    pub key: &'a OperatorKey,
    pub unsealed: bool,
}

impl VersionTrust<'_> {
    fn counts(&self, namespace: &str, name: &str, version: u64, seal: Option<&str>) -> bool {
        match seal {
            Some(seal) => self.key.verify_version_seal(namespace, name, version, seal),
            None => self.unsealed,
        }
    }
}

/// The newest version of every prefix in the namespace (metadata only), as far as `trust`
/// counts them.
pub async fn read_newest_versions(
    secrets: &Api<Secret>,
    trust: VersionTrust<'_>,
) -> Result<NewestVersions, kube::Error> {
    let listed = secrets
        .list_metadata(
            &ListParams::default().labels(&format!("{SECRET_KIND_LABEL}={VERSIONED_SECRET_KIND}")),
        )
        .await?
        .items;
    let namespace = secrets_namespace(secrets);
    Ok(newest_versions(
        listed.iter().map(|m| &m.metadata),
        |name, version, seal| trust.counts(&namespace, name, version, seal),
    ))
}

fn secrets_namespace(secrets: &Api<Secret>) -> String {
    secrets.namespace().unwrap_or_default().to_owned()
}

/// Writes `<name>-v<N+1>` unless the newest version holds the same content; a concurrent
/// writer that took N+1 first makes this one look again (its version may hold the same
/// content) and retry with the next number (nothing is lost). A foreign Secret squatting a
/// version's name is skipped over.
async fn write_versioned(
    secrets: &Api<Secret>,
    spec: &SecretSpec,
    qjob: &QuarksJob,
    trust: VersionTrust<'_>,
    known: &mut Option<NewestVersions>,
) -> Result<String, kube::Error> {
    let key = trust.key;
    let versions = match known {
        Some(versions) => versions,
        None => known.insert(read_newest_versions(secrets, trust).await?),
    };
    let namespace = secrets_namespace(secrets);
    let mut last_error = None;
    let mut taken = 0u64;
    for _ in 0..VERSION_ATTEMPTS {
        let newest = versions.get(&spec.name).copied().unwrap_or(0).max(taken);
        // Only a version the operator made can hold the same content already.
        if newest > 0 && versions.get(&spec.name) == Some(&newest) {
            let name = versioned_name(&spec.name, newest);
            if let Some(current) = secrets.get_opt(&name).await?
                && files::same_content(&current, spec)
            {
                return Ok(name);
            }
        }
        let Some(version) = newest.checked_add(1) else {
            return Err(kube::Error::Service(
                format!("versioned secret {} has no next version number", spec.name).into(),
            ));
        };
        let seal = key.version_seal(&namespace, &versioned_name(&spec.name, version), version);
        let secret = files::versioned_secret(spec, qjob, version, &seal);
        match secrets
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &secret,
            )
            .await
        {
            Ok(_) => {
                versions.insert(spec.name.clone(), version);
                return Ok(versioned_name(&spec.name, version));
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                last_error = Some(kube::Error::Api(e));
                // Someone took this number: another writer (look again, its version may hold
                // the same content) or a foreign Secret (never counted: skip past it).
                *versions = read_newest_versions(secrets, trust).await?;
                taken = version;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| kube::Error::Service("no version could be written".into())))
}

/// Staging Secrets (by uid) already rejected and reported by this process: a forgery left in
/// place is reported once, not at every reconcile. Bounded: when full it starts over (at worst
/// a forgery is reported again).
#[derive(Default)]
pub struct RejectedHandOvers {
    uids: Mutex<HashSet<String>>,
}

impl RejectedHandOvers {
    const CAPACITY: usize = 10_000;

    pub fn seen(&self, secret: &Secret) -> bool {
        let uids = self.uids.lock().unwrap_or_else(|p| p.into_inner());
        secret
            .metadata
            .uid
            .as_ref()
            .is_some_and(|uid| uids.contains(uid))
    }

    pub fn remember(&self, secret: &Secret) {
        let mut uids = self.uids.lock().unwrap_or_else(|p| p.into_inner());
        if uids.len() >= Self::CAPACITY {
            uids.clear();
        }
        if let Some(uid) = &secret.metadata.uid {
            uids.insert(uid.clone());
        }
    }
}

/// The rules of the output helper's ClusterRole (`--persist-output-cluster-role`, the chart's
/// `persistOutputClusterRole`), which a RoleBinding in each monitored namespace grants the
/// helper's ServiceAccount there.
pub fn helper_cluster_role(name: &str) -> ClusterRole {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
        "rules": [
            // Hand the output over: create staging Secrets. No get/list/update: it can read
            // and change no other Secret.
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            // See its own pod's containers terminate (a watch on its own pod by name).
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        ],
    }))
    .expect("a ClusterRole")
}

/// Per namespace, once per process: the helper's ServiceAccount and a RoleBinding granting it
/// the helper's ClusterRole ([`helper_cluster_role`]) there. The operator writes no Role: a
/// RoleBinding to that ClusterRole needs only `bind` on it (kube-apiserver's escalation
/// check), not the rights it grants.
pub struct HelperIdentity {
    cluster_role: String,
    ready: Mutex<HashSet<String>>,
}

impl Default for HelperIdentity {
    fn default() -> Self {
        HelperIdentity::new(DEFAULT_HELPER_CLUSTER_ROLE.to_owned())
    }
}

impl HelperIdentity {
    /// `cluster_role`: the helper's ClusterRole (`--persist-output-cluster-role`).
    pub fn new(cluster_role: String) -> Self {
        HelperIdentity {
            cluster_role,
            ready: Mutex::default(),
        }
    }

    pub async fn ensure(&self, client: &kube::Client, namespace: &str) -> Result<(), kube::Error> {
        if self
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(namespace)
        {
            return Ok(());
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let name = HELPER_SERVICE_ACCOUNT;
        let sa = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}});
        Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .patch(name, &params, &Patch::Apply(&sa))
            .await?;
        let role_ref = serde_json::json!({
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": self.cluster_role,
        });
        let bindings = Api::<RoleBinding>::namespaced(client.clone(), namespace);
        // roleRef is immutable: a binding to something else (the Role an earlier version of
        // the operator or of the chart wrote) is replaced.
        if let Some(existing) = bindings.get_opt(name).await?
            && serde_json::to_value(&existing.role_ref).ok().as_ref() != Some(&role_ref)
        {
            tracing::info!(
                namespace,
                binding = name,
                from = ?existing.role_ref,
                to = %self.cluster_role,
                "replacing the output helper's RoleBinding (roleRef cannot change)"
            );
            match bindings.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let binding = serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
            "roleRef": role_ref,
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        });
        bindings
            .patch(name, &params, &Patch::Apply(&binding))
            .await?;
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(namespace.to_owned());
        Ok(())
    }
}
