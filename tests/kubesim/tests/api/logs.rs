//! pods/log served from the kubelet's log files: container selection, tailLines, follow.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{LogParams, Patch, PatchParams, PostParams};
use kubesim::kubelet::logs::container_log_path;
use serde_json::json;

use super::common::{api_err, sim};

#[tokio::test]
async fn kubesim_only_logs_by_container_tail_and_follow() {
    let (sim, client) = sim().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "lp"}, "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}})).expect("pod");
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create");
    let path = container_log_path(sim.state_dir(), "default", "lp", "a");
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(&path, "one\ntwo\nthree\n").expect("write");
    let running = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}}]}});
    pods.patch_status("lp", &PatchParams::default(), &Patch::Merge(&running))
        .await
        .expect("status");
    let err = api_err(
        pods.logs("lp", &LogParams::default())
            .await
            .expect_err("two containers"),
    );
    assert_eq!(err.code, 400);
    let all = pods
        .logs(
            "lp",
            &LogParams {
                container: Some("a".into()),
                ..Default::default()
            },
        )
        .await
        .expect("logs");
    assert_eq!(all, "one\ntwo\nthree\n");
    let tail = pods
        .logs(
            "lp",
            &LogParams {
                container: Some("a".into()),
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("tail");
    assert_eq!(tail, "three\n");
    let stream = pods
        .log_stream(
            "lp",
            &LogParams {
                container: Some("a".into()),
                follow: true,
                ..Default::default()
            },
        )
        .await
        .expect("follow");
    let mut lines = stream.lines();
    for want in ["one", "two", "three"] {
        assert_eq!(
            StreamExt::next(&mut lines).await.map(|l| l.expect("line")),
            Some(want.to_string())
        );
    }
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open")
        .write_all(b"four\n")
        .expect("append");
    let next = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut lines))
        .await
        .expect("follow delivers new lines");
    assert_eq!(next.map(|l| l.expect("line")), Some("four".to_string()));
    let done = json!({"status": {"phase": "Succeeded", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 0}}}]}});
    pods.patch_status("lp", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .expect("status");
    let end = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut lines))
        .await
        .expect("follow ends when the container terminates");
    assert!(end.is_none());
    sim.stop().await;
}
