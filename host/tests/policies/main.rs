//! Policy tests through the real engine with real components: the built-in policies (built
//! from `policies/` by host/build.rs), hostile fixtures (built from `tests/policy-fixtures/`)
//! and hand-written WebAssembly, plus the `quarks-job` CLI.

mod builtin_output;
mod builtin_trigger;
mod cli;
mod hostile;
mod hostile_components;
mod hostile_tenant;
mod python_policy;
mod second_language;

use quarks_job::policy::{Limits, LoadedPolicy, PolicyEngine, World, builtin};
use std::sync::Arc;

/// A fixture component built by host/build.rs from tests/policy-fixtures/<name>.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("QUARKS_POLICY_FIXTURES")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn engine() -> PolicyEngine {
    PolicyEngine::new(Limits::default()).expect("engine")
}

pub fn trigger_default(engine: &PolicyEngine) -> Arc<LoadedPolicy> {
    engine
        .load(builtin::TRIGGER_DEFAULT.bytes, World::Trigger)
        .expect("trigger-default loads")
}

pub fn output_default(engine: &PolicyEngine) -> Arc<LoadedPolicy> {
    engine
        .load(builtin::OUTPUT_DEFAULT.bytes, World::Output)
        .expect("output-default loads")
}
