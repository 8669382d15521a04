//! The namespaces this operator acts in: those labelled
//! `quarks.cloudfoundry.org/monitored=<monitored-id>`, tracked live by a reflector so that a
//! namespace labelled later is picked up without a restart.

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};

/// The label that marks a namespace as watched by the operator with the given id.
pub const MONITORED_LABEL: &str = "quarks.cloudfoundry.org/monitored";

/// The label selector for the namespaces of one operator.
pub fn monitored_selector(monitored_id: &str) -> String {
    format!("{MONITORED_LABEL}={monitored_id}")
}

/// A live view of the monitored namespaces (a reflector store filled by a label-selected watch).
#[derive(Clone)]
pub struct MonitoredNamespaces {
    store: Store<Namespace>,
}

impl MonitoredNamespaces {
    pub fn new(store: Store<Namespace>) -> Self {
        MonitoredNamespaces { store }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        self.store.get(&ObjectRef::new(namespace)).is_some()
    }
}
