//! Test harness: an in-process kubesim per test, a fresh namespace, and waiting helpers.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, LogParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use kubesim::{KubeSim, KubeSimOptions};

/// How long any single wait may take before the test fails (generous for a loaded machine).
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Cluster {
    /// Kept alive for the duration of the test; dropping it stops the cluster.
    sim: KubeSim,
    pub client: Client,
    pub namespace: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Starts kubesim and creates a namespace unique to the calling test.
pub async fn start(tag: &str) -> Cluster {
    start_with(tag, KubeSimOptions::default()).await
}

/// [`start`] with options (extra images, ...).
pub async fn start_with(tag: &str, options: KubeSimOptions) -> Cluster {
    let sim = KubeSim::start(options).await.expect("kubesim starts");
    let client = sim.client().await.expect("admin client");
    let namespace = format!("{tag}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    Cluster {
        sim,
        client,
        namespace,
    }
}

impl Cluster {
    /// The requests kubesim served so far.
    pub fn request_log(&self) -> Vec<kubesim::RequestRecord> {
        self.sim.request_log()
    }

    pub fn faults(&self) -> kubesim::Faults {
        self.sim.faults()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates an object from JSON in the test namespace.
    pub async fn create<K>(&self, value: serde_json::Value) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + DeserializeOwned
            + serde::Serialize,
    {
        let object: K = serde_json::from_value(value).expect("valid object");
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .expect("created")
    }

    /// The log of one container of a pod (`None`: the pod's only or first container).
    pub async fn log(&self, pod: &str, container: Option<&str>) -> String {
        let params = LogParams {
            container: container.map(String::from),
            ..Default::default()
        };
        self.api::<Pod>().logs(pod, &params).await.expect("logs")
    }

    /// The pods of a Job, by its name label.
    pub async fn job_pods(&self, job: &str) -> Vec<Pod> {
        self.api::<Pod>()
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await
            .expect("list pods")
            .items
    }
}

/// Waits (through a watch) until `cond` holds for the named object; fails after [`WAIT`].
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, cond: impl Fn(&K) -> bool) -> K
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let found = tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), name, move |o: Option<&K>| o.is_some_and(&cond)),
    )
    .await;
    match found {
        Ok(Ok(Some(object))) => object,
        Ok(other) => panic!("waiting for {name} to be {what}: {other:?}"),
        Err(_) => {
            let last = api.get_opt(name).await;
            panic!("{name} did not become {what} within {WAIT:?}; last seen: {last:#?}")
        }
    }
}

/// Waits until the named object is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let gone = tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), name, |o: Option<&K>| o.is_none()),
    )
    .await;
    if !matches!(gone, Ok(Ok(_))) {
        let last = api.get_opt(name).await;
        panic!("{name} still exists after {WAIT:?}: {last:#?}");
    }
}

pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn job_condition(
    job: &k8s_openapi::api::batch::v1::Job,
    type_: &str,
) -> Option<k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .cloned()
}

/// A pod that runs `script` in busybox and never restarts.
pub fn shell_pod(name: &str, script: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}]
        }
    })
}

/// Waits until the pod finished (Succeeded or Failed) and returns it.
pub async fn finished(cluster: &Cluster, name: &str) -> Pod {
    wait_for(&cluster.api::<Pod>(), name, "finished", |p: &Pod| {
        matches!(pod_phase(p), "Succeeded" | "Failed")
    })
    .await
}

/// Waits until the pod finished and returns it with the main container's log.
pub async fn finished_with_log(cluster: &Cluster, name: &str) -> (Pod, String) {
    let pod = finished(cluster, name).await;
    (pod, cluster.log(name, None).await)
}
