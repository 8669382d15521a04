//! list: label and field selectors, paging, all namespaces.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use super::common::{Cluster, api_err, raw};

// Real namespaces start with objects of their own (ConfigMap kube-root-ca.crt; on 1.24 the
// default service account's token Secret): the tests label theirs and list by that label.
const OURS: &str = "set=ours";

#[tokio::test]
async fn label_selectors() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.ns);
    for (n, labels) in [
        ("a", json!({"set": "ours", "app": "web", "tier": "front"})),
        ("b", json!({"set": "ours", "app": "db"})),
        ("c", json!({"set": "ours"})),
    ] {
        let c: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": n, "labels": labels}})).expect("cm");
        api.create(&PostParams::default(), &c)
            .await
            .expect("create");
    }
    let names = |sel: &'static str| {
        let api = api.clone();
        async move {
            let l = api
                .list(&ListParams::default().labels(&format!("{OURS},{sel}")))
                .await
                .expect(sel);
            l.items
                .into_iter()
                .filter_map(|c| c.metadata.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=web").await, ["a"]);
    assert_eq!(names("app==web").await, ["a"]);
    assert_eq!(names("app!=web").await, ["b", "c"]);
    assert_eq!(names("app in (web,db)").await, ["a", "b"]);
    assert_eq!(names("app notin (web)").await, ["b", "c"]);
    assert_eq!(names("tier").await, ["a"]);
    assert_eq!(names("!app").await, ["c"]);
    let err = api_err(
        api.list(&ListParams::default().labels("a b c"))
            .await
            .expect_err("bad selector"),
    );
    assert_eq!(err.code, 400);
    c.stop().await;
}

#[tokio::test]
async fn field_selectors_and_all_namespaces() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let n1 = c.namespace("n1").await;
    let n2 = c.namespace("n2").await;
    // All-namespace lists see every test's objects on a shared cluster: select this test's.
    let run = format!("run={}", c.ns);
    let labels = json!({"run": c.ns});
    for ns in [&n1, &n2] {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let s: Secret = serde_json::from_value(json!({"metadata": {"name": "s", "labels": labels}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})).expect("s");
        api.create(&PostParams::default(), &s)
            .await
            .expect("create");
        let o: Secret =
            serde_json::from_value(json!({"metadata": {"name": "o", "labels": labels}}))
                .expect("o");
        api.create(&PostParams::default(), &o)
            .await
            .expect("create");
    }
    let all: Api<Secret> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default().labels(&run))
            .await
            .expect("list")
            .items
            .len(),
        4
    );
    let tls = all
        .list(
            &ListParams::default()
                .labels(&run)
                .fields("type=kubernetes.io/tls"),
        )
        .await
        .expect("type");
    assert_eq!(tls.items.len(), 2);
    let in_n1 = all
        .list(&ListParams::default().fields(&format!("metadata.namespace={n1},metadata.name=o")))
        .await
        .expect("ns+name");
    assert_eq!(in_n1.items.len(), 1);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &n1);
    // Bound to a node nobody runs, so that it stays Pending on a shared cluster too (where a
    // `kubesim node` named kubesim-node binds and runs unscheduled pods).
    let nowhere = format!("nowhere-{n1}");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"nodeName": nowhere, "containers": [{"name": "c", "image": "i"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &p).await.expect("pod");
    let count = |selector: String| {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().fields(&selector))
                .await
                .expect("list pods")
                .items
                .len()
        }
    };
    assert_eq!(count("status.phase=Pending".into()).await, 1);
    assert_eq!(count(format!("spec.nodeName={nowhere}")).await, 1);
    assert_eq!(count("spec.nodeName=kubesim-node".into()).await, 0);
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/configmaps?fieldSelector=data.x%3Dy",
        None,
        None,
    )
    .await;
    assert_eq!(code, 400, "unsupported field label");
    c.stop().await;
}

#[tokio::test]
async fn paging_with_limit_and_continue() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.ns);
    for i in 0..7 {
        let c: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("c{i}"), "labels": {"set": "ours"}}}),
        )
        .expect("cm");
        api.create(&PostParams::default(), &c)
            .await
            .expect("create");
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().labels(OURS).limit(3);
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let page = api.list(&lp).await.expect("page");
        pages += 1;
        first_rv.get_or_insert(page.metadata.resource_version.clone());
        assert_eq!(
            first_rv.clone().flatten(),
            page.metadata.resource_version,
            "pages share the list's resourceVersion"
        );
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    let (code, _) = raw(
        &client,
        "GET",
        &format!(
            "/api/v1/namespaces/{}/configmaps?limit=2&continue=garbage",
            c.ns
        ),
        None,
        None,
    )
    .await;
    assert_eq!(code, 400);
    c.stop().await;
}

#[tokio::test]
async fn exact_lists_and_pages_are_snapshots() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.ns);
    for i in 0..4 {
        let c: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("s{i}"), "labels": {"set": "ours"}}, "data": {"v": "old"}}),
        )
        .expect("cm");
        api.create(&PostParams::default(), &c)
            .await
            .expect("create");
    }
    let first = api
        .list(&ListParams::default().labels(OURS).limit(2))
        .await
        .expect("page 1");
    let rv = first.metadata.resource_version.clone().expect("rv");
    // Changes after the first page: the next page still shows the list's version.
    api.delete("s3", &Default::default()).await.expect("delete");
    let p = json!({"data": {"v": "new"}});
    api.patch(
        "s2",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&p),
    )
    .await
    .expect("patch");
    let s9: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "s9", "labels": {"set": "ours"}}}))
            .expect("cm");
    api.create(&PostParams::default(), &s9)
        .await
        .expect("create");
    let token = first.metadata.continue_.clone().expect("continue");
    let second = api
        .list(
            &ListParams::default()
                .labels(OURS)
                .limit(10)
                .continue_token(&token),
        )
        .await
        .expect("page 2");
    let names: Vec<String> = second
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(names, ["s2", "s3"]);
    assert_eq!(
        second.items[0]
            .data
            .as_ref()
            .and_then(|d| d.get("v"))
            .map(String::as_str),
        Some("old")
    );
    let (code, exact) = raw(
        &client,
        "GET",
        &format!(
            "/api/v1/namespaces/{}/configmaps?labelSelector={OURS}&resourceVersion={rv}&resourceVersionMatch=Exact",
            c.ns
        ),
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(exact["items"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        exact["metadata"]["resourceVersion"].as_str(),
        Some(rv.as_str())
    );
    let now = api
        .list(&ListParams::default().labels(OURS))
        .await
        .expect("now");
    assert_eq!(now.items.len(), 4, "s0 s1 s2 s9");
    c.stop().await;
}
