//! Patch application: JSON merge patch (RFC 7386), JSON patch (RFC 6902, via the
//! `json-patch` crate) and strategic merge patch for built-in kinds (list merge by the
//! Kubernetes `patchMergeKey`, `$patch: replace|delete|merge`,
//! `$deleteFromPrimitiveList/...`, `$setElementOrder/...`). Server-side apply is in
//! [`super::ssa`].

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use super::shape::Shape;

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// RFC 6902 JSON patch; failures (a failed `test`, a missing path) are 422 like kube-apiserver.
pub fn json_patch(target: &mut Value, patch: &Value) -> ApiResult<()> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        let mut err = ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        );
        err.details.causes.push(super::error::Cause::new(
            "FieldValueInvalid",
            "",
            e.to_string(),
        ));
        err
    })
}

/// Strategic merge patch of a built-in object.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> ApiResult<()> {
    strategic_object(target, patch, &Shape::builtin())
}

fn strategic_object(target: &mut Value, patch: &Value, shape: &Shape) -> ApiResult<()> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = p.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type: {other}"
            )));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    // Directives naming sibling lists are handled before ordinary keys.
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<Value> = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = t.get_mut(field) {
                items.retain(|i| !remove.contains(i));
            }
        }
    }
    for (k, v) in p {
        if k.starts_with('$') {
            // $setElementOrder/ and $retainKeys only affect ordering and pruning of keys
            // we keep anyway; $deleteFromPrimitiveList was handled above.
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let child = shape.field(k);
        match v {
            Value::Object(_) => {
                let entry = t.entry(k.clone()).or_insert(Value::Null);
                if let Some(Value::String(d)) = v.get("$patch")
                    && d == "delete"
                {
                    t.remove(k);
                } else {
                    strategic_object(entry, v, &child)?;
                }
            }
            Value::Array(items) => {
                let merged = strategic_list(t.get(k), items, &child)?;
                t.insert(k.clone(), merged);
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

/// A patch list as the whole new list: its `$patch` directive entries dropped.
fn without_directives(patch: &[Value]) -> Value {
    let items = patch.iter().filter(|i| i.get("$patch").is_none());
    Value::Array(items.cloned().collect())
}

fn strategic_list(current: Option<&Value>, patch: &[Value], shape: &Shape) -> ApiResult<Value> {
    let Some(key) = shape.strategic_key() else {
        // Lists without a merge strategy are replaced, minus directive entries.
        return Ok(without_directives(patch));
    };
    let mut out: Vec<Value> = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(without_directives(patch));
    }
    if key.is_empty() {
        // Primitive list with merge strategy: union, keeping existing order.
        for item in patch {
            if !out.contains(item) {
                out.push(item.clone());
            }
        }
        return Ok(Value::Array(out));
    }
    for item in patch {
        let Some(k) = item.get(&key) else {
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let pos = out.iter().position(|o| o.get(&key) == Some(k));
        let directive = item.get("$patch").and_then(Value::as_str);
        match (pos, directive) {
            (Some(i), Some("delete")) => {
                out.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => strategic_object(&mut out[i], item, &shape.item())?,
            (None, _) => {
                let mut fresh = Value::Object(Map::new());
                strategic_object(&mut fresh, item, &shape.item())?;
                out.push(fresh);
            }
        }
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_deletes_and_replaces() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}, "l": [3]}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_containers_by_name_and_env() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "E1", "value": "1"}]},
            {"name": "b", "image": "y"}
        ]}});
        strategic_merge(
            &mut pod,
            &json!({"spec": {"containers": [
                {"name": "a", "env": [{"name": "E2", "value": "2"}]},
                {"name": "c", "image": "z"}
            ]}}),
        )
        .expect("patch");
        assert_eq!(pod["spec"]["containers"][0]["image"], "x");
        assert_eq!(
            pod["spec"]["containers"][0]["env"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(pod["spec"]["containers"][2]["name"], "c");
        assert_eq!(pod["spec"]["containers"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn strategic_directives() {
        let mut pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "volumes": [{"name": "v"}]}});
        strategic_merge(&mut pod, &json!({
            "metadata": {"finalizers": ["b"]},
            "spec": {"containers": [{"name": "a", "$patch": "delete"}], "volumes": [{"name": "w"}, {"$patch": "replace"}]}
        }))
        .expect("patch");
        assert_eq!(pod["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(pod["spec"]["containers"], json!([{"name": "b"}]));
        assert_eq!(pod["spec"]["volumes"], json!([{"name": "w"}]));
        strategic_merge(
            &mut pod,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .expect("patch");
        assert_eq!(pod["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn strategic_replaces_plain_lists() {
        let mut o = json!({"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}});
        strategic_merge(
            &mut o,
            &json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
        )
        .expect("patch");
        assert_eq!(o["spec"]["containers"][0]["args"], json!(["3"]));
    }

    #[test]
    fn json_patch_test_failure_is_invalid() {
        let mut o = json!({"a": 1});
        let err = json_patch(&mut o, &json!([{"op": "test", "path": "/a", "value": 2}]))
            .expect_err("must fail");
        assert_eq!(err.code, 422);
        json_patch(
            &mut o,
            &json!([{"op": "replace", "path": "/a", "value": 2}]),
        )
        .expect("patch");
        assert_eq!(o["a"], 2);
    }
}
