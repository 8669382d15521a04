//! Server-side apply and field ownership: field sets in the `FieldsV1` format
//! (`f:name`, `k:{"name":"c"}`, `v:"x"`, `.`), `managedFields` entries per manager and
//! operation, the apply merge (associative lists merged by key, sets unioned, atomic lists
//! replaced), conflict detection (409 unless `force`), removal of fields a manager stopped
//! applying, and ownership tracking for ordinary updates.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult, Cause};
use super::objects::str_at;
use super::shape::{ListKind, Shape, keyed, same_key};

/// A field path such as `["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"]`.
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Metadata fields that are not owned by anyone (server-maintained or identity).
const UNOWNED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
];

/// The fields an object sets. `include_status` selects status vs. everything else.
pub fn field_set(obj: &Value, shape: &Shape, part: Part) -> FieldSet {
    let mut out = FieldSet::new();
    let Value::Object(m) = obj else { return out };
    for (k, v) in m {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        let is_status = k == "status";
        match part {
            Part::Main if is_status => continue,
            Part::Status if !is_status => continue,
            _ => {}
        }
        if k == "metadata" {
            if let Value::Object(meta) = v {
                for (mk, mv) in meta {
                    if UNOWNED_META.contains(&mk.as_str()) {
                        continue;
                    }
                    let path = vec!["f:metadata".to_string(), format!("f:{mk}")];
                    collect(mv, &shape.field("metadata").field(mk), path, &mut out);
                }
            }
            continue;
        }
        collect(v, &shape.field(k), vec![format!("f:{k}")], &mut out);
    }
    out
}

/// Which part of an object a write covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything but `status` (main resource of a kind with a status subresource).
    Main,
    /// Only `status`.
    Status,
    /// Everything (kinds without a status subresource).
    All,
}

fn key_elem(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

fn collect(v: &Value, shape: &Shape, path: FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, cv) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                collect(cv, &shape.field(k), p, out);
            }
        }
        Value::Array(items) => match shape.list_kind() {
            ListKind::Set if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                for i in items {
                    let mut p = path.clone();
                    p.push(format!("v:{i}"));
                    out.insert(p);
                }
                if items.is_empty() {
                    out.insert(path);
                }
            }
            ListKind::Map(keys) if !items.is_empty() && keyed(items, &keys) => {
                for i in items {
                    let mut p = path.clone();
                    p.push(key_elem(i, &keys));
                    let mut dot = p.clone();
                    dot.push(".".into());
                    out.insert(dot);
                    collect(i, &shape.item(), p, out);
                }
            }
            _ => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

/// The value at a field path, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for elem in path {
        if elem == "." {
            return Some(cur);
        }
        if let Some(f) = elem.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = elem.strip_prefix("k:") {
            let key: Value = serde_json::from_str(k).ok()?;
            let keys: Vec<String> = key.as_object()?.keys().cloned().collect();
            cur = cur.as_array()?.iter().find(|i| same_key(i, &key, &keys))?;
        } else if let Some(v) = elem.strip_prefix("v:") {
            let val: Value = serde_json::from_str(v).ok()?;
            cur = cur.as_array()?.iter().find(|i| **i == val)?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Removes the field at `path` (a map key, a list item, a set value).
fn remove_at(obj: &mut Value, path: &[String]) {
    let (last, parent_path) = match path.split_last() {
        Some((l, p)) if l == "." => match p.split_last() {
            Some((l2, p2)) => (l2, p2),
            None => return,
        },
        Some(x) => x,
        None => return,
    };
    let mut cur = obj;
    for elem in parent_path {
        let next = if let Some(f) = elem.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = elem.strip_prefix("k:") {
            let Ok(key) = serde_json::from_str::<Value>(k) else {
                return;
            };
            let keys: Vec<String> = key
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| same_key(i, &key, &keys)))
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(key), Some(a)) = (serde_json::from_str::<Value>(k), cur.as_array_mut()) {
            let keys: Vec<String> = key
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            a.retain(|i| !same_key(i, &key, &keys));
        }
    } else if let Some(v) = last.strip_prefix("v:")
        && let (Ok(val), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut())
    {
        a.retain(|i| *i != val);
    }
}

/// Converts a field set to the nested `fieldsV1` JSON.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for elem in path {
            let entry = cur
                .entry(elem.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(m) => cur = m,
                _ => break,
            }
        }
    }
    Value::Object(root)
}

/// Parses `fieldsV1` JSON back into a field set (leaves and `.` markers are paths).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    path.push(k.clone());
                    walk(c, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

pub fn read_managed(obj: &Value) -> Vec<Managed> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            Some(Managed {
                manager: e.get("manager")?.as_str()?.to_string(),
                operation: e
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or("Update")
                    .to_string(),
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                time: e
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            })
        })
        .collect()
}

