//! One pod's life on the node: image resolution, volume setup, init containers, containers
//! with their restart policy, status reporting, and teardown on deletion or deadline.
//!
//! One tokio task per pod ([`run_pod`]). All API effects of a pod go through [`PodWorker`]
//! (status patches, Events, the final delete); status rules are in [`super::status`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Event, EventSource, HostIP, ObjectReference, Pod,
    PodCondition, PodIP, PodStatus, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use super::env::{ConfigSources, NODE_IP, container_env, expand};
use super::images::ImageProgram;
use super::logs::{container_log_path, pod_log_dir};
use super::mounts::{MountRequest, plan};
use super::process::{ContainerProcess, ProcessSpec};
use super::status::{pod_conditions, pod_phase};
use super::tokens::{self, IssuedToken, TokenKey};
use super::volumes::{
    KUBECONFIG_FILE, KUBECONFIG_MOUNT_DIR, PodDir, SERVICE_ACCOUNT_MOUNT, materialize,
    referenced_objects, rewrite_tokens, write_identity,
};
use super::{Shared, retry_transient};

/// Shortened CrashLoopBackOff: Kubernetes waits 10s doubling to 5m; tests cannot.
const RESTART_BACKOFF_BASE: Duration = Duration::from_millis(250);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a pod waiting for a Secret/ConfigMap or an image looks again.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How soon a failed token renewal is tried again (the old token is still valid).
const TOKEN_RETRY_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn now() -> Time {
    Time(Timestamp::now())
}

/// Why the pod's containers are being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// `deletionTimestamp` set, the pod vanished, or the kubelet is shutting down.
    Deleted,
    /// `activeDeadlineSeconds` passed.
    DeadlineExceeded,
}

/// How a container (with its restarts) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Exited(i32),
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Init(usize),
    Main(usize),
}

/// What the volume setup leaves to do while the containers run.
struct VolumesReady {
    renew_tokens_after: Option<Duration>,
}

fn token_values(issued: &BTreeMap<TokenKey, IssuedToken>) -> BTreeMap<TokenKey, String> {
    issued
        .iter()
        .map(|(k, t)| (k.clone(), t.token.clone()))
        .collect()
}

struct PodState {
    init_statuses: Vec<ContainerStatus>,
    statuses: Vec<ContainerStatus>,
    init_done: bool,
    init_failed: bool,
    /// Set when the pod is failed by the kubelet itself (deadline).
    forced: Option<(String, String)>,
    conditions: Vec<PodCondition>,
}

struct PodWorker {
    shared: Arc<Shared>,
    api: Api<Pod>,
    name: String,
    namespace: String,
    uid: String,
    pod: Pod,
    dir: PodDir,
    restart_policy: String,
    start_time: Time,
    state: Mutex<PodState>,
    stop: CancellationToken,
    stop_reason: std::sync::Mutex<Option<StopReason>>,
    grace: std::sync::Mutex<Duration>,
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

fn new_status(c: &Container, reason: &str) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(waiting(reason, None)),
        ..Default::default()
    }
}

/// Runs one pod until it is deleted (or the kubelet stops). `pod_rx` carries every update of
/// the pod; its sender is dropped when the pod disappears from the API.
pub(crate) async fn run_pod(
    shared: Arc<Shared>,
    mut pod_rx: watch::Receiver<Pod>,
    shutdown: CancellationToken,
) {
    let pod = pod_rx.borrow_and_update().clone();
    let worker = Arc::new(PodWorker::new(shared, pod));
    // Watch for deletion, the deadline and shutdown; any of them stops the containers.
    let watcher = {
        let worker = worker.clone();
        let shutdown = shutdown.clone();
        let mut rx = pod_rx.clone();
        tokio::spawn(async move {
            let mut deadline = worker.deadline();
            loop {
                if let Some(grace) = deletion_grace(&rx.borrow()) {
                    worker.request_stop(StopReason::Deleted, Some(grace));
                    return;
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() {
                        worker.request_stop(StopReason::Deleted, Some(Duration::ZERO));
                        return;
                    },
                    () = shutdown.cancelled() => {
                        worker.request_stop(StopReason::Deleted, Some(Duration::from_secs(2)));
                        return;
                    }
                    () = sleep_until_opt(deadline) => {
                        deadline = None;
                        worker.request_stop(StopReason::DeadlineExceeded, None);
                        // Keep watching: a deleted pod must still be removed.
                    }
                }
            }
        })
    };
    worker.run().await;
    // After the containers are done, wait for the pod's deletion, then remove it for good.
    loop {
        if deletion_grace(&pod_rx.borrow()).is_some() || shutdown.is_cancelled() {
            break;
        }
        tokio::select! {
            changed = pod_rx.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
        }
    }
    watcher.abort();
    let vanished = pod_rx.has_changed().is_err();
    if !shutdown.is_cancelled() && !vanished {
        worker.remove_from_api().await;
    }
    if !shutdown.is_cancelled() {
        worker.clean_up();
    }
}

