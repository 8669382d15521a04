//! Policies: sandboxed WebAssembly components that make the operator's decisions.
//!
//! * [`contract`] — the host-side, serde-friendly mirror of the WIT records (`wit/policy.wit`),
//!   used by the operator and by `quarks-job policy run`;
//! * [`engine`] — compiles components once (by digest), runs each call in a fresh store under
//!   CPU, memory and result-size limits, and classifies every failure;
//! * [`builtin`] — the built-in default policies, compiled from `policies/` at build time;
//! * [`selection`] — how a namespace names its policies (the selection ConfigMap);
//! * [`oci`] — policies as OCI artifacts: pull (capped, verified) and push.

mod bindings;
pub mod builtin;
pub mod calls;
pub mod compile;
pub mod contract;
pub mod engine;
mod error;
pub mod fairness;
mod limits;
pub mod oci;
pub mod resolver;
pub mod selection;

pub use engine::{LoadedPolicy, PolicyDigest, PolicyEngine};
pub use error::PolicyError;
pub use limits::Limits;

/// Which of the two policy worlds a component implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// `quarks:policy/trigger`: exports `trigger-policy.decide`.
    Trigger,
    /// `quarks:policy/output`: exports `output-policy.transform`.
    Output,
}

impl World {
    /// The name of the WIT world.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Trigger => "trigger",
            World::Output => "output",
        }
    }

    /// The name of the interface this world exports, without version.
    pub(crate) fn export_interface(self) -> &'static str {
        match self {
            World::Trigger => "quarks:policy/trigger-policy",
            World::Output => "quarks:policy/output-policy",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contract version this host implements (the `@x.y.z` of `wit/policy.wit`).
pub const CONTRACT_VERSION: &str = "0.1.0";
