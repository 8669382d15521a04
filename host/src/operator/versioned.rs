//! Versioned secrets (spec.md §5): the `<prefix>-v<N>` naming, the labels that mark them, which
//! version of a prefix is the newest, and redirecting a Job's pod-spec references to it.
//!
//! Owns: the name and label conventions shared by the Job builder (reading versions) and the
//! output writer (creating them). Must not: list, create or delete Secrets (callers pass what
//! they listed from the QuarksJob's namespace), or ever make a reference older.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, Secret};

use super::references::{ConfigKind, reference_sites};

/// Label marking a Secret as one version of a versioned secret.
pub const SECRET_KIND_LABEL: &str = "quarks.cloudfoundry.org/secret-kind";
/// Label holding a versioned secret's version number `N`.
pub const SECRET_VERSION_LABEL: &str = "quarks.cloudfoundry.org/secret-version";
/// Annotation saying where a versioned secret's content came from.
pub const SOURCE_DESCRIPTION_ANNOTATION: &str = "quarks.cloudfoundry.org/source-description";
/// Value of [`SECRET_KIND_LABEL`] on versioned secrets.
pub const VERSIONED_SECRET_KIND: &str = "versionedSecret";

/// A versioned secret's name split into its parts: `<prefix>-v<version>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedName {
    /// The name without the `-v<N>` suffix.
    pub prefix: String,
    /// N, starting at 1.
    pub version: u64,
}

/// Splits `<prefix>-v<N>`: prefix non-empty, N ≥ 1 in decimal without leading zeros (so every
/// version has exactly one name, and `foo-v01` is not mistaken for `foo-v1`).
pub fn parse_versioned_name(name: &str) -> Option<VersionedName> {
    let (prefix, digits) = name.rsplit_once("-v")?;
    if prefix.is_empty() {
        return None;
    }
    let version = parse_version(digits)?;
    Some(VersionedName {
        prefix: prefix.to_owned(),
        version,
    })
}

/// `<prefix>-v<version>`.
pub fn versioned_name(prefix: &str, version: u64) -> String {
    format!("{prefix}-v{version}")
}

