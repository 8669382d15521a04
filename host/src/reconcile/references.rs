//! Which ConfigMaps and Secrets a pod template references (spec.md §2): the objects whose
//! content decides whether a QuarksJob with `updateOnConfigChange` re-runs, and whose absence
//! makes a run wait.
//!
//! Owns: the one list of places in a PodSpec where such references live ([`reference_sites`]),
//! and the rewrite of versioned-secret references to their newest version, which walks the same
//! list so the two can never disagree. Must not: fetch the objects or judge their content (that
//! is the reconciler's and [`super::digest`]'s job), or ever make a reference older.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};

use crate::names::versioned::{parse_versioned_name, versioned_name};

/// The kind of object a pod template references for its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    /// A `v1` ConfigMap.
    ConfigMap,
    /// A `v1` Secret.
    Secret,
}

impl ConfigKind {
    /// Lower-case kind as used in messages and digests (`configmap`, `secret`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "configmap",
            ConfigKind::Secret => "secret",
        }
    }
}

/// A ConfigMap or Secret (in the pod's namespace) that a pod template references.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigRef {
    /// ConfigMap or Secret.
    pub kind: ConfigKind,
    /// Its name.
    pub name: String,
    /// The pod starts without it (every reference to it says `optional: true`), so a run need
    /// not wait for it.
    pub optional: bool,
}

impl ConfigRef {
    /// `configmap/NAME` or `secret/NAME`, as conditions and Events name it.
    pub fn display(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.name)
    }
}

impl std::fmt::Display for ConfigRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// Volumes (configMap, secret, projected configMap/secret sources), env[].valueFrom
/// (configMapKeyRef, secretKeyRef) and envFrom of init containers and containers; deduplicated
/// by (kind, name) — optional only if every reference to it is optional — sorted.
///
/// Every volume counts, mounted or not: the kubelet sets up all of a pod's volumes, so an
/// unmounted secret volume still keeps the pod from starting when the Secret is missing.
/// References with an empty name (invalid, rejected by the API server) are left out.
pub fn referenced_config(pod: &PodSpec) -> Vec<ConfigRef> {
    // The walk is written once, over a mutable spec, so that the rewrite of versioned secret
    // references visits exactly these places; a copy of a PodSpec costs microseconds.
    let mut copy = pod.clone();
    let mut refs: Vec<ConfigRef> = Vec::new();
    for site in reference_sites(&mut copy) {
        if site.name.is_empty() {
            continue;
        }
        match refs
            .iter_mut()
            .find(|r| r.kind == site.kind && r.name == *site.name)
        {
            Some(existing) => existing.optional &= site.optional,
            None => refs.push(ConfigRef {
                kind: site.kind,
                name: site.name.clone(),
                optional: site.optional,
            }),
        }
    }
    refs.sort();
    refs
}

/// One place in a PodSpec that names a ConfigMap or Secret.
pub(crate) struct ReferenceSite<'a> {
    pub kind: ConfigKind,
    /// The referenced name, writable so references can be redirected in the Job's copy.
    pub name: &'a mut String,
    /// This reference says `optional: true`.
    pub optional: bool,
}

/// Every ConfigMap/Secret reference in `pod`, in document order.
pub(crate) fn reference_sites(pod: &mut PodSpec) -> Vec<ReferenceSite<'_>> {
    let mut sites = Vec::new();
    for volume in pod.volumes.iter_mut().flatten() {
        if let Some(cm) = volume.config_map.as_mut() {
            sites.push(ReferenceSite {
                kind: ConfigKind::ConfigMap,
                name: &mut cm.name,
                optional: cm.optional.unwrap_or(false),
            });
        }
        if let Some(secret) = volume.secret.as_mut() {
            let optional = secret.optional.unwrap_or(false);
            if let Some(name) = secret.secret_name.as_mut() {
                sites.push(ReferenceSite {
                    kind: ConfigKind::Secret,
                    name,
                    optional,
                });
            }
        }
        let projections = volume.projected.as_mut().and_then(|p| p.sources.as_mut());
        for source in projections.into_iter().flatten() {
            if let Some(cm) = source.config_map.as_mut() {
                sites.push(ReferenceSite {
                    kind: ConfigKind::ConfigMap,
                    name: &mut cm.name,
                    optional: cm.optional.unwrap_or(false),
                });
            }
            if let Some(secret) = source.secret.as_mut() {
                sites.push(ReferenceSite {
                    kind: ConfigKind::Secret,
                    name: &mut secret.name,
                    optional: secret.optional.unwrap_or(false),
                });
            }
        }
    }
    let containers = pod
        .init_containers
        .iter_mut()
        .flatten()
        .chain(pod.containers.iter_mut());
    for container in containers {
        container_sites(container, &mut sites);
    }
    sites
}

