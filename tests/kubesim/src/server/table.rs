//! `meta.k8s.io/v1` Table responses (`Accept: application/json;as=Table;...`), as kubectl
//! `get` asks for them: default columns for built-in kinds, `additionalPrinterColumns`
//! (a simple JSONPath subset: `.a.b`, `.a[0].b`, `.a[*].b`) for custom resources, and the
//! `Age` column rendered like Kubernetes' `HumanDuration`.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::objects::str_at;
use super::resources::ResourceInfo;

struct Column {
    name: String,
    ty: String,
    format: String,
    priority: i64,
    path: String,
}

fn col(name: &str, ty: &str, path: &str) -> Column {
    Column {
        name: name.into(),
        ty: ty.into(),
        format: String::new(),
        priority: 0,
        path: path.into(),
    }
}

fn columns(info: &ResourceInfo) -> Vec<Column> {
    if let Some(crd) = &info.crd {
        let mut cols = vec![Column {
            format: "name".into(),
            ..col("Name", "string", ".metadata.name")
        }];
        for c in &crd.printer_columns {
            let path = c
                .get("jsonPath")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            cols.push(Column {
                name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                ty: c
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("string")
                    .into(),
                format: c.get("format").and_then(Value::as_str).unwrap_or("").into(),
                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                path,
            });
        }
        // kube-apiserver adds Age only to CRDs that declare no columns of their own.
        if crd.printer_columns.is_empty() {
            cols.push(Column {
                format: String::new(),
                ..col("Age", "date", ".metadata.creationTimestamp")
            });
        }
        return cols;
    }
    let mut cols = vec![Column {
        format: "name".into(),
        ..col("Name", "string", ".metadata.name")
    }];
    match info.plural.as_str() {
        "pods" => {
            cols.push(col("Ready", "string", "#ready"));
            cols.push(col("Status", "string", "#podstatus"));
            cols.push(col("Restarts", "string", "#restarts"));
        }
        "jobs" => {
            cols.push(col("Status", "string", "#jobstatus"));
            cols.push(col("Completions", "string", "#completions"));
            cols.push(col("Duration", "string", "#duration"));
        }
        "namespaces" => cols.push(col("Status", "string", ".status.phase")),
        "configmaps" | "secrets" => {
            if info.plural == "secrets" {
                cols.push(col("Type", "string", ".type"));
            }
            cols.push(col("Data", "string", "#datacount"));
        }
        "events" if info.group.is_empty() => {
            cols.insert(0, col("Last Seen", "string", "#lastseen"));
            cols.push(col("Type", "string", ".type"));
            cols.push(col("Reason", "string", ".reason"));
            cols.push(col("Object", "string", "#involved"));
            cols.push(col("Message", "string", ".message"));
            // kubectl get events shows no Name column.
            cols.retain(|c| c.name != "Name");
        }
        // kube-apiserver prints the creation time itself here, not an age.
        "customresourcedefinitions" => cols.push(col("Created At", "date", "#createdat")),
        "leases" => cols.push(col("Holder", "string", ".spec.holderIdentity")),
        "rolebindings" | "clusterrolebindings" => cols.push(col("Role", "string", "#roleref")),
        _ => {}
    }
    if info.plural != "events" && info.plural != "customresourcedefinitions" {
        cols.push(col("Age", "date", ".metadata.creationTimestamp"));
    }
    cols
}

/// Evaluates the JSONPath subset used by printer columns.
pub fn jsonpath<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut cur: Vec<&Value> = vec![obj];
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, idx) = match seg.split_once('[') {
            Some((n, rest)) => (n, Some(rest.trim_end_matches(']'))),
            None => (seg, None),
        };
        let mut next = Vec::new();
        for v in cur {
            let v = if name.is_empty() {
                Some(v)
            } else {
                v.get(name)
            };
            let Some(v) = v else { continue };
            match idx {
                None => next.push(v),
                Some("*") => next.extend(v.as_array().into_iter().flatten()),
                Some(i) => {
                    if let (Ok(i), Some(a)) = (i.parse::<usize>(), v.as_array()) {
                        next.extend(a.get(i));
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// Kubernetes' `duration.HumanDuration` for ages.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 600 {
        let m = s / 60;
        let r = s % 60;
        if r == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{r}s")
        }
    } else if s < 3 * 3600 {
        format!("{}m", s / 60)
    } else if s < 8 * 3600 {
        let h = s / 3600;
        let m = (s % 3600) / 60;
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m}m")
        }
    } else if s < 48 * 3600 {
        format!("{}h", s / 3600)
    } else if s < 8 * 86400 {
        let d = s / 86400;
        let h = (s % 86400) / 3600;
        if h == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{h}h")
        }
    } else {
        format!("{}d", s / 86400)
    }
}

