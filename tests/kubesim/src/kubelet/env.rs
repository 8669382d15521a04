//! Container environment: `env`, `envFrom`, `valueFrom` and `$(VAR)` expansion, as the
//! kubelet computes them.
//!
//! Pure: it works on the Pod and the ConfigMaps/Secrets already fetched ([`ConfigSources`]),
//! and never talks to the API. Errors carry what a cluster reports as
//! `CreateContainerConfigError`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectFieldSelector, Pod, Secret};

/// Where kubesim's one node lives, as seen from pods.
pub const NODE_IP: &str = "127.0.0.1";

/// The ConfigMaps and Secrets of the pod's namespace that the pod refers to, by name.
/// An absent entry means "does not exist". `tokens` holds the service-account tokens of
/// the pod's projected volumes (obtained through TokenRequest, [`super::tokens`]).
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    pub tokens: BTreeMap<super::tokens::TokenKey, String>,
}

/// The two kinds of object a pod reads configuration from; env and volumes treat them
/// alike apart from where their bytes live and how errors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
}

impl ObjectKind {
    /// The kind as the kubelet's messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
        }
    }

    fn not_found(self, name: &str) -> EnvError {
        match self {
            Self::ConfigMap => EnvError::ConfigMapNotFound(name.into()),
            Self::Secret => EnvError::SecretNotFound(name.into()),
        }
    }

    fn key_not_found(self, namespace: &str, name: &str, key: &str) -> EnvError {
        let (namespace, name, key) = (namespace.into(), name.into(), key.into());
        match self {
            Self::ConfigMap => EnvError::ConfigMapKeyNotFound {
                namespace,
                name,
                key,
            },
            Self::Secret => EnvError::SecretKeyNotFound {
                namespace,
                name,
                key,
            },
        }
    }
}

impl ConfigSources {
    /// All entries of the ConfigMap or Secret `name`, `None` if it is missing.
    pub fn entries(&self, kind: ObjectKind, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        match kind {
            ObjectKind::ConfigMap => self.config_map_entries(name),
            ObjectKind::Secret => self.secret_entries(name),
        }
    }

    /// The value of `key` in the ConfigMap or Secret `name`, outer `None` if the object is
    /// missing. The same precedence as [`Self::entries`]: `data` over `binaryData` or
    /// `stringData`.
    pub fn value(&self, kind: ObjectKind, name: &str, key: &str) -> Option<Option<Vec<u8>>> {
        self.entries(kind, name)
            .map(|mut entries| entries.remove(key))
    }

    /// All entries of a ConfigMap (`data` and `binaryData`), `None` if missing.
    fn config_map_entries(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let cm = self.config_maps.get(name)?;
        let mut out = BTreeMap::new();
        for (k, v) in cm.binary_data.iter().flatten() {
            out.insert(k.clone(), v.0.clone());
        }
        for (k, v) in cm.data.iter().flatten() {
            out.insert(k.clone(), v.as_bytes().to_vec());
        }
        Some(out)
    }

    /// All entries of a Secret, `None` if missing. stringData is write-only on a real
    /// server; it is honoured in case a server echoes it.
    fn secret_entries(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let secret = self.secrets.get(name)?;
        let mut out = BTreeMap::new();
        for (k, v) in secret.string_data.iter().flatten() {
            out.insert(k.clone(), v.as_bytes().to_vec());
        }
        for (k, v) in secret.data.iter().flatten() {
            out.insert(k.clone(), v.0.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
impl ConfigSources {
    /// Test fixture: these sources and one more object, given as its JSON.
    pub(crate) fn with_object(mut self, kind: ObjectKind, object: serde_json::Value) -> Self {
        let name = object["metadata"]["name"].as_str().expect("metadata.name");
        let name = name.to_string();
        match kind {
            ObjectKind::ConfigMap => {
                let cm = serde_json::from_value(object).expect("configmap");
                self.config_maps.insert(name, cm);
            }
            ObjectKind::Secret => {
                let secret = serde_json::from_value(object).expect("secret");
                self.secrets.insert(name, secret);
            }
        }
        self
    }
}

/// Why a container's environment cannot be built (the container waits, reason
/// `CreateContainerConfigError`, and is retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
}

/// The value of a downward-API `fieldRef` for `pod` (shared by env and volumes).
pub fn field_ref_value(pod: &Pod, selector: &ObjectFieldSelector) -> Result<String, EnvError> {
    let path = selector.field_path.as_str();
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(rest.to_string())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_string()),
        "status.hostIP" | "status.hostIPs" | "status.podIP" | "status.podIPs" => {
            NODE_IP.to_string()
        }
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(EnvError::UnsupportedFieldPath(path.to_string()));
            }
        }
    };
    Ok(value)
}

