//! The reconcile pipeline as seen from the API: each reconcile writes status at most once, and
//! a Job the API server cannot be given is reported on the QuarksJob instead of only logged.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;

use crate::{
    Cluster, QJob, events_in, list_labelled, metric_sum, output_qjob, patch_qjob, wait_completed,
    wait_for, wait_for_reason, wait_secret, wait_status,
};

/// Waits for a Warning Event with `reason` in the test's namespace.
async fn wait_warning(c: &Cluster, reason: &str) {
    wait_for(&format!("a {reason} Warning Event"), || async {
        events_in(c, &c.namespace)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning"))
    })
    .await;
}

/// The operator stops after starting the run; meanwhile the pod hands its output over and the
/// Job succeeds. The restarted operator's first reconcile finds all of it at once: output to
/// write, a run to settle, a decision to record. Before the pipeline wrote status once per
/// reconcile, that took two status writes (output, then the settled run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubesim_only_a_reconcile_with_output_and_a_finished_job_writes_status_once() {
    let c = Cluster::start().await;
    let go = tempfile::tempdir().unwrap();
    let go_file = go.path().join("go");
    let script = format!(
        r#"while [ ! -e {} ]; do sleep 0.05; done; printf '%s' '{{"a": "b"}}' > /mnt/quarks/output.json"#,
        go_file.display()
    );
    let op = c.operator().await;
    c.create_qjob(&output_qjob("once-write", &script, false))
        .await;
    let jobs = c.api::<Job>();
    wait_for("the run's Job", || async {
        jobs.get_opt("once-write-1").await.unwrap().is_some()
    })
    .await;
    op.stop().await;

    std::fs::write(&go_file, b"").unwrap();
    wait_for("the Job to succeed with its output staged", || async {
        let complete = jobs
            .get("once-write-1")
            .await
            .unwrap()
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            });
        let staged: Vec<Secret> =
            list_labelled(&c, &c.namespace, "quarks.cloudfoundry.org/output-staging").await;
        complete && !staged.is_empty()
    })
    .await;

    let log_from = c.sim().request_log().len();
    let _op = c.operator().await;
    wait_secret(&c, "foo-json").await;
    wait_completed(&c, &c.namespace, "once-write", 1).await;
    wait_for("the succeeded Job to be deleted", || async {
        jobs.get_opt("once-write-1").await.unwrap().is_none()
    })
    .await;
    let status_writes: Vec<_> = c.sim().request_log()[log_from..]
        .iter()
        .filter(|r| r.resource == "quarksjobs" && r.subresource == "status" && r.verb == "patch")
        .cloned()
        .collect();
    assert_eq!(status_writes.len(), 1, "{status_writes:?}");
}

/// `template: {}` is valid for the schema but no Job: `Ready=False, JobInvalid` and a Warning
/// Event, no hot loop; fixing the template runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_is_no_job_is_reported_as_job_invalid_until_fixed() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let mut broken = QJob::new("broken", "once").script("true").manifest();
    broken["spec"]["template"] = serde_json::json!({});
    let broken: quarks_job::crd::QuarksJob = serde_json::from_value(broken).unwrap();
    c.qjobs()
        .create(&Default::default(), &broken)
        .await
        .unwrap();
    let message = wait_for_reason(&c, &c.namespace, "broken", "JobInvalid").await;
    assert!(message.contains("spec.template.spec"), "{message}");
    wait_warning(&c, "JobInvalid").await;

    let fixed = QJob::new("broken", "once").script("true").manifest();
    let patch = serde_json::json!({"spec": {"template": fixed["spec"]["template"]}});
    patch_qjob(&c, &c.namespace, "broken", patch).await;
    wait_completed(&c, &c.namespace, "broken", 1).await;
}

