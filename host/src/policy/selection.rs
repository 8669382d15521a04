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
}

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
    let (scheme, rest) = text.split_once(':').ok_or_else(|| {
        SelectionError(format!(
            "{world} policy {text:?} is not a policy reference; use builtin:<name>, \
             configmap:<name>/<key>[@sha256:<digest>] or catalog:<name>/<key>[@sha256:<digest>]"
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
            "{world} policy {text:?}: unknown scheme {scheme:?}; use builtin:, configmap: or catalog:"
        ))),
    }
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
            ("oci://registry/p@sha256:00", "unknown scheme"),
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
