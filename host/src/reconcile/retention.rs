//! Versioned-secret retention (spec.md §5; `keepVersions` of an output file): once a run wrote
//! a new version of a prefix, versions beyond the newest K that the operator made (sealed) are
//! deleted — except those a still-running Job of the namespace references, which stay until a
//! later write finds them unreferenced. Foreign Secrets that merely look like versions are
//! never touched. [`versions_to_delete`] decides (pure); [`prune`] reads and deletes.

use std::collections::HashSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use super::references::{ConfigKind, referenced_config};
use crate::names::versioned::{
    SECRET_KIND_LABEL, VERSION_SEAL_ANNOTATION, VERSIONED_SECRET_KIND, parse_versioned_name,
};
use crate::seal::OperatorKey;

/// The versions (names) to delete: of `versions` (`(name, N)` of one prefix), those older
/// than the newest `keep`, unless `referenced`.
pub fn versions_to_delete(
    mut versions: Vec<(String, u64)>,
    keep: usize,
    referenced: &HashSet<String>,
) -> Vec<String> {
    if keep == 0 {
        return Vec::new();
    }
    versions.sort_by_key(|v| std::cmp::Reverse(v.1));
    versions
        .into_iter()
        .skip(keep)
        .map(|(name, _)| name)
        .filter(|name| !referenced.contains(name))
        .collect()
}

/// Secrets referenced by the pod templates of the namespace's Jobs that have not finished.
fn referenced_by_running_jobs(jobs: &[Job]) -> HashSet<String> {
    jobs.iter()
        .filter(|job| !finished(job))
        .filter_map(|job| job.spec.as_ref()?.template.spec.as_ref())
        .flat_map(referenced_config)
        .filter(|r| r.kind == ConfigKind::Secret)
        .map(|r| r.name)
        .collect()
}

/// Complete or Failed for good.
fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
        })
}

/// Deletes the versions of `prefix` in `namespace` beyond the newest `keep`.
pub async fn prune(
    client: &kube::Client,
    namespace: &str,
    prefix: &str,
    keep: usize,
    key: &OperatorKey,
) -> Result<Vec<String>, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let listed = secrets
        .list_metadata(
            &ListParams::default().labels(&format!("{SECRET_KIND_LABEL}={VERSIONED_SECRET_KIND}")),
        )
        .await?
        .items;
    let versions: Vec<(String, u64)> = listed
        .iter()
        .filter_map(|m| {
            let name = m.metadata.name.clone()?;
            let parsed = parse_versioned_name(&name)?;
            let seal = m
                .metadata
                .annotations
                .as_ref()?
                .get(VERSION_SEAL_ANNOTATION)?;
            (parsed.prefix == prefix
                && key.verify_version_seal(namespace, &name, parsed.version, seal))
            .then_some((name, parsed.version))
        })
        .collect();
    if versions.len() <= keep {
        return Ok(Vec::new());
    }
    let jobs = Api::<Job>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let doomed = versions_to_delete(versions, keep, &referenced_by_running_jobs(&jobs));
    for name in &doomed {
        match secrets.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    if !doomed.is_empty() {
        tracing::info!(prefix, deleted = ?doomed, "older versions deleted (keepVersions)");
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(numbers: &[u64]) -> Vec<(String, u64)> {
        numbers.iter().map(|n| (format!("pw-v{n}"), *n)).collect()
    }

    #[test]
    fn the_newest_k_and_the_referenced_ones_are_kept() {
        let none = HashSet::new();
        assert_eq!(
            versions_to_delete(versions(&[1, 3, 2, 4]), 2, &none),
            ["pw-v2", "pw-v1"]
        );
        let referenced = HashSet::from(["pw-v1".to_owned()]);
        assert_eq!(
            versions_to_delete(versions(&[1, 3, 2, 4]), 2, &referenced),
            ["pw-v2"]
        );
        assert!(versions_to_delete(versions(&[1, 2]), 2, &none).is_empty());
        // 0: keep everything.
        assert!(versions_to_delete(versions(&[1, 2, 3]), 0, &none).is_empty());
    }
}
