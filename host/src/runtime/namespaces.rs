//! The namespaces this operator acts in: those labelled
//! `quarks.cloudfoundry.org/monitored=<monitored-id>`, tracked live by a reflector so that a
//! namespace labelled later is picked up without a restart (the reflector's view is
//! [`crate::reconcile::context::MonitoredNamespaces`]).

use crate::names::MONITORED_LABEL;

/// The label selector for the namespaces of one operator.
pub fn monitored_selector(monitored_id: &str) -> String {
    format!("{MONITORED_LABEL}={monitored_id}")
}
