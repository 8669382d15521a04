//! `kubesim node`: kubesim's kubelet as the one node of any API server (a real
//! kube-apiserver, or kubesim itself). It does what a one-node cluster's scheduler and
//! kubelet do: registers the Node and renews its Lease ([`registration`]), binds unscheduled
//! pods to itself and runs them with the same kubelet kubesim runs in-process
//! ([`crate::kubelet`]), and serves container logs to the API server ([`logserver`]).
//! It never runs kubesim's Job controller: the server's own controllers manage pods.

pub mod logserver;
pub mod registration;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::kubelet::{self, images::ImageTable};

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The kubeconfig of the API server to join (its current context).
    pub kubeconfig: PathBuf,
    /// The Node's name.
    pub name: String,
    /// Where pod volumes and logs live; default a fresh temporary directory.
    pub state_dir: Option<PathBuf>,
    pub images: ImageTable,
}

/// A node once it is registered: its state directory and log endpoint.
#[derive(Debug)]
pub struct NodeInfo {
    pub state_dir: PathBuf,
    pub log_endpoint: SocketAddr,
}

/// Registers the node and runs it until `shutdown`; `ready` is called once the Node is
/// registered and the kubelet starts. Then stops every container and deregisters.
pub async fn run(
    opts: NodeOptions,
    shutdown: CancellationToken,
    ready: impl FnOnce(&NodeInfo),
) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&opts.kubeconfig)
        .with_context(|| format!("reading {}", opts.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("loading {}", opts.kubeconfig.display()))?;
    // Pods reach the API server where this node does (KUBERNETES_SERVICE_HOST/PORT).
    let api_url = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = kube::Client::try_from(config).context("building the API client")?;
    let (_temp, state_dir) = crate::state_dir(opts.state_dir.as_deref(), "kubesim-node-")?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("binding the log endpoint")?;
    let log_endpoint = listener.local_addr()?;
    let logs = logserver::serve(
        listener,
        client.clone(),
        state_dir.clone(),
        shutdown.clone(),
    )?;
    let log_task = tokio::spawn(logs);
    let registration =
        registration::Registration::register(client.clone(), &opts.name, log_endpoint.port())
            .await
            .with_context(|| format!("registering node {}", opts.name))?;
    ready(&NodeInfo {
        state_dir: state_dir.clone(),
        log_endpoint,
    });
    let cfg = kubelet::KubeletConfig {
        node_name: opts.name.clone(),
        state_dir,
        api_url,
        images: opts.images,
    };
    let (kubelet_result, ()) = tokio::join!(
        kubelet::run_kubelet(client, cfg, shutdown.clone()),
        registration.heartbeat(&shutdown),
    );
    registration.deregister().await;
    let _ = log_task.await;
    kubelet_result
}
