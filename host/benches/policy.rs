//! Policy engine benchmark: prints a table. Warm calls of the built-in policies through the
//! engine against the same logic compiled natively (the baseline, measured in the same run),
//! cold compile time and cached-load time of each built-in.
//!
//! Run: `cargo bench -p quarks-job --bench policy` (add `-- --quick` for fewer iterations).

use std::time::{Duration, Instant};

use quarks_job::policy::contract as c;
use quarks_job::policy::{Limits, PolicyEngine, World, builtin};
use quarks_policy_sdk::{output as so, trigger as st};

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

fn time<F: FnMut()>(iterations: usize, mut f: F) -> (Duration, Duration) {
    for _ in 0..iterations.div_ceil(10) {
        f(); // warm-up
    }
    let samples = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    percentiles(samples)
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_micros(10) {
        format!("{:.2} µs", d.as_nanos() as f64 / 1000.0)
    } else if d < Duration::from_millis(10) {
        format!("{:.1} µs", d.as_nanos() as f64 / 1000.0)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

fn row(name: &str, (p50, p99): (Duration, Duration), baseline: Option<(Duration, Duration)>) {
    let ratio = baseline
        .map(|(b50, _)| format!("{:>8.1}x", p50.as_secs_f64() / b50.as_secs_f64().max(1e-9)))
        .unwrap_or_else(|| format!("{:>9}", "-"));
    println!(
        "| {name:<44} | {:>10} | {:>10} | {ratio} |",
        fmt(p50),
        fmt(p99)
    );
}

fn trigger_input() -> (c::TriggerInput, st::TriggerInput) {
    let host = c::TriggerInput {
        event: c::TriggerEvent::StrategyChanged {
            previous: c::Strategy::Manual,
        },
        quarks_job: c::QuarksJobView {
            name: "errand1".into(),
            namespace: "staging".into(),
            uid: "8c1f0d2e-0000-4000-8000-000000000001".into(),
            generation: 2,
            labels: [("app".to_owned(), "errand".to_owned())].into(),
            annotations: Default::default(),
            strategy: c::Strategy::Now,
            update_on_config_change: false,
            completed: false,
            run_count: 3,
            spec: serde_json::json!({"trigger": {"strategy": "now"}, "template": {"spec": {}}}),
        },
        config_digest_now: Some("sha256:0f1e".into()),
        config_digest_last_run: Some("sha256:0f1e".into()),
        missing_config: vec![],
        run_active: false,
    };
    let native = st::TriggerInput {
        event: st::TriggerEvent::StrategyChanged(st::Strategy::Manual),
        quarks_job: st::QuarksJob {
            name: host.quarks_job.name.clone(),
            namespace: host.quarks_job.namespace.clone(),
            uid: host.quarks_job.uid.clone(),
            generation: 2,
            labels: vec![("app".into(), "errand".into())],
            annotations: vec![],
            strategy: st::Strategy::Now,
            update_on_config_change: false,
            completed: false,
            run_count: 3,
            spec_json: host.quarks_job.spec.to_string(),
        },
        config_digest_now: host.config_digest_now.clone(),
        config_digest_last_run: host.config_digest_last_run.clone(),
        missing_config: vec![],
        run_active: false,
    };
    (host, native)
}

/// A flat JSON object of about `size` bytes, in 64-byte values.
fn flat_json(size: usize) -> Vec<u8> {
    let mut out = String::from("{");
    let mut i = 0;
    while out.len() + 80 < size {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("\"key-{i}\":\"{}\"", "v".repeat(64)));
        i += 1;
    }
    out.push('}');
    out.into_bytes()
}

fn output_input(content: Vec<u8>) -> (c::OutputInput, so::OutputInput) {
    let host = c::OutputInput {
        quarks_job_name: "output-job".into(),
        namespace: "staging".into(),
        output: c::OutputOptions {
            output_type: "json".into(),
            secret_labels: [("key".to_owned(), "value".to_owned())].into(),
            write_on_failure: false,
        },
        container: "busybox".into(),
        remote_id: None,
        file_name: "output.json".into(),
        file: c::FileOptions {
            name: "foo-json".into(),
            secret_labels: Default::default(),
            secret_annotations: Default::default(),
            versioned: false,
            persistence_method: c::PersistenceMethod::OneToOne,
        },
        content: c::Bytes(content.clone()),
        exit_code: 0,
    };
    let native = so::OutputInput {
        quarks_job_name: host.quarks_job_name.clone(),
        namespace: host.namespace.clone(),
        output: so::OutputOptions {
            output_type: "json".into(),
            secret_labels: vec![("key".into(), "value".into())],
            write_on_failure: false,
        },
        container: "busybox".into(),
        remote_id: None,
        file_name: "output.json".into(),
        file: so::FileOptions {
            name: "foo-json".into(),
            secret_labels: vec![],
            secret_annotations: vec![],
            versioned: false,
            persistence_method: so::PersistenceMethod::OneToOne,
        },
        content,
        exit_code: 0,
    };
    (host, native)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = |full: usize| if quick { (full / 10).max(5) } else { full };
    let engine = PolicyEngine::new(Limits::default()).expect("engine");

    println!(
        "| {:<44} | {:>10} | {:>10} | {:>9} |",
        "measurement", "p50", "p99", "vs native"
    );
    println!("|{:-<46}|{:->12}|{:->12}|{:->11}|", "", "", "", "");

    // Cold compile: a fresh engine each time, so nothing is cached.
    for b in builtin::all() {
        let cold = time(n(10), || {
            let fresh = PolicyEngine::new(Limits::default()).unwrap();
            fresh.load(b.bytes, b.world).unwrap();
        });
        row(
            &format!("cold compile {} ({} KiB)", b.name, b.bytes.len() / 1024),
            cold,
            None,
        );
    }
    for b in builtin::all() {
        // Held while measuring: the engine keeps a compiled module only while it is in use.
        let _held = engine.load(b.bytes, b.world).unwrap();
        let cached = time(n(1000), || {
            engine.load(b.bytes, b.world).unwrap();
        });
        row(
            &format!("cached load {} (digest + lookup)", b.name),
            cached,
            None,
        );
    }

    let trigger = engine
        .load(builtin::TRIGGER_DEFAULT.bytes, World::Trigger)
        .unwrap();
    let (host_in, native_in) = trigger_input();
    let native = time(n(20_000), || {
        std::hint::black_box(trigger_default::decide(std::hint::black_box(&native_in)));
    });
    let warm = time(n(20_000), || {
        std::hint::black_box(engine.decide(&trigger, host_in.clone()).unwrap());
    });
    row("native decide (baseline)", native, None);
    row("warm decide through the engine", warm, Some(native));

    let output = engine
        .load(builtin::OUTPUT_DEFAULT.bytes, World::Output)
        .unwrap();
    for (label, size, iterations) in [
        ("1 KiB", 1 << 10, 5_000),
        ("100 KiB", 100 << 10, 500),
        ("1 MiB", (1 << 20) - 64, 50),
    ] {
        let (host_in, native_in) = output_input(flat_json(size));
        let native = time(n(iterations), || {
            std::hint::black_box(
                output_default::transform(std::hint::black_box(&native_in)).unwrap(),
            );
        });
        let warm = time(n(iterations), || {
            std::hint::black_box(engine.transform(&output, host_in.clone()).unwrap());
        });
        row(
            &format!("native transform {label} (baseline)"),
            native,
            None,
        );
        row(
            &format!("warm transform {label} through the engine"),
            warm,
            Some(native),
        );
    }
}
