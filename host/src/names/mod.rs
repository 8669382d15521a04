//! Every name and label the operator, the output helper and the tests share: Job names and the
//! QuarksJob label ([`job`]), versioned-secret names and labels ([`versioned`]), the monitored
//! namespace label and the field manager of every write.
//!
//! Pure: no API client, no I/O. Everything above (reconcile, output, runtime) names things
//! through this module, so a name is defined once.

pub mod job;
pub mod versioned;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "quarks-job";

/// Namespaces labelled `quarks.cloudfoundry.org/monitored=<monitored id>` are the operator's.
pub const MONITORED_LABEL: &str = "quarks.cloudfoundry.org/monitored";
