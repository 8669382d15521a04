//! Pods run by the kubelet, driven through the API: environment, volumes, isolation,
//! image pulls, waiting for Secrets, logs, identity and deletion.

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

use super::cluster::{
    finished, finished_with_log, pod_phase, shell_pod, start, start_with, wait_for, wait_gone,
};

fn config_objects() -> (serde_json::Value, serde_json::Value) {
    (
        json!({"metadata": {"name": "settings"}, "data": {"MODE": "fast", "LEVEL": "3", "app.conf": "key=value\n"}}),
        json!({"metadata": {"name": "creds"}, "stringData": {"PASSWORD": "hunter2", "token": "t0ken"}}),
    )
}

#[tokio::test]
async fn env_env_from_and_value_from_resolve_config_maps_and_secrets() {
    let cluster = start("pod-env").await;
    let (cm, secret) = config_objects();
    cluster.create::<ConfigMap>(cm).await;
    cluster.create::<Secret>(secret).await;
    // `$VAR` is the shell's; `$(GREETING)` is expanded by the kubelet before the shell runs.
    let mut pod = shell_pod(
        "env",
        "echo \"$CFG_MODE|$PASSWORD|$LEVEL_REF|$TOKEN|$GREETING|$POD_NAME|$POD_NS|$NODE|$APP\"; echo $(GREETING)",
    );
    pod["metadata"]["labels"] = json!({"app": "envtest"});
    pod["spec"]["containers"][0]["envFrom"] = json!([
        {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
        {"secretRef": {"name": "creds"}},
        {"secretRef": {"name": "absent", "optional": true}}
    ]);
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "LEVEL_REF", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": true}}},
        {"name": "GREETING", "value": "mode-$(CFG_MODE)"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}
    ]);
    cluster.create::<Pod>(pod).await;
    let (pod, log) = finished_with_log(&cluster, "env").await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    assert_eq!(
        log,
        format!(
            "fast|hunter2|3|t0ken|mode-fast|env|{}|kubesim-node|envtest\nmode-fast\n",
            cluster.namespace
        )
    );
}

#[tokio::test]
async fn secret_config_map_and_projected_volumes_appear_at_their_paths() {
    let cluster = start("pod-volumes").await;
    let (cm, secret) = config_objects();
    cluster.create::<ConfigMap>(cm).await;
    cluster.create::<Secret>(secret).await;
    let script = "cat /etc/creds/PASSWORD; echo; cat /config/app.conf; cat /all/pw /all/MODE; echo; cat /all/podname; echo; \
                  test ! -e /config/MODE && stat -c %a /etc/creds/PASSWORD && ! touch /etc/creds/new";
    let mut pod = shell_pod("volumes", script);
    pod["spec"]["volumes"] = json!([
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "config", "configMap": {"name": "settings", "items": [{"key": "app.conf", "path": "app.conf"}]}},
        {"name": "all", "projected": {"sources": [
            {"secret": {"name": "creds", "items": [{"key": "PASSWORD", "path": "pw"}]}},
            {"configMap": {"name": "settings", "items": [{"key": "MODE", "path": "MODE"}]}},
            {"downwardAPI": {"items": [{"path": "podname", "fieldRef": {"fieldPath": "metadata.name"}}]}}
        ]}}
    ]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "config", "mountPath": "/config"},
        {"name": "all", "mountPath": "/all"}
    ]);
    cluster.create::<Pod>(pod).await;
    let (pod, log) = finished_with_log(&cluster, "volumes").await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    assert!(
        log.starts_with("hunter2\nkey=value\nhunter2fast\nvolumes\n400\n"),
        "{log}"
    );
    for host_path in ["/etc/creds", "/config", "/all"] {
        assert!(
            !std::path::Path::new(host_path).exists(),
            "{host_path} was created on the host"
        );
    }
}

