//! Test harness: a cluster (kubesim or a given kubeconfig), a namespace of the test's own,
//! operator processes, and polling helpers with deadlines (never fixed sleeps for outcomes).
//!
//! Two backends run the same tests: each test's own in-process kubesim (the default), or the
//! cluster `QUARKS_TEST_KUBECONFIG` names (scripts/test: the real kube-apiserver and
//! kube-controller-manager of `../shared/k8s` with `kubesim node` as the node). A test that
//! needs kubesim itself (fault injection, its request log) says so in its name,
//! `kubesim_only_…`, and is left out of the real-cluster pass by that name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubesim::{KubeSim, KubeSimOptions};
use quarks_job::crd::{QuarksJob, QuarksJobStatus};
use tokio::process::{Child, Command};

/// Generous deadline for anything the operator should do "at once" (CI machines are slow).
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    /// Set when the test runs on its own kubesim.
    pub sim: Option<KubeSim>,
    pub namespace: String,
    pub monitored_id: String,
}

/// A namespaced Kubernetes kind (Secret, Job, QuarksJob, ...).
pub trait Namespaced:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Cluster {
    /// A cluster with a fresh namespace labelled for a fresh monitored id.
    pub async fn start() -> Cluster {
        Cluster::start_with(KubeSimOptions::default()).await
    }

