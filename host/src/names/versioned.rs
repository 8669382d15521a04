//! Versioned secrets (spec.md §5): the `<prefix>-v<N>` naming, the labels that mark them and
//! which version of a prefix is the newest.
//!
//! Owns: the name and label conventions shared by the Job builder (reading versions) and the
//! output writer (creating them). Must not: list, create or delete Secrets (callers pass what
//! they listed from the QuarksJob's namespace).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Label marking a Secret as one version of a versioned secret.
pub const SECRET_KIND_LABEL: &str = "quarks.cloudfoundry.org/secret-kind";
/// Label holding a versioned secret's version number `N`.
pub const SECRET_VERSION_LABEL: &str = "quarks.cloudfoundry.org/secret-version";
/// Annotation saying where a versioned secret's content came from.
pub const SOURCE_DESCRIPTION_ANNOTATION: &str = "quarks.cloudfoundry.org/source-description";
/// Annotation holding the operator's seal of a version ([`crate::seal::OperatorKey::version_seal`]):
/// without a valid one a Secret is not a version, whatever its name and labels.
pub const VERSION_SEAL_ANNOTATION: &str = "quarks.cloudfoundry.org/version-seal";
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

/// Newest version per prefix among Secrets (their metadata) labelled
/// secret-kind=versionedSecret whose name and version label agree and that `counts(name,
/// version, seal)` accepts — the operator's check of its seal ([`VERSION_SEAL_ANNOTATION`],
/// `None` when there is none).
///
/// Pass the Secrets of one namespace: versions are per namespace, like the references to them.
/// A Secret whose name and label disagree was edited by hand, and one without the operator's
/// seal was written by someone else: neither is trusted to be a version of anything, so a
/// foreign `<prefix>-v999999` changes neither what references resolve to nor the next number.
pub fn newest_versions<'a>(
    secrets: impl IntoIterator<Item = &'a ObjectMeta>,
    counts: impl Fn(&str, u64, Option<&str>) -> bool,
) -> BTreeMap<String, u64> {
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    for metadata in secrets {
        let Some(labels) = metadata.labels.as_ref() else {
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
        let Some(name) = metadata.name.as_deref() else {
            continue;
        };
        let Some(parsed) = parse_versioned_name(name) else {
            continue;
        };
        if parsed.version != label_version {
            continue;
        }
        let seal = metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(VERSION_SEAL_ANNOTATION));
        if !counts(name, parsed.version, seal.map(String::as_str)) {
            continue;
        }
        let entry = newest.entry(parsed.prefix).or_insert(parsed.version);
        *entry = (*entry).max(parsed.version);
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
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
                "annotations": {
                    SOURCE_DESCRIPTION_ANNOTATION: "output of container gen",
                    VERSION_SEAL_ANNOTATION: format!("seal-of-{name}")
                }
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

    /// A stand-in for the operator's seal check: `seal-of-<name>` is the valid seal.
    fn newest(secrets: &[Secret]) -> BTreeMap<String, u64> {
        newest_versions(secrets.iter().map(|s| &s.metadata), |name, _, seal| {
            seal == Some(format!("seal-of-{name}").as_str())
        })
    }

    #[test]
    fn versions_without_the_operators_seal_do_not_count() {
        let mut forged = versioned_secret("pw-v999999", "999999");
        forged
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(VERSION_SEAL_ANNOTATION.into(), "seal-of-pw-v1".into());
        let mut unsealed = versioned_secret("pw-v77", "77");
        unsealed.metadata.annotations = None;
        let secrets = [versioned_secret("pw-v1", "1"), forged, unsealed];
        assert_eq!(newest(&secrets), BTreeMap::from([("pw".into(), 1)]));
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
        let newest = newest(&secrets);
        assert_eq!(
            newest,
            BTreeMap::from([("cert".into(), 1), ("pw".into(), 10)])
        );
    }

    #[test]
    fn secrets_without_the_versioned_kind_label_are_not_versions() {
        let secrets = [versioned_secret("pw-v1", "1"), plain_secret("pw-v5")];
        assert_eq!(newest(&secrets), BTreeMap::from([("pw".into(), 1)]));
    }

    #[test]
    fn secrets_whose_name_and_version_label_disagree_are_ignored() {
        let secrets = [
            versioned_secret("pw-v1", "1"),
            versioned_secret("pw-v9", "3"),
            versioned_secret("pw-v4", "04"),
            versioned_secret("unversioned-name", "6"),
        ];
        assert_eq!(newest(&secrets), BTreeMap::from([("pw".into(), 1)]));
    }
}
