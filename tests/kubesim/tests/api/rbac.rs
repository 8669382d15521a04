//! RBAC for service-account users (kubesim enforces it for the tests' backend, as every
//! real cluster does), access reviews and `kubectl auth can-i`.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::common::{Cluster, TEST_LABEL, api_err, eventually, raw};

/// Whether `client` may list ConfigMaps in `ns` (an RBAC change reaches a real API
/// server's authorizer through its informers, a moment after the write).
async fn may_list(client: &Client, ns: &str, lp: &ListParams) -> bool {
    match Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(lp)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(api_err(e).code, 403);
            false
        }
    }
}

/// A Role in the test's namespace and a binding of it to ServiceAccount `sa` there.
async fn grant(c: &Cluster, sa: &str, rule: serde_json::Value) {
    let role: Role =
        serde_json::from_value(json!({"metadata": {"name": sa}, "rules": [rule]})).expect("role");
    Api::<Role>::namespaced(c.client.clone(), &c.ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let rb: RoleBinding = serde_json::from_value(json!({"metadata": {"name": sa}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": c.ns}]})).expect("rb");
    Api::<RoleBinding>::namespaced(c.client.clone(), &c.ns)
        .create(&PostParams::default(), &rb)
        .await
        .expect("rb");
}

#[tokio::test]
async fn service_accounts_get_what_their_bindings_grant() {
    let c = Cluster::start().await;
    let sa = c.service_account_client(&c.ns, "reader").await;
    let as_sa: Api<ConfigMap> = Api::namespaced(sa.clone(), &c.ns);
    let err = api_err(
        as_sa
            .list(&ListParams::default())
            .await
            .expect_err("forbidden"),
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    let user = format!("system:serviceaccount:{}:reader", c.ns);
    assert!(
        err.message.contains(&user) && err.message.contains("cannot list resource \"configmaps\""),
        "{}",
        err.message
    );
    grant(
        &c,
        "reader",
        json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}),
    )
    .await;
    let all = ListParams::default();
    eventually("the binding in effect", || may_list(&sa, &c.ns, &all)).await;
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).expect("cm");
    assert_eq!(
        api_err(
            as_sa
                .create(&PostParams::default(), &cm)
                .await
                .expect_err("create not granted")
        )
        .code,
        403
    );
    assert!(
        !may_list(&sa, "kube-system", &ListParams::default()).await,
        "other namespace"
    );
    Api::<ConfigMap>::namespaced(c.client.clone(), &c.ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("admin always allowed");
    c.stop().await;
}

#[tokio::test]
async fn a_list_by_metadata_name_field_selector_is_authorized_against_resource_names() {
    let c = Cluster::start().await;
    let sa = c.service_account_client(&c.ns, "narrow").await;
    grant(
        &c,
        "narrow",
        json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"], "resourceNames": ["mine"]}),
    )
    .await;
    // As in Kubernetes: the name in the field selector is the request's resource name.
    let mine = ListParams::default().fields("metadata.name=mine");
    eventually("the binding in effect", || may_list(&sa, &c.ns, &mine)).await;
    let both = format!("metadata.namespace={},metadata.name==mine", c.ns);
    assert!(may_list(&sa, &c.ns, &ListParams::default().fields(&both)).await);
    for fields in ["metadata.name=other", "metadata.name!=mine"] {
        assert!(
            !may_list(&sa, &c.ns, &ListParams::default().fields(fields)).await,
            "{fields}"
        );
    }
    assert!(
        !may_list(&sa, &c.ns, &ListParams::default()).await,
        "all of them"
    );
    c.stop().await;
}

#[tokio::test]
async fn access_reviews_and_kubectl_auth_can_i() {
    let c = Cluster::start().await;
    // kubectl runs as a child process; kubesim answers it from this test's runtime.
    let can_i = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(c.kubeconfig_path())
            .arg("--cache-dir")
            .arg(c.scratch_dir().join("kc"))
            .args(["auth", "can-i"])
            .args(args);
        async move {
            let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
                .await
                .expect("kubectl in time")
                .expect("kubectl");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    let user = format!("system:serviceaccount:{}:op", c.ns);
    let as_sa = format!("--as={user}");
    let as_sa = as_sa.as_str();
    assert_eq!(can_i(&["list", "secrets", as_sa]).await, "no");
    let name = c.name("secret-reader");
    let cr: ClusterRole = serde_json::from_value(json!({"metadata": {"name": name, "labels": {TEST_LABEL: "true"}}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}]})).expect("cr");
    Api::<ClusterRole>::all(c.client.clone())
        .create(&PostParams::default(), &cr)
        .await
        .expect("cr");
    c.delete_on_stop(&format!(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"
    ));
    let crb: ClusterRoleBinding = serde_json::from_value(json!({"metadata": {"name": name, "labels": {TEST_LABEL: "true"}}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": c.ns}]})).expect("crb");
    Api::<ClusterRoleBinding>::all(c.client.clone())
        .create(&PostParams::default(), &crb)
        .await
        .expect("crb");
    c.delete_on_stop(&format!(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}"
    ));
    eventually("the binding in effect", || async {
        can_i(&["list", "secrets", as_sa, "-n", "kube-system"]).await == "yes"
    })
    .await;
    assert_eq!(can_i(&["delete", "secrets", as_sa]).await, "no");
    assert_eq!(can_i(&["delete", "secrets"]).await, "yes", "admin");
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": user,
        "resourceAttributes": {"verb": "watch", "resource": "secrets", "namespace": "x"}}});
    let (code, answer) = raw(
        &c.client,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        Some("application/json"),
        Some(&sar.to_string()),
    )
    .await;
    assert_eq!(
        (code, answer["status"]["allowed"].as_bool()),
        (201, Some(true))
    );
    c.stop().await;
}

#[tokio::test]
async fn service_accounts_cannot_impersonate() {
    let c = Cluster::start().await;
    let sa = c.service_account_client(&c.ns, "op").await;
    // kubesim's admin: forbidden there as on a real server, where nobody granted the
    // account `impersonate`.
    let req = http::Request::get(format!("/api/v1/namespaces/{}/secrets", c.ns))
        .header("Impersonate-User", "kubesim:admin")
        .body(kube::client::Body::empty())
        .expect("req");
    let resp = sa.send(req).await.expect("send");
    assert_eq!(resp.status().as_u16(), 403);
    c.stop().await;
}
