//! The `QuarksJob` custom resource (`quarks.cloudfoundry.org/v1alpha1`): its Rust types, from
//! which the CRD and its structural schema are generated (`quarks-job crd`).
//!
//! Field names and JSON spellings are an interface shared with the original Go operator, so
//! existing manifests keep working; every field's doc comment becomes `kubectl explain` text.
//! This module holds types only: no API calls, no decisions.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::JobTemplateSpec;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kube::core::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every quarks resource.
pub const GROUP: &str = "quarks.cloudfoundry.org";

/// Runs a Job when something interesting happens (an errand, a one-off, a config change) and
/// stores its output in Secrets.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "quarks.cloudfoundry.org",
    version = "v1alpha1",
    kind = "QuarksJob",
    plural = "quarksjobs",
    shortname = "qjob",
    shortname = "qjobs",
    category = "quarks",
    namespaced,
    status = "QuarksJobStatus",
    printcolumn = r#"{"name":"Strategy","type":"string","jsonPath":".spec.trigger.strategy"}"#,
    printcolumn = r#"{"name":"Completed","type":"boolean","jsonPath":".status.completed"}"#,
    printcolumn = r#"{"name":"Last Job","type":"string","jsonPath":".status.lastJobName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Update On Config Change","type":"boolean","priority":1,"jsonPath":".spec.updateOnConfigChange"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct QuarksJobSpec {
    /// When the Job runs.
    pub trigger: Trigger,
    /// The Job to run: a `batch/v1` JobTemplateSpec. Its labels and annotations are copied
    /// onto the Job. Other keys (the original's examples put `backoffLimit` here) are kept,
    /// ignored and reported.
    #[schemars(with = "JobTemplateSpec")]
    pub template: JobTemplate,
    /// For one-offs (`once`/`done`): run again when the content of a ConfigMap or Secret
    /// referenced by the pod template changes (including a new version of a referenced
    /// versioned secret).
    #[serde(default)]
    pub update_on_config_change: bool,
    /// Store files the containers write to /mnt/quarks in Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
}

/// `spec.template`: the JobTemplateSpec, and the keys beside it that are none of its fields.
///
/// The original's CRD kept unknown fields under `template`, and its own examples put
/// `backoffLimit` there instead of under `template.spec`; such manifests must keep applying.
/// The schema therefore preserves unknown keys at this one level (known fields below stay
/// validated and pruned), and they are carried here so that they can be reported.
///
/// The JobTemplateSpec is held as its compact JSON, decoded by [`job`](Self::job) where a run
/// or a reference lookup needs it: the operator caches every QuarksJob, and a typed
/// JobTemplateSpec of one small container takes ~4.5 KiB of memory (k8s-openapi's structs hold
/// every optional field inline), its JSON ~250 bytes. It is checked against the type when the
/// QuarksJob is read, so a template that reads at all decodes again.
#[derive(Clone, Debug, PartialEq)]
pub struct JobTemplate {
    /// The JobTemplateSpec, serialized from the typed value (so equal templates are equal text).
    job: Box<str>,
    /// Keys that are not fields of a JobTemplateSpec, with their values.
    pub unknown: BTreeMap<String, serde_json::Value>,
}

impl JobTemplate {
    /// A template of `job`, with no unknown keys.
    pub fn new(job: &JobTemplateSpec) -> Result<Self, serde_json::Error> {
        Ok(JobTemplate {
            job: serde_json::to_string(job)?.into_boxed_str(),
            unknown: BTreeMap::new(),
        })
    }

    /// The JobTemplateSpec, decoded. It decoded when the QuarksJob was read, so an error here
    /// means memory was corrupted or serde_json disagrees with itself; callers report it rather
    /// than panic.
    pub fn job(&self) -> Result<JobTemplateSpec, serde_json::Error> {
        serde_json::from_str(&self.job)
    }

    /// The pod spec under `spec.template.spec`, if the template has one.
    pub fn pod_spec(&self) -> Result<Option<PodSpec>, serde_json::Error> {
        Ok(self.job()?.spec.and_then(|spec| spec.template.spec))
    }
}

impl Default for JobTemplate {
    fn default() -> Self {
        JobTemplate::new(&JobTemplateSpec::default()).expect("an empty JobTemplateSpec serializes")
    }
}

/// The fields of a JobTemplateSpec.
const JOB_TEMPLATE_FIELDS: [&str; 2] = ["metadata", "spec"];

