//! What the host refuses from an output policy, whatever the policy: Secret names that are not
//! DNS subdomains, invalid data keys, label or annotation syntax, Secrets over the 1 MiB limit,
//! and the labels and annotations the operator itself interprets ([`RESERVED_KEYS`]). Pure;
//! messages never contain values.

use quarks_policy_sdk::names::{self, NameKind};

use super::handover::HANDOVER_LABEL;
use super::staging::{MANIFEST_ANNOTATION, SIGNATURE_ANNOTATION, STAGING_LABEL};
use crate::names::MONITORED_LABEL;
use crate::names::job::{
    CONFIG_DIGEST_ANNOTATION, QJOB_NAME_LABEL, RUN_ANNOTATION, TRIGGER_POLICY_ANNOTATION,
    WRITE_STRATEGY_ANNOTATION,
};
use crate::names::versioned::{
    SECRET_KIND_LABEL, SECRET_VERSION_LABEL, SOURCE_DESCRIPTION_ANNOTATION, VERSION_SEAL_ANNOTATION,
};
use crate::policy::contract::SecretSpec;

/// The API server's limit for one Secret's data.
pub const MAX_SECRET_DATA: usize = 1 << 20;

/// Every `quarks.cloudfoundry.org/` label and annotation the operator interprets (on Secrets,
/// Jobs, namespaces): an output Secret may carry none of them, whether `secretLabels`,
/// `secretAnnotations` or a policy asks, so that no output can pass for a staging Secret, a
/// version, another QuarksJob's output or a run. Other keys of that domain stay free.
pub const RESERVED_KEYS: &[&str] = &[
    MONITORED_LABEL,
    QJOB_NAME_LABEL,
    STAGING_LABEL,
    MANIFEST_ANNOTATION,
    SIGNATURE_ANNOTATION,
    HANDOVER_LABEL,
    SECRET_KIND_LABEL,
    SECRET_VERSION_LABEL,
    SOURCE_DESCRIPTION_ANNOTATION,
    VERSION_SEAL_ANNOTATION,
    RUN_ANNOTATION,
    WRITE_STRATEGY_ANNOTATION,
    CONFIG_DIGEST_ANNOTATION,
    TRIGGER_POLICY_ANNOTATION,
];

/// Longest prefix a versioned secret may have, so that `<prefix>-v<N>` stays a valid name.
const MAX_VERSIONED_PREFIX: usize = 253 - 12;

/// Checks one Secret a policy asked for; the error says what and why, for status and Events.
pub fn validate_secret_spec(spec: &SecretSpec) -> Result<(), String> {
    names::validate_dns_subdomain(&spec.name).map_err(|e| e.to_string())?;
    if spec.versioned && spec.name.len() > MAX_VERSIONED_PREFIX {
        return Err(format!(
            "versioned secret prefix {:?} is longer than {MAX_VERSIONED_PREFIX} characters",
            spec.name
        ));
    }
    let mut size = 0usize;
    for (key, value) in &spec.data {
        names::validate_secret_key(key).map_err(|e| e.to_string())?;
        size += key.len() + value.0.len();
    }
    if size > MAX_SECRET_DATA {
        return Err(format!(
            "secret {:?} would hold {size} bytes, over the {MAX_SECRET_DATA}-byte Secret limit",
            spec.name
        ));
    }
    for (key, value) in &spec.labels {
        if RESERVED_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "label {key:?} is reserved: quarks-job interprets it and sets it itself"
            ));
        }
        names::validate_qualified_name(NameKind::LabelKey, key).map_err(|e| e.to_string())?;
        names::validate_label_value(value).map_err(|e| e.to_string())?;
    }
    let mut annotation_size = 0usize;
    for (key, value) in &spec.annotations {
        if RESERVED_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "annotation {key:?} is reserved: quarks-job interprets it and sets it itself"
            ));
        }
        names::validate_qualified_name(NameKind::AnnotationKey, key).map_err(|e| e.to_string())?;
        annotation_size += key.len() + value.len();
    }
    if annotation_size > 256 << 10 {
        return Err(format!(
            "annotations of secret {:?} exceed 256 KiB",
            spec.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::contract::Bytes;

    fn spec(name: &str) -> SecretSpec {
        SecretSpec {
            name: name.into(),
            data: BTreeMap::from([("k".into(), Bytes::from("v"))]),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            versioned: false,
        }
    }

    #[test]
    fn a_well_formed_secret_passes() {
        assert_eq!(validate_secret_spec(&spec("foo-json")), Ok(()));
    }

    #[test]
    fn names_keys_labels_and_sizes_are_checked() {
        assert!(validate_secret_spec(&spec("Not_Valid")).is_err());
        let mut s = spec("ok");
        s.data.insert("bad key".into(), Bytes::from("x"));
        assert!(validate_secret_spec(&s).is_err());
        let mut s = spec("ok");
        s.labels.insert("bad label!".into(), "x".into());
        assert!(validate_secret_spec(&s).is_err());
        let mut s = spec("ok");
        s.data
            .insert("big".into(), Bytes(vec![b'x'; MAX_SECRET_DATA]));
        let err = validate_secret_spec(&s).unwrap_err();
        assert!(err.contains("Secret limit"), "{err}");
    }

    #[test]
    fn every_key_the_operator_interprets_is_reserved() {
        for key in RESERVED_KEYS {
            let mut s = spec("ok");
            s.labels.insert((*key).into(), "true".into());
            let error = validate_secret_spec(&s).unwrap_err();
            assert!(error.contains("reserved") && error.contains(key), "{error}");
            let mut s = spec("ok");
            s.annotations.insert((*key).into(), "x".into());
            assert!(validate_secret_spec(&s).unwrap_err().contains(key));
        }
        // The rest of the domain is free (e.g. the original's deployment-name label).
        let mut s = spec("ok");
        s.labels.insert(
            "quarks.cloudfoundry.org/deployment-name".into(),
            "cf".into(),
        );
        assert_eq!(validate_secret_spec(&s), Ok(()));
    }

    #[test]
    fn errors_never_contain_values() {
        let mut s = spec("ok");
        s.data
            .insert("big".into(), Bytes(b"canary-value".repeat(100_000)));
        assert!(!validate_secret_spec(&s).unwrap_err().contains("canary"));
    }
}
