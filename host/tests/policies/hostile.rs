//! Hostile and broken modules: each gives its specific error, and the same engine then still
//! serves a good call.

use std::time::{Duration, Instant};

use quarks_job::policy::contract::{QuarksJobView, Strategy, TriggerEvent, TriggerInput};
use quarks_job::policy::{Limits, PolicyEngine, PolicyError, World, builtin};

use super::{fixture, trigger_default};

fn any_trigger_input() -> TriggerInput {
    TriggerInput {
        event: TriggerEvent::Created,
        quarks_job: QuarksJobView {
            name: "q".into(),
            namespace: "ns".into(),
            uid: String::new(),
            generation: 1,
            labels: Default::default(),
            annotations: Default::default(),
            strategy: Strategy::Once,
            update_on_config_change: false,
            completed: false,
            run_count: 0,
            spec: serde_json::Value::Null,
        },
        config_digest_now: None,
        config_digest_last_run: None,
        missing_config: vec![],
        run_active: false,
    }
}

fn any_output_input() -> quarks_job::policy::contract::OutputInput {
    serde_json::from_value(serde_json::json!({
        "quarks-job-name": "q", "namespace": "ns",
        "output": {"output-type": "json"},
        "container": "c", "file-name": "f.json", "file": {"name": "s"},
        "content": "{}", "exit-code": 0
    }))
    .unwrap()
}

/// The engine still answers a well-behaved call correctly.
fn assert_still_serves(engine: &PolicyEngine) {
    let good = trigger_default(engine);
    let decision = engine
        .decide(&good, any_trigger_input())
        .expect("good call after a bad one");
    assert!(decision.run);
}

#[test]
fn infinite_loop_times_out_within_twice_the_limit() {
    let limit = Duration::from_millis(250);
    let engine = PolicyEngine::new(Limits {
        cpu: limit,
        ..Limits::default()
    })
    .unwrap();
    let policy = engine
        .load(&fixture("loop-forever"), World::Trigger)
        .unwrap();
    let started = Instant::now();
    let result = engine.decide(&policy, any_trigger_input());
    let took = started.elapsed();
    assert_eq!(result, Err(PolicyError::Timeout(limit)));
    assert!(took < 2 * limit, "stopped after {took:?}, limit {limit:?}");
    assert_still_serves(&engine);
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let engine = PolicyEngine::new(Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    })
    .unwrap();
    let policy = engine
        .load(&fixture("allocate-forever"), World::Trigger)
        .unwrap();
    assert_eq!(
        engine.decide(&policy, any_trigger_input()),
        Err(PolicyError::MemoryLimit(16 << 20))
    );
    assert_still_serves(&engine);
}

#[test]
fn a_panicking_policy_is_a_trap_not_a_crash() {
    let engine = super::engine();
    let policy = engine.load(&fixture("panics"), World::Output).unwrap();
    match engine.transform(&policy, any_output_input()) {
        Err(PolicyError::Trap(message)) => assert!(!message.is_empty()),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_still_serves(&engine);
}

#[test]
fn a_result_over_the_cap_is_refused() {
    let engine = super::engine();
    let policy = engine.load(&fixture("huge-result"), World::Output).unwrap();
    match engine.transform(&policy, any_output_input()) {
        Err(PolicyError::ResultTooLarge { size, limit }) => {
            assert!(size > limit, "{size} > {limit}");
            assert_eq!(limit, Limits::default().result_bytes);
        }
        other => panic!("expected ResultTooLarge, got {other:?}"),
    }
    assert_still_serves(&engine);
}

#[test]
fn a_policy_of_the_other_world_is_refused_at_load() {
    let engine = super::engine();
    match engine.load(builtin::TRIGGER_DEFAULT.bytes, World::Output) {
        Err(PolicyError::WrongWorld {
            expected: World::Output,
            detail,
        }) => {
            assert!(
                detail.contains("quarks:policy/trigger-policy@0.1.0"),
                "{detail}"
            );
        }
        other => panic!("expected WrongWorld, got {other:?}"),
    }
    assert_still_serves(&engine);
}

#[test]
fn random_bytes_are_not_wasm() {
    let engine = super::engine();
    // Deterministic pseudo-random bytes (an LCG): no need for a rand dependency.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 56) as u8
        })
        .collect();
    assert!(matches!(
        engine.load(&bytes, World::Trigger),
        Err(PolicyError::NotWasm(_))
    ));
    assert_still_serves(&engine);
}

#[test]
fn a_core_module_is_not_a_component() {
    let engine = super::engine();
    let module = wat::parse_str("(module (func (export \"decide\")))").unwrap();
    match engine.load(&module, World::Trigger) {
        Err(PolicyError::NotAComponent(message)) => {
            assert!(message.contains("component"), "{message}")
        }
        other => panic!("expected NotAComponent, got {other:?}"),
    }
}

#[test]
fn a_truncated_component_is_not_a_component() {
    let engine = super::engine();
    let bytes = builtin::TRIGGER_DEFAULT.bytes;
    let truncated = &bytes[..bytes.len() / 2];
    assert!(matches!(
        engine.load(truncated, World::Trigger),
        Err(PolicyError::NotAComponent(_))
    ));
    assert_still_serves(&engine);
}

#[test]
fn an_empty_component_is_the_wrong_world() {
    let engine = super::engine();
    let empty = wat::parse_str("(component)").unwrap();
    assert!(matches!(
        engine.load(&empty, World::Trigger),
        Err(PolicyError::WrongWorld {
            expected: World::Trigger,
            ..
        })
    ));
}

#[test]
fn an_unknown_major_contract_version_is_refused_by_name() {
    let engine = super::engine();
    let future = wat::parse_str(
        r#"(component
             (instance $i)
             (export "quarks:policy/trigger-policy@2.0.0" (instance $i)))"#,
    )
    .unwrap();
    match engine.load(&future, World::Trigger) {
        Err(PolicyError::UnsupportedVersion { found, .. }) => {
            assert_eq!(found, "quarks:policy/trigger-policy@2.0.0")
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn the_same_bytes_compile_once() {
    let engine = super::engine();
    let first = trigger_default(&engine);
    let second = trigger_default(&engine);
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(
        first.digest(),
        quarks_job::policy::PolicyDigest::of(builtin::TRIGGER_DEFAULT.bytes)
    );
}
