//! Cluster-level tests: the real `quarks-job` binary against a cluster, through the API.
//!
//! By default each test starts its own in-process kubesim (API server, Job controller and a
//! kubelet running pods as local processes). With `QUARKS_TEST_KUBECONFIG=<path>` the same tests
//! run against that cluster instead (kind, k3d, ...): each test then uses its own namespace and
//! its own monitored id, and needs the CRD installable by the operator (`--apply-crd`).

mod chart;
mod examples;
mod harness;
mod hostile;
mod hostile_registry;
mod leader;
mod oci;
mod operator;
mod output;
mod output_security;
mod pipeline;
mod policies;
mod registry;
mod second_language;
mod upgrade;

pub use harness::*;
