//! The Job controller and kubelet together: Jobs through to Complete or Failed.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use serde_json::json;

use super::cluster::{job_condition, pod_phase, start, wait_for, wait_gone};

fn job(name: &str, restart: &str, backoff_limit: i32, script: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"labels": {"app": "test"}},
                "spec": {
                    "restartPolicy": restart,
                    "volumes": [{"name": "out", "emptyDir": {}}],
                    "containers": [{
                        "name": "main", "image": "busybox",
                        "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "out", "mountPath": "/mnt/quarks"}]
                    }]
                }
            }
        }
    })
}

#[tokio::test]
async fn a_job_writing_to_an_empty_dir_completes_and_its_pods_go_with_it() {
    let cluster = start("job-ok").await;
    let jobs = cluster.api::<Job>();
    cluster
        .create::<Job>(job(
            "writer",
            "Never",
            6,
            "echo written > /mnt/quarks/out && cat /mnt/quarks/out",
        ))
        .await;
    let done = wait_for(&jobs, "writer", "Complete", |j: &Job| {
        job_condition(j, "Complete").is_some()
    })
    .await;
    let status = done.status.clone().expect("status");
    assert_eq!(status.succeeded, Some(1));
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    assert!(job_condition(&done, "SuccessCriteriaMet").is_some());
    assert!(
        !std::path::Path::new("/mnt/quarks").exists(),
        "the host has no /mnt/quarks"
    );

    let pods = cluster.job_pods("writer").await;
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    let name = pod.metadata.name.clone().expect("name");
    assert!(name.starts_with("writer-"), "{name}");
    let labels = pod.metadata.labels.clone().expect("labels");
    assert_eq!(labels.get("job-name").map(String::as_str), Some("writer"));
    assert_eq!(labels.get("app").map(String::as_str), Some("test"));
    assert_eq!(pod_phase(pod), "Succeeded");
    let log = cluster.log(&name, None).await;
    assert_eq!(log, "written\n");

    cluster
        .api::<Job>()
        .delete("writer", &DeleteParams::background())
        .await
        .expect("delete job");
    wait_gone(&cluster.api::<Pod>(), &name).await;
}

#[tokio::test]
async fn a_failing_job_with_backoff_limit_1_fails_after_two_pods() {
    let cluster = start("job-fail").await;
    let jobs = cluster.api::<Job>();
    cluster
        .create::<Job>(job("failer", "Never", 1, "echo trying; exit 1"))
        .await;
    let failed = wait_for(&jobs, "failer", "Failed", |j: &Job| {
        job_condition(j, "Failed").is_some()
    })
    .await;
    let condition = job_condition(&failed, "Failed").expect("Failed");
    assert_eq!(condition.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(failed.status.as_ref().and_then(|s| s.failed), Some(2));
    let pods = cluster.job_pods("failer").await;
    assert_eq!(pods.len(), 2, "one pod per attempt");
    for pod in &pods {
        assert_eq!(pod_phase(pod), "Failed");
        let state = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .expect("statuses")[0]
            .state
            .clone()
            .and_then(|s| s.terminated)
            .expect("terminated");
        assert_eq!(
            (state.exit_code, state.reason.as_deref()),
            (1, Some("Error"))
        );
    }
}

#[tokio::test]
async fn on_failure_restarts_the_container_in_the_same_pod_until_the_limit() {
    let cluster = start("job-onfailure").await;
    let jobs = cluster.api::<Job>();
    let pods = cluster.api::<Pod>();
    cluster
        .create::<Job>(job("restarter", "OnFailure", 2, "exit 3"))
        .await;
    // While it runs, the one pod's container restarts.
    let restarted = loop {
        let found = cluster.job_pods("restarter").await;
        let restarts = found
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0);
        if restarts >= 1 {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(restarted.len(), 1, "OnFailure restarts in place");
    let failed = wait_for(&jobs, "restarter", "Failed", |j: &Job| {
        job_condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        job_condition(&failed, "Failed").and_then(|c| c.reason),
        Some("BackoffLimitExceeded".into())
    );
    // The controller removed the still-restarting pod.
    wait_gone(&pods, restarted[0].metadata.name.as_deref().expect("name")).await;
}

#[tokio::test]
async fn active_deadline_seconds_fails_a_job_that_runs_too_long() {
    let cluster = start("job-deadline").await;
    let jobs = cluster.api::<Job>();
    let mut spec = job("sleeper", "Never", 6, "sleep 300");
    spec["spec"]["activeDeadlineSeconds"] = json!(2);
    cluster.create::<Job>(spec).await;
    let failed = wait_for(&jobs, "sleeper", "Failed", |j: &Job| {
        job_condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        job_condition(&failed, "Failed").and_then(|c| c.reason),
        Some("DeadlineExceeded".into())
    );
    assert!(
        cluster
            .job_pods("sleeper")
            .await
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some() || pod_phase(p) != "Running")
    );
}

#[tokio::test]
async fn init_containers_run_first_and_share_volumes() {
    let cluster = start("job-init").await;
    let jobs = cluster.api::<Job>();
    cluster
        .create::<Job>(json!({
            "metadata": {"name": "init"},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "volumes": [{"name": "shared", "emptyDir": {}}],
                "initContainers": [
                    {"name": "first", "image": "busybox", "command": ["sh", "-c", "echo one > /work/order"],
                     "volumeMounts": [{"name": "shared", "mountPath": "/work"}]},
                    {"name": "second", "image": "busybox", "command": ["sh", "-c", "echo two >> /work/order"],
                     "volumeMounts": [{"name": "shared", "mountPath": "/work"}]}
                ],
                "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "cat /work/order"],
                                "volumeMounts": [{"name": "shared", "mountPath": "/work"}]}]
            }}}
        }))
        .await;
    wait_for(&jobs, "init", "Complete", |j: &Job| {
        job_condition(j, "Complete").is_some()
    })
    .await;
    let pod = cluster.job_pods("init").await.remove(0);
    let name = pod.metadata.name.clone().expect("name");
    let log = cluster.log(&name, Some("main")).await;
    assert_eq!(log, "one\ntwo\n");
    let inits = pod
        .status
        .and_then(|s| s.init_container_statuses)
        .expect("init statuses");
    assert!(inits.iter().all(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    }));
}

#[tokio::test]
async fn completions_run_with_bounded_parallelism() {
    let cluster = start("job-parallel").await;
    let jobs = cluster.api::<Job>();
    let mut spec = job("batch", "Never", 6, "sleep 0.2");
    spec["spec"]["completions"] = json!(3);
    spec["spec"]["parallelism"] = json!(2);
    cluster.create::<Job>(spec).await;
    // Never more than `parallelism` pods at once.
    let mut max_active = 0;
    let done = loop {
        let job = jobs.get("batch").await.expect("job");
        max_active = max_active.max(job.status.as_ref().and_then(|s| s.active).unwrap_or(0));
        if job_condition(&job, "Complete").is_some() {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(done.status.as_ref().and_then(|s| s.succeeded), Some(3));
    assert!(max_active <= 2, "{max_active}");
    assert_eq!(cluster.job_pods("batch").await.len(), 3);
}
