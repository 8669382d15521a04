//! Finalizers, deletionTimestamp, ownerReference garbage collection in all three
//! propagation modes, and namespace deletion.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, Client};
use serde_json::json;

use super::common::{Cluster, eventually};

async fn exists(api: &Api<ConfigMap>, name: &str) -> bool {
    api.get_opt(name).await.expect("get").is_some()
}

/// An owner ConfigMap and a dependent ConfigMap that it owns.
async fn owner_and_dependent(client: &Client, ns: &str, block: bool) -> Api<ConfigMap> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let owner = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).expect("cm"),
        )
        .await
        .expect("owner");
    let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dep", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid, "blockOwnerDeletion": block, "controller": true}]}})).expect("dep");
    api.create(&PostParams::default(), &dep).await.expect("dep");
    api
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.ns);
    let fin: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "fin", "finalizers": ["example.com/hold"]}}),
    )
    .expect("cm");
    api.create(&PostParams::default(), &fin)
        .await
        .expect("create");
    api.delete("fin", &DeleteParams::default())
        .await
        .expect("delete");
    let held = api.get("fin").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    let add = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}});
    assert!(
        api.patch("fin", &PatchParams::default(), &Patch::Merge(&add))
            .await
            .is_err(),
        "no new finalizers while deleting"
    );
    let clear = json!({"metadata": {"finalizers": null}});
    api.patch("fin", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .expect("clear");
    assert!(
        !exists(&api, "fin").await,
        "gone once the last finalizer is removed"
    );
    c.stop().await;
}

#[tokio::test]
async fn background_deletion_collects_dependents() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api = owner_and_dependent(&client, &c.ns, false).await;
    api.delete("owner", &DeleteParams::background())
        .await
        .expect("delete");
    assert!(!exists(&api, "owner").await, "owner goes first");
    eventually("dependent collected", || async {
        !exists(&api, "dep").await
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api = owner_and_dependent(&client, &c.ns, true).await;
    // Hold the dependent so the owner visibly waits for it.
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    api.patch("dep", &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .expect("hold");
    api.delete("owner", &DeleteParams::foreground())
        .await
        .expect("delete");
    let owner = api.get("owner").await.expect("owner waits");
    assert!(
        owner
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_string())
    );
    eventually("dependent marked for deletion", || async {
        api.get("dep")
            .await
            .expect("dep")
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    assert!(exists(&api, "owner").await);
    let clear = json!({"metadata": {"finalizers": null}});
    api.patch("dep", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .expect("release");
    eventually("owner deleted after its dependent", || async {
        !exists(&api, "owner").await
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api = owner_and_dependent(&client, &c.ns, true).await;
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..Default::default()
    };
    api.delete("owner", &dp).await.expect("delete");
    eventually("owner deleted", || async { !exists(&api, "owner").await }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dep = api.get("dep").await.expect("dependent kept");
    assert!(
        dep.metadata.owner_references.unwrap_or_default().is_empty(),
        "owner reference removed"
    );
    c.stop().await;
}

#[tokio::test]
async fn namespace_deletion_removes_contents() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let doomed = c.namespace("doomed").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &doomed);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}})).expect("cm"),
    )
    .await
    .expect("c");
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete(&doomed, &DeleteParams::default())
        .await
        .expect("delete ns");
    eventually("namespace gone", || async {
        nss.get_opt(&doomed).await.expect("get").is_none()
    })
    .await;
    assert!(!exists(&api, "c").await);
    c.stop().await;
}
