//! Operator benchmark (issue 4): prints a markdown table, asserts nothing about timings.
//!
//! Everything runs on loopback against kubesim started in this process **without its kubelet
//! and Job controller** (`run_kubelet: false`): a Job "exists" as an API object, no pods are
//! made, so the 2-core machine measures the operator and the API server, not fake containers.
//! The real `quarks-job` binary (`CARGO_BIN_EXE_quarks-job`, which cargo builds for benches)
//! runs as a child process: `--kubeconfig <sim> --monitored-id <id> --apply-crd
//! --listen 127.0.0.1:0 --max-workers 16`.
//!
//! 1. Latency QuarksJob create → its Job exists: one-off QuarksJobs created one at a time
//!    (after 5 uncounted warm-ups); the Job's arrival is timestamped by a kube-runtime
//!    watcher on Jobs. p50/p99. (The original Go operator waits at least 10 s per trigger.)
//! 2. Throughput: 1 000 one-off QuarksJobs over 100 namespaces, created 16 at a time → time
//!    from the first create until a watcher has seen all 1 000 Jobs; against the floor of a
//!    bare kube client creating 1 000 equivalent Jobs, 16 at a time, into 100 unmonitored
//!    namespaces in the same run (measured before and after the operator run; the faster
//!    counts). Also the API requests the operator made per QuarksJob (kubesim's request log).
//! 3. Memory: VmRSS (and VmHWM, the peak) of the operator process, idle on a fresh kubesim,
//!    then with 10 000 QuarksJobs (strategy `manual`: nothing runs) once all of them carry
//!    `status.observedGeneration`.
//!
//! Targets (issue 4): p50 ≤ 100 ms, ratio ≤ 1.5, RSS ≤ 100 MiB.
//!
//! Run: `cargo bench -p quarks-job --bench operator` (a few minutes on 2 cores);
//! `cargo bench -p quarks-job --bench operator -- --quick` for smaller counts (20 / 100 / 1 000);
//! `-- --memory` runs only part 3; `-- --real` also runs parts 1 and 2 on the real
//! kube-apiserver + kube-controller-manager v1.24 of `../shared/k8s` (started by the bench in a
//! temporary directory), its bare-client floor measured on the same server in the same run.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::runtime::watcher;
use kubesim::{KubeSim, KubeSimOptions};
use quarks_job::crd::QuarksJob;
use quarks_job::names::job::QJOB_NAME_LABEL;
use serde_json::json;
use tokio::sync::mpsc;

mod support;
use support::{DEADLINE, Operator, cpu_seconds, create_namespace, memory_mib, ms, percentile};

/// The operator's flags in this benchmark: as many workers as the bench's own clients.
fn operator_args() -> Vec<String> {
    vec!["--max-workers".into(), CONCURRENCY.to_string()]
}

/// Concurrent creates, for the bench's own clients (and the operator's `--max-workers`).
const CONCURRENCY: usize = 16;
const WARMUP: usize = 5;

struct Counts {
    latency: usize,
    burst: usize,
    burst_namespaces: usize,
    idle: usize,
    idle_namespaces: usize,
}

/// The pod template of every QuarksJob and bare Job: an image no kubelet can pull.
fn pod_template() -> serde_json::Value {
    json!({"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "unpullable.invalid/none", "command": ["true"]}]
    }})
}

fn qjob(name: &str, strategy: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "quarks.cloudfoundry.org/v1alpha1",
        "kind": "QuarksJob",
        "metadata": {"name": name},
        "spec": {"trigger": {"strategy": strategy}, "template": {"spec": {"backoffLimit": 0, "template": pod_template()}}}
    }))
    .expect("QuarksJob")
}

fn qjob_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<QuarksJob>(&()),
    )
}

