//! Hostile-tenant benchmark (issue 15, "Tests and figures"): prints a markdown table, asserts
//! nothing about timings.
//!
//! kubesim in this process **with** its kubelet and Job controller (the output fan-out needs
//! pods that write files), the real `quarks-job` binary as a child process, and a real OCI
//! registry on loopback (Debian's `docker-registry`, as the cluster tests use it). The operator
//! runs with its defaults, plus the loopback registry allowed.
//!
//! A victim namespace creates one-off QuarksJobs one at a time; the latency is create → its Job
//! exists (first seen by a watcher on Jobs), after 5 uncounted warm-ups. It is measured alone,
//! then while a hostile neighbour namespace does each of the following (each row its own
//! neighbour namespace, set up until the operator shows it met the attack, then torn down):
//!
//! - (a) a ~40 MiB component selected: ConfigMap modules are ≤ 1 MiB, so it comes from the
//!   registry (`oci://…@sha256:…`, under the default 50 MiB pull cap): one core module of many
//!   functions made of long arithmetic chains (costly to compile); measured while it is pulled
//!   and compiled (`PolicyPending`), 3 QuarksJobs waiting on it;
//! - (b) its module ConfigMap rewritten every second, each time a new digest of a ~900 KiB
//!   compile-heavy component (the same kind, as large as a ConfigMap comfortably holds), 3
//!   QuarksJobs waiting on it;
//! - (c1) a component with 300 core instances (refused at load, `PolicyTooComplex`), and
//!   (c2) a policy that loops until its CPU limit on every call (`loop-forever`), 20 QuarksJobs;
//! - (d) a trigger result of 3 million empty reasons (`PolicyResultTooLarge` before lifting),
//!   20 QuarksJobs;
//! - (e) an output file fanning out to 3 000 Secrets (`TooManySecrets`: the cap is 500 per
//!   file), a new such QuarksJob every 500 ms.
//!
//! Each row: victim p50/p99 during the attack; its p99 alone measured just before the attack
//! (the same count, the same pacing) and the ratio to it (target ≤ 1.5x; on a shared 2-core
//! machine the load of others moves a p99 more than a neighbour does, so each row has its own
//! baseline) and to the first "alone"; the operator's VmRSS at the end of the row and VmHWM (its
//! peak since it started: monotone over the rows); what the neighbour's QuarksJobs showed.
//!
//! The victim's creates are paced (100 over at least 8 s a row) so that each attack goes on
//! through its row (the ConfigMap is rewritten 8 times or more meanwhile).
//!
//! Run: `cargo bench -p quarks-job --bench hostile` (about three minutes on 2 cores);
//! `-- --quick` for 30 samples over 4 s a row.

mod support;

#[allow(dead_code)] // the bench pushes with the library, not with `policy push`
#[path = "../tests/cluster/registry.rs"]
mod registry;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use kubesim::{KubeSim, KubeSimOptions};
use quarks_job::crd::QuarksJob;
use quarks_job::names::job::job_name;
use serde_json::json;
use support::{DEADLINE, Operator, create_namespace, memory_mib, ms, percentile, wait_for};

