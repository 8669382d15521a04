//! Operator benchmark (issues 4 and 17): prints a markdown table, asserts nothing about timings.
//!
//! Everything runs on loopback against kubesim started in this process **without its kubelet
//! and Job controller** (`run_kubelet: false`): a Job "exists" as an API object, no pods are
//! made, so the 2-core machine measures the operator and the API server, not fake containers.
//! The real `quarks-job` binary (`CARGO_BIN_EXE_quarks-job`, which cargo builds for benches)
//! runs as a child process: `--kubeconfig <sim> --monitored-id <id> --apply-crd
//! --listen 127.0.0.1:0 --max-workers 16`.
//!
//! A one-off QuarksJob has **run and settled** when its Job exists, its strategy reads `done`
//! and its status records the run (`runCount` ≥ 1, `lastJobName`, `observedGeneration` ≥ the
//! generation the strategy write made). With no Job controller the Job never completes, so
//! this is as far as a run goes here (`status.completed` would need pods).
//!
//! 1. Latency QuarksJob create → its Job exists: one-off QuarksJobs created one at a time
//!    (after 5 uncounted warm-ups); the Job's arrival is timestamped by a kube-runtime
//!    watcher on Jobs. p50/p99. (The original Go operator waits at least 10 s per trigger.)
//! 2. Throughput, 1 000 one-off QuarksJobs over 100 namespaces, the bench's clients and the
//!    operator's workers 16 at a time, against floors measured in the same run:
//!    - *streaming*: created 16 at a time while the operator runs; time from the first create
//!      until a watcher has seen all 1 000 Jobs (the old figure) and until all have settled;
//!    - *backlog*: 1 000 QuarksJobs created first in unmonitored namespaces, which are then
//!      labelled; time from the labelling until all have settled;
//!    - *1-create floor* (the old one): a bare kube client creating 1 000 equivalent Jobs;
//!    - *run-writes floor*: a bare client making exactly the writes of a run for 1 000
//!      QuarksJobs created beforehand in unmonitored namespaces — create the Job (the
//!      operator's own Job of the latency phase, renamed and owned by that QuarksJob), JSON-patch
//!      `spec.trigger.strategy` once → done with its `test`, server-side-apply the status (the
//!      operator's own, renamed) — one QuarksJob after the other in each of 16 lanes. The
//!      QuarksJobs' creates are timed apart ("the bench's creates alone").
//!
//!    Both floors are measured twice, once while the operator runs (idle; it still receives the
//!    QuarksJob events, cluster-wide) and once after it stopped; the faster counts. Ratios:
//!    backlog / run-writes floor (the honest one), streaming settled / (creates alone +
//!    run-writes floor), streaming Jobs / 1-create floor (continuity). The operator's CPU
//!    (/proc utime+stime) and API requests (`rest_client_requests_total`, by method; on
//!    kubesim also its request log) per run, counted until 2 s after the last one settled.
//! 3. Memory: VmRSS (and VmHWM, the peak) of the operator process, idle on a fresh kubesim,
//!    then with 10 000 QuarksJobs (strategy `manual`: nothing runs) once all of them carry
//!    `status.observedGeneration`.
//! 4. Scale (`--scale N`, only this part): on a fresh kubesim and operator for each size,
//!    N/10 and then N one-off QuarksJobs over size/100 namespaces (labelled, the operator's
//!    namespace watches started first): time from the first create until all have settled,
//!    per QuarksJob, and the RSS at rest 5 s later (idle RSS before, per QuarksJob above idle).
//!    Then, the operator at rest with its N QuarksJobs, cluster-wide noise: M Secrets and
//!    ConfigMaps (half each, `--noise M`, default N) created in M/1000 unmonitored namespaces,
//!    then each changed once, 16 at a time; the operator's CPU over that window as % of one
//!    core, beside its CPU over 10 s of quiet before.
//!
//! Targets (issues 4, 17): p50 ≤ 100 ms; backlog ≤ 1.3x the run-writes floor; CPU ≤ 0.25 ms
//! per run; RSS ≤ 100 MiB with 10 000 `manual`; at N = 100 000: time per QuarksJob ≤ 1.2x that
//! at 10 000, ≤ 4 KiB RSS per QuarksJob above idle, idle ≤ 30 MiB, noise ≤ 5 % of a core.
//!
//! Run: `cargo bench -p quarks-job --bench operator` (a few minutes on 2 cores);
//! `cargo bench -p quarks-job --bench operator -- --quick` for smaller counts (20 / 100 / 1 000);
//! `-- --memory` runs only part 3; `-- --scale 10000 [--noise 10000]` only part 4;
//! `-- --real` also runs parts 1 and 2 on the real kube-apiserver + kube-controller-manager
//! v1.24 of `../shared/k8s` (started by the bench in a temporary directory), its floors
//! measured on the same server in the same run; `-- --perf FILE` records the operator with
//! `perf record` during the kubesim streaming run, or with `--scale` the run of N
//! (`perf report -i FILE`; perf's sampling costs the operator CPU, so take CPU figures from a
//! run without it).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kubesim::{KubeSim, KubeSimOptions};
use quarks_job::crd::QuarksJob;
use quarks_job::names::MONITORED_LABEL;
use quarks_job::names::job::{QJOB_NAME_LABEL, job_name};
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
/// A phase fails when nothing progresses for this long.
const STALL: Duration = Duration::from_secs(120);

