//! Which policy a namespace asked for: the selection ConfigMap and the reference syntax.
//! Pure parsing; fetching and compiling what a reference names happens in
//! `operator::policies`.
//!
//! A monitored namespace selects its policies with a ConfigMap named
//! [`SELECTION_CONFIG_MAP`] whose `data` has a key per world:
//!
//! ```yaml
//! apiVersion: v1
//! kind: ConfigMap
//! metadata: {name: quarks-job-policies}
//! data:
//!   trigger: configmap:approval-policy/policy.wasm@sha256:3f9a…   # optional pin
//!   output: builtin:output-default
//! ```
//!
//! | reference | the module is |
//! |---|---|
//! | `builtin:<name>` | a policy built into the operator |
//! | `configmap:<name>/<key>[@sha256:<hex>]` | `binaryData.<key>` of ConfigMap `<name>` in the same namespace |
//! | `catalog:<name>/<key>[@sha256:<hex>]` | the same, from the catalog: a ConfigMap in the operator's namespace |
//! | `oci://<registry>/<repository>@sha256:<hex>` | an OCI artifact (one `application/wasm` layer), pulled by manifest digest |
//! | `oci://<registry>/<repository>:<tag>` | the same, the tag resolved to a digest when first used |
//!
//! An optional `pull-secret` key names a `kubernetes.io/dockerconfigjson` Secret of the
//! namespace with credentials for OCI registries.
//!
//! A world without a key (or a namespace without the ConfigMap) uses the built-in default.
//! Anything unparsable is an error for that namespace, never a silent fallback.

use std::collections::BTreeMap;

use super::builtin::{self, Builtin};
use super::{PolicyDigest, World};

/// The fixed name of the selection ConfigMap in a monitored namespace.
pub const SELECTION_CONFIG_MAP: &str = "quarks-job-policies";

/// What a selection names for one world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyRef {
    Builtin(&'static Builtin),
    ConfigMap(ModuleRef),
    Oci(OciRef),
}

/// An artifact in an OCI registry: `registry/repository` and a tag or a manifest digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// The manifest digest (`sha256:<hex>`), when pinned.
    pub digest: Option<String>,
}

impl OciRef {
    /// `registry/repository@digest` or `registry/repository:tag`, without the scheme.
    pub fn without_scheme(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => format!("{}/{}@{digest}", self.registry, self.repository),
            (None, Some(tag)) => format!("{}/{}:{tag}", self.registry, self.repository),
            (None, None) => format!("{}/{}", self.registry, self.repository),
        }
    }
}

/// The key of the selection ConfigMap naming a pull secret for OCI references.
pub const PULL_SECRET_KEY: &str = "pull-secret";

/// A module stored in a ConfigMap's `binaryData`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleRef {
    /// Where the ConfigMap lives: the QuarksJob's namespace or the operator's catalog.
    pub place: ModulePlace,
    pub name: String,
    pub key: String,
    /// The digest the module must have, when pinned.
    pub pin: Option<PolicyDigest>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModulePlace {
    /// The namespace of the QuarksJob the decision is for.
    SameNamespace,
    /// The operator's namespace (`--operator-namespace`), shared by all namespaces.
    Catalog,
}

impl ModuleRef {
    /// The namespace holding the module's ConfigMap, for a decision in `namespace`.
    pub fn namespace<'a>(&self, namespace: &'a str, operator_namespace: &'a str) -> &'a str {
        match self.place {
            ModulePlace::SameNamespace => namespace,
            ModulePlace::Catalog => operator_namespace,
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyRef::Builtin(b) => write!(f, "builtin:{}", b.name),
            PolicyRef::ConfigMap(m) => {
                let scheme = match m.place {
                    ModulePlace::SameNamespace => "configmap",
                    ModulePlace::Catalog => "catalog",
                };
                write!(f, "{scheme}:{}/{}", m.name, m.key)?;
                if let Some(pin) = m.pin {
                    write!(f, "@{pin}")?;
                }
                Ok(())
            }
            PolicyRef::Oci(oci) => write!(f, "oci://{}", oci.without_scheme()),
        }
    }
}

/// Why a selection cannot be used. The message says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectionError(pub String);

