//! `trigger-default`: the built-in trigger policy, implementing spec.md §2.
//!
//! | strategy | runs when | written back |
//! |---|---|---|
//! | `manual` | never by itself | nothing |
//! | `now` | no run is active | `manual` |
//! | `once` | no run is active | `done` |
//! | `done` | `updateOnConfigChange`, both config digests known and different, no run active | nothing |
//!
//! The policy is stateless over its input: it never looks at the event. A `now` or `once`
//! QuarksJob keeps asking for a run until the host writes the new strategy back, and the
//! host asks again when a Job finishes, so a burst of events while a run is active collapses
//! into one follow-up decision. Referenced ConfigMaps/Secrets that do not exist yet hold
//! back any run (`WaitingForConfig`); the host asks again when they appear.
//!
//! The logic is [`decide`], a plain function unit-tested natively; the WebAssembly export
//! only delegates to it.

// No std: the component then imports nothing but the contract (see the SDK docs).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::vec;

use quarks_policy_sdk::Reason;
use quarks_policy_sdk::trigger::{Guest, Strategy, TriggerDecision, TriggerInput};

// The no_std runtime (allocator, panic handler) also serves policies that use this crate as a
// library: a component has exactly one, so they do not declare their own.
quarks_policy_sdk::no_std_runtime!();

/// The exported policy.
pub struct TriggerDefault;

impl Guest for TriggerDefault {
    fn decide(input: TriggerInput) -> Result<TriggerDecision, Reason> {
        Ok(decide(&input))
    }
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
quarks_policy_sdk::export_trigger!(TriggerDefault);

/// What the strategy alone asks for, before the gates shared by all strategies.
enum Wanted {
    /// Run, then write this strategy back (if any); `because` explains why a run is wanted.
    Run {
        write_back: Option<Strategy>,
        because: Reason,
    },
    /// No run, for this reason.
    Nothing(Reason),
}

/// The decision of spec.md §2 for one input.
pub fn decide(input: &TriggerInput) -> TriggerDecision {
    match wanted(input) {
        Wanted::Nothing(reason) => no_run(reason),
        Wanted::Run {
            write_back,
            because,
        } => {
            if !input.missing_config.is_empty() {
                return no_run(Reason::new(
                    "WaitingForConfig",
                    format!(
                        "{}; waiting for referenced config that does not exist yet: {}",
                        because.message,
                        input.missing_config.join(", ")
                    ),
                ));
            }
            if input.run_active {
                return no_run(Reason::new(
                    "RunActive",
                    format!(
                        "{}; a run is still active, so this is decided again when it finishes",
                        because.message
                    ),
                ));
            }
            TriggerDecision {
                run: true,
                write_strategy: write_back,
                reasons: vec![because],
            }
        }
    }
}

fn wanted(input: &TriggerInput) -> Wanted {
    let job = &input.quarks_job;
    match job.strategy {
        Strategy::Manual => Wanted::Nothing(Reason::new(
            "StrategyManual",
            "strategy is manual: runs only when set to now",
        )),
        Strategy::Now => Wanted::Run {
            write_back: Some(Strategy::Manual),
            because: Reason::new(
                "StrategyNow",
                "strategy is now: run, then reset the strategy to manual",
            ),
        },
        Strategy::Once => Wanted::Run {
            write_back: Some(Strategy::Done),
            because: Reason::new(
                "StrategyOnce",
                "strategy is once: run, then set the strategy to done",
            ),
        },
        Strategy::Done => wanted_when_done(input),
    }
}

fn wanted_when_done(input: &TriggerInput) -> Wanted {
    if !input.quarks_job.update_on_config_change {
        return Wanted::Nothing(Reason::new(
            "StrategyDone",
            "strategy is done and updateOnConfigChange is false: does not run again",
        ));
    }
    let Some(last_run) = input.config_digest_last_run.as_deref() else {
        return Wanted::Nothing(Reason::new(
            "NoBaseline",
            "strategy is done but no previous run recorded a config digest to compare with",
        ));
    };
    match input.config_digest_now.as_deref() {
        // A missing referenced object is the usual reason for an unknown digest: the run
        // is then held back by the WaitingForConfig gate, which names what is missing.
        None if !input.missing_config.is_empty() => Wanted::Run {
            write_back: None,
            because: Reason::new(
                "ConfigChanged",
                "strategy is done and referenced config changed",
            ),
        },
        None => Wanted::Nothing(Reason::new(
            "ConfigDigestUnknown",
            "strategy is done but the digest of the referenced config is unknown",
        )),
        Some(now) if now == last_run => Wanted::Nothing(Reason::new(
            "ConfigUnchanged",
            "strategy is done and referenced config is unchanged since the last run",
        )),
        Some(_) => Wanted::Run {
            write_back: None,
            because: Reason::new(
                "ConfigChanged",
                "strategy is done, updateOnConfigChange is true and referenced config changed since the last run",
            ),
        },
    }
}

fn no_run(reason: Reason) -> TriggerDecision {
    TriggerDecision {
        run: false,
        write_strategy: None,
        reasons: vec![reason],
    }
}

#[cfg(test)]
mod tests;