struct Counts {
    latency: usize,
    burst: usize,
    burst_namespaces: usize,
    idle: usize,
    idle_namespaces: usize,
}

type Rows = Vec<(String, String, String)>;

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

fn all_qjobs(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &ApiResource::erase::<QuarksJob>(&()))
}

/// A QuarksJob as created: (namespace, name, uid).
type Created = (String, String, String);

/// Creates `count` QuarksJobs named `{prefix}{i}` in `namespaces[i % len]`, `CONCURRENCY` at a time.
async fn create_qjobs(
    client: &kube::Client,
    namespaces: &[String],
    prefix: &str,
    count: usize,
    strategy: &str,
) -> Vec<Created> {
    futures::stream::iter(0..count)
        .map(|i| {
            let namespace = namespaces[i % namespaces.len()].clone();
            let api = qjob_api(client, &namespace);
            async move {
                let q = api
                    .create(
                        &PostParams::default(),
                        &qjob(&format!("{prefix}{i}"), strategy),
                    )
                    .await
                    .expect("create QuarksJob");
                (
                    namespace,
                    q.metadata.name.unwrap_or_default(),
                    q.metadata.uid.unwrap_or_default(),
                )
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
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

/// What one run of the operator writes, taken from a run it made: its Job (without what the
/// API server added) and the QuarksJob's strategy and status afterwards.
struct RunWrites {
    qjob_name: String,
    job: serde_json::Value,
    strategy_before: String,
    strategy_after: String,
    status: serde_json::Value,
}

impl RunWrites {
    /// Reads them from the settled one-off `name` in `namespace`.
    async fn of(client: &kube::Client, namespace: &str, name: &str) -> RunWrites {
        let api = qjob_api(client, namespace);
        let until = Instant::now() + DEADLINE;
        let q = loop {
            if let Some(q) = api.get(name).await.ok().filter(settled) {
                break q;
            }
            assert!(
                Instant::now() < until,
                "the template QuarksJob {name} did not settle"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let job = jobs
            .list(&ListParams::default().labels(&format!("{QJOB_NAME_LABEL}={name}")))
            .await
            .expect("list Jobs")
            .items
            .into_iter()
            .next()
            .expect("the template QuarksJob's Job");
        let mut job = serde_json::to_value(job).expect("Job");
        let meta = job["metadata"].as_object().cloned().unwrap_or_default();
        job["metadata"] = meta
            .into_iter()
            .filter(|(k, _)| {
                [
                    "name",
                    "namespace",
                    "labels",
                    "annotations",
                    "ownerReferences",
                ]
                .contains(&k.as_str())
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        let o = job.as_object_mut().expect("object");
        o.remove("status");
        let spec = o["spec"].as_object_mut().expect("spec");
        spec.remove("selector");
        spec.remove("manualSelector");
        if let Some(labels) = spec
            .get_mut("template")
            .and_then(|t| t["metadata"]["labels"].as_object_mut())
        {
            for added in [
                "controller-uid",
                "job-name",
                "batch.kubernetes.io/controller-uid",
                "batch.kubernetes.io/job-name",
            ] {
                labels.remove(added);
            }
        }
        RunWrites {
            qjob_name: name.to_owned(),
            job,
            strategy_before: "once".into(),
            strategy_after: q.data["spec"]["trigger"]["strategy"]
                .as_str()
                .unwrap_or("done")
                .to_owned(),
            status: q.data["status"].clone(),
        }
    }

    /// The Job of QuarksJob `created`'s first run.
    fn job_for(&self, (namespace, name, uid): &Created) -> Job {
        let mut job = self.job.clone();
        let rename = |v: &mut serde_json::Value| {
            if let Some(labels) = v.as_object_mut() {
                for value in labels.values_mut() {
                    if value == self.qjob_name.as_str() {
                        *value = name.as_str().into();
                    }
                }
            }
        };
        rename(&mut job["metadata"]["labels"]);
        rename(&mut job["spec"]["template"]["metadata"]["labels"]);
        job["metadata"]["name"] = job_name(name, 1).into();
        job["metadata"]["namespace"] = namespace.as_str().into();
        if let Some(owner) = job["metadata"]["ownerReferences"].get_mut(0) {
            owner["name"] = name.as_str().into();
            owner["uid"] = uid.as_str().into();
        }
        serde_json::from_value(job).expect("Job")
    }

    /// The three writes of a run for each of `qjobs`, one QuarksJob after the other in each of
    /// `CONCURRENCY` lanes.
    async fn write_all(&self, client: &kube::Client, qjobs: &[Created]) -> Duration {
        let started = Instant::now();
        futures::stream::iter(qjobs)
            .map(|created| async move {
                let (namespace, name, _) = created;
                let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
                jobs.create(&PostParams::default(), &self.job_for(created))
                    .await
                    .expect("create Job");
                let api = qjob_api(client, namespace);
                let strategy: json_patch::Patch = serde_json::from_value(json!([
                    {"op": "test", "path": "/spec/trigger/strategy", "value": self.strategy_before},
                    {"op": "replace", "path": "/spec/trigger/strategy", "value": self.strategy_after},
                ]))
                .expect("patch");
                api.patch(name, &PatchParams::default(), &Patch::Json::<()>(strategy))
                    .await
                    .expect("patch strategy");
                let mut status = self.status.clone();
                status["lastJobName"] = job_name(name, 1).into();
                let apply = json!({
                    "apiVersion": "quarks.cloudfoundry.org/v1alpha1",
                    "kind": "QuarksJob",
                    "status": status,
                });
                api.patch_status(
                    name,
                    &PatchParams::apply("quarks-job-bench-floor").force(),
                    &Patch::Apply(&apply),
                )
                .await
                .expect("apply status");
            })
            .buffer_unordered(CONCURRENCY)
            .for_each(|_| async {})
            .await;
        started.elapsed()
    }
}

/// A one-off QuarksJob has run and settled: strategy `done`, the run recorded in status for
/// the generation that strategy write made.
fn settled(q: &DynamicObject) -> bool {
    let status = &q.data["status"];
    q.data["spec"]["trigger"]["strategy"] == "done"
        && status["runCount"].as_i64().unwrap_or(0) >= 1
        && status["lastJobName"].is_string()
        && status["observedGeneration"].as_i64().unwrap_or(-1) >= q.metadata.generation.unwrap_or(0)
}

/// Sends (namespace, name, time) once for each QuarksJob of `api` that is seen settled;
/// `None` once the initial list is in.
fn watch_settled(
    api: Api<DynamicObject>,
) -> mpsc::UnboundedReceiver<Option<(String, String, Instant)>> {
    watch_arrivals(api, watcher::Config::default(), |q| {
        settled(q).then(|| q.metadata.name.clone().unwrap_or_default())
    })
}

/// Watches the operator's Jobs (labelled with their QuarksJob's name) and sends
/// (namespace, QuarksJob name, arrival time) for each new one; `None` once the initial list is in.
fn watch_jobs(api: Api<Job>) -> mpsc::UnboundedReceiver<Option<(String, String, Instant)>> {
    watch_arrivals(
        api,
        watcher::Config::default().labels(QJOB_NAME_LABEL),
        |job| {
            let labels = job.metadata.labels.as_ref();
            Some(labels?.get(QJOB_NAME_LABEL).cloned().unwrap_or_default())
        },
    )
}

/// Sends (namespace, `report(object)`, arrival time) the first time each object of `api`
/// (by namespace and name) is seen with `report` giving `Some`; `None` each time an initial list
/// is in. Watch errors are retried, as the watcher does (after a 410 it lists again).
fn watch_arrivals<K>(
    api: Api<K>,
    config: watcher::Config,
    report: impl Fn(&K) -> Option<String> + Send + 'static,
) -> mpsc::UnboundedReceiver<Option<(String, String, Instant)>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut stream = watcher(api, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let now = Instant::now();
            let object = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                Ok(watcher::Event::InitDone) => {
                    let _ = tx.send(None);
                    continue;
                }
                Ok(_) => continue,
                // Nobody waits any more (the phase is over, its kubesim stopped).
                Err(_) if tx.is_closed() => return,
                Err(error) => {
                    eprintln!("bench watch: {error}; retrying");
                    continue;
                }
            };
            let Some(reported) = report(&object) else {
                continue;
            };
            let namespace = object.meta().namespace.clone().unwrap_or_default();
            let name = object.meta().name.clone().unwrap_or_default();
            if seen.insert((namespace.clone(), name))
                && tx.send(Some((namespace, reported, now))).is_err()
            {
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
    .expect("the watcher lists");
}

/// Waits until `count` items of namespaces starting with `prefix` arrived on `rx` (failing
/// after [`STALL`] without one); the arrival time of the last.
async fn arrivals(
    rx: &mut mpsc::UnboundedReceiver<Option<(String, String, Instant)>>,
    prefix: &str,
    count: usize,
    what: &str,
    operator: &Operator,
) -> Instant {
    let mut seen = 0;
    let mut last = Instant::now();
    while seen < count {
        match tokio::time::timeout(STALL, rx.recv()).await {
            Ok(Some(Some((namespace, _, at)))) if namespace.starts_with(prefix) => {
                seen += 1;
                last = at;
            }
            // Another initial list (a re-list after a watch error), or another namespace's.
            Ok(Some(_)) => {}
            Ok(None) => panic!("the watcher ended"),
            Err(_) => panic!(
                "only {seen} of {count} {what} after {STALL:?} without progress; operator log:\n{}",
                operator.log_tail()
            ),
        }
    }
    last
}

/// The operator's counters at one moment.
struct Usage {
    cpu: f64,
    requests: BTreeMap<String, f64>,
    log_from: usize,
}

impl Usage {
    async fn now(operator: &Operator, target: Option<&Target>) -> Usage {
        let mut requests = BTreeMap::new();
        for (labels, value) in operator.metric_samples("rest_client_requests_total").await {
            let method = labels
                .split("method=\"")
                .nth(1)
                .and_then(|m| m.split('"').next())
                .unwrap_or("?")
                .to_owned();
            *requests.entry(method).or_default() += value;
        }
        Usage {
            cpu: cpu_seconds(&operator.pid.to_string()),
            requests,
            log_from: target
                .and_then(Target::request_log)
                .map_or(0, |log| log.len()),
        }
    }

    /// (CPU seconds, requests, requests by method) since `self`.
    fn since(&self, later: &Usage) -> (f64, f64, String) {
        let by_method: Vec<String> = later
            .requests
            .iter()
            .map(|(m, v)| (m, v - self.requests.get(m).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v > 0.0)
            .map(|(m, v)| format!("{m} {v}"))
            .collect();
        let total = later.requests.values().sum::<f64>() - self.requests.values().sum::<f64>();
        (later.cpu - self.cpu, total, by_method.join(", "))
    }
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

/// `perf record` of the operator while it lives, when `--perf FILE` was given.
fn start_perf(pid: u32) -> Option<std::process::Child> {
    let args: Vec<String> = std::env::args().collect();
    let file = args
        .iter()
        .position(|a| a == "--perf")
        .map(|i| &args[i + 1])?;
    std::process::Command::new("perf")
        // Flat samples: dwarf call graphs cost the operator much CPU and unwound badly here.
        .args(["record", "-F", "999", "-o", file])
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("warning: perf record: {e}"))
        .ok()
}

fn stop_perf(perf: Option<std::process::Child>) {
    if let Some(mut perf) = perf {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait();
    }
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

/// 1. create → Job latency and 2. burst throughput against the floors, on `target`.
async fn api_phases(
    target: &Target,
    counts: &Counts,
    id: &str,
    rows: &mut Rows,
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
    // What a run writes, as the operator wrote it for `once-0`.
    let writes = RunWrites::of(&client, &latency_ns, "once-0").await;

    let n = counts.burst;
    let nns = counts.burst_namespaces;
    let names =
        |what: &str| -> Vec<String> { (0..nns).map(|i| format!("{id}-{what}-{i}")).collect() };
    let (monitored, bare, backlog) = (names("burst"), names("bare"), names("backlog"));
    for ns in &monitored {
        create_namespace(&client, ns, Some(id)).await;
    }
    for ns in bare.iter().chain(&backlog) {
        create_namespace(&client, ns, None).await;
    }
    // Floors while the operator runs (it receives the QuarksJob events, cluster-wide).
    let bare_before = create_bare_jobs(&client, &bare, "a", n).await;
    let creates_started = Instant::now();
    let floor_qjobs = create_qjobs(&client, &bare, "pre-", n, "once").await;
    let creates_before = creates_started.elapsed();
    let writes_before = writes.write_all(&client, &floor_qjobs).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Streaming: the bench creates, the operator runs them as they come.
    let mut jobs = watch_jobs(Api::all(client.clone()));
    watch_ready(&mut jobs).await;
    let mut settled_rx = watch_settled(all_qjobs(&client));
    watch_ready(&mut settled_rx).await;
    // (perf's own sampling costs the operator CPU: take CPU figures from runs without it.)
    let perf = match target {
        Target::KubeSim(_) => start_perf(operator.pid),
        Target::Real(_) => None,
    };
    if perf.is_some() {
        // perf takes a moment to attach.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let usage = Usage::now(&operator, Some(target)).await;
    let (cpu_bench, reconciles) = (
        cpu_seconds("self"),
        operator.metric("controller_runtime_reconcile_total").await,
    );
    let burst_prefix = format!("{id}-burst-");
    let started = Instant::now();
    let (created_at, all_jobs_at, all_settled_at) = tokio::join!(
        async {
            create_qjobs(&client, &monitored, "once-", n, "once").await;
            Instant::now()
        },
        arrivals(&mut jobs, &burst_prefix, n, "Jobs", &operator),
        arrivals(
            &mut settled_rx,
            &burst_prefix,
            n,
            "settled QuarksJobs",
            &operator
        ),
    );
    let cpu_to_settled = cpu_seconds(&operator.pid.to_string()) - usage.cpu;
    let cpu_bench = cpu_seconds("self") - cpu_bench;
    let reconciles = operator.metric("controller_runtime_reconcile_total").await - reconciles;
    // The operator finishes its write-backs (and Events) after the last run settled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_perf(perf);
    let streamed = Usage::now(&operator, Some(target)).await;
    let (stream_cpu, stream_requests, stream_methods) = usage.since(&streamed);
    let stream_log = target
        .request_log()
        .map(|log| log[usage.log_from.min(log.len())..streamed.log_from.min(log.len())].to_vec());
    drop(jobs);

    // Backlog: the QuarksJobs exist before their namespaces are labelled.
    create_qjobs(&client, &backlog, "once-", n, "once").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let backlog_prefix = format!("{id}-backlog-");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let usage = Usage::now(&operator, Some(target)).await;
    let labelled = Instant::now();
    for ns in &backlog {
        namespaces
            .patch(
                ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {MONITORED_LABEL: id}}})),
            )
            .await
            .expect("label namespace");
    }
    let backlog_settled_at = arrivals(
        &mut settled_rx,
        &backlog_prefix,
        n,
        "settled QuarksJobs",
        &operator,
    )
    .await;
    let backlog_time = backlog_settled_at - labelled;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (backlog_cpu, backlog_requests, backlog_methods) =
        usage.since(&Usage::now(&operator, Some(target)).await);
    drop(settled_rx);
    let errors = operator
        .metric("controller_runtime_reconcile_errors_total")
        .await;
    operator.stop().await;

    // Floors again, the operator stopped.
    let bare_after = create_bare_jobs(&client, &bare, "b", n).await;
    let creates_started = Instant::now();
    let floor_qjobs = create_qjobs(&client, &bare, "unwatched-", n, "once").await;
    let creates_after = creates_started.elapsed();
    let writes_after = writes.write_all(&client, &floor_qjobs).await;

    let floor = bare_before.min(bare_after);
    let creates_alone = creates_before.min(creates_after);
    let writes_floor = writes_before.min(writes_after);
    let jobs_time = all_jobs_at - started;
    let settled_time = all_settled_at - started;
    let ratio = |a: Duration, b: Duration| format!("{:.2}", a.as_secs_f64() / b.as_secs_f64());
    let per_run = |cpu: f64| format!("{:.2} ms", cpu * 1000.0 / n as f64);
    rows.push((
        format!("{on}: {n} one-off QuarksJobs / {nns} ns streamed → all {n} Jobs exist"),
        ms(jobs_time),
        "-".into(),
    ));
    rows.push((
        "  of which after the last QuarksJob create returned".to_string(),
        ms(all_jobs_at.saturating_duration_since(created_at)),
        "-".into(),
    ));
    rows.push((
        format!("{on}: streamed → all {n} settled (Job, strategy done, status recorded)"),
        ms(settled_time),
        "-".into(),
    ));
    rows.push((
        format!("{on}: backlog: {n} QuarksJobs in {nns} ns labelled → all settled"),
        ms(backlog_time),
        "-".into(),
    ));
    rows.push((
        format!(
            "{on}: 1-create floor: bare client, {n} Jobs (runs: {} / {})",
            ms(bare_before),
            ms(bare_after)
        ),
        ms(floor),
        "-".into(),
    ));
    rows.push((
        format!(
            "{on}: run-writes floor: bare client, create Job + patch strategy + apply status × {n} (runs: {} / {})",
            ms(writes_before),
            ms(writes_after)
        ),
        ms(writes_floor),
        "-".into(),
    ));
    rows.push((
        format!(
            "  bare client: {n} QuarksJob creates alone (runs: {} / {})",
            ms(creates_before),
            ms(creates_after)
        ),
        ms(creates_alone),
        "-".into(),
    ));
    rows.push((
        format!("{on}: ratio backlog / run-writes floor"),
        ratio(backlog_time, writes_floor),
        "≤ 1.3".into(),
    ));
    rows.push((
        format!("{on}: ratio streamed settled / (creates alone + run-writes floor)"),
        ratio(settled_time, creates_alone + writes_floor),
        "≤ 1.3".into(),
    ));
    rows.push((
        format!("{on}: ratio streamed Jobs / 1-create floor (the old ratio)"),
        ratio(jobs_time, floor),
        "≤ 1.5 (issue 4)".into(),
    ));
    rows.push((
        format!("{on}: operator CPU per run, streamed (backlog)"),
        format!("{} ({})", per_run(stream_cpu), per_run(backlog_cpu)),
        "≤ 0.25 ms".into(),
    ));
    rows.push((
        format!("{on}: operator API requests per run, streamed (backlog)"),
        format!(
            "{:.2} ({:.2})",
            stream_requests / n as f64,
            backlog_requests / n as f64
        ),
        "3 (the run's writes)".into(),
    ));
    notes.push(format!(
        "{on}, streamed: operator CPU {stream_cpu:.2} s ({cpu_to_settled:.2} s until the last settled), \
         bench process CPU {cpu_bench:.2} s, {reconciles} reconciles; operator requests by method: {stream_methods}"
    ));
    notes.push(format!(
        "{on}, backlog: operator CPU {backlog_cpu:.2} s; operator requests by method: {backlog_methods}"
    ));
    if let Some(log) = stream_log {
        notes.push(format!(
            "{on}, streamed: every request kubesim logged in that window (the bench's own: `create quarksjobs` and its two watches):"
        ));
        for (what, count) in tally(&log) {
            notes.push(format!("  {what}: {count}"));
        }
    }
    if errors > 0.0 {
        notes.push(format!(
            "{on}: reconcile errors during phases 1-2: {errors}"
        ));
    }
}

/// 4. `--scale N`: N/10 and N one-offs on a fresh kubesim and operator each, then noise.
async fn scale_phase(n: usize, noise: usize, id: &str, rows: &mut Rows, notes: &mut Vec<String>) {
    let mut per_qjob = Vec::new();
    for size in [n / 10, n] {
        let sim = KubeSim::start(sim_options()).await.expect("kubesim starts");
        let client = sim.client().await.expect("client");
        let operator = Operator::start(sim.kubeconfig_path(), &client, id, &operator_args()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (idle, _) = memory_mib(operator.pid);
        let nns = (size / 100).max(1);
        let namespaces: Vec<String> = (0..nns).map(|i| format!("scale-{i}")).collect();
        for ns in &namespaces {
            create_namespace(&client, ns, Some(id)).await;
        }
        let watching = Instant::now();
        let until = watching + Duration::from_secs(120);
        while operator.metric("quarks_job_namespaces_watched").await < nns as f64
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let watching = watching.elapsed();
        let mut settled_rx = watch_settled(all_qjobs(&client));
        watch_ready(&mut settled_rx).await;
        let perf = if size == n {
            start_perf(operator.pid)
        } else {
            None
        };
        if perf.is_some() {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let usage = Usage::now(&operator, None).await;
        let started = Instant::now();
        let (created_at, settled_at) = tokio::join!(
            async {
                create_qjobs(&client, &namespaces, "once-", size, "once").await;
                Instant::now()
            },
            arrivals(
                &mut settled_rx,
                "scale-",
                size,
                "settled QuarksJobs",
                &operator
            ),
        );
        let time = settled_at - started;
        let (cpu, requests, _) = usage.since(&Usage::now(&operator, None).await);
        stop_perf(perf);
        drop(settled_rx);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (rss, hwm) = memory_mib(operator.pid);
        let per = time.as_secs_f64() * 1e6 / size as f64;
        per_qjob.push(per);
        rows.push((
            format!("scale {size}: operator RSS idle, before (fresh kubesim)"),
            format!("{idle:.1} MiB"),
            "≤ 30 MiB".into(),
        ));
        rows.push((
            format!("scale {size}: {size} one-offs / {nns} ns → all settled"),
            format!(
                "{:.1} s ({per:.0} µs per QuarksJob; last create returned at {:.1} s)",
                time.as_secs_f64(),
                (created_at - started).as_secs_f64()
            ),
            if size == n {
                "per QuarksJob ≤ 1.2x that at N/10".into()
            } else {
                "-".into()
            },
        ));
        rows.push((
            format!("scale {size}: operator RSS at rest 5 s later (peak)"),
            format!(
                "{rss:.1} MiB ({hwm:.1}); {:.2} KiB per QuarksJob above idle",
                (rss - idle) * 1024.0 / size as f64
            ),
            "≤ 4 KiB per QuarksJob".into(),
        ));
        notes.push(format!(
            "scale {size}: namespace watches of {nns} namespaces up after {:.1} s; operator CPU {cpu:.1} s \
             ({:.3} ms per run), {:.2} requests per run",
            watching.as_secs_f64(),
            cpu * 1000.0 / size as f64,
            requests / size as f64
        ));
        if size == n && noise > 0 {
            noise_phase(&client, &operator, noise, rows, notes).await;
        }
        operator.stop().await;
        sim.stop().await;
    }
    if let [small, large] = per_qjob[..] {
        rows.push((
            format!("scale: time per QuarksJob at {n} / at {}", n / 10),
            format!("{:.2}", large / small),
            "≤ 1.2".into(),
        ));
    }
}

/// `m` Secrets and ConfigMaps in unmonitored namespaces created then changed once, while the
/// operator is at rest: its CPU as % of one core over that window.
async fn noise_phase(
    client: &kube::Client,
    operator: &Operator,
    m: usize,
    rows: &mut Rows,
    notes: &mut Vec<String>,
) {
    let pid = operator.pid.to_string();
    // Reconciles in each window, to tell the noise's cost from the operator's own look-agains
    // (a run still active is looked at again 30–36 minutes after its last reconcile).
    let reconciles = || operator.metric("controller_runtime_reconcile_total");
    let quiet_from = cpu_seconds(&pid);
    let quiet_reconciles = reconciles().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let quiet = (cpu_seconds(&pid) - quiet_from) / 10.0 * 100.0;
    let quiet_reconciles = reconciles().await - quiet_reconciles;
    let nns = (m / 1000).max(1);
    let namespaces: Vec<String> = (0..nns).map(|i| format!("noise-{i}")).collect();
    for ns in &namespaces {
        create_namespace(client, ns, None).await;
    }
    let cpu_from = cpu_seconds(&pid);
    let noise_reconciles = reconciles().await;
    let config_events = operator.metric("quarks_job_config_events_total").await;
    let started = Instant::now();
    let namespaces = &namespaces;
    let each = |round: usize| {
        futures::stream::iter(0..m)
            .map(move |i| {
                let namespace = &namespaces[i % nns];
                let name = format!("noise-{i}");
                let data = json!({"value": format!("{round}")});
                async move {
                    let pp = PostParams::default();
                    let patch = Patch::Merge(json!({"data": data}));
                    let pa = PatchParams::default();
                    if i % 2 == 0 {
                        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                        if round == 0 {
                            let s: Secret = serde_json::from_value(json!({
                                "metadata": {"name": name}, "stringData": {"value": "0"}
                            }))
                            .expect("Secret");
                            api.create(&pp, &s).await.map(|_| ())
                        } else {
                            let patch =
                                Patch::Merge(json!({"stringData": {"value": format!("{round}")}}));
                            api.patch(&name, &pa, &patch).await.map(|_| ())
                        }
                    } else {
                        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                        if round == 0 {
                            let c: ConfigMap = serde_json::from_value(json!({
                                "metadata": {"name": name}, "data": data
                            }))
                            .expect("ConfigMap");
                            api.create(&pp, &c).await.map(|_| ())
                        } else {
                            api.patch(&name, &pa, &patch).await.map(|_| ())
                        }
                    }
                    .expect("noise write")
                }
            })
            .buffer_unordered(CONCURRENCY)
            .for_each(|_| async {})
    };
    each(0).await;
    each(1).await;
    let window = started.elapsed();
    let cpu = cpu_seconds(&pid) - cpu_from;
    let events = operator.metric("quarks_job_config_events_total").await - config_events;
    let noise_reconciles = reconciles().await - noise_reconciles;
    rows.push((
        format!("noise: {m} Secrets/ConfigMaps in {nns} unmonitored ns created + changed once, operator at rest"),
        format!(
            "{:.2} % of a core over {:.1} s (quiet 10 s before: {quiet:.2} %)",
            cpu / window.as_secs_f64() * 100.0,
            window.as_secs_f64()
        ),
        "≤ 5 %".into(),
    ));
    notes.push(format!(
        "noise: {} writes in {:.1} s; operator CPU {cpu:.2} s; config events the operator received: {events}; \
         reconciles meanwhile {noise_reconciles} ({quiet_reconciles} in the 10 s of quiet before)",
        2 * m,
        window.as_secs_f64()
    ));
}

fn sim_options() -> KubeSimOptions {
    KubeSimOptions {
        quarks_job_bin: Some(env!("CARGO_BIN_EXE_quarks-job").into()),
        run_kubelet: false,
        ..Default::default()
    }
}

fn arg_value(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    Some(
        args.get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} takes a number")),
    )
}

/// 3. Memory with `counts.idle` `manual` QuarksJobs, on a fresh kubesim.
async fn memory_phase(counts: &Counts, id: &str, rows: &mut Rows, notes: &mut Vec<String>) {
    // ---- 3: memory on a fresh kubesim ---------------------------------------------------------
    let sim = KubeSim::start(sim_options()).await.expect("kubesim starts");
    let client = sim.client().await.expect("client");
    let operator = Operator::start(sim.kubeconfig_path(), &client, id, &operator_args()).await;
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
        create_namespace(&client, ns, Some(id)).await;
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
    let scale = arg_value("--scale");
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_before = load();
    let mut rows: Rows = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // ---- 1 and 2: latency and throughput, on kubesim (and with --real on the real control plane)
    let id = format!("bench-{}", std::process::id());
    if let Some(n) = scale {
        let noise = arg_value("--noise").unwrap_or(n);
        scale_phase(n, noise, &id, &mut rows, &mut notes).await;
    } else if !memory_only {
        let sim = KubeSim::start(sim_options()).await.expect("kubesim starts");
        api_phases(&Target::KubeSim(sim), &counts, &id, &mut rows, &mut notes).await;
        if real {
            let plane = kubesim::control_plane::ControlPlane::start()
                .expect("--real: the control plane starts");
            api_phases(&Target::Real(plane), &counts, &id, &mut rows, &mut notes).await;
        }
    }

    if scale.is_none() {
        memory_phase(&counts, &id, &mut rows, &mut notes).await;
    }

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
    println!(
        "machine: {} cores; /proc/loadavg before: {}, after: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before.trim(),
        load().trim()
    );
}