#[tokio::test]
async fn a_container_sees_only_the_empty_dirs_it_mounts() {
    let cluster = start("pod-isolation").await;
    let pod = json!({
        "metadata": {"name": "pair"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "private", "emptyDir": {}}],
            "containers": [
                {"name": "writer", "image": "busybox", "command": ["sh", "-c", "echo mine > /mnt/quarks/file; sleep 1"],
                 "volumeMounts": [{"name": "private", "mountPath": "/mnt/quarks"}]},
                {"name": "reader", "image": "busybox",
                 "command": ["sh", "-c", "sleep 0.5; if test -e /mnt/quarks/file; then echo LEAK; exit 1; fi; echo isolated"]}
            ]
        }
    });
    cluster.create::<Pod>(pod).await;
    let pod = finished(&cluster, "pair").await;
    let log = cluster.log("pair", Some("reader")).await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    assert_eq!(log, "isolated\n");
}

#[tokio::test]
async fn an_unknown_image_cannot_be_pulled() {
    let cluster = start("pod-image").await;
    let mut pod = shell_pod("nginx", "true");
    pod["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    cluster.create::<Pod>(pod).await;
    let pods = cluster.api::<Pod>();
    let reason = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
            .unwrap_or_default()
    };
    let pulled = wait_for(&pods, "nginx", "ErrImagePull", |p: &Pod| {
        reason(p) == "ErrImagePull"
    })
    .await;
    assert_eq!(pod_phase(&pulled), "Pending");
    let backoff = wait_for(&pods, "nginx", "ImagePullBackOff", |p: &Pod| {
        reason(p) == "ImagePullBackOff"
    })
    .await;
    assert_eq!(pod_phase(&backoff), "Pending");
}

#[tokio::test]
async fn a_missing_secret_holds_the_pod_until_it_is_created() {
    let cluster = start("pod-wait").await;
    let mut pod = shell_pod("waiter", "cat /creds/token");
    pod["spec"]["volumes"] = json!([{"name": "creds", "secret": {"secretName": "late"}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "creds", "mountPath": "/creds"}]);
    cluster.create::<Pod>(pod).await;
    let pods = cluster.api::<Pod>();
    let events = cluster.api::<Event>();
    // A FailedMount Event says why, and the pod stays Pending in ContainerCreating.
    let failed_mount = loop {
        let list = events.list(&ListParams::default()).await.expect("events");
        if let Some(e) = list
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedMount"))
        {
            break e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        failed_mount
            .message
            .unwrap_or_default()
            .contains("secret \"late\" not found")
    );
    let pending = pods.get("waiter").await.expect("pod");
    assert_eq!(pod_phase(&pending), "Pending");
    let waiting = pending
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c[0].state.clone())
        .and_then(|s| s.waiting);
    assert_eq!(
        waiting.and_then(|w| w.reason).as_deref(),
        Some("ContainerCreating")
    );

    cluster
        .create::<Secret>(json!({"metadata": {"name": "late"}, "stringData": {"token": "arrived"}}))
        .await;
    let (pod, log) = finished_with_log(&cluster, "waiter").await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    assert_eq!(log, "arrived");
}

#[tokio::test]
async fn the_pod_kubeconfig_identity_reaches_the_api_server() {
    let cluster = start("pod-identity").await;
    let script = "cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; \
                  cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; \
                  kubectl get pod \"$HOSTNAME\" -o name";
    cluster.create::<Pod>(shell_pod("whoami", script)).await;
    let (pod, log) = finished_with_log(&cluster, "whoami").await;
    let ns = &cluster.namespace;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    assert_eq!(
        log,
        format!("kubesim:serviceaccount:{ns}:default\n{ns}\npod/whoami\n")
    );
}