/// The reference a selection gives for `world`: the ConfigMap's `data[world]`, or the
/// built-in default when there is no such key.
pub fn selected(
    data: Option<&BTreeMap<String, String>>,
    world: World,
) -> Result<PolicyRef, SelectionError> {
    match data.and_then(|d| d.get(world.as_str())) {
        Some(text) => parse_policy_ref(text, world),
        None => Ok(PolicyRef::Builtin(default_for(world))),
    }
}

/// The built-in policy a world uses when nothing else is selected.
pub fn default_for(world: World) -> &'static Builtin {
    match world {
        World::Trigger => &builtin::TRIGGER_DEFAULT,
        World::Output => &builtin::OUTPUT_DEFAULT,
    }
}

/// Parses one reference (see the module docs), checking that a built-in is of `world`.
pub fn parse_policy_ref(text: &str, world: World) -> Result<PolicyRef, SelectionError> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("oci://") {
        return parse_oci(rest)
            .map(PolicyRef::Oci)
            .map_err(|why| SelectionError(format!("{world} policy {text:?}: {why}")));
    }
    let (scheme, rest) = text.split_once(':').ok_or_else(|| {
        SelectionError(format!(
            "{world} policy {text:?} is not a policy reference; use builtin:<name>, \
             configmap:<name>/<key>[@sha256:<digest>], catalog:<name>/<key>[@sha256:<digest>] \
             or oci://<registry>/<repository>@sha256:<digest>"
        ))
    })?;
    match scheme {
        "builtin" => {
            let found = builtin::builtin(rest).ok_or_else(|| {
                let known: Vec<&str> = builtin::all().iter().map(|b| b.name).collect();
                SelectionError(format!(
                    "{world} policy {text:?}: no built-in policy named {rest:?}; known: {}",
                    known.join(", ")
                ))
            })?;
            if found.world != world {
                return Err(SelectionError(format!(
                    "{world} policy {text:?}: builtin:{} implements the {} world",
                    found.name, found.world
                )));
            }
            Ok(PolicyRef::Builtin(found))
        }
        "configmap" | "catalog" => {
            let place = if scheme == "catalog" {
                ModulePlace::Catalog
            } else {
                ModulePlace::SameNamespace
            };
            let (location, pin) = match rest.split_once('@') {
                Some((location, pin)) => {
                    let digest = PolicyDigest::parse(pin).ok_or_else(|| {
                        SelectionError(format!(
                            "{world} policy {text:?}: the pin {pin:?} is not sha256:<64 hex digits>"
                        ))
                    })?;
                    (location, Some(digest))
                }
                None => (rest, None),
            };
            let (name, key) = location
                .split_once('/')
                .filter(|(name, key)| valid_name(name) && valid_key(key))
                .ok_or_else(|| {
                    SelectionError(format!(
                        "{world} policy {text:?}: expected {scheme}:<configmap name>/<binaryData key>"
                    ))
                })?;
            Ok(PolicyRef::ConfigMap(ModuleRef {
                place,
                name: name.to_owned(),
                key: key.to_owned(),
                pin,
            }))
        }
        _ => Err(SelectionError(format!(
            "{world} policy {text:?}: unknown scheme {scheme:?}; use builtin:, configmap:, catalog: or oci://"
        ))),
    }
}

