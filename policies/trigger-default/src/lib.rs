use quarks_policy_sdk::trigger::{Guest, quarks::policy::trigger_types::*, quarks::policy::types::Reason};
pub struct P;
impl Guest for P {
    fn decide(input: TriggerInput) -> Result<TriggerDecision, Reason> {
        Ok(TriggerDecision { run: input.run_active, write_strategy: None, reasons: vec![] })
    }
}
#[cfg(target_arch = "wasm32")]
quarks_policy_sdk::trigger::export_trigger!(P);
