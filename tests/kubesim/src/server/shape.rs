//! What kind of list a field holds, which both strategic merge patch and server-side apply
//! need: atomic (replaced whole), set (union of scalars) or map (merged by key fields).
//! Built-in kinds use a table of the Kubernetes types' patch tags; custom resources read
//! `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` from their structural schema.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    Atomic,
    Set,
    /// Associative list merged by these key fields.
    Map(Vec<String>),
}

/// A position in an object, used to look up list kinds.
#[derive(Debug, Clone, Default)]
pub struct Shape<'a> {
    /// The CRD version schema at this position (None for built-ins or unknown fields).
    schema: Option<&'a Value>,
    crd: bool,
    /// Field names from the root (list items add nothing).
    path: Vec<String>,
}

impl<'a> Shape<'a> {
    pub fn builtin() -> Self {
        Shape {
            schema: None,
            crd: false,
            path: Vec::new(),
        }
    }

    pub fn custom(schema: Option<&'a Value>) -> Self {
        Shape {
            schema,
            crd: true,
            path: Vec::new(),
        }
    }

    pub fn field(&self, name: &str) -> Shape<'a> {
        let schema = self.schema.and_then(|s| {
            s.get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
        });
        let mut path = self.path.clone();
        path.push(name.to_string());
        Shape {
            schema,
            crd: self.crd,
            path,
        }
    }

    pub fn item(&self) -> Shape<'a> {
        Shape {
            schema: self.schema.and_then(|s| s.get("items")),
            crd: self.crd,
            path: self.path.clone(),
        }
    }

    fn in_metadata(&self) -> bool {
        self.path.first().is_some_and(|p| p == "metadata")
    }

    /// The list kind for server-side apply.
    pub fn list_kind(&self) -> ListKind {
        if self.crd && !self.in_metadata() {
            let Some(s) = self.schema else {
                return ListKind::Atomic;
            };
            return match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListKind::Set,
                Some("map") => ListKind::Map(
                    s.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|k| k.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                _ => ListKind::Atomic,
            };
        }
        let last = self.path.last().map(String::as_str).unwrap_or("");
        let in_container = self.path.iter().any(|p| {
            matches!(
                p.as_str(),
                "containers" | "initContainers" | "ephemeralContainers"
            )
        });
        let keys = |k: &[&str]| ListKind::Map(k.iter().map(|s| s.to_string()).collect());
        match last {
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "env"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims" => keys(&["name"]),
            "volumeMounts" => keys(&["mountPath"]),
            "volumeDevices" => keys(&["devicePath"]),
            "ports" if in_container => keys(&["containerPort", "protocol"]),
            "ports" => keys(&["port", "protocol"]),
            "conditions" => keys(&["type"]),
            "ownerReferences" => keys(&["uid"]),
            "hostAliases" => keys(&["ip"]),
            "topologySpreadConstraints" => keys(&["topologyKey", "whenUnsatisfiable"]),
            "finalizers" => ListKind::Set,
            _ => ListKind::Atomic,
        }
    }

    /// The strategic-merge key of a list (`patchMergeKey`), or None for replace-lists.
    /// Primitive lists with `patchStrategy: merge` (finalizers) return an empty key.
    pub fn strategic_key(&self) -> Option<String> {
        let last = self.path.last().map(String::as_str).unwrap_or("");
        match last {
            "ports" => {
                let in_container = self.path.iter().any(|p| {
                    matches!(
                        p.as_str(),
                        "containers" | "initContainers" | "ephemeralContainers"
                    )
                });
                Some(if in_container {
                    "containerPort".into()
                } else {
                    "port".into()
                })
            }
            "finalizers" => Some(String::new()),
            _ => match self.list_kind() {
                ListKind::Map(k) => k.first().cloned(),
                _ => None,
            },
        }
    }
}

/// Whether list item `item` has the same key values as `other`.
pub fn same_key(item: &Value, other: &Value, keys: &[String]) -> bool {
    !keys.is_empty() && keys.iter().all(|k| item.get(k) == other.get(k))
}

/// Whether every item of a map-list carries at least the first key (otherwise the list is
/// treated as atomic, as the real field manager does for malformed lists).
pub fn keyed(items: &[Value], keys: &[String]) -> bool {
    keys.first()
        .is_some_and(|k| items.iter().all(|i| i.get(k).is_some()))
}
