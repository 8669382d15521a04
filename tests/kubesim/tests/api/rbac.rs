//! RBAC enforcement for service-account users (opt-in).

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{ListParams, PostParams};
use kubesim::{KubeSim, KubeSimOptions};
use serde_json::json;

use super::common::api_err;

#[tokio::test]
async fn kubesim_only_service_accounts_get_what_their_bindings_grant() {
    let sim = KubeSim::start(KubeSimOptions {
        run_kubelet: false,
        enforce_rbac: true,
        ..Default::default()
    })
    .await
    .expect("start");
    let admin = sim.client().await.expect("admin");
    let sa = sim
        .service_account_client("default", "reader")
        .await
        .expect("sa");
    let as_sa: Api<ConfigMap> = Api::namespaced(sa.clone(), "default");
    let err = api_err(
        as_sa
            .list(&ListParams::default())
            .await
            .expect_err("forbidden"),
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert!(
        err.message.contains("system:serviceaccount:default:reader")
            && err.message.contains("cannot list resource \"configmaps\""),
        "{}",
        err.message
    );
    let role: Role = serde_json::from_value(json!({"metadata": {"name": "read-cm"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})).expect("role");
    Api::<Role>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let rb: RoleBinding = serde_json::from_value(json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]})).expect("rb");
    Api::<RoleBinding>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &rb)
        .await
        .expect("rb");
    as_sa
        .list(&ListParams::default())
        .await
        .expect("now allowed");
    let c: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).expect("cm");
    assert_eq!(
        api_err(
            as_sa
                .create(&PostParams::default(), &c)
                .await
                .expect_err("create not granted")
        )
        .code,
        403
    );
    let other: Api<ConfigMap> = Api::namespaced(sa, "kube-system");
    assert_eq!(
        api_err(
            other
                .list(&ListParams::default())
                .await
                .expect_err("other namespace")
        )
        .code,
        403
    );
    Api::<ConfigMap>::namespaced(admin, "default")
        .create(&PostParams::default(), &c)
        .await
        .expect("admin always allowed");
    sim.stop().await;
}

#[tokio::test]
async fn kubesim_only_access_reviews_and_kubectl_auth_can_i() {
    let sim = KubeSim::start(KubeSimOptions {
        run_kubelet: false,
        enforce_rbac: true,
        ..Default::default()
    })
    .await
    .expect("start");
    let admin = sim.client().await.expect("admin");
    // kubectl runs as a child process; the server answers it from this test's runtime.
    let kubeconfig = sim.kubeconfig_path().to_path_buf();
    let cache = sim.state_dir().join("kc");
    let can_i = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
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
    let as_sa = "--as=system:serviceaccount:default:op";
    assert_eq!(can_i(&["list", "secrets", as_sa]).await, "no");
    let cr: k8s_openapi::api::rbac::v1::ClusterRole = serde_json::from_value(json!({"metadata": {"name": "secret-reader"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}]})).expect("cr");
    Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &cr)
        .await
        .expect("cr");
    let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({"metadata": {"name": "op"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "default"}]})).expect("crb");
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &crb)
        .await
        .expect("crb");
    assert_eq!(
        can_i(&["list", "secrets", as_sa, "-n", "kube-system"]).await,
        "yes"
    );
    assert_eq!(can_i(&["delete", "secrets", as_sa]).await, "no");
    assert_eq!(can_i(&["delete", "secrets"]).await, "yes", "admin");
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "system:serviceaccount:default:op",
        "resourceAttributes": {"verb": "watch", "resource": "secrets", "namespace": "x"}}});
    let (code, answer) = super::common::raw(
        &admin,
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
    // A service account cannot impersonate.
    let sa = sim
        .service_account_client("default", "op")
        .await
        .expect("sa");
    let (code, _) = {
        let req = http::Request::get("/api/v1/namespaces/default/secrets")
            .header("Impersonate-User", "kubesim:admin")
            .body(kube::client::Body::empty())
            .expect("req");
        let resp = sa.send(req).await.expect("send");
        (resp.status().as_u16(), ())
    };
    assert_eq!(code, 403);
    sim.stop().await;
}

#[tokio::test]
async fn kubesim_only_a_list_by_metadata_name_field_selector_is_authorized_against_resource_names()
{
    let sim = KubeSim::start(KubeSimOptions {
        run_kubelet: false,
        enforce_rbac: true,
        ..Default::default()
    })
    .await
    .expect("start");
    let admin = sim.client().await.expect("admin");
    let role: Role = serde_json::from_value(json!({"metadata": {"name": "one-cm"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"], "resourceNames": ["mine"]}]})).expect("role");
    Api::<Role>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let rb: RoleBinding = serde_json::from_value(json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-cm"},
        "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": "default"}]})).expect("rb");
    Api::<RoleBinding>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &rb)
        .await
        .expect("rb");
    let as_sa: Api<ConfigMap> = Api::namespaced(
        sim.service_account_client("default", "narrow")
            .await
            .expect("sa"),
        "default",
    );
    // As in Kubernetes: the name in the field selector is the request's resource name.
    for fields in [
        "metadata.name=mine",
        "metadata.namespace=default,metadata.name==mine",
    ] {
        as_sa
            .list(&ListParams::default().fields(fields))
            .await
            .expect("the named one may be listed");
    }
    for fields in ["metadata.name=other", "metadata.name!=mine"] {
        assert_eq!(
            api_err(
                as_sa
                    .list(&ListParams::default().fields(fields))
                    .await
                    .expect_err("not that name")
            )
            .code,
            403,
            "{fields}"
        );
    }
    assert_eq!(
        api_err(
            as_sa
                .list(&ListParams::default())
                .await
                .expect_err("all of them")
        )
        .code,
        403
    );
    sim.stop().await;
}
