//! Pods on `kubesim node` get what ServiceAccount admission asks for: a real, pod-bound
//! token from TokenRequest (proven with a TokenReview), the cluster CA and namespace, so
//! that kube's `Client::try_default()` works in-cluster; opting out gives no token.

use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::LogParams;
use serde_json::json;

use super::harness::{ControlPlane, NodeProcess, exit_code, namespace, run_pod, wait_ready};

fn sh_pod(name: &str, script: &str, extra_spec: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script]}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(extra.clone());
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

async fn review(client: &kube::Client, token: &str, audiences: &[&str]) -> serde_json::Value {
    let api: Api<TokenReview> = Api::all(client.clone());
    let review: TokenReview =
        serde_json::from_value(json!({"spec": {"token": token.trim(), "audiences": audiences}}))
            .expect("review");
    let answer = api
        .create(&Default::default(), &review)
        .await
        .expect("token review");
    serde_json::to_value(answer.status).expect("json")
}

#[tokio::test]
async fn pods_get_real_service_account_tokens_and_in_cluster_config() {
    let Some(cp) = ControlPlane::start() else {
        return;
    };
    let tools = format!("kubesim-tools={}", env!("CARGO_BIN_EXE_kubesim"));
    let _node = NodeProcess::start(&cp, "token-node", &["--image", &tools]);
    let client = cp.client().await;
    let ns = "tokens";
    namespace(&client, ns).await;
    wait_ready(&client, "token-node", ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let logs = |name: &'static str| {
        let pods = pods.clone();
        async move { pods.logs(name, &LogParams::default()).await.expect("logs") }
    };

    // The admission-added kube-api-access volume: token, ca.crt, namespace.
    let files = "cd /var/run/secrets/kubernetes.io/serviceaccount && cat namespace && echo && \
                 grep -c 'BEGIN CERTIFICATE' ca.crt && cat token";
    let p = run_pod(&client, ns, sh_pod("token", files, json!({}))).await;
    assert_eq!(exit_code(&p), Some(0));
    let out = logs("token").await;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(ns));
    assert_eq!(lines.next(), Some("1"));
    let token = lines.next().expect("token");
    let status = review(&client, token, &[]).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        format!("system:serviceaccount:{ns}:default")
    );
    assert_eq!(
        status["user"]["extra"]["authentication.kubernetes.io/pod-name"][0],
        "token"
    );

    // A projected token with its own audience and lifetime.
    let audience = json!({
        "volumes": [{"name": "vault", "projected": {"sources": [
            {"serviceAccountToken": {"path": "t", "audience": "vault", "expirationSeconds": 600}}]}}],
        "containers": [{"name": "c", "image": "busybox", "command": ["cat", "/vault/t"],
            "volumeMounts": [{"name": "vault", "mountPath": "/vault"}]}],
    });
    let p = run_pod(&client, ns, sh_pod("audience", "", audience)).await;
    assert_eq!(exit_code(&p), Some(0));
    let status = review(&client, &logs("audience").await, &["vault"]).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], json!(["vault"]));

    // Opting out: no service-account files at all.
    let p = run_pod(
        &client,
        ns,
        sh_pod(
            "no-token",
            "test ! -e /var/run/secrets/kubernetes.io/serviceaccount && test -z \"$KUBECONFIG\"",
            json!({"automountServiceAccountToken": false}),
        ),
    )
    .await;
    assert_eq!(exit_code(&p), Some(0));

    // kube's Client::try_default() in a pod: in-cluster config against the real server.
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "default-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&Default::default(), &binding)
        .await
        .expect("rolebinding");
    let in_cluster = json!({"metadata": {"name": "in-cluster"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "kubesim-tools", "command": ["kubesim", "list-pods"]}]}});
    let p = run_pod(&client, ns, in_cluster).await;
    let out = logs("in-cluster").await;
    assert_eq!(exit_code(&p), Some(0), "{out}");
    assert!(out.lines().any(|l| l == "in-cluster"), "{out}");
}
