//! The `kubesim` binary: kubeconfig written once ready, URL on stdout, SIGTERM stops it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::io::AsyncBufReadExt;

#[tokio::test]
async fn kubesim_only_binary_serves_until_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kc");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--no-kubelet")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kubesim");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("url in time")
        .expect("read")
        .expect("a line");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    // The URL is printed after the kubeconfig is written, so it is complete now.
    let kc = Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    assert_eq!(config.cluster_url.to_string().trim_end_matches('/'), url);
    let client = Client::try_from(config).expect("client");
    Api::<Namespace>::all(client)
        .get("default")
        .await
        .expect("default namespace");
    let pid = child.id().expect("pid");
    // SAFETY: plain kill(2) on the child we spawned.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits in time")
        .expect("status");
    assert!(status.success(), "{status:?}");
}
