//! The real control plane of `../shared/k8s` (kube-apiserver + kube-controller-manager v1.24
//! and etcd, see its README) in a temporary directory, for tests and benchmarks that need the
//! real API server: started by its `control-plane start`, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// A running control plane.
pub struct ControlPlane {
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// The `control-plane` script beside the repository (`<repo>/../shared/k8s`).
    pub fn script() -> PathBuf {
        // CARGO_MANIFEST_DIR is <repo>/tests/kubesim.
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/k8s/control-plane")
    }

    /// Whether the script is there.
    pub fn available() -> bool {
        Self::script().exists()
    }

    /// Starts one (about 10 s); fails with the script's output when it cannot.
    pub fn start() -> anyhow::Result<ControlPlane> {
        let script = Self::script();
        if !script.exists() {
            bail!("the shared control plane is missing: {}", script.display());
        }
        let dir = tempfile::Builder::new()
            .prefix("control-plane-")
            .tempdir()?;
        let output = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .context("running control-plane start")?;
        // Constructed first, so that a half-started plane is stopped on the way out.
        let plane = ControlPlane { dir };
        if !output.status.success() {
            bail!(
                "control-plane start failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(plane)
    }

    /// Its admin kubeconfig (a `system:masters` token over TLS).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A client with the admin identity.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .status();
    }
}
