//! Per-namespace policies (architecture.md "Policies"): each namespace selects its trigger and
//! output policy with the ConfigMap `quarks-job-policies`; modules are real components built
//! from `examples/policies/` and `tests/policy-fixtures/`, stored in ConfigMaps.

use std::time::Instant;

use quarks_job::policy::PolicyDigest;

use crate::{
    Cluster, QJob, approve, events_in, jobs_in, output_qjob, policy_component, put_module,
    run_count, select_policies, wait_for, wait_for_reason, wait_secret, wait_status,
};

fn component(name: &str) -> Vec<u8> {
    let path = policy_component(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn digest(bytes: &[u8]) -> String {
    PolicyDigest::of(bytes).to_string()
}

async fn wait_for_run(c: &Cluster, namespace: &str, name: &str) {
    wait_status(c, namespace, name, "a run", |s| s.run_count >= 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_choose_their_trigger_policy_and_a_swap_is_used_by_the_next_decision() {
    let c = Cluster::start().await;
    let a = c.namespace.clone();
    let b = format!("{a}-b");
    c.create_namespace(&b, Some(&c.monitored_id)).await;
    let approval = component("approval-trigger");
    let approval_digest = digest(&approval);
    put_module(&c, &b, "approval", approval).await;
    select_policies(
        &c,
        &b,
        &[(
            "trigger",
            &format!("configmap:approval/policy.wasm@{approval_digest}"),
        )],
    )
    .await;
    let _op = c.operator().await;

    c.create_qjob_in(&a, &QJob::new("deploy", "once").script("true"))
        .await;
    c.create_qjob_in(&b, &QJob::new("deploy", "once").script("true"))
        .await;
    wait_for_run(&c, &a, "deploy").await;
    let message = wait_for_reason(&c, &b, "deploy", "NotApproved").await;
    assert!(
        message.contains("quarks.cloudfoundry.org/approved=true"),
        "{message}"
    );
    let status = c.qjobs_in(&b).get("deploy").await.unwrap().status.unwrap();
    assert_eq!(status.run_count, 0);
    assert_eq!(
        status.policies.and_then(|p| p.trigger),
        Some(approval_digest.clone()),
        "status names the policy that decided"
    );
    assert_eq!(jobs_in(&c, &b).await.len(), 0);

    // Approving runs it, decided by the approval policy.
    approve(&c, &b, "deploy").await;
    wait_for_run(&c, &b, "deploy").await;

    // An unapproved one waits; swapping B's selection to the default runs it.
    c.create_qjob_in(&b, &QJob::new("second", "once").script("true"))
        .await;
    wait_for_reason(&c, &b, "second", "NotApproved").await;
    let swapped = Instant::now();
    select_policies(&c, &b, &[("trigger", "builtin:trigger-default")]).await;
    wait_for_run(&c, &b, "second").await;
    println!(
        "selection swap → first decision with the new policy: {:?}",
        swapped.elapsed()
    );
    let status = c.qjobs_in(&b).get("second").await.unwrap().status.unwrap();
    assert_ne!(
        status.policies.and_then(|p| p.trigger),
        Some(approval_digest)
    );
}

/// A selection and a QuarksJob created one after the other reach the operator by different
/// watches, in either order. Here the ConfigMap watches are held (kubesim reopens them only
/// after 5 s) so the QuarksJob always comes first: the defaults must not decide in place of
/// the policy the namespace chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubesim_only_a_selection_its_watch_has_not_delivered_yet_is_not_replaced_by_the_defaults()
{
    let c = Cluster::start().await;
    let b = format!("{}-b", c.namespace);
    c.create_namespace(&b, Some(&c.monitored_id)).await;
    put_module(&c, &b, "approval", component("approval-trigger")).await;
    let _op = c.operator().await;
    c.create_qjob_in(&b, &QJob::new("first", "once").script("true"))
        .await;
    wait_for_run(&c, &b, "first").await;

    let faults = c.sim().faults();
    faults.delay_requests_of(
        "kubesim:admin",
        "watch",
        "configmaps",
        std::time::Duration::from_secs(5),
    );
    faults.close_watches();
    let held = Instant::now();
    select_policies(&c, &b, &[("trigger", "configmap:approval/policy.wasm")]).await;
    c.create_qjob_in(&b, &QJob::new("deploy", "once").script("true"))
        .await;
    wait_for_reason(&c, &b, "deploy", "NotApproved").await;
    println!(
        "decided by the selected policy {:?} after the watches were held",
        held.elapsed()
    );
    faults.reset();
    assert_eq!(run_count(&c, &b, "deploy").await, 0);
    assert!(
        jobs_in(&c, &b).await.iter().all(|j| !j
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with("deploy")),
        "no Job of a run the defaults decided"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_a_hostile_or_broken_policy_fails_closed_and_others_keep_working() {
    let c = Cluster::start().await;
    let a = c.namespace.clone();
    let hostile = format!("{a}-c");
    c.create_namespace(&hostile, Some(&c.monitored_id)).await;
    put_module(&c, &hostile, "bad", component("loop-forever")).await;
    select_policies(&c, &hostile, &[("trigger", "configmap:bad/policy.wasm")]).await;
    let op = c.operator().await;
    c.create_qjob_in(&hostile, &QJob::new("victim", "once").script("true"))
        .await;

    // Each broken module in turn: a condition naming the problem, an Event, no run; and
    // namespace A keeps running its QuarksJobs meanwhile.
    // (expected reason, module to store, selection to set)
    type Step = (&'static str, Option<Vec<u8>>, Option<String>);
    let steps: [Step; 5] = [
        ("PolicyTimeout", None, None),
        (
            "PolicyMemoryLimit",
            Some(component("allocate-forever")),
            None,
        ),
        (
            "PolicyNotWasm",
            Some(b"#!/bin/sh\nrm -rf /\n".to_vec()),
            None,
        ),
        (
            "PolicyDigestMismatch",
            None,
            Some(format!(
                "configmap:bad/policy.wasm@sha256:{}",
                "0".repeat(64)
            )),
        ),
        (
            "PolicyModuleMissing",
            None,
            Some("configmap:not-there/policy.wasm".to_owned()),
        ),
    ];
    for (i, (reason, module, selection)) in steps.into_iter().enumerate() {
        if let Some(bytes) = module {
            put_module(&c, &hostile, "bad", bytes).await;
        }
        if let Some(reference) = selection {
            select_policies(&c, &hostile, &[("trigger", &reference)]).await;
        }
        wait_for_reason(&c, &hostile, "victim", reason).await;
        wait_for(&format!("a {reason} Event"), || async {
            events_in(&c, &hostile).await.iter().any(|e| {
                e.regarding.as_ref().and_then(|o| o.name.as_deref()) == Some("victim")
                    && e.reason.as_deref() == Some(reason)
            })
        })
        .await;
        let name = format!("meanwhile-{i}");
        let started = Instant::now();
        c.create_qjob_in(&a, &QJob::new(&name, "once").script("true"))
            .await;
        wait_for_run(&c, &a, &name).await;
        println!(
            "{reason}: namespace A still decides, run started after {:?}",
            started.elapsed()
        );
    }
    // Metrics by policy digest: the looping module's timeouts, and namespace A's calls.
    let (code, metrics) = op.http_get("/metrics").await;
    assert_eq!(code, 200);
    let loop_digest = digest(&component("loop-forever"));
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("quarks_job_policy_errors_total{")
                && l.contains("code=\"PolicyTimeout\"")
                && l.contains(&format!("policy=\"{loop_digest}\""))),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("quarks_job_policy_call_seconds_count{")
                && l.contains("world=\"trigger\"")),
        "{metrics}"
    );
    select_policies(&c, &hostile, &[("trigger", "no-scheme")]).await;
    wait_for_reason(&c, &hostile, "victim", "PolicySelectionInvalid").await;

    assert_eq!(run_count(&c, &hostile, "victim").await, 0);
    assert_eq!(
        jobs_in(&c, &hostile).await.len(),
        0,
        "failed closed: no Job"
    );
    let strategy = c
        .qjobs_in(&hostile)
        .get("victim")
        .await
        .unwrap()
        .spec
        .trigger
        .strategy;
    assert_eq!(strategy.as_str(), "once", "nothing written back");

    // Fixing the selection lets it run.
    select_policies(&c, &hostile, &[]).await;
    wait_for_run(&c, &hostile, "victim").await;
    assert!(
        !op.log().contains("panicked"),
        "the operator survived every module"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_output_policy_writes_its_secrets() {
    let c = Cluster::start().await;
    let ns = c.namespace.clone();
    // From the catalog in the operator's namespace.
    let catalog = format!("{ns}-catalog");
    c.create_namespace(&catalog, None).await;
    put_module(&c, &catalog, "dotenv", component("dotenv-output")).await;
    select_policies(&c, &ns, &[("output", "catalog:dotenv/policy.wasm")]).await;
    let _op = c
        .operator_with(&c.monitored_id, &["--operator-namespace", &catalog])
        .await;
    let script = r#"echo '{"foo": "1", "bar": "baz"}' > /mnt/quarks/output.json"#;
    c.create_qjob(&output_qjob("dotenv", script, false)).await;
    let secret = wait_secret(&c, "foo-json").await;
    let data = secret.data.unwrap_or_default();
    assert_eq!(data.get("foo").map(|v| v.0.as_slice()), Some(&b"1"[..]));
    assert_eq!(
        data.get(".env")
            .map(|v| String::from_utf8_lossy(&v.0).into_owned()),
        Some("FOO=\"1\"\nBAR=\"baz\"\n".to_owned())
    );
    // Status names the output policy once the output is recorded (just after the write).
    let expected = digest(&component("dotenv-output"));
    wait_for("status.policies.output", || async {
        let status = c.qjobs().get("dotenv").await.unwrap().status;
        status.and_then(|s| s.policies).and_then(|p| p.output) == Some(expected.clone())
    })
    .await;
}
