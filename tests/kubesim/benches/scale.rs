//! Scale bench for kubesim's API server (not a test: nothing is asserted).
//!
//! 10 000 ConfigMaps across 100 namespaces with 100 concurrent watches (one per
//! namespace); prints p50/p99 of create, get, list (one namespace and all namespaces) and
//! watch-event delivery (create request sent → event received), plus the process RSS.
//! Run: `cargo bench -p kubesim --bench scale`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kubesim::{KubeSim, KubeSimOptions};
use serde_json::json;

const NAMESPACES: usize = 100;
const OBJECTS: usize = 10_000;
const CREATORS: usize = 2;

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn row(name: &str, n: usize, v: Vec<Duration>) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {name:<28} | {n:>6} | {:>8.3} | {:>8.3} |",
        ms(pct(v.clone(), 0.5)),
        ms(pct(v, 0.99))
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sim = KubeSim::start(KubeSimOptions {
        run_kubelet: false,
        ..Default::default()
    })
    .await?;
    let client = sim.client().await?;
    let nss: Api<Namespace> = Api::all(client.clone());
    for i in 0..NAMESPACES {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("ns{i}")}}))?;
        nss.create(&PostParams::default(), &ns).await?;
    }
    let rss_before = rss_mib();

    // Send times by object name, and the delivery latencies the watchers measured.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let delivered: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let mut watchers = Vec::new();
    for i in 0..NAMESPACES {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &format!("ns{i}"));
        let rv = api
            .list(&ListParams::default())
            .await?
            .metadata
            .resource_version
            .unwrap_or_default();
        let mut stream = api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        let (sent, delivered) = (sent.clone(), delivered.clone());
        watchers.push(tokio::spawn(async move {
            let per_ns = OBJECTS / NAMESPACES;
            let mut seen = 0;
            while seen < per_ns {
                let Ok(Some(ev)) = stream.try_next().await else {
                    break;
                };
                if let WatchEvent::Added(cm) = ev {
                    let now = Instant::now();
                    let name = cm.metadata.name.unwrap_or_default();
                    let t0 = sent.lock().ok().and_then(|s| s.get(&name).copied());
                    if let (Some(t0), Ok(mut d)) = (t0, delivered.lock()) {
                        d.push(now.duration_since(t0));
                    }
                    seen += 1;
                }
            }
        }));
    }

    let started = Instant::now();
    let mut creators = Vec::new();
    for c in 0..CREATORS {
        let client = client.clone();
        let sent = sent.clone();
        creators.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (c..OBJECTS).step_by(CREATORS) {
                let ns = format!("ns{}", i % NAMESPACES);
                let name = format!("cm{i}");
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
                let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "bench", "n": (i % 10).to_string()}}, "data": {"k": "v".repeat(64)}})).unwrap_or_default();
                if let Ok(mut s) = sent.lock() {
                    s.insert(name.clone(), Instant::now());
                }
                let t = Instant::now();
                if api.create(&PostParams::default(), &cm).await.is_ok() {
                    lat.push(t.elapsed());
                }
            }
            lat
        }));
    }
    let mut create_lat = Vec::new();
    for c in creators {
        create_lat.extend(c.await?);
    }
    let create_wall = started.elapsed();
    for w in watchers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }

    let mut get_lat = Vec::new();
    for i in 0..2000 {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &format!("ns{}", i % NAMESPACES));
        let t = Instant::now();
        api.get(&format!(
            "cm{}",
            (i * 7919) % OBJECTS / NAMESPACES * NAMESPACES + i % NAMESPACES
        ))
        .await?;
        get_lat.push(t.elapsed());
    }
    let mut list_ns = Vec::new();
    for i in 0..200 {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &format!("ns{}", i % NAMESPACES));
        let t = Instant::now();
        let l = api.list(&ListParams::default()).await?;
        list_ns.push(t.elapsed());
        assert_eq!(l.items.len(), OBJECTS / NAMESPACES);
    }
    let mut list_all = Vec::new();
    for _ in 0..10 {
        let api: Api<ConfigMap> = Api::all(client.clone());
        let t = Instant::now();
        let l = api.list(&ListParams::default()).await?;
        list_all.push(t.elapsed());
        assert_eq!(l.items.len(), OBJECTS);
    }
    let mut list_sel = Vec::new();
    for i in 0..50 {
        let api: Api<ConfigMap> = Api::all(client.clone());
        let t = Instant::now();
        api.list(&ListParams::default().labels(&format!("n={}", i % 10)))
            .await?;
        list_sel.push(t.elapsed());
    }
    let delivered = delivered.lock().map(|d| d.clone()).unwrap_or_default();

    println!(
        "kubesim scale bench: {OBJECTS} ConfigMaps in {NAMESPACES} namespaces, {NAMESPACES} watches, {CREATORS} concurrent creators"
    );
    println!("| operation                    |      n | p50 (ms) | p99 (ms) |");
    println!("|------------------------------|--------|----------|----------|");
    row("create", create_lat.len(), create_lat);
    row("get", get_lat.len(), get_lat);
    row("list one namespace (100)", list_ns.len(), list_ns);
    row("list all (10 000)", list_all.len(), list_all);
    row("list all, label selector", list_sel.len(), list_sel);
    row("watch delivery (send→event)", delivered.len(), delivered);
    println!(
        "create throughput: {:.0} objects/s",
        OBJECTS as f64 / create_wall.as_secs_f64()
    );
    println!(
        "RSS: {rss_before:.1} MiB before objects, {:.1} MiB after (server and client in one process)",
        rss_mib()
    );
    sim.stop().await;
    Ok(())
}
