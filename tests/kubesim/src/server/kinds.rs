//! Per-kind behaviour of built-in resources that the API server itself implements
//! (not controllers): defaulting on create, normalisation on every write (Secret
//! `stringData`), and the validation rules whose absence tests would notice. Returns 422
//! causes; never touches the store.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::error::Cause;
use super::objects::str_at;
use super::resources::ResourceInfo;

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    let e = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !e.is_object() {
        *e = Value::Object(Map::new());
    }
    e.as_object_mut()
}

fn default(m: &mut Map<String, Value>, key: &str, v: Value) {
    m.entry(key.to_string()).or_insert(v);
}

/// Defaults applied once, when an object is created (after uid and name are known).
pub fn default_on_create(info: &ResourceInfo, obj: &mut Value) {
    if !info.group.is_empty() && info.crd.is_some() {
        return;
    }
    let name = str_at(obj, "/metadata/name").unwrap_or("").to_string();
    let uid = str_at(obj, "/metadata/uid").unwrap_or("").to_string();
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => {
            if let Some(meta) = obj_mut(obj, "metadata") {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "finalizers", json!(["kubernetes"]));
            }
            if let Some(m) = obj.as_object_mut() {
                m.insert("status".into(), json!({"phase": "Active"}));
            }
        }
        ("", "pods") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "restartPolicy", json!("Always"));
                default(spec, "terminationGracePeriodSeconds", json!(30));
                default(spec, "dnsPolicy", json!("ClusterFirst"));
                default(spec, "schedulerName", json!("default-scheduler"));
                default(spec, "serviceAccountName", json!("default"));
                let sa = spec
                    .get("serviceAccountName")
                    .cloned()
                    .unwrap_or(json!("default"));
                default(spec, "serviceAccount", sa);
                default(spec, "securityContext", json!({}));
                default(spec, "enableServiceLinks", json!(true));
                default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
                default(spec, "priority", json!(0));
                for list in ["initContainers", "containers"] {
                    if let Some(Value::Array(cs)) = spec.get_mut(list) {
                        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                            default(c, "terminationMessagePath", json!("/dev/termination-log"));
                            default(c, "terminationMessagePolicy", json!("File"));
                            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                            let tagless = !image.rsplit('/').next().unwrap_or("").contains(':')
                                && !image.contains('@');
                            let policy = if tagless || image.ends_with(":latest") {
                                "Always"
                            } else {
                                "IfNotPresent"
                            };
                            default(c, "imagePullPolicy", json!(policy));
                            default(c, "resources", json!({}));
                        }
                    }
                }
            }
            // Status is reset on create: only the kubelet reports it.
            if let Some(m) = obj.as_object_mut() {
                m.insert(
                    "status".into(),
                    json!({"phase": "Pending", "qosClass": "BestEffort"}),
                );
            }
        }
        ("batch", "jobs") => {
            let mut manual = false;
            if let Some(spec) = obj_mut(obj, "spec") {
                if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
                    spec.insert("completions".into(), json!(1));
                    spec.insert("parallelism".into(), json!(1));
                }
                default(spec, "parallelism", json!(1));
                default(spec, "backoffLimit", json!(6));
                default(spec, "completionMode", json!("NonIndexed"));
                default(spec, "suspend", json!(false));
                default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
                manual = spec
                    .get("manualSelector")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if !manual {
                    spec.insert(
                        "selector".into(),
                        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
                    );
                }
            }
            if !manual
                && let Some(tmeta) = obj
                    .pointer_mut("/spec/template")
                    .and_then(|t| obj_mut(t, "metadata"))
                && let Some(labels) = tmeta
                    .entry("labels")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
            {
                labels.insert("controller-uid".into(), json!(uid));
                labels.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
                labels.insert("job-name".into(), json!(name));
                labels.insert("batch.kubernetes.io/job-name".into(), json!(name));
            }
            if let Some(m) = obj.as_object_mut() {
                m.insert("status".into(), json!({}));
            }
        }
        ("", "secrets") => {
            if let Some(m) = obj.as_object_mut() {
                default(m, "type", json!("Opaque"));
            }
        }
        ("coordination.k8s.io", "leases") | ("", "configmaps") | ("", "serviceaccounts") => {}
        _ => {
            // Kinds with a status subresource start with an empty status.
            if info.has_status()
                && let Some(m) = obj.as_object_mut()
                && info.plural != "customresourcedefinitions"
            {
                m.remove("status");
            }
        }
    }
}