/// `key="value"` lines, sorted by key, values escaped as Go's `%q` would (the format of
/// downward-API label and annotation files).
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds the environment of `container` in `pod` in the kubelet's order: `base` (the
/// service variables and image defaults), then `envFrom` sources in order, then `env`, each
/// later definition overriding an earlier one; `env` values are `$(VAR)`-expanded against
/// everything defined before them.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    sources: &ConfigSources,
    base: &[(String, String)],
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, key: String, value: String| {
        if let Some(slot) = env.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            env.push((key, value));
        }
    };
    for (k, v) in base {
        set(&mut env, k.clone(), v.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(cm) = &from.config_map_ref {
            (ObjectKind::ConfigMap, &cm.name, cm.optional)
        } else if let Some(secret) = &from.secret_ref {
            (ObjectKind::Secret, &secret.name, secret.optional)
        } else {
            continue;
        };
        let entries = match sources.entries(kind, name) {
            Some(e) => e,
            None if optional == Some(true) => continue,
            None => return Err(kind.not_found(name)),
        };
        for (key, value) in entries {
            let name = format!("{prefix}{key}");
            // The kubelet skips keys that are not valid variable names (and emits an Event).
            if is_env_var_name(&name) {
                set(&mut env, name, String::from_utf8_lossy(&value).into_owned());
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => {
                let defined: BTreeMap<&str, &str> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(var.value.as_deref().unwrap_or(""), |name| {
                    defined.get(name).map(|v| v.to_string())
                })
            }
            Some(source) => {
                let key_ref = if let Some(sel) = &source.config_map_key_ref {
                    Some((ObjectKind::ConfigMap, &sel.name, &sel.key, sel.optional))
                } else {
                    (source.secret_key_ref.as_ref())
                        .map(|sel| (ObjectKind::Secret, &sel.name, &sel.key, sel.optional))
                };
                if let Some((kind, name, key, optional)) = key_ref {
                    match sources.value(kind, name, key) {
                        Some(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
                        _ if optional == Some(true) => continue,
                        None => return Err(kind.not_found(name)),
                        Some(None) => return Err(kind.key_not_found(&namespace, name, key)),
                    }
                } else if let Some(field) = &source.field_ref {
                    field_ref_value(pod, field)?
                } else {
                    // resourceFieldRef: kubesim has no resource model; documented gap.
                    continue;
                }
            }
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// A C_IDENTIFIER-ish check, as the kubelet applies to `envFrom` keys (k8s allows any
/// printable ASCII except '=' since 1.30; we keep that rule).
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the variable's value when defined and
/// stays literally `$(NAME)` otherwise; `$$` is an escaped `$`; an unclosed `$(` and any
/// other `$x` are kept as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // Keep "$" and the following character (which may be multi-byte).
                    let ch = rest.chars().next().map_or(1, char::len_utf8);
                    out.push('$');
                    out.push_str(&rest[..ch]);
                    ch
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let cases = [
            ("$(A)", "alpha"),
            ("x-$(A)-y", "x-alpha-y"),
            ("$(B)", "$(B)"),
            ("$$(A)", "$(A)"),
            ("$$", "$"),
            ("$(A", "$(A"),
            ("$A", "$A"),
            ("a$", "a$"),
            ("$(EMPTY)z", "z"),
            ("$(A)$(A)", "alphaalpha"),
            ("ü$(A)é$é", "üalphaé$é"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, lookup), want, "{input:?}");
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                          "labels": {"app": "x", "b": "q\"uote"}, "annotations": {"note": "n"}},
            "spec": {"nodeName": "kubesim-node", "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .expect("pod")
    }

    fn sources() -> ConfigSources {
        ConfigSources::default()
            .with_object(
                ObjectKind::ConfigMap,
                json!({"metadata": {"name": "cm"}, "data": {"K1": "v1", "K2": "v2"}}),
            )
            .with_object(
                ObjectKind::Secret,
                json!({"metadata": {"name": "sec"}, "data": {"PASS": "czNjcmV0"}}),
            )
    }

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("container")
    }

    #[test]
    fn env_from_then_env_with_expansion_and_references() {
        let c = container(json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}, {"secretRef": {"name": "sec"}}],
            "env": [
                {"name": "CM_K1", "value": "overridden"},
                {"name": "GREETING", "value": "$(CM_K2)+$(PASS)+$(UNDEFINED)"},
                {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "K2"}}},
                {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PASS"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": true}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
            ]
        }));
        let env =
            container_env(&pod(), &c, &sources(), &[("BASE".into(), "b".into())]).expect("env");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("BASE"), Some("b"));
        assert_eq!(get("CM_K1"), Some("overridden"));
        assert_eq!(get("GREETING"), Some("v2+s3cret+$(UNDEFINED)"));
        assert_eq!(get("FROM_CM"), Some("v2"));
        assert_eq!(get("FROM_SECRET"), Some("s3cret"));
        assert_eq!(get("OPT"), None);
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("APP"), Some("x"));
        assert_eq!(get("NODE"), Some("kubesim-node"));
        assert_eq!(get("IP"), Some(NODE_IP));
    }

    #[test]
    fn missing_references_are_config_errors() {
        let missing_cm =
            container(json!({"name": "c", "envFrom": [{"configMapRef": {"name": "nope"}}]}));
        assert_eq!(
            container_env(&pod(), &missing_cm, &sources(), &[]),
            Err(EnvError::ConfigMapNotFound("nope".into()))
        );
        let missing_key = container(json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "nokey"}}}]}));
        assert_eq!(
            container_env(&pod(), &missing_key, &sources(), &[]),
            Err(EnvError::SecretKeyNotFound {
                namespace: "ns".into(),
                name: "sec".into(),
                key: "nokey".into()
            })
        );
        let optional = container(
            json!({"name": "c", "envFrom": [{"secretRef": {"name": "nope", "optional": true}}]}),
        );
        assert_eq!(
            container_env(&pod(), &optional, &sources(), &[]),
            Ok(vec![])
        );
    }

    #[test]
    fn downward_api_maps_are_quoted_lines() {
        let sel = ObjectFieldSelector {
            field_path: "metadata.labels".into(),
            api_version: None,
        };
        assert_eq!(
            field_ref_value(&pod(), &sel).expect("labels"),
            "app=\"x\"\nb=\"q\\\"uote\""
        );
        let bad = ObjectFieldSelector {
            field_path: "spec.nope".into(),
            api_version: None,
        };
        assert!(field_ref_value(&pod(), &bad).is_err());
    }
}
