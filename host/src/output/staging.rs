//! The staging Secret: how the helper in a Job's pod hands the raw output files of one
//! container, and that container's exit code, to the operator. One per served container and
//! pod, owned by the Job, labelled for the operator, consumed and deleted by it. Values are
//! never logged.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};

/// Label marking staging Secrets (the operator watches only these for output).
pub const STAGING_LABEL: &str = "quarks.cloudfoundry.org/output-staging";
/// Annotation holding the [`StagingManifest`] as JSON.
pub const MANIFEST_ANNOTATION: &str = "quarks.cloudfoundry.org/output-manifest";

/// What happened to one mapped output file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum FileState {
    /// The file's bytes are under `data[<key>]`.
    Present { key: String },
    /// The container did not write it.
    Missing,
    /// Too large to hand over (staging data is bounded by the 1 MiB Secret limit).
    TooLarge { size: u64 },
    /// Could not be read (e.g. a directory instead of a file).
    Unreadable { reason: String },
}

/// Everything about one container's output except the bytes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct StagingManifest {
    pub quarks_job: String,
    pub pod: String,
    pub container: String,
    pub exit_code: i32,
    pub files: BTreeMap<String, FileState>,
}

/// Room for file bytes in one staging Secret (the API server's limit is 1 MiB for the whole
/// object; the rest is left for metadata).
pub const STAGING_DATA_BUDGET: usize = (1 << 20) - (16 << 10);

/// Name of the staging Secret of one container of one pod.
pub fn staging_name(pod: &str, container: &str) -> String {
    format!("{pod}-output-{container}")
}

/// Builds the staging Secret from the manifest and file bytes (keys as in the manifest).
pub fn build(
    namespace: &str,
    qjob_label_value: &str,
    manifest: &StagingManifest,
    data: BTreeMap<String, Vec<u8>>,
    owner: OwnerReference,
) -> Result<Secret, serde_json::Error> {
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(staging_name(&manifest.pod, &manifest.container)),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (STAGING_LABEL.to_owned(), "true".to_owned()),
                (
                    crate::operator::naming::QJOB_NAME_LABEL.to_owned(),
                    qjob_label_value.to_owned(),
                ),
            ])),
            annotations: Some(BTreeMap::from([(
                MANIFEST_ANNOTATION.to_owned(),
                serde_json::to_string(manifest)?,
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    })
}

/// Reads a staging Secret back: the manifest and the file bytes by key.
pub fn parse(secret: &Secret) -> Result<(StagingManifest, BTreeMap<String, Vec<u8>>), String> {
    let manifest = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANIFEST_ANNOTATION))
        .ok_or_else(|| format!("staging Secret has no {MANIFEST_ANNOTATION} annotation"))?;
    let manifest: StagingManifest =
        serde_json::from_str(manifest).map_err(|e| format!("invalid staging manifest: {e}"))?;
    let data = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Ok((manifest, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_secrets_round_trip() {
        let manifest = StagingManifest {
            quarks_job: "q".into(),
            pod: "q-1-abcde".into(),
            container: "c".into(),
            exit_code: 3,
            files: BTreeMap::from([
                (
                    "output.json".into(),
                    FileState::Present { key: "f0".into() },
                ),
                ("missing.json".into(), FileState::Missing),
                ("big.json".into(), FileState::TooLarge { size: 5 << 20 }),
            ]),
        };
        let data = BTreeMap::from([("f0".to_owned(), b"{}".to_vec())]);
        let owner = OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "q-1".into(),
            uid: "u".into(),
            ..Default::default()
        };
        let secret = build("ns", "q", &manifest, data.clone(), owner).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("q-1-abcde-output-c"));
        let (back, back_data) = parse(&secret).unwrap();
        assert_eq!(back, manifest);
        assert_eq!(back_data, data);
    }
}