impl<'de> Deserialize<'de> for JobTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let unknown_keys: Vec<String> = fields
            .keys()
            .filter(|k| !JOB_TEMPLATE_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect();
        let unknown = unknown_keys
            .into_iter()
            .filter_map(|k| fields.remove(&k).map(|v| (k, v)))
            .collect();
        let job: JobTemplateSpec = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(serde::de::Error::custom)?;
        let mut template = JobTemplate::new(&job).map_err(serde::de::Error::custom)?;
        template.unknown = unknown;
        Ok(template)
    }
}

impl Serialize for JobTemplate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut value: serde_json::Value =
            serde_json::from_str(&self.job).map_err(serde::ser::Error::custom)?;
        if let serde_json::Value::Object(fields) = &mut value {
            for (key, unknown) in &self.unknown {
                fields.insert(key.clone(), unknown.clone());
            }
        }
        value.serialize(serializer)
    }
}

/// When a QuarksJob runs.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Trigger {
    /// `manual`: an errand, runs when set to `now`. `now`: run, then reset to `manual`.
    /// `once`: a one-off, runs on creation, then becomes `done`. `done`: a one-off that ran.
    pub strategy: Strategy,
}

/// `spec.trigger.strategy`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// An errand waiting for a user to set `now`.
    Manual,
    /// Run now; reset to `manual` once the Job exists.
    Now,
    /// Run once on creation; set to `done` once the Job exists.
    Once,
    /// A one-off that has run.
    Done,
}

impl Strategy {
    /// The spelling used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Manual => "manual",
            Strategy::Now => "now",
            Strategy::Once => "once",
            Strategy::Done => "done",
        }
    }
}

/// How output files become Secrets.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Container name → output file name (under /mnt/quarks) → the Secret it becomes.
    #[serde(default)]
    pub output_map: BTreeMap<String, BTreeMap<String, SecretOptions>>,
    /// Format of the output files. Only `json` (a flat object of string values) is supported.
    #[serde(default)]
    pub output_type: OutputType,
    /// Labels added to every Secret written from this QuarksJob's output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_labels: BTreeMap<String, String>,
    /// Write output even when the container exited with a non-zero code.
    #[serde(default)]
    pub write_on_failure: bool,
}

/// `spec.output.outputType`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputType {
    /// A JSON object whose values are all strings.
    #[default]
    Json,
}

impl OutputType {
    /// The spelling used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputType::Json => "json",
        }
    }
}

/// The Secret one output file becomes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretOptions {
    /// Name of the Secret (the prefix for `fan-out` and for versioned secrets).
    pub name: String,
    /// Labels added to this Secret (after `output.secretLabels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_labels: BTreeMap<String, String>,
    /// Annotations added to this Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_annotations: BTreeMap<String, String>,
    /// Write a new immutable version `<name>-v<N>` on each run instead of overwriting.
    #[serde(default)]
    pub versioned: bool,
    /// For `versioned` output: keep only the newest this many versions. Older ones the
    /// operator made are deleted once a newer one is written — except those a Job of the
    /// namespace that is still running references. Unset or 0: every version is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_versions: Option<u32>,
    /// `one-to-one`: one Secret holding the file's flat object. `fan-out`: one Secret
    /// `<name>-<key>` per top-level key, whose value is a JSON-encoded flat object.
    #[serde(default, rename = "persistencemethod")]
    pub persistence_method: PersistenceMethod,
}

/// `persistencemethod` of an output file.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PersistenceMethod {
    /// One Secret per file.
    #[default]
    #[serde(rename = "one-to-one")]
    OneToOne,
    /// One Secret per top-level key of the file.
    #[serde(rename = "fan-out")]
    FanOut,
}

/// What the operator observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarksJobStatus {
    /// The last run's Job succeeded (and was cleaned up).
    #[serde(default)]
    pub completed: bool,
    /// `Ready`, `Running`, `Succeeded`, `Failed`, `WaitingForConfig`, `PolicyError`, ... in
    /// the style of metav1.Condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The strategy the operator saw when it last reconciled; a different `spec` strategy
    /// means a user changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_strategy: Option<Strategy>,
    /// How many runs have been started.
    #[serde(default)]
    pub run_count: i64,
    /// Name of the Job of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_name: Option<String>,
    /// When the last run's Job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_started_at: Option<Time>,
    /// When the last run's Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_finished_at: Option<Time>,
    /// Why the last run failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Digest of the content of the ConfigMaps and Secrets the pod template referenced when
    /// the last run started; a different digest now means the config changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<String>,
    /// Digests of the policy modules that decided the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<PolicyDigests>,
    /// Per container and file of the last run with output: the Secrets written, or why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputRecord>,
}

