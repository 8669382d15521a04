//! JSON subset matching: where `actual` does not contain `expected`. Shared by `quarks-job
//! policy test` tables (an expectation names only what it cares about) and the pure stages'
//! fixture tests. Pure.

use serde_json::Value;

/// Where `actual` does not contain `expected`, as `path: expected X, got Y`.
pub fn subset_mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, value)| {
            let here = format!("{path}/{key}");
            match have.get(key) {
                Some(found) => subset_mismatch(value, found, &here),
                None if value.is_null() => None,
                None => Some(format!("{here}: expected {value}, but it is absent")),
            }
        }),
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => want
            .iter()
            .zip(have)
            .enumerate()
            .find_map(|(i, (w, h))| subset_mismatch(w, h, &format!("{path}/{i}"))),
        (Value::Array(want), Value::Array(have)) => Some(format!(
            "{}: expected {} elements, got {}",
            display_path(path),
            want.len(),
            have.len()
        )),
        (want, have) if want == have => None,
        (want, have) => Some(format!(
            "{}: expected {want}, got {have}",
            display_path(path)
        )),
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expectations_match_as_subsets() {
        let result = json!({"run": false, "write-strategy": null,
            "reasons": [{"code": "NotApproved", "message": "waiting"}]});
        assert_eq!(
            subset_mismatch(
                &json!({"run": false, "reasons": [{"code": "NotApproved"}]}),
                &result,
                ""
            ),
            None
        );
        assert_eq!(
            subset_mismatch(&json!({"run": true}), &result, ""),
            Some("/run: expected true, got false".into())
        );
        assert_eq!(
            subset_mismatch(&json!({"reasons": []}), &result, ""),
            Some("/reasons: expected 0 elements, got 1".into())
        );
        assert_eq!(
            subset_mismatch(&json!({"reasons": [{"code": "X"}]}), &result, ""),
            Some("/reasons/0/code: expected \"X\", got \"NotApproved\"".into())
        );
        // `null` expects the key absent or null.
        assert_eq!(subset_mismatch(&json!({"absent": null}), &result, ""), None);
    }
}