/// Normalisation and validation on every write (create and update).
pub fn normalize(info: &ResourceInfo, obj: &mut Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if info.crd.is_some() {
        return causes;
    }
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "secrets") => {
            // stringData is write-only: merged into data (base64) and dropped.
            let string_data = obj.as_object_mut().and_then(|m| m.remove("stringData"));
            if let Some(Value::Object(sd)) = string_data
                && let Some(data) = obj_mut(obj, "data")
            {
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(s)),
                    );
                }
            }
            if let Some(Value::Object(data)) = obj.get("data") {
                for (k, v) in data {
                    if !valid_data_key(k) {
                        causes.push(Cause::new("FieldValueInvalid", format!("data[{k}]"), format!("Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
                    }
                    let ok = v.as_str().is_some_and(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                    });
                    if !ok {
                        causes.push(Cause::new(
                            "FieldValueInvalid",
                            format!("data[{k}]"),
                            "Invalid value: illegal base64 data",
                        ));
                    }
                }
            }
        }
        ("", "configmaps") => {
            for field in ["data", "binaryData"] {
                if let Some(Value::Object(data)) = obj.get(field) {
                    for (k, v) in data {
                        if !valid_data_key(k) {
                            causes.push(Cause::new("FieldValueInvalid", format!("{field}[{k}]"), format!("Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
                        }
                        if !v.is_string() {
                            causes.push(Cause::new(
                                "FieldValueInvalid",
                                format!("{field}[{k}]"),
                                "Invalid value: must be a string",
                            ));
                        }
                    }
                }
            }
        }
        ("", "pods") => validate_pod_spec(obj.get("spec"), "spec", &mut causes),
        ("batch", "jobs") => {
            let tspec = obj.pointer("/spec/template/spec");
            validate_pod_spec(tspec, "spec.template.spec", &mut causes);
            let rp = tspec
                .and_then(|s| s.get("restartPolicy"))
                .and_then(Value::as_str);
            if !matches!(rp, Some("Never" | "OnFailure")) {
                let msg = match rp {
                    None => "Required value: valid values: \"OnFailure\", \"Never\"".to_string(),
                    Some(v) => format!(
                        "Unsupported value: \"{v}\": supported values: \"OnFailure\", \"Never\""
                    ),
                };
                causes.push(Cause::new(
                    if rp.is_none() {
                        "FieldValueRequired"
                    } else {
                        "FieldValueNotSupported"
                    },
                    "spec.template.spec.restartPolicy",
                    msg,
                ));
            }
            for f in [
                "backoffLimit",
                "completions",
                "parallelism",
                "activeDeadlineSeconds",
            ] {
                if let Some(n) = obj.pointer(&format!("/spec/{f}")).and_then(Value::as_i64)
                    && (n < 0 || (f == "activeDeadlineSeconds" && n == 0))
                {
                    causes.push(Cause::new(
                        "FieldValueInvalid",
                        format!("spec.{f}"),
                        format!("Invalid value: {n}: must be greater than or equal to 0"),
                    ));
                }
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings")
            if str_at(obj, "/roleRef/name").is_none_or(str::is_empty) =>
        {
            causes.push(Cause::new(
                "FieldValueRequired",
                "roleRef.name",
                "Required value",
            ));
        }
        _ => {}
    }
    causes
}

fn valid_data_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && k != "."
        && k != ".."
}

fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::new(
            "FieldValueRequired",
            format!("{at}.containers"),
            "Required value",
        )),
        Some(cs) if cs.is_empty() => causes.push(Cause::new(
            "FieldValueRequired",
            format!("{at}.containers"),
            "Required value",
        )),
        Some(_) => {}
    }
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.and_then(|s| s.get(list)).and_then(Value::as_array) else {
            continue;
        };
        let mut seen = std::collections::HashSet::new();
        for (i, c) in cs.iter().enumerate() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                causes.push(Cause::new(
                    "FieldValueRequired",
                    format!("{at}.{list}[{i}].name"),
                    "Required value",
                ));
            } else if !super::meta::is_dns_label(name) {
                // As kube-apiserver's ValidateContainers: a container name is a DNS label.
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    format!("{at}.{list}[{i}].name"),
                    format!(
                        "Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
                    ),
                ));
            } else if !seen.insert(name.to_string()) {
                causes.push(Cause::new(
                    "FieldValueDuplicate",
                    format!("{at}.{list}[{i}].name"),
                    format!("Duplicate value: \"{name}\""),
                ));
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(Cause::new(
                    "FieldValueRequired",
                    format!("{at}.{list}[{i}].image"),
                    "Required value",
                ));
            }
        }
    }
}

