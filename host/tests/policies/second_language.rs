//! The approval policy written in Python (examples/policies/approval-py), built by
//! componentize-py from this test suite, decides exactly as the Rust one
//! (examples/policies/approval-trigger): on the shared decision table, and on every combination
//! of the inputs the decision depends on, through the real engine under the default limits.

use std::collections::BTreeMap;
use std::process::Command;

use quarks_job::policy::World;
use quarks_job::policy::contract::{
    JobOutcome, QuarksJobView, Strategy, TriggerEvent, TriggerInput,
};

use super::python_policy::approval_py;
use super::{engine, fixture};

const APPROVAL: &str = "quarks.cloudfoundry.org/approved";

#[test]
fn the_python_approval_policy_passes_the_approval_table() {
    let policy = approval_py();
    let out = Command::new(env!("CARGO_BIN_EXE_quarks-job"))
        .args(["policy", "test", "--policy"])
        .arg(&policy)
        .arg("examples/policies/approval-trigger/cases.yaml")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run quarks-job");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(" 0 failed"), "{report}");
}

/// What the component imports is what it may ask of the host: only the contract's types, so
/// it needs no capability (no WASI: environment, clocks, random, stdio, files, sockets).
#[test]
fn the_python_approval_policy_imports_nothing_but_the_contract() {
    let bytes = std::fs::read(approval_py()).expect("read the component");
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, &bytes).expect("compiles");
    let ty = component.component_type();
    let imports: Vec<&str> = ty.imports(&engine).map(|(name, _)| name).collect();
    assert_eq!(
        imports,
        [
            "quarks:policy/types@0.1.0",
            "quarks:policy/trigger-types@0.1.0"
        ],
        "imports"
    );
    let exports: Vec<&str> = ty.exports(&engine).map(|(name, _)| name).collect();
    assert!(
        exports.contains(&"quarks:policy/trigger-policy@0.1.0"),
        "{exports:?}"
    );
}

/// Every combination of strategy, updateOnConfigChange, both config digests, missing config,
/// an active run, the approval annotation and the event: the same run, write-back and
/// reasons (codes and messages), call by call.
#[test]
fn the_python_and_rust_approval_policies_decide_alike_on_every_combination() {
    let engine = engine();
    let rust = engine
        .load(&fixture("approval-trigger"), World::Trigger)
        .expect("the Rust policy loads");
    let bytes = std::fs::read(approval_py()).expect("read the component");
    let python = engine
        .load(&bytes, World::Trigger)
        .expect("the Python policy loads");

    let mut compared = 0;
    let mut codes = BTreeMap::<String, usize>::new();
    for input in combinations() {
        let expected = engine
            .decide(&rust, input.clone())
            .unwrap_or_else(|e| panic!("Rust on {input:?}: {e}"));
        let got = engine
            .decide(&python, input.clone())
            .unwrap_or_else(|e| panic!("Python on {input:?}: {e}"));
        assert_eq!(got, expected, "on {input:#?}");
        *codes.entry(expected.reasons[0].code.clone()).or_default() += 1;
        compared += 1;
    }
    assert_eq!(compared, 1536);
    // The combinations reach every reason either policy can give.
    let reached: Vec<&str> = codes.keys().map(String::as_str).collect();
    assert_eq!(
        reached,
        [
            "ConfigChanged",
            "ConfigDigestUnknown",
            "ConfigUnchanged",
            "NoBaseline",
            "NotApproved",
            "RunActive",
            "StrategyDone",
            "StrategyManual",
            "StrategyNow",
            "StrategyOnce",
            "WaitingForConfig",
        ]
    );
}

fn combinations() -> Vec<TriggerInput> {
    let events = [
        TriggerEvent::Created,
        TriggerEvent::JobFinished {
            outcome: JobOutcome::Succeeded,
        },
    ];
    let strategies = [
        Strategy::Manual,
        Strategy::Now,
        Strategy::Once,
        Strategy::Done,
    ];
    let digests_now = [None, Some("sha256:aa"), Some("sha256:bb")];
    let digests_last_run = [None, Some("sha256:aa")];
    let missing: [&[&str]; 2] = [&[], &["configmap/settings", "secret/creds"]];
    // No annotation, approved, and two values that are not an approval.
    let approvals = [None, Some("true"), Some("false"), Some("TRUE")];

    let mut inputs = Vec::new();
    for event in events {
        for strategy in strategies {
            for update_on_config_change in [false, true] {
                for now in digests_now {
                    for last_run in digests_last_run {
                        for missing in missing {
                            for run_active in [false, true] {
                                for approval in approvals {
                                    inputs.push(input(
                                        event,
                                        strategy,
                                        update_on_config_change,
                                        (now, last_run),
                                        missing,
                                        run_active,
                                        approval,
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    inputs
}

fn input(
    event: TriggerEvent,
    strategy: Strategy,
    update_on_config_change: bool,
    (now, last_run): (Option<&str>, Option<&str>),
    missing: &[&str],
    run_active: bool,
    approval: Option<&str>,
) -> TriggerInput {
    let mut annotations = BTreeMap::from([("team".to_owned(), "b".to_owned())]);
    if let Some(value) = approval {
        annotations.insert(APPROVAL.to_owned(), value.to_owned());
    }
    TriggerInput {
        event,
        quarks_job: QuarksJobView {
            name: "deploy".into(),
            namespace: "team-b".into(),
            uid: "uid-1".into(),
            generation: 1,
            labels: Default::default(),
            annotations,
            strategy,
            update_on_config_change,
            completed: false,
            run_count: 1,
            spec: serde_json::json!({"trigger": {"strategy": strategy}}),
        },
        config_digest_now: now.map(str::to_owned),
        config_digest_last_run: last_run.map(str::to_owned),
        missing_config: missing.iter().map(|s| s.to_string()).collect(),
        run_active,
    }
}
