//! CustomResourceDefinitions: served resources, discovery, status subresource, structural
//! schema pruning/defaulting/validation, printer columns in Tables, big schemas, removal.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::common::{Cluster, TEST_LABEL, api_err, eventually, raw, raw_with};

/// This test's API group: CRDs are cluster-scoped, so each test has its own.
fn group(c: &Cluster) -> String {
    format!("{}.example.com", c.name("g"))
}

fn crd_name(c: &Cluster) -> String {
    format!("widgets.{}", group(c))
}

fn widget_crd(c: &Cluster, scope: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": crd_name(c), "labels": {TEST_LABEL: "true"}},
        "spec": {
            "group": group(c),
            "scope": scope,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["color"], "properties": {
                        "color": {"type": "string"},
                        "size": {"type": "integer", "default": 3},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
                }}}
            }]
        }
    }))
    .expect("crd")
}

/// Creates `crd` (deleted again when the test ends) and waits until its resource is
/// served: a real API server establishes a CRD and starts serving it asynchronously.
async fn install(c: &Cluster, crd: &CustomResourceDefinition) -> CustomResourceDefinition {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    crds.create(&PostParams::default(), crd)
        .await
        .expect("create crd");
    let name = crd.metadata.name.clone().expect("name");
    c.delete_on_stop(&format!(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    ));
    let path = format!("/apis/{}/v1/widgets", crd.spec.group);
    eventually("the custom resource served", || async {
        raw(&c.client, "GET", &path, None, None).await.0 == 200
    })
    .await;
    crds.get(&name).await.expect("get crd")
}

fn widgets(c: &Cluster, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group(c), "v1", "Widget"),
        "widgets",
    );
    match ns {
        Some(n) => Api::namespaced_with(c.client.clone(), n, &ar),
        None => Api::all_with(c.client.clone(), &ar),
    }
}

fn widget(c: &Cluster, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": format!("{}/v1", group(c)), "kind": "Widget", "metadata": {"name": name}, "spec": spec})).expect("widget")
}

