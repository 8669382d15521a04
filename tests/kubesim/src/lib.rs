//! kubesim: a local Kubernetes for tests and the dev loop — one process serving the
//! Kubernetes REST API over plain HTTP on loopback ([`server`]), plus a Job controller and
//! a kubelet that are ordinary API clients of it ([`job_controller`], [`kubelet`]).
//!
//! [`KubeSim`] starts everything in-process; the `kubesim` binary wraps it for shells.
//! [`node`] runs the same kubelet as the node of another API server (`kubesim node`).

pub mod control_plane;
pub mod job_controller;
pub mod kubelet;
pub mod node;
pub mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use server::Cluster;
pub use server::RequestRecord;
pub use server::faults::Faults;

/// The admin bearer token written into the kubeconfig.
pub const ADMIN_TOKEN: &str = "kubesim:admin";
/// Tokens of the built-in controllers (always authorized, recorded under their own users).
pub const JOB_CONTROLLER_TOKEN: &str = "kubesim:serviceaccount:kube-system:job-controller";
pub const KUBELET_TOKEN: &str = "kubesim:serviceaccount:kube-system:kubelet";

/// The bearer token a pod running as `namespace/service_account` presents.
pub fn service_account_token(namespace: &str, service_account: &str) -> String {
    format!("kubesim:serviceaccount:{namespace}:{service_account}")
}

/// How to start a [`KubeSim`].
#[derive(Debug, Clone)]
pub struct KubeSimOptions {
    /// Where to listen; default 127.0.0.1:0 (a free port).
    pub listen: SocketAddr,
    /// Where pod volumes and logs live; default a fresh temporary directory owned by the KubeSim.
    pub state_dir: Option<PathBuf>,
    /// Where to write the kubeconfig; default `state_dir/kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// Start the Job controller and the kubelet (default true).
    pub run_kubelet: bool,
    /// The `quarks-job` binary, for images whose repository ends in `quarks-job`.
    pub quarks_job_bin: Option<PathBuf>,
    /// More `PATTERN=PROGRAM` image mappings.
    pub extra_images: Vec<(String, PathBuf)>,
    /// Enforce RBAC for service-account users (admin is always allowed).
    pub enforce_rbac: bool,
}

impl Default for KubeSimOptions {
    fn default() -> Self {
        KubeSimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            kubeconfig: None,
            run_kubelet: true,
            quarks_job_bin: None,
            extra_images: Vec::new(),
            enforce_rbac: false,
        }
    }
}

/// A running kubesim.
pub struct KubeSim {
    url: String,
    state_dir: PathBuf,
    kubeconfig: PathBuf,
    cluster: Arc<Cluster>,
    tasks: Vec<JoinHandle<()>>,
    // Dropped last: removes the default state directory.
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for KubeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSim")
            .field("url", &self.url)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// A kube client for `url` presenting `token`.
pub async fn client_for(url: &str, token: &str) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::new(url.parse().context("kubesim url")?);
    config.auth_info = serde_json::from_value(serde_json::json!({"token": token}))?;
    config.default_namespace = "default".into();
    Ok(kube::Client::try_from(config)?)
}

/// The state directory: `given`, created if missing, or else a fresh temporary one named
/// `prefix…`, returned with it so that it lives as long as its owner and goes with it.
pub(crate) fn state_dir(
    given: Option<&Path>,
    prefix: &str,
) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    if let Some(d) = given {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        return Ok((None, d.to_path_buf()));
    }
    let t = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let p = t.path().to_path_buf();
    Ok((Some(t), p))
}

fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {url}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: admin\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\npreferences: {{}}\n"
    )
}

impl KubeSim {
    /// Starts the API server (and, with `run_kubelet`, the Job controller and kubelet);
    /// returns once the server accepts requests and the kubeconfig is written.
    pub async fn start(opts: KubeSimOptions) -> anyhow::Result<KubeSim> {
        let listener = TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("binding {}", opts.listen))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let (temp, state_dir) = state_dir(opts.state_dir.as_deref(), "kubesim-")?;
        let faults = Faults::new();
        let cluster = Arc::new(Cluster::new(
            state_dir.clone(),
            opts.enforce_rbac,
            addr.to_string(),
            faults.clone(),
        ));
        let weak = Arc::downgrade(&cluster);
        faults.set_compactor(Arc::new(move || {
            if let Some(c) = weak.upgrade() {
                c.store.compact();
            }
        }));
        let mut tasks = vec![
            tokio::spawn(server::http::serve(listener, cluster.clone())),
            tokio::spawn(server::gc::run(cluster.clone())),
        ];
        if opts.run_kubelet {
            let shutdown: CancellationToken = cluster.shutdown.clone();
            let jc = client_for(&url, JOB_CONTROLLER_TOKEN).await?;
            let token = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = job_controller::run_job_controller(jc, token).await {
                    tracing::error!(error = %e, "job controller stopped");
                }
            }));
            let mut images =
                kubelet::images::ImageTable::with_defaults(opts.quarks_job_bin.clone());
            for (pattern, program) in &opts.extra_images {
                images.add(pattern, program.clone());
            }
            let cfg = kubelet::KubeletConfig {
                node_name: kubelet::NODE_NAME.to_string(),
                state_dir: state_dir.clone(),
                api_url: url.clone(),
                images,
            };
            let kc = client_for(&url, KUBELET_TOKEN).await?;
            tasks.push(tokio::spawn(async move {
                if let Err(e) = kubelet::run_kubelet(kc, cfg, shutdown).await {
                    tracing::error!(error = %e, "kubelet stopped");
                }
            }));
        }
        let kubeconfig = opts
            .kubeconfig
            .clone()
            .unwrap_or_else(|| state_dir.join("kubeconfig"));
        if let Some(parent) = kubeconfig.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Written atomically so a watcher of the path never reads a partial file.
        let tmp = kubeconfig.with_extension("tmp");
        std::fs::write(&tmp, kubeconfig_yaml(&url))?;
        std::fs::rename(&tmp, &kubeconfig)?;
        Ok(KubeSim {
            url,
            state_dir,
            kubeconfig,
            cluster,
            tasks,
            _temp: temp,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client with the admin identity.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_for(&self.url, ADMIN_TOKEN).await
    }

    /// A client authenticating as a service account (what a pod would use).
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<kube::Client> {
        client_for(&self.url, &service_account_token(namespace, name)).await
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn faults(&self) -> Faults {
        self.cluster.faults.clone()
    }

    /// The requests served so far (the most recent 200 000), oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.cluster
            .log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops the kubelet (which stops its containers), the controllers and the server.
    pub async fn stop(mut self) {
        self.cluster.shutdown.cancel();
        for t in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for KubeSim {
    /// A KubeSim dropped without [`KubeSim::stop`] (a failed test) still asks everything to stop.
    fn drop(&mut self) {
        self.cluster.shutdown.cancel();
    }
}