fn deletion_grace(pod: &Pod) -> Option<Duration> {
    pod.metadata.deletion_timestamp.as_ref()?;
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(30)
        .max(0);
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl PodWorker {
    fn new(shared: Arc<Shared>, pod: Pod) -> Self {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|i| !i.is_empty());
        let main_reason = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        let state = PodState {
            init_statuses: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| new_status(c, "PodInitializing"))
                .collect(),
            statuses: spec
                .containers
                .iter()
                .map(|c| new_status(c, main_reason))
                .collect(),
            init_done: !has_init,
            init_failed: false,
            forced: None,
            conditions: Vec::new(),
        };
        let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0);
        Self {
            api: Api::namespaced(shared.client.clone(), &namespace),
            dir: PodDir::new(&shared.state_dir, &uid),
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".to_string()),
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .unwrap_or_else(now),
            shared,
            name,
            namespace,
            uid,
            pod,
            state: Mutex::new(state),
            stop: CancellationToken::new(),
            stop_reason: std::sync::Mutex::new(None),
            grace: std::sync::Mutex::new(Duration::from_secs(u64::try_from(grace).unwrap_or(30))),
        }
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        let secs = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let started = self.start_time.0;
        let elapsed = Timestamp::now().duration_since(started);
        let remaining = std::time::Duration::try_from(
            k8s_openapi::jiff::SignedDuration::from_secs(secs) - elapsed,
        )
        .unwrap_or(Duration::ZERO);
        Some(tokio::time::Instant::now() + remaining)
    }

    fn request_stop(&self, reason: StopReason, grace: Option<Duration>) {
        if let Ok(mut r) = self.stop_reason.lock()
            && (r.is_none() || reason == StopReason::Deleted)
        {
            *r = Some(reason);
        }
        if let (Some(g), Ok(mut current)) = (grace, self.grace.lock()) {
            *current = (*current).min(g);
        }
        self.stop.cancel();
    }

    fn grace(&self) -> Duration {
        self.grace
            .lock()
            .map(|g| *g)
            .unwrap_or(Duration::from_secs(30))
    }

    fn stop_reason(&self) -> Option<StopReason> {
        self.stop_reason.lock().ok().and_then(|r| *r)
    }

    fn spec_containers(&self) -> (Vec<Container>, Vec<Container>) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        (spec.init_containers.unwrap_or_default(), spec.containers)
    }

    async fn run(self: &Arc<Self>) {
        self.flush().await;
        if !self.stop.is_cancelled()
            && self.pull_images().await
            && let Some(volumes) = self.set_up_volumes().await
        {
            // Renewal ends with the containers (it never finishes on its own).
            tokio::select! {
                () = self.run_containers() => {}
                () = self.renew_tokens(volumes.renew_tokens_after) => {}
            }
        }
        self.flush().await;
    }

    /// Resolves every image; an unresolvable one leaves the pod `Pending` with
    /// `ErrImagePull`, then `ImagePullBackOff`, until the pod goes away.
    async fn pull_images(&self) -> bool {
        let (init, main) = self.spec_containers();
        let mut failures = Vec::new();
        for (slot, c) in init
            .iter()
            .enumerate()
            .map(|(i, c)| (Slot::Init(i), c))
            .chain(main.iter().enumerate().map(|(i, c)| (Slot::Main(i), c)))
        {
            if let Err(e) = self
                .shared
                .images
                .resolve(c.image.as_deref().unwrap_or_default())
            {
                failures.push((slot, e.to_string()));
            }
        }
        if failures.is_empty() {
            return true;
        }
        for (reason, pause) in [
            ("ErrImagePull", Duration::from_millis(500)),
            ("ImagePullBackOff", Duration::MAX),
        ] {
            {
                let mut state = self.state.lock().await;
                for (slot, message) in &failures {
                    let status = state.slot_mut(*slot);
                    let msg = if reason == "ErrImagePull" {
                        message.clone()
                    } else {
                        format!("Back-off pulling image \"{}\"", status.image)
                    };
                    status.state = Some(waiting(reason, Some(msg)));
                }
            }
            if reason == "ErrImagePull" {
                for (_, message) in &failures {
                    self.event("Warning", "Failed", message).await;
                }
            }
            self.flush().await;
            if pause == Duration::MAX {
                self.stop.cancelled().await;
            } else {
                tokio::select! { () = tokio::time::sleep(pause) => {}, () = self.stop.cancelled() => {} }
            }
            if self.stop.is_cancelled() {
                break;
            }
        }
        false
    }

    /// Writes volumes and identity files, waiting (with `FailedMount` Events) while a
    /// referenced Secret or ConfigMap is missing or a token cannot be had. `None`: the pod
    /// was stopped first.
    async fn set_up_volumes(&self) -> Option<VolumesReady> {
        let mut last_message = String::new();
        loop {
            match self.try_set_up_volumes().await {
                Ok(ready) => return Some(ready),
                Err(message) => {
                    if message != last_message {
                        tracing::info!(pod = %self.name, namespace = %self.namespace, %message, "volume setup waiting");
                        self.event("Warning", "FailedMount", &message).await;
                        last_message = message;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY_INTERVAL) => {}
                () = self.stop.cancelled() => return None,
            }
        }
    }

    async fn try_set_up_volumes(&self) -> Result<VolumesReady, String> {
        let mut sources = self
            .fetch_sources()
            .await
            .map_err(|e| format!("fetching referenced objects: {e}"))?;
        let issued = tokens::request_all(&self.shared.client, &self.pod)
            .await
            .map_err(|e| format!("requesting a service account token: {e}"))?;
        sources.tokens = token_values(&issued);
        materialize(&self.dir, &self.pod, &sources).map_err(|e| e.to_string())?;
        if self.shared.kubesim_identity {
            write_identity(&self.dir, &self.pod, &self.shared.api_url)
                .map_err(|e| e.to_string())?;
        }
        Ok(VolumesReady {
            renew_tokens_after: tokens::renew_after(&issued),
        })
    }

    /// Renews the projected tokens whenever they reach 80 % of their lifetime, rewriting
    /// the files in place; runs until cancelled by its caller.
    async fn renew_tokens(&self, mut after: Option<Duration>) {
        while let Some(wait) = after {
            tokio::time::sleep(wait).await;
            after = match tokens::request_all(&self.shared.client, &self.pod).await {
                Ok(issued) => {
                    if let Err(e) = rewrite_tokens(&self.dir, &self.pod, &token_values(&issued)) {
                        tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "renewed token not written");
                    }
                    tokens::renew_after(&issued)
                }
                Err(e) => {
                    tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "token renewal failed; retrying");
                    Some(TOKEN_RETRY_INTERVAL)
                }
            };
        }
        std::future::pending::<()>().await;
    }

    async fn fetch_sources(&self) -> Result<ConfigSources, kube::Error> {
        let (config_maps, secrets) = referenced_objects(&self.pod);
        let mut sources = ConfigSources::default();
        let cm_api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        let secret_api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        for name in config_maps {
            if let Some(cm) = cm_api.get_opt(&name).await? {
                sources.config_maps.insert(name, cm);
            }
        }
        for name in secrets {
            if let Some(s) = secret_api.get_opt(&name).await? {
                sources.secrets.insert(name, s);
            }
        }
        Ok(sources)
    }

    async fn run_containers(self: &Arc<Self>) {
        let (init, main) = self.spec_containers();
        let mut sidecars = Vec::new();
        let sidecar_stop = CancellationToken::new();
        for (i, c) in init.iter().enumerate() {
            if c.restart_policy.as_deref() == Some("Always") {
                // A native sidecar: starts in order, runs alongside the containers.
                let me = self.clone();
                let c = c.clone();
                let stop = sidecar_stop.clone();
                sidecars.push(tokio::spawn(async move {
                    me.run_container(Slot::Init(i), &c, "Always", &stop).await
                }));
                continue;
            }
            let policy = if self.restart_policy == "Never" {
                "Never"
            } else {
                "OnFailure"
            };
            match self
                .run_container(Slot::Init(i), c, policy, &self.stop)
                .await
            {
                Outcome::Exited(0) => {}
                Outcome::Exited(_) => {
                    self.state.lock().await.init_failed = true;
                    sidecar_stop.cancel();
                    self.fail_waiting_containers("Init container failed").await;
                    return;
                }
                Outcome::Stopped => {
                    sidecar_stop.cancel();
                    return;
                }
            }
        }
        self.state.lock().await.init_done = true;
        self.flush().await;
        let policy = self.restart_policy.clone();
        join_all(
            main.iter()
                .enumerate()
                .map(|(i, c)| self.run_container(Slot::Main(i), c, &policy, &self.stop)),
        )
        .await;
        sidecar_stop.cancel();
        for s in sidecars {
            let _ = s.await;
        }
    }

    /// Main containers that never started when the pod failed in init stay waiting in a
    /// real cluster too; we only refresh the status.
    async fn fail_waiting_containers(&self, _why: &str) {
        self.flush().await;
    }

    /// Runs one container, restarting it per `policy`, until it stays down or `stop` fires.
    async fn run_container(
        &self,
        slot: Slot,
        c: &Container,
        policy: &str,
        stop: &CancellationToken,
    ) -> Outcome {
        let mut restarts: u32 = 0;
        loop {
            if stop.is_cancelled() || self.stop.is_cancelled() {
                return Outcome::Stopped;
            }
            let mut process = match self.start_container(slot, c).await {
                Ok(p) => p,
                Err(StartFailure::Config(message)) => {
                    self.set_state(slot, waiting("CreateContainerConfigError", Some(message)))
                        .await;
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_INTERVAL) => continue,
                        () = stop.cancelled() => return Outcome::Stopped,
                        () = self.stop.cancelled() => return Outcome::Stopped,
                    }
                }
                Err(StartFailure::Start(message)) => {
                    let at = now();
                    let terminated = ContainerStateTerminated {
                        exit_code: 128,
                        reason: Some("StartError".to_string()),
                        message: Some(message),
                        started_at: Some(at.clone()),
                        finished_at: Some(at),
                        ..Default::default()
                    };
                    match self
                        .after_exit(slot, c, policy, terminated, &mut restarts, stop)
                        .await
                    {
                        Some(outcome) => return outcome,
                        None => continue,
                    }
                }
            };
            let started_at = now();
            self.container_started_events(slot, c);
            let container_id = format!("kubesim://{}/{}/{}", self.uid, c.name, process.pid());
            {
                let mut state = self.state.lock().await;
                let status = state.slot_mut(slot);
                status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(started_at.clone()),
                    }),
                    ..Default::default()
                });
                status.started = Some(true);
                // No probes in kubesim: a running container is ready.
                status.ready = true;
                status.container_id = Some(container_id.clone());
            }
            self.flush().await;
            let exit = tokio::select! {
                exit = process.wait() => exit,
                () = stop.cancelled() => process.terminate(self.grace()).await,
                () = self.stop.cancelled() => process.terminate(self.grace()).await,
            };
            let stopped = stop.is_cancelled() || self.stop.is_cancelled();
            let (code, signal) = match exit {
                Ok(e) => (e.code, e.signal),
                Err(e) => {
                    tracing::warn!(pod = %self.name, container = %c.name, error = %e, "waiting for container failed");
                    (255, None)
                }
            };
            let terminated = ContainerStateTerminated {
                exit_code: code,
                signal,
                reason: Some(if code == 0 { "Completed" } else { "Error" }.to_string()),
                started_at: Some(started_at),
                finished_at: Some(now()),
                container_id: Some(container_id),
                message: None,
            };
            if stopped {
                self.set_terminated(slot, terminated).await;
                return Outcome::Stopped;
            }
            match self
                .after_exit(slot, c, policy, terminated, &mut restarts, stop)
                .await
            {
                Some(outcome) => return outcome,
                None => continue,
            }
        }
    }

    /// Records an exit; returns the final outcome, or `None` after the restart back-off.
    async fn after_exit(
        &self,
        slot: Slot,
        c: &Container,
        policy: &str,
        terminated: ContainerStateTerminated,
        restarts: &mut u32,
        stop: &CancellationToken,
    ) -> Option<Outcome> {
        let code = terminated.exit_code;
        let restart = match policy {
            "Always" => true,
            "OnFailure" => code != 0,
            _ => false,
        };
        if !restart {
            self.set_terminated(slot, terminated).await;
            return Some(Outcome::Exited(code));
        }
        let delay = RESTART_BACKOFF_BASE
            .saturating_mul(2u32.saturating_pow(*restarts))
            .min(RESTART_BACKOFF_MAX);
        *restarts += 1;
        {
            let mut state = self.state.lock().await;
            let status = state.slot_mut(slot);
            status.last_state = Some(ContainerState {
                terminated: Some(terminated),
                ..Default::default()
            });
            status.restart_count += 1;
            status.ready = false;
            status.started = Some(false);
            status.state = Some(waiting(
                "CrashLoopBackOff",
                Some(format!(
                    "back-off {}ms restarting failed container={} pod={}_{}({})",
                    delay.as_millis(),
                    c.name,
                    self.name,
                    self.namespace,
                    self.uid
                )),
            ));
        }
        self.flush().await;
        tokio::select! {
            () = tokio::time::sleep(delay) => None,
            () = stop.cancelled() => Some(Outcome::Stopped),
            () = self.stop.cancelled() => Some(Outcome::Stopped),
        }
    }

    async fn set_state(&self, slot: Slot, state: ContainerState) {
        self.state.lock().await.slot_mut(slot).state = Some(state);
        self.flush().await;
    }

    async fn set_terminated(&self, slot: Slot, terminated: ContainerStateTerminated) {
        {
            let mut state = self.state.lock().await;
            let status = state.slot_mut(slot);
            status.state = Some(ContainerState {
                terminated: Some(terminated),
                ..Default::default()
            });
            status.ready = false;
            status.started = Some(false);
        }
        self.flush().await;
    }

    async fn start_container(
        &self,
        slot: Slot,
        c: &Container,
    ) -> Result<ContainerProcess, StartFailure> {
        let image = c.image.clone().unwrap_or_default();
        let program = self
            .shared
            .images
            .resolve(&image)
            .map_err(|e| StartFailure::Start(e.to_string()))?;
        let sources = self
            .fetch_sources()
            .await
            .map_err(|e| StartFailure::Config(e.to_string()))?;
        let automount = self.automount_identity(c);
        let env = container_env(&self.pod, c, &sources, &self.base_env(automount))
            .map_err(|e| StartFailure::Config(e.to_string()))?;
        let argv = container_argv(&program, c, &env);
        let mounts = self
            .mount_requests(c, automount)
            .map_err(StartFailure::Start)?;
        let working_dir = PathBuf::from(
            c.working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
        );
        let staging = self.dir.staging(&format!(
            "{}-{}",
            match slot {
                Slot::Init(_) => "init",
                Slot::Main(_) => "main",
            },
            c.name
        ));
        // A previous attempt's staging directories are still there; plan afresh.
        let _ = std::fs::remove_dir_all(&staging);
        let plan = plan(
            &mounts,
            &working_dir,
            std::slice::from_ref(&self.shared.state_dir),
            &staging,
        )
        .map_err(|e| StartFailure::Start(e.to_string()))?;
        let log_path =
            container_log_path(&self.shared.state_dir, &self.namespace, &self.name, &c.name);
        let image_id = match &program {
            ImageProgram::HostTools => "kubesim://host-tools".to_string(),
            ImageProgram::Entrypoint(p) => format!("kubesim://{}", p.display()),
        };
        self.state.lock().await.slot_mut(slot).image_id = image_id;
        ContainerProcess::spawn(ProcessSpec {
            argv,
            env,
            mounts: plan,
            log_path,
        })
        .map_err(|e| StartFailure::Start(format!("failed to start container \"{}\": {e}", c.name)))
    }

    /// Whether the container gets kubesim's own service-account and kubeconfig mounts: only
    /// on kubesim's plain-http server (a real server's admission adds a projected volume
    /// instead), unless the pod opts out or the container mounts that path itself.
    fn automount_identity(&self, c: &Container) -> bool {
        let spec = self.pod.spec.as_ref();
        let enabled = spec.and_then(|s| s.automount_service_account_token) != Some(false);
        let own = c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| Path::new(&m.mount_path) == Path::new(SERVICE_ACCOUNT_MOUNT));
        self.shared.kubesim_identity && enabled && !own
    }

    fn base_env(&self, automount: bool) -> Vec<(String, String)> {
        let (host, port) = host_port(&self.shared.api_url);
        let mut env = vec![
            ("PATH".to_string(), DEFAULT_PATH.to_string()),
            ("HOSTNAME".to_string(), self.name.clone()),
            ("HOME".to_string(), "/root".to_string()),
            ("KUBERNETES_SERVICE_HOST".to_string(), host.clone()),
            ("KUBERNETES_SERVICE_PORT".to_string(), port.clone()),
            (
                "KUBERNETES_PORT".to_string(),
                format!("tcp://{host}:{port}"),
            ),
        ];
        if automount {
            env.push((
                "KUBECONFIG".to_string(),
                format!("{KUBECONFIG_MOUNT_DIR}/{KUBECONFIG_FILE}"),
            ));
        }
        env
    }

    fn mount_requests(&self, c: &Container, automount: bool) -> Result<Vec<MountRequest>, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let volumes: BTreeMap<String, _> = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name.clone(), v))
            .collect();
        let mut out = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let volume = volumes.get(&m.name).ok_or_else(|| {
                format!("volumeMount {:?} refers to no volume of the pod", m.name)
            })?;
            let mut source = if let Some(host) = &volume.host_path {
                PathBuf::from(&host.path)
            } else {
                self.dir.volume(&m.name)
            };
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if !super::volumes::is_safe_relative(sub) {
                    return Err(format!(
                        "subPath {sub:?} must be a relative path without '..'"
                    ));
                }
                source = source.join(sub);
                if !source.exists() {
                    // Like the kubelet: a missing subPath of a writable volume is created.
                    std::fs::create_dir_all(&source)
                        .map_err(|e| format!("creating subPath {sub:?}: {e}"))?;
                }
            }
            // Secret, configMap, downwardAPI and projected volumes are always read-only.
            let inherently_ro = volume.secret.is_some()
                || volume.config_map.is_some()
                || volume.downward_api.is_some()
                || volume.projected.is_some();
            out.push(MountRequest {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only == Some(true) || inherently_ro,
            });
        }
        if automount {
            out.push(MountRequest {
                source: self.dir.service_account(),
                target: PathBuf::from(SERVICE_ACCOUNT_MOUNT),
                read_only: true,
            });
            out.push(MountRequest {
                source: self.dir.kubeconfig_dir(),
                target: PathBuf::from(KUBECONFIG_MOUNT_DIR),
                read_only: true,
            });
        }
        Ok(out)
    }

    /// Writes the pod status (whole, as a merge patch: the kubelet owns it).
    async fn flush(&self) {
        let mut state = self.state.lock().await;
        // Like the kubelet, the deadline fails the pod at once; containers are then stopped.
        if state.forced.is_none() && self.stop_reason() == Some(StopReason::DeadlineExceeded) {
            state.forced = Some((
                "DeadlineExceeded".to_string(),
                "Pod was active on the node longer than the specified deadline".to_string(),
            ));
        }
        let phase = match &state.forced {
            Some(_) => "Failed",
            None => pod_phase(
                &self.restart_policy,
                state.init_done,
                state.init_failed,
                &state.statuses,
            ),
        };
        // A pod is not finished while a (sidecar) init container still runs; the kubelet
        // stops sidecars once the containers are done, and only then is the phase final.
        let sidecar_running = state.init_statuses.iter().any(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.running.as_ref())
                .is_some()
        });
        let phase = if sidecar_running && matches!(phase, "Succeeded" | "Failed") {
            "Running"
        } else {
            phase
        };
        let t = now();
        let conditions = pod_conditions(
            phase,
            state.init_done,
            &state.init_statuses,
            &state.statuses,
            &self.start_time,
            &t,
            &state.conditions,
        );
        state.conditions = conditions.clone();
        let status = PodStatus {
            phase: Some(phase.to_string()),
            conditions: Some(conditions),
            host_ip: Some(NODE_IP.to_string()),
            host_ips: Some(vec![HostIP {
                ip: NODE_IP.to_string(),
            }]),
            pod_ip: Some(NODE_IP.to_string()),
            pod_ips: Some(vec![PodIP {
                ip: NODE_IP.to_string(),
            }]),
            start_time: Some(self.start_time.clone()),
            qos_class: Some("BestEffort".to_string()),
            init_container_statuses: (!state.init_statuses.is_empty())
                .then(|| state.init_statuses.clone()),
            container_statuses: Some(state.statuses.clone()),
            reason: state.forced.as_ref().map(|f| f.0.clone()),
            message: state.forced.as_ref().map(|f| f.1.clone()),
            ..Default::default()
        };
        let patch = Patch::Merge(serde_json::json!({ "status": status }));
        // Held across the write so that concurrent containers' updates land in order.
        let pp = PatchParams::default();
        let write = retry_transient(|| self.api.patch_status(&self.name, &pp, &patch));
        if let Err(e) = write.await {
            tracing::debug!(pod = %self.name, namespace = %self.namespace, error = %e, "pod status update failed");
        }
        drop(state);
    }

    async fn event(&self, type_: &str, reason: &str, message: &str) {
        let api: Api<Event> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        let event = self.build_event(None, type_, reason, message);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(pod = %self.name, error = %e, "event not recorded");
        }
    }

    /// Records the Normal events of a container start (`Pulled`, `Created`, `Started`, as
    /// `kubectl describe` shows them) in the background, so they never delay the container.
    fn container_started_events(&self, slot: Slot, c: &Container) {
        let field_path = match slot {
            Slot::Init(_) => format!("spec.initContainers{{{}}}", c.name),
            Slot::Main(_) => format!("spec.containers{{{}}}", c.name),
        };
        let image = c.image.clone().unwrap_or_default();
        let events = [
            (
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            ),
            ("Created", format!("Created container: {}", c.name)),
            ("Started", format!("Started container {}", c.name)),
        ]
        .map(|(reason, message)| {
            self.build_event(Some(field_path.clone()), "Normal", reason, &message)
        });
        let api: Api<Event> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        tokio::spawn(async move {
            for event in events {
                if let Err(e) = api.create(&PostParams::default(), &event).await {
                    tracing::debug!(error = %e, "event not recorded");
                }
            }
        });
    }

    fn build_event(
        &self,
        field_path: Option<String>,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Event {
        let t = now();
        Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", self.name)),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                uid: Some(self.uid.clone()),
                field_path,
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(type_.to_string()),
            source: Some(EventSource {
                component: Some("kubelet".to_string()),
                host: Some(self.shared.node_name.clone()),
            }),
            reporting_component: Some("kubelet".to_string()),
            reporting_instance: Some(self.shared.node_name.clone()),
            first_timestamp: Some(t.clone()),
            last_timestamp: Some(t),
            count: Some(1),
            ..Default::default()
        }
    }

    /// The kubelet's last word on a deleted pod: delete it with grace period 0.
    async fn remove_from_api(&self) {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match retry_transient(|| self.api.delete(&self.name, &dp)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %self.name, namespace = %self.namespace, error = %e, "final pod delete failed")
            }
        }
    }

    fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(self.dir.root());
        let _ = std::fs::remove_dir_all(pod_log_dir(
            &self.shared.state_dir,
            &self.namespace,
            &self.name,
        ));
    }
}

