//! The `batch/v1` Job of one run of a QuarksJob (spec.md §3), and reading a run back from a Job.
//!
//! Owns: what a run's Job looks like — its deterministic name, owner reference, `qjob-name`
//! labels, copied template metadata, the run annotations that let a restarted operator adopt a
//! Job it created but never recorded, and versioned-secret references resolved to the newest
//! version. Must not: create or look up anything (the caller passes the newest versions it
//! listed), or decide whether a run starts (that is the trigger policy's decision).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::digest::is_config_digest;
use super::references::rewrite_versioned_references;
use crate::crd::{QuarksJob, Strategy};
use crate::names::job::{QJOB_NAME_LABEL, job_name, qjob_name_label_value};
use crate::output::pod::{HelperSpec, add_output_transport};

pub use crate::names::job::{
    CONFIG_DIGEST_ANNOTATION, RUN_ANNOTATION, TRIGGER_POLICY_ANNOTATION, WRITE_STRATEGY_ANNOTATION,
};

/// What was decided for one run: everything the status records about it, carried on the Job so
/// the record survives a crash between creating the Job and writing status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunPlan {
    /// The run number (the Job name's suffix).
    pub run: u64,
    /// Strategy to write back to `spec.trigger.strategy` once the Job exists, if any.
    pub write_strategy: Option<Strategy>,
    /// Digest of the referenced config content (see [`super::digest::config_digest`]).
    pub config_digest: Option<String>,
    /// Digest of the trigger policy module that decided this run.
    pub trigger_policy: String,
}

/// Why a QuarksJob cannot be turned into a Job. Each names what the user (or the API server)
/// left out, so it can go into a condition and an Event as is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// Objects read from the API always have a name; one without is not from the API.
    #[error("QuarksJob has no metadata.name")]
    MissingName,
    /// Jobs are namespaced and created next to their QuarksJob.
    #[error("QuarksJob {name} has no metadata.namespace")]
    MissingNamespace {
        /// The QuarksJob's name.
        name: String,
    },
    /// The owner reference needs the uid, so that the Job is garbage-collected with this very
    /// QuarksJob and not adopted by a later one of the same name.
    #[error("QuarksJob {name} has no metadata.uid")]
    MissingUid {
        /// The QuarksJob's name.
        name: String,
    },
    /// The cached template does not decode (it did when the QuarksJob was read).
    #[error("QuarksJob {name}: its cached spec.template does not decode: {error}")]
    TemplateUndecodable {
        /// The QuarksJob's name.
        name: String,
        /// serde_json's message.
        error: String,
    },
    /// `spec.template.spec` is optional in the JobTemplateSpec schema but a Job needs it.
    #[error("QuarksJob {name} has no spec.template.spec (the Job spec)")]
    MissingJobSpec {
        /// The QuarksJob's name.
        name: String,
    },
    /// `spec.template.spec.template.spec` is optional in the schema but a pod needs it.
    #[error("QuarksJob {name} has no spec.template.spec.template.spec (the pod spec)")]
    MissingPodSpec {
        /// The QuarksJob's name.
        name: String,
    },
}

