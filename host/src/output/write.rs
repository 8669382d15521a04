//! The operator's side of output: consume the staging Secrets of a QuarksJob's runs, turn each
//! file into Secret specs with the output policy, validate them, and write them — overwritten,
//! or as a new immutable version. A bad file writes nothing and is reported (status + Event);
//! the others are written. Also sets up the helper's least-privilege identity per namespace.
//! Secret values never reach logs, Events or status.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::pod::HELPER_SERVICE_ACCOUNT;
use super::staging::{self, FileState, STAGING_LABEL};
use super::validate::validate_secret_spec;
use crate::crd::{OutputRecord, QuarksJob};
use crate::names::FIELD_MANAGER;
use crate::names::job::{QJOB_NAME_LABEL, qjob_name_label_value};
use crate::names::versioned::{
    SECRET_KIND_LABEL, SECRET_VERSION_LABEL, SOURCE_DESCRIPTION_ANNOTATION, VERSIONED_SECRET_KIND,
    newest_versions, versioned_name,
};
use crate::policy::contract::{FileOptions, OutputInput, OutputOptions, SecretSpec};

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
    let job = staging_secret
        .owner_references()
        .iter()
        .find(|o| o.kind == "Job")
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let mut records = Vec::new();
    let mut versions = None;
    match staging::parse(staging_secret) {
        Err(problem) => records.push(OutputRecord {
            job: job.clone(),
            container: String::new(),
            file: String::new(),
            secrets: vec![],
            error: Some(format!("InvalidStaging: {problem}")),
        }),
        Ok((manifest, mut data)) => {
            let output = qjob.spec.output.clone().unwrap_or_default();
            let files = output
                .output_map
                .get(&manifest.container)
                .cloned()
                .unwrap_or_default();
            let remote_id = remote_id(qjob, &manifest.container);
            for (file_name, state) in &manifest.files {
                let mut record = OutputRecord {
                    job: job.clone(),
                    container: manifest.container.clone(),
                    file: file_name.clone(),
                    secrets: vec![],
                    error: None,
                };
                let Some(options) = files.get(file_name) else {
                    continue;
                };
                let content = match state {
                    FileState::Present { key } => data.remove(key).unwrap_or_default(),
                    FileState::Missing => {
                        record.error = Some(if manifest.exit_code == 0 {
                            format!(
                                "FileMissing: container {} exited 0 without writing {file_name}",
                                manifest.container
                            )
                        } else {
                            format!(
                                "FileMissing: container {} exited {} without writing {file_name}",
                                manifest.container, manifest.exit_code
                            )
                        });
                        records.push(record);
                        continue;
                    }
                    FileState::TooLarge { size } => {
                        record.error = Some(format!(
                            "TooLarge: {file_name} has {size} bytes, more than a Secret can hold"
                        ));
                        records.push(record);
                        continue;
                    }
                    FileState::Unreadable { reason } => {
                        record.error = Some(format!("Unreadable: {reason}"));
                        records.push(record);
                        continue;
                    }
                    FileState::Unfinished { deadline_seconds } => {
                        record.error = Some(format!(
                            "Unfinished: container {} was still running when the output helper's deadline of {deadline_seconds} s passed; nothing written for {file_name}",
                            manifest.container
                        ));
                        records.push(record);
                        continue;
                    }
                };
                let input = OutputInput {
                    quarks_job_name: qjob.name_any(),
                    namespace: namespace.clone(),
                    output: OutputOptions {
                        output_type: output.output_type.as_str().to_owned(),
                        secret_labels: output.secret_labels.clone(),
                        write_on_failure: output.write_on_failure,
                    },
                    container: manifest.container.clone(),
                    remote_id: remote_id.clone(),
                    file_name: file_name.clone(),
                    file: FileOptions {
                        name: options.name.clone(),
                        secret_labels: options.secret_labels.clone(),
                        secret_annotations: options.secret_annotations.clone(),
                        versioned: options.versioned,
                        persistence_method: options.persistence_method,
                    },
                    content: content.into(),
                    exit_code: manifest.exit_code,
                };
                match policy.transform(input).await {
                    Err(error) => record.error = Some(format!("{}: {error}", error.code())),
                    Ok(result) => {
                        if result.secrets.is_empty() {
                            let why = result
                                .reasons
                                .iter()
                                .map(|r| r.to_string())
                                .collect::<Vec<_>>()
                                .join("; ");
                            record.error = Some(format!("NothingWritten: {why}"));
                        } else if let Some(problem) = result
                            .secrets
                            .iter()
                            .find_map(|s| validate_secret_spec(s).err())
                        {
                            // All or nothing per file: one bad Secret writes none of them.
                            record.error = Some(format!("InvalidOutput: {problem}"));
                        } else {
                            for spec in &result.secrets {
                                let written = if spec.versioned {
                                    write_versioned(&secrets, spec, qjob, &mut versions).await?
                                } else {
                                    write_plain(&secrets, spec).await?
                                };
                                record.secrets.push(written);
                            }
                        }
                    }
                }
                records.push(record);
            }
        }
    }
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

