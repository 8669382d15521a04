//! The kubelet and Job controller under injected API faults: failed writes are retried,
//! closed watches are re-established, and workloads still finish.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::cluster::{finished_with_log, job_condition, pod_phase, shell_pod, start, wait_for};

#[tokio::test]
async fn failed_pod_status_writes_are_retried() {
    let cluster = start("fault-status").await;
    cluster
        .create::<Pod>(shell_pod("resilient", "sleep 1; echo ok"))
        .await;
    let pods = cluster.api::<Pod>();
    wait_for(&pods, "resilient", "Running", |p: &Pod| {
        pod_phase(p) == "Running"
    })
    .await;
    // The writes that report the exit fail at first; without retries the pod would stay
    // Running forever.
    cluster.faults().fail_next("patch", "pods", 500, 3);
    let (pod, log) = finished_with_log(&cluster, "resilient").await;
    assert_eq!((pod_phase(&pod), log.as_str()), ("Succeeded", "ok\n"));
}

#[tokio::test]
async fn a_job_completes_despite_failed_pod_creates_and_closed_watches() {
    let cluster = start("fault-job").await;
    let faults = cluster.faults();
    faults.fail_next("create", "pods", 503, 2);
    cluster
        .create::<Job>(json!({
            "metadata": {"name": "stubborn"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "sleep 0.3"]}]}}}
        }))
        .await;
    let jobs = cluster.api::<Job>();
    wait_for(&jobs, "stubborn", "running", |j: &Job| {
        j.status.as_ref().and_then(|s| s.active) == Some(1)
    })
    .await;
    faults.close_watches();
    let done = wait_for(&jobs, "stubborn", "Complete", |j: &Job| {
        job_condition(j, "Complete").is_some()
    })
    .await;
    assert_eq!(done.status.and_then(|s| s.succeeded), Some(1));
    assert_eq!(
        cluster.job_pods("stubborn").await.len(),
        1,
        "no duplicate pods"
    );
}
