//! PURE: the decisions of consuming a staging Secret, apart from its reads and writes
//! ([`super::write`]): which files of the manifest are mapped in `outputMap` and what the
//! output policy is asked for each ([`OutputInput`]), the policy's result and the host's
//! validation → a [`FileOutcome`] (the Secrets to write, or the [`OutputProblem`] why none),
//! the exact Secret objects to write, and the status record of each file. Knows no API client.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::problem::OutputProblem;
use super::staging::StagingManifest;
use super::validate::validate_secret_spec;
use crate::crd::{Output, OutputRecord, QuarksJob, SecretOptions};
use crate::names::job::{QJOB_NAME_LABEL, qjob_name_label_value};
use crate::names::versioned::{
    SECRET_KIND_LABEL, SECRET_VERSION_LABEL, SOURCE_DESCRIPTION_ANNOTATION,
    VERSION_SEAL_ANNOTATION, VERSIONED_SECRET_KIND, versioned_name,
};
use crate::policy::PolicyError;
use crate::policy::contract::{FileOptions, OutputInput, OutputOptions, OutputResult, SecretSpec};

/// One mapped file of a staging Secret and what to do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedFile {
    pub container: String,
    pub file: String,
    pub plan: FilePlan,
}

/// Ask the output policy, or report without asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilePlan {
    /// The file was handed over: ask the output policy with this input.
    Transform(Box<OutputInput>),
    /// The file was not handed over (missing, too large, unreadable, unfinished).
    Report(OutputProblem),
}

/// What one file comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    /// Write these Secrets (all validated).
    Write(Vec<SecretSpec>),
    /// Write nothing, for this reason.
    Nothing(OutputProblem),
}

/// The Job that owns a staging Secret (the `job` of its records); empty if none.
pub fn staging_job(staging_secret: &Secret) -> String {
    staging_secret
        .owner_references()
        .iter()
        .find(|o| o.kind == "Job")
        .map(|o| o.name.clone())
        .unwrap_or_default()
}

/// The files of a manifest that `outputMap` maps for its container, in manifest order; files
/// it does not map are skipped. `data` holds the handed-over bytes by key.
pub fn staged_files(
    qjob: &QuarksJob,
    manifest: &StagingManifest,
    mut data: BTreeMap<String, Vec<u8>>,
) -> Vec<StagedFile> {
    let output = qjob.spec.output.clone().unwrap_or_default();
    let Some(mapped) = output.output_map.get(&manifest.container) else {
        return Vec::new();
    };
    let remote_id = remote_id(qjob, &manifest.container);
    let mut staged = Vec::new();
    for (file_name, state) in &manifest.files {
        let Some(options) = mapped.get(file_name) else {
            continue;
        };
        let plan = match state.handed_over(&manifest.container, file_name, manifest.exit_code) {
            Ok(key) => {
                let content = data.remove(key).unwrap_or_default();
                let input = output_input(qjob, &output, manifest, file_name, options, content);
                FilePlan::Transform(Box::new(OutputInput {
                    remote_id: remote_id.clone(),
                    ..input
                }))
            }
            Err(problem) => FilePlan::Report(problem),
        };
        staged.push(StagedFile {
            container: manifest.container.clone(),
            file: file_name.clone(),
            plan,
        });
    }
    staged
}

/// What the output policy is asked for one handed-over file (`remote_id` left empty).
fn output_input(
    qjob: &QuarksJob,
    output: &Output,
    manifest: &StagingManifest,
    file_name: &str,
    options: &SecretOptions,
    content: Vec<u8>,
) -> OutputInput {
    OutputInput {
        quarks_job_name: qjob.name_any(),
        namespace: qjob.namespace().unwrap_or_default(),
        output: OutputOptions {
            output_type: output.output_type.as_str().to_owned(),
            secret_labels: output.secret_labels.clone(),
            write_on_failure: output.write_on_failure,
        },
        container: manifest.container.clone(),
        remote_id: None,
        file_name: file_name.to_owned(),
        file: FileOptions {
            name: options.name.clone(),
            secret_labels: options.secret_labels.clone(),
            secret_annotations: options.secret_annotations.clone(),
            versioned: options.versioned,
            persistence_method: options.persistence_method,
        },
        content: content.into(),
        exit_code: manifest.exit_code,
    }
}