/// name = job_name(qjob, run); namespace of the qjob; ownerReference to the QuarksJob
/// (apiVersion quarks.cloudfoundry.org/v1alpha1, kind QuarksJob, controller=true,
/// blockOwnerDeletion=true); labels = template.metadata.labels + QJOB_NAME_LABEL on the Job AND on
/// the pod template; annotations = template.metadata.annotations + the four run annotations;
/// spec = template.spec with versioned secret references rewritten (rewrite_versioned_references).
///
/// Where the template sets one of our labels or annotations itself, ours wins: the operator
/// finds its Jobs and recovers runs by them. Other template metadata (name, namespace, owner
/// references, finalizers) is not copied: the Job's identity is the operator's to decide.
pub fn build_job(
    qjob: &QuarksJob,
    plan: &RunPlan,
    newest: &BTreeMap<String, u64>,
) -> Result<Job, BuildError> {
    let name = qjob.metadata.name.clone().ok_or(BuildError::MissingName)?;
    let namespace = qjob
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| BuildError::MissingNamespace { name: name.clone() })?;
    let uid = qjob
        .metadata
        .uid
        .clone()
        .ok_or_else(|| BuildError::MissingUid { name: name.clone() })?;

    let template = qjob
        .spec
        .template
        .job()
        .map_err(|error| BuildError::TemplateUndecodable {
            name: name.clone(),
            error: error.to_string(),
        })?;
    let mut spec = template
        .spec
        .ok_or_else(|| BuildError::MissingJobSpec { name: name.clone() })?;
    let pod_spec = spec
        .template
        .spec
        .as_mut()
        .ok_or_else(|| BuildError::MissingPodSpec { name: name.clone() })?;
    rewrite_versioned_references(pod_spec, newest);

    let label_value = qjob_name_label_value(&name);
    spec.template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(QJOB_NAME_LABEL.to_owned(), label_value.clone());

    let template_meta = template.metadata.as_ref();
    let mut labels = template_meta
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(QJOB_NAME_LABEL.to_owned(), label_value);
    let mut annotations = template_meta
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.extend(run_annotations(plan));

    let owner = OwnerReference {
        api_version: QuarksJob::api_version(&()).into_owned(),
        kind: QuarksJob::kind(&()).into_owned(),
        name: name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, plan.run)),
            namespace: Some(namespace),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// The Job of a run as it is created: [`build_job`], and for a QuarksJob with output the
/// output volumes and the helper container added to its pod (`output::pod`).
pub fn run_job(
    qjob: &QuarksJob,
    plan: &RunPlan,
    newest: &BTreeMap<String, u64>,
    helper: &HelperSpec,
) -> Result<Job, BuildError> {
    let mut job = build_job(qjob, plan, newest)?;
    if let Some(output) = &qjob.spec.output
        && let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut())
    {
        add_output_transport(pod, &qjob.name_any(), output, helper);
    }
    Ok(job)
}

/// The run annotations of `plan`; optional fields are left out rather than written empty, so
/// that "no strategy written back" and "no digest" read back as `None`.
fn run_annotations(plan: &RunPlan) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        (RUN_ANNOTATION.to_owned(), plan.run.to_string()),
        (
            TRIGGER_POLICY_ANNOTATION.to_owned(),
            plan.trigger_policy.clone(),
        ),
    ]);
    if let Some(strategy) = plan.write_strategy {
        annotations.insert(
            WRITE_STRATEGY_ANNOTATION.to_owned(),
            strategy.as_str().to_owned(),
        );
    }
    if let Some(digest) = &plan.config_digest {
        annotations.insert(CONFIG_DIGEST_ANNOTATION.to_owned(), digest.clone());
    }
    annotations
}

/// Reads a RunPlan back from a Job's annotations (crash recovery: a Job created but not yet
/// recorded in status is adopted from these). None when the annotations are missing/garbled.
///
/// Garbled means anything [`build_job`] would not have written: a run number that is not a
/// canonical decimal, an empty trigger policy, an unknown strategy, a digest of the wrong shape.
/// Adopting a half-understood Job would record a wrong run, so it is refused as a whole.
pub fn run_plan_of(job: &Job) -> Option<RunPlan> {
    let annotations = job.metadata.annotations.as_ref()?;
    let run_text = annotations.get(RUN_ANNOTATION)?;
    if run_text.starts_with('0') || !run_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let run = run_text.parse().ok()?;
    let trigger_policy = annotations
        .get(TRIGGER_POLICY_ANNOTATION)
        .filter(|p| !p.is_empty())?
        .clone();
    let write_strategy = match annotations.get(WRITE_STRATEGY_ANNOTATION) {
        None => None,
        Some(value) => Some(parse_strategy(value)?),
    };
    let config_digest = match annotations.get(CONFIG_DIGEST_ANNOTATION) {
        None => None,
        Some(value) if is_config_digest(value) => Some(value.clone()),
        Some(_) => return None,
    };
    Some(RunPlan {
        run,
        write_strategy,
        config_digest,
        trigger_policy,
    })
}

/// A strategy as spelled in manifests and in [`WRITE_STRATEGY_ANNOTATION`].
pub fn parse_strategy(value: &str) -> Option<Strategy> {
    match value {
        "manual" => Some(Strategy::Manual),
        "now" => Some(Strategy::Now),
        "once" => Some(Strategy::Once),
        "done" => Some(Strategy::Done),
        _ => None,
    }
}

