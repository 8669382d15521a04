//! CustomResourceDefinitions: validating a CRD, turning its served versions into
//! [`ResourceInfo`]s, its `NamesAccepted`/`Established` status, and what the structural
//! schema does to custom objects on write — pruning unknown fields, applying `default`s and
//! the basic type/required/enum validation (not CEL rules or formats).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::error::Cause;
use super::objects::str_at;
use super::resources::{CrdVersion, ResourceInfo};

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    str_at(v, ptr).unwrap_or("")
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The 422 causes of an invalid CRD.
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let name = s(crd, "/metadata/name");
    if group.is_empty() || !group.contains('.') {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.group",
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.names.plural",
            "Required value",
        ));
    }
    if s(crd, "/spec/names/kind").is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "spec.names.kind",
            "Required value",
        ));
    }
    if name != format!("{plural}.{group}") {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if !matches!(s(crd, "/spec/scope"), "Namespaced" | "Cluster") {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.scope",
            "Unsupported value: supported values: \"Cluster\", \"Namespaced\"",
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::new("FieldValueInvalid", "spec.versions", format!("Invalid value: must have exactly one version marked as storage version (found {storage})")));
    }
    causes
}

/// The status kube-apiserver gives an accepted CRD.
pub fn status(crd: &Value, now: &str) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut accepted = names.as_object().cloned().unwrap_or_default();
    let kind = s(crd, "/spec/names/kind").to_string();
    accepted
        .entry("singular")
        .or_insert_with(|| json!(kind.to_lowercase()));
    accepted
        .entry("listKind")
        .or_insert_with(|| json!(format!("{kind}List")));
    let stored: Vec<String> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
    json!({
        "acceptedNames": accepted,
        "storedVersions": stored,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ]
    })
}

/// One [`ResourceInfo`] per served version.
pub fn resources(crd: &Value) -> Vec<ResourceInfo> {
    let name = s(crd, "/metadata/name").to_string();
    let group = s(crd, "/spec/group").to_string();
    let kind = s(crd, "/spec/names/kind").to_string();
    let plural = s(crd, "/spec/names/plural").to_string();
    let singular = match s(crd, "/spec/names/singular") {
        "" => kind.to_lowercase(),
        x => x.to_string(),
    };
    let namespaced = s(crd, "/spec/scope") == "Namespaced";
    let short_names = strings(crd.pointer("/spec/names/shortNames"));
    let categories = strings(crd.pointer("/spec/names/categories"));
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
        .map(|v| {
            let mut subresources = Vec::new();
            if v.pointer("/subresources/status").is_some() {
                subresources.push("status".to_string());
            }
            if v.pointer("/subresources/scale").is_some() {
                subresources.push("scale".to_string());
            }
            ResourceInfo {
                group: group.clone(),
                version: s(v, "/name").to_string(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: short_names.clone(),
                categories: categories.clone(),
                subresources,
                has_generation: true,
                crd: Some(Arc::new(CrdVersion {
                    schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                    printer_columns: v
                        .get("additionalPrinterColumns")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    crd_name: name.clone(),
                })),
            }
        })
        .collect()
}

fn preserves(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Prunes unknown fields and applies defaults, the way the structural schema does;
/// returns the paths of the pruned fields (for `fieldValidation=Strict`).
pub fn prune_and_default(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    let Value::Object(root) = obj else {
        return pruned;
    };
    for (k, v) in root.iter_mut() {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(sub) = schema.pointer(&format!("/properties/{}", escape(k))) {
            walk(sub, v, k, &mut pruned);
        }
    }
    if !preserves(schema) {
        let known = schema.get("properties").and_then(Value::as_object);
        root.retain(|k, _| {
            let keep = matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                || known.is_some_and(|p| p.contains_key(k));
            if !keep {
                pruned.push(k.clone());
            }
            keep
        });
    }
    apply_defaults(schema, root);
    pruned
}

fn escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

fn apply_defaults(schema: &Value, m: &mut Map<String, Value>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            if !m.contains_key(k)
                && let Some(d) = sub.get("default")
            {
                let mut d = d.clone();
                walk(sub, &mut d, k, &mut Vec::new());
                m.insert(k.clone(), d);
            }
        }
    }
}

