//! The resource registry: which group/version/resources are served, with their kind,
//! scope, short names and subresources. Built-in kinds are fixed at start; CRDs add and
//! remove entries at run time (see [`super::crd`]). Objects of a resource are stored under
//! its [`ResourceInfo::storage_key`], shared by all versions of a group-resource.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

/// What a CRD version adds to a resource: its schema and printer columns.
#[derive(Debug, Clone, Default)]
pub struct CrdVersion {
    /// `openAPIV3Schema` of this version (structural schema), if any.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns` of this version.
    pub printer_columns: Vec<Value>,
    /// The CRD's name (`plural.group`), so deleting the CRD finds its resources.
    pub crd_name: String,
}

/// One served group/version/resource.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Subresources served: `status`, `log`, `binding`, ...
    pub subresources: Vec<String>,
    /// Whether `metadata.generation` is maintained for this kind.
    pub has_generation: bool,
    pub crd: Option<Arc<CrdVersion>>,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// All versions of a group-resource share one storage key; events.k8s.io Events
    /// are stored with core Events.
    pub fn storage_key(&self) -> String {
        if self.group == "events.k8s.io" && self.plural == "events" {
            return "events".into();
        }
        storage_key(&self.group, &self.plural)
    }

    /// The apiVersion objects are stored with.
    pub fn storage_api_version(&self) -> String {
        if self.group == "events.k8s.io" && self.plural == "events" {
            return "v1".into();
        }
        self.api_version()
    }

    /// The registry's key: (group, version, plural).
    fn key(&self) -> (String, String, String) {
        (
            self.group.clone(),
            self.version.clone(),
            self.plural.clone(),
        )
    }

    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if is_review(&self.group, &self.plural) {
            return vec!["create"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// Access reviews (authorization.k8s.io) are answered, never stored.
pub fn is_review(group: &str, plural: &str) -> bool {
    group == "authorization.k8s.io"
        && matches!(
            plural,
            "subjectaccessreviews" | "selfsubjectaccessreviews" | "localsubjectaccessreviews"
        )
}

pub fn storage_key(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

const NAMESPACED: bool = true;
const CLUSTER: bool = false;
/// Whether `metadata.generation` is maintained.
const GEN: bool = true;
const NO_GEN: bool = false;
const STATUS: &[&str] = &["status"];
/// The `all` category (`kubectl get all`).
const ALL: &[&str] = &["all"];

/// One built-in resource, served at version v1: group, kind, plural, scope, short names,
/// subresources, generation, categories.
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
    bool,
    &'static [&'static str],
);

/// The built-in kinds kubesim serves, one row each (kept one a line by hand: rustfmt would
/// spread each row over ten lines and hide the table).
#[rustfmt::skip]
const BUILTINS: &[Builtin] = &[
    ("", "Namespace", "namespaces", CLUSTER, &["ns"], STATUS, NO_GEN, &[]),
    ("", "ConfigMap", "configmaps", NAMESPACED, &["cm"], &[], NO_GEN, &[]),
    ("", "Secret", "secrets", NAMESPACED, &[], &[], NO_GEN, &[]),
    ("", "ServiceAccount", "serviceaccounts", NAMESPACED, &["sa"], &["token"], NO_GEN, &[]),
    ("", "Pod", "pods", NAMESPACED, &["po"], &["status", "log", "binding"], NO_GEN, ALL),
    ("", "Event", "events", NAMESPACED, &["ev"], &[], NO_GEN, &[]),
    ("", "Service", "services", NAMESPACED, &["svc"], STATUS, NO_GEN, ALL),
    ("", "Node", "nodes", CLUSTER, &["no"], STATUS, NO_GEN, &[]),
    ("", "PersistentVolumeClaim", "persistentvolumeclaims", NAMESPACED, &["pvc"], STATUS, NO_GEN, &[]),
    ("batch", "Job", "jobs", NAMESPACED, &[], STATUS, GEN, ALL),
    ("batch", "CronJob", "cronjobs", NAMESPACED, &["cj"], STATUS, GEN, ALL),
    ("apps", "Deployment", "deployments", NAMESPACED, &["deploy"], STATUS, GEN, ALL),
    ("apps", "ReplicaSet", "replicasets", NAMESPACED, &["rs"], STATUS, GEN, ALL),
    ("apps", "StatefulSet", "statefulsets", NAMESPACED, &["sts"], STATUS, GEN, ALL),
    ("apps", "DaemonSet", "daemonsets", NAMESPACED, &["ds"], STATUS, GEN, ALL),
    ("coordination.k8s.io", "Lease", "leases", NAMESPACED, &[], &[], NO_GEN, &[]),
    (RBAC, "Role", "roles", NAMESPACED, &[], &[], NO_GEN, &[]),
    (RBAC, "RoleBinding", "rolebindings", NAMESPACED, &[], &[], NO_GEN, &[]),
    (RBAC, "ClusterRole", "clusterroles", CLUSTER, &[], &[], NO_GEN, &[]),
    (RBAC, "ClusterRoleBinding", "clusterrolebindings", CLUSTER, &[], &[], NO_GEN, &[]),
    ("events.k8s.io", "Event", "events", NAMESPACED, &["ev"], &[], NO_GEN, &[]),
    (AUTHZ, "SubjectAccessReview", "subjectaccessreviews", CLUSTER, &[], &[], NO_GEN, &[]),
    (AUTHZ, "SelfSubjectAccessReview", "selfsubjectaccessreviews", CLUSTER, &[], &[], NO_GEN, &[]),
    (AUTHZ, "LocalSubjectAccessReview", "localsubjectaccessreviews", NAMESPACED, &[], &[], NO_GEN, &[]),
    ("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", CLUSTER,
        &["crd", "crds"], STATUS, GEN, &["api-extensions"]),
];
const RBAC: &str = "rbac.authorization.k8s.io";
const AUTHZ: &str = "authorization.k8s.io";

/// The built-in kinds kubesim serves.
pub fn builtins() -> Vec<ResourceInfo> {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    BUILTINS
        .iter()
        .map(
            |&(group, kind, plural, namespaced, short, subs, has_generation, categories)| {
                ResourceInfo {
                    group: group.into(),
                    version: "v1".into(),
                    kind: kind.into(),
                    plural: plural.into(),
                    singular: kind.to_lowercase(),
                    namespaced,
                    short_names: strings(short),
                    categories: strings(categories),
                    subresources: strings(subs),
                    has_generation,
                    crd: None,
                }
            },
        )
        .collect()
}

/// Thread-safe set of served resources.
#[derive(Debug)]
pub struct Registry {
    /// (group, version, plural) → info; a BTreeMap so discovery output is stable.
    served: RwLock<BTreeMap<(String, String, String), Arc<ResourceInfo>>>,
}

impl Registry {
    pub fn new() -> Self {
        let mut served = BTreeMap::new();
        for r in builtins() {
            served.insert(r.key(), Arc::new(r));
        }
        Registry {
            served: RwLock::new(served),
        }
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        let served = self.served.read().ok()?;
        served
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Finds a resource by group and kind (any version), preferring `version` if served.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let served = self.served.read().ok()?;
        let mut found = None;
        for ((g, v, _), info) in served.iter() {
            if g == group && info.kind == kind {
                if v == version {
                    return Some(info.clone());
                }
                found.get_or_insert_with(|| info.clone());
            }
        }
        found
    }

    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.served
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every served group with its versions, in a stable order (built-in core first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, vs)) => {
                    if !vs.contains(&r.version) {
                        vs.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        for (_, vs) in &mut out {
            vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }

    /// Replaces the resources registered for one CRD by `infos`.
    pub fn set_crd(&self, crd_name: &str, infos: Vec<ResourceInfo>) {
        if let Ok(mut served) = self.served.write() {
            served.retain(|_, r| r.crd.as_ref().is_none_or(|c| c.crd_name != crd_name));
            for r in infos {
                served.insert(r.key(), Arc::new(r));
            }
        }
    }

    pub fn remove_crd(&self, crd_name: &str) {
        self.set_crd(crd_name, Vec::new());
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// Kubernetes version priority: GA > beta > alpha, then by number (v2 > v1).
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u32 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}
