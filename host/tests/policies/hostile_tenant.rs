//! The hostile tenant, at the engine: components built to hurt the operator rather than to
//! decide. Each is refused by a bound (at load, before lifting, in the compiler child) and the
//! same engine then still serves a well-behaved call at its usual speed.

use std::time::{Duration, Instant};

use quarks_job::policy::compile::{CompileLimits, compile_in_child};
use quarks_job::policy::{Limits, PolicyDigest, PolicyError, World};

use super::hostile_components::{compile_heavy, many_instances, many_reasons};
use super::trigger_default;

fn input() -> quarks_job::policy::contract::TriggerInput {
    serde_json::from_value(serde_json::json!({
        "event": {"type": "created"},
        "quarks-job": {
            "name": "q", "namespace": "ns", "uid": "", "generation": 1, "labels": {},
            "annotations": {}, "strategy": "once", "update-on-config-change": false,
            "completed": false, "run-count": 0, "spec": null
        },
        "config-digest-now": null, "config-digest-last-run": null,
        "missing-config": [], "run-active": false
    }))
    .expect("input")
}

/// p99 of `decide` of the built-in trigger policy, over `calls` calls.
fn decide_p99(engine: &quarks_job::policy::PolicyEngine, calls: usize) -> Duration {
    let good = trigger_default(engine);
    let mut took: Vec<Duration> = (0..calls)
        .map(|_| {
            let started = Instant::now();
            engine.decide(&good, input()).expect("a good call");
            started.elapsed()
        })
        .collect();
    took.sort();
    took[calls * 99 / 100]
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn millions_of_empty_reasons_are_refused_before_they_are_lifted() {
    let engine = super::engine();
    // 3 million empty reasons: 48 MB in the guest, 144 MB on the host had it been lifted.
    let hostile = engine
        .load(&many_reasons(3_000_000, 800), World::Trigger)
        .expect("a valid trigger component");
    let before = rss_kib();
    let started = Instant::now();
    let result = engine.decide(&hostile, input());
    let took = started.elapsed();
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    eprintln!("3M empty reasons: {result:?} after {took:?}, RSS +{grown_mib} MiB");
    assert_eq!(
        result,
        Err(PolicyError::ResultTooLargeToLift {
            limit: Limits::default().lift_bytes()
        })
    );
    assert_eq!(
        result.unwrap_err().code(),
        "PolicyResultTooLarge",
        "the same code as any result over the cap"
    );
    // Only the guest's own memory (50 MiB, reused by the pool) was touched.
    assert!(grown_mib < 100, "RSS grew by {grown_mib} MiB");
    // A thousand are lifted (the bound is on what lifting allocates), then refused for what
    // they are: reasons without a code.
    let modest = engine
        .load(&many_reasons(1000, 1), World::Trigger)
        .expect("loads");
    match engine.decide(&modest, input()) {
        Err(PolicyError::InvalidResult(message)) => assert!(message.contains("reason code")),
        other => panic!("expected InvalidResult, got {other:?}"),
    }
    assert!(decide_p99(&engine, 200) < Duration::from_millis(20));
}

#[test]
fn a_component_with_hundreds_of_core_instances_is_refused_at_load() {
    let engine = super::engine();
    for loaded in [
        engine
            .load(&many_instances(300), World::Trigger)
            .map(|_| ()),
        // The same through the compiler child's machine code.
        PolicyEngineExt::through_child(&engine, &many_instances(300)),
    ] {
        match loaded {
            Err(PolicyError::TooComplex(message)) => {
                assert!(message.contains("300 core module instances"), "{message}")
            }
            other => panic!("expected TooComplex, got {other:?}"),
        }
    }
    assert_eq!(
        PolicyError::TooComplex(String::new()).code(),
        "PolicyTooComplex"
    );
    // A few are fine (it is refused later, for not being a trigger policy).
    assert!(matches!(
        engine.load(&many_instances(5), World::Trigger),
        Err(PolicyError::WrongWorld { .. })
    ));
    assert!(decide_p99(&engine, 200) < Duration::from_millis(20));
}

/// Loads machine code that the compiler child wrote (as the operator does).
trait PolicyEngineExt {
    fn through_child(&self, bytes: &[u8]) -> Result<(), PolicyError>;
}

impl PolicyEngineExt for quarks_job::policy::PolicyEngine {
    fn through_child(&self, bytes: &[u8]) -> Result<(), PolicyError> {
        let code = runtime().block_on(compile_in_child(&child(), bytes.to_vec()))?;
        // SAFETY: machine code our own binary's compiler wrote for these bytes.
        unsafe { self.load_compiled(&code, PolicyDigest::of(bytes), World::Trigger) }.map(|_| ())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn child() -> CompileLimits {
    CompileLimits {
        program: Some(env!("CARGO_BIN_EXE_quarks-job").into()),
        ..CompileLimits::default()
    }
}

#[test]
fn a_40_mib_component_is_compiled_under_a_time_limit_in_a_child_process() {
    let engine = super::engine();
    let alone = decide_p99(&engine, 500);
    let bytes = compile_heavy(40 << 10);
    assert!(bytes.len() > 39 << 20, "{} bytes", bytes.len());
    let limits = CompileLimits {
        wall: Duration::from_secs(3),
        ..child()
    };
    let rss_before = rss_kib();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let compiling = runtime.spawn(async move { compile_in_child(&limits, bytes).await });
    // Meanwhile the engine serves the other namespaces' calls as before.
    std::thread::sleep(Duration::from_millis(300));
    let beside = decide_p99(&engine, 500);
    let result = runtime.block_on(compiling).unwrap();
    let took = started.elapsed();
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    eprintln!(
        "40 MiB component: {result:?} after {took:?}; decide p99 alone {alone:?}, beside {beside:?}; RSS +{grown_mib} MiB"
    );
    match result {
        Err(PolicyError::CompileLimit(message)) => assert!(message.contains("3s"), "{message}"),
        other => panic!("expected CompileLimit, got {:?}", other.map(|c| c.len())),
    }
    assert_eq!(
        PolicyError::CompileLimit(String::new()).code(),
        "PolicyCompileLimit"
    );
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    // The compiler's memory was the child's: the test process holds the bytes and no more.
    assert!(grown_mib < 200, "RSS grew by {grown_mib} MiB");
    assert!(
        beside < Duration::from_millis(20),
        "decide p99 beside the compile {beside:?}"
    );
}

#[test]
fn a_compile_over_its_memory_limit_is_stopped_in_the_child() {
    let limits = CompileLimits {
        memory_bytes: 192 << 20,
        ..child()
    };
    let result = runtime().block_on(compile_in_child(&limits, compile_heavy(40 << 10)));
    eprintln!(
        "40 MiB component under 192 MiB: {:?}",
        result.as_ref().map(|c| c.len())
    );
    match result {
        Err(PolicyError::CompileLimit(message)) => assert!(message.contains("MiB"), "{message}"),
        other => panic!("expected CompileLimit, got {:?}", other.map(|c| c.len())),
    }
}

#[test]
fn the_compiler_child_writes_code_the_engine_loads() {
    let engine = super::engine();
    let bytes = quarks_job::policy::builtin::TRIGGER_DEFAULT.bytes;
    let code = runtime()
        .block_on(compile_in_child(&child(), bytes.to_vec()))
        .expect("compiles");
    // SAFETY: machine code our own binary's compiler wrote for these bytes.
    let loaded = unsafe { engine.load_compiled(&code, PolicyDigest::of(bytes), World::Trigger) }
        .expect("the child's engine configuration matches");
    assert!(engine.decide(&loaded, input()).expect("decides").run);
    // Garbage from the child is refused by name.
    match runtime().block_on(compile_in_child(&child(), b"not wasm at all".to_vec())) {
        Err(PolicyError::NotWasm(_)) => {}
        other => panic!("expected NotWasm, got {:?}", other.map(|c| c.len())),
    }
}