/// Creates `count` QuarksJobs named `{prefix}{i}` in `namespaces[i % len]`, `CONCURRENCY` at a time.
async fn create_qjobs(
    client: &kube::Client,
    namespaces: &[String],
    prefix: &str,
    count: usize,
    strategy: &str,
) {
    futures::stream::iter(0..count)
        .map(|i| {
            let api = qjob_api(client, &namespaces[i % namespaces.len()]);
            async move {
                api.create(
                    &PostParams::default(),
                    &qjob(&format!("{prefix}{i}"), strategy),
                )
                .await
                .expect("create QuarksJob")
            }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
}

/// A bare client creating `count` Jobs like the operator's, `CONCURRENCY` at a time.
async fn create_bare_jobs(
    client: &kube::Client,
    namespaces: &[String],
    prefix: &str,
    count: usize,
) -> Duration {
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api: Api<Job> = Api::namespaced(client.clone(), &namespaces[i % namespaces.len()]);
            let job: Job = serde_json::from_value(json!({
                "metadata": {"name": format!("{prefix}{i}-1"), "labels": {"bench": "bare"}},
                "spec": {"backoffLimit": 0, "template": pod_template()}
            }))
            .expect("Job");
            async move {
                api.create(&PostParams::default(), &job)
                    .await
                    .expect("create Job")
            }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
    started.elapsed()
}

/// Watches the operator's Jobs (labelled with their QuarksJob's name) and sends
/// (namespace, QuarksJob name, arrival time) for each new one; `None` once the initial list is in.
fn watch_jobs(api: Api<Job>) -> mpsc::UnboundedReceiver<Option<(String, String, Instant)>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut stream = watcher(api, watcher::Config::default().labels(QJOB_NAME_LABEL)).boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            let now = Instant::now();
            let job = match event {
                watcher::Event::Apply(job) | watcher::Event::InitApply(job) => job,
                watcher::Event::InitDone => {
                    let _ = tx.send(None);
                    continue;
                }
                _ => continue,
            };
            let namespace = job.metadata.namespace.clone().unwrap_or_default();
            if !seen.insert((
                namespace.clone(),
                job.metadata.name.clone().unwrap_or_default(),
            )) {
                continue;
            }
            let owner = job
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(QJOB_NAME_LABEL))
                .cloned()
                .unwrap_or_default();
            if tx.send(Some((namespace, owner, now))).is_err() {
                return;
            }
        }
    });
    rx
}

async fn watch_ready(rx: &mut mpsc::UnboundedReceiver<Option<(String, String, Instant)>>) {
    tokio::time::timeout(DEADLINE, async {
        while let Some(Some(_)) = rx.recv().await {}
    })
    .await
    .expect("the Job watcher lists");
}

/// Requests by `verb resource[/subresource]` in `log[from..]`, largest first.
fn tally(log: &[kubesim::RequestRecord]) -> Vec<(String, usize)> {
    let mut counts = BTreeMap::<String, usize>::new();
    for r in log {
        let sub = if r.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", r.subresource)
        };
        *counts
            .entry(format!("{} {}{sub}", r.verb, r.resource))
            .or_default() += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    v
}

/// The API server phases 1 and 2 run against.
enum Target {
    /// kubesim in this process (kubelet and Job controller off).
    KubeSim(KubeSim),
    /// The real kube-apiserver and kube-controller-manager of ../shared/k8s (no node: the
    /// real Job controller makes pods that stay Pending, for the operator and the floor alike).
    Real(kubesim::control_plane::ControlPlane),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::KubeSim(_) => "kubesim",
            Target::Real(_) => "kube-apiserver 1.24",
        }
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        match self {
            Target::KubeSim(sim) => sim.kubeconfig_path().to_path_buf(),
            Target::Real(plane) => plane.kubeconfig(),
        }
    }

    async fn client(&self) -> kube::Client {
        match self {
            Target::KubeSim(sim) => sim.client().await.expect("client"),
            Target::Real(plane) => plane.client().await.expect("client"),
        }
    }

    /// kubesim's request log; the real API server keeps none.
    fn request_log(&self) -> Option<Vec<kubesim::RequestRecord>> {
        match self {
            Target::KubeSim(sim) => Some(sim.request_log()),
            Target::Real(_) => None,
        }
    }
}