/// What became of one output file of the last run that produced output.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputRecord {
    /// The Job whose pod wrote the file.
    pub job: String,
    /// The container that wrote it.
    pub container: String,
    /// The file name under /mnt/quarks.
    pub file: String,
    /// Secrets written (versioned ones with their `-v<N>` name); empty when nothing was written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Why nothing was written, as a CamelCase code: `FileMissing`, `TooLarge`, `Unreadable`,
    /// `Unfinished` (the file was not handed over), `NothingWritten` (the output policy asked
    /// for no Secret), `InvalidOutput` (the operator refused a Secret the policy asked for),
    /// `InvalidStaging`, or the `Policy…` code of an output policy that failed. Absent when
    /// Secrets were written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why nothing was written, for humans: the `reason` code, a colon, then what happened;
    /// never contains values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The policy modules (sha256 of the component bytes) that made the last decisions.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDigests {
    /// The trigger policy that started the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The output policy that turned the last run's files into Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// How the namespace selected the trigger policy (`builtin:…`, `configmap:…`, `oci://…`;
    /// an OCI tag with the digest it had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_source: Option<String>,
    /// How the namespace selected the output policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_source: Option<String>,
}

/// The CustomResourceDefinition, as `quarks-job crd` prints it and the chart ships it.
///
/// The embedded `template` (a whole JobTemplateSpec) keeps its full structural schema, so the
/// API server validates and prunes it, but not the upstream Kubernetes field descriptions:
/// they would make the CRD over 500 KB, too large for `kubectl apply` (client-side) and
/// wasteful in every API server. `kubectl explain job.spec` documents those fields.
///
/// No field is `nullable`: kube-apiserver (1.24 at least) leaves nullable fields out of the
/// OpenAPI v2 document it publishes, so `kubectl explain qjob.status` showed nothing and
/// kubectl could not validate `spec.output`. Our optional fields are omitted, never sent as
/// null (and a null sent for a non-nullable field is pruned by the API server, not refused).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = QuarksJob::crd();
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        visit_schema(root, &mut |field| field.nullable = None);
        let template = root
            .properties
            .as_mut()
            .and_then(|p| p.get_mut("spec"))
            .and_then(|spec| spec.properties.as_mut())
            .and_then(|p| p.get_mut("template"));
        if let Some(template) = template {
            for (_, field) in template.properties.iter_mut().flatten() {
                visit_schema(field, &mut |field| field.description = None);
            }
            // Keys beside metadata/spec are kept (see JobTemplate); the fields stay validated.
            template.x_kubernetes_preserve_unknown_fields = Some(true);
        }
    }
    crd
}

/// Calls `visit` on `schema` and on every schema nested in it.
fn visit_schema(schema: &mut JSONSchemaProps, visit: &mut impl FnMut(&mut JSONSchemaProps)) {
    visit(schema);
    for (_, child) in schema.properties.iter_mut().flatten() {
        visit_schema(child, visit);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => visit_schema(item, visit),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => {
            list.iter_mut().for_each(|s| visit_schema(s, visit))
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(inner)) = schema.additional_properties.as_mut() {
        visit_schema(inner, visit);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
        .into_iter()
        .flatten()
    {
        list.iter_mut().for_each(|s| visit_schema(s, visit));
    }
}

/// [`crd`] as YAML.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_beside_the_job_template_spec_are_kept_and_round_trip() {
        let json = serde_json::json!({
            "backoffLimit": 2,
            "spec": {"backoffLimit": 3, "template": {}},
        });
        let template: JobTemplate = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            template.unknown.keys().collect::<Vec<_>>(),
            ["backoffLimit"]
        );
        assert_eq!(template.job().unwrap().spec.unwrap().backoff_limit, Some(3));
        assert_eq!(serde_json::to_value(&template).unwrap(), json);
        let yaml = crd_yaml().unwrap();
        assert!(yaml.contains("x-kubernetes-preserve-unknown-fields: true"));
    }

    #[test]
    fn no_field_of_the_crd_is_nullable_so_kube_apiserver_publishes_every_field() {
        let yaml = crd_yaml().unwrap();
        assert!(!yaml.contains("nullable"), "a nullable field is left");
        // What `kubectl explain qjob.status` / `qjob.spec.output` list on kube-apiserver.
        for field in ["runCount:", "lastJobName:", "outputMap:", "secretLabels:"] {
            assert!(yaml.contains(field), "{field} is in the schema");
        }
    }
}