#[tokio::test]
async fn projected_tokens_come_from_token_request_and_replace_the_kubesim_identity() {
    let cluster = start("pod-token").await;
    let ns = cluster.namespace.clone();
    // What a real server's ServiceAccount admission adds, plus a token of its own audience.
    let script = "cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; \
                  cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; \
                  cat /vault/token; echo; echo \"${KUBECONFIG:-none}\"";
    let mut pod = shell_pod("token", script);
    pod["spec"]["volumes"] = json!([
        {"name": "kube-api-access", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
        ]}},
        {"name": "vault", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 600}}
        ]}}
    ]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
        {"name": "vault", "mountPath": "/vault"}
    ]);
    cluster.create::<Pod>(pod).await;
    let (pod, log) = finished_with_log(&cluster, "token").await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    let token = format!("kubesim:serviceaccount:{ns}:default");
    // The pod's own service-account mount wins: no kubesim kubeconfig.
    assert_eq!(log, format!("{token}\n{ns}\n{token}\nnone\n"));
    let requests: Vec<_> = cluster
        .request_log()
        .into_iter()
        .filter(|r| r.resource == "serviceaccounts" && r.subresource == "token")
        .collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in requests {
        assert_eq!(
            (r.verb.as_str(), r.name.as_str(), r.code),
            ("create", "default", 201)
        );
    }

    // TokenRequest itself: lifetimes under 10 minutes are refused, unknown accounts are 404.
    let sas: kube::Api<ServiceAccount> = cluster.api();
    let request = |seconds: i64| -> TokenRequest {
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": seconds}}))
            .expect("token request")
    };
    let pp = PostParams::default();
    let issued = sas
        .create_token_request("default", &pp, &request(3600))
        .await
        .expect("token");
    assert_eq!(issued.status.expect("status").token, token);
    let short = sas.create_token_request("default", &pp, &request(60)).await;
    assert!(
        matches!(short, Err(kube::Error::Api(ref s)) if s.code == 422),
        "{short:?}"
    );
    let missing = sas
        .create_token_request("nobody", &pp, &request(3600))
        .await;
    assert!(
        matches!(missing, Err(kube::Error::Api(ref s)) if s.code == 404),
        "{missing:?}"
    );
}

#[tokio::test]
async fn deleting_a_running_pod_stops_it_and_removes_it() {
    let cluster = start("pod-delete").await;
    cluster
        .create::<Pod>(shell_pod("sleeper", "echo started; sleep 300"))
        .await;
    let pods = cluster.api::<Pod>();
    wait_for(&pods, "sleeper", "Running", |p: &Pod| {
        pod_phase(p) == "Running"
    })
    .await;
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&pods, "sleeper").await;
}

#[tokio::test]
async fn a_restart_policy_never_pod_reports_exit_codes_and_conditions() {
    let cluster = start("pod-status").await;
    cluster
        .create::<Pod>(shell_pod("exit7", "echo bye >&2; exit 7"))
        .await;
    let (pod, log) = finished_with_log(&cluster, "exit7").await;
    assert_eq!(log, "bye\n");
    assert_eq!(pod_phase(&pod), "Failed");
    let status = pod.status.expect("status");
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.start_time.is_some());
    let terminated = status.container_statuses.expect("cs")[0]
        .state
        .clone()
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (7, Some("Error"))
    );
    assert!(terminated.started_at.is_some() && terminated.finished_at.is_some());
    let conditions = status.conditions.expect("conditions");
    let get = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
    };
    assert_eq!(get("PodScheduled").as_deref(), Some("True"));
    assert_eq!(get("Initialized").as_deref(), Some("True"));
    assert_eq!(get("Ready").as_deref(), Some("False"));
    // The container's life is told in Events, as `kubectl describe` shows them.
    let events = cluster.api::<Event>();
    let mut reasons = Vec::new();
    for _ in 0..100 {
        let lp = ListParams::default().fields("involvedObject.name=exit7");
        reasons = events
            .list(&lp)
            .await
            .expect("events")
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        if reasons.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Listed by name (generated), not in creation order.
    reasons.sort();
    assert_eq!(reasons, ["Created", "Pulled", "Scheduled", "Started"]);
}

#[tokio::test]
async fn an_image_mapped_to_a_program_runs_it_as_the_entrypoint() {
    let options = kubesim::KubeSimOptions {
        extra_images: vec![("registry.example/tools/*".into(), "/bin/echo".into())],
        ..Default::default()
    };
    let cluster = start_with("pod-entrypoint", options).await;
    let mut pod = shell_pod("echoer", "unused");
    pod["spec"]["containers"][0]["image"] = json!("registry.example/tools/echo:1.0");
    // command[0] names the image's program; the rest and args follow it.
    pod["spec"]["containers"][0]["command"] = json!(["/usr/local/bin/whatever", "from-command"]);
    pod["spec"]["containers"][0]["args"] = json!(["$(WHO)"]);
    pod["spec"]["containers"][0]["env"] = json!([{"name": "WHO", "value": "world"}]);
    cluster.create::<Pod>(pod).await;
    let (pod, log) = finished_with_log(&cluster, "echoer").await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    assert_eq!(log, "from-command world\n");
}