    /// Like [`Cluster::start`], with kubesim started with `options` (e.g. `enforce_rbac`);
    /// `quarks_job_bin` is always this build's binary. A given kubeconfig ignores them.
    pub async fn start_with(options: KubeSimOptions) -> Cluster {
        let (client, kubeconfig, sim) = match std::env::var_os("QUARKS_TEST_KUBECONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                let kc = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
                let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .expect("config");
                (kube::Client::try_from(config).expect("client"), path, None)
            }
            None => {
                let sim = KubeSim::start(KubeSimOptions {
                    quarks_job_bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_quarks-job"))),
                    ..options
                })
                .await
                .expect("kubesim starts");
                let client = sim.client().await.expect("client");
                (client, sim.kubeconfig_path().to_path_buf(), Some(sim))
            }
        };
        let cluster = Cluster {
            client,
            kubeconfig,
            sim,
            namespace: unique("qjob-test"),
            monitored_id: unique("id"),
        };
        cluster
            .create_namespace(&cluster.namespace, Some(&cluster.monitored_id))
            .await;
        cluster.ensure_helper_cluster_role().await;
        cluster
    }

    /// The output helper's ClusterRole under the operator's default name
    /// (`--persist-output-cluster-role`), as the chart would create it: the operators of the
    /// tests run with an admin kubeconfig and no chart, and bind it in each namespace. Server-side
    /// applied with the same rules by every test of a shared cluster (a concurrent first create
    /// is retried).
    async fn ensure_helper_cluster_role(&self) {
        let name = quarks_job::output::pod::DEFAULT_HELPER_CLUSTER_ROLE;
        let role = quarks_job::output::write::helper_cluster_role(name);
        let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(self.client.clone());
        let params = PatchParams::apply("quarks-job-tests").force();
        for attempt in 0.. {
            match roles.patch(name, &params, &Patch::Apply(&role)).await {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => {}
                Err(e) => panic!("ClusterRole {name}: {e}"),
            }
        }
    }

    /// The test's kubesim; only `kubesim_only_…` tests may ask for it.
    pub fn sim(&self) -> &KubeSim {
        self.sim.as_ref().expect(
            "this test needs kubesim (fault injection or its request log): name it kubesim_only_… \
             so that the real-cluster pass leaves it out",
        )
    }

    /// A client authenticating as ServiceAccount `namespace/name` with a token from the
    /// TokenRequest API (served by kubesim and by kube-apiserver alike): what a pod running as
    /// that account presents.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        let token = self.service_account_token(namespace, name).await;
        let mut config = self.admin_config().await;
        config.auth_info = serde_json::from_value(serde_json::json!({ "token": token })).unwrap();
        config.default_namespace = namespace.to_owned();
        kube::Client::try_from(config).expect("service account client")
    }

    /// A kubeconfig file in `dir` for ServiceAccount `namespace/name` (see
    /// [`Cluster::service_account_client`]): the cluster of the test's kubeconfig, the account's token.
    pub async fn service_account_kubeconfig(
        &self,
        dir: &std::path::Path,
        namespace: &str,
        name: &str,
    ) -> PathBuf {
        let token = self.service_account_token(namespace, name).await;
        let mut kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let user = format!("{namespace}-{name}");
        kubeconfig.auth_infos = vec![
            serde_json::from_value(serde_json::json!({"name": user, "user": {"token": token}}))
                .unwrap(),
        ];
        for context in &mut kubeconfig.contexts {
            if let Some(context) = context.context.as_mut() {
                context.user = Some(user.clone());
                context.namespace = Some(namespace.to_owned());
            }
        }
        let path = dir.join(format!("{user}.kubeconfig"));
        std::fs::write(&path, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();
        path
    }

    async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let accounts = self.api_in::<k8s_openapi::api::core::v1::ServiceAccount>(namespace);
        let request: k8s_openapi::api::authentication::v1::TokenRequest =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [], "expirationSeconds": 3600},
            }))
            .unwrap();
        // The ServiceAccount may have been created a moment ago (by the chart, the operator).
        let last_error = std::sync::Mutex::new(String::new());
        let answer = poll(DEADLINE, || async {
            accounts
                .create_subresource::<_, k8s_openapi::api::authentication::v1::TokenRequest>(
                    "token",
                    name,
                    &PostParams::default(),
                    &request,
                )
                .await
                .map_err(|e| *last_error.lock().unwrap() = e.to_string())
                .ok()
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no token for {namespace}/{name}: {}",
                last_error.lock().unwrap()
            )
        });
        answer.status.expect("TokenRequest status").token
    }

    async fn admin_config(&self) -> kube::Config {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kubeconfig")
    }

    pub async fn create_namespace(&self, name: &str, monitored_id: Option<&str>) {
        let mut ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}
        }))
        .unwrap();
        if let Some(id) = monitored_id {
            ns.metadata.labels =
                Some([(quarks_job::names::MONITORED_LABEL.to_owned(), id.to_owned())].into());
        }
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }

    pub fn api<K: Namespaced>(&self) -> Api<K> {
        self.api_in(&self.namespace)
    }

    pub fn api_in<K: Namespaced>(&self, namespace: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn qjobs(&self) -> Api<QuarksJob> {
        self.api()
    }

    pub fn qjobs_in(&self, namespace: &str) -> Api<QuarksJob> {
        self.api_in(namespace)
    }

    /// Starts an operator process for this test's monitored id.
    pub async fn operator(&self) -> OperatorProcess {
        self.operator_with(&self.monitored_id, &[]).await
    }

    pub async fn operator_with(&self, monitored_id: &str, extra: &[&str]) -> OperatorProcess {
        let process = OperatorProcess::spawn(
            Command::new(env!("CARGO_BIN_EXE_quarks-job"))
                .args([
                    "--kubeconfig",
                    self.kubeconfig.to_str().unwrap(),
                    "--monitored-id",
                    monitored_id,
                    "--apply-crd",
                    "--listen",
                    "127.0.0.1:0",
                    "--log-level",
                    "info,quarks_job=debug",
                ])
                .args(extra)
                .env_remove("KUBECONFIG"),
        );
        // The CRD must exist before tests create QuarksJobs.
        wait_for("the CRD to be established", || async {
            let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(self.client.clone());
            crds.get_opt("quarksjobs.quarks.cloudfoundry.org").await.ok().flatten().and_then(|c| c.status).and_then(|s| s.conditions).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await;
        process
    }

    /// Creates `qjob` in the test's namespace.
    pub async fn create_qjob(&self, qjob: &QJob) -> QuarksJob {
        self.create_qjob_in(&self.namespace, qjob).await
    }

    /// Creates `qjob` in `namespace`.
    pub async fn create_qjob_in(&self, namespace: &str, qjob: &QJob) -> QuarksJob {
        self.qjobs_in(namespace)
            .create(&PostParams::default(), &qjob.build())
            .await
            .expect("create QuarksJob")
    }
}

pub struct OperatorProcess {
    pub child: Child,
    pub log: tempfile::NamedTempFile,
}

impl OperatorProcess {
    /// Starts `command` (the operator binary with its arguments and environment), its stderr
    /// (the log) to a file of its own.
    pub fn spawn(command: &mut Command) -> OperatorProcess {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = command
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start quarks-job");
        OperatorProcess { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// `GET path` on the operator's HTTP endpoint (`/metrics`, `/readyz`, ...): status code
    /// and body. The address is the one the operator logged (it listens on port 0).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let addr = wait_until("the operator's HTTP address in its log", || {
            let addr = self
                .log()
                .lines()
                .find(|l| l.contains("serving /healthz"))
                .and_then(|l| l.split("addr=").nth(1))
                .map(|a| a.trim().to_owned());
            async move { addr }
        })
        .await;
        http_get(&addr, path).await
    }

    /// Metric `name` from the operator's /metrics, summed over its label sets (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, metrics) = self.http_get("/metrics").await;
        metric_sum(&metrics, name)
    }

    /// Stops the operator as Kubernetes would (SIGTERM) and waits for it to exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            // SAFETY-free: plain kill(2) through the `kill` command keeps this test dependency-free.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("operator stops on SIGTERM")
            .expect("wait")
    }
}

