//! quarks-job: a Kubernetes operator that runs Jobs when something interesting happens and
//! stores their output in Secrets. Every decision is made by a sandboxed WebAssembly policy.
//!
//! * [`crd`] — the `QuarksJob` resource and its generated CRD;
//! * [`policy`] — the policy contract, the wasmtime engine and the built-in policies;
//! * [`cli`] — the `quarks-job` command line.

pub mod authoring;
pub mod cli;
pub mod crd;
pub mod metrics;
pub mod names;
pub mod output;
pub mod policy;
pub mod reconcile;
pub mod runtime;
pub mod seal;
pub mod subset;

/// The operator's version, as `quarks-job version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