fn container_sites<'a>(container: &'a mut Container, sites: &mut Vec<ReferenceSite<'a>>) {
    for var in container.env.iter_mut().flatten() {
        let Some(source) = var.value_from.as_mut() else {
            continue;
        };
        if let Some(cm) = source.config_map_key_ref.as_mut() {
            sites.push(ReferenceSite {
                kind: ConfigKind::ConfigMap,
                name: &mut cm.name,
                optional: cm.optional.unwrap_or(false),
            });
        }
        if let Some(secret) = source.secret_key_ref.as_mut() {
            sites.push(ReferenceSite {
                kind: ConfigKind::Secret,
                name: &mut secret.name,
                optional: secret.optional.unwrap_or(false),
            });
        }
    }
    for from in container.env_from.iter_mut().flatten() {
        if let Some(cm) = from.config_map_ref.as_mut() {
            sites.push(ReferenceSite {
                kind: ConfigKind::ConfigMap,
                name: &mut cm.name,
                optional: cm.optional.unwrap_or(false),
            });
        }
        if let Some(secret) = from.secret_ref.as_mut() {
            sites.push(ReferenceSite {
                kind: ConfigKind::Secret,
                name: &mut secret.name,
                optional: secret.optional.unwrap_or(false),
            });
        }
    }
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

    fn pod(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).expect("valid PodSpec fixture")
    }

    fn cm(name: &str, optional: bool) -> ConfigRef {
        ConfigRef {
            kind: ConfigKind::ConfigMap,
            name: name.into(),
            optional,
        }
    }

    fn secret(name: &str, optional: bool) -> ConfigRef {
        ConfigRef {
            kind: ConfigKind::Secret,
            name: name.into(),
            optional,
        }
    }

    #[test]
    fn pod_without_config_references_nothing() {
        let spec = pod(json!({
            "containers": [{"name": "busybox", "image": "busybox", "command": ["sleep", "1"],
                            "env": [{"name": "A", "value": "b"}]}],
            "volumes": [{"name": "scratch", "emptyDir": {}}]
        }));
        assert!(referenced_config(&spec).is_empty());
    }

    #[test]
    fn every_kind_of_reference_is_found_in_init_and_regular_containers() {
        let spec = pod(json!({
            "initContainers": [{
                "name": "init", "image": "busybox",
                "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "init-pw", "key": "password"}}}],
                "envFrom": [{"configMapRef": {"name": "init-env"}}]
            }],
            "containers": [{
                "name": "main", "image": "busybox",
                "env": [
                    {"name": "HOST", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "host"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                ],
                "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "CREDS_"}]
            }],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app-config"}},
                {"name": "tls", "secret": {"secretName": "tls-cert"}},
                {"name": "all", "projected": {"sources": [
                    {"configMap": {"name": "projected-cm"}},
                    {"secret": {"name": "projected-secret"}},
                    {"serviceAccountToken": {"path": "token"}},
                    {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
                ]}}
            ]
        }));
        assert_eq!(
            referenced_config(&spec),
            vec![
                cm("app-config", false),
                cm("init-env", false),
                cm("projected-cm", false),
                cm("settings", false),
                secret("creds", false),
                secret("init-pw", false),
                secret("projected-secret", false),
                secret("tls-cert", false),
            ]
        );
    }

    #[test]
    fn duplicate_references_are_reported_once() {
        let spec = pod(json!({
            "containers": [
                {"name": "a", "image": "busybox", "envFrom": [{"configMapRef": {"name": "shared"}}]},
                {"name": "b", "image": "busybox", "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "shared", "key": "x"}}}
                ]}
            ],
            "volumes": [{"name": "shared", "configMap": {"name": "shared"}}]
        }));
        assert_eq!(referenced_config(&spec), vec![cm("shared", false)]);
    }

    #[test]
    fn reference_is_optional_only_when_every_use_is_optional() {
        let spec = pod(json!({
            "containers": [{"name": "a", "image": "busybox",
                "envFrom": [
                    {"secretRef": {"name": "maybe", "optional": true}},
                    {"secretRef": {"name": "mixed", "optional": true}},
                    {"configMapRef": {"name": "explicit-false", "optional": false}}
                ]}],
            "volumes": [
                {"name": "maybe", "secret": {"secretName": "maybe", "optional": true}},
                {"name": "mixed", "secret": {"secretName": "mixed"}}
            ]
        }));
        assert_eq!(
            referenced_config(&spec),
            vec![
                cm("explicit-false", false),
                secret("maybe", true),
                secret("mixed", false)
            ]
        );
    }

    #[test]
    fn configmap_and_secret_of_the_same_name_are_different_references() {
        let spec = pod(json!({
            "containers": [{"name": "a", "image": "busybox", "envFrom": [
                {"configMapRef": {"name": "app"}}, {"secretRef": {"name": "app"}}
            ]}]
        }));
        assert_eq!(
            referenced_config(&spec),
            vec![cm("app", false), secret("app", false)]
        );
    }

    #[test]
    fn secret_volume_without_a_name_and_empty_names_are_ignored() {
        let spec = pod(json!({
            "containers": [{"name": "a", "image": "busybox",
                "envFrom": [{"configMapRef": {"name": ""}}]}],
            "volumes": [{"name": "v", "secret": {"optional": true}}]
        }));
        assert!(referenced_config(&spec).is_empty());
    }

    #[test]
    fn display_names_kind_and_object() {
        assert_eq!(cm("settings", false).display(), "configmap/settings");
        assert_eq!(secret("creds", true).display(), "secret/creds");
        assert_eq!(secret("creds", true).to_string(), "secret/creds");
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