impl PodState {
    fn slot_mut(&mut self, slot: Slot) -> &mut ContainerStatus {
        match slot {
            Slot::Init(i) => &mut self.init_statuses[i],
            Slot::Main(i) => &mut self.statuses[i],
        }
    }
}

enum StartFailure {
    /// The container's configuration references something missing: retried.
    Config(String),
    /// The container could not be started: counts as an exit with code 128.
    Start(String),
}

/// `argv` for a container: Kubernetes' command/args over the image's entrypoint, with
/// `$(VAR)` expanded from the container environment.
pub(crate) fn container_argv(
    program: &ImageProgram,
    c: &Container,
    env: &[(String, String)],
) -> Vec<String> {
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let command: Vec<String> = c
        .command
        .iter()
        .flatten()
        .map(|s| expand(s, lookup))
        .collect();
    let args: Vec<String> = c.args.iter().flatten().map(|s| expand(s, lookup)).collect();
    match program {
        // Base images have no entrypoint and `sh` as their default command.
        ImageProgram::HostTools => {
            if !command.is_empty() {
                command.into_iter().chain(args).collect()
            } else if !args.is_empty() {
                args
            } else {
                vec!["sh".to_string()]
            }
        }
        // The image holds one program: `command[0]` names it, whatever its path.
        ImageProgram::Entrypoint(p) => std::iter::once(p.display().to_string())
            .chain(command.into_iter().skip(1))
            .chain(args)
            .collect(),
    }
}

