//! RBAC enforcement for service-account users (opt-in).

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::Api;
use kubesim::{KubeSim, KubeSimOptions};
use serde_json::json;

use super::common::api_err;

#[tokio::test]
async fn service_accounts_get_what_their_bindings_grant() {
    let sim = KubeSim::start(KubeSimOptions { run_kubelet: false, enforce_rbac: true, ..Default::default() }).await.expect("start");
    let admin = sim.client().await.expect("admin");
    let sa = sim.service_account_client("default", "reader").await.expect("sa");
    let as_sa: Api<ConfigMap> = Api::namespaced(sa.clone(), "default");
    let err = api_err(as_sa.list(&ListParams::default()).await.expect_err("forbidden"));
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert!(err.message.contains("system:serviceaccount:default:reader") && err.message.contains("cannot list resource \"configmaps\""), "{}", err.message);
    let role: Role = serde_json::from_value(json!({"metadata": {"name": "read-cm"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})).expect("role");
    Api::<Role>::namespaced(admin.clone(), "default").create(&PostParams::default(), &role).await.expect("role");
    let rb: RoleBinding = serde_json::from_value(json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]})).expect("rb");
    Api::<RoleBinding>::namespaced(admin.clone(), "default").create(&PostParams::default(), &rb).await.expect("rb");
    as_sa.list(&ListParams::default()).await.expect("now allowed");
    let c: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).expect("cm");
    assert_eq!(api_err(as_sa.create(&PostParams::default(), &c).await.expect_err("create not granted")).code, 403);
    let other: Api<ConfigMap> = Api::namespaced(sa, "kube-system");
    assert_eq!(api_err(other.list(&ListParams::default()).await.expect_err("other namespace")).code, 403);
    Api::<ConfigMap>::namespaced(admin, "default").create(&PostParams::default(), &c).await.expect("admin always allowed");
    sim.stop().await;
}
