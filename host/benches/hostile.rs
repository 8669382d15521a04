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

#[path = "../tests/policies/hostile_components.rs"]
mod hostile_components;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hostile_components::{compile_heavy_salted, many_instances, many_reasons};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use quarks_job::crd::QuarksJob;
use quarks_job::names::job::job_name;
use serde_json::json;
use support::{
    DEADLINE, JobsSeen, Operator, busybox_one_off, create_namespace, fixture, memory_mib, ms,
    percentile, put_module, select_trigger, wait_for,
};

const WARMUP: usize = 5;

fn one_off(name: &str) -> QuarksJob {
    busybox_one_off(name, json!(["true"]), None)
}

/// A one-off whose `output.json` has 3 000 keys, each to become a Secret of its own.
fn fan_out(name: &str) -> QuarksJob {
    // awk, not a shell loop: the pods run on this machine, and the attack is on the operator.
    let script = r#"awk 'BEGIN { printf "{"; for (i = 0; i < 3000; i++) printf "%s\"k%d\": \"{}\"", (i ? "," : ""), i; printf "}" }' > /mnt/quarks/output.json"#;
    let output_map =
        json!({"busybox": {"output.json": {"name": "fan", "persistencemethod": "fan-out"}}});
    busybox_one_off(name, json!(["sh", "-c", script]), Some(output_map))
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

/// The victim's side of every row: the operator, the watcher that times the victim's Jobs and
/// the pacing of a row.
struct Victim<'a> {
    client: &'a kube::Client,
    seen: &'a JobsSeen,
    operator: &'a Operator,
    /// The monitored id each neighbour namespace is labelled with.
    id: &'a str,
    namespace: &'a str,
    row: (usize, Duration),
}

/// A neighbour namespace during its row, and the victim's latencies just before its attack.
struct Neighbour {
    key: &'static str,
    namespace: String,
    before: Vec<Duration>,
}

impl Victim<'_> {
    /// One row's worth of victim latencies, its QuarksJobs named `<prefix>-<i>`.
    async fn latencies(&self, prefix: &str) -> Vec<Duration> {
        let (client, seen, operator) = (self.client, self.seen, self.operator);
        latencies(client, seen, operator, self.namespace, prefix, self.row).await
    }

    /// Measures the victim alone (the row's own baseline, see the module docs), then opens
    /// neighbour namespace `hostile-<key>` for the attack to be set up in.
    async fn open_neighbour(&self, key: &'static str) -> Neighbour {
        let before = self.latencies(&format!("pre-{key}")).await;
        let namespace = format!("hostile-{key}");
        create_namespace(self.client, &namespace, Some(self.id)).await;
        Neighbour {
            key,
            namespace,
            before,
        }
    }

    /// Waits until one of the neighbour's QuarksJobs shows one of the reasons in `met`: the
    /// operator has met the attack, which goes on meanwhile.
    async fn wait_met(&self, neighbour: &Neighbour, met: &[&str]) {
        let what = format!("{} to show {}", neighbour.namespace, met.join(" or "));
        wait_for(&what, DEADLINE, || {
            has_reason(self.client, &neighbour.namespace, met)
        })
        .await;
    }

    /// The victim's latencies during the attack, once the operator has met it ([`Self::wait_met`]).
    async fn latencies_beside(&self, neighbour: &Neighbour, met: &[&str]) -> Vec<Duration> {
        self.wait_met(neighbour, met).await;
        self.latencies(neighbour.key).await
    }

    /// The row of `neighbour`'s attack, `what` it was, then the attack ended.
    async fn close(&self, neighbour: Neighbour, what: String, samples: Vec<Duration>) -> Row {
        let row = Row {
            what,
            before: neighbour.before,
            samples,
            rss: memory_mib(self.operator.pid),
            shown: reasons(self.client, &neighbour.namespace).await,
        };
        tear_down(self.client, &neighbour.namespace).await;
        row
    }
}

/// Stores `bytes` as the neighbour's module ConfigMap `hostile` and selects it as its trigger
/// policy.
async fn select_module(client: &kube::Client, namespace: &str, bytes: Vec<u8>) {
    put_module(client, namespace, "hostile", bytes).await;
    select_trigger(client, namespace, "configmap:hostile/policy.wasm").await;
}

/// A row whose neighbour selects a trigger policy the operator refuses on every decision of
/// its 20 QuarksJobs: the attack is the policy itself, nothing goes on in the background.
struct RefusedPolicy {
    key: &'static str,
    what: &'static str,
    module: Vec<u8>,
    /// The neighbour's QuarksJobs are named `<prefix>-<i>`.
    prefix: &'static str,
    /// The reasons that show the operator refused it.
    met: &'static [&'static str],
}