/// Whether a pod deletion is immediate (unscheduled or finished pods need no kubelet).
pub fn pod_needs_graceful_delete(pod: &Value) -> bool {
    let bound = str_at(pod, "/spec/nodeName").is_some_and(|n| !n.is_empty());
    let phase = str_at(pod, "/status/phase").unwrap_or("");
    bound && !matches!(phase, "Succeeded" | "Failed")
}

/// The default propagation policy for deletes that name none (Jobs and ReplicaSets keep
/// the legacy orphaning default of their REST strategies).
pub fn default_propagation(info: &ResourceInfo) -> &'static str {
    match (info.group.as_str(), info.plural.as_str()) {
        ("batch", "jobs") | ("apps", "replicasets") | ("", "replicationcontrollers") => "Orphan",
        _ => "Background",
    }
}

/// Whether a DELETE that removes the object at once answers with the object, as these
/// kinds' storage does in kube-apiserver (`ReturnDeletedObject`); others answer a
/// `Status` naming it. Objects that stay (finalizers, grace periods) are always returned.
pub fn returns_deleted_object(info: &ResourceInfo) -> bool {
    info.group.is_empty()
        && matches!(
            info.plural.as_str(),
            "pods" | "serviceaccounts" | "services" | "resourcequotas" | "persistentvolumeclaims"
        )
}

fn without(v: Option<&Value>, drop: &dyn Fn(&mut Value)) -> Value {
    let mut c = v.cloned().unwrap_or(Value::Null);
    drop(&mut c);
    c
}

/// Immutability rules checked on updates of the main resource (not status).
pub fn validate_update(info: &ResourceInfo, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if info.crd.is_some() {
        return causes;
    }
    match (info.group.as_str(), info.plural.as_str()) {
        ("batch", "jobs") => {
            for field in ["template", "selector", "completionMode"] {
                let ptr = format!("/spec/{field}");
                if old.pointer(&ptr) != new.pointer(&ptr) {
                    causes.push(Cause::new(
                        "FieldValueInvalid",
                        format!("spec.{field}"),
                        "Invalid value: field is immutable",
                    ));
                }
            }
        }
        ("", "pods") => {
            // Only images, activeDeadlineSeconds and tolerations may change (and nodeName
            // through the binding subresource).
            let strip = |spec: &mut Value| {
                if let Some(m) = spec.as_object_mut() {
                    for k in ["activeDeadlineSeconds", "tolerations", "nodeName"] {
                        m.remove(k);
                    }
                    for list in ["containers", "initContainers"] {
                        if let Some(Value::Array(cs)) = m.get_mut(list) {
                            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                                c.remove("image");
                            }
                        }
                    }
                }
            };
            if without(old.get("spec"), &strip) != without(new.get("spec"), &strip) {
                causes.push(Cause::new(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        ("", "secrets" | "configmaps") if old.get("immutable") == Some(&Value::Bool(true)) => {
            for field in ["data", "binaryData", "immutable"] {
                if old.get(field) != new.get(field) {
                    causes.push(Cause::new(
                        "FieldValueForbidden",
                        field,
                        "Forbidden: field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        _ => {}
    }
    causes
}
