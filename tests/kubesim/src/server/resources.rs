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

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    subs: &[&str],
    has_generation: bool,
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        has_generation,
        crd: None,
    }
}

/// The built-in kinds kubesim serves.
pub fn builtins() -> Vec<ResourceInfo> {
    let mut v = vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            &["status"],
            false,
        ),
        builtin(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            &[],
            false,
        ),
        builtin("", "v1", "Secret", "secrets", true, &[], &[], false),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            &["token"],
            false,
        ),
        builtin(
            "",
            "v1",
            "Pod",
            "pods",
            true,
            &["po"],
            &["status", "log", "binding"],
            false,
        ),
        builtin("", "v1", "Event", "events", true, &["ev"], &[], false),
        builtin(
            "",
            "v1",
            "Service",
            "services",
            true,
            &["svc"],
            &["status"],
            false,
        ),
        builtin(
            "",
            "v1",
            "Node",
            "nodes",
            false,
            &["no"],
            &["status"],
            false,
        ),
        builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["pvc"],
            &["status"],
            false,
        ),
        builtin("batch", "v1", "Job", "jobs", true, &[], &["status"], true),
        builtin(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            true,
            &["cj"],
            &["status"],
            true,
        ),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            &["status"],
            true,
        ),
        builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            &["status"],
            true,
        ),
        builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            &["status"],
            true,
        ),
        builtin(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            true,
            &["ds"],
            &["status"],
            true,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            &[],
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            &[],
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            &[],
            false,
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            &["ev"],
            &[],
            false,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
            &[],
            &[],
            false,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
            &[],
            &[],
            false,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
            &[],
            &[],
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            &["status"],
            true,
        ),
    ];
    for r in &mut v {
        if matches!(
            r.plural.as_str(),
            "pods"
                | "services"
                | "deployments"
                | "replicasets"
                | "statefulsets"
                | "daemonsets"
                | "jobs"
                | "cronjobs"
        ) {
            r.categories = vec!["all".into()];
        }
        if r.plural == "customresourcedefinitions" {
            r.categories = vec!["api-extensions".into()];
        }
    }
    v
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
            served.insert(
                (r.group.clone(), r.version.clone(), r.plural.clone()),
                Arc::new(r),
            );
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
                served.insert(
                    (r.group.clone(), r.version.clone(), r.plural.clone()),
                    Arc::new(r),
                );
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
