//! Fault injection and the request log (kubesim only).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use super::common::{api_err, sim};

#[tokio::test]
async fn kubesim_only_fail_next_requests_then_recover() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    sim.faults().fail_next("create", "configmaps", 500, 1);
    let c: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "f"}})).expect("cm");
    let e = api_err(
        api.create(&PostParams::default(), &c)
            .await
            .expect_err("injected"),
    );
    assert_eq!(e.code, 500);
    // 503 is retried by kube's client: two injected failures, then the create succeeds.
    sim.faults().fail_next("create", "configmaps", 503, 2);
    api.create(&PostParams::default(), &c)
        .await
        .expect("retried until the faults are used up");
    let codes: Vec<u16> = sim
        .request_log()
        .iter()
        .filter(|r| r.verb == "create" && r.resource == "configmaps")
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [500, 503, 503, 201]);
    sim.faults().fail_next("get", "*", 409, 1);
    assert_eq!(api_err(api.get("f").await.expect_err("409")).code, 409);
    sim.faults().fail_next("*", "configmaps", 500, 1);
    assert_eq!(
        api_err(api.list(&ListParams::default()).await.expect_err("500")).code,
        500
    );
    api.get("f").await.expect("recovered");
    sim.stop().await;
}

#[tokio::test]
async fn kubesim_only_latency_is_added() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    sim.faults().set_latency(Duration::from_millis(200));
    let t = Instant::now();
    api.list(&ListParams::default()).await.expect("list");
    assert!(t.elapsed() >= Duration::from_millis(200));
    sim.faults().reset();
    sim.stop().await;
}

#[tokio::test]
async fn kubesim_only_request_log_records_user_and_verb() {
    let (sim, client) = sim().await;
    let sa = sim
        .service_account_client("default", "robot")
        .await
        .expect("sa client");
    let api: Api<ConfigMap> = Api::namespaced(sa, "default");
    let _ = api.get("missing").await;
    let _ = Api::<ConfigMap>::namespaced(client, "default")
        .list(&ListParams::default())
        .await;
    let log = sim.request_log();
    let rec = log
        .iter()
        .find(|r| r.user == "system:serviceaccount:default:robot")
        .expect("sa request");
    assert_eq!(
        (
            rec.verb.as_str(),
            rec.resource.as_str(),
            rec.name.as_str(),
            rec.code
        ),
        ("get", "configmaps", "missing", 404)
    );
    assert!(
        log.iter()
            .any(|r| r.user == "kubesim:admin" && r.verb == "list" && r.namespace == "default")
    );
    sim.stop().await;
}

#[tokio::test]
async fn kubesim_only_faults_can_target_a_subresource() {
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::{Patch, PatchParams};
    let (sim, client) = sim().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let j: Job = serde_json::from_value(json!({"metadata": {"name": "t"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}})).expect("job");
    jobs.create(&PostParams::default(), &j).await.expect("job");
    sim.faults().fail_next("patch", "jobs/status", 500, 1);
    let p = json!({"metadata": {"labels": {"a": "b"}}});
    jobs.patch("t", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .expect("main resource unaffected");
    let s = json!({"status": {"active": 1}});
    assert_eq!(
        api_err(
            jobs.patch_status("t", &PatchParams::default(), &Patch::Merge(&s))
                .await
                .expect_err("status fails")
        )
        .code,
        500
    );
    jobs.patch_status("t", &PatchParams::default(), &Patch::Merge(&s))
        .await
        .expect("then succeeds");
    sim.stop().await;
}
