//! kubesim's kubelet: one node (`kubesim-node` in kubesim, any name under `kubesim node`),
//! an ordinary API client that binds unscheduled pods to itself and runs them as local
//! processes. The same code runs in-process in kubesim and as the node of a real API
//! server ([`crate::node`]).
//!
//! This module owns the watch of Pods and the map of pod workers (one tokio task per pod,
//! see [`pod`]). Images map to programs via [`images`]; volumes are files under
//! `state_dir/pods/<uid>` ([`volumes`], projected tokens from TokenRequest via [`tokens`])
//! mounted into each container's own mount namespace ([`mounts`], [`process`]); logs go
//! to [`logs::container_log_path`].
//!
//! Deliberate differences from a real kubelet (kept small, and written down here):
//! * containers are host processes (root, host network, host PID namespace, the host's
//!   files) isolated only by their own mount namespace; the kubelet's state directory is
//!   covered inside it. `securityContext`, resources, probes, ports, `lifecycle` hooks and
//!   `subPathExpr` are ignored; a running container counts as ready;
//! * on kubesim's plain-http server (which has no ServiceAccount admission) pods without a
//!   volume at the service-account path get kubesim's own identity files there, plus a
//!   kubeconfig (`KUBECONFIG`, under `/var/run/secrets/kubesim`), because kube clients'
//!   in-cluster config insists on https. Against an https server nothing is added: pods use
//!   the admission-added projected volume and in-cluster config;
//! * the restart back-off is 250 ms doubling to 5 s (Kubernetes: 10 s to 5 min); images are
//!   never pulled, so `ImagePullBackOff` lasts until the pod is deleted;
//! * volumes are set up once (no refresh of secret/configMap contents; projected tokens
//!   alone are renewed, at 80 % of their lifetime); `resourceFieldRef` in env and
//!   downward-API volumes is skipped; the ServiceAccount object's own
//!   `automountServiceAccountToken` is not consulted (the pod's is; on a real server the
//!   admission plugin consults both before adding the volume).

pub mod env;
pub mod images;
pub mod logs;
pub mod mounts;
mod pod;
pub mod process;
pub mod status;
pub mod tokens;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The name of kubesim's only node (and the default of `kubesim node --name`).
pub const NODE_NAME: &str = "kubesim-node";

/// How the kubelet is set up.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The node this kubelet is: pods bound to it run here, unbound pods are bound to it.
    pub node_name: String,
    /// Where pod volumes, staging mounts and logs live (`pods/<uid>`, `logs/...`).
    pub state_dir: PathBuf,
    /// The API server URL given to pods (their kubeconfig and `KUBERNETES_SERVICE_*`).
    pub api_url: String,
    pub images: images::ImageTable,
}

/// What every pod worker shares.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) node_name: String,
    /// Whether pods get kubesim's own identity files (plain-http kubesim server, which has
    /// no ServiceAccount admission); against https servers they use in-cluster config.
    pub(crate) kubesim_identity: bool,
    pub(crate) state_dir: PathBuf,
    pub(crate) api_url: String,
    pub(crate) images: images::ImageTable,
}

struct Worker {
    tx: watch::Sender<Pod>,
    task: JoinHandle<()>,
}

/// Runs the kubelet until `shutdown`: then stops every container (short grace) and returns.
pub async fn run_kubelet(
    client: Client,
    cfg: KubeletConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)?;
    // Resolve symlinks so the state directory can be hidden from containers reliably.
    let state_dir = std::fs::canonicalize(&cfg.state_dir)?;
    let shared = Arc::new(Shared {
        client: client.clone(),
        node_name: cfg.node_name,
        kubesim_identity: cfg.api_url.starts_with("http://"),
        state_dir,
        api_url: cfg.api_url,
        images: cfg.images,
    });
    let pods: Api<Pod> = Api::all(client);
    let mut events = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.next() => event,
        };
        let Some(event) = event else { break };
        match event {
            Ok(watcher::Event::Apply(pod)) => {
                handle_pod(&shared, &pods, &mut workers, &shutdown, pod).await
            }
            Ok(watcher::Event::InitApply(pod)) => {
                listed.insert(pod.metadata.uid.clone().unwrap_or_default());
                handle_pod(&shared, &pods, &mut workers, &shutdown, pod).await;
            }
            Ok(watcher::Event::Delete(pod)) => {
                // Dropping the sender tells the worker the pod is gone.
                workers.remove(&pod.metadata.uid.unwrap_or_default());
            }
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitDone) => {
                workers.retain(|uid, _| listed.contains(uid));
            }
            Err(e) => tracing::warn!(error = %e, "kubelet pod watch failed; retrying"),
        }
        workers.retain(|_, w| !w.task.is_finished());
    }
    let tasks: Vec<_> = workers.into_values().map(|w| w.task).collect();
    // Workers saw `shutdown` too and are stopping their containers.
    let _ = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(tasks)).await;
    Ok(())
}

