//! The Node object and its heartbeat Lease, as a kubelet keeps them: registers the Node
//! (Ready, `InternalIP` 127.0.0.1, the log endpoint's port, capacity), renews the Lease in
//! `kube-node-lease` every [`LEASE_RENEW_INTERVAL`] and re-reports the Node's status now and
//! then. On shutdown it deletes only what it created.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::kubelet::env::NODE_IP;
use crate::kubelet::retry_transient;

/// The namespace of node heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet's defaults: renew every 10 s, a lease lasts 40 s.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i32 = 40;
/// How many lease renewals pass between two Node status reports (once a minute).
const STATUS_EVERY_RENEWALS: u32 = 6;
/// What kubesim's node offers; large enough that nothing is refused for lack of room.
const CAPACITY: [(&str, &str); 4] = [
    ("cpu", "32"),
    ("memory", "128Gi"),
    ("ephemeral-storage", "1Ti"),
    ("pods", "250"),
];

/// A registered node: what it created, so that shutdown removes nothing else.
pub struct Registration {
    client: Client,
    name: String,
    log_port: u16,
    registered_at: String,
    created_node: bool,
    created_lease: bool,
}

fn timestamp_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn micro_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// The Node's status; the conditions have held since `since` (registration).
fn node_status(log_port: u16, name: &str, since: &str) -> Value {
    let now = timestamp_now();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    let capacity: serde_json::Map<String, Value> = CAPACITY
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": NODE_IP},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": log_port}},
        "capacity": capacity,
        "allocatable": capacity,
        "nodeInfo": {
            "machineID": "kubesim", "systemUUID": "kubesim", "bootID": "kubesim",
            "kernelVersion": "", "osImage": "kubesim",
            "containerRuntimeVersion": concat!("kubesim://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": "v1.24.0-kubesim", "kubeProxyVersion": "v1.24.0-kubesim",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
        },
    })
}

impl Registration {
    /// Creates (or takes over) Node `name` and its Lease, and reports the Node Ready.
    pub async fn register(client: Client, name: &str, log_port: u16) -> Result<Self, kube::Error> {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
            }},
        }))
        .map_err(kube::Error::SerdeError)?;
        let pp = PostParams::default();
        let created_node = match retry_transient(|| nodes.create(&pp, &node)).await {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 409 => false,
            Err(e) => return Err(e),
        };
        let uid = nodes.get(name).await?.metadata.uid.unwrap_or_default();
        let mut me = Registration {
            client,
            name: name.to_string(),
            log_port,
            registered_at: timestamp_now(),
            created_node,
            created_lease: false,
        };
        me.report_status().await?;
        me.created_lease = me.create_lease(&uid).await?;
        Ok(me)
    }

    async fn report_status(&self) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = Patch::Merge(
            json!({"status": node_status(self.log_port, &self.name, &self.registered_at)}),
        );
        let pp = PatchParams::default();
        retry_transient(|| nodes.patch_status(&self.name, &pp, &patch)).await?;
        Ok(())
    }

    /// Creates the heartbeat Lease, owned by the Node as the kubelet makes it (so the
    /// garbage collector removes it with the Node); `false` if it already existed.
    async fn create_lease(&self, node_uid: &str) -> Result<bool, kube::Error> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node_uid}]},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                     "renewTime": micro_now()},
        }))
        .map_err(kube::Error::SerdeError)?;
        let pp = PostParams::default();
        match retry_transient(|| leases.create(&pp, &lease)).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.renew_lease().await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn renew_lease(&self) -> Result<(), kube::Error> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let patch = Patch::Merge(json!({"spec": {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": micro_now(),
        }}));
        let pp = PatchParams::default();
        retry_transient(|| leases.patch(&self.name, &pp, &patch)).await?;
        Ok(())
    }

    /// Renews the Lease (and now and then the Node status) until `shutdown`.
    pub async fn heartbeat(&self, shutdown: &CancellationToken) {
        let mut ticks: u32 = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(LEASE_RENEW_INTERVAL) => {}
                () = shutdown.cancelled() => return,
            }
            ticks += 1;
            if let Err(e) = self.renew_lease().await {
                tracing::warn!(node = %self.name, error = %e, "lease renewal failed");
            }
            if ticks.is_multiple_of(STATUS_EVERY_RENEWALS)
                && let Err(e) = self.report_status().await
            {
                tracing::warn!(node = %self.name, error = %e, "node status report failed");
            }
        }
    }

    /// Deletes the Lease and the Node if this process created them.
    pub async fn deregister(&self) {
        let dp = DeleteParams::default();
        if self.created_lease {
            let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
            if let Err(e) = leases.delete(&self.name, &dp).await {
                tracing::debug!(node = %self.name, error = %e, "lease not deleted");
            }
        }
        if self.created_node {
            let nodes: Api<Node> = Api::all(self.client.clone());
            if let Err(e) = nodes.delete(&self.name, &dp).await {
                tracing::debug!(node = %self.name, error = %e, "node not deleted");
            }
        }
    }
}