pub fn write_managed(obj: &mut Value, managed: &[Managed]) {
    let entries: Vec<Value> = managed
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            });
            if !m.subresource.is_empty() {
                e["subresource"] = json!(m.subresource);
            }
            e
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// Merges an applied configuration into the live object.
fn apply_merge(live: &mut Value, applied: &Value, shape: &Shape) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                if av.is_null() {
                    continue;
                }
                let child = shape.field(k);
                match l.get_mut(k) {
                    Some(lv) => apply_merge(lv, av, &child),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (l @ Value::Array(_), Value::Array(a)) => {
            let Value::Array(litems) = l else { return };
            match shape.list_kind() {
                ListKind::Set => {
                    for i in a {
                        if !litems.contains(i) {
                            litems.push(i.clone());
                        }
                    }
                }
                ListKind::Map(keys) if keyed(a, &keys) && keyed(litems, &keys) => {
                    for i in a {
                        match litems.iter_mut().find(|x| same_key(x, i, &keys)) {
                            Some(x) => apply_merge(x, i, &shape.item()),
                            None => litems.push(i.clone()),
                        }
                    }
                }
                _ => *l = Value::Array(a.clone()),
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// Inputs of one apply.
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub part: Part,
    pub api_version: &'a str,
    pub now: &'a str,
    pub shape: Shape<'a>,
}

/// Applies `applied` onto `live` (an empty object for a create) and returns the new object
/// with updated `managedFields`, or 409 listing the conflicting fields.
pub fn apply(live: &Value, applied: &Value, req: &ApplyRequest) -> ApiResult<Value> {
    let applied_fields = field_set(applied, &req.shape, req.part);
    let mut managed = read_managed(live);
    let subresource = if req.part == Part::Status {
        "status"
    } else {
        ""
    };
    let is_me = |m: &Managed| {
        m.manager == req.manager && m.operation == "Apply" && m.subresource == subresource
    };

    let mut conflicts: Vec<(String, FieldPath)> = Vec::new();
    for m in managed.iter().filter(|m| !is_me(m)) {
        for p in m.fields.intersection(&applied_fields) {
            if p.last().is_some_and(|l| l == ".") {
                continue;
            }
            if value_at(live, p) != value_at(applied, p) {
                conflicts.push((m.manager.clone(), p.clone()));
            }
        }
    }
    // kube-apiserver's last-applied manager: when `kubectl` server-side applies, conflicts
    // on fields that the client-side apply annotation sets (to their live values) are a
    // user moving from client-side to server-side apply, resolved in the applier's favour.
    if !conflicts.is_empty()
        && req.manager == "kubectl"
        && let Some(last) = str_at(
            live,
            "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
        )
        && let Ok(last) = serde_json::from_str::<Value>(last)
    {
        let last_fields = field_set(&last, &req.shape, req.part);
        if conflicts
            .iter()
            .all(|(_, p)| last_fields.contains(p) && value_at(&last, p) == value_at(live, p))
        {
            for m in managed.iter_mut().filter(|m| !is_me(m)) {
                for (_, p) in &conflicts {
                    m.fields.remove(p);
                }
            }
            conflicts.clear();
        }
    }
    if !conflicts.is_empty() {
        if !req.force {
            let causes: Vec<Cause> = conflicts
                .iter()
                .map(|(mgr, p)| {
                    Cause::new(
                        "FieldManagerConflict",
                        render_path(p),
                        format!("conflict with \"{mgr}\""),
                    )
                })
                .collect();
            let lines: Vec<String> = conflicts
                .iter()
                .map(|(mgr, p)| format!("conflict with \"{mgr}\": {}", render_path(p)))
                .collect();
            let mut e = ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {} conflict{}: {}",
                    conflicts.len(),
                    if conflicts.len() == 1 { "" } else { "s" },
                    lines.join("\n")
                ),
            );
            e.details.causes = causes;
            return Err(e);
        }
        for m in managed.iter_mut().filter(|m| !is_me(m)) {
            for (_, p) in &conflicts {
                m.fields.remove(p);
            }
        }
    }

    let mut merged = live.clone();
    apply_merge(&mut merged, applied, &req.shape);

    // Fields this manager applied before but not now, owned by nobody else, are removed.
    let previous: FieldSet = managed
        .iter()
        .filter(|m| is_me(m))
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let others: FieldSet = managed
        .iter()
        .filter(|m| !is_me(m))
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    for p in previous.difference(&applied_fields) {
        let covered = others
            .iter()
            .any(|o| o.starts_with(strip_dot(p)) || strip_dot(p).starts_with(o));
        if !covered {
            remove_at(&mut merged, p);
        }
    }

    managed.retain(|m| !is_me(m));
    managed.push(Managed {
        manager: req.manager.to_string(),
        operation: "Apply".into(),
        api_version: req.api_version.to_string(),
        time: req.now.to_string(),
        subresource: subresource.to_string(),
        fields: applied_fields,
    });
    write_managed(&mut merged, &managed);
    Ok(merged)
}