/// 1. create → Job latency and 2. burst throughput against the bare-client floor, on `target`.
async fn api_phases(
    target: &Target,
    counts: &Counts,
    id: &str,
    rows: &mut Vec<(String, String, String)>,
    notes: &mut Vec<String>,
) {
    let client = target.client().await;
    let operator = Operator::start(&target.kubeconfig(), &client, id, &operator_args()).await;
    let on = target.name();
    // Names of this run: a real cluster is shared with earlier runs.
    let latency_ns = format!("{id}-latency");

    create_namespace(&client, &latency_ns, Some(id)).await;
    let mut jobs = watch_jobs(Api::namespaced(client.clone(), &latency_ns));
    watch_ready(&mut jobs).await;
    let api = qjob_api(&client, &latency_ns);
    let mut samples = Vec::new();
    for i in 0..WARMUP + counts.latency {
        let name = format!("once-{i}");
        let sent = Instant::now();
        api.create(&PostParams::default(), &qjob(&name, "once"))
            .await
            .expect("create QuarksJob");
        let arrived = tokio::time::timeout(DEADLINE, async {
            loop {
                match jobs.recv().await {
                    Some(Some((_, owner, at))) if owner == name => return at,
                    Some(_) => {}
                    None => panic!("the Job watcher ended"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no Job for QuarksJob {name}; operator log:\n{}",
                operator.log_tail()
            )
        });
        if i >= WARMUP {
            samples.push(arrived - sent);
        }
    }
    drop(jobs);
    samples.sort();
    rows.push((
        format!(
            "{on}: QuarksJob create → Job exists, p50 (n = {})",
            counts.latency
        ),
        ms(percentile(&samples, 0.5)),
        "≤ 100 ms (Go operator: ≥ 10 s)".into(),
    ));
    rows.push((
        format!("{on}: QuarksJob create → Job exists, p99"),
        ms(percentile(&samples, 0.99)),
        "-".into(),
    ));

    let monitored: Vec<String> = (0..counts.burst_namespaces)
        .map(|i| format!("{id}-burst-{i}"))
        .collect();
    let bare: Vec<String> = (0..counts.burst_namespaces)
        .map(|i| format!("{id}-bare-{i}"))
        .collect();
    for ns in &monitored {
        create_namespace(&client, ns, Some(id)).await;
    }
    for ns in &bare {
        create_namespace(&client, ns, None).await;
    }
    let bare_before = create_bare_jobs(&client, &bare, "a", counts.burst).await;

    let mut jobs = watch_jobs(Api::all(client.clone()));
    watch_ready(&mut jobs).await;
    let log_from = target.request_log().map_or(0, |log| log.len());
    let requests_before = operator.metric("rest_client_requests_total").await;
    let (cpu_operator, cpu_bench) = (cpu_seconds(&operator.pid.to_string()), cpu_seconds("self"));
    let reconciles = operator.metric("controller_runtime_reconcile_total").await;
    let burst_prefix = format!("{id}-burst-");
    let started = Instant::now();
    let creating = create_qjobs(&client, &monitored, "once-", counts.burst, "once");
    let counting = async {
        let mut seen = 0;
        let mut last = started;
        while seen < counts.burst {
            match tokio::time::timeout(Duration::from_secs(120), jobs.recv()).await {
                Ok(Some(Some((namespace, _, at)))) if namespace.starts_with(&burst_prefix) => {
                    seen += 1;
                    last = at;
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("the Job watcher ended"),
                Err(_) => panic!(
                    "only {seen} of {} Jobs after 120 s without progress; operator log:\n{}",
                    counts.burst,
                    operator.log_tail()
                ),
            }
        }
        last
    };
    let (created_at, all_jobs_at) = tokio::join!(
        async {
            creating.await;
            Instant::now()
        },
        counting
    );
    let operator_time = all_jobs_at - started;
    let cpu_operator = cpu_seconds(&operator.pid.to_string()) - cpu_operator;
    let cpu_bench = cpu_seconds("self") - cpu_bench;
    let reconciles = operator.metric("controller_runtime_reconcile_total").await - reconciles;
    // The operator finishes its write-backs after the last Job exists; let it settle for the tally.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let operator_requests = operator.metric("rest_client_requests_total").await - requests_before;
    let requests = target
        .request_log()
        .map(|log| log[log_from.min(log.len())..].to_vec());
    drop(jobs);

    let bare_after = create_bare_jobs(&client, &bare, "b", counts.burst).await;
    // What the bench's own QuarksJob creates cost the API server, with no operator acting on
    // them (unmonitored namespaces): part of the operator's time above that no operator saves.
    let qjobs_started = Instant::now();
    create_qjobs(&client, &bare, "unwatched-", counts.burst, "once").await;
    let qjobs_alone = qjobs_started.elapsed();
    let floor = bare_before.min(bare_after);
    let n = counts.burst;
    let nns = counts.burst_namespaces;
    rows.push((
        format!("{on}: {n} one-off QuarksJobs / {nns} ns → all {n} Jobs exist"),
        ms(operator_time),
        "-".into(),
    ));
    rows.push((
        "  of which after the last QuarksJob create returned".to_string(),
        ms(all_jobs_at.saturating_duration_since(created_at)),
        "-".into(),
    ));
    rows.push((
        format!(
            "{on}: bare client: {n} Jobs / {nns} ns (floor; runs: {} / {})",
            ms(bare_before),
            ms(bare_after)
        ),
        ms(floor),
        "-".into(),
    ));
    rows.push((
        format!("{on}: ratio operator / bare floor"),
        format!("{:.2}", operator_time.as_secs_f64() / floor.as_secs_f64()),
        "≤ 1.5".into(),
    ));
    rows.push((
        format!("  bare client: {n} QuarksJobs / {nns} unmonitored ns (the bench's creates alone)"),
        ms(qjobs_alone),
        "-".into(),
    ));
    notes.push(format!(
        "{on}, burst: operator CPU {cpu_operator:.1} s, bench process CPU {cpu_bench:.1} s, {reconciles} reconciles; \
         {:.1} API requests per QuarksJob (the operator's rest_client_requests_total)",
        operator_requests / n as f64
    ));
    // kubesim also records what they were.
    for (what, count) in tally(requests.as_deref().unwrap_or_default()) {
        notes.push(format!("  {what}: {count}"));
    }
    let errors = operator
        .metric("controller_runtime_reconcile_errors_total")
        .await;
    if errors > 0.0 {
        notes.push(format!(
            "{on}: reconcile errors during phases 1-2: {errors}"
        ));
    }
    operator.stop().await;
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let memory_only = std::env::args().any(|a| a == "--memory");
    let real = std::env::args().any(|a| a == "--real");
    let counts = if quick {
        Counts {
            latency: 20,
            burst: 100,
            burst_namespaces: 10,
            idle: 1_000,
            idle_namespaces: 10,
        }
    } else {
        Counts {
            latency: 100,
            burst: 1_000,
            burst_namespaces: 100,
            idle: 10_000,
            idle_namespaces: 100,
        }
    };
    let options = || KubeSimOptions {
        quarks_job_bin: Some(env!("CARGO_BIN_EXE_quarks-job").into()),
        run_kubelet: false,
        ..Default::default()
    };
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // ---- 1 and 2: latency and throughput, on kubesim (and with --real on the real control plane)
    let id = format!("bench-{}", std::process::id());
    if !memory_only {
        let sim = KubeSim::start(options()).await.expect("kubesim starts");
        api_phases(&Target::KubeSim(sim), &counts, &id, &mut rows, &mut notes).await;
        if real {
            let plane = kubesim::control_plane::ControlPlane::start()
                .expect("--real: the control plane starts");
            api_phases(&Target::Real(plane), &counts, &id, &mut rows, &mut notes).await;
        }
    }

    // ---- 3: memory on a fresh kubesim ---------------------------------------------------------
    let sim = KubeSim::start(options()).await.expect("kubesim starts");
    let client = sim.client().await.expect("client");
    let operator = Operator::start(sim.kubeconfig_path(), &client, &id, &operator_args()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_rss, _) = memory_mib(operator.pid);
    rows.push((
        "operator RSS, idle (no QuarksJobs)".into(),
        format!("{idle_rss:.1} MiB"),
        "baseline".into(),
    ));

    let namespaces: Vec<String> = (0..counts.idle_namespaces)
        .map(|i| format!("idle-{i}"))
        .collect();
    for ns in &namespaces {
        create_namespace(&client, ns, Some(&id)).await;
    }
    // Counts QuarksJobs whose status carries observedGeneration (all are reconciled).
    let (tx, mut observed) = mpsc::unbounded_channel::<usize>();
    let all = Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<QuarksJob>(&()));
    let watch = tokio::spawn(async move {
        let mut done = HashSet::new();
        let mut stream = watcher(all, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            if let watcher::Event::Apply(q) | watcher::Event::InitApply(q) = event
                && q.data["status"]["observedGeneration"].is_i64()
                && done.insert((q.metadata.namespace, q.metadata.name))
            {
                let _ = tx.send(done.len());
            }
        }
    });
    let started = Instant::now();
    create_qjobs(&client, &namespaces, "errand-", counts.idle, "manual").await;
    let created = started.elapsed();
    let mut reconciled = 0;
    while reconciled < counts.idle {
        match tokio::time::timeout(Duration::from_secs(120), observed.recv()).await {
            Ok(Some(n)) => reconciled = n,
            _ => panic!(
                "only {reconciled} of {} QuarksJobs reconciled; operator log:\n{}",
                counts.idle,
                operator.log_tail()
            ),
        }
    }
    let all_reconciled = started.elapsed();
    watch.abort();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, hwm) = memory_mib(operator.pid);
    let threads = std::fs::read_to_string(format!("/proc/{}/status", operator.pid))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|t| t.trim().to_owned()))
        .unwrap_or_default();
    notes.push(format!(
        "memory: operator threads with the QuarksJobs reconciled: {threads}"
    ));
    if std::env::args().any(|a| a == "--memory-later") {
        tokio::time::sleep(Duration::from_secs(15)).await;
        let (later, _) = memory_mib(operator.pid);
        notes.push(format!("memory: operator RSS 15 s later: {later:.1} MiB"));
    }
    let m = counts.idle;
    rows.push((
        format!("operator RSS, {m} `manual` QuarksJobs reconciled"),
        format!("{rss:.1} MiB"),
        "≤ 100 MiB".into(),
    ));
    rows.push((
        "  operator peak RSS (VmHWM) so far".into(),
        format!("{hwm:.1} MiB"),
        "-".into(),
    ));
    rows.push((
        format!("  {m} created / all reconciled after"),
        format!(
            "{:.1} s / {:.1} s",
            created.as_secs_f64(),
            all_reconciled.as_secs_f64()
        ),
        "-".into(),
    ));
    operator.stop().await;
    sim.stop().await;

    println!();
    println!(
        "quarks-job operator bench{}: kubesim in-process, kubelet and Job controller off (Jobs counted as API objects, no pods); \
         operator `--max-workers {CONCURRENCY}`; bench clients create {CONCURRENCY} at a time",
        if quick { " (--quick)" } else { "" }
    );
    println!();
    println!("| measure | value | target |");
    println!("|---|---:|---|");
    for (what, value, target) in rows {
        println!("| {what} | {value} | {target} |");
    }
    println!();
    for note in notes {
        println!("{note}");
    }
}
