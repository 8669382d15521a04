//! PATCH in all its types, server-side apply ownership, and the status subresource.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use super::common::{Cluster, api_err, raw};

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    use k8s_openapi::api::apps::v1::Deployment;
    let c = Cluster::start().await;
    let client = c.client.clone();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &c.ns);
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {
        "metadata": {"labels": {"app": "d"}}, "spec": {"containers": [
        {"name": "a", "image": "busybox", "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "image": "busybox"}]}}}})).expect("deployment");
    deploys
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let sm = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}}});
    let p = deploys
        .patch("d", &PatchParams::default(), &Patch::Strategic(&sm))
        .await
        .expect("strategic");
    let containers = p
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers;
    assert_eq!(containers.len(), 2, "merged by name, not replaced");
    assert_eq!(containers[0].env.as_ref().map(Vec::len), Some(2));
    assert_eq!(
        p.metadata.generation,
        Some(2),
        "a template change bumps generation"
    );
    let mp = json!({"metadata": {"labels": {"l": "v"}}});
    let p = deploys
        .patch("d", &PatchParams::default(), &Patch::Merge(&mp))
        .await
        .expect("merge");
    assert_eq!(
        p.metadata
            .labels
            .and_then(|l| l.get("l").cloned())
            .as_deref(),
        Some("v")
    );
    let jp: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/metadata/labels/l", "value": "w"}]),
    )
    .expect("jp");
    let p = deploys
        .patch("d", &PatchParams::default(), &Patch::Json::<()>(jp))
        .await
        .expect("json patch");
    assert_eq!(
        p.metadata
            .labels
            .and_then(|l| l.get("l").cloned())
            .as_deref(),
        Some("w")
    );
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/name", "value": "other"}]))
            .expect("jp");
    let err = api_err(
        deploys
            .patch("d", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await
            .expect_err("test op"),
    );
    assert_eq!(err.code, 422);
    let (code, _) = raw(
        &client,
        "PATCH",
        &format!("/apis/apps/v1/namespaces/{}/deployments/d", c.ns),
        Some("text/plain"),
        Some("{}"),
    )
    .await;
    assert_eq!(code, 415);
    c.stop().await;
}

#[tokio::test]
async fn server_side_apply_tracks_owners_and_conflicts() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.ns);
    let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "a", "only-a": "1"}});
    let made = api
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&a))
        .await
        .expect("apply creates");
    let mf = made
        .metadata
        .managed_fields
        .clone()
        .expect("managed fields");
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k": "b"}});
    let err = api_err(
        api.patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&b))
            .await
            .expect_err("conflict"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("alice"), "{}", err.message);
    let forced = api
        .patch("ssa", &PatchParams::apply("bob").force(), &Patch::Apply(&b))
        .await
        .expect("force");
    assert_eq!(
        forced
            .data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("b")
    );
    // alice stops applying only-a: it is removed, since nobody else owns it.
    let a2 =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let after = api
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&a2))
        .await
        .expect("apply");
    let data = after.data.unwrap_or_default();
    assert!(!data.contains_key("only-a"), "{data:?}");
    assert_eq!(
        data.get("k").map(String::as_str),
        Some("b"),
        "bob's field stays"
    );
    // An ordinary update takes ownership from the applier.
    let mp = json!({"data": {"k": "edited"}});
    api.patch(
        "ssa",
        &PatchParams {
            field_manager: Some("editor".into()),
            ..Default::default()
        },
        &Patch::Merge(&mp),
    )
    .await
    .expect("merge");
    let err = api_err(
        api.patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&b))
            .await
            .expect_err("editor owns k"),
    );
    assert!(err.message.contains("editor"), "{}", err.message);
    c.stop().await;
}

#[tokio::test]
async fn status_subresource_patches_with_apply_and_merge() {
    use k8s_openapi::api::batch::v1::CronJob;
    let c = Cluster::start().await;
    // A suspended CronJob: a real controller-manager leaves its status alone (a Job's it
    // rewrites at once).
    let api: Api<CronJob> = Api::namespaced(c.client.clone(), &c.ns);
    let cj: CronJob = serde_json::from_value(json!({"metadata": {"name": "st"}, "spec": {"schedule": "0 0 1 1 *", "suspend": true,
        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}))
    .expect("cronjob");
    let made = api
        .create(&PostParams::default(), &cj)
        .await
        .expect("create");
    let history = |cj: &CronJob| {
        cj.spec
            .as_ref()
            .and_then(|s| s.successful_jobs_history_limit)
    };
    let status_at = |cj: &CronJob, field: &str| {
        serde_json::to_value(&cj.status).expect("json")[field]
            .as_str()
            .map(String::from)
    };
    let st = json!({"apiVersion": "batch/v1", "kind": "CronJob", "status": {"lastScheduleTime": "2024-01-01T00:00:00Z"}});
    let out = api
        .patch_status("st", &PatchParams::apply("ctl").force(), &Patch::Apply(&st))
        .await
        .expect("apply status");
    assert_eq!(
        status_at(&out, "lastScheduleTime").as_deref(),
        Some("2024-01-01T00:00:00Z")
    );
    let mp = json!({"status": {"lastSuccessfulTime": "2024-01-02T00:00:00Z"}, "spec": {"successfulJobsHistoryLimit": 9}});
    let out = api
        .patch_status("st", &PatchParams::default(), &Patch::Merge(&mp))
        .await
        .expect("merge status");
    assert_eq!(
        status_at(&out, "lastSuccessfulTime").as_deref(),
        Some("2024-01-02T00:00:00Z")
    );
    assert_eq!(
        history(&out),
        history(&made),
        "spec changes via status are ignored"
    );
    assert_eq!(out.metadata.generation, Some(1));
    let sp = json!({"status": {"lastScheduleTime": "2030-01-01T00:00:00Z"}});
    let out = api
        .patch("st", &PatchParams::default(), &Patch::Merge(&sp))
        .await
        .expect("main patch");
    assert_eq!(
        status_at(&out, "lastScheduleTime").as_deref(),
        Some("2024-01-01T00:00:00Z"),
        "status changes via the main resource are ignored"
    );
    c.stop().await;
}
