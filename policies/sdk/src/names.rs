//! Kubernetes name rules a policy must respect before returning a Secret: Secret data keys,
//! DNS-subdomain object names, and label / annotation keys and values. Each check says precisely what is wrong, because the
//! message ends up in the QuarksJob's status and Events where users fix their output.
//!
//! The host validates everything again; these are here so that a policy can fail with a
//! message about the user's file instead of being rejected wholesale by the host.

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

/// The longest DNS subdomain (and Secret key) Kubernetes accepts.
pub const MAX_SUBDOMAIN_LEN: usize = 253;
/// The longest label value, and the longest name part of a qualified name.
pub const MAX_QUALIFIED_NAME_LEN: usize = 63;

/// What kind of name was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A key of a Secret's `data` (`[-._a-zA-Z0-9]+`, like a ConfigMap key).
    SecretKey,
    /// An object name that must be a DNS subdomain (RFC 1123), e.g. a Secret's name.
    SecretName,
    /// A label key: a qualified name, `[prefix/]name`.
    LabelKey,
    /// A label value: at most 63 characters, possibly empty.
    LabelValue,
    /// An annotation key: a qualified name, like a label key.
    AnnotationKey,
}

impl NameKind {
    fn describe(self) -> &'static str {
        match self {
            NameKind::SecretKey => "Secret key",
            NameKind::SecretName => "Secret name (DNS subdomain)",
            NameKind::LabelKey => "label key",
            NameKind::LabelValue => "label value",
            NameKind::AnnotationKey => "annotation key",
        }
    }
}

/// A name that Kubernetes would reject, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameError {
    pub kind: NameKind,
    pub name: String,
    pub problem: String,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not a valid {}: {}",
            shown(&self.name),
            self.kind.describe(),
            self.problem
        )
    }
}

impl core::error::Error for NameError {}

impl NameError {
    /// The reason code: `InvalidSecretKey`, `InvalidSecretName`, `InvalidLabel` or
    /// `InvalidAnnotation`.
    pub fn code(&self) -> &'static str {
        match self.kind {
            NameKind::SecretKey => "InvalidSecretKey",
            NameKind::SecretName => "InvalidSecretName",
            NameKind::LabelKey | NameKind::LabelValue => "InvalidLabel",
            NameKind::AnnotationKey => "InvalidAnnotation",
        }
    }
}

/// Quotes a name for a message, shortened so that a hostile 1 MiB key cannot flood status.
fn shown(name: &str) -> String {
    const MAX: usize = 80;
    if name.chars().count() <= MAX {
        format!("{name:?}")
    } else {
        let head: String = name.chars().take(MAX).collect();
        format!("{head:?}… ({} bytes)", name.len())
    }
}

