//! What the operator-level benchmarks share: starting the real `quarks-job` binary against a
//! kubesim, reading its memory, CPU and HTTP endpoints, selecting a namespace's policies, timing
//! Jobs, percentiles. Benchmarks include it with `mod support;`; none of it asserts anything
//! about timings.

#![allow(dead_code)] // each bench uses its own subset

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use kubesim::{KubeSim, KubeSimOptions};
use quarks_job::names::MONITORED_LABEL;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// The ConfigMap in which a namespace selects its policies.
pub const SELECTION: &str = "quarks-job-policies";

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// (VmRSS, VmHWM) of a process in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) a process has used (assumes the usual 100 ticks/s).
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

/// A minimal HTTP/1.0 GET on loopback: (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

pub async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Operator {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Operator {
    /// Starts `quarks-job` and waits until `/readyz` answers 200 and the CRD is established.
    pub async fn start(
        kubeconfig: &Path,
        client: &kube::Client,
        monitored_id: &str,
        extra: &[String],
    ) -> Operator {
        let log = tempfile::NamedTempFile::new().expect("temp file");
        let child = Command::new(env!("CARGO_BIN_EXE_quarks-job"))
            .args([
                "--kubeconfig",
                kubeconfig.to_str().expect("utf-8 path"),
                "--monitored-id",
                monitored_id,
            ])
            .args(["--apply-crd", "--listen", "127.0.0.1:0"])
            .args(extra)
            .args(["--log-level", "info", "--log-format", "json"])
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("start quarks-job");
        let pid = child.id().expect("pid");
        let mut addr = None;
        wait_for("the operator's listen address in its log", DEADLINE, || {
            addr = std::fs::read_to_string(log.path())
                .unwrap_or_default()
                .lines()
                .find_map(|line| {
                    let v: serde_json::Value = serde_json::from_str(line).ok()?;
                    v["fields"]["message"]
                        .as_str()?
                        .starts_with("serving /healthz")
                        .then_some(())?;
                    v["fields"]["addr"].as_str()?.parse::<SocketAddr>().ok()
                });
            std::future::ready(addr.is_some())
        })
        .await;
        let addr = addr.expect("address");
        // Ready = /readyz 200; after 10 s go on, and say so.
        let until = Instant::now() + Duration::from_secs(10);
        while http_get(addr, "/readyz")
            .await
            .is_none_or(|(code, _)| code != 200)
        {
            if Instant::now() > until {
                eprintln!("warning: operator /readyz not 200 after 10 s; continuing");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        wait_for("the CRD to be established", DEADLINE, || async {
            crds.get_opt("quarksjobs.quarks.cloudfoundry.org")
                .await
                .ok()
                .flatten()
                .and_then(|c| c.status?.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        })
        .await;
        Operator {
            child,
            pid,
            addr,
            log,
        }
    }

    /// A counter or gauge from `/metrics` (sum over its label sets).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metric_samples(name).await.iter().map(|(_, v)| v).sum()
    }

    /// Each label set of a counter or gauge from `/metrics`: (`{labels}` text, value).
    pub async fn metric_samples(&self, name: &str) -> Vec<(String, f64)> {
        let body = http_get(self.addr, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series[name.len()..].to_owned(), value.parse::<f64>().ok()?))
            })
            .collect()
    }

    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        if tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "operator did not stop on SIGTERM; killing it. Log tail:\n{}",
                self.log_tail()
            );
            let _ = self.child.kill().await;
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        log.lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A one-off QuarksJob (`once`, no retries) whose one container, `busybox`, runs `command`;
/// with `output_map` as `spec.output.outputMap` when given.
pub fn busybox_one_off(
    name: &str,
    command: serde_json::Value,
    output_map: Option<serde_json::Value>,
) -> quarks_job::crd::QuarksJob {
    let mut spec = json!({
        "trigger": {"strategy": "once"},
        "template": {"spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "busybox", "image": "busybox", "command": command}]
        }}}}
    });
    if let Some(map) = output_map {
        spec["output"] = json!({"outputMap": map});
    }
    serde_json::from_value(json!({
        "apiVersion": "quarks.cloudfoundry.org/v1alpha1",
        "kind": "QuarksJob",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("QuarksJob")
}

pub async fn create_namespace(client: &kube::Client, name: &str, monitored_id: Option<&str>) {
    let labels = monitored_id
        .map(|id| json!({ MONITORED_LABEL: id }))
        .unwrap_or(json!({}));
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
            .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// kubesim with its kubelet and Job controller, which run pods as local processes with the
/// `quarks-job` binary under test as their output helper (for benchmarks whose Jobs must write
/// output), and a client of it.
pub async fn kubesim_with_kubelet() -> (KubeSim, kube::Client) {
    let sim = KubeSim::start(KubeSimOptions {
        quarks_job_bin: Some(env!("CARGO_BIN_EXE_quarks-job").into()),
        ..Default::default()
    })
    .await
    .expect("kubesim starts");
    let client = sim.client().await.expect("client");
    (sim, client)
}

/// A policy component host/build.rs built (fixtures and example policies), by name.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.wasm", env!("QUARKS_POLICY_FIXTURES"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Server-side applies `config_map` in `namespace`, as the benchmark's own field manager.
pub async fn apply_config_map(client: &kube::Client, namespace: &str, config_map: ConfigMap) {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            &config_map.name_any(),
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&config_map),
        )
        .await
        .expect("apply ConfigMap");
}

/// Selects `reference` (`builtin:…`, `configmap:…`, `oci://…`) as `namespace`'s trigger policy.
pub async fn select_trigger(client: &kube::Client, namespace: &str, reference: &str) {
    let mut config_map = ConfigMap::default();
    config_map.metadata.name = Some(SELECTION.into());
    config_map.data = Some(BTreeMap::from([("trigger".into(), reference.into())]));
    apply_config_map(client, namespace, config_map).await;
}

/// Stores `bytes` as `binaryData["policy.wasm"]` of ConfigMap `name`, for a selection of
/// `configmap:<name>/policy.wasm`.
pub async fn put_module(client: &kube::Client, namespace: &str, name: &str, bytes: Vec<u8>) {
    let mut config_map = ConfigMap::default();
    config_map.metadata.name = Some(name.into());
    config_map.binary_data = Some(BTreeMap::from([("policy.wasm".into(), ByteString(bytes))]));
    apply_config_map(client, namespace, config_map).await;
}

/// First time each Job (`namespace/name`) was seen by a watcher: when a Job "exists" for a
/// latency, the same for every benchmark.
#[derive(Clone, Default)]
pub struct JobsSeen(Arc<Mutex<HashMap<String, Instant>>>);

impl JobsSeen {
    /// Watches the Jobs `api` lists (one namespace, or all) from now on.
    pub fn start(api: Api<Job>) -> Self {
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

    /// When Job `job` in `namespace` was first seen; on [`DEADLINE`] it panics with the tail of
    /// `operator`'s log (why it made no Job).
    pub async fn wait(&self, namespace: &str, job: &str, operator: &Operator) -> Instant {
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