/// A pod spec the API server refuses (here an invalid container name): `Ready=False,
/// JobRefused` with the API server's message and a Warning Event, retried with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_api_server_refuses_is_reported_as_job_refused() {
    let c = Cluster::start().await;
    let op = c.operator().await;
    let mut refused = QJob::new("refused", "once").script("true").manifest();
    refused["spec"]["template"]["spec"]["template"]["spec"]["containers"][0]["name"] =
        serde_json::json!("Not_A_Valid_Name");
    let refused: quarks_job::crd::QuarksJob = serde_json::from_value(refused).unwrap();
    c.qjobs()
        .create(&Default::default(), &refused)
        .await
        .unwrap();
    let message = wait_for_reason(&c, &c.namespace, "refused", "JobRefused").await;
    assert!(message.contains("refused Job refused-1"), "{message}");
    wait_warning(&c, "JobRefused").await;
    let status = crate::qjob_status(&c, &c.namespace, "refused").await;
    assert_eq!(status.run_count, 0, "no run was recorded");
    // Backoff, not a hot loop: a handful of attempts in two seconds.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let errors = op.metric("controller_runtime_reconcile_errors_total").await;
    assert!(
        (1.0..=8.0).contains(&errors),
        "{errors} failed reconciles in ~2 s"
    );
}

/// The run counters follow the Events of the runs: one started and succeeded, one started and
/// failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_counters_count_started_succeeded_and_failed_runs() {
    let c = Cluster::start().await;
    let op = c.operator().await;
    c.create_qjob(&QJob::new("good", "once").script("true"))
        .await;
    c.create_qjob(&QJob::new("bad", "once").script("exit 3").backoff_limit(0))
        .await;
    wait_completed(&c, &c.namespace, "good", 1).await;
    wait_status(&c, &c.namespace, "bad", "run 1 failed", |s| {
        s.run_count == 1 && s.last_failure.is_some()
    })
    .await;
    let (_, metrics) = op.http_get("/metrics").await;
    for (counter, runs) in [
        ("quarks_job_runs_started_total", 2.0),
        ("quarks_job_runs_succeeded_total", 1.0),
        ("quarks_job_runs_failed_total", 1.0),
    ] {
        assert_eq!(metric_sum(&metrics, counter), runs, "{counter}: {metrics}");
    }
}

/// The operator's own writes come back as watch events: the status it records for a new
/// `manual` QuarksJob; the Job, the strategy (`once` → `done`) and the status of a one-off's
/// run. They update its caches but start no reconcile. Counted over many QuarksJobs, because an
/// event that arrives before its write's response has been read is not known as an echo yet
/// and reconciles once more (harmlessly): measured here 1.2–1.6 reconciles per QuarksJob with
/// the echoes dropped, 2.2 without. kubesim only: without Job controller and kubelet, so that
/// the Jobs never change after their creation (each change of a Job is a reconcile of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubesim_only_the_operators_own_writes_reconcile_nothing_again() {
    const EACH: usize = 12;
    let c = Cluster::start_with(kubesim::KubeSimOptions {
        run_kubelet: false,
        ..Default::default()
    })
    .await;
    let op = c.operator().await;
    wait_for("the test namespace watched", || async {
        op.metric("quarks_job_namespaces_watched").await >= 1.0
    })
    .await;
    let before = op.metric("controller_runtime_reconcile_total").await;
    for i in 0..EACH {
        c.create_qjob(&QJob::new(&format!("errand-{i}"), "manual").script("true"))
            .await;
        c.create_qjob(&QJob::new(&format!("once-{i}"), "once").script("true"))
            .await;
    }
    for i in 0..EACH {
        wait_status(&c, &c.namespace, &format!("errand-{i}"), "recorded", |s| {
            s.observed_generation.is_some()
        })
        .await;
        // Generation 2: after the strategy write.
        wait_status(
            &c,
            &c.namespace,
            &format!("once-{i}"),
            "run 1 started",
            |s| s.run_count == 1 && s.observed_generation.is_some_and(|g| g >= 2),
        )
        .await;
    }
    // The echoes of the last writes, and any reconcile they would start.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let reconciles = op.metric("controller_runtime_reconcile_total").await - before;
    let qjobs = (2 * EACH) as f64;
    assert!(
        (qjobs..=1.75 * qjobs).contains(&reconciles),
        "{reconciles} reconciles of {qjobs} QuarksJobs"
    );
}
