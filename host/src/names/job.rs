//! Names and label values the operator derives from a QuarksJob's name: the `qjob-name` label
//! value and the deterministic Job name of each run.
//!
//! Owns: fitting derived names into Kubernetes' limits (63-character DNS labels and label
//! values) in a stable way, so that the same QuarksJob and run always give the same name, in
//! this release and the next. Must not: talk to the API, or depend on anything but its
//! arguments (a name that changed between releases would make a restarted operator start a
//! second Job for a run that already has one).

use quarks_policy_sdk::names::{validate_dns_subdomain, validate_label_value};
use sha2::{Digest, Sha256};

/// Label on every Job (and its pod template) naming the QuarksJob it runs for.
pub const QJOB_NAME_LABEL: &str = "quarks.cloudfoundry.org/qjob-name";

/// Annotation on a run's Job: the run number (decimal).
pub const RUN_ANNOTATION: &str = "quarks.cloudfoundry.org/run";
/// Annotation on a run's Job: the strategy the trigger decision writes back (`manual`, `done`,
/// ...), absent when nothing is written back.
pub const WRITE_STRATEGY_ANNOTATION: &str = "quarks.cloudfoundry.org/write-strategy";
/// Annotation on a run's Job: the digest of the referenced config content the run started with.
pub const CONFIG_DIGEST_ANNOTATION: &str = "quarks.cloudfoundry.org/config-digest";
/// Annotation on a run's Job: the digest of the trigger policy module that decided the run.
pub const TRIGGER_POLICY_ANNOTATION: &str = "quarks.cloudfoundry.org/trigger-policy";

/// Longest DNS label (RFC 1123) and longest label value.
pub const MAX_LABEL_LEN: usize = 63;

/// Hex characters of the name hash used when a name must be shortened: 40 bits, so two
/// different long names in one namespace sharing a truncated prefix practically never collide.
const HASH_LEN: usize = 10;

/// The `qjob-name` label value: the name itself when it is a valid label value (≤ 63 chars),
/// else a stable shortened form with a hash suffix (still a valid label value).
///
/// QuarksJob names are DNS subdomains of up to 253 characters, so only the length can make
/// them invalid in practice; any other invalid character is replaced all the same rather than
/// producing a label the API server rejects.
pub fn qjob_name_label_value(qjob_name: &str) -> String {
    if is_label_value(qjob_name) {
        return qjob_name.to_owned();
    }
    let hash = name_hash(qjob_name);
    let sanitized: String = qjob_name
        .chars()
        .map(|c| if is_label_value_char(c) { c } else { '-' })
        .collect();
    let budget = MAX_LABEL_LEN - HASH_LEN - 1;
    let prefix = trim_to_alphanumeric_ends(truncate(&sanitized, budget));
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

/// Deterministic Job name of run N: `<qjob>-<N>`, shortened with a stable hash when it would not
/// fit 63 characters (Job names become the `job-name` label of pods), always a valid DNS label.
///
/// A shortened name is `<prefix>-<hash>-<N>`: the run number stays readable at the end, and the
/// hash (of the full QuarksJob name, so every run of one QuarksJob shares it) keeps two long
/// names with the same prefix apart. Dots, valid in QuarksJob names but not in DNS labels, also
/// force the hashed form, so that `a.b` and `a-b` never share Job names.
pub fn job_name(qjob_name: &str, run: u64) -> String {
    let plain = format!("{qjob_name}-{run}");
    if is_dns_label(&plain) {
        return plain;
    }
    let hash = name_hash(qjob_name);
    let sanitized: String = qjob_name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let suffix = format!("{hash}-{run}");
    // u64::MAX has 20 digits, so the suffix is at most 31 characters and the budget positive.
    let budget = MAX_LABEL_LEN.saturating_sub(suffix.len() + 1);
    let prefix = trim_to_alphanumeric_ends(truncate(&sanitized, budget));
    if prefix.is_empty() {
        suffix
    } else {
        format!("{prefix}-{suffix}")
    }
}

/// DNS label (RFC 1123): a DNS subdomain of one part, at most 63 characters. The rules are the
/// policy SDK's, shared with every policy that validates names.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= MAX_LABEL_LEN && !s.contains('.') && validate_dns_subdomain(s).is_ok()
}

/// Kubernetes label value (the policy SDK's rule): empty, or at most 63 letters, digits, '-',
/// '_' or '.', starting and ending with a letter or digit.
pub fn is_label_value(s: &str) -> bool {
    validate_label_value(s).is_ok()
}

