//! kubesim's API server: the shared [`Cluster`] state (store, registry, faults, request
//! log) and the modules that implement the Kubernetes REST API over it. HTTP plumbing is
//! in [`http`], request dispatch in [`handlers`]; in-process controllers that real
//! Kubernetes runs in kube-apiserver or kube-controller-manager (garbage collector,
//! namespace lifecycle, CRD registration, service-account creation) are in [`gc`].

pub mod crd;
pub mod discovery;
pub mod error;
pub mod events;
pub mod faults;
pub mod gc;
pub mod handlers;
pub mod http;
pub mod kinds;
pub mod meta;
pub mod objects;
pub mod patch;
pub mod podlog;
pub mod protobuf;
pub mod rbac;
pub mod resources;
pub mod selectors;
pub mod shape;
pub mod ssa;
pub mod store;
pub mod table;
pub mod tokens;
pub mod watch;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use self::faults::Faults;
use self::objects::{WriteCtx, str_at};
use self::resources::Registry;
use self::store::{Mutation, Store};

/// One served request, for tests that check who did what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `kubesim:admin`, `system:serviceaccount:<ns>:<name>`, or `system:unsecured` for
    /// requests without credentials (kubectl over plain HTTP).
    pub user: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// HTTP status code of the answer.
    pub code: u16,
}

/// How many requests the request log keeps.
pub const REQUEST_LOG_CAP: usize = 200_000;

/// How many past changes are kept for watch replay.
pub const WATCH_WINDOW: usize = 10_000;

/// Everything the API server shares between requests.
pub struct Cluster {
    pub store: Store,
    pub registry: Registry,
    pub faults: Faults,
    /// The most recent [`REQUEST_LOG_CAP`] requests.
    pub log: Mutex<VecDeque<RequestRecord>>,
    pub state_dir: PathBuf,
    pub enforce_rbac: bool,
    pub shutdown: CancellationToken,
    /// `host:port` the server listens on (for `/api`'s serverAddressByClientCIDRs).
    pub address: String,
}

impl Cluster {
    pub fn new(state_dir: PathBuf, enforce_rbac: bool, address: String, faults: Faults) -> Self {
        let cluster = Cluster {
            store: Store::new(WATCH_WINDOW),
            registry: Registry::new(),
            faults,
            log: Mutex::new(VecDeque::new()),
            state_dir,
            enforce_rbac,
            shutdown: CancellationToken::new(),
            address,
        };
        cluster.bootstrap();
        cluster
    }

    /// The objects every cluster starts with: namespaces `default`, `kube-system`,
    /// `kube-public` and their default service accounts.
    fn bootstrap(&self) {
        let Some(ns_info) = self.registry.get("", "v1", "namespaces") else {
            return;
        };
        let ctx = WriteCtx::system("kube-apiserver");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Err(e) = self.create(&ns_info, "", body, &ctx) {
                tracing::warn!(error = %e, namespace = ns, "bootstrap namespace");
            }
            self.ensure_default_service_account(ns);
        }
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "kubesim-node", "labels": {"kubernetes.io/hostname": "kubesim-node", "kubernetes.io/os": "linux"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}]}});
        if let Some(info) = self.registry.get("", "v1", "nodes")
            && let Err(e) = self.create(&info, "", node, &ctx)
        {
            tracing::warn!(error = %e, "bootstrap node");
        }
    }

    /// What the service-account controller does for each new namespace.
    pub fn ensure_default_service_account(&self, ns: &str) {
        let Some(info) = self.registry.get("", "v1", "serviceaccounts") else {
            return;
        };
        if self.store.get("serviceaccounts", ns, "default").is_some() {
            return;
        }
        let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
        if let Err(e) = self.create(
            &info,
            ns,
            body,
            &WriteCtx::system("kube-controller-manager"),
        ) && e.code != 409
        {
            tracing::debug!(error = %e, namespace = ns, "default service account");
        }
    }

    /// Registers or unregisters the resources of a CRD after it was written.
    pub fn crd_changed(&self, crd: &Value, deleted: bool) {
        let name = str_at(crd, "/metadata/name").unwrap_or("").to_string();
        if deleted {
            let infos: Vec<_> = self
                .registry
                .all()
                .into_iter()
                .filter(|r| r.crd.as_ref().is_some_and(|c| c.crd_name == name))
                .collect();
            self.registry.remove_crd(&name);
            // The CRD's objects go with it (kube-apiserver's customresourcecleanup finalizer).
            if let Some(info) = infos.first() {
                let key = info.storage_key();
                let (items, _) = self.store.list(&key, None, None);
                for obj in items {
                    let ns = str_at(&obj, "/metadata/namespace").unwrap_or("");
                    let n = str_at(&obj, "/metadata/name").unwrap_or("");
                    let _ = self.store.mutate(&key, ns, n, |cur| {
                        Ok(if cur.is_some() {
                            Mutation::Delete
                        } else {
                            Mutation::Keep
                        })
                    });
                }
            }
        } else {
            self.registry.set_crd(&name, crd::resources(crd));
        }
    }

    pub fn record(&self, rec: RequestRecord) {
        if let Ok(mut log) = self.log.lock() {
            // Bounded so a long-running dev cluster does not grow without end.
            if log.len() >= REQUEST_LOG_CAP {
                log.pop_front();
            }
            log.push_back(rec);
        }
    }
}