const SELECTION: &str = "quarks-job-policies";
const WARMUP: usize = 5;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.wasm", env!("QUARKS_POLICY_FIXTURES"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A component of about `kib` KiB: one core module of many functions, each a long dependency
/// chain of arithmetic on its parameter (costly to compile, nothing to optimise away), written
/// as binary directly; `salt` goes into a custom section (another digest, the same code).
fn compile_heavy(kib: usize, salt: u64) -> Vec<u8> {
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
    let mut body = vec![0];
    for i in 0..4000usize {
        let k = (i % 64) as u8;
        body.extend_from_slice(&[0x20, 0, 0x41, k, 0x6a, 0x20, 0, 0x6c, 0x21, 0]);
    }
    body.extend_from_slice(&[0x20, 0, 0x0b]);
    let functions = ((kib << 10) / (body.len() + 3)).max(1);
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
    let mut custom = Vec::new();
    leb(5, &mut custom);
    custom.extend_from_slice(b"bench");
    custom.extend_from_slice(&salt.to_le_bytes());
    section(0, &custom, &mut component);
    component
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

/// A trigger policy (the contract's types spelled out) whose `decide` answers `count` empty
/// reasons, from a memory of `pages` pages.
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

/// First time each Job (`namespace/name`) was seen by a watcher.
#[derive(Clone, Default)]
struct JobsSeen(Arc<Mutex<HashMap<String, Instant>>>);

impl JobsSeen {
    fn start(api: Api<Job>) -> Self {
        let seen = JobsSeen::default();
        let map = seen.0.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(job)) = stream.next().await {
                let key = format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any());
                map.lock().unwrap().entry(key).or_insert_with(Instant::now);
            }
        });
        seen
    }

    async fn wait(&self, namespace: &str, job: &str, operator: &Operator) -> Instant {
        let key = format!("{namespace}/{job}");
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(at) = self.0.lock().unwrap().get(&key) {
                return *at;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for Job {key}; operator log:\n{}",
                operator.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn one_off(name: &str) -> QuarksJob {
    serde_json::from_value(json!({
        "apiVersion": "quarks.cloudfoundry.org/v1alpha1",
        "kind": "QuarksJob",
        "metadata": {"name": name},
        "spec": {
            "trigger": {"strategy": "once"},
            "template": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "busybox", "image": "busybox", "command": ["true"]}]
            }}}}
        }
    }))
    .expect("QuarksJob")
}

/// A one-off whose `output.json` has 3 000 keys, each to become a Secret of its own.
fn fan_out(name: &str) -> QuarksJob {
    // awk, not a shell loop: the pods run on this machine, and the attack is on the operator.
    let script = r#"awk 'BEGIN { printf "{"; for (i = 0; i < 3000; i++) printf "%s\"k%d\": \"{}\"", (i ? "," : ""), i; printf "}" }' > /mnt/quarks/output.json"#;
    serde_json::from_value(json!({
        "apiVersion": "quarks.cloudfoundry.org/v1alpha1",
        "kind": "QuarksJob",
        "metadata": {"name": name},
        "spec": {
            "trigger": {"strategy": "once"},
            "output": {"outputMap": {"busybox": {"output.json": {"name": "fan", "persistencemethod": "fan-out"}}}},
            "template": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "busybox", "image": "busybox", "command": ["sh", "-c", script]}]
            }}}}
        }
    }))
    .expect("QuarksJob")
}

async fn apply(client: &kube::Client, namespace: &str, config_map: ConfigMap) {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            &config_map.name_any(),
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&config_map),
        )
        .await
        .expect("apply ConfigMap");
}

async fn select_trigger(client: &kube::Client, namespace: &str, reference: &str) {
    let mut config_map = ConfigMap::default();
    config_map.metadata.name = Some(SELECTION.into());
    config_map.data = Some(BTreeMap::from([("trigger".into(), reference.into())]));
    apply(client, namespace, config_map).await;
}

async fn put_module(client: &kube::Client, namespace: &str, name: &str, bytes: Vec<u8>) {
    let mut config_map = ConfigMap::default();
    config_map.metadata.name = Some(name.into());
    config_map.binary_data = Some(BTreeMap::from([("policy.wasm".into(), ByteString(bytes))]));
    apply(client, namespace, config_map).await;
}