#[tokio::test]
async fn crd_becomes_a_served_resource() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let made = install(&c, &widget_crd(&c, "Namespaced")).await;
    let conds = made.status.and_then(|s| s.conditions).unwrap_or_default();
    for t in ["NamesAccepted", "Established"] {
        assert!(
            conds.iter().any(|c| c.type_ == t && c.status == "True"),
            "{t}"
        );
    }
    let (code, gv) = raw(
        &client,
        "GET",
        &format!("/apis/{}/v1", group(&c)),
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    let r = gv["resources"]
        .as_array()
        .expect("r")
        .iter()
        .find(|r| r["name"] == "widgets")
        .cloned()
        .expect("widgets");
    assert_eq!(
        (r["namespaced"].as_bool(), r["shortNames"][0].as_str()),
        (Some(true), Some("wd"))
    );
    let api = widgets(&c, Some(&c.ns));
    let w = api
        .create(
            &PostParams::default(),
            &widget(
                &c,
                "w1",
                json!({"color": "red", "junk": 1, "extra": {"free": {"x": 1}}}),
            ),
        )
        .await
        .expect("create widget");
    assert_eq!(w.data["spec"]["size"], 3, "defaulted");
    assert!(w.data["spec"].get("junk").is_none(), "pruned");
    assert_eq!(w.data["spec"]["extra"]["free"]["x"], 1, "preserved");
    assert_eq!(w.metadata.generation, Some(1));
    let err = api_err(
        api.create(
            &PostParams::default(),
            &widget(&c, "w2", json!({"size": "big"})),
        )
        .await
        .expect_err("invalid"),
    );
    assert_eq!(err.code, 422);
    let fields: Vec<String> = err
        .details
        .map(|d| d.causes.into_iter().map(|c| c.field).collect())
        .unwrap_or_default();
    assert!(
        fields.contains(&"spec.color".to_string()) && fields.contains(&"spec.size".to_string()),
        "{fields:?}"
    );
    let st = json!({"apiVersion": format!("{}/v1", group(&c)), "kind": "Widget", "status": {"ready": true}});
    let s = api
        .patch_status("w1", &PatchParams::apply("ctl").force(), &Patch::Apply(&st))
        .await
        .expect("status apply");
    assert_eq!(s.data["status"]["ready"], true);
    assert_eq!(
        s.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    let sp = json!({"spec": {"size": 5}});
    let s = api
        .patch("w1", &PatchParams::default(), &Patch::Merge(&sp))
        .await
        .expect("spec patch");
    assert_eq!(s.metadata.generation, Some(2));
    let (code, _) = raw(
        &client,
        "PATCH",
        &format!("/apis/{}/v1/namespaces/{}/widgets/w1", group(&c), c.ns),
        Some("application/strategic-merge-patch+json"),
        Some("{}"),
    )
    .await;
    assert_eq!(code, 415, "no strategic merge for custom resources");
    let (code, table) = raw_with(
        &client,
        "GET",
        &format!("/apis/{}/v1/namespaces/{}/widgets", group(&c), c.ns),
        None,
        Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
        None,
    )
    .await;
    assert_eq!((code, table["kind"].as_str()), (200, Some("Table")));
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        cols,
        ["Name", "Size"],
        "Age only when no columns are declared"
    );
    assert_eq!(table["rows"][0]["cells"][1], 5);
    crds.delete(&crd_name(&c), &Default::default())
        .await
        .expect("delete crd");
    // A real API server first deletes the custom objects, then stops serving the resource.
    let path = format!("/apis/{}/v1/namespaces/{}/widgets", group(&c), c.ns);
    eventually("the resource no longer served", || async {
        raw(&client, "GET", &path, None, None).await.0 == 404
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn cluster_scoped_crd_and_invalid_crd() {
    let c = Cluster::start().await;
    let client = c.client.clone();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    install(&c, &widget_crd(&c, "Cluster")).await;
    let api = widgets(&c, None);
    api.create(
        &PostParams::default(),
        &widget(&c, "c1", json!({"color": "blue"})),
    )
    .await
    .expect("cluster widget");
    assert_eq!(api.get("c1").await.expect("get").metadata.namespace, None);
    let mut bad = widget_crd(&c, "Namespaced");
    bad.metadata.name = Some(format!("wrong.{}", group(&c)));
    assert_eq!(
        api_err(
            crds.create(&PostParams::default(), &bad)
                .await
                .expect_err("name must match")
        )
        .code,
        422
    );
    c.stop().await;
}

#[tokio::test]
async fn large_crd_is_accepted() {
    let c = Cluster::start().await;
    // A schema of several hundred KB, like one embedding a full JobTemplateSpec.
    let mut props = serde_json::Map::new();
    for i in 0..3000 {
        props.insert(format!("field{i}"), json!({"type": "object", "description": "x".repeat(100), "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}));
    }
    let mut crd = widget_crd(&c, "Namespaced");
    let mut v = serde_json::to_value(&crd).expect("json");
    v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["big"] =
        json!({"type": "object", "properties": props});
    assert!(v.to_string().len() > 400_000);
    crd = serde_json::from_value(v).expect("crd");
    install(&c, &crd).await;
    let w = widgets(&c, Some(&c.ns))
        .create(
            &PostParams::default(),
            &widget(
                &c,
                "b",
                json!({"color": "x", "big": {"field7": {"a": "y", "zz": 1}}}),
            ),
        )
        .await
        .expect("widget");
    assert_eq!(w.data["spec"]["big"]["field7"], json!({"a": "y"}));
    c.stop().await;
}

/// Server-side field validation is newer than Kubernetes 1.24 (which ignores the parameter).
#[tokio::test]
async fn kubesim_only_strict_field_validation_rejects_unknown_fields() {
    let c = Cluster::kubesim().await;
    let client = c.client.clone();
    install(&c, &widget_crd(&c, "Namespaced")).await;
    let body = json!({"apiVersion": format!("{}/v1", group(&c)), "kind": "Widget", "metadata": {"name": "s"}, "spec": {"color": "red", "junk": 1}}).to_string();
    let (code, status) = raw(
        &client,
        "POST",
        &format!(
            "/apis/{}/v1/namespaces/{}/widgets?fieldValidation=Strict",
            group(&c),
            c.ns
        ),
        Some("application/json"),
        Some(&body),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        status["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field \"spec.junk\""),
        "{status}"
    );
    let (code, _) = raw(
        &client,
        "POST",
        &format!("/apis/{}/v1/namespaces/{}/widgets", group(&c), c.ns),
        Some("application/json"),
        Some(&body),
    )
    .await;
    assert_eq!(code, 201, "without Strict unknown fields are pruned");
    c.stop().await;
}

#[tokio::test]
async fn metadata_only_requests() {
    use futures::TryStreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ListParams;
    let c = Cluster::start().await;
    let client = c.client.clone();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &c.ns);
    let m: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "m", "labels": {"a": "b"}}, "data": {"secret-ish": "x"}}),
    )
    .expect("cm");
    api.create(&PostParams::default(), &m)
        .await
        .expect("create");
    let meta = api.get_metadata("m").await.expect("get_metadata");
    assert_eq!(
        meta.metadata
            .labels
            .and_then(|l| l.get("a").cloned())
            .as_deref(),
        Some("b")
    );
    let list = api
        // Real namespaces also hold kube-root-ca.crt.
        .list_metadata(&ListParams::default().labels("a=b"))
        .await
        .expect("list_metadata");
    assert_eq!(list.items.len(), 1);
    let (_, raw_get) = raw_with(
        &client,
        "GET",
        &format!("/api/v1/namespaces/{}/configmaps/m", c.ns),
        None,
        Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
        None,
    )
    .await;
    assert_eq!(raw_get["kind"], "PartialObjectMetadata");
    assert!(raw_get.get("data").is_none());
    let meta_api: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(client.clone(), &c.ns);
    let mut events = Box::pin(kube::runtime::watcher(
        meta_api,
        kube::runtime::watcher::Config::default(),
    ));
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), events.try_next())
        .await
        .expect("in time")
        .expect("ok");
    assert!(first.is_some());
    c.stop().await;
}

#[tokio::test]
async fn watches_of_custom_resources_end_with_their_crd() {
    use futures::TryStreamExt;
    use kube::api::WatchParams;
    let c = Cluster::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    install(&c, &widget_crd(&c, "Namespaced")).await;
    let api = widgets(&c, Some(&c.ns));
    let mut stream = Box::pin(
        api.watch(&WatchParams::default().timeout(30), "0")
            .await
            .expect("watch"),
    );
    crds.delete(&crd_name(&c), &Default::default())
        .await
        .expect("delete crd");
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), stream.try_next())
        .await
        .expect("watch ends in time");
    assert!(matches!(end, Ok(None)), "{end:?}");
    c.stop().await;
}
