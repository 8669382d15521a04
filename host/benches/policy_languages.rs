//! Policy languages benchmark: the approval trigger policy written in Rust
//! (examples/policies/approval-trigger) and in Python (examples/policies/approval-py, built by
//! componentize-py like the tests do), through the same engine under the default limits.
//! Prints a table: component size, cold compile (fresh engine), first decision after it, size
//! of the compiled module in the disk cache and a restart from it (fresh engine → first
//! decision), and warm decision latency p50/p99 with the ratio to Rust.
//!
//! Run: `cargo bench -p quarks-job --bench policy_languages` (`-- --quick` for fewer
//! iterations). Needs componentize-py: `source scripts/lib/setup.sh && ensure_policy_tools`.
//! `-- --policy NAME=PATH` adds another approval component to compare (e.g. one built with
//! componentize-js); it must decide like the others.
//!
//! Pull: each component is pushed to a local `docker-registry` (plain HTTP on loopback,
//! installed by scripts/test) and pulled with the operator's own client (size cap, digest
//! check); "pull + compile + first decision" is what a namespace waits for after selecting it.

#[path = "../tests/policies/python_policy.rs"]
mod python_policy;
// The benchmark pushes with the library, not the CLI helper.
#[allow(dead_code)]
#[path = "../tests/cluster/registry.rs"]
mod registry;

use std::time::{Duration, Instant};