/// Whether `job`'s controller is the QuarksJob with this uid. A Job with a run's deterministic
/// name may belong to an earlier QuarksJob of the same name (deleted and re-created while its
/// Job lingers in garbage collection); such a Job must not be adopted as this one's run.
pub fn is_controlled_by(job: &Job, qjob_uid: &str) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owner.uid == qjob_uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UID: &str = "6f1c2a8e-3b4d-4c5e-9f60-7a8b9c0d1e2f";
    const POLICY: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn qjob(template: serde_json::Value) -> QuarksJob {
        serde_json::from_value(json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1",
            "kind": "QuarksJob",
            "metadata": {"name": "generate-certs", "namespace": "staging", "uid": UID},
            "spec": {
                "trigger": {"strategy": "once"},
                "updateOnConfigChange": true,
                "template": template
            }
        }))
        .expect("valid QuarksJob fixture")
    }

    fn errand_template() -> serde_json::Value {
        json!({
            "metadata": {
                "labels": {"app": "certs", QJOB_NAME_LABEL: "spoofed"},
                "annotations": {"team": "platform", RUN_ANNOTATION: "999"}
            },
            "spec": {
                "backoffLimit": 2,
                "template": {
                    "metadata": {"labels": {"delete": "pod"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "gen", "image": "busybox", "command": ["sh", "-c", "echo ok"],
                            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "pw-v1", "key": "password"}}}]
                        }],
                        "volumes": [{"name": "pw", "secret": {"secretName": "pw-v1"}}]
                    }
                }
            }
        })
    }

    fn plan() -> RunPlan {
        RunPlan {
            run: 3,
            write_strategy: Some(Strategy::Done),
            config_digest: Some(DIGEST.to_owned()),
            trigger_policy: POLICY.to_owned(),
        }
    }

    fn build(q: &QuarksJob) -> Job {
        build_job(q, &plan(), &BTreeMap::from([("pw".to_owned(), 2)])).expect("buildable")
    }

    #[test]
    fn job_is_named_after_the_run_in_the_qjob_namespace() {
        let job = build(&qjob(errand_template()));
        assert_eq!(job.metadata.name.as_deref(), Some("generate-certs-3"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("staging"));
    }

    #[test]
    fn job_is_controlled_by_its_quarks_job() {
        let job = build(&qjob(errand_template()));
        let owners = job
            .metadata
            .owner_references
            .clone()
            .expect("owner references");
        assert_eq!(
            owners,
            vec![OwnerReference {
                api_version: "quarks.cloudfoundry.org/v1alpha1".into(),
                kind: "QuarksJob".into(),
                name: "generate-certs".into(),
                uid: UID.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        );
        assert!(is_controlled_by(&job, UID));
        assert!(!is_controlled_by(&job, "another-uid"));
    }

    #[test]
    fn template_labels_are_copied_and_qjob_label_is_on_job_and_pods() {
        let job = build(&qjob(errand_template()));
        let labels = job.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("app").map(String::as_str), Some("certs"));
        assert_eq!(
            labels.get(QJOB_NAME_LABEL).map(String::as_str),
            Some("generate-certs")
        );
        let pod_labels = job
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .expect("pod template labels");
        assert_eq!(
            pod_labels.get(QJOB_NAME_LABEL).map(String::as_str),
            Some("generate-certs")
        );
        assert_eq!(
            pod_labels.get("delete").map(String::as_str),
            Some("pod"),
            "delete: pod kept"
        );
    }

    #[test]
    fn template_annotations_are_copied_and_run_annotations_added() {
        let job = build(&qjob(errand_template()));
        let annotations = job.metadata.annotations.clone().expect("annotations");
        assert_eq!(
            annotations.get("team").map(String::as_str),
            Some("platform")
        );
        assert_eq!(
            annotations.get(RUN_ANNOTATION).map(String::as_str),
            Some("3"),
            "ours wins"
        );
        assert_eq!(
            annotations
                .get(WRITE_STRATEGY_ANNOTATION)
                .map(String::as_str),
            Some("done")
        );
        assert_eq!(
            annotations
                .get(CONFIG_DIGEST_ANNOTATION)
                .map(String::as_str),
            Some(DIGEST)
        );
        assert_eq!(
            annotations
                .get(TRIGGER_POLICY_ANNOTATION)
                .map(String::as_str),
            Some(POLICY)
        );
    }

    #[test]
    fn job_spec_is_the_template_with_versioned_secrets_resolved() {
        let job = build(&qjob(errand_template()));
        let spec = serde_json::to_value(job.spec.expect("job spec")).expect("serializable");
        assert_eq!(spec["backoffLimit"], 2);
        let pod = &spec["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"],
            "pw-v2"
        );
        assert_eq!(pod["volumes"][0]["secret"]["secretName"], "pw-v2");
        assert_eq!(
            pod["containers"][0]["command"],
            json!(["sh", "-c", "echo ok"])
        );
    }

    #[test]
    fn template_without_metadata_gets_the_qjob_label_all_the_same() {
        let mut template = errand_template();
        template.as_object_mut().expect("object").remove("metadata");
        template["spec"]["template"]
            .as_object_mut()
            .expect("object")
            .remove("metadata");
        let job = build(&qjob(template));
        assert_eq!(
            job.metadata.labels.clone().expect("labels"),
            BTreeMap::from([(QJOB_NAME_LABEL.to_owned(), "generate-certs".to_owned())])
        );
        let pod_meta = job
            .spec
            .and_then(|s| s.template.metadata)
            .expect("pod metadata");
        assert_eq!(
            pod_meta
                .labels
                .expect("pod labels")
                .get(QJOB_NAME_LABEL)
                .map(String::as_str),
            Some("generate-certs")
        );
    }

    #[test]
    fn long_qjob_name_gives_valid_job_name_and_hashed_label() {
        let mut q = qjob(errand_template());
        let long = "a-quarks-job-with-a-name-far-longer-than-sixty-three-characters-allowed";
        q.metadata.name = Some(long.to_owned());
        let job = build(&q);
        let name = job.metadata.name.clone().expect("name");
        assert!(crate::names::job::is_dns_label(&name), "{name}");
        let label = job.metadata.labels.expect("labels")[QJOB_NAME_LABEL].clone();
        assert_eq!(label, qjob_name_label_value(long));
        assert!(label.len() <= 63);
    }

    #[test]
    fn quarks_job_without_identity_or_specs_cannot_be_built() {
        let mut q = qjob(errand_template());
        q.metadata.uid = None;
        assert_eq!(
            build_job(&q, &plan(), &BTreeMap::new()).err(),
            Some(BuildError::MissingUid {
                name: "generate-certs".into()
            })
        );
        let mut q = qjob(errand_template());
        q.metadata.namespace = None;
        assert_eq!(
            build_job(&q, &plan(), &BTreeMap::new()).err(),
            Some(BuildError::MissingNamespace {
                name: "generate-certs".into()
            })
        );
        let mut q = qjob(errand_template());
        q.metadata.name = None;
        assert_eq!(
            build_job(&q, &plan(), &BTreeMap::new()).err(),
            Some(BuildError::MissingName)
        );

        let mut template = errand_template();
        template["spec"]["template"]
            .as_object_mut()
            .expect("object")
            .remove("spec");
        assert_eq!(
            build_job(&qjob(template), &plan(), &BTreeMap::new()).err(),
            Some(BuildError::MissingPodSpec {
                name: "generate-certs".into()
            })
        );
        let mut template = errand_template();
        template.as_object_mut().expect("object").remove("spec");
        let err = build_job(&qjob(template), &plan(), &BTreeMap::new()).expect_err("no job spec");
        assert_eq!(
            err,
            BuildError::MissingJobSpec {
                name: "generate-certs".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "QuarksJob generate-certs has no spec.template.spec (the Job spec)"
        );
    }

    #[test]
    fn run_plan_round_trips_through_the_job() {
        let job = build(&qjob(errand_template()));
        assert_eq!(run_plan_of(&job), Some(plan()));
    }

    #[test]
    fn run_plan_without_optional_fields_round_trips() {
        let bare = RunPlan {
            run: 1,
            write_strategy: None,
            config_digest: None,
            trigger_policy: POLICY.into(),
        };
        let job = build_job(&qjob(errand_template()), &bare, &BTreeMap::new()).expect("buildable");
        let annotations = job.metadata.annotations.clone().expect("annotations");
        assert!(!annotations.contains_key(WRITE_STRATEGY_ANNOTATION));
        assert!(!annotations.contains_key(CONFIG_DIGEST_ANNOTATION));
        assert_eq!(run_plan_of(&job), Some(bare));
    }

    #[test]
    fn every_strategy_round_trips() {
        for strategy in [
            Strategy::Manual,
            Strategy::Now,
            Strategy::Once,
            Strategy::Done,
        ] {
            let p = RunPlan {
                write_strategy: Some(strategy),
                ..plan()
            };
            let job = build_job(&qjob(errand_template()), &p, &BTreeMap::new()).expect("buildable");
            assert_eq!(run_plan_of(&job), Some(p));
            assert_eq!(parse_strategy(strategy.as_str()), Some(strategy));
        }
    }

    #[test]
    fn job_with_garbled_or_missing_run_annotations_is_not_adopted() {
        let good = build(&qjob(errand_template()));
        let with = |key: &str, value: Option<&str>| {
            let mut job = good.clone();
            let annotations = job.metadata.annotations.get_or_insert_with(BTreeMap::new);
            match value {
                Some(v) => annotations.insert(key.to_owned(), v.to_owned()),
                None => annotations.remove(key),
            };
            job
        };
        for (key, value) in [
            (RUN_ANNOTATION, None),
            (RUN_ANNOTATION, Some("three")),
            (RUN_ANNOTATION, Some("03")),
            (RUN_ANNOTATION, Some("-3")),
            (RUN_ANNOTATION, Some("")),
            (TRIGGER_POLICY_ANNOTATION, None),
            (TRIGGER_POLICY_ANNOTATION, Some("")),
            (WRITE_STRATEGY_ANNOTATION, Some("Done")),
            (WRITE_STRATEGY_ANNOTATION, Some("later")),
            (CONFIG_DIGEST_ANNOTATION, Some("sha256:nothex")),
        ] {
            assert_eq!(run_plan_of(&with(key, value)), None, "{key}={value:?}");
        }
        let mut unannotated = good.clone();
        unannotated.metadata.annotations = None;
        assert_eq!(run_plan_of(&unannotated), None);
    }

    #[test]
    fn job_created_by_hand_is_not_adopted() {
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "generate-certs-1", "namespace": "staging"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "x", "image": "busybox"}]}}}
        }))
        .expect("valid Job fixture");
        assert_eq!(run_plan_of(&job), None);
        assert!(!is_controlled_by(&job, UID));
    }

    /// One case of `fixtures/job.yaml`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Case {
        name: String,
        qjob: QuarksJob,
        run: u64,
        #[serde(default)]
        write_strategy: Option<Strategy>,
        #[serde(default)]
        newest: BTreeMap<String, u64>,
        #[serde(default)]
        expect: Option<serde_json::Value>,
        #[serde(default)]
        error: Option<String>,
    }

    #[test]
    fn run_job_table() {
        let cases: Vec<Case> =
            serde_yaml::from_str(include_str!("fixtures/job.yaml")).expect("fixture");
        assert!(cases.len() >= 4);
        let helper = HelperSpec {
            image: "example/quarks-job:1".into(),
            deadline_seconds: 60,
            ..Default::default()
        };
        for case in cases {
            let plan = RunPlan {
                run: case.run,
                write_strategy: case.write_strategy,
                config_digest: None,
                trigger_policy: POLICY.to_owned(),
            };
            let built = run_job(&case.qjob, &plan, &case.newest, &helper);
            match (built, &case.expect, &case.error) {
                (Ok(job), Some(expected), None) => {
                    let job = serde_json::to_value(&job).unwrap();
                    let mismatch = crate::subset::subset_mismatch(expected, &job, "");
                    assert_eq!(mismatch, None, "case {:?}: {job}", case.name);
                }
                (Err(error), None, Some(expected)) => {
                    assert_eq!(&error.to_string(), expected, "case {:?}", case.name)
                }
                (got, _, _) => panic!("case {:?}: unexpected {got:?}", case.name),
            }
        }
    }
}
