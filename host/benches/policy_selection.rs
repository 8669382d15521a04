//! Per-namespace policy benchmark (issue 7): prints markdown tables, asserts nothing about
//! timings.
//!
//! Engine, in this process:
//! 1. cold compile (a fresh engine each time) and cached load (digest + lookup of a module in
//!    use) per module: the built-ins and the example policies;
//! 2. memory per distinct compiled module: VmRSS before and after compiling N variants of the
//!    approval policy (each with a different custom section, so a different digest), and after
//!    dropping them (the engine keeps only modules in use).
//!
//! Operator, the real `quarks-job` binary against kubesim started in this process without
//! kubelet (a Job "exists" as an API object; no pods run):
//! 3. hot swap: namespace B selects the approval policy and holds an unapproved one-off; the
//!    selection is switched to `builtin:trigger-default` → time until that QuarksJob's Job
//!    exists (seen by a watcher). p50/p99 over N swaps (each swap first switches back).
//! 4. isolation: create → Job latency of one-offs in namespace A (defaults), alone, then while
//!    namespace C holds 20 QuarksJobs whose policy loops until its 100 ms limit on every call;
//!    the operator's CPU use in both phases.
//!
//! Targets (issue 7): hot swap p50 ≤ 1 s; A's p99 unchanged within noise.
//!
//! Run: `cargo bench -p quarks-job --bench policy_selection` (`-- --quick` for fewer rounds).

mod support;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use kubesim::{KubeSim, KubeSimOptions};
use quarks_job::crd::QuarksJob;
use quarks_job::policy::{Limits, PolicyEngine, World, builtin};
use support::{
    DEADLINE, JobsSeen, Operator, create_namespace, fixture, memory_mib, ms, percentile,
    put_module, select_trigger, wait_for,
};

/// The same component with a custom section appended: valid, and a different digest.
fn variant(bytes: &[u8], i: usize) -> Vec<u8> {
    let name = b"bench";
    let payload = i.to_le_bytes();
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn timed(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples
}

fn row(what: &str, samples: &[Duration]) {
    println!(
        "| {what} | {} | {} |",
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.99))
    );
}

fn engine_tables(quick: bool) {
    let modules: Vec<(String, Vec<u8>, World)> = builtin::all()
        .iter()
        .map(|b| (format!("builtin:{}", b.name), b.bytes.to_vec(), b.world))
        .chain([
            (
                "example approval-trigger".to_owned(),
                fixture("approval-trigger"),
                World::Trigger,
            ),
            (
                "example dotenv-output".to_owned(),
                fixture("dotenv-output"),
                World::Output,
            ),
        ])
        .collect();
    println!("\n### Compile and cached load per module\n");
    println!("| module | size | cold compile p50 | p99 | cached load p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    for (name, bytes, world) in &modules {
        let cold = timed(if quick { 3 } else { 10 }, || {
            let fresh = PolicyEngine::new(Limits::default()).unwrap();
            fresh.load(bytes, *world).unwrap();
        });
        let engine = PolicyEngine::new(Limits::default()).unwrap();
        let _held = engine.load(bytes, *world).unwrap();
        let cached = timed(1000, || {
            engine.load(bytes, *world).unwrap();
        });
        println!(
            "| {name} | {} KiB | {} | {} | {:.1} µs | {:.1} µs |",
            bytes.len() / 1024,
            ms(percentile(&cold, 0.5)),
            ms(percentile(&cold, 0.99)),
            percentile(&cached, 0.5).as_secs_f64() * 1e6,
            percentile(&cached, 0.99).as_secs_f64() * 1e6,
        );
    }

    let n = if quick { 10 } else { 40 };
    let approval = fixture("approval-trigger");
    let engine = PolicyEngine::new(Limits::default()).unwrap();
    let pid = std::process::id();
    let before = memory_mib(pid).0;
    let held: Vec<_> = (0..n)
        .map(|i| engine.load(&variant(&approval, i), World::Trigger).unwrap())
        .collect();
    let loaded = memory_mib(pid).0;
    assert_eq!(engine.compiled_count(), n);
    drop(held);
    let dropped = memory_mib(pid).0;
    println!("\n### Memory per distinct compiled module (approval-trigger variants)\n");
    println!(
        "| modules | RSS before | with them | per module | after dropping them | still compiled |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {n} | {before:.1} MiB | {loaded:.1} MiB | {:.0} KiB | {dropped:.1} MiB | {} |",
        (loaded - before) * 1024.0 / n as f64,
        engine.compiled_count()
    );
}

fn one_off(name: &str) -> QuarksJob {
    support::busybox_one_off(name, serde_json::json!(["true"]), None)
}

async fn ready_reason(api: &Api<QuarksJob>, name: &str) -> Option<String> {
    api.get_opt(name)
        .await
        .ok()??
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason)
}

/// create → Job exists, for `n` one-offs in `namespace`, one at a time.
async fn creation_latencies(
    client: &kube::Client,
    seen: &JobsSeen,
    operator: &Operator,
    namespace: &str,
    prefix: &str,
    n: usize,
) -> Vec<Duration> {
    let api: Api<QuarksJob> = Api::namespaced(client.clone(), namespace);
    let mut samples = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        let t = Instant::now();
        api.create(&PostParams::default(), &one_off(&name))
            .await
            .unwrap();
        let at = seen.wait(namespace, &format!("{name}-1"), operator).await;
        samples.push(at.saturating_duration_since(t));
    }
    samples.sort();
    samples
}