/// The value of the container's `REMOTE_ID` environment variable in the template, if literal.
pub fn remote_id(qjob: &QuarksJob, container: &str) -> Option<String> {
    qjob.spec
        .template
        .pod_spec()
        .ok()??
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

/// The policy's answer, checked: no Secret asked for, or one the host refuses (all or nothing
/// per file), writes nothing.
pub fn outcome(result: Result<OutputResult, PolicyError>) -> FileOutcome {
    let result = match result {
        Ok(result) => result,
        Err(error) => return FileOutcome::Nothing(OutputProblem::from(&error)),
    };
    if result.secrets.len() > MAX_SECRETS_PER_FILE {
        return FileOutcome::Nothing(OutputProblem::TooManySecrets {
            count: result.secrets.len(),
            limit: MAX_SECRETS_PER_FILE,
            per: "output file",
        });
    }
    if result.secrets.is_empty() {
        let reasons = result
            .reasons
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        return FileOutcome::Nothing(OutputProblem::NothingWritten { reasons });
    }
    match result
        .secrets
        .iter()
        .find_map(|s| validate_secret_spec(s).err())
    {
        Some(problem) => FileOutcome::Nothing(OutputProblem::InvalidOutput(problem)),
        None => FileOutcome::Write(result.secrets),
    }
}

/// The most Secrets one output file may become (a fan-out of thousands of keys would be as
/// many API writes, and as many objects in the namespace).
pub const MAX_SECRETS_PER_FILE: usize = 500;
/// The most Secrets one run (one Job, all its pods and containers) may write.
pub const MAX_SECRETS_PER_RUN: usize = 2000;

/// Whether the Secrets of a file fit what is left of its run's budget (`written`: the run's
/// Secrets so far); the problem when not (nothing is written for the file then).
pub fn within_run_budget(count: usize, written: usize) -> Result<(), OutputProblem> {
    if written.saturating_add(count) > MAX_SECRETS_PER_RUN {
        return Err(OutputProblem::TooManySecrets {
            count: written.saturating_add(count),
            limit: MAX_SECRETS_PER_RUN,
            per: "run",
        });
    }
    Ok(())
}

/// The status record of one file: the Secrets written, or why none.
pub fn record(
    job: &str,
    container: &str,
    file: &str,
    secrets: Vec<String>,
    problem: Option<&OutputProblem>,
) -> OutputRecord {
    OutputRecord {
        job: job.to_owned(),
        container: container.to_owned(),
        file: file.to_owned(),
        secrets,
        reason: problem.map(|p| p.code().to_owned()),
        error: problem.map(|p| p.to_string()),
    }
}

/// A Secret's data as the API types hold it.
pub fn secret_data(spec: &SecretSpec) -> BTreeMap<String, ByteString> {
    spec.data
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.0.clone())))
        .collect()
}

/// The labels of an output Secret: the policy's, and the mark of the QuarksJob whose output
/// it is ([`is_output_of`]).
fn output_labels(spec: &SecretSpec, qjob: &QuarksJob) -> BTreeMap<String, String> {
    let mut labels = spec.labels.clone();
    labels.insert(
        QJOB_NAME_LABEL.into(),
        qjob_name_label_value(&qjob.name_any()),
    );
    labels
}

/// Whether an existing Secret is `qjob`'s output, which its runs may overwrite: it carries the
/// QuarksJob's mark, set when the operator created it. (The mark is a label, not an owner
/// reference: output outlives its QuarksJob, and a QuarksJob re-created under the same name
/// keeps writing it. Anyone who may label the Secret could set the mark, but they could write
/// the Secret themselves too.) A Secret without it is someone else's: never written.
pub fn is_output_of(existing: &ObjectMeta, qjob: &QuarksJob) -> bool {
    let Some(labels) = existing.labels.as_ref() else {
        return false;
    };
    // Staging and hand-over Secrets carry the mark too; they are never output.
    labels
        .get(QJOB_NAME_LABEL)
        .is_some_and(|mark| *mark == qjob_name_label_value(&qjob.name_any()))
        && !labels.contains_key(super::staging::STAGING_LABEL)
        && !labels.contains_key(super::handover::HANDOVER_LABEL)
}

/// The plain (overwritten) Secret, as a server-side apply body.
pub fn plain_secret(spec: &SecretSpec, qjob: &QuarksJob) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": spec.name, "labels": output_labels(spec, qjob), "annotations": spec.annotations},
        "type": "Opaque",
        "data": secret_data(spec),
    })
}

