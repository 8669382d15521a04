//! The hostile tenant, at the engine: components built to hurt the operator rather than to
//! decide. Each is refused by a bound (at load, before lifting, in the compiler child) and the
//! same engine then still serves a well-behaved call at its usual speed.

use std::time::{Duration, Instant};

use quarks_job::policy::compile::{CompileLimits, compile_in_child};
use quarks_job::policy::{Limits, PolicyDigest, PolicyError, World};

use super::trigger_default;

/// A trigger policy (hand-written, the contract's types spelled out) whose `decide` answers
/// `count` empty reasons: 16 bytes each in the guest, 48 on the host once lifted.
fn many_reasons(count: u32, pages: u32) -> Vec<u8> {
    let text = r#"(component
  (core module $m
    (memory (export "memory") PAGES)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 64)
    (func (export "decide") (param i32) (result i32)
      (i32.store (i32.const 8) (i32.const 1024))
      (i32.store (i32.const 12) (i32.const COUNT))
      i32.const 0))
  (core instance $i (instantiate $m))
  (type $strategy-def (enum "manual" "now" "once" "done"))
  (export $strategy "strategy" (type $strategy-def))
  (type $reason-def (record (field "code" string) (field "message" string)))
  (export $reason "reason" (type $reason-def))
  (type $outcome-def (enum "succeeded" "failed"))
  (export $outcome "job-outcome" (type $outcome-def))
  (type $event-def (variant (case "created") (case "spec-changed") (case "strategy-changed" $strategy) (case "config-changed") (case "job-finished" $outcome) (case "resync")))
  (export $event "trigger-event" (type $event-def))
  (type $map (list (tuple string string)))
  (type $qjob-def (record (field "name" string) (field "namespace" string) (field "uid" string) (field "generation" s64) (field "labels" $map) (field "annotations" $map) (field "strategy" $strategy) (field "update-on-config-change" bool) (field "completed" bool) (field "run-count" u64) (field "spec-json" string)))
  (export $qjob "quarks-job" (type $qjob-def))
  (type $input-def (record (field "event" $event) (field "quarks-job" $qjob) (field "config-digest-now" (option string)) (field "config-digest-last-run" (option string)) (field "missing-config" (list string)) (field "run-active" bool)))
  (export $input "trigger-input" (type $input-def))
  (type $decision-def (record (field "run" bool) (field "write-strategy" (option $strategy)) (field "reasons" (list $reason))))
  (export $decision "trigger-decision" (type $decision-def))
  (type $decide (func (param "input" $input) (result (result $decision (error $reason)))))
  (func $decide (type $decide) (canon lift (core func $i "decide") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (instance $policy (export "decide" (func $decide)))
  (export "quarks:policy/trigger-policy@0.1.0" (instance $policy))
)
"#;
    wat::parse_str(
        text.replace("COUNT", &count.to_string())
            .replace("PAGES", &pages.to_string()),
    )
    .expect("the component parses")
}

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

/// A component that instantiates an empty core module `instances` times.
fn many_instances(instances: usize) -> Vec<u8> {
    let mut text = String::from("(component (core module $m)");
    for _ in 0..instances {
        text.push_str(" (core instance (instantiate $m))");
    }
    text.push(')');
    wat::parse_str(&text).expect("parses")
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

/// A component of about `mib` MiB: one core module of many functions, each a long chain of
/// arithmetic on locals (costly to compile), written as binary directly.
fn big_component(mib: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len(), out);
        out.extend_from_slice(body);
    }
    // (func (param i32) (result i32) ...): one long dependency chain on the parameter, so
    // that nothing of it can be optimised away.
    let mut body = vec![0];
    for i in 0..4000usize {
        let k = (i % 64) as u8;
        body.extend_from_slice(&[0x20, 0, 0x41, k, 0x6a, 0x20, 0, 0x6c, 0x21, 0]);
    }
    body.extend_from_slice(&[0x20, 0, 0x0b]);
    let functions = (mib << 20) / (body.len() + 3);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 1, 0x7f, 1, 0x7f], &mut module);
    let mut funcs = Vec::new();
    leb(functions, &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, functions));
    section(3, &funcs, &mut module);
    let mut code = Vec::new();
    leb(functions, &mut code);
    for _ in 0..functions {
        leb(body.len(), &mut code);
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
}

#[test]
fn a_40_mib_component_is_compiled_under_a_time_limit_in_a_child_process() {
    let engine = super::engine();
    let alone = decide_p99(&engine, 500);
    let bytes = big_component(40);
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
    let result = runtime().block_on(compile_in_child(&limits, big_component(40)));
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