use quarks_job::policy::contract::{
    QuarksJobView, Strategy, TriggerDecision, TriggerEvent, TriggerInput,
};
use quarks_job::policy::{Limits, PolicyEngine, World};

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.1} µs", d.as_nanos() as f64 / 1000.0)
    } else if d < Duration::from_secs(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn size(bytes: usize) -> String {
    if bytes < 1 << 20 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

/// An approved `once` QuarksJob: the policy runs the whole built-in logic and its gate.
fn input() -> TriggerInput {
    TriggerInput {
        event: TriggerEvent::Created,
        quarks_job: QuarksJobView {
            name: "deploy".into(),
            namespace: "team-b".into(),
            uid: "8c1f0d2e-0000-4000-8000-000000000001".into(),
            generation: 1,
            labels: [("app".to_owned(), "deploy".to_owned())].into(),
            annotations: [(
                "quarks.cloudfoundry.org/approved".to_owned(),
                "true".to_owned(),
            )]
            .into(),
            strategy: Strategy::Once,
            update_on_config_change: false,
            completed: false,
            run_count: 0,
            spec: serde_json::json!({"trigger": {"strategy": "once"}, "template": {"spec": {}}}),
        },
        config_digest_now: Some("sha256:0f1e".into()),
        config_digest_last_run: None,
        missing_config: vec![],
        run_active: false,
    }
}

struct Measured {
    name: String,
    /// Pull from the local registry (manifest + layer, verified).
    pull: Duration,
    size: usize,
    compile: Duration,
    first: Duration,
    warm: (Duration, Duration),
    decision: TriggerDecision,
    /// Size of the machine code kept in `--policy-cache-dir`.
    compiled_size: u64,
    /// A fresh engine (an operator restart): load from the disk cache, then first decision.
    restart: Duration,
}

/// Pushes `bytes` to the registry, then times a pull like the operator's (median of `n`).
fn pull_time(registry: &registry::Registry, name: &str, bytes: &[u8], n: usize) -> Duration {
    use quarks_job::policy::{oci, selection};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = oci::client(std::slice::from_ref(&registry.addr));
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let repository = format!(
        "bench/{}",
        name.to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            .trim_matches('-')
    );
    let digest = runtime
        .block_on(oci::push(
            &client,
            &format!("{}/{repository}:v1", registry.addr),
            bytes.to_vec(),
            &auth,
        ))
        .expect("push");
    let reference = selection::OciRef {
        registry: registry.addr.clone(),
        repository,
        tag: None,
        digest: Some(digest),
    };
    let rules = oci::RegistryRules::new(
        std::slice::from_ref(&registry.addr),
        std::slice::from_ref(&registry.addr),
        true,
    )
    .expect("rules");
    let puller = runtime
        .block_on(async { oci::Puller::new(rules) })
        .expect("puller");
    let samples = (0..n)
        .map(|_| {
            let start = Instant::now();
            let pulled = runtime
                .block_on(puller.pull(&reference, &auth, 64 << 20))
                .expect("pull");
            assert_eq!(pulled.bytes, bytes, "{name}: pulled what was pushed");
            start.elapsed()
        })
        .collect();
    percentiles(samples).0
}

fn measure(name: &str, bytes: &[u8], compiles: usize, calls: usize) -> Measured {
    let input = input();
    let mut compile = Vec::new();
    let mut first = Vec::new();
    let mut decision = None;
    let mut engine = None;
    let mut policy = None;
    for _ in 0..compiles {
        // A fresh engine: nothing cached, as in a new operator process.
        let fresh = PolicyEngine::new(Limits::default()).expect("engine");
        let start = Instant::now();
        let loaded = fresh.load(bytes, World::Trigger).expect("loads");
        compile.push(start.elapsed());
        let start = Instant::now();
        let decided = fresh.decide(&loaded, input.clone()).expect("decides");
        first.push(start.elapsed());
        decision = Some(decided);
        engine = Some(fresh);
        policy = Some(loaded);
    }
    let (engine, policy) = (engine.expect("engine"), policy.expect("policy"));
    let decision = decision.expect("a decision");
    assert!(decision.run, "{name}: {decision:?}");
    for _ in 0..calls.div_ceil(10) {
        engine.decide(&policy, input.clone()).expect("decides");
    }
    let samples = (0..calls)
        .map(|_| {
            let start = Instant::now();
            let decided = engine.decide(&policy, input.clone()).expect("decides");
            let took = start.elapsed();
            assert_eq!(decided, decision, "{name} decides the same every time");
            took
        })
        .collect();
    // The disk cache of compiled modules: written once, then read by a fresh engine.
    let cache = tempfile::tempdir().expect("temporary directory");
    PolicyEngine::new(Limits::default())
        .expect("engine")
        .compile_to_file(cache.path(), bytes, World::Trigger)
        .expect("compiles to the disk cache");
    let fresh = PolicyEngine::new(Limits::default()).expect("engine");
    let digest = policy.digest();
    let compiled_size = std::fs::read_dir(cache.path())
        .expect("cache directory")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|meta| meta.len())
        .sum();
    let start = Instant::now();
    let reloaded = fresh
        .load_compiled_file(cache.path(), digest, World::Trigger)
        .expect("loads from the disk cache")
        .expect("the compiled file is there");
    let after_restart = fresh.decide(&reloaded, input.clone()).expect("decides");
    let restart = start.elapsed();
    assert_eq!(after_restart, decision, "{name} after a restart");
    Measured {
        name: name.to_owned(),
        pull: Duration::ZERO,
        compiled_size,
        restart,
        size: bytes.len(),
        compile: percentiles(compile).0,
        first: percentiles(first).0,
        warm: percentiles(samples),
        decision,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let (compiles, calls) = if quick { (1, 200) } else { (3, 2000) };

    let mut policies = vec![
        (
            "Rust (approval-trigger)".to_owned(),
            std::fs::read(format!(
                "{}/approval-trigger.wasm",
                env!("QUARKS_POLICY_FIXTURES")
            ))
            .expect("the Rust approval policy, built by host/build.rs"),
        ),
        (
            "Python (approval-py, componentize-py)".to_owned(),
            std::fs::read(python_policy::approval_py()).expect("the Python approval policy"),
        ),
    ];
    for pair in args.windows(2).filter(|w| w[0] == "--policy") {
        let (name, path) = pair[1]
            .split_once('=')
            .expect("--policy NAME=PATH to a component");
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        policies.push((name.to_owned(), bytes));
    }

    let registry = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(registry::Registry::start());
    let measured: Vec<Measured> = policies
        .iter()
        .map(|(name, bytes)| Measured {
            pull: pull_time(&registry, name, bytes, if quick { 1 } else { 3 }),
            ..measure(name, bytes, compiles, calls)
        })
        .collect();
    for m in &measured[1..] {
        assert_eq!(
            m.decision, measured[0].decision,
            "{} decides like Rust",
            m.name
        );
    }

    println!(
        "Approval trigger policy by language: default limits ({:?} CPU, {} MiB per call), \
         {compiles} cold compile(s), {calls} warm calls{}\n",
        Limits::default().cpu,
        Limits::default().memory_bytes >> 20,
        if quick { " (--quick)" } else { "" }
    );
    println!(
        "| policy | component | pull | cold compile | first decision | pull + compile + first decision | compiled (disk cache) | restart → first decision | warm p50 | warm p99 | p50 vs Rust |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rust_p50 = measured[0].warm.0.as_secs_f64();
    for m in &measured {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1}x |",
            m.name,
            size(m.size),
            fmt(m.pull),
            fmt(m.compile),
            fmt(m.first),
            fmt(m.pull + m.compile + m.first),
            size(m.compiled_size as usize),
            fmt(m.restart),
            fmt(m.warm.0),
            fmt(m.warm.1),
            m.warm.0.as_secs_f64() / rust_p50.max(1e-9)
        );
    }
}