fn strip_dot(p: &[String]) -> &[String] {
    match p.split_last() {
        Some((l, rest)) if l == "." => rest,
        _ => p,
    }
}

/// `.spec.containers[name="c"].image`, as kube-apiserver prints conflicting fields.
pub fn render_path(p: &[String]) -> String {
    let mut s = String::new();
    for e in p {
        if let Some(f) = e.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = e.strip_prefix("k:") {
            let inner = serde_json::from_str::<Value>(k)
                .ok()
                .and_then(|v| {
                    v.as_object().map(|o| {
                        o.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                })
                .unwrap_or_default();
            s.push_str(&format!("[{inner}]"));
        } else if let Some(v) = e.strip_prefix("v:") {
            s.push_str(&format!("[{v}]"));
        }
    }
    s
}

/// Records an ordinary write (create/update/patch) by `manager`: fields it changed become
/// its own (operation `Update`) and are taken away from other managers.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
    shape: &Shape,
    part: Part,
) {
    // The base ownership is what `new` carries: the stored entries, or ones the client set.
    let mut managed = read_managed(new);
    let new_fields = field_set(new, shape, part);
    let empty = Value::Object(Map::new());
    let old_obj = old.unwrap_or(&empty);
    let old_fields = field_set(old_obj, shape, part);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| value_at(old_obj, p) != value_at(new, p) || !old_fields.contains(*p))
        .cloned()
        .collect();
    let removed: FieldSet = old_fields.difference(&new_fields).cloned().collect();
    let subresource = if part == Part::Status { "status" } else { "" };
    if changed.is_empty() && removed.is_empty() {
        write_managed(new, &managed);
        return;
    }
    for m in managed.iter_mut() {
        for p in changed.iter().chain(removed.iter()) {
            m.fields.remove(p);
        }
    }
    let mine = managed
        .iter_mut()
        .find(|m| m.manager == manager && m.operation == "Update" && m.subresource == subresource);
    match mine {
        Some(m) => {
            m.fields.extend(changed);
            m.time = now.to_string();
            m.api_version = api_version.to_string();
        }
        None => managed.push(Managed {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: subresource.to_string(),
            fields: changed,
        }),
    }
    write_managed(new, &managed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            force,
            part: Part::All,
            api_version: "v1",
            now: "2024-01-01T00:00:00Z",
            shape: Shape::builtin(),
        }
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let set = field_set(&obj, &Shape::builtin(), Part::All);
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:image"],
            json!({})
        );
        assert!(
            v1["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]
                .get(".")
                .is_some()
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let applied_a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "a"}});
        let live = apply(
            &json!({"metadata": {"name": "x"}}),
            &applied_a,
            &req("a", false),
        )
        .expect("first apply");
        let applied_b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "b"}});
        let err = apply(&live, &applied_b, &req("b", false)).expect_err("conflict");
        assert_eq!(err.code, 409);
        assert_eq!(err.details.causes[0].field, ".data.k");
        let forced = apply(&live, &applied_b, &req("b", true)).expect("forced");
        assert_eq!(forced["data"]["k"], "b");
        let managers = read_managed(&forced);
        assert!(
            managers.iter().all(|m| m.manager == "b"),
            "a lost its only field: {managers:?}"
        );
    }

    #[test]
    fn apply_removes_fields_the_manager_dropped() {
        let a1 = json!({"metadata": {"name": "x"}, "data": {"k1": "1", "k2": "2"}});
        let live =
            apply(&json!({"metadata": {"name": "x"}}), &a1, &req("a", false)).expect("apply");
        let a2 = json!({"metadata": {"name": "x"}, "data": {"k1": "1"}});
        let live = apply(&live, &a2, &req("a", false)).expect("apply");
        assert_eq!(live["data"], json!({"k1": "1"}));
    }

    #[test]
    fn update_takes_ownership() {
        let a1 = json!({"metadata": {"name": "x"}, "data": {"k": "1"}});
        let live =
            apply(&json!({"metadata": {"name": "x"}}), &a1, &req("a", false)).expect("apply");
        let mut edited = live.clone();
        edited["data"]["k"] = json!("2");
        track_update(
            Some(&live),
            &mut edited,
            "editor",
            "v1",
            "t",
            &Shape::builtin(),
            Part::All,
        );
        let m = read_managed(&edited);
        assert!(m.iter().any(|e| {
            e.manager == "editor"
                && e.fields
                    .contains(&vec!["f:data".to_string(), "f:k".to_string()])
        }));
        let err = apply(&edited, &a1, &req("a", false)).expect_err("editor owns k now");
        assert_eq!(err.code, 409);
    }

    #[test]
    fn apply_merges_containers_by_name() {
        let live = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "1"}]}});
        let out = apply(
            &live,
            &json!({"spec": {"containers": [{"name": "b", "image": "2"}]}}),
            &req("m", false),
        )
        .expect("apply");
        assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(2));
    }
}
