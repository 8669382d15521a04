//! What the operator-level benchmarks share: starting the real `quarks-job` binary against a
//! kubesim, reading its memory, CPU and HTTP endpoints, percentiles. Benchmarks include it with
//! `mod support;`; none of it asserts anything about timings.

#![allow(dead_code)] // each bench uses its own subset

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use quarks_job::names::MONITORED_LABEL;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

pub const DEADLINE: Duration = Duration::from_secs(30);

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
        let body = http_get(self.addr, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
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