/// The Ready reasons of `namespace`'s QuarksJobs, and their output records' reasons, counted.
async fn reasons(client: &kube::Client, namespace: &str) -> String {
    let api: Api<QuarksJob> = Api::namespaced(client.clone(), namespace);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for q in api.list(&ListParams::default()).await.expect("list").items {
        let Some(status) = q.status else { continue };
        if let Some(ready) = status.conditions.iter().find(|c| c.type_ == "Ready") {
            *counts.entry(ready.reason.clone()).or_default() += 1;
        }
        for output in &status.outputs {
            if let Some(reason) = &output.reason {
                *counts.entry(format!("output {reason}")).or_default() += 1;
            }
        }
    }
    counts
        .iter()
        .map(|(reason, n)| format!("{n}× {reason}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn has_reason(client: &kube::Client, namespace: &str, wanted: &[&str]) -> bool {
    let shown = reasons(client, namespace).await;
    wanted.iter().any(|w| shown.contains(w))
}

/// create → Job exists, for `n` one-offs in `namespace`, one at a time, started at most every
/// `span / n` (so that a row lasts at least `span`: the neighbour's attack goes on meanwhile);
/// sorted.
async fn latencies(
    client: &kube::Client,
    seen: &JobsSeen,
    operator: &Operator,
    namespace: &str,
    prefix: &str,
    (n, span): (usize, Duration),
) -> Vec<Duration> {
    let api: Api<QuarksJob> = Api::namespaced(client.clone(), namespace);
    let mut samples = Vec::new();
    let interval = span / n as u32;
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        let t = Instant::now();
        let next = tokio::time::Instant::from_std(t + interval);
        api.create(&PostParams::default(), &one_off(&name))
            .await
            .expect("create QuarksJob");
        let at = seen.wait(namespace, &job_name(&name, 1), operator).await;
        samples.push(at.saturating_duration_since(t));
        tokio::time::sleep_until(next).await;
    }
    samples.sort();
    samples
}

async fn create_qjobs(client: &kube::Client, namespace: &str, prefix: &str, n: usize) {
    let api: Api<QuarksJob> = Api::namespaced(client.clone(), namespace);
    for i in 0..n {
        api.create(&PostParams::default(), &one_off(&format!("{prefix}-{i}")))
            .await
            .expect("create QuarksJob");
    }
}

/// Ends a neighbour's attack: its selection back to the built-in (a pending load is cancelled)
/// and its QuarksJobs deleted.
async fn tear_down(client: &kube::Client, namespace: &str) {
    select_trigger(client, namespace, "builtin:trigger-default").await;
    let api: Api<QuarksJob> = Api::namespaced(client.clone(), namespace);
    let _ = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
}

struct Row {
    what: String,
    /// The victim alone just before the attack.
    before: Vec<Duration>,
    samples: Vec<Duration>,
    rss: (f64, f64),
    shown: String,
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, span) = if quick {
        (30, Duration::from_secs(4))
    } else {
        (100, Duration::from_secs(8))
    };
    let row = (n, span);
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_before = load();

    let sim = KubeSim::start(KubeSimOptions {
        quarks_job_bin: Some(env!("CARGO_BIN_EXE_quarks-job").into()),
        ..Default::default()
    })
    .await
    .expect("kubesim starts");
    let client = sim.client().await.expect("client");
    let registry = registry::Registry::start().await;
    let big = compile_heavy(40 << 10, 0);
    let big_len = big.len();
    let oci = quarks_job::policy::oci::client(std::slice::from_ref(&registry.addr));
    let digest = quarks_job::policy::oci::push(
        &oci,
        &format!("{}/hostile/big:v1", registry.addr),
        big,
        &oci_client::secrets::RegistryAuth::Anonymous,
    )
    .await
    .expect("push the 40 MiB component");
    let big_reference = format!("oci://{}/hostile/big@{digest}", registry.addr);

    let id = format!("hostile-bench-{}", std::process::id());
    let victim = "victim";
    create_namespace(&client, victim, Some(&id)).await;
    let operator = Operator::start(
        sim.kubeconfig_path(),
        &client,
        &id,
        &[
            "--policy-allow-registry".into(),
            registry.addr.clone(),
            "--policy-allow-private-addresses".into(),
            "--policy-insecure-registry".into(),
            registry.addr.clone(),
        ],
    )
    .await;
    let seen = JobsSeen::start(Api::namespaced(client.clone(), victim));
    let _ = latencies(
        &client,
        &seen,
        &operator,
        victim,
        "warm",
        (WARMUP, Duration::ZERO),
    )
    .await;
    let idle = memory_mib(operator.pid);
    let alone = latencies(&client, &seen, &operator, victim, "alone", row).await;
    let mut rows = vec![Row {
        what: "alone".into(),
        before: alone.clone(),
        samples: alone,
        rss: memory_mib(operator.pid),
        shown: "-".into(),
    }];

    // (a) ~40 MiB from the registry.
    let before = latencies(&client, &seen, &operator, victim, "pre-a", row).await;
    let ns = "hostile-a";
    create_namespace(&client, ns, Some(&id)).await;
    select_trigger(&client, ns, &big_reference).await;
    create_qjobs(&client, ns, "big", 3).await;
    wait_for("the 40 MiB load to be pending", DEADLINE, || {
        has_reason(&client, ns, &["PolicyPending"])
    })
    .await;
    let samples = latencies(&client, &seen, &operator, victim, "a", row).await;
    rows.push(Row {
        before,
        what: format!(
            "(a) {:.1} MiB compile-heavy component by `oci://` digest, 3 QuarksJobs",
            big_len as f64 / (1 << 20) as f64
        ),
        samples,
        rss: memory_mib(operator.pid),
        shown: reasons(&client, ns).await,
    });
    tear_down(&client, ns).await;

    // (b) the module ConfigMap rewritten every second.
    let before = latencies(&client, &seen, &operator, victim, "pre-b", row).await;
    let ns = "hostile-b";
    create_namespace(&client, ns, Some(&id)).await;
    put_module(&client, ns, "hostile", compile_heavy(900, 0)).await;
    select_trigger(&client, ns, "configmap:hostile/policy.wasm").await;
    create_qjobs(&client, ns, "rewritten", 3).await;
    let rewriter = {
        let client = client.clone();
        tokio::spawn(async move {
            for salt in 1.. {
                tokio::time::sleep(Duration::from_secs(1)).await;
                put_module(&client, ns, "hostile", compile_heavy(900, salt)).await;
            }
        })
    };
    wait_for("the rewritten module to be pending", DEADLINE, || {
        has_reason(&client, ns, &["PolicyPending"])
    })
    .await;
    let started = Instant::now();
    let samples = latencies(&client, &seen, &operator, victim, "b", row).await;
    let rewrites = started.elapsed().as_secs();
    rows.push(Row {
        before,
        what: format!(
            "(b) ~900 KiB compile-heavy module ConfigMap rewritten every second (≈ {rewrites} rewrites meanwhile), 3 QuarksJobs"
        ),
        samples,
        rss: memory_mib(operator.pid),
        shown: reasons(&client, ns).await,
    });
    rewriter.abort();
    tear_down(&client, ns).await;

    // (c1) 300 core instances.
    let before = latencies(&client, &seen, &operator, victim, "pre-c1", row).await;
    let ns = "hostile-c1";
    create_namespace(&client, ns, Some(&id)).await;
    put_module(&client, ns, "hostile", many_instances(300)).await;
    select_trigger(&client, ns, "configmap:hostile/policy.wasm").await;
    create_qjobs(&client, ns, "instances", 20).await;
    wait_for("PolicyTooComplex", DEADLINE, || {
        has_reason(&client, ns, &["PolicyTooComplex"])
    })
    .await;
    let samples = latencies(&client, &seen, &operator, victim, "c1", row).await;
    rows.push(Row {
        before,
        what: "(c1) component with 300 core instances, 20 QuarksJobs".into(),
        samples,
        rss: memory_mib(operator.pid),
        shown: reasons(&client, ns).await,
    });
    tear_down(&client, ns).await;

    // (c2) a policy that loops.
    let before = latencies(&client, &seen, &operator, victim, "pre-c2", row).await;
    let ns = "hostile-c2";
    create_namespace(&client, ns, Some(&id)).await;
    put_module(&client, ns, "hostile", fixture("loop-forever")).await;
    select_trigger(&client, ns, "configmap:hostile/policy.wasm").await;
    create_qjobs(&client, ns, "loop", 20).await;
    wait_for("PolicyTimeout", DEADLINE, || {
        has_reason(&client, ns, &["PolicyTimeout", "PolicyBudgetExhausted"])
    })
    .await;
    let samples = latencies(&client, &seen, &operator, victim, "c2", row).await;
    rows.push(Row {
        before,
        what: "(c2) policy looping to its CPU limit on every call (`loop-forever`), 20 QuarksJobs"
            .into(),
        samples,
        rss: memory_mib(operator.pid),
        shown: reasons(&client, ns).await,
    });
    tear_down(&client, ns).await;

    // (d) 3 million empty reasons.
    let before = latencies(&client, &seen, &operator, victim, "pre-d", row).await;
    let ns = "hostile-d";
    create_namespace(&client, ns, Some(&id)).await;
    put_module(&client, ns, "hostile", many_reasons(3_000_000, 800)).await;
    select_trigger(&client, ns, "configmap:hostile/policy.wasm").await;
    create_qjobs(&client, ns, "reasons", 20).await;
    wait_for("PolicyResultTooLarge", DEADLINE, || {
        has_reason(&client, ns, &["PolicyResultTooLarge"])
    })
    .await;
    let samples = latencies(&client, &seen, &operator, victim, "d", row).await;
    rows.push(Row {
        before,
        what: "(d) trigger result of 3 000 000 empty reasons (50 MiB guest memory), 20 QuarksJobs"
            .into(),
        samples,
        rss: memory_mib(operator.pid),
        shown: reasons(&client, ns).await,
    });
    tear_down(&client, ns).await;

    // (e) an output file fanning out to 3 000 Secrets, a new one every 500 ms.
    let before = latencies(&client, &seen, &operator, victim, "pre-e", row).await;
    let ns = "hostile-e";
    create_namespace(&client, ns, Some(&id)).await;
    let fanner = {
        let client = client.clone();
        tokio::spawn(async move {
            let api: Api<QuarksJob> = Api::namespaced(client, ns);
            for i in 0.. {
                let _ = api
                    .create(&PostParams::default(), &fan_out(&format!("fan-{i}")))
                    .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    wait_for("TooManySecrets", DEADLINE, || {
        has_reason(&client, ns, &["TooManySecrets"])
    })
    .await;
    let samples = latencies(&client, &seen, &operator, victim, "e", row).await;
    fanner.abort();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let fanned = secrets
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|s| s.name_any().starts_with("fan-k"))
                .count()
        })
        .unwrap_or(0);
    rows.push(Row {
        before,
        what: format!(
            "(e) output file fanning out to 3 000 Secrets, a new QuarksJob every 500 ms ({fanned} of its Secrets written)"
        ),
        samples,
        rss: memory_mib(operator.pid),
        shown: reasons(&client, ns).await,
    });
    tear_down(&client, ns).await;

    let (code, _) = support::http_get(operator.addr, "/healthz")
        .await
        .unwrap_or_default();

    let alone_p99 = percentile(&rows[0].samples, 0.99).as_secs_f64();
    println!();
    println!(
        "## Hostile neighbours{}: victim QuarksJob create → Job exists (n = {n} a row), kubesim with kubelet, \
         operator defaults",
        if quick { " (--quick)" } else { "" }
    );
    println!();
    println!(
        "| neighbour | victim p50 | victim p99 | p99 alone just before | p99 / just before (≤ 1.5x) | p50 / just before | p99 / first alone | operator VmRSS | VmHWM | neighbour's QuarksJobs showed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in &rows {
        let p99 = percentile(&row.samples, 0.99);
        let before = percentile(&row.before, 0.99);
        println!(
            "| {} | {} | {} | {} | {:.2}x | {:.2}x | {:.2}x | {:.0} MiB | {:.0} MiB | {} |",
            row.what,
            ms(percentile(&row.samples, 0.5)),
            ms(p99),
            ms(before),
            p99.as_secs_f64() / before.as_secs_f64(),
            percentile(&row.samples, 0.5).as_secs_f64()
                / percentile(&row.before, 0.5).as_secs_f64(),
            p99.as_secs_f64() / alone_p99,
            row.rss.0,
            row.rss.1,
            row.shown,
        );
    }
    println!();
    println!(
        "operator idle after warm-up: VmRSS {:.0} MiB; /healthz at the end: {code}",
        idle.0
    );
    println!(
        "machine: {} cores; /proc/loadavg before: {}, after: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before.trim(),
        load().trim()
    );
    operator.stop().await;
    sim.stop().await;
}