/// Checks a Secret data key: 1 to 253 characters from `[-._a-zA-Z0-9]`, and not `.`, `..`
/// or anything starting with `..` (the kubelet would turn those into paths).
pub fn validate_secret_key(key: &str) -> Result<(), NameError> {
    let fail = |problem: String| {
        Err(NameError {
            kind: NameKind::SecretKey,
            name: key.to_string(),
            problem,
        })
    };
    if key.is_empty() {
        return fail("must not be empty".into());
    }
    if key.len() > MAX_SUBDOMAIN_LEN {
        return fail(format!(
            "is {} bytes long, at most {MAX_SUBDOMAIN_LEN} are allowed",
            key.len()
        ));
    }
    if let Some((position, c)) = key
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return fail(format!(
            "contains {c:?} at byte {position}; only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    if key == "." || key == ".." {
        return fail(format!("must not be {key:?}"));
    }
    if key.starts_with("..") {
        return fail("must not start with \"..\"".into());
    }
    Ok(())
}

/// The Secret name the original quarks-job made of an output name (`<name>` one-to-one,
/// `<name>-<key>` fanned out), so that output lands where it did: `_` becomes `-`, upper
/// case lower, every character but `a-z`, `0-9`, `-` and `.` is dropped, one leading and one
/// trailing `-` and then `.` are trimmed, and a name longer than 253 bytes is cut to 220 and
/// ends in `-` and the MD5 (hex) of the whole. The result may still be no valid name (e.g.
/// empty): check it with [`validate_dns_subdomain`].
pub fn sanitize_subdomain(name: &str) -> String {
    let lowered = name.replace('_', "-").to_lowercase();
    let mut kept: String = lowered
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        .collect();
    for edge in ['-', '.'] {
        if kept.starts_with(edge) {
            kept.remove(0);
        }
        if kept.ends_with(edge) {
            kept.pop();
        }
    }
    if kept.len() <= MAX_SUBDOMAIN_LEN {
        return kept;
    }
    use md5::Digest as _;
    let sum: String = md5::Md5::digest(kept.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Only ASCII is left: any byte index is a character boundary.
    format!("{}-{sum}", &kept[..MAX_SUBDOMAIN_LEN - 33])
}

/// Checks a DNS subdomain (RFC 1123) as Kubernetes does for object names: at most 253
/// characters, dot-separated segments of lower-case letters, digits and '-', each starting
/// and ending with a letter or digit.
pub fn validate_dns_subdomain(name: &str) -> Result<(), NameError> {
    let fail = |problem: String| {
        Err(NameError {
            kind: NameKind::SecretName,
            name: name.to_string(),
            problem,
        })
    };
    if name.is_empty() {
        return fail("must not be empty".into());
    }
    if name.len() > MAX_SUBDOMAIN_LEN {
        return fail(format!(
            "is {} bytes long, at most {MAX_SUBDOMAIN_LEN} are allowed",
            name.len()
        ));
    }
    if let Some((position, c)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.')))
    {
        let hint = if c.is_ascii_uppercase() {
            " (upper case is not allowed)"
        } else {
            ""
        };
        return fail(format!(
            "contains {c:?} at byte {position}{hint}; only lower-case letters, digits, '-' and '.' are allowed"
        ));
    }
    for (index, segment) in name.split('.').enumerate() {
        let ordinal = index + 1;
        if segment.is_empty() {
            return fail(format!(
                "dot-separated part {ordinal} is empty (leading, trailing or double '.')"
            ));
        }
        if segment.starts_with('-') || segment.ends_with('-') {
            return fail(format!(
                "dot-separated part {ordinal} ({segment:?}) must start and end with a letter or digit"
            ));
        }
    }
    Ok(())
}

/// Checks a label key (`NameKind::LabelKey`) or annotation key (`NameKind::AnnotationKey`):
/// a qualified name `[prefix/]name`, where the optional prefix is a DNS subdomain and the
/// name is 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or
/// digit.
pub fn validate_qualified_name(kind: NameKind, key: &str) -> Result<(), NameError> {
    let fail = |problem: String| {
        Err(NameError {
            kind,
            name: key.to_string(),
            problem,
        })
    };
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if name.contains('/') {
            return fail("must contain at most one '/'".into());
        }
        if let Err(error) = validate_dns_subdomain(prefix) {
            return fail(format!("the prefix before '/' {}", error.problem));
        }
    }
    if name.is_empty() {
        return fail("the name part must not be empty".into());
    }
    if let Err(problem) = check_qualified_part(name) {
        return fail(format!("the name part {problem}"));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and
/// ending with a letter or digit.
pub fn validate_label_value(value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Ok(());
    }
    check_qualified_part(value).map_err(|problem| NameError {
        kind: NameKind::LabelValue,
        name: value.to_string(),
        problem,
    })
}

/// The shared rule of label values and the name part of qualified names.
fn check_qualified_part(part: &str) -> Result<(), String> {
    if part.len() > MAX_QUALIFIED_NAME_LEN {
        return Err(format!(
            "is {} bytes long, at most {MAX_QUALIFIED_NAME_LEN} are allowed",
            part.len()
        ));
    }
    if let Some((position, c)) = part
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "contains {c:?} at byte {position}; only letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alphanumeric(part.chars().next()) || !alphanumeric(part.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_names_are_sanitised_as_the_original_did() {
        for (name, sanitised) in [
            ("DB_PASSWORD", "db-password"),
            ("foo-json", "foo-json"),
            ("-My_Secret.", "my-secret"),
            ("a b/c:d", "abcd"),
            ("--x--", "-x-"),
            ("..x", ".x"),
            ("", ""),
        ] {
            assert_eq!(sanitize_subdomain(name), sanitised, "{name:?}");
        }
        let long = "a".repeat(300);
        let cut = sanitize_subdomain(&long);
        assert_eq!(cut.len(), MAX_SUBDOMAIN_LEN);
        // MD5 of 300 'a's.
        assert!(cut.starts_with(&"a".repeat(220)));
        assert_eq!(&cut[220..221], "-");
        assert!(cut[221..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            validate_dns_subdomain(&sanitize_subdomain("DB_PASSWORD")),
            Ok(())
        );
        assert!(validate_dns_subdomain(&sanitize_subdomain("--x--")).is_err());
    }

    use super::*;

    #[test]
    fn secret_keys_kubernetes_accepts() {
        for key in [
            "a",
            "foo",
            "tls.crt",
            "FOO_bar-1.2",
            ".hidden",
            "a..b",
            &"k".repeat(253),
        ] {
            assert_eq!(validate_secret_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn secret_keys_kubernetes_rejects_with_the_reason() {
        let cases = [
            ("", "must not be empty"),
            ("a b", "contains ' ' at byte 1"),
            ("x/y", "contains '/' at byte 1"),
            ("é", "contains 'é' at byte 0"),
            (".", "must not be \".\""),
            ("..", "must not be \"..\""),
            ("..a", "must not start with \"..\""),
        ];
        for (key, problem) in cases {
            let error = validate_secret_key(key).expect_err(key);
            assert!(error.problem.contains(problem), "{key}: {error}");
            assert_eq!(error.code(), "InvalidSecretKey");
        }
        let long = "k".repeat(254);
        let error = validate_secret_key(&long).expect_err("too long");
        assert!(error.problem.contains("254 bytes long"), "{error}");
        // The message quotes a shortened name, not 254 characters.
        assert!(error.to_string().len() < 200, "{error}");
    }

    #[test]
    fn dns_subdomains_kubernetes_accepts() {
        for name in ["a", "foo-json", "a.b.c", "0-9", "x1.y2-z", &"a".repeat(253)] {
            assert_eq!(validate_dns_subdomain(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn dns_subdomains_kubernetes_rejects_with_the_reason() {
        let cases = [
            ("", "must not be empty"),
            ("Foo", "contains 'F' at byte 0 (upper case is not allowed)"),
            ("foo_bar", "contains '_' at byte 3"),
            ("-foo", "part 1 (\"-foo\") must start and end"),
            ("foo.bar-", "part 2 (\"bar-\") must start and end"),
            ("foo..bar", "part 2 is empty"),
            (".foo", "part 1 is empty"),
            ("foo.", "part 2 is empty"),
        ];
        for (name, problem) in cases {
            let error = validate_dns_subdomain(name).expect_err(name);
            assert!(error.problem.contains(problem), "{name}: {error}");
            assert_eq!(error.code(), "InvalidSecretName");
        }
        let error = validate_dns_subdomain(&"a".repeat(254)).expect_err("too long");
        assert!(error.problem.contains("254 bytes long"), "{error}");
    }

    #[test]
    fn label_keys_and_values_kubernetes_accepts() {
        for key in [
            "key",
            "app.kubernetes.io/name",
            "quarks.cloudfoundry.org/container-name",
            "A_b.c-1",
        ] {
            assert_eq!(
                validate_qualified_name(NameKind::LabelKey, key),
                Ok(()),
                "{key}"
            );
        }
        for value in ["", "value", "remote-7", "A.b_c-9", &"v".repeat(63)] {
            assert_eq!(validate_label_value(value), Ok(()), "{value}");
        }
    }

    #[test]
    fn label_keys_and_values_kubernetes_rejects_with_the_reason() {
        let keys = [
            ("", "name part must not be empty"),
            ("a/b/c", "at most one '/'"),
            ("Example.com/x", "prefix before '/' contains 'E'"),
            ("example.com/", "name part must not be empty"),
            ("-x", "must start and end"),
            ("x y", "contains ' ' at byte 1"),
        ];
        for (key, problem) in keys {
            let error = validate_qualified_name(NameKind::LabelKey, key).expect_err(key);
            assert!(error.problem.contains(problem), "{key}: {error}");
            assert_eq!(error.code(), "InvalidLabel");
        }
        let error = validate_qualified_name(NameKind::AnnotationKey, "a/b/c").expect_err("key");
        assert_eq!(error.code(), "InvalidAnnotation");
        for (value, problem) in [
            ("has space", "contains ' '"),
            ("-x", "must start and end"),
            ("x.", "must start and end"),
            (&"v".repeat(64) as &str, "64 bytes long"),
        ] {
            let error = validate_label_value(value).expect_err(value);
            assert!(error.problem.contains(problem), "{value}: {error}");
            assert_eq!(error.code(), "InvalidLabel");
        }
    }
}
