//! Output benchmark (issue 5): time from a pod's containers terminating to the output
//! Secrets being written, and the share of it spent in the output policy. Prints a markdown
//! table; asserts nothing about timings.
//!
//! Everything runs on loopback against kubesim started in this process **with** its kubelet
//! and Job controller: the pod's container is a host `sh` process, the helper container is
//! the real `quarks-job persist-output`, and the real `quarks-job` operator runs as a child
//! process (`--kubeconfig <sim> --monitored-id <id> --apply-crd --listen 127.0.0.1:0`).
//!
//! Scenarios: one QuarksJob per row, an errand (`now`) re-run once per sample by patching
//! its strategy back to `now` after the previous run completed (2 uncounted warm-up runs).
//! Its container writes 1 file of 1 KiB, 100 files of 1 KiB, or 1 file of 900 KiB (a flat
//! JSON object of a `pod` key and padding), each mapped to its own Secret; plain (overwritten)
//! and `versioned: true` (every run's content differs by the pod name, so every run writes a
//! new version).
//!
//! How the interval is measured:
//! * **Start — the containers terminated.** Kubernetes records `terminated.finishedAt` with
//!   one-second resolution only, useless at this scale. Instead the container's last command
//!   is `date +%s.%N > <bench dir>/<pod name>` (kubesim's containers see the host's
//!   filesystem outside kubesim's state directory): the wall-clock time right before it
//!   exits, after all output files were written. The process exit itself (microseconds
//!   later) is not in it, so the interval slightly overstates the real one.
//! * **End — the Secrets are written.** A kube-runtime watcher in this process on Secrets
//!   labelled `bench=output` timestamps (wall clock, the same host clock) each event whose
//!   `pod` value is that run's pod; the run's end is the event that completes the set of
//!   expected Secrets (1 or 100). So the interval includes the watch delivery to this
//!   process, as any consumer of the Secrets would see them.
//!
//! What lies in between: the kubelet reporting the container's exit in the pod status, the
//! helper's watch of its pod seeing it, the helper reading the files and creating its staging
//! Secret, the operator's Secret watch seeing that, the reconcile (output policy per file,
//! validation, the writes), and the bench's watch delivery.
//!
//! Versioned rows grow with the run count: each staging Secret's first versioned write lists
//! the metadata of every versioned Secret in the namespace (no retention yet), so the last
//! samples of a row see up to `files × runs` of them.
//!
//! Policy share: the operator's `quarks_job_policy_call_seconds_sum{world="output"}` (from
//! `/metrics`, read before and after each row) over the sum of the row's intervals.
//!
//! Target (issue 5): 1 KiB file p50 ≤ 50 ms on kubesim.
//!
//! Run: `cargo bench -p quarks-job --bench output` (50 samples per row, a few minutes on 2
//! cores); `-- --quick` for 10 samples per row.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use quarks_job::crd::QuarksJob;
use serde_json::json;
use support::{DEADLINE, Operator, create_namespace, http_get, ms, percentile, wait_for};
use tokio::sync::mpsc;

const WARMUP: usize = 2;

struct Scenario {
    label: &'static str,
    files: usize,
    bytes: usize,
    versioned: bool,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        label: "1 file × 1 KiB",
        files: 1,
        bytes: 1024,
        versioned: false,
    },
    Scenario {
        label: "1 file × 1 KiB, versioned",
        files: 1,
        bytes: 1024,
        versioned: true,
    },
    Scenario {
        label: "100 files × 1 KiB",
        files: 100,
        bytes: 1024,
        versioned: false,
    },
    Scenario {
        label: "100 files × 1 KiB, versioned",
        files: 100,
        bytes: 1024,
        versioned: true,
    },
    Scenario {
        label: "1 file × 900 KiB",
        files: 1,
        bytes: 900 * 1024,
        versioned: false,
    },
    Scenario {
        label: "1 file × 900 KiB, versioned",
        files: 1,
        bytes: 900 * 1024,
        versioned: true,
    },
];

fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The errand of one scenario: `files` files `f<i>.json` of about `bytes` bytes each, the
/// last command timestamping the end in `dir/<pod name>`.
fn errand(name: &str, s: &Scenario, dir: &Path) -> DynamicObject {
    let files: BTreeMap<String, serde_json::Value> = (0..s.files)
        .map(|i| {
            (
                format!("f{i}.json"),
                json!({"name": format!("{name}-f{i}"), "versioned": s.versioned, "secretLabels": {"bench": "output"}}),
            )
        })
        .collect();
    // `{"pod": "<pod>", "pad": "xxx…"}`, padded to the size (the pod name is ~20 bytes).
    let pad = s.bytes.saturating_sub(40);
    let script = format!(
        r#"pad=$(head -c {pad} /dev/zero | tr '\0' x)
i=0
while [ $i -lt {files} ]; do printf '{{"pod": "%s", "pad": "%s"}}' "$POD_NAME" "$pad" > /mnt/quarks/f$i.json; i=$((i+1)); done
date +%s.%N > {dir}/$POD_NAME"#,
        files = s.files,
        dir = dir.display()
    );
    serde_json::from_value(json!({
        "apiVersion": "quarks.cloudfoundry.org/v1alpha1",
        "kind": "QuarksJob",
        "metadata": {"name": name},
        "spec": {
            "trigger": {"strategy": "now"},
            "output": {"outputMap": {"main": files}},
            "template": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main", "image": "busybox", "command": ["sh", "-c", script],
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
                }]
            }}}}
        }
    }))
    .expect("QuarksJob")
}

