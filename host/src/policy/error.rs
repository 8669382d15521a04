//! Every way a policy can fail, as one typed error. Each variant maps to a stable CamelCase
//! code (shown in conditions, Events and metrics) and never carries Secret data.

use std::time::Duration;

use super::World;
use super::contract::Reason;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    /// A WebAssembly core module, or a component that does not validate.
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// A component, but not of the expected world (missing or mistyped export).
    #[error("the component does not implement the `{expected}` world of quarks:policy: {detail}")]
    WrongWorld { expected: World, detail: String },
    /// Built against a contract major version this host does not know.
    #[error(
        "the component implements {found}, but this operator speaks quarks:policy@{supported}; rebuild the policy against wit/ of this release"
    )]
    UnsupportedVersion {
        found: String,
        supported: &'static str,
    },
    /// The component trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("the policy trapped: {0}")]
    Trap(String),
    /// The call ran longer than its CPU budget.
    #[error("the policy exceeded its time limit of {0:?}")]
    Timeout(Duration),
    /// The call tried to use more linear memory than allowed.
    #[error("the policy exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The call returned more data than allowed.
    #[error("the policy returned {size} bytes, more than the limit of {limit} bytes")]
    ResultTooLarge { size: usize, limit: usize },
    /// The call's result was refused before it was lifted into the host: its lists and
    /// strings need more host memory than allowed (e.g. millions of empty entries).
    #[error(
        "the policy returned more than the host lifts: its strings, bytes and list entries need more than {limit} bytes"
    )]
    ResultTooLargeToLift { limit: usize },
    /// The component needs more than a policy may have (core instances, tables, memories).
    #[error("the component needs more than a policy may use: {0}")]
    TooComplex(String),
    /// Compiling the module ran into the operator's time or memory limit for compilations.
    #[error("compiling the policy module exceeded the operator's limit: {0}")]
    CompileLimit(String),
    /// The operator's instance pool is full (host-side, retried; not the policy's fault).
    #[error("the policy engine is at capacity; the call is retried")]
    EngineBusy,
    /// Another policy call of the namespace is running (host-side, retried at once).
    #[error("another policy call of namespace {namespace} is running; retried")]
    Busy {
        namespace: String,
        retry_after: Duration,
    },
    /// The call returned something the host refuses (duplicate keys, malformed reasons, ...).
    #[error("the policy returned an invalid result: {0}")]
    InvalidResult(String),
    /// The policy ran fine and answered with an error of its own.
    #[error("the policy refused: {0}")]
    Refused(Reason),
    /// The namespace's selection ConfigMap names no usable policy (see `selection`).
    #[error("invalid policy selection: {0}")]
    Selection(String),
    /// The selected module does not exist (ConfigMap or key missing).
    #[error("the selected policy module is missing: {0}")]
    ModuleMissing(String),
    /// The selected module is not the one its pin names.
    #[error("the policy module {reference} has digest {found}, but the selection pins {expected}")]
    DigestMismatch {
        reference: String,
        expected: String,
        found: String,
    },
    /// The selected module is larger than the operator accepts.
    #[error("the policy module has {size} bytes, more than the limit of {limit} bytes")]
    ModuleTooLarge { size: u64, limit: u64 },
    /// The selected module is being compiled; decisions wait for it.
    #[error("the policy module {0} is being compiled")]
    Pending(String),
    /// The namespace used up its share of policy CPU time; calls resume when it refills.
    #[error(
        "namespace {namespace} used up its share of policy CPU time; decisions resume as it refills"
    )]
    BudgetExhausted {
        namespace: String,
        retry_after: Duration,
    },
    /// The operator's registry rules refuse what an `oci://` reference needs (a registry or
    /// token realm not allowed, a private address, a redirect elsewhere, an oversized
    /// manifest): fixed by the operator's configuration or the registry, so not retried.
    #[error("the operator refuses the registry access: {0}")]
    RegistryRefused(String),
    /// The module could not be read from the API (a transient error; retried).
    #[error("the policy module could not be read: {0}")]
    Unavailable(String),
    /// Anything else the engine could not do (should not happen; reported, never a crash).
    #[error("policy engine error: {0}")]
    Engine(String),
}

impl PolicyError {
    /// A stable CamelCase code for conditions, Events and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::NotWasm(_) => "PolicyNotWasm",
            PolicyError::NotAComponent(_) => "PolicyNotAComponent",
            PolicyError::WrongWorld { .. } => "PolicyWrongWorld",
            PolicyError::UnsupportedVersion { .. } => "PolicyUnsupportedVersion",
            PolicyError::Trap(_) => "PolicyTrap",
            PolicyError::Timeout(_) => "PolicyTimeout",
            PolicyError::MemoryLimit(_) => "PolicyMemoryLimit",
            PolicyError::ResultTooLarge { .. } => "PolicyResultTooLarge",
            PolicyError::ResultTooLargeToLift { .. } => "PolicyResultTooLarge",
            PolicyError::TooComplex(_) => "PolicyTooComplex",
            PolicyError::CompileLimit(_) => "PolicyCompileLimit",
            PolicyError::EngineBusy => "PolicyEngineBusy",
            PolicyError::Busy { .. } => "PolicyBusy",
            PolicyError::InvalidResult(_) => "PolicyInvalidResult",
            PolicyError::Refused(_) => "PolicyRefused",
            PolicyError::Selection(_) => "PolicySelectionInvalid",
            PolicyError::ModuleMissing(_) => "PolicyModuleMissing",
            PolicyError::DigestMismatch { .. } => "PolicyDigestMismatch",
            PolicyError::ModuleTooLarge { .. } => "PolicyModuleTooLarge",
            PolicyError::Pending(_) => "PolicyPending",
            PolicyError::BudgetExhausted { .. } => "PolicyBudgetExhausted",
            PolicyError::RegistryRefused(_) => "PolicyRegistryRefused",
            PolicyError::Unavailable(_) => "PolicyUnavailable",
            PolicyError::Engine(_) => "PolicyEngineError",
        }
    }

    /// A refusal of the host's, not of the namespace's policy: the call is retried soon,
    /// without reporting it on the QuarksJob (no condition, Event or policy error count).
    pub fn is_host_side(&self) -> bool {
        matches!(self, PolicyError::EngineBusy | PolicyError::Busy { .. })
    }
}