/// `(host, port)` of the API URL, for the `KUBERNETES_SERVICE_*` variables.
fn host_port(api_url: &str) -> (String, String) {
    let rest = api_url.split("://").nth(1).unwrap_or(api_url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let default_port = if api_url.starts_with("https") {
        "443"
    } else {
        "80"
    };
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_string(), p.to_string())
        }
        _ => (authority.to_string(), default_port.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn argv_follows_command_args_and_the_image() {
        let env = vec![("WHO".to_string(), "world".to_string())];
        let host = ImageProgram::HostTools;
        let c = container(
            json!({"name": "c", "command": ["sh", "-c"], "args": ["echo $(WHO) $$(WHO) $(NOPE)"]}),
        );
        assert_eq!(
            container_argv(&host, &c, &env),
            ["sh", "-c", "echo world $(WHO) $(NOPE)"]
        );
        let only_args = container(json!({"name": "c", "args": ["echo", "hi"]}));
        assert_eq!(container_argv(&host, &only_args, &env), ["echo", "hi"]);
        assert_eq!(
            container_argv(&host, &container(json!({"name": "c"})), &env),
            ["sh"]
        );
        let bin = ImageProgram::Entrypoint(PathBuf::from("/t/quarks-job"));
        let qj = container(
            json!({"name": "c", "command": ["/usr/bin/quarks-job", "persist-output"], "args": ["--x=$(WHO)"]}),
        );
        assert_eq!(
            container_argv(&bin, &qj, &env),
            ["/t/quarks-job", "persist-output", "--x=world"]
        );
        let qj_args = container(json!({"name": "c", "args": ["run"]}));
        assert_eq!(
            container_argv(&bin, &qj_args, &env),
            ["/t/quarks-job", "run"]
        );
    }

    #[test]
    fn api_url_gives_service_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:6443"),
            ("127.0.0.1".into(), "6443".into())
        );
        assert_eq!(
            host_port("https://example.com/base"),
            ("example.com".into(), "443".into())
        );
    }
}
