//! Content digest of the ConfigMaps and Secrets a pod template references (spec.md §2): recorded
//! with each run, a QuarksJob with `updateOnConfigChange` re-runs exactly when it differs.
//!
//! Owns: the byte encoding that is hashed. It is persisted in status and Job annotations, so it
//! must stay stable across releases: changing it would re-run every one-off after an upgrade.
//! Must not: read objects from the API or decide anything (the trigger policy compares digests).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use sha2::{Digest, Sha256};

use super::references::ConfigKind;

/// Prefix of every digest this module produces.
pub const DIGEST_PREFIX: &str = "sha256:";

/// Separates this encoding from any other sha256 input, and versions it: a future encoding
/// would use a new tag (and knowingly re-run everything once).
const DOMAIN_TAG: &[u8] = b"quarks-job/config-digest/v1";

/// The content of one referenced ConfigMap or Secret, borrowed from the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigContent<'a> {
    /// ConfigMap or Secret.
    pub kind: ConfigKind,
    /// Its name.
    pub name: &'a str,
    /// Key → value bytes: ConfigMap `data` (UTF-8) and `binaryData`, or Secret `data`.
    pub entries: Vec<(&'a str, &'a [u8])>,
}

impl<'a> ConfigContent<'a> {
    /// The content of a ConfigMap: `data` and `binaryData` (the API keeps their keys disjoint,
    /// and a pod sees both the same way, so they are not told apart).
    pub fn from_config_map(config_map: &'a ConfigMap) -> Self {
        let data = config_map
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_bytes()));
        let binary = config_map
            .binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.0.as_slice()));
        ConfigContent {
            kind: ConfigKind::ConfigMap,
            name: config_map.metadata.name.as_deref().unwrap_or_default(),
            entries: data.chain(binary).collect(),
        }
    }

    /// The content of a Secret: its `data` (`stringData` is write-only and never read back).
    pub fn from_secret(secret: &'a Secret) -> Self {
        ConfigContent {
            kind: ConfigKind::Secret,
            name: secret.metadata.name.as_deref().unwrap_or_default(),
            entries: secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.0.as_slice()))
                .collect(),
        }
    }
}

/// "sha256:<hex>" over kind, name and every key/value (ConfigMap data + binaryData, Secret data),
/// order-independent in input order, unambiguous (length-prefixed), stable across releases.
///
/// Objects are sorted by (kind, name) and entries by (key, value) before hashing, so the order
/// in which objects were listed or keys iterated never changes the digest. Every string and
/// value is preceded by its length, and every list by its count, so no two different inputs
/// encode to the same bytes. Only content counts: metadata such as labels or resourceVersion
/// does not (a pod does not see it). An object that exists but is empty differs from an absent
/// one, because the pod sees the difference (an optional reference starts resolving).
/// One object's kind, name and (key, value) entries, in digest order.
type SortedObject<'a> = (ConfigKind, &'a str, Vec<(&'a str, &'a [u8])>);

pub fn config_digest(contents: &[ConfigContent<'_>]) -> String {
    let mut objects: Vec<SortedObject<'_>> = contents
        .iter()
        .map(|c| {
            let mut entries = c.entries.clone();
            entries.sort_unstable();
            (c.kind, c.name, entries)
        })
        .collect();
    objects.sort_unstable();

    let mut hasher = Sha256::new();
    hasher.update(DOMAIN_TAG);
    hash_len(&mut hasher, objects.len());
    for (kind, name, entries) in &objects {
        hash_bytes(&mut hasher, kind.as_str().as_bytes());
        hash_bytes(&mut hasher, name.as_bytes());
        hash_len(&mut hasher, entries.len());
        for (key, value) in entries {
            hash_bytes(&mut hasher, key.as_bytes());
            hash_bytes(&mut hasher, value);
        }
    }
    format!("{DIGEST_PREFIX}{}", hex::encode(hasher.finalize()))
}

/// A length or count as 8 bytes big-endian: fixed width, independent of the platform.
fn hash_len(hasher: &mut Sha256, len: usize) {
    hasher.update((len as u64).to_be_bytes());
}

fn hash_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hash_len(hasher, bytes.len());
    hasher.update(bytes);
}