async fn operator_tables(quick: bool) {
    let sim = KubeSim::start(KubeSimOptions {
        run_kubelet: false,
        ..Default::default()
    })
    .await
    .expect("kubesim");
    let client = sim.client().await.unwrap();
    let id = "bench";
    let (a, b, c) = ("team-a", "team-b", "team-c");
    for ns in [a, b, c] {
        create_namespace(&client, ns, Some(id)).await;
    }
    put_module(&client, b, "approval", fixture("approval-trigger")).await;
    put_module(&client, c, "hostile", fixture("loop-forever")).await;
    let operator = Operator::start(sim.kubeconfig_path(), &client, id, &[]).await;
    let seen = JobsSeen::start(Api::all(client.clone()));

    // 3. Hot swap.
    let b_api: Api<QuarksJob> = Api::namespaced(client.clone(), b);
    let mut swaps = Vec::new();
    for i in 0..(if quick { 5 } else { 20 }) {
        select_trigger(&client, b, "configmap:approval/policy.wasm").await;
        let name = format!("swap-{i}");
        b_api
            .create(&PostParams::default(), &one_off(&name))
            .await
            .unwrap();
        wait_for("NotApproved", DEADLINE, || async {
            ready_reason(&b_api, &name).await.as_deref() == Some("NotApproved")
        })
        .await;
        let t = Instant::now();
        select_trigger(&client, b, "builtin:trigger-default").await;
        let at = seen.wait(b, &format!("{name}-1"), &operator).await;
        swaps.push(at.saturating_duration_since(t));
    }
    swaps.sort();

    // 4. Isolation.
    let n = if quick { 20 } else { 100 };
    let _ = creation_latencies(&client, &seen, &operator, a, "warm", 5).await;
    let cpu0 = support::cpu_seconds(&operator.pid.to_string());
    let t0 = Instant::now();
    let alone = creation_latencies(&client, &seen, &operator, a, "alone", n).await;
    let cpu_alone =
        (support::cpu_seconds(&operator.pid.to_string()) - cpu0) / t0.elapsed().as_secs_f64();

    select_trigger(&client, c, "configmap:hostile/policy.wasm").await;
    let c_api: Api<QuarksJob> = Api::namespaced(client.clone(), c);
    for i in 0..20 {
        c_api
            .create(&PostParams::default(), &one_off(&format!("victim-{i}")))
            .await
            .unwrap();
    }
    wait_for("C's policy to time out", DEADLINE, || async {
        ready_reason(&c_api, "victim-19").await.as_deref() == Some("PolicyTimeout")
            || ready_reason(&c_api, "victim-19").await.as_deref() == Some("PolicyBudgetExhausted")
    })
    .await;
    let cpu1 = support::cpu_seconds(&operator.pid.to_string());
    let t1 = Instant::now();
    let hostile = creation_latencies(&client, &seen, &operator, a, "beside-hostile", n).await;
    let cpu_hostile =
        (support::cpu_seconds(&operator.pid.to_string()) - cpu1) / t1.elapsed().as_secs_f64();
    let timeouts = operator.metric("quarks_job_policy_errors_total").await;
    let by_code: Vec<String> = support::http_get(operator.addr, "/metrics")
        .await
        .map(|(_, body)| body)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("quarks_job_policy_errors_total{"))
        .map(|l| {
            let code = l
                .split("code=\"")
                .nth(1)
                .and_then(|c| c.split('"').next())
                .unwrap_or("?");
            format!("{code} {}", l.rsplit(' ').next().unwrap_or("?"))
        })
        .collect();
    let (rss, hwm) = memory_mib(operator.pid);

    println!("\n### Hot swap and isolation (operator on kubesim, no kubelet)\n");
    println!("| measurement | p50 | p99 |");
    println!("|---|---|---|");
    row(
        &format!("hot swap: selection change → Job ({} swaps)", swaps.len()),
        &swaps,
    );
    row(&format!("A: create → Job, alone ({n})"), &alone);
    row(&format!("A: create → Job, C looping ({n})"), &hostile);
    println!(
        "\nA's p99 with C hostile / alone: {:.2}x; p50: {:.2}x. Operator CPU: {:.0}% alone, {:.0}% with C \
         (policy errors counted: {timeouts:.0}: {}). RSS {rss:.1} MiB (peak {hwm:.1} MiB).",
        percentile(&hostile, 0.99).as_secs_f64() / percentile(&alone, 0.99).as_secs_f64(),
        percentile(&hostile, 0.5).as_secs_f64() / percentile(&alone, 0.5).as_secs_f64(),
        cpu_alone * 100.0,
        cpu_hostile * 100.0,
        by_code.join(", "),
    );
    operator.stop().await;
    sim.stop().await;
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!(
        "## Per-namespace policies{}",
        if quick { " (--quick)" } else { "" }
    );
    engine_tables(quick);
    operator_tables(quick).await;
}
