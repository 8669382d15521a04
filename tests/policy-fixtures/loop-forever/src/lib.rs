//! Hostile fixture (trigger world): `decide` never returns. The engine must stop it at its
//! CPU deadline and report a timeout.

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::trigger::{Guest, TriggerDecision, TriggerInput};

pub struct LoopForever;

impl Guest for LoopForever {
    fn decide(input: TriggerInput) -> Result<TriggerDecision, Reason> {
        // The state feeds back through `black_box`, so the optimiser can neither prove the
        // loop pointless nor hoist it away; it spins on arithmetic, touching no imports.
        let mut state = input.quarks_job.run_count;
        loop {
            state = std::hint::black_box(state.wrapping_mul(6_364_136_223_846_793_005) ^ 1);
        }
    }
}

#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::export_trigger!(LoopForever);
