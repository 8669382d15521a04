//! Jobs of the real Job controller run on `kubesim node`; their logs come back through the
//! real API server; the Node stays Ready with a renewed Lease; deletions finish.

use std::time::Duration;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams};
use serde_json::json;

use super::harness::{ControlPlane, NodeProcess, exit_code, namespace, wait_for, wait_ready};

fn job(name: &str, script: &str) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script]}]}}}
    }))
    .expect("job")
}

/// Waits for the Job's `Complete` or `Failed` condition; returns its type.
async fn job_outcome(jobs: &Api<Job>, name: &str) -> String {
    wait_for(
        &format!("job {name} to finish"),
        Duration::from_secs(90),
        || async {
            let j = jobs.get(name).await.ok()?;
            j.status?
                .conditions?
                .into_iter()
                .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
                .map(|c| c.type_)
        },
    )
    .await
}

async fn job_pod(pods: &Api<Pod>, job: &str) -> Pod {
    let lp = ListParams::default().labels(&format!("job-name={job}"));
    wait_for(
        &format!("pod of job {job}"),
        Duration::from_secs(30),
        || async { pods.list(&lp).await.ok()?.items.into_iter().next() },
    )
    .await
}

async fn renew_time(leases: &Api<Lease>, name: &str) -> Option<String> {
    let lease = leases.get_opt(name).await.ok()??;
    let t = lease.spec?.renew_time?;
    Some(t.0.to_string())
}

#[tokio::test]
async fn real_jobs_run_and_their_logs_come_through_the_api_server() {
    let Some(cp) = ControlPlane::start() else {
        return;
    };
    let mut node = NodeProcess::start(&cp, "kubesim-node", &[]);
    let client = cp.client().await;
    let ns = "jobs";
    namespace(&client, ns).await;
    let registered = wait_ready(&client, &node.name, ns).await;
    let status = registered.status.clone().expect("node status");
    assert!(
        status
            .addresses
            .iter()
            .flatten()
            .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"),
        "{status:?}"
    );
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .expect("kubelet endpoint");
    assert!(port > 0);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first_renewal = renew_time(&leases, &node.name).await.expect("lease");

    // A failing Job: the real Job controller sees the pod fail with the exit code.
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    jobs.create(&Default::default(), &job("fails", "echo hi; exit 3"))
        .await
        .expect("create job");
    jobs.create(
        &Default::default(),
        &job("succeeds", "echo one; echo two; echo three"),
    )
    .await
    .expect("create job");
    assert_eq!(job_outcome(&jobs, "fails").await, "Failed");
    assert_eq!(job_outcome(&jobs, "succeeds").await, "Complete");
    let failed = job_pod(&pods, "fails").await;
    assert_eq!(
        failed.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed")
    );
    assert_eq!(exit_code(&failed), Some(3));
    let failed_name = failed.metadata.name.clone().expect("name");
    assert_eq!(
        failed.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("kubesim-node")
    );

    // Logs through the real API server: kubectl and the pods/log API.
    assert_eq!(cp.kubectl(&["logs", "-n", ns, &failed_name]), "hi\n");
    let ok_name = job_pod(&pods, "succeeds")
        .await
        .metadata
        .name
        .expect("name");
    let tail = LogParams {
        tail_lines: Some(2),
        ..Default::default()
    };
    assert_eq!(
        pods.logs(&ok_name, &tail).await.expect("logs"),
        "two\nthree\n"
    );
    let missing = pods
        .logs(
            &ok_name,
            &LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await;
    assert!(missing.is_err(), "{missing:?}");

    // Following a running container's log ends when it exits.
    let ticker: Pod = serde_json::from_value(json!({
        "metadata": {"name": "ticker"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox",
            "command": ["sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 1; done"]}]}
    }))
    .expect("pod");
    pods.create(&Default::default(), &ticker)
        .await
        .expect("create ticker");
    wait_for("ticker running", Duration::from_secs(30), || async {
        let p = pods.get("ticker").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let follow = LogParams {
        follow: true,
        ..Default::default()
    };
    let stream = pods.log_stream("ticker", &follow).await.expect("follow");
    let lines: Vec<String> = tokio::time::timeout(
        Duration::from_secs(30),
        stream.lines().try_collect::<Vec<String>>(),
    )
    .await
    .expect("follow ends when the container exits")
    .expect("read");
    assert_eq!(lines, ["tick 1", "tick 2", "tick 3"]);

    // Deleting a running pod: SIGTERM, then the kubelet's final delete removes it.
    let sleeper: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "300"]}]}
    }))
    .expect("pod");
    pods.create(&Default::default(), &sleeper)
        .await
        .expect("create sleeper");
    wait_for("sleeper running", Duration::from_secs(30), || async {
        let p = pods.get("sleeper").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let dp = DeleteParams {
        grace_period_seconds: Some(5),
        ..Default::default()
    };
    pods.delete("sleeper", &dp).await.expect("delete");
    wait_for("sleeper removed", Duration::from_secs(20), || async {
        pods.get_opt("sleeper")
            .await
            .ok()
            .and_then(|p| p.is_none().then_some(()))
    })
    .await;

    // The Lease is renewed about every 10 s.
    wait_for("lease renewal", Duration::from_secs(30), || async {
        let now = renew_time(&leases, &node.name).await?;
        (now != first_renewal).then_some(())
    })
    .await;

    // SIGTERM: the node exits cleanly and removes the Node it created.
    let exit = node.terminate();
    assert!(exit.success(), "{exit}");
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("node removed", Duration::from_secs(20), || async {
        nodes
            .get_opt("kubesim-node")
            .await
            .ok()
            .and_then(|n| n.is_none().then_some(()))
    })
    .await;
}