/// Version `version` of a versioned secret: `<name>-v<N>`, immutable, labelled with its kind
/// and version, annotated with where it came from and the operator's `seal` of the version,
/// owned (not controlled) by the QuarksJob.
pub fn versioned_secret(spec: &SecretSpec, qjob: &QuarksJob, version: u64, seal: &str) -> Secret {
    let owner = OwnerReference {
        api_version: QuarksJob::api_version(&()).into_owned(),
        kind: QuarksJob::kind(&()).into_owned(),
        name: qjob.name_any(),
        uid: qjob.uid().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    };
    let mut labels = output_labels(spec, qjob);
    labels.insert(SECRET_KIND_LABEL.into(), VERSIONED_SECRET_KIND.into());
    labels.insert(SECRET_VERSION_LABEL.into(), version.to_string());
    let mut annotations = spec.annotations.clone();
    annotations.insert(VERSION_SEAL_ANNOTATION.into(), seal.to_owned());
    annotations.insert(
        SOURCE_DESCRIPTION_ANNOTATION.into(),
        format!(
            "created by quarks-job from the output of QuarksJob {}",
            qjob.name_any()
        ),
    );
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(versioned_name(&spec.name, version)),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(secret_data(spec)),
        immutable: Some(true),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// Same data, and the same labels and annotations apart from the operator's own.
pub fn same_content(current: &Secret, spec: &SecretSpec) -> bool {
    let mut labels = current.labels().clone();
    labels.remove(SECRET_KIND_LABEL);
    labels.remove(SECRET_VERSION_LABEL);
    labels.remove(QJOB_NAME_LABEL);
    let mut annotations = current.annotations().clone();
    annotations.remove(SOURCE_DESCRIPTION_ANNOTATION);
    annotations.remove(VERSION_SEAL_ANNOTATION);
    current.data.clone().unwrap_or_default() == secret_data(spec)
        && labels == spec.labels
        && annotations == spec.annotations
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case of `fixtures/files.yaml`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Case {
        name: String,
        output_map: serde_json::Value,
        /// Container → literal environment variables of the template.
        #[serde(default)]
        env: BTreeMap<String, BTreeMap<String, String>>,
        manifest: serde_json::Value,
        #[serde(default)]
        data: BTreeMap<String, String>,
        /// The policy's answer per file.
        #[serde(default)]
        results: BTreeMap<String, OutputResult>,
        /// Files whose policy call traps, with the trap's message.
        #[serde(default)]
        policy_traps: BTreeMap<String, String>,
        expect: Vec<Expected>,
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Expected {
        file: String,
        /// A subset of the policy's input (kebab-case, as policies see it), `{}` for any;
        /// none: the policy is not asked.
        #[serde(default)]
        input: Option<serde_json::Value>,
        /// Names of the Secrets to write.
        #[serde(default)]
        write: Vec<String>,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        error: Option<String>,
    }

    fn qjob(case: &Case) -> QuarksJob {
        let containers: Vec<serde_json::Value> = case
            .env
            .iter()
            .map(|(name, env)| {
                let env: Vec<_> = env
                    .iter()
                    .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
                    .collect();
                serde_json::json!({"name": name, "image": "busybox", "env": env})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
            "metadata": {"name": "q", "namespace": "ns", "uid": "u-1"},
            "spec": {
                "trigger": {"strategy": "manual"},
                "template": {"spec": {"template": {"spec": {"containers": containers}}}},
                "output": {"outputMap": case.output_map},
            },
        }))
        .unwrap()
    }

    #[test]
    fn staged_files_and_outcomes_table() {
        let cases: Vec<Case> =
            serde_yaml::from_str(include_str!("fixtures/files.yaml")).expect("fixture");
        assert!(cases.len() >= 6);
        for case in cases {
            let mut manifest = case.manifest.clone();
            manifest["quarks-job"] = "q".into();
            manifest["pod"] = "q-1-abcde".into();
            let manifest: StagingManifest = serde_json::from_value(manifest).unwrap();
            let data = case
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .collect();
            let staged = staged_files(&qjob(&case), &manifest, data);
            let files: Vec<&str> = staged.iter().map(|s| s.file.as_str()).collect();
            let expected: Vec<&str> = case.expect.iter().map(|e| e.file.as_str()).collect();
            assert_eq!(files, expected, "case {:?}", case.name);
            for (file, expect) in staged.into_iter().zip(&case.expect) {
                let what = format!("case {:?}, {}", case.name, file.file);
                assert_eq!(file.container, manifest.container, "{what}");
                let outcome = match file.plan {
                    FilePlan::Report(problem) => {
                        assert_eq!(expect.input, None, "{what}: asked no policy");
                        FileOutcome::Nothing(problem)
                    }
                    FilePlan::Transform(input) => {
                        let json = serde_json::to_value(&*input).unwrap();
                        let subset = expect.input.as_ref().expect("an expected input");
                        let mismatch = crate::subset::subset_mismatch(subset, &json, "");
                        assert_eq!(mismatch, None, "{what}: {json}");
                        outcome(match case.policy_traps.get(&file.file) {
                            Some(message) => Err(PolicyError::Trap(message.clone())),
                            None => Ok(case.results[&file.file].clone()),
                        })
                    }
                };
                let (written, problem) = match &outcome {
                    FileOutcome::Write(specs) => {
                        (specs.iter().map(|s| s.name.clone()).collect(), None)
                    }
                    FileOutcome::Nothing(problem) => (vec![], Some(problem)),
                };
                assert_eq!(written, expect.write, "{what}");
                assert_eq!(
                    problem.map(|p| p.code()),
                    expect.reason.as_deref(),
                    "{what}"
                );
                if let Some(error) = &expect.error {
                    assert_eq!(
                        problem.map(|p| p.to_string()).as_ref(),
                        Some(error),
                        "{what}"
                    );
                }
                let record = record("q-1", &file.container, &file.file, written, problem);
                assert_eq!(record.reason.as_deref(), expect.reason.as_deref(), "{what}");
                assert_eq!(record.error, problem.map(|p| p.to_string()), "{what}");
            }
        }
    }

    #[test]
    fn the_owning_job_names_the_records_of_a_staging_secret() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "q-1", "uid": "u"}]},
        }))
        .unwrap();
        assert_eq!(staging_job(&secret), "q-1");
        assert_eq!(staging_job(&Secret::default()), "");
    }

    #[test]
    fn a_versioned_secret_is_immutable_labelled_and_owned_and_matches_its_spec() {
        let case: QuarksJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
            "metadata": {"name": "q", "namespace": "ns", "uid": "u-1"},
            "spec": {"trigger": {"strategy": "manual"}, "template": {"spec": {"template": {}}}},
        }))
        .unwrap();
        let spec = SecretSpec {
            name: "foo".into(),
            data: BTreeMap::from([("k".into(), "v".into())]),
            labels: BTreeMap::from([("team".into(), "a".into())]),
            annotations: BTreeMap::new(),
            versioned: true,
        };
        let secret = versioned_secret(&spec, &case, 3, "the-seal");
        assert_eq!(secret.metadata.name.as_deref(), Some("foo-v3"));
        assert_eq!(secret.annotations()[VERSION_SEAL_ANNOTATION], "the-seal");
        assert!(is_output_of(&secret.metadata, &case));
        assert_eq!(secret.immutable, Some(true));
        assert_eq!(secret.labels()[SECRET_VERSION_LABEL], "3");
        assert_eq!(secret.labels()[SECRET_KIND_LABEL], VERSIONED_SECRET_KIND);
        let owner = &secret.owner_references()[0];
        assert_eq!((owner.name.as_str(), owner.controller), ("q", Some(false)));
        assert!(same_content(&secret, &spec));
        let mut changed = spec.clone();
        changed.data.insert("k".into(), "w".into());
        assert!(!same_content(&secret, &changed));
    }

    #[test]
    fn only_a_secret_with_the_quarks_jobs_mark_is_its_output() {
        let qjob = |name: &str| -> QuarksJob {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
                "metadata": {"name": name, "namespace": "ns", "uid": "u-1"},
                "spec": {"trigger": {"strategy": "manual"}, "template": {"spec": {"template": {}}}},
            }))
            .unwrap()
        };
        let spec = SecretSpec {
            name: "db-credentials".into(),
            data: BTreeMap::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            versioned: false,
        };
        let written: Secret = serde_json::from_value(plain_secret(&spec, &qjob("app"))).unwrap();
        assert!(is_output_of(&written.metadata, &qjob("app")));
        assert!(!is_output_of(&written.metadata, &qjob("evil")));
        // Made with kubectl: nobody's output.
        assert!(!is_output_of(&ObjectMeta::default(), &qjob("app")));
        // The run's own hand-over Secret is not output either.
        let mut handover = written.metadata.clone();
        handover
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(super::super::handover::HANDOVER_LABEL.into(), "true".into());
        assert!(!is_output_of(&handover, &qjob("app")));
    }

    #[test]
    fn a_file_or_a_run_with_too_many_secrets_writes_nothing() {
        let spec = |i: usize| SecretSpec {
            name: format!("s-{i}"),
            data: BTreeMap::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            versioned: false,
        };
        let result = |n: usize| OutputResult {
            secrets: (0..n).map(spec).collect(),
            reasons: Vec::new(),
        };
        assert!(matches!(
            outcome(Ok(result(MAX_SECRETS_PER_FILE))),
            FileOutcome::Write(_)
        ));
        let FileOutcome::Nothing(problem) = outcome(Ok(result(MAX_SECRETS_PER_FILE + 1))) else {
            panic!("over the limit")
        };
        assert_eq!(problem.code(), "TooManySecrets");
        assert!(problem.message().contains("output file"), "{problem}");
        assert_eq!(within_run_budget(10, MAX_SECRETS_PER_RUN - 10), Ok(()));
        let problem = within_run_budget(11, MAX_SECRETS_PER_RUN - 10).unwrap_err();
        assert!(problem.message().contains("one run"), "{problem}");
    }
}
