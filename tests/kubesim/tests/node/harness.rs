//! A real control plane and a `kubesim node` process for one test, stopped on drop.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::{Api, Client};
use serde_json::json;

/// The env var that turns the real-cluster tests off.
pub const OFF_SWITCH: &str = "KUBESIM_REAL_CLUSTER_TESTS";

/// A running control plane for one test; `stop`ped on drop.
pub struct ControlPlane {
    plane: kubesim::control_plane::ControlPlane,
}

impl ControlPlane {
    /// Starts one, or `None` when the tests are switched off. Panics when the control
    /// plane is missing and the tests are not switched off.
    pub fn start() -> Option<ControlPlane> {
        if std::env::var(OFF_SWITCH).is_ok_and(|v| v == "off" || v == "0") {
            eprintln!("{OFF_SWITCH}=off: real-cluster test not run");
            return None;
        }
        assert!(
            kubesim::control_plane::ControlPlane::available(),
            "{} is missing (set {OFF_SWITCH}=off to skip the real-cluster tests)",
            kubesim::control_plane::ControlPlane::script().display()
        );
        let plane = kubesim::control_plane::ControlPlane::start().expect("control plane starts");
        Some(ControlPlane { plane })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.plane.kubeconfig()
    }

    pub async fn client(&self) -> Client {
        self.plane.client().await.expect("client")
    }

    /// Runs kubectl against this control plane; returns stdout (panics on failure).
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .output()
            .expect("running kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A `kubesim node` process; SIGTERM and wait on drop.
pub struct NodeProcess {
    child: Child,
    pub name: String,
    // Kept until the process is gone: pod volumes and logs live here.
    _state_dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Starts `kubesim node` for `cp` with `extra` arguments.
    pub fn start(cp: &ControlPlane, name: &str, extra: &[&str]) -> NodeProcess {
        let state_dir = tempfile::Builder::new()
            .prefix("kubesim-node-")
            .tempdir()
            .expect("tempdir");
        let child = Command::new(env!("CARGO_BIN_EXE_kubesim"))
            .arg("node")
            .arg("--kubeconfig")
            .arg(cp.kubeconfig())
            .arg("--name")
            .arg(name)
            .arg("--state-dir")
            .arg(state_dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting kubesim node");
        NodeProcess {
            child,
            name: name.to_string(),
            _state_dir: state_dir,
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().expect("waiting for kubesim node")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the Node reports Ready and the namespace's default ServiceAccount exists
/// (ServiceAccount admission refuses pods before).
pub async fn wait_ready(client: &Client, node: &str, namespace: &str) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = wait_for("node Ready", Duration::from_secs(60), || async {
        let n = nodes.get_opt(node).await.ok().flatten()?;
        let ok = n
            .status
            .as_ref()?
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ok.then_some(n)
    })
    .await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_for(
        "default ServiceAccount",
        Duration::from_secs(60),
        || async { sas.get_opt("default").await.ok().flatten() },
    )
    .await;
    ready
}

/// Creates a namespace.
pub async fn namespace(client: &Client, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    api.create(&Default::default(), &ns)
        .await
        .expect("namespace");
}

/// Creates a pod from JSON and waits until it has finished (Succeeded or Failed).
pub async fn run_pod(client: &Client, namespace: &str, pod: serde_json::Value) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(pod).expect("pod");
    let name = pod.metadata.name.clone().expect("name");
    api.create(&Default::default(), &pod)
        .await
        .expect("create pod");
    wait_for(
        &format!("pod {name} to finish"),
        Duration::from_secs(60),
        || async {
            let p = api.get(&name).await.ok()?;
            let phase = p.status.as_ref()?.phase.clone()?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(p)
        },
    )
    .await
}

/// The exit code of the pod's first container.
pub fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}