/// How many of the Secrets the fan-out neighbour's QuarksJobs wrote exist in `namespace`.
async fn fanned_secrets(client: &kube::Client, namespace: &str) -> usize {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), namespace);
    secrets
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|s| s.name_any().starts_with("fan-k"))
                .count()
        })
        .unwrap_or(0)
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

    let (sim, client) = support::kubesim_with_kubelet().await;
    let registry = registry::Registry::start().await;
    let big = compile_heavy_salted(40 << 10, 0);
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
    let victim_namespace = "victim";
    create_namespace(&client, victim_namespace, Some(&id)).await;
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
    let seen = JobsSeen::start(Api::namespaced(client.clone(), victim_namespace));
    let victim = Victim {
        client: &client,
        seen: &seen,
        operator: &operator,
        id: &id,
        namespace: victim_namespace,
        row,
    };
    let _ = latencies(
        &client,
        &seen,
        &operator,
        victim_namespace,
        "warm",
        (WARMUP, Duration::ZERO),
    )
    .await;
    let idle = memory_mib(operator.pid);
    let alone = victim.latencies("alone").await;
    let mut rows = vec![Row {
        what: "alone".into(),
        before: alone.clone(),
        samples: alone,
        rss: memory_mib(operator.pid),
        shown: "-".into(),
    }];

    // (a) ~40 MiB from the registry.
    let a = victim.open_neighbour("a").await;
    select_trigger(&client, &a.namespace, &big_reference).await;
    create_qjobs(&client, &a.namespace, "big", 3).await;
    let samples = victim.latencies_beside(&a, &["PolicyPending"]).await;
    let what = format!(
        "(a) {:.1} MiB compile-heavy component by `oci://` digest, 3 QuarksJobs",
        big_len as f64 / (1 << 20) as f64
    );
    rows.push(victim.close(a, what, samples).await);

    // (b) the module ConfigMap rewritten every second.
    let b = victim.open_neighbour("b").await;
    select_module(&client, &b.namespace, compile_heavy_salted(900, 0)).await;
    create_qjobs(&client, &b.namespace, "rewritten", 3).await;
    let rewriter = {
        let (client, ns) = (client.clone(), b.namespace.clone());
        tokio::spawn(async move {
            for salt in 1.. {
                tokio::time::sleep(Duration::from_secs(1)).await;
                put_module(&client, &ns, "hostile", compile_heavy_salted(900, salt)).await;
            }
        })
    };
    victim.wait_met(&b, &["PolicyPending"]).await;
    let started = Instant::now();
    let samples = victim.latencies(b.key).await;
    let rewrites = started.elapsed().as_secs();
    rewriter.abort();
    let what = format!(
        "(b) ~900 KiB compile-heavy module ConfigMap rewritten every second (≈ {rewrites} rewrites meanwhile), 3 QuarksJobs"
    );
    rows.push(victim.close(b, what, samples).await);

    // (c1), (c2), (d): a policy refused on every decision.
    for attack in [
        RefusedPolicy {
            key: "c1",
            what: "(c1) component with 300 core instances, 20 QuarksJobs",
            module: many_instances(300),
            prefix: "instances",
            met: &["PolicyTooComplex"],
        },
        RefusedPolicy {
            key: "c2",
            what: "(c2) policy looping to its CPU limit on every call (`loop-forever`), 20 QuarksJobs",
            module: fixture("loop-forever"),
            prefix: "loop",
            met: &["PolicyTimeout", "PolicyBudgetExhausted"],
        },
        RefusedPolicy {
            key: "d",
            what: "(d) trigger result of 3 000 000 empty reasons (50 MiB guest memory), 20 QuarksJobs",
            module: many_reasons(3_000_000, 800),
            prefix: "reasons",
            met: &["PolicyResultTooLarge"],
        },
    ] {
        let neighbour = victim.open_neighbour(attack.key).await;
        select_module(&client, &neighbour.namespace, attack.module).await;
        create_qjobs(&client, &neighbour.namespace, attack.prefix, 20).await;
        let samples = victim.latencies_beside(&neighbour, attack.met).await;
        rows.push(victim.close(neighbour, attack.what.into(), samples).await);
    }

    // (e) an output file fanning out to 3 000 Secrets, a new one every 500 ms.
    let e = victim.open_neighbour("e").await;
    let fanner = {
        let api: Api<QuarksJob> = Api::namespaced(client.clone(), &e.namespace);
        tokio::spawn(async move {
            for i in 0.. {
                let _ = api
                    .create(&PostParams::default(), &fan_out(&format!("fan-{i}")))
                    .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let samples = victim.latencies_beside(&e, &["TooManySecrets"]).await;
    fanner.abort();
    let fanned = fanned_secrets(&client, &e.namespace).await;
    let what = format!(
        "(e) output file fanning out to 3 000 Secrets, a new QuarksJob every 500 ms ({fanned} of its Secrets written)"
    );
    rows.push(victim.close(e, what, samples).await);

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
