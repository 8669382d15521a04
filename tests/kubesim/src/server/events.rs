//! `events.k8s.io/v1` Events share storage with `core/v1` Events, as in Kubernetes: the
//! same object is visible through both APIs. Stored in the core shape; converted on the
//! way in and out (`regarding` ↔ `involvedObject`, `note` ↔ `message`,
//! `reportingController` ↔ `reportingComponent`, `deprecated*` ↔ the legacy fields).

use serde_json::{Map, Value};

use super::resources::ResourceInfo;

/// (events.k8s.io field, core/v1 field)
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether this resource is `events.k8s.io` Events (stored as core Events).
pub fn is_new_api(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.plural == "events"
}

fn rename(v: &Value, api_version: &str, to_core: bool) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in m {
        let renamed = RENAMES.iter().find_map(|(new, core)| {
            if to_core && k == new {
                Some(*core)
            } else if !to_core && k == core {
                Some(*new)
            } else {
                None
            }
        });
        out.insert(renamed.unwrap_or(k).to_string(), val.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    Value::Object(out)
}

/// An events.k8s.io/v1 Event in the stored core/v1 shape.
pub fn to_core(v: &Value) -> Value {
    rename(v, "v1", true)
}

/// A stored core/v1 Event as events.k8s.io/v1 shows it.
pub fn from_core(v: &Value) -> Value {
    rename(v, "events.k8s.io/v1", false)
}

/// Field selectors of events.k8s.io name the new fields; stored objects have the old ones.
pub fn field_selector_to_core(s: &str) -> String {
    s.split(',')
        .map(|term| {
            for (new, core) in RENAMES {
                if let Some(rest) = term.trim().strip_prefix(new) {
                    return format!("{core}{rest}");
                }
            }
            term.to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "regarding": {"name": "x"}, "note": "hi", "reason": "R"});
        let core = to_core(&new);
        assert_eq!(core["involvedObject"]["name"], "x");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(from_core(&core), new);
        assert_eq!(
            field_selector_to_core("regarding.name=x,reason=R"),
            "involvedObject.name=x,reason=R"
        );
    }
}
