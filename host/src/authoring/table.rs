//! `quarks-job policy test`: runs a table of input → expected-result cases against a policy.
//!
//! ```yaml
//! world: trigger                # optional: inferred from the inputs
//! defaults:                     # optional: merged under every case's input
//!   quarks-job: {name: deploy, namespace: team-b, strategy: once}
//!   event: {type: created}
//! cases:
//! - name: an unapproved one-off waits
//!   input: {}
//!   expect: {run: false, reasons: [{code: NotApproved}]}
//! - name: an approved one runs
//!   input:
//!     quarks-job: {annotations: [["quarks.cloudfoundry.org/approved", "true"]]}
//!   expect: {run: true, write-strategy: done}
//! - name: garbage is refused
//!   input: {event: {type: config-changed}}
//!   expect-error: PolicyRefused
//! ```
//!
//! `expect` is matched as a subset of the result: every key it names must match, objects
//! recursively, arrays element by element (same length), other values exactly. An
//! `expect-error` names the error code (`PolicyTrap`, `PolicyTimeout`, `PolicyRefused`, …).

use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::policy::contract::{OutputInput, TriggerInput};
use crate::policy::{LoadedPolicy, PolicyEngine, World};
use crate::subset::subset_mismatch;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Table {
    #[serde(default)]
    pub world: Option<World>,
    #[serde(default)]
    pub defaults: Option<Value>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub expect: Option<Value>,
    #[serde(default)]
    pub expect_error: Option<String>,
}

/// The outcome of one case.
#[derive(Debug, PartialEq)]
pub struct CaseResult {
    pub name: String,
    /// `None` when the case passed; otherwise what differed.
    pub failure: Option<String>,
}

/// Reads a table from YAML (or JSON, which is YAML).
pub fn read_table(path: &Path) -> anyhow::Result<Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the test table {}", path.display()))?;
    let table: Table = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{} is not a test table (world, defaults, cases: [{{name, input, expect | expect-error}}])",
            path.display()
        )
    })?;
    for case in &table.cases {
        if case.expect.is_some() == case.expect_error.is_some() {
            bail!(
                "case {:?}: give exactly one of `expect` and `expect-error`",
                case.name
            );
        }
    }
    Ok(table)
}

/// The world a table's cases are for: as given, or from the shape of its inputs.
pub fn table_world(table: &Table) -> Option<World> {
    table.world.or_else(|| {
        let first = table
            .cases
            .iter()
            .map(|c| merged_input(table.defaults.as_ref(), c.input.as_ref()))
            .next()?;
        if first.get("file-name").is_some() {
            Some(World::Output)
        } else if first.get("event").is_some() || first.get("quarks-job").is_some() {
            Some(World::Trigger)
        } else {
            None
        }
    })
}

/// Runs every case; never stops at the first failure.
pub fn run_table(engine: &PolicyEngine, policy: &LoadedPolicy, table: &Table) -> Vec<CaseResult> {
    table
        .cases
        .iter()
        .map(|case| CaseResult {
            name: case.name.clone(),
            failure: run_case(engine, policy, table.defaults.as_ref(), case).err(),
        })
        .collect()
}

fn run_case(
    engine: &PolicyEngine,
    policy: &LoadedPolicy,
    defaults: Option<&Value>,
    case: &Case,
) -> Result<(), String> {
    let input = merged_input(defaults, case.input.as_ref());
    let outcome = match policy.world() {
        World::Trigger => {
            let input: TriggerInput = serde_json::from_value(input)
                .map_err(|e| format!("the input is not a trigger-input: {e}"))?;
            engine
                .decide(policy, input)
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        }
        World::Output => {
            let input: OutputInput = serde_json::from_value(input)
                .map_err(|e| format!("the input is not an output-input: {e}"))?;
            engine
                .transform(policy, input)
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        }
    };
    match (outcome, &case.expect, &case.expect_error) {
        (Ok(result), Some(expected), _) => subset_mismatch(expected, &result, "")
            .map_or(Ok(()), |m| Err(format!("{m}; the result was {result}"))),
        (Ok(result), None, Some(code)) => Err(format!("expected error {code}, got {result}")),
        (Err(error), _, Some(code)) if error.code() == code => Ok(()),
        (Err(error), _, _) => Err(format!("{}: {error}", error.code())),
        (Ok(_), None, None) => Ok(()),
    }
}

/// `defaults` with `input` merged over it (objects key by key, anything else replaced).
pub fn merged_input(defaults: Option<&Value>, input: Option<&Value>) -> Value {
    let mut merged = defaults
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    if let Some(input) = input {
        merge(&mut merged, input);
    }
    merged
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                merge(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, over) => *base = over.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn case_inputs_are_merged_over_the_defaults() {
        let defaults =
            json!({"event": {"type": "created"}, "quarks-job": {"name": "a", "strategy": "once"}});
        let input = json!({"quarks-job": {"strategy": "now"}, "run-active": true});
        assert_eq!(
            merged_input(Some(&defaults), Some(&input)),
            json!({"event": {"type": "created"}, "quarks-job": {"name": "a", "strategy": "now"}, "run-active": true})
        );
    }

    #[test]
    fn a_case_needs_exactly_one_expectation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.yaml");
        std::fs::write(&path, "cases:\n- name: nothing expected\n  input: {}\n").unwrap();
        let error = read_table(&path).unwrap_err().to_string();
        assert!(
            error.contains("exactly one of `expect` and `expect-error`"),
            "{error}"
        );
    }
}
