//! Hostile fixture (output world): `transform` returns about 3 MiB of Secret data (three
//! Secrets of 1 MiB each), more than the engine's default result-size cap of 2 MiB. The
//! engine must refuse the result, not pass it on.

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::output::{Guest, OutputInput, OutputResult, SecretSpec};

pub struct HugeResult;

const SECRETS: usize = 3;
const BYTES_PER_SECRET: usize = 1 << 20;

impl Guest for HugeResult {
    fn transform(input: OutputInput) -> Result<OutputResult, Reason> {
        let secrets = (0..SECRETS)
            .map(|index| SecretSpec {
                name: format!("{}-{index}", input.file.name),
                data: vec![("blob".to_string(), vec![b'x'; BYTES_PER_SECRET])],
                labels: Vec::new(),
                annotations: Vec::new(),
                versioned: false,
            })
            .collect();
        Ok(OutputResult {
            secrets,
            reasons: vec![Reason::new("HugeResult", "three Secrets of 1 MiB each")],
        })
    }
}

#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::export_output!(HugeResult);