fn is_label_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// First `HASH_LEN` hex characters of sha256(name): lower-case hex, so valid in DNS labels.
fn name_hash(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(HASH_LEN);
    hex
}

/// At most `max` characters; callers pass ASCII-only strings, but cutting on a char boundary
/// keeps this safe for anything.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// Label values and DNS labels must begin and end with an alphanumeric character; truncation
/// can leave a `-` or `.` at either end.
fn trim_to_alphanumeric_ends(s: &str) -> &str {
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_qjob_name_is_its_own_label_value() {
        assert_eq!(qjob_name_label_value("deploy-errand"), "deploy-errand");
        assert_eq!(qjob_name_label_value("cf.deploy"), "cf.deploy");
    }

    #[test]
    fn name_of_exactly_63_characters_is_kept_as_label_value() {
        let name = "a".repeat(63);
        assert_eq!(qjob_name_label_value(&name), name);
    }

    #[test]
    fn long_qjob_name_becomes_a_stable_hashed_label_value() {
        let name = format!("{}-generator", "very-long-quarks-job-name".repeat(4));
        let value = qjob_name_label_value(&name);
        assert!(is_label_value(&value), "{value}");
        assert_eq!(value.len(), MAX_LABEL_LEN);
        assert!(value.starts_with("very-long-quarks-job-name"));
        assert_eq!(value, qjob_name_label_value(&name), "same name, same value");
        // Pinned: the value is an interface (label selectors of a running operator find Jobs
        // created by the previous release with it).
        assert_eq!(
            value,
            format!(
                "{}-{}",
                &name[..52],
                &hex::encode(Sha256::digest(name.as_bytes()))[..10]
            )
        );
    }

    #[test]
    fn long_names_sharing_a_prefix_get_different_label_values() {
        let base = "x".repeat(80);
        let a = qjob_name_label_value(&format!("{base}-a"));
        let b = qjob_name_label_value(&format!("{base}-b"));
        assert_ne!(a, b);
        assert!(is_label_value(&a) && is_label_value(&b));
    }

    #[test]
    fn truncation_never_leaves_a_separator_before_the_hash() {
        // The 52nd character is a dot: the prefix must not end in it.
        let name = format!("{}.{}", "a".repeat(51), "b".repeat(40));
        let value = qjob_name_label_value(&name);
        assert!(is_label_value(&value), "{value}");
        assert!(!value.contains(".-"), "{value}");
    }

    #[test]
    fn job_name_is_qjob_name_dash_run_when_it_fits() {
        assert_eq!(job_name("deploy-errand", 1), "deploy-errand-1");
        assert_eq!(job_name("deploy-errand", 42), "deploy-errand-42");
    }

    #[test]
    fn job_name_of_long_qjob_fits_a_dns_label_and_keeps_the_run_number() {
        let name = "a-very-long-quarks-job-name-that-is-used-for-generating-certificates";
        for run in [1, 7, 1234, u64::MAX] {
            let job = job_name(name, run);
            assert!(is_dns_label(&job), "{job}");
            assert!(job.ends_with(&format!("-{run}")), "{job}");
            assert!(job.starts_with("a-very-long"), "{job}");
        }
    }

    #[test]
    fn job_names_of_one_qjob_differ_per_run_and_repeat_per_run() {
        let name = "n".repeat(70);
        assert_ne!(job_name(&name, 1), job_name(&name, 2));
        assert_eq!(job_name(&name, 3), job_name(&name, 3));
    }

    #[test]
    fn job_name_with_dots_is_a_dns_label_distinct_from_the_dashed_name() {
        let dotted = job_name("cf.deploy", 1);
        assert!(is_dns_label(&dotted), "{dotted}");
        assert_ne!(dotted, job_name("cf-deploy", 1));
        assert_eq!(job_name("cf-deploy", 1), "cf-deploy-1");
    }

    #[test]
    fn job_name_at_the_length_limit_is_not_hashed() {
        let name = "b".repeat(61);
        assert_eq!(job_name(&name, 9), format!("{name}-9"));
        let hashed = job_name(&name, 10);
        assert!(is_dns_label(&hashed) && hashed.ends_with("-10"), "{hashed}");
    }

    #[test]
    fn dns_label_and_label_value_predicates_follow_kubernetes() {
        assert!(is_dns_label("a"));
        assert!(is_dns_label("0abc-9"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a-"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label("a.b"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_label_value(""));
        assert!(is_label_value("A_b.c-D"));
        assert!(!is_label_value("_a"));
        assert!(!is_label_value("a/b"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