fn keep_only(
    m: &mut Map<String, Value>,
    at: &str,
    pruned: &mut Vec<String>,
    keep: &dyn Fn(&str) -> bool,
) {
    m.retain(|k, _| {
        let ok = keep(k);
        if !ok {
            pruned.push(format!("{at}.{k}"));
        }
        ok
    });
}

fn walk(schema: &Value, v: &mut Value, at: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let embedded = schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, child) in m.iter_mut() {
                    if let Some(sub) = props.get(k) {
                        walk(sub, child, &format!("{at}.{k}"), pruned);
                    }
                }
                if !preserves(schema) {
                    keep_only(m, at, pruned, &|k| {
                        props.contains_key(k)
                            || (embedded && matches!(k, "apiVersion" | "kind" | "metadata"))
                    });
                }
            } else if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in m.iter_mut() {
                    walk(add, child, &format!("{at}.{k}"), pruned);
                }
            } else if !preserves(schema)
                && schema.get("additionalProperties") != Some(&Value::Bool(true))
            {
                keep_only(m, at, pruned, &|k| {
                    embedded && matches!(k, "apiVersion" | "kind" | "metadata")
                });
            }
            apply_defaults(schema, m);
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(sub, item, &format!("{at}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Type, `required` and `enum` validation; causes use the field path (`spec.replicas`).
pub fn validate_object(schema: &Value, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(v) = obj.get(k) {
                check(sub, v, k, &mut causes);
            }
        }
    }
    required(schema, obj, "", &mut causes);
    causes
}

fn required(schema: &Value, v: &Value, at: &str, causes: &mut Vec<Cause>) {
    for r in strings(schema.get("required")) {
        if v.get(&r).is_none() {
            let field = if at.is_empty() {
                r.clone()
            } else {
                format!("{at}.{r}")
            };
            causes.push(Cause::new("FieldValueRequired", field, "Required value"));
        }
    }
}

fn check(schema: &Value, v: &Value, at: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            causes.push(Cause::new(
                "FieldValueTypeInvalid",
                at,
                "Invalid value: \"null\": must not be null",
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let ok = match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64() || (int_or_string && v.is_string()),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => !int_or_string || v.is_string() || v.is_i64() || v.is_u64(),
    };
    if !ok {
        let got = match v {
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Null => "null",
        };
        causes.push(Cause::new(
            "FieldValueTypeInvalid",
            at,
            format!("Invalid value: \"{got}\": {at} in body must be of type {ty}: \"{got}\""),
        ));
        return;
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        causes.push(Cause::new(
            "FieldValueNotSupported",
            at,
            format!(
                "Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
    match v {
        Value::Object(m) => {
            required(schema, v, at, causes);
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, child) in m {
                    if let Some(sub) = props.get(k) {
                        check(sub, child, &format!("{at}.{k}"), causes);
                    }
                }
            } else if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in m {
                    check(add, child, &format!("{at}[{k}]"), causes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(sub, item, &format!("{at}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_unknown_and_defaults() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "default": 1},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}}
            }},
            "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
        }});
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "junk": 1,
            "spec": {"unknown": 2, "free": {"any": {"thing": 1}}, "tags": {"a": "b"}}});
        let pruned = prune_and_default(&schema, &mut obj);
        assert_eq!(pruned, ["spec.unknown", "junk"]);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"replicas": 1, "free": {"any": {"thing": 1}}, "tags": {"a": "b"}}})
        );
    }

    #[test]
    fn validates_types_and_required() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string"}, "replicas": {"type": "integer"}, "mode": {"type": "string", "enum": ["a", "b"]}}}}});
        let causes = validate_object(&schema, &json!({"spec": {"replicas": "x", "mode": "c"}}));
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert!(
            fields.contains(&"spec.image")
                && fields.contains(&"spec.replicas")
                && fields.contains(&"spec.mode"),
            "{causes:?}"
        );
    }
}
