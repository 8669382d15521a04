//! Kubernetes name rules a policy must respect before returning a Secret: Secret data keys
//! and DNS-subdomain object names. Each check says precisely what is wrong, because the
//! message ends up in the QuarksJob's status and Events where users fix their output.
//!
//! The host validates everything again; these are here so that a policy can fail with a
//! message about the user's file instead of being rejected wholesale by the host.

use thiserror::Error;

/// The longest DNS subdomain (and Secret key) Kubernetes accepts.
pub const MAX_SUBDOMAIN_LEN: usize = 253;

/// What kind of name was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A key of a Secret's `data` (`[-._a-zA-Z0-9]+`, like a ConfigMap key).
    SecretKey,
    /// An object name that must be a DNS subdomain (RFC 1123), e.g. a Secret's name.
    SecretName,
}

impl NameKind {
    fn describe(self) -> &'static str {
        match self {
            NameKind::SecretKey => "Secret key",
            NameKind::SecretName => "Secret name (DNS subdomain)",
        }
    }
}

/// A name that Kubernetes would reject, and why.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{} is not a valid {}: {problem}", shown(name), kind.describe())]
pub struct NameError {
    pub kind: NameKind,
    pub name: String,
    pub problem: String,
}

impl NameError {
    /// The reason code: `InvalidSecretKey` or `InvalidSecretName`.
    pub fn code(&self) -> &'static str {
        match self.kind {
            NameKind::SecretKey => "InvalidSecretKey",
            NameKind::SecretName => "InvalidSecretName",
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

#[cfg(test)]
mod tests {
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
}