fn age(ts: Option<&Value>) -> Value {
    let Some(t) = ts
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
    else {
        return json!("<unknown>");
    };
    let secs = Timestamp::now().as_second() - t.as_second();
    json!(human_duration(secs))
}

fn computed(obj: &Value, what: &str) -> Value {
    match what {
        "#ready" => {
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| {
                s.iter()
                    .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                    .count()
            });
            json!(format!("{ready}/{total}"))
        }
        "#podstatus" => {
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                return json!("Terminating");
            }
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let reason = statuses.and_then(|s| {
                s.iter().find_map(|c| {
                    c.pointer("/state/waiting/reason")
                        .or_else(|| c.pointer("/state/terminated/reason"))
                        .and_then(Value::as_str)
                })
            });
            let phase = str_at(obj, "/status/phase").unwrap_or("Pending");
            match reason {
                Some(r) if phase != "Running" => json!(r),
                _ => json!(phase),
            }
        }
        "#restarts" => {
            let n: i64 = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |s| {
                    s.iter()
                        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                        .sum()
                });
            json!(n.to_string())
        }
        "#jobstatus" => {
            let conds = obj.pointer("/status/conditions").and_then(Value::as_array);
            let has = |t: &str| {
                conds.is_some_and(|c| {
                    c.iter().any(|x| {
                        x.get("type").and_then(Value::as_str) == Some(t)
                            && x.get("status").and_then(Value::as_str) == Some("True")
                    })
                })
            };
            let s = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if obj.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
                "Suspended"
            } else {
                "Running"
            };
            json!(s)
        }
        "#completions" => {
            let done = obj
                .pointer("/status/succeeded")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            match obj.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(c) => json!(format!("{done}/{c}")),
                None => json!(format!(
                    "{done}/1 of {}",
                    obj.pointer("/spec/parallelism")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
            }
        }
        "#duration" => {
            let start = str_at(obj, "/status/startTime").and_then(|s| s.parse::<Timestamp>().ok());
            let end = str_at(obj, "/status/completionTime")
                .and_then(|s| s.parse::<Timestamp>().ok())
                .unwrap_or_else(Timestamp::now);
            match start {
                Some(s) => json!(human_duration(end.as_second() - s.as_second())),
                None => json!(""),
            }
        }
        "#datacount" => {
            let n = obj
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + obj
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            json!(n)
        }
        "#lastseen" => age(obj
            .get("lastTimestamp")
            .or_else(|| obj.get("eventTime"))
            .or_else(|| obj.pointer("/metadata/creationTimestamp"))),
        "#involved" => {
            let kind = str_at(obj, "/involvedObject/kind").unwrap_or("");
            let name = str_at(obj, "/involvedObject/name").unwrap_or("");
            json!(format!("{}/{name}", kind.to_lowercase()))
        }
        "#createdat" => obj
            .pointer("/metadata/creationTimestamp")
            .cloned()
            .unwrap_or(Value::Null),
        "#roleref" => {
            let kind = str_at(obj, "/roleRef/kind").unwrap_or("");
            let name = str_at(obj, "/roleRef/name").unwrap_or("");
            json!(format!("{kind}/{name}"))
        }
        _ => Value::Null,
    }
}

fn cell(obj: &Value, c: &Column) -> Value {
    if c.path.starts_with('#') {
        return computed(obj, &c.path);
    }
    let vals = jsonpath(obj, &c.path);
    if c.ty == "date" {
        return age(vals.first().copied());
    }
    match vals.as_slice() {
        [] => Value::Null,
        [one] => match one {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => (*one).clone(),
            other => json!(other.to_string()),
        },
        many => json!(
            many.iter()
                .map(|v| v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn row_object(obj: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
        }
    }
}

/// A Table of `objects`; `include` is the `includeObject` parameter (None/Metadata/Object).
pub fn table(
    info: &ResourceInfo,
    objects: &[&Value],
    rv: &str,
    cont: Option<&str>,
    include: &str,
) -> Value {
    let cols = columns(info);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| json!({"name": c.name, "type": c.ty, "format": c.format, "description": "", "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(o, c)).collect();
            json!({"cells": cells, "object": row_object(o, include)})
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let o = json!({"spec": {"a": [{"b": 1}, {"b": 2}]}, "status": {"phase": "X"}});
        assert_eq!(jsonpath(&o, ".status.phase"), vec![&json!("X")]);
        assert_eq!(jsonpath(&o, ".spec.a[1].b"), vec![&json!(2)]);
        assert_eq!(jsonpath(&o, ".spec.a[*].b").len(), 2);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3 * 86400), "3d");
    }
}
