//! Hostile neighbours (issue 15, "Tests and figures"): one namespace attacks the operator
//! through its policies while another namespace's one-offs keep completing on time, and the
//! operator stays healthy. The figures (create → Job p99 against alone) are the bench's,
//! `cargo bench -p quarks-job --bench hostile`; here each victim run must complete within the
//! usual [`DEADLINE`], and the operator's RSS is printed.

use std::time::{Duration, Instant};

#[path = "../policies/hostile_components.rs"]
mod hostile_components;

use crate::{
    Cluster, DEADLINE, OperatorProcess, QJob, jobs_in, policy_component, put_module,
    ready_condition, select_policies, wait_completed, wait_for_reason,
};
use hostile_components::compile_heavy_salted;

/// (VmRSS, VmHWM) of the operator process, in MiB.
fn memory_mib(op: &OperatorProcess) -> (u64, u64) {
    let pid = op.child.id().expect("the operator runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Polls `/healthz` every 500 ms until `until`; the codes that were not 200.
async fn health_until(op: &OperatorProcess, until: Instant) -> Vec<u16> {
    let mut bad = Vec::new();
    while Instant::now() < until {
        let (code, _) = op.http_get("/healthz").await;
        if code != 200 {
            bad.push(code);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bad
}

/// Creates one-off `name` in `namespace` after `delay`, waits for its run to complete; how long
/// that took from the create.
async fn one_off_completes(c: &Cluster, namespace: &str, name: &str, delay: Duration) -> Duration {
    tokio::time::sleep(delay).await;
    let started = Instant::now();
    c.create_qjob_in(namespace, &QJob::new(name, "once").script("true"))
        .await;
    wait_completed(c, namespace, name, 1).await;
    started.elapsed()
}

fn report(what: &str, took: &[Duration]) -> Duration {
    let mut sorted = took.to_vec();
    sorted.sort();
    let worst = *sorted.last().expect("runs");
    println!(
        "{what}: {} one-offs completed, create → completed median {:?}, worst {worst:?}",
        sorted.len(),
        sorted[sorted.len() / 2]
    );
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_config_map_rewritten_every_second_leaves_another_namespaces_runs_on_time() {
    let c = Cluster::start().await;
    let victim = c.namespace.clone();
    let hostile = format!("{victim}-hostile");
    c.create_namespace(&hostile, Some(&c.monitored_id)).await;
    // As large as a ConfigMap comfortably holds, and costly to compile.
    put_module(&c, &hostile, "churn", compile_heavy_salted(900, 0)).await;
    select_policies(&c, &hostile, &[("trigger", "configmap:churn/policy.wasm")]).await;
    // It applies the CRD.
    let op = c.operator().await;
    for i in 0..3 {
        c.create_qjob_in(
            &hostile,
            &QJob::new(&format!("h{i}"), "once").script("true"),
        )
        .await;
    }
    let (rss_before, _) = memory_mib(&op);

    // 20 rewrites, one a second, each a new digest; meanwhile a victim one-off every 2 s.
    let rewrites = 20;
    let until = Instant::now() + Duration::from_secs(rewrites);
    let rewriter = async {
        let mut peak = 0;
        for salt in 1..=rewrites {
            tokio::time::sleep(Duration::from_secs(1)).await;
            put_module(&c, &hostile, "churn", compile_heavy_salted(900, salt)).await;
            peak = peak.max(memory_mib(&op).0);
        }
        peak
    };
    let victims = futures::future::join_all((0..10u32).map(|i| {
        let name = format!("v{i}");
        let victim = victim.clone();
        let c = &c;
        async move { one_off_completes(c, &victim, &name, Duration::from_secs(2) * i).await }
    }));
    let (peak, took, unhealthy) = tokio::join!(rewriter, victims, health_until(&op, until));

    let worst = report("beside a module rewritten every second", &took);
    assert!(worst < DEADLINE, "a victim run took {worst:?}");
    assert!(unhealthy.is_empty(), "/healthz answered {unhealthy:?}");
    let (rss, hwm) = memory_mib(&op);
    println!(
        "operator RSS: {rss_before} MiB before, {peak} MiB at most while rewritten (sampled), \
         {rss} MiB after; VmHWM {hwm} MiB"
    );
    assert!(
        hwm < 512,
        "the operator's peak RSS {hwm} MiB (the chart's limit is 512)"
    );
    // The neighbour is still waiting for (or refused) whatever it wrote last, and ran nothing.
    let (reason, message) = ready_condition(&c, &hostile, "h0")
        .await
        .unwrap_or_default();
    println!("neighbour: {reason}: {message}");
    assert!(
        ["PolicyPending", "PolicyWrongWorld", "PolicyCompileLimit"].contains(&reason.as_str()),
        "{reason}: {message}"
    );
    assert!(jobs_in(&c, &hostile).await.is_empty());
    let (code, _) = op.http_get("/healthz").await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_policy_next_door_does_not_hold_up_another_namespaces_one_offs() {
    let c = Cluster::start().await;
    let victim = c.namespace.clone();
    let hostile = format!("{victim}-hostile");
    c.create_namespace(&hostile, Some(&c.monitored_id)).await;
    put_module(
        &c,
        &hostile,
        "spin",
        std::fs::read(policy_component("loop-forever")).unwrap(),
    )
    .await;
    select_policies(&c, &hostile, &[("trigger", "configmap:spin/policy.wasm")]).await;
    let op = c.operator().await;
    for i in 0..20 {
        c.create_qjob_in(
            &hostile,
            &QJob::new(&format!("h{i}"), "once").script("true"),
        )
        .await;
    }
    let message = wait_for_reason(&c, &hostile, "h0", "PolicyTimeout").await;
    println!("neighbour: PolicyTimeout: {message}");

    // Ten one-offs at once, while the neighbour's twenty keep being decided (and refused).
    let until = Instant::now() + Duration::from_secs(5);
    let victims = futures::future::join_all((0..10).map(|i| {
        let name = format!("v{i}");
        let victim = victim.clone();
        let c = &c;
        async move { one_off_completes(c, &victim, &name, Duration::ZERO).await }
    }));
    let (took, unhealthy) = tokio::join!(victims, health_until(&op, until));

    let worst = report("beside a looping policy", &took);
    assert!(worst < DEADLINE, "a victim run took {worst:?}");
    assert!(unhealthy.is_empty(), "/healthz answered {unhealthy:?}");
    let (rss, hwm) = memory_mib(&op);
    println!("operator RSS {rss} MiB, VmHWM {hwm} MiB");
    assert!(
        hwm < 512,
        "the operator's peak RSS {hwm} MiB (the chart's limit is 512)"
    );
    for i in 0..20 {
        let (reason, _) = ready_condition(&c, &hostile, &format!("h{i}"))
            .await
            .unwrap_or_default();
        assert!(
            [
                "PolicyTimeout",
                "PolicyBudgetExhausted",
                "PolicyPending",
                ""
            ]
            .contains(&reason.as_str()),
            "h{i}: {reason}"
        );
    }
    assert!(jobs_in(&c, &hostile).await.is_empty());
}
