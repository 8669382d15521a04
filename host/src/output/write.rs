//! The operator's side of output, its API reads and writes: consume the staging Secrets of a
//! QuarksJob's runs, ask the output policy for each file (through [`OutputPolicyRunner`]), and
//! write what [`super::files`] decides — overwritten, or as a new immutable version. A bad file writes nothing and is reported (status + Event);
//! the others are written. Also sets up the helper's least-privilege identity per namespace.
//! Secret values never reach logs, Events or status.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::files::{self, FileOutcome, FilePlan, StagedFile};
use super::pod::HELPER_SERVICE_ACCOUNT;
use super::staging::{self, STAGING_LABEL};
use crate::crd::{OutputRecord, QuarksJob};
use crate::names::FIELD_MANAGER;
use crate::names::job::{QJOB_NAME_LABEL, qjob_name_label_value};
use crate::names::versioned::{
    SECRET_KIND_LABEL, VERSIONED_SECRET_KIND, newest_versions, versioned_name,
};
use crate::policy::contract::{OutputInput, SecretSpec};

/// How often a versioned write retries with the next number when another writer took it.
const VERSION_ATTEMPTS: u64 = 8;

/// Staging Secrets waiting for this QuarksJob.
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
    let mut staged = secrets
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
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

/// Consumes one staging Secret: every mapped file → policy → validated Secrets → written.
/// The staging Secret is deleted afterwards, also when files were bad (they are reported).
pub async fn consume(
    client: &kube::Client,
    policy: &impl OutputPolicyRunner,
    qjob: &QuarksJob,
    staging_secret: &Secret,
) -> Result<Vec<OutputRecord>, kube::Error> {
    let namespace = qjob.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let job = files::staging_job(staging_secret);
    let records = match staging::parse(staging_secret) {
        Err(problem) => vec![files::record(&job, "", "", vec![], Some(&problem))],
        Ok((manifest, data)) => {
            let staged = files::staged_files(qjob, &manifest, data);
            write_files(&secrets, policy, qjob, &job, staged).await?
        }
    };
    match secrets
        .delete(&staging_secret.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    Ok(records)
}

/// Asks the policy for each handed-over file and writes what it comes to; one record per file.
async fn write_files(
    secrets: &Api<Secret>,
    policy: &impl OutputPolicyRunner,
    qjob: &QuarksJob,
    job: &str,
    staged: Vec<StagedFile>,
) -> Result<Vec<OutputRecord>, kube::Error> {
    let mut versions = None;
    let mut records = Vec::with_capacity(staged.len());
    for file in staged {
        let outcome = match file.plan {
            FilePlan::Report(problem) => FileOutcome::Nothing(problem),
            FilePlan::Transform(input) => files::outcome(policy.transform(*input).await),
        };
        let mut written = Vec::new();
        let problem = match outcome {
            FileOutcome::Nothing(problem) => Some(problem),
            FileOutcome::Write(specs) => {
                for spec in &specs {
                    written.push(if spec.versioned {
                        write_versioned(secrets, spec, qjob, &mut versions).await?
                    } else {
                        write_plain(secrets, spec).await?
                    });
                }
                None
            }
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

/// Overwrites (server-side apply, one field manager): keys of an earlier run that this run
/// does not write are removed, as "output of previous runs is overwritten" says.
async fn write_plain(secrets: &Api<Secret>, spec: &SecretSpec) -> Result<String, kube::Error> {
    secrets
        .patch(
            &spec.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&files::plain_secret(spec)),
        )
        .await?;
    Ok(spec.name.clone())
}

/// Newest version per prefix in the namespace: read once (metadata only) when a staging Secret
/// first writes a versioned secret, then kept current by its own writes and refreshed when
/// another writer took a version.
type NewestVersions = BTreeMap<String, u64>;

async fn read_newest_versions(secrets: &Api<Secret>) -> Result<NewestVersions, kube::Error> {
    let listed = secrets
        .list_metadata(
            &ListParams::default().labels(&format!("{SECRET_KIND_LABEL}={VERSIONED_SECRET_KIND}")),
        )
        .await?
        .items;
    let metadata_only: Vec<Secret> = listed
        .into_iter()
        .map(|m| Secret {
            metadata: m.metadata,
            ..Default::default()
        })
        .collect();
    Ok(newest_versions(&metadata_only))
}

/// Writes `<name>-v<N+1>` unless the newest version holds the same content; a concurrent
/// writer that took N+1 first makes this one look again (its version may hold the same
/// content) and retry with the next number (nothing is lost).
async fn write_versioned(
    secrets: &Api<Secret>,
    spec: &SecretSpec,
    qjob: &QuarksJob,
    known: &mut Option<NewestVersions>,
) -> Result<String, kube::Error> {
    let versions = match known {
        Some(versions) => versions,
        None => known.insert(read_newest_versions(secrets).await?),
    };
    let mut last_error = None;
    for _ in 0..VERSION_ATTEMPTS {
        let newest = versions.get(&spec.name).copied().unwrap_or(0);
        if newest > 0 {
            let name = versioned_name(&spec.name, newest);
            if let Some(current) = secrets.get_opt(&name).await?
                && files::same_content(&current, spec)
            {
                return Ok(name);
            }
        }
        let version = newest + 1;
        let secret = files::versioned_secret(spec, qjob, version);
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
                // Someone else wrote this version: look again (at least this one exists).
                *versions = read_newest_versions(secrets).await?;
                let seen = versions.entry(spec.name.clone()).or_insert(version);
                *seen = (*seen).max(version);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| kube::Error::Service("no version could be written".into())))
}

/// Per namespace, once per process: the helper's ServiceAccount, a Role that may only create
/// Secrets and read Pods (to see its own pod's containers finish), and the RoleBinding.
#[derive(Default)]
pub struct HelperIdentity {
    ready: Mutex<HashSet<String>>,
}

impl HelperIdentity {
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
        let role = serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
            "rules": [
                // Hand the output over: create staging Secrets. No get/list/update: it can read
                // and change no other Secret.
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
                // See its own pod's containers terminate (a watch on its own pod by name).
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            ],
        });
        Api::<Role>::namespaced(client.clone(), namespace)
            .patch(name, &params, &Patch::Apply(&role))
            .await?;
        let binding = serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        });
        Api::<RoleBinding>::namespaced(client.clone(), namespace)
            .patch(name, &params, &Patch::Apply(&binding))
            .await?;
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(namespace.to_owned());
        Ok(())
    }
}
