//! Discovery documents and the resources kube clients discover.

use super::common::{Cluster, raw};

#[tokio::test]
async fn version_and_core_discovery() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let v = client.apiserver_version().await.expect("version");
    assert_eq!(v.major, "1");
    let (code, api) = raw(&client, "GET", "/api", None, None).await;
    assert_eq!(code, 200);
    assert_eq!(api["versions"][0], "v1");
    let (code, core) = raw(&client, "GET", "/api/v1", None, None).await;
    assert_eq!(code, 200);
    let names: Vec<&str> = core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for want in [
        "namespaces",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "pods",
        "pods/log",
        "pods/status",
        "events",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    c.stop().await;
}

#[tokio::test]
async fn group_discovery_lists_builtin_groups() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let (_, apis) = raw(&client, "GET", "/apis", None, None).await;
    let groups: Vec<&str> = apis["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    for g in [
        "batch",
        "apps",
        "coordination.k8s.io",
        "rbac.authorization.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
    ] {
        assert!(groups.contains(&g), "{g} missing");
        let (code, gv) = raw(&client, "GET", &format!("/apis/{g}/v1"), None, None).await;
        assert_eq!(code, 200, "{g}/v1");
        assert_eq!(gv["kind"], "APIResourceList");
    }
    let (_, batch) = raw(&client, "GET", "/apis/batch/v1", None, None).await;
    assert!(
        batch["resources"]
            .as_array()
            .expect("r")
            .iter()
            .any(|r| r["name"] == "jobs/status")
    );
    // An unknown group is not routed at all: a plain-text 404, not a Status.
    let (code, missing) = raw(&client, "GET", "/apis/nope.example.com/v1", None, None).await;
    assert_eq!(
        (code, missing.as_str()),
        (404, Some("404 page not found\n"))
    );
    let (code, missing) = raw(&client, "GET", "/apis/batch/v9", None, None).await;
    assert_eq!((code, missing["reason"].as_str()), (404, Some("NotFound")));
    // kube's discovery client understands the documents.
    let discovery = kube::Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert!(discovery.groups().any(|g| g.name() == "batch"));
    c.stop().await;
}

/// Aggregated discovery (apidiscovery.k8s.io/v2) is newer than Kubernetes 1.24.
#[tokio::test]
async fn kubesim_only_aggregated_discovery_when_asked() {
    let c = Cluster::kubesim().await;
    let client = c.client.clone();
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let (code, apis) =
        super::common::raw_with(&client, "GET", "/apis", None, Some(accept), None).await;
    assert_eq!(
        (code, apis["kind"].as_str()),
        (200, Some("APIGroupDiscoveryList"))
    );
    let batch = apis["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|g| g["metadata"]["name"] == "batch")
        .expect("batch");
    let jobs = batch["versions"][0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "jobs")
        .expect("jobs");
    assert_eq!(
        (
            jobs["scope"].as_str(),
            jobs["responseKind"]["kind"].as_str()
        ),
        (Some("Namespaced"), Some("Job"))
    );
    assert_eq!(jobs["subresources"][0]["subresource"], "status");
    let (_, core) = super::common::raw_with(&client, "GET", "/api", None, Some(accept), None).await;
    assert_eq!(core["items"][0]["metadata"]["name"], "");
    c.stop().await;
}