/// Metric `name` in a Prometheus text exposition, summed over its label sets (0 when absent).
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET path` on an operator's HTTP endpoint at `addr`: status code (0 when unreachable) and
/// body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Polls `check` every 50 ms until it yields a value, for at most `within`; `None` when time
/// ran out (the caller panics with what it knows). The one polling loop of these tests.
pub async fn poll<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it yields a value and returns it, or panics after [`DEADLINE`] naming
/// `what`.
pub async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll(DEADLINE, check)
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Polls `check` until it is true, or panics after [`DEADLINE`] naming `what`.
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until(what, || {
        let check = check();
        async move { check.await.then_some(()) }
    })
    .await
}

/// Creates or replaces `config_map` in `namespace` (server-side apply).
pub async fn apply_config_map(c: &Cluster, namespace: &str, config_map: &ConfigMap) {
    c.api_in::<ConfigMap>(namespace)
        .patch(
            config_map.metadata.name.as_deref().expect("ConfigMap name"),
            &PatchParams::apply("test").force(),
            &Patch::Apply(config_map),
        )
        .await
        .expect("apply ConfigMap");
}

/// Creates or replaces ConfigMap `name` in the test's namespace with `{value: <value>}`.
pub async fn put_config_map(c: &Cluster, name: &str, value: &str) {
    let config_map = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"value": value},
    }))
    .unwrap();
    apply_config_map(c, &c.namespace, &config_map).await;
}

/// Stores `bytes` as `binaryData["policy.wasm"]` of ConfigMap `name` in `namespace`, for a
/// selection of `configmap:<name>/policy.wasm`.
pub async fn put_module(c: &Cluster, namespace: &str, name: &str, bytes: Vec<u8>) {
    let mut config_map = ConfigMap::default();
    config_map.metadata.name = Some(name.to_owned());
    config_map.binary_data = Some(BTreeMap::from([(
        "policy.wasm".to_owned(),
        k8s_openapi::ByteString(bytes),
    )]));
    apply_config_map(c, namespace, &config_map).await;
}

/// Writes `namespace`'s policy selection (ConfigMap `quarks-job-policies`) with these
/// `world: reference` pairs.
pub async fn select_policies(c: &Cluster, namespace: &str, selection: &[(&str, &str)]) {
    let data: BTreeMap<String, String> = selection
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config_map = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "quarks-job-policies"}, "data": data,
    }))
    .unwrap();
    apply_config_map(c, namespace, &config_map).await;
}

/// A policy component built by host/build.rs (fixtures and example policies).
pub fn policy_component(name: &str) -> PathBuf {
    std::path::Path::new(env!("QUARKS_POLICY_FIXTURES")).join(format!("{name}.wasm"))
}

/// Runs `command` (`what` names it) and asserts that it succeeds; its output.
pub fn run_ok(command: &mut std::process::Command, what: &str) -> std::process::Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `kubectl --kubeconfig <kubeconfig> <args>` (kubectl 1.32 is installed on every machine
/// of this kind) in the repository root; asserts that it succeeds and returns its stdout.
pub fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let out = run_ok(
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
        &format!("kubectl {args:?}"),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A QuarksJob manifest, built from what the tests vary: its pod's containers (busybox images
/// running `sh -c <script>`), `spec.output`, `updateOnConfigChange`, volumes mounted in every
/// container, annotations, the Job's `backoffLimit` (0 unless set). The strategy is a string so
/// that invalid ones can be sent too.
#[derive(Clone, Debug)]
pub struct QJob {
    name: String,
    strategy: String,
    annotations: serde_json::Map<String, serde_json::Value>,
    update_on_config_change: Option<bool>,
    output: Option<serde_json::Value>,
    backoff_limit: u32,
    containers: Vec<serde_json::Value>,
    volumes: Vec<(serde_json::Value, String)>,
}

impl QJob {
    pub fn new(name: &str, strategy: &str) -> QJob {
        QJob {
            name: name.to_owned(),
            strategy: strategy.to_owned(),
            annotations: Default::default(),
            update_on_config_change: None,
            output: None,
            backoff_limit: 0,
            containers: Vec::new(),
            volumes: Vec::new(),
        }
    }

    /// Container `busybox` running `script`.
    pub fn script(self, script: &str) -> QJob {
        self.container("busybox", script, serde_json::json!({}))
    }

    /// Container `name` running `script`, with the fields of `extra` (`env`, ...) added.
    pub fn container(mut self, name: &str, script: &str, extra: serde_json::Value) -> QJob {
        let mut container = serde_json::json!({
            "name": name, "image": "busybox", "command": ["sh", "-c", script],
        });
        if let serde_json::Value::Object(extra) = extra {
            container.as_object_mut().unwrap().extend(extra);
        }
        self.containers.push(container);
        self
    }

    /// `spec.output`.
    pub fn output(mut self, output: serde_json::Value) -> QJob {
        self.output = Some(output);
        self
    }

    pub fn update_on_config_change(mut self, update: bool) -> QJob {
        self.update_on_config_change = Some(update);
        self
    }

    pub fn backoff_limit(mut self, limit: u32) -> QJob {
        self.backoff_limit = limit;
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> QJob {
        self.annotations.insert(key.to_owned(), value.into());
        self
    }

    /// Pod volume `volume` (with its `name`), mounted at `path` in every container.
    pub fn volume(mut self, volume: serde_json::Value, path: &str) -> QJob {
        self.volumes.push((volume, path.to_owned()));
        self
    }

    pub fn manifest(&self) -> serde_json::Value {
        let mut containers = self.containers.clone();
        if !self.volumes.is_empty() {
            for container in &mut containers {
                container["volumeMounts"] = self
                    .volumes
                    .iter()
                    .map(|(v, path)| serde_json::json!({"name": v["name"], "mountPath": path}))
                    .collect();
            }
        }
        let mut pod = serde_json::json!({"restartPolicy": "Never", "containers": containers});
        if !self.volumes.is_empty() {
            pod["volumes"] = self.volumes.iter().map(|(v, _)| v.clone()).collect();
        }
        let mut spec = serde_json::json!({
            "trigger": {"strategy": self.strategy},
            "template": {"spec": {"backoffLimit": self.backoff_limit, "template": {"spec": pod}}},
        });
        if let Some(update) = self.update_on_config_change {
            spec["updateOnConfigChange"] = update.into();
        }
        if let Some(output) = &self.output {
            spec["output"] = output.clone();
        }
        serde_json::json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1",
            "kind": "QuarksJob",
            "metadata": {"name": self.name, "annotations": self.annotations},
            "spec": spec,
        })
    }

    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.manifest()).unwrap()
    }

    pub fn build(&self) -> QuarksJob {
        serde_json::from_value(self.manifest()).expect("a valid QuarksJob")
    }
}

/// The seed's output QuarksJob: container `busybox` runs `script`; its `output.json` becomes
/// Secret `foo-json` (optionally versioned), `missing.json` (never written) is mapped too, and
/// every Secret gets the label `key=value`.
pub fn output_qjob(name: &str, script: &str, versioned: bool) -> QJob {
    QJob::new(name, "once")
        .script(script)
        .output(serde_json::json!({
            "outputMap": {"busybox": {
                "output.json": {"name": "foo-json", "versioned": versioned},
                "missing.json": {"name": "never-written"},
            }},
            "secretLabels": {"key": "value"},
        }))
}

/// Secret `name` in the test's namespace, if it exists.
pub async fn secret_opt(c: &Cluster, name: &str) -> Option<k8s_openapi::api::core::v1::Secret> {
    c.api::<k8s_openapi::api::core::v1::Secret>()
        .get_opt(name)
        .await
        .unwrap()
}

/// The value of `key` in `secret`, as text (what the tests' outputs write is UTF-8).
pub fn string_value(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> String {
    let data = secret.data.as_ref().expect("Secret data");
    String::from_utf8(data[key].0.clone()).unwrap()
}

/// Waits for Secret `name` in the test's namespace to exist, and returns it.
pub async fn wait_secret(c: &Cluster, name: &str) -> k8s_openapi::api::core::v1::Secret {
    wait_until(&format!("Secret {name}"), || secret_opt(c, name)).await
}

/// The status of QuarksJob `namespace/name` (empty until the operator writes one).
pub async fn qjob_status(c: &Cluster, namespace: &str, name: &str) -> QuarksJobStatus {
    c.qjobs_in(namespace)
        .get(name)
        .await
        .expect("get QuarksJob")
        .status
        .unwrap_or_default()
}

pub async fn run_count(c: &Cluster, namespace: &str, name: &str) -> i64 {
    qjob_status(c, namespace, name).await.run_count
}

/// Waits until the status of QuarksJob `namespace/name` satisfies `done`, and returns it.
pub async fn wait_status(
    c: &Cluster,
    namespace: &str,
    name: &str,
    what: &str,
    done: impl Fn(&QuarksJobStatus) -> bool,
) -> QuarksJobStatus {
    let done = &done;
    wait_until(&format!("{namespace}/{name}: {what}"), || async move {
        let status = qjob_status(c, namespace, name).await;
        done(&status).then_some(status)
    })
    .await
}

/// Waits until run `runs` of QuarksJob `namespace/name` completed and was recorded.
pub async fn wait_completed(c: &Cluster, namespace: &str, name: &str, runs: i64) {
    wait_status(c, namespace, name, &format!("run {runs} complete"), |s| {
        s.completed && s.run_count == runs && s.last_run_finished_at.is_some()
    })
    .await;
}

/// `(reason, message)` of the Ready condition of QuarksJob `namespace/name`.
pub async fn ready_condition(c: &Cluster, namespace: &str, name: &str) -> Option<(String, String)> {
    let qjob = c.qjobs_in(namespace).get_opt(name).await.ok()??;
    qjob.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.reason, c.message))
}

/// Waits for the Ready condition of QuarksJob `namespace/name` to have `reason`; returns its
/// message.
pub async fn wait_for_reason(c: &Cluster, namespace: &str, name: &str, reason: &str) -> String {
    wait_until(&format!("{namespace}/{name} to show {reason}"), || async {
        ready_condition(c, namespace, name)
            .await
            .and_then(|(found, message)| (found == reason).then_some(message))
    })
    .await
}

/// Merge-patches QuarksJob `namespace/name`.
pub async fn patch_qjob(c: &Cluster, namespace: &str, name: &str, patch: serde_json::Value) {
    c.qjobs_in(namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("patch QuarksJob");
}

pub async fn set_strategy(c: &Cluster, namespace: &str, name: &str, strategy: &str) {
    let patch = serde_json::json!({"spec": {"trigger": {"strategy": strategy}}});
    patch_qjob(c, namespace, name, patch).await;
}

/// Annotates QuarksJob `namespace/name` as approved (for the approval trigger policy).
pub async fn approve(c: &Cluster, namespace: &str, name: &str) {
    let patch = serde_json::json!({
        "metadata": {"annotations": {"quarks.cloudfoundry.org/approved": "true"}}
    });
    patch_qjob(c, namespace, name, patch).await;
}

/// The Jobs in `namespace`.
pub async fn jobs_in(c: &Cluster, namespace: &str) -> Vec<k8s_openapi::api::batch::v1::Job> {
    list_in(c, namespace).await
}

/// The Events in `namespace`.
pub async fn events_in(c: &Cluster, namespace: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    list_in(c, namespace).await
}

/// The notes of the Events with `reason` on objects in the test's namespace.
pub async fn event_notes(c: &Cluster, reason: &str) -> Vec<String> {
    events_in(c, &c.namespace)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// The objects of kind `K` in `namespace`.
pub async fn list_in<K: Namespaced>(c: &Cluster, namespace: &str) -> Vec<K> {
    list(c, namespace, &ListParams::default()).await
}

/// The objects of kind `K` in `namespace` with labels matching `selector`.
pub async fn list_labelled<K: Namespaced>(c: &Cluster, namespace: &str, selector: &str) -> Vec<K> {
    list(c, namespace, &ListParams::default().labels(selector)).await
}

async fn list<K: Namespaced>(c: &Cluster, namespace: &str, params: &ListParams) -> Vec<K> {
    c.api_in::<K>(namespace)
        .list(params)
        .await
        .expect("list")
        .items
}

/// The label selector of the Jobs and pods of QuarksJob `name`'s runs.
pub fn runs_of(name: &str) -> String {
    format!(
        "{}={}",
        quarks_job::names::job::QJOB_NAME_LABEL,
        quarks_job::names::job::qjob_name_label_value(name)
    )
}

/// A one-off whose output `output.json` becomes versioned secret `foo-json-v<N>`, holding the
/// value of ConfigMap `input` (key `value`), and that runs again when that ConfigMap changes.
pub fn versioned_from_config(name: &str) -> QJob {
    let script = r#"echo "{\"value\": \"$(cat /etc/config/value)\"}" > /mnt/quarks/output.json"#;
    output_qjob(name, script, true)
        .update_on_config_change(true)
        .volume(
            serde_json::json!({"name": "config", "configMap": {"name": "input"}}),
            "/etc/config",
        )
}

/// A one-off that keeps running (a succeeded Job is deleted) with Secret `secret` mounted.
pub fn consumer_of(name: &str, secret: &str) -> QJob {
    QJob::new(name, "once").script("sleep 60").volume(
        serde_json::json!({"name": "mounted", "secret": {"secretName": secret}}),
        "/etc/mounted",
    )
}

/// The Secrets a Job's pod mounts as volumes.
pub fn mounted_secrets(job: &k8s_openapi::api::batch::v1::Job) -> Vec<String> {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|pod| pod.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect()
}

/// Creates Secret `name` in the test's namespace with `labels` and `string_data`, as a user
/// with kubectl would.
pub async fn put_secret(
    c: &Cluster,
    name: &str,
    labels: serde_json::Value,
    string_data: serde_json::Value,
) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels}, "stringData": string_data
    }))
    .unwrap();
    c.api::<k8s_openapi::api::core::v1::Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
}