/// Whether `s` has the shape [`config_digest`] produces (used to reject garbled annotations).
pub fn is_config_digest(s: &str) -> bool {
    s.strip_prefix(DIGEST_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn content<'a>(
        kind: ConfigKind,
        name: &'a str,
        entries: &[(&'a str, &'a [u8])],
    ) -> ConfigContent<'a> {
        ConfigContent {
            kind,
            name,
            entries: entries.to_vec(),
        }
    }

    #[test]
    fn digest_has_the_sha256_prefix_and_64_hex_characters() {
        let d = config_digest(&[content(
            ConfigKind::ConfigMap,
            "settings",
            &[("host", b"db")],
        )]);
        assert!(is_config_digest(&d), "{d}");
    }

    #[test]
    fn digest_is_pinned_across_releases() {
        // Changing the encoding re-runs every one-off with updateOnConfigChange after an
        // upgrade; this pin makes such a change deliberate.
        // Expected values computed independently (Python hashlib over the documented
        // encoding: tag, u64-BE counts and lengths).
        assert_eq!(
            config_digest(&[]),
            "sha256:4d6e742d9f25b39f133c0ea2e4b2914854deae90668966c97042fab299b3dde4"
        );
        assert_eq!(
            config_digest(&[content(
                ConfigKind::Secret,
                "creds",
                &[("password", b"hunter2")]
            )]),
            "sha256:5f21b8cf4755abd62b01c6b224b1f8bfd29eb0b92fde60914747ea023afb65c2"
        );
    }

    #[test]
    fn order_of_objects_and_keys_does_not_matter() {
        let a = content(
            ConfigKind::ConfigMap,
            "settings",
            &[("host", b"db"), ("port", b"5432")],
        );
        let a_reordered = content(
            ConfigKind::ConfigMap,
            "settings",
            &[("port", b"5432"), ("host", b"db")],
        );
        let b = content(ConfigKind::Secret, "creds", &[("password", b"hunter2")]);
        assert_eq!(
            config_digest(&[a.clone(), b.clone()]),
            config_digest(&[b, a_reordered])
        );
    }

    #[test]
    fn changed_value_changes_the_digest() {
        let before = config_digest(&[content(
            ConfigKind::Secret,
            "creds",
            &[("password", b"old")],
        )]);
        let after = config_digest(&[content(
            ConfigKind::Secret,
            "creds",
            &[("password", b"new")],
        )]);
        assert_ne!(before, after);
    }

    #[test]
    fn kind_and_name_are_part_of_the_digest() {
        let entries: &[(&str, &[u8])] = &[("k", b"v")];
        let cm = config_digest(&[content(ConfigKind::ConfigMap, "app", entries)]);
        let secret = config_digest(&[content(ConfigKind::Secret, "app", entries)]);
        let renamed = config_digest(&[content(ConfigKind::ConfigMap, "app2", entries)]);
        assert_ne!(cm, secret);
        assert_ne!(cm, renamed);
    }

    #[test]
    fn moving_bytes_between_key_and_value_changes_the_digest() {
        let a = config_digest(&[content(ConfigKind::ConfigMap, "c", &[("ab", b"c")])]);
        let b = config_digest(&[content(ConfigKind::ConfigMap, "c", &[("a", b"bc")])]);
        assert_ne!(a, b);
    }

    #[test]
    fn moving_an_entry_between_objects_changes_the_digest() {
        let a = config_digest(&[
            content(ConfigKind::ConfigMap, "one", &[("k", b"v")]),
            content(ConfigKind::ConfigMap, "two", &[]),
        ]);
        let b = config_digest(&[
            content(ConfigKind::ConfigMap, "one", &[]),
            content(ConfigKind::ConfigMap, "two", &[("k", b"v")]),
        ]);
        assert_ne!(a, b);
    }

    #[test]
    fn empty_object_differs_from_absent_object() {
        let absent = config_digest(&[]);
        let empty = config_digest(&[content(ConfigKind::Secret, "optional", &[])]);
        assert_ne!(absent, empty);
    }

    #[test]
    fn config_map_data_and_binary_data_both_count() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "staging", "resourceVersion": "17"},
            "data": {"host": "db"},
            "binaryData": {"blob": "AAEC"}
        }))
        .expect("valid ConfigMap fixture");
        let from_object = ConfigContent::from_config_map(&cm);
        assert_eq!(from_object.kind, ConfigKind::ConfigMap);
        assert_eq!(from_object.name, "settings");
        assert_eq!(
            config_digest(&[from_object]),
            config_digest(&[content(
                ConfigKind::ConfigMap,
                "settings",
                &[("blob", &[0, 1, 2]), ("host", b"db")]
            )])
        );
    }

    #[test]
    fn secret_data_counts_and_metadata_does_not() {
        let secret = |rv: &str, labels: serde_json::Value| -> Secret {
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "creds", "namespace": "staging", "resourceVersion": rv, "labels": labels},
                "type": "Opaque",
                "data": {"password": "aHVudGVyMg=="}
            }))
            .expect("valid Secret fixture")
        };
        let a = secret("1", json!({}));
        let b = secret("2", json!({"team": "db"}));
        let digest_a = config_digest(&[ConfigContent::from_secret(&a)]);
        assert_eq!(digest_a, config_digest(&[ConfigContent::from_secret(&b)]));
        assert_eq!(
            digest_a,
            config_digest(&[content(
                ConfigKind::Secret,
                "creds",
                &[("password", b"hunter2")]
            )])
        );
    }

    #[test]
    fn garbled_digests_are_recognised() {
        assert!(!is_config_digest("sha256:abc"));
        assert!(!is_config_digest(
            "md5:5fb82b6fd34d3ce05ad1d46f32ac2f4e6c9b0bc4a8c3d5c8b2bfd9d0d5db2fd1"
        ));
        assert!(!is_config_digest(
            "sha256:5FB82B6FD34D3CE05AD1D46F32AC2F4E6C9B0BC4A8C3D5C8B2BFD9D0D5DB2FD1"
        ));
    }
}
