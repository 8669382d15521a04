//! Hostile fixture (output world): `transform` panics. With `panic = "abort"` (the policy
//! profile) that is a trap; std first tries to print the message to stderr.

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::output::{Guest, OutputInput, OutputResult};

pub struct Panics;

/// The panic message, for tests that look for it in captured stderr.
pub const MESSAGE: &str = "policy-fixture-panics: deliberate panic in transform";

impl Guest for Panics {
    fn transform(input: OutputInput) -> Result<OutputResult, Reason> {
        panic!("{MESSAGE} (file {})", input.file_name);
    }
}

#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::export_output!(Panics);