/// The value of the container's `REMOTE_ID` environment variable in the template, if literal.
fn remote_id(qjob: &QuarksJob, container: &str) -> Option<String> {
    qjob.spec
        .template
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == "REMOTE_ID")?
        .value
        .clone()
}

fn secret_data(spec: &SecretSpec) -> BTreeMap<String, ByteString> {
    spec.data
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.0.clone())))
        .collect()
}

/// Overwrites (server-side apply, one field manager): keys of an earlier run that this run
/// does not write are removed, as "output of previous runs is overwritten" says.
async fn write_plain(secrets: &Api<Secret>, spec: &SecretSpec) -> Result<String, kube::Error> {
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": spec.name, "labels": spec.labels, "annotations": spec.annotations},
        "type": "Opaque",
        "data": secret_data(spec),
    });
    secrets
        .patch(
            &spec.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
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
    let owner = OwnerReference {
        api_version: QuarksJob::api_version(&()).into_owned(),
        kind: QuarksJob::kind(&()).into_owned(),
        name: qjob.name_any(),
        uid: qjob.uid().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    };
    let mut last_error = None;
    for _ in 0..VERSION_ATTEMPTS {
        let newest = versions.get(&spec.name).copied().unwrap_or(0);
        if newest > 0 {
            let name = versioned_name(&spec.name, newest);
            if let Some(current) = secrets.get_opt(&name).await?
                && same_content(&current, spec)
            {
                return Ok(name);
            }
        }
        let version = newest + 1;
        let name = versioned_name(&spec.name, version);
        let mut labels = spec.labels.clone();
        labels.insert(SECRET_KIND_LABEL.into(), VERSIONED_SECRET_KIND.into());
        labels.insert(SECRET_VERSION_LABEL.into(), version.to_string());
        let mut annotations = spec.annotations.clone();
        annotations.insert(
            SOURCE_DESCRIPTION_ANNOTATION.into(),
            format!(
                "created by quarks-job from the output of QuarksJob {}",
                qjob.name_any()
            ),
        );
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![owner.clone()]),
                ..Default::default()
            },
            data: Some(secret_data(spec)),
            immutable: Some(true),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
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
                return Ok(name);
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

/// Same data, and the same labels and annotations apart from the versioning ones.
fn same_content(current: &Secret, spec: &SecretSpec) -> bool {
    let mut labels = current.labels().clone();
    labels.remove(SECRET_KIND_LABEL);
    labels.remove(SECRET_VERSION_LABEL);
    let mut annotations = current.annotations().clone();
    annotations.remove(SOURCE_DESCRIPTION_ANNOTATION);
    current.data.clone().unwrap_or_default() == secret_data(spec)
        && labels == spec.labels
        && annotations == spec.annotations
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