/// Watches Secrets labelled `bench=output`; sends (pod, wall-clock time) whenever the number
/// of distinct Secrets carrying that pod's output grows, with that number.
fn watch_output(api: Api<Secret>) -> mpsc::UnboundedReceiver<(String, usize, f64)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut by_pod: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stream = watcher(api, watcher::Config::default().labels("bench=output")).boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            let at = wall_now();
            let secret = match event {
                watcher::Event::Apply(s) | watcher::Event::InitApply(s) => s,
                _ => continue,
            };
            let Some(pod) = secret
                .data
                .as_ref()
                .and_then(|d| d.get("pod"))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            else {
                continue;
            };
            let names = by_pod.entry(pod.clone()).or_default();
            if names.insert(secret.metadata.name.clone().unwrap_or_default())
                && tx.send((pod, names.len(), at)).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// `quarks_job_policy_call_seconds_sum` of the output world, over all policy digests.
async fn output_policy_seconds(op: &Operator) -> f64 {
    let body = http_get(op.addr, "/metrics")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("quarks_job_policy_call_seconds_sum{"))
        .filter(|l| l.contains("world=\"output\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Row {
    label: &'static str,
    samples: Vec<Duration>,
    policy_share: f64,
}

async fn run_scenario(
    client: &kube::Client,
    op: &Operator,
    namespace: &str,
    index: usize,
    s: &Scenario,
    dir: &Path,
    samples: usize,
) -> Row {
    let qjobs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<QuarksJob>(&()),
    );
    let typed: Api<QuarksJob> = Api::namespaced(client.clone(), namespace);
    let mut secrets = watch_output(Api::namespaced(client.clone(), namespace));
    let name = format!("errand-{index}");
    let mut intervals = Vec::new();
    let mut policy_seconds = 0.0;
    for run in 1..=(WARMUP + samples) as i64 {
        let policy_before = output_policy_seconds(op).await;
        if run == 1 {
            qjobs
                .create(&PostParams::default(), &errand(&name, s, dir))
                .await
                .expect("create QuarksJob");
        } else {
            qjobs
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"trigger": {"strategy": "now"}}})),
                )
                .await
                .expect("patch strategy");
        }
        // The run's Secrets, all from one pod.
        let (pod, written_at) = tokio::time::timeout(DEADLINE, async {
            loop {
                let (pod, count, at) = secrets.recv().await.expect("the Secret watcher ended");
                if count == s.files {
                    return (pod, at);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{}: run {run}'s Secrets not written", s.label));
        let finished: f64 = std::fs::read_to_string(dir.join(&pod))
            .expect("the container's end timestamp")
            .trim()
            .parse()
            .expect("a `date +%s.%N` timestamp");
        // The run must be settled before the next one can start.
        wait_for("the run to complete", DEADLINE, || async {
            typed
                .get_status(&name)
                .await
                .ok()
                .and_then(|q| q.status)
                .is_some_and(|st| st.run_count == run && st.completed)
        })
        .await;
        if run as usize > WARMUP {
            intervals.push(Duration::from_secs_f64((written_at - finished).max(0.0)));
            policy_seconds += output_policy_seconds(op).await - policy_before;
        }
    }
    let total: f64 = intervals.iter().map(Duration::as_secs_f64).sum();
    intervals.sort();
    Row {
        label: s.label,
        samples: intervals,
        policy_share: if total > 0.0 {
            policy_seconds / total
        } else {
            f64::NAN
        },
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let samples = if quick { 10 } else { 50 };
    let (sim, client) = support::kubesim_with_kubelet().await;
    let id = format!("bench-output-{}", std::process::id());
    let op = Operator::start(sim.kubeconfig_path(), &client, &id, &[]).await;
    let dir = tempfile::tempdir().expect("temp dir");

    let mut rows = Vec::new();
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        // A namespace per row: versioned rows' version lists do not grow with earlier rows.
        let namespace = format!("output-{index}");
        create_namespace(&client, &namespace, Some(&id)).await;
        rows.push(
            run_scenario(
                &client,
                &op,
                &namespace,
                index,
                scenario,
                dir.path(),
                samples,
            )
            .await,
        );
    }
    op.stop().await;
    sim.stop().await;

    println!(
        "\n## Output: containers terminated → Secrets written ({samples} samples per row, kubesim)\n"
    );
    println!("| output | p50 | p99 | policy share |");
    println!("|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.1} % |",
            row.label,
            ms(percentile(&row.samples, 0.5)),
            ms(percentile(&row.samples, 0.99)),
            row.policy_share * 100.0
        );
    }
    println!("\nTarget (issue 5): 1 KiB file p50 ≤ 50 ms.");
}
