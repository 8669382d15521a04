//! Shared helpers: the backend a test talks to, namespaces, raw HTTP requests.
//!
//! Most tests run against [`Cluster`]: an in-process KubeSim (API server only), or, when
//! `KUBESIM_TEST_KUBECONFIG=<path>` is set, the real cluster of that kubeconfig, so that
//! the same assertions check kubesim against a real kube-apiserver. A real cluster is
//! shared by all tests at once (and by earlier runs whose namespaces may still be
//! terminating): everything a test creates is named with its own random suffix.
//! Tests that need kubesim itself (fault injection, request log, kubelet, kubesim
//! identities or behaviour newer than the oldest supported Kubernetes) use [`sim`] and
//! are named `kubesim_only_*`, so that `-E 'not test(/kubesim_only/)'` leaves them out.

use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Config, Resource, ResourceExt};
use kubesim::{KubeSim, KubeSimOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The environment variable naming a real cluster's kubeconfig.
pub const REAL_KUBECONFIG_ENV: &str = "KUBESIM_TEST_KUBECONFIG";

/// Label on the namespaces and cluster-scoped objects tests create: a failed test leaves
/// them behind (cleanup runs only when it gets to the end), so that
/// `kubectl delete ns,crd,clusterrole,clusterrolebinding -l kubesim-test=true` finds them.
pub const TEST_LABEL: &str = "kubesim-test";

/// How long the real cluster's controllers (GC, namespace controller, CRD establishing)
/// may take; kubesim answers within milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A kubesim with the API server only (no kubelet, no Job controller).
pub async fn sim() -> (KubeSim, Client) {
    let sim = KubeSim::start(KubeSimOptions {
        run_kubelet: false,
        ..Default::default()
    })
    .await
    .expect("start kubesim");
    let client = sim.client().await.expect("client");
    (sim, client)
}

/// One test's view of the backend: an admin client whose default namespace is `ns`, a
/// fresh namespace of its own, and a kubeconfig (same identity and namespace) for kubectl.
pub struct Cluster {
    pub client: Client,
    /// This test's namespace (already created).
    pub ns: String,
    id: String,
    kubeconfig: PathBuf,
    scratch: tempfile::TempDir,
    /// API paths deleted by [`Cluster::stop`]: namespaces and cluster-scoped objects.
    cleanup: Mutex<Vec<String>>,
    sim: Option<KubeSim>,
}

impl Cluster {
    /// The backend of this run: the real cluster named by [`REAL_KUBECONFIG_ENV`], else a
    /// fresh kubesim.
    pub async fn start() -> Cluster {
        match std::env::var_os(REAL_KUBECONFIG_ENV) {
            Some(path) => Self::with_backend(Ok(PathBuf::from(path))).await,
            None => Self::kubesim().await,
        }
    }

    /// A fresh kubesim (API server only). RBAC is enforced, as on every real cluster; the
    /// admin and kubectl (no token over http: unsecured) are always allowed.
    pub async fn kubesim() -> Cluster {
        Self::kubesim_with(KubeSimOptions {
            run_kubelet: false,
            enforce_rbac: true,
            ..Default::default()
        })
        .await
    }

    pub async fn kubesim_with(opts: KubeSimOptions) -> Cluster {
        Self::with_backend(Err(opts)).await
    }

    /// `Ok`: a real cluster's kubeconfig; `Err`: start a kubesim with these options.
    async fn with_backend(backend: Result<PathBuf, KubeSimOptions>) -> Cluster {
        let scratch = tempfile::Builder::new()
            .prefix("kubesim-test-")
            .tempdir()
            .expect("tempdir");
        let (sim, source) = match backend {
            Ok(path) => (None, path),
            Err(opts) => {
                let sim = KubeSim::start(opts).await.expect("start kubesim");
                let path = sim.kubeconfig_path().to_path_buf();
                (Some(sim), path)
            }
        };
        // Eight hex digits: unique among concurrent tests and recent runs.
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let ns = format!("t-{id}");
        let mut kc = Kubeconfig::read_from(&source).expect("read kubeconfig");
        for ctx in &mut kc.contexts {
            if let Some(c) = ctx.context.as_mut() {
                c.namespace = Some(ns.clone());
            }
        }
        let kubeconfig = scratch.path().join("kubeconfig");
        std::fs::write(&kubeconfig, serde_yaml::to_string(&kc).expect("yaml")).expect("write");
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        let client = Client::try_from(config).expect("client");
        let cluster = Cluster {
            client,
            ns: ns.clone(),
            id,
            kubeconfig,
            scratch,
            cleanup: Mutex::new(Vec::new()),
            sim,
        };
        cluster.create_namespace(&ns).await;
        cluster
    }

    /// An API for `K` in this test's namespace, as the admin.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// `base` made unique to this test, for cluster-scoped objects and extra namespaces.
    pub fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.id)
    }

    /// Creates one more namespace, `base` made unique; returns its name.
    pub async fn namespace(&self, base: &str) -> String {
        let name = self.name(base);
        self.create_namespace(&name).await;
        name
    }

    async fn create_namespace(&self, name: &str) {
        let ns: Namespace = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {TEST_LABEL: "true"}}}),
        )
        .expect("ns");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        self.delete_on_stop(&format!("/api/v1/namespaces/{name}"));
    }

    /// Deletes the object at `path` when the test ends (cluster-scoped objects on a shared
    /// cluster would otherwise outlive the test).
    pub fn delete_on_stop(&self, path: &str) {
        self.cleanup.lock().expect("cleanup").push(path.to_string());
    }

    /// A client acting as ServiceAccount `ns/name` (created here), with a token from
    /// TokenRequest, as a pod would get it.
    pub async fn service_account_client(&self, ns: &str, name: &str) -> Client {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("sa");
        Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &sa)
            .await
            .expect("create service account");
        let request =
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
        let (code, answer) = raw(
            &self.client,
            "POST",
            &format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"),
            Some("application/json"),
            Some(&request.to_string()),
        )
        .await;
        assert_eq!(code, 201, "TokenRequest: {answer}");
        let token = answer["status"]["token"]
            .as_str()
            .expect("token")
            .to_string();
        let mut kc = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        for user in &mut kc.auth_infos {
            user.auth_info =
                Some(serde_json::from_value(json!({"token": token})).expect("auth info"));
        }
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        Client::try_from(config).expect("client")
    }

    /// A kubeconfig with the client's identity and `ns` as the context's namespace.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A private directory for this test (kubectl caches, manifests).
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    pub async fn stop(self) {
        let paths = std::mem::take(&mut *self.cleanup.lock().expect("cleanup"));
        match self.sim {
            Some(sim) => sim.stop().await,
            None => {
                for path in paths.iter().rev() {
                    // Best effort: the test may have deleted it already.
                    let _ = raw(&self.client, "DELETE", path, None, None).await;
                }
            }
        }
    }
}

/// Polls `f` until it is true; panics after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// Sends a raw request; returns the status code and the body parsed as JSON (or a string).
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    raw_with(client, method, path, content_type, None, body).await
}

pub async fn raw_with(
    client: &Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    if let Some(a) = accept {
        b = b.header("accept", a);
    }
    let req = b
        .body(kube::client::Body::from(
            body.unwrap_or("").as_bytes().to_vec(),
        ))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (code, v)
}

/// Creates `obj` through `api`; panics if that fails.
pub async fn create<K>(api: &Api<K>, obj: &K) -> K
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(made) => made,
        Err(e) => panic!("create {}: {e}", obj.name_any()),
    }
}

/// The API error of a call that must fail (`what`: why it must).
pub async fn rejected<T: Debug>(
    call: impl Future<Output = kube::Result<T>>,
    what: &str,
) -> Box<kube::core::Status> {
    api_err(call.await.expect_err(what))
}

/// The API error of a failed kube call.
pub fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