/// `registry[:port]/repository[:tag|@sha256:<hex>]` (after `oci://`).
fn parse_oci(text: &str) -> Result<OciRef, String> {
    let usage = "expected oci://<registry>/<repository>@sha256:<digest> or oci://<registry>/<repository>:<tag>";
    let (registry, rest) = text
        .split_once('/')
        .filter(|(r, rest)| !r.is_empty() && !rest.is_empty())
        .ok_or(usage)?;
    let (path, digest) = match rest.split_once('@') {
        Some((path, digest)) => {
            PolicyDigest::parse(digest)
                .ok_or_else(|| format!("the digest {digest:?} is not sha256:<64 hex digits>"))?;
            (path, Some(digest.to_owned()))
        }
        None => (rest, None),
    };
    // A tag follows the last `:` after the last `/` (a registry port has its own `:`).
    let (repository, tag) = match path.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag.to_owned())),
        _ => (path, None),
    };
    if digest.is_none() && tag.is_none() {
        return Err(format!("{usage}: give a digest (recommended) or a tag"));
    }
    let repository_ok = repository.split('/').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    });
    let tag_ok = tag.as_deref().is_none_or(|t| {
        !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    if !repository_ok || !tag_ok || registry.contains(char::is_whitespace) {
        return Err(usage.to_owned());
    }
    Ok(OciRef {
        registry: registry.to_owned(),
        repository: repository.to_owned(),
        tag,
        digest,
    })
}

/// A ConfigMap name: a DNS subdomain (lower-case alphanumerics, `-`, `.`; ≤ 253).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A ConfigMap key: alphanumerics, `-`, `_`, `.`; ≤ 253.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_selection_means_the_built_in_defaults() {
        assert_eq!(
            selected(None, World::Trigger),
            Ok(PolicyRef::Builtin(&builtin::TRIGGER_DEFAULT))
        );
        let only_trigger = data(&[("trigger", "builtin:trigger-default")]);
        assert_eq!(
            selected(Some(&only_trigger), World::Output),
            Ok(PolicyRef::Builtin(&builtin::OUTPUT_DEFAULT))
        );
    }

    #[test]
    fn module_references_round_trip_through_their_text() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        for text in [
            "configmap:approval/policy.wasm".to_string(),
            format!("catalog:shared-policies/approval_v2.wasm@{digest}"),
            "builtin:output-default".to_string(),
        ] {
            let world = if text.contains("output") {
                World::Output
            } else {
                World::Trigger
            };
            let parsed = parse_policy_ref(&text, world).unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        let pinned = parse_policy_ref(&format!("configmap:p/k@{digest}"), World::Trigger);
        let Ok(PolicyRef::ConfigMap(module)) = pinned else {
            panic!("{pinned:?}")
        };
        assert_eq!(module.place, ModulePlace::SameNamespace);
        assert_eq!(module.pin.map(|d| d.to_string()), Some(digest));
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            ("approval.wasm", "not a policy reference"),
            ("builtin:nope", "no built-in policy named"),
            ("builtin:output-default", "implements the output world"),
            (
                "configmap:approval",
                "expected configmap:<configmap name>/<binaryData key>",
            ),
            ("configmap:Approval/x", "expected configmap:"),
            ("configmap:a/b@sha256:123", "is not sha256:<64 hex digits>"),
            (
                "oci://registry/p@sha256:00",
                "is not sha256:<64 hex digits>",
            ),
            ("oci://registry/p", "give a digest (recommended) or a tag"),
            ("oci://registry", "expected oci://"),
            ("oci://registry/Policies:v1", "expected oci://"),
            ("ftp:x/y", "unknown scheme"),
        ];
        for (text, expected) in cases {
            let error = parse_policy_ref(text, World::Trigger).unwrap_err();
            assert!(
                error.0.contains(expected),
                "{text}: {error} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn oci_references_take_a_digest_or_a_tag() {
        let digest = format!("sha256:{}", "cd".repeat(32));
        let text = format!("oci://127.0.0.1:5000/policies/approval@{digest}");
        let Ok(PolicyRef::Oci(oci)) = parse_policy_ref(&text, World::Trigger) else {
            panic!()
        };
        assert_eq!(oci.registry, "127.0.0.1:5000");
        assert_eq!(oci.repository, "policies/approval");
        assert_eq!(oci.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(oci.tag, None);
        assert_eq!(PolicyRef::Oci(oci).to_string(), text);
        let Ok(PolicyRef::Oci(tagged)) =
            parse_policy_ref("oci://ghcr.io/acme/approval:v1.2", World::Trigger)
        else {
            panic!()
        };
        assert_eq!(tagged.tag.as_deref(), Some("v1.2"));
        assert_eq!(tagged.without_scheme(), "ghcr.io/acme/approval:v1.2");
    }

    #[test]
    fn catalog_modules_live_in_the_operator_namespace() {
        let PolicyRef::ConfigMap(module) =
            parse_policy_ref("catalog:shared/p.wasm", World::Output).unwrap()
        else {
            panic!()
        };
        assert_eq!(module.namespace("team-a", "quarks"), "quarks");
        let PolicyRef::ConfigMap(module) =
            parse_policy_ref("configmap:mine/p.wasm", World::Output).unwrap()
        else {
            panic!()
        };
        assert_eq!(module.namespace("team-a", "quarks"), "team-a");
    }
}