#[tokio::test]
async fn a_native_sidecar_runs_alongside_and_stops_when_the_containers_finish() {
    let cluster = start("pod-sidecar").await;
    let mut pod = shell_pod("sidecar", "sleep 0.5; cat /shared/ready");
    pod["spec"]["volumes"] = json!([{"name": "shared", "emptyDir": {}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "shared", "mountPath": "/shared"}]);
    pod["spec"]["initContainers"] = json!([{
        "name": "helper", "image": "busybox", "restartPolicy": "Always",
        "command": ["sh", "-c", "echo up > /shared/ready; exec sleep 300"],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]
    }]);
    cluster.create::<Pod>(pod).await;
    let (pod, log) = finished_with_log(&cluster, "sidecar").await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    assert_eq!(log, "up\n");
    let helper = pod
        .status
        .and_then(|s| s.init_container_statuses)
        .expect("init statuses");
    assert!(
        helper[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some(),
        "{helper:?}"
    );
}

#[tokio::test]
async fn a_pod_past_its_active_deadline_is_failed_by_the_kubelet() {
    let cluster = start("pod-deadline").await;
    let mut pod = shell_pod("late", "sleep 300");
    pod["spec"]["activeDeadlineSeconds"] = json!(1);
    cluster.create::<Pod>(pod).await;
    let pods = cluster.api::<Pod>();
    let failed = wait_for(&pods, "late", "Failed", |p: &Pod| pod_phase(p) == "Failed").await;
    let status = failed.status.expect("status");
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    let terminated = status.container_statuses.expect("cs")[0]
        .state
        .clone()
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(terminated.exit_code, 143, "SIGTERM ends the shell");
}

#[tokio::test]
async fn a_missing_env_secret_is_a_config_error_until_it_exists() {
    let cluster = start("pod-env-wait").await;
    let mut pod = shell_pod("envwait", "echo $KEY");
    pod["spec"]["containers"][0]["env"] =
        json!([{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}]);
    cluster.create::<Pod>(pod).await;
    let pods = cluster.api::<Pod>();
    let reason = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs[0].state.as_ref()?.waiting.as_ref()?.reason.clone())
            .unwrap_or_default()
    };
    let waiting = wait_for(&pods, "envwait", "CreateContainerConfigError", |p: &Pod| {
        reason(p) == "CreateContainerConfigError"
    })
    .await;
    assert_eq!(pod_phase(&waiting), "Pending");
    cluster
        .create::<Secret>(json!({"metadata": {"name": "later"}, "stringData": {"k": "v"}}))
        .await;
    let (pod, log) = finished_with_log(&cluster, "envwait").await;
    assert_eq!(pod_phase(&pod), "Succeeded", "{log}");
    assert_eq!(log, "v\n");
}

#[tokio::test]
async fn pods_for_another_scheduler_are_not_bound() {
    let cluster = start("pod-scheduler").await;
    let mut other = shell_pod("other", "true");
    other["spec"]["schedulerName"] = json!("someone-else");
    cluster.create::<Pod>(other).await;
    let mut default = shell_pod("default", "true");
    default["spec"]["schedulerName"] = json!("default-scheduler");
    cluster.create::<Pod>(default).await;
    // The default scheduler's pod is bound and runs; by then the other one would have been.
    let done = finished(&cluster, "default").await;
    assert_eq!(pod_phase(&done), "Succeeded");
    let pods: kube::Api<Pod> = cluster.api();
    let waiting = pods.get("other").await.expect("get");
    assert_eq!(
        waiting.spec.as_ref().and_then(|s| s.node_name.clone()),
        None,
        "left to its scheduler"
    );
    assert_eq!(pod_phase(&waiting), "Pending");
}