/// A canonical version number: decimal digits only, no sign, no leading zero, at least 1.
fn parse_version(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// Newest version per prefix among secrets labelled secret-kind=versionedSecret (version from the
/// secret-version label; secrets whose name and label disagree are ignored).
///
/// Pass the Secrets of one namespace: versions are per namespace, like the references to them.
/// A Secret whose name and label disagree was edited by hand or written by something else; it
/// is not trusted to be a version of anything.
pub fn newest_versions<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> BTreeMap<String, u64> {
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    for secret in secrets {
        let Some(labels) = secret.metadata.labels.as_ref() else {
            continue;
        };
        if labels.get(SECRET_KIND_LABEL).map(String::as_str) != Some(VERSIONED_SECRET_KIND) {
            continue;
        }
        let Some(label_version) = labels
            .get(SECRET_VERSION_LABEL)
            .and_then(|v| parse_version(v))
        else {
            continue;
        };
        let Some(parsed) = secret
            .metadata
            .name
            .as_deref()
            .and_then(parse_versioned_name)
        else {
            continue;
        };
        if parsed.version != label_version {
            continue;
        }
        let entry = newest.entry(parsed.prefix).or_insert(parsed.version);
        *entry = (*entry).max(parsed.version);
    }
    newest
}

/// Rewrites every secret reference `<prefix>-v<N>` in the pod spec (volumes, projected sources,
/// env valueFrom, envFrom, init + regular containers) to the newest known version of that prefix
/// when it is newer — never downgrades. Returns (old name, new name) pairs rewritten.
///
/// The pairs are distinct and sorted (a secret referenced from several places is one pair), so
/// callers can put them in an Event as they are. ConfigMap references are never touched:
/// versioned secrets are Secrets only.
pub fn rewrite_versioned_references(
    pod: &mut PodSpec,
    newest: &BTreeMap<String, u64>,
) -> Vec<(String, String)> {
    let mut rewritten: Vec<(String, String)> = Vec::new();
    for site in reference_sites(pod) {
        if site.kind != ConfigKind::Secret {
            continue;
        }
        let Some(parsed) = parse_versioned_name(site.name.as_str()) else {
            continue;
        };
        let Some(&latest) = newest.get(&parsed.prefix) else {
            continue;
        };
        if latest <= parsed.version {
            continue;
        }
        let new_name = versioned_name(&parsed.prefix, latest);
        let old_name = std::mem::replace(site.name, new_name.clone());
        rewritten.push((old_name, new_name));
    }
    rewritten.sort();
    rewritten.dedup();
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn versioned_secret(name: &str, version_label: &str) -> Secret {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": name, "namespace": "staging",
                "labels": {
                    SECRET_KIND_LABEL: VERSIONED_SECRET_KIND,
                    SECRET_VERSION_LABEL: version_label
                },
                "annotations": {SOURCE_DESCRIPTION_ANNOTATION: "output of container gen"}
            },
            "data": {"password": "c2VjcmV0"}
        }))
        .expect("valid Secret fixture")
    }

    fn plain_secret(name: &str) -> Secret {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "staging"},
            "data": {"password": "c2VjcmV0"}
        }))
        .expect("valid Secret fixture")
    }

    #[test]
    fn versioned_names_parse_into_prefix_and_version() {
        assert_eq!(
            parse_versioned_name("db-password-v3"),
            Some(VersionedName {
                prefix: "db-password".into(),
                version: 3
            })
        );
        assert_eq!(
            parse_versioned_name("my-vault-v12"),
            Some(VersionedName {
                prefix: "my-vault".into(),
                version: 12
            })
        );
    }

    #[test]
    fn names_that_are_not_canonical_versions_do_not_parse() {
        for name in [
            "password",
            "pw-v",
            "pw-v0",
            "pw-v01",
            "-v1",
            "pw-v1a",
            "pw-v+1",
            "pw-vv1",
            "pw-v99999999999999999999",
        ] {
            assert_eq!(parse_versioned_name(name), None, "{name}");
        }
    }

    #[test]
    fn versioned_name_round_trips() {
        assert_eq!(versioned_name("db-password", 7), "db-password-v7");
        assert_eq!(
            parse_versioned_name(&versioned_name("a-v2", 5)),
            Some(VersionedName {
                prefix: "a-v2".into(),
                version: 5
            })
        );
    }

    #[test]
    fn newest_version_is_the_highest_per_prefix() {
        let secrets = [
            versioned_secret("pw-v1", "1"),
            versioned_secret("pw-v10", "10"),
            versioned_secret("pw-v2", "2"),
            versioned_secret("cert-v1", "1"),
        ];
        let newest = newest_versions(&secrets);
        assert_eq!(
            newest,
            BTreeMap::from([("cert".into(), 1), ("pw".into(), 10)])
        );
    }

    #[test]
    fn secrets_without_the_versioned_kind_label_are_not_versions() {
        let secrets = [versioned_secret("pw-v1", "1"), plain_secret("pw-v5")];
        assert_eq!(
            newest_versions(&secrets),
            BTreeMap::from([("pw".into(), 1)])
        );
    }

    #[test]
    fn secrets_whose_name_and_version_label_disagree_are_ignored() {
        let secrets = [
            versioned_secret("pw-v1", "1"),
            versioned_secret("pw-v9", "3"),
            versioned_secret("pw-v4", "04"),
            versioned_secret("unversioned-name", "6"),
        ];
        assert_eq!(
            newest_versions(&secrets),
            BTreeMap::from([("pw".into(), 1)])
        );
    }

    fn pod_with_versioned_refs() -> PodSpec {
        serde_json::from_value(json!({
            "initContainers": [{"name": "init", "image": "busybox",
                "envFrom": [{"secretRef": {"name": "pw-v1"}}]}],
            "containers": [{"name": "main", "image": "busybox",
                "env": [
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "pw-v1", "key": "password"}}},
                    {"name": "CERT", "valueFrom": {"secretKeyRef": {"name": "cert-v3", "key": "crt"}}},
                    {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "pw-v1", "key": "x"}}}
                ],
                "envFrom": [{"secretRef": {"name": "plain"}}]}],
            "volumes": [
                {"name": "pw", "secret": {"secretName": "pw-v1"}},
                {"name": "proj", "projected": {"sources": [{"secret": {"name": "pw-v2"}}]}}
            ]
        }))
        .expect("valid PodSpec fixture")
    }

    #[test]
    fn references_are_rewritten_to_the_newest_version_everywhere() {
        let mut spec = pod_with_versioned_refs();
        let newest = BTreeMap::from([("pw".to_owned(), 4), ("cert".to_owned(), 3)]);
        let rewritten = rewrite_versioned_references(&mut spec, &newest);
        assert_eq!(
            rewritten,
            vec![
                ("pw-v1".into(), "pw-v4".into()),
                ("pw-v2".into(), "pw-v4".into())
            ]
        );
        let after = serde_json::to_value(&spec).expect("serializable");
        assert_eq!(
            after["initContainers"][0]["envFrom"][0]["secretRef"]["name"],
            "pw-v4"
        );
        assert_eq!(
            after["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"],
            "pw-v4"
        );
        assert_eq!(
            after["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["name"],
            "cert-v3"
        );
        assert_eq!(after["volumes"][0]["secret"]["secretName"], "pw-v4");
        assert_eq!(
            after["volumes"][1]["projected"]["sources"][0]["secret"]["name"],
            "pw-v4"
        );
    }

    #[test]
    fn configmap_references_that_look_versioned_are_left_alone() {
        let mut spec = pod_with_versioned_refs();
        rewrite_versioned_references(&mut spec, &BTreeMap::from([("pw".to_owned(), 4)]));
        let after = serde_json::to_value(&spec).expect("serializable");
        assert_eq!(
            after["containers"][0]["env"][2]["valueFrom"]["configMapKeyRef"]["name"],
            "pw-v1"
        );
        assert_eq!(
            after["containers"][0]["envFrom"][0]["secretRef"]["name"],
            "plain"
        );
    }

    #[test]
    fn references_newer_than_the_newest_known_version_are_never_downgraded() {
        let mut spec = pod_with_versioned_refs();
        let before = spec.clone();
        let rewritten =
            rewrite_versioned_references(&mut spec, &BTreeMap::from([("pw".to_owned(), 1)]));
        // pw-v2 is newer than the newest existing pw-v1: it stays (and the run waits for it).
        assert!(rewritten.is_empty());
        assert_eq!(spec, before);
    }

    #[test]
    fn nothing_is_rewritten_without_known_versions() {
        let mut spec = pod_with_versioned_refs();
        let before = spec.clone();
        assert!(rewrite_versioned_references(&mut spec, &BTreeMap::new()).is_empty());
        assert_eq!(spec, before);
    }
}
