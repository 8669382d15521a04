//! Hostile fixture (trigger world): `decide` allocates 1 MiB blocks and keeps them all
//! until linear memory cannot grow any more. The engine must stop it at its memory limit.

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::trigger::{Guest, TriggerDecision, TriggerInput};

pub struct AllocateForever;

const BLOCK: usize = 1 << 20;

impl Guest for AllocateForever {
    fn decide(_input: TriggerInput) -> Result<TriggerDecision, Reason> {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            // Writing into each block makes it real memory use, and `black_box` keeps the
            // vector (and thus every block) observable, so nothing is optimised away. When
            // memory.grow is refused, the allocator aborts (an `unreachable` trap).
            let mut block = vec![0u8; BLOCK];
            block[kept.len() % BLOCK] = 1;
            kept.push(block);
            std::hint::black_box(&mut kept);
        }
    }
}

#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::export_trigger!(AllocateForever);