async fn handle_pod(
    shared: &Arc<Shared>,
    pods: &Api<Pod>,
    workers: &mut HashMap<String, Worker>,
    shutdown: &CancellationToken,
    pod: Pod,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(worker) = workers.get(&uid) {
        worker.tx.send_replace(pod);
        return;
    }
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    match node {
        // Pods for another scheduler are that scheduler's to bind, as with kube-scheduler.
        None if !for_default_scheduler(&pod) => {}
        None => {
            if pod.metadata.deletion_timestamp.is_none() {
                bind(shared, &pod).await;
            } else {
                // Never scheduled and being deleted: nothing runs, the kubelet removes it.
                remove_unstarted(pods, &pod).await;
            }
        }
        Some(n) if n != shared.node_name => {}
        Some(_) => {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            let finished = matches!(phase, Some("Succeeded" | "Failed"));
            if pod.metadata.deletion_timestamp.is_some() {
                // Being deleted and not running here (e.g. finished before this kubelet
                // started): nothing to stop, just remove it.
                remove_unstarted(pods, &pod).await;
                let _ =
                    std::fs::remove_dir_all(volumes::PodDir::new(&shared.state_dir, &uid).root());
                return;
            }
            if finished {
                // Finished before this kubelet started; nothing to run.
                return;
            }
            let (tx, rx) = watch::channel(pod);
            let task = tokio::spawn(pod::run_pod(shared.clone(), rx, shutdown.clone()));
            workers.insert(uid, Worker { tx, task });
        }
    }
}

/// Whether the pod asks for the default scheduler (no `schedulerName`, or
/// `default-scheduler`): the only pods this node binds.
fn for_default_scheduler(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|name| name.is_empty() || name == "default-scheduler")
}

async fn remove_unstarted(pods: &Api<Pod>, pod: &Pod) {
    let (Some(name), Some(ns)) = (
        pod.metadata.name.as_deref(),
        pod.metadata.namespace.as_deref(),
    ) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(pods.clone().into_client(), ns);
    let dp = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    if let Err(e) = api.delete(name, &dp).await {
        tracing::debug!(pod = name, error = %e, "delete of unscheduled pod failed");
    }
}

/// Binds a pod to this node as the scheduler would (`pods/binding`), falling back to setting
/// `spec.nodeName` if the server does not serve the binding subresource.
async fn bind(shared: &Shared, pod: &Pod) {
    let (Some(name), Some(ns)) = (pod.metadata.name.clone(), pod.metadata.namespace.clone()) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Node".to_string()),
            name: Some(shared.node_name.clone()),
            ..Default::default()
        },
    };
    let pp = PostParams::default();
    let result: Result<serde_json::Value, _> =
        retry_transient(|| api.create_subresource("binding", &name, &pp, &binding)).await;
    match result {
        Ok(_) => scheduled_event(shared, pod).await,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => {
            let patch = serde_json::json!({ "spec": { "nodeName": shared.node_name } });
            if let Err(e) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(pod = %name, namespace = %ns, error = %e, "binding pod failed");
            }
        }
        // 409: already bound (we will see the update).
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, namespace = %ns, error = %e, "binding pod failed"),
    }
}

/// The scheduler's `Scheduled` Event, the first line of `kubectl describe pod`'s events.
async fn scheduled_event(shared: &Shared, pod: &Pod) {
    let (Some(name), Some(ns)) = (pod.metadata.name.clone(), pod.metadata.namespace.clone()) else {
        return;
    };
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        reason: Some("Scheduled".to_string()),
        message: Some(format!(
            "Successfully assigned {ns}/{name} to {}",
            shared.node_name
        )),
        type_: Some("Normal".to_string()),
        // Reported as the real scheduler reports it (new-style event fields only).
        event_time: Some(now),
        action: Some("Binding".to_string()),
        reporting_component: Some("default-scheduler".to_string()),
        reporting_instance: Some("default-scheduler-kubesim".to_string()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(shared.client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::debug!(pod = %name, error = %e, "scheduled event not recorded");
    }
}

/// Attempts of an API write that failed transiently before giving up.
const RETRY_ATTEMPTS: u32 = 8;

/// Whether a failed request is worth repeating: server errors, throttling, and failures to
/// reach the server at all. 4xx answers are final.
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs an API request, repeating it on transient failures with a short exponential
/// back-off (50 ms doubling to 2 s, about 7 s in all), as client-go's retry helpers do for
/// the kubelet's status and delete calls. The kubelet's writes must not be lost to one
/// failed request: a lost final status would leave a finished pod `Running` forever.
pub(crate) async fn retry_transient<T, F, Fut>(mut request: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(50);
    for _ in 1..RETRY_ATTEMPTS {
        match request().await {
            Err(e) if is_transient(&e) => {
                tracing::debug!(error = %e, ?delay, "transient API failure; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            result => return result,
        }
    }
    request().await
}
