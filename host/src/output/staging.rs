//! The staging Secret: how the helper in a Job's pod hands the raw output files of one
//! container, and that container's exit code, to the operator. One per served container and
//! pod, owned by the Job, labelled for the operator, consumed and deleted by it. Values are
//! never logged.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};

use super::problem::OutputProblem;

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
    /// The container had not terminated when the helper's deadline passed.
    Unfinished { deadline_seconds: u64 },
}

impl FileState {
    /// The key of the file's bytes if it was handed over, else why nothing can be written
    /// for it (`container` exited with `exit_code`).
    pub fn handed_over(
        &self,
        container: &str,
        file: &str,
        exit_code: i32,
    ) -> Result<&str, OutputProblem> {
        match self {
            FileState::Present { key } => Ok(key),
            FileState::Missing => Err(OutputProblem::FileMissing {
                container: container.to_owned(),
                file: file.to_owned(),
                exit_code,
            }),
            FileState::TooLarge { size } => Err(OutputProblem::TooLarge {
                file: file.to_owned(),
                size: *size,
            }),
            FileState::Unreadable { reason } => Err(OutputProblem::Unreadable {
                reason: reason.clone(),
            }),
            FileState::Unfinished { deadline_seconds } => Err(OutputProblem::Unfinished {
                container: container.to_owned(),
                file: file.to_owned(),
                deadline_seconds: *deadline_seconds,
            }),
        }
    }
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
    /// When the helper handed this over (microseconds since the Unix epoch): the operator
    /// consumes staging Secrets oldest first, so a retried pod's output overwrites the failed
    /// attempt's even when both wait at once (creationTimestamp has only seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_at_micros: Option<u64>,
}

/// Room for file bytes in one staging Secret (the API server's limit is 1 MiB for the whole
/// object; the rest is left for metadata).
pub const STAGING_DATA_BUDGET: usize = (1 << 20) - (16 << 10);

/// Name of the staging Secret of one container of one pod: part 0 is `<pod>-output-<container>`,
/// further parts (files that did not fit one object) add `.<part>` — a dot, which container
/// names (DNS labels) cannot contain, so no two containers' names collide.
pub fn staging_name(pod: &str, container: &str, part: usize) -> String {
    if part == 0 {
        format!("{pod}-output-{container}")
    } else {
        format!("{pod}-output-{container}.{part}")
    }
}

/// Splits files (their sizes, in order) into staging parts of at most `budget` bytes each,
/// keeping the order; `None` (a file with nothing to hand over) and files larger than the
/// budget go nowhere. Always at least one part, so the exit code is always handed over.
pub fn plan_parts(sizes: &[Option<u64>], budget: u64) -> Vec<Vec<usize>> {
    let mut parts = vec![Vec::new()];
    let mut used = 0u64;
    for (index, size) in sizes.iter().enumerate() {
        let Some(size) = *size else { continue };
        if size > budget {
            continue;
        }
        if used + size > budget {
            parts.push(Vec::new());
            used = 0;
        }
        used += size;
        if let Some(last) = parts.last_mut() {
            last.push(index);
        }
    }
    parts
}

/// Builds the staging Secret from the manifest and file bytes (keys as in the manifest).
pub fn build(
    namespace: &str,
    qjob_label_value: &str,
    manifest: &StagingManifest,
    part: usize,
    data: BTreeMap<String, Vec<u8>>,
    owner: OwnerReference,
) -> Result<Secret, serde_json::Error> {
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(staging_name(&manifest.pod, &manifest.container, part)),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (STAGING_LABEL.to_owned(), "true".to_owned()),
                (
                    crate::names::job::QJOB_NAME_LABEL.to_owned(),
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

/// When the helper handed a staging Secret over, if its manifest says (without copying data).
pub fn staged_at_micros(secret: &Secret) -> Option<u64> {
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct StagedAt {
        staged_at_micros: Option<u64>,
    }
    let manifest = secret
        .metadata
        .annotations
        .as_ref()?
        .get(MANIFEST_ANNOTATION)?;
    serde_json::from_str::<StagedAt>(manifest)
        .ok()?
        .staged_at_micros
}

/// Reads a staging Secret back: the manifest and the file bytes by key.
pub fn parse(
    secret: &Secret,
) -> Result<(StagingManifest, BTreeMap<String, Vec<u8>>), OutputProblem> {
    let manifest = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANIFEST_ANNOTATION))
        .ok_or_else(|| {
            OutputProblem::InvalidStaging(format!(
                "staging Secret has no {MANIFEST_ANNOTATION} annotation"
            ))
        })?;
    let manifest: StagingManifest = serde_json::from_str(manifest)
        .map_err(|e| OutputProblem::InvalidStaging(format!("invalid staging manifest: {e}")))?;
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
            staged_at_micros: Some(1),
        };
        let data = BTreeMap::from([("f0".to_owned(), b"{}".to_vec())]);
        let owner = OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "q-1".into(),
            uid: "u".into(),
            ..Default::default()
        };
        let secret = build("ns", "q", &manifest, 0, data.clone(), owner.clone()).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("q-1-abcde-output-c"));
        let (back, back_data) = parse(&secret).unwrap();
        assert_eq!(back, manifest);
        assert_eq!(staged_at_micros(&secret), Some(1));
        assert_eq!(back_data, data);
        let part = build("ns", "q", &manifest, 2, data, owner).unwrap();
        assert_eq!(part.metadata.name.as_deref(), Some("q-1-abcde-output-c.2"));
    }

    #[test]
    fn files_that_do_not_fit_one_object_go_to_further_parts() {
        assert_eq!(plan_parts(&[], 10), vec![Vec::<usize>::new()]);
        // 6 + 6 > 10: two parts; a missing file and an oversized one go nowhere.
        assert_eq!(
            plan_parts(&[Some(6), None, Some(6), Some(11), Some(4)], 10),
            vec![vec![0], vec![2, 4]]
        );
        assert_eq!(
            plan_parts(&[Some(3), Some(3), Some(4)], 10),
            vec![vec![0, 1, 2]]
        );
    }

    #[test]
    fn manifests_without_a_staging_time_still_parse() {
        let json = r#"{"quarks-job":"q","pod":"p","container":"c","exit-code":0,"files":{}}"#;
        let manifest: StagingManifest = serde_json::from_str(json).unwrap();
        assert_eq!(manifest.staged_at_micros, None);
    }
}
