use quarks_policy_sdk::trigger::exports::quarks::policy::trigger_policy::Guest;
use quarks_policy_sdk::trigger::quarks::policy::trigger_types::*;
use quarks_policy_sdk::trigger::quarks::policy::types::Reason;
pub struct P;
impl Guest for P {
    fn decide(input: TriggerInput) -> Result<TriggerDecision, Reason> {
        Ok(TriggerDecision { run: input.run_active, write_strategy: None, reasons: vec![] })
    }
}
#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::trigger::export_trigger!(P);
