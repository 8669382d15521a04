//! Generated host bindings of `wit/policy.wit`, and the conversions between them and the
//! host's [`contract`](super::contract) types. Only the engine uses this module.
//!
//! Conversions out of the component also validate: duplicate map keys and malformed reasons
//! are refused here, so the rest of the host only ever sees well-formed values.

use std::collections::BTreeMap;

use super::contract as c;

pub(crate) mod trigger {
    wasmtime::component::bindgen!({
        world: "trigger",
        path: "../wit",
    });
}

pub(crate) mod output {
    wasmtime::component::bindgen!({
        world: "output",
        path: "../wit",
        // One Rust type per WIT type: the interface both worlds use is the trigger bindings'.
        with: {
            "quarks:policy/types": super::trigger::quarks::policy::types,
        },
    });
}

use output::quarks::policy::output_types as wo;
use trigger::quarks::policy::trigger_types as wt;
use trigger::quarks::policy::types as wtt;

/// Bytes a policy's reason brings back.
fn reason_size(reason: &wtt::Reason) -> usize {
    reason.code.len() + reason.message.len()
}

/// A policy's reasons, each checked.
fn reasons_out(reasons: Vec<wtt::Reason>) -> Result<Vec<c::Reason>, String> {
    reasons
        .into_iter()
        .map(|r| checked_reason(r.code, r.message))
        .collect()
}

fn map_to_list(map: BTreeMap<String, String>) -> Vec<(String, String)> {
    map.into_iter().collect()
}

/// Builds a map from what a policy returned, refusing duplicate keys.
fn list_to_map<V>(what: &str, list: Vec<(String, V)>) -> Result<BTreeMap<String, V>, String> {
    // One sort and a bulk build (the map's own sort then finds the list sorted), rather than
    // a lookup and an insert per key: a Secret of a 1 MiB file has thousands of keys. The
    // sort moves (prefix, position) pairs, and most comparisons are of the prefixes.
    let mut order: Vec<(u64, usize)> = list
        .iter()
        .enumerate()
        .map(|(position, (key, _))| (prefix(key), position))
        .collect();
    let key = |position: usize| list[position].0.as_str();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| key(a.1).cmp(key(b.1)))
            .then(a.1.cmp(&b.1))
    });
    // The key repeated first in the policy's order: over the pairs of equal neighbours, the
    // smallest later position.
    let repeated = order
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0 && key(pair[0].1) == key(pair[1].1))
        .map(|pair| pair[1].1)
        .min();
    if let Some(position) = repeated {
        return Err(format!("duplicate {what} key {:?}", key(position)));
    }
    let mut slots: Vec<Option<(String, V)>> = list.into_iter().map(Some).collect();
    Ok(order
        .iter()
        .filter_map(|&(_, position)| slots[position].take())
        .collect())
}

/// The first 8 bytes of a key as a big-endian number (zero-padded): ordering by it, then by
/// the whole key, is the keys' own (lexicographic) order.
fn prefix(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let mut word = [0u8; 8];
    let n = bytes.len().min(8);
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(word)
}

const MAX_REASON_CODE: usize = 64;
const MAX_REASON_MESSAGE: usize = 4096;

/// Reason codes are CamelCase identifiers: they end up in condition reasons and metric labels.
fn checked_reason(code: String, message: String) -> Result<c::Reason, String> {
    let well_formed = !code.is_empty()
        && code.len() <= MAX_REASON_CODE
        && code.starts_with(|ch: char| ch.is_ascii_uppercase())
        && code.chars().all(|ch| ch.is_ascii_alphanumeric());
    if !well_formed {
        return Err(format!(
            "reason code {:?} is not a CamelCase identifier of at most {MAX_REASON_CODE} characters",
            code.chars().take(80).collect::<String>()
        ));
    }
    if message.len() > MAX_REASON_MESSAGE {
        return Err(format!(
            "reason message of {} bytes is longer than {MAX_REASON_MESSAGE}",
            message.len()
        ));
    }
    Ok(c::Reason { code, message })
}

// ---- trigger ------------------------------------------------------------------------------

fn strategy_in(s: c::Strategy) -> wtt::Strategy {
    match s {
        c::Strategy::Manual => wtt::Strategy::Manual,
        c::Strategy::Now => wtt::Strategy::Now,
        c::Strategy::Once => wtt::Strategy::Once,
        c::Strategy::Done => wtt::Strategy::Done,
    }
}

fn strategy_out(s: wtt::Strategy) -> c::Strategy {
    match s {
        wtt::Strategy::Manual => c::Strategy::Manual,
        wtt::Strategy::Now => c::Strategy::Now,
        wtt::Strategy::Once => c::Strategy::Once,
        wtt::Strategy::Done => c::Strategy::Done,
    }
}

pub(crate) fn trigger_input_in(input: c::TriggerInput) -> wt::TriggerInput {
    let event = match input.event {
        c::TriggerEvent::Created => wt::TriggerEvent::Created,
        c::TriggerEvent::SpecChanged => wt::TriggerEvent::SpecChanged,
        c::TriggerEvent::StrategyChanged { previous } => {
            wt::TriggerEvent::StrategyChanged(strategy_in(previous))
        }
        c::TriggerEvent::ConfigChanged => wt::TriggerEvent::ConfigChanged,
        c::TriggerEvent::JobFinished { outcome } => wt::TriggerEvent::JobFinished(match outcome {
            c::JobOutcome::Succeeded => wt::JobOutcome::Succeeded,
            c::JobOutcome::Failed => wt::JobOutcome::Failed,
        }),
        c::TriggerEvent::Resync => wt::TriggerEvent::Resync,
    };
    let q = input.quarks_job;
    wt::TriggerInput {
        event,
        quarks_job: wt::QuarksJob {
            name: q.name,
            namespace: q.namespace,
            uid: q.uid,
            generation: q.generation,
            labels: map_to_list(q.labels),
            annotations: map_to_list(q.annotations),
            strategy: strategy_in(q.strategy),
            update_on_config_change: q.update_on_config_change,
            completed: q.completed,
            run_count: q.run_count,
            spec_json: q.spec.to_string(),
        },
        config_digest_now: input.config_digest_now,
        config_digest_last_run: input.config_digest_last_run,
        missing_config: input.missing_config,
        run_active: input.run_active,
    }
}

pub(crate) fn trigger_result_size(result: &Result<wt::TriggerDecision, wtt::Reason>) -> usize {
    match result {
        Ok(d) => d.reasons.iter().map(reason_size).sum(),
        Err(r) => reason_size(r),
    }
}

pub(crate) fn trigger_result_out(
    result: Result<wt::TriggerDecision, wtt::Reason>,
) -> Result<Result<c::TriggerDecision, c::Reason>, String> {
    Ok(match result {
        Ok(d) => Ok(c::TriggerDecision {
            run: d.run,
            write_strategy: d.write_strategy.map(strategy_out),
            reasons: reasons_out(d.reasons)?,
        }),
        Err(r) => Err(checked_reason(r.code, r.message)?),
    })
}

// ---- output -------------------------------------------------------------------------------

pub(crate) fn output_input_in(input: c::OutputInput) -> wo::OutputInput {
    wo::OutputInput {
        quarks_job_name: input.quarks_job_name,
        namespace: input.namespace,
        output: wo::OutputOptions {
            output_type: input.output.output_type,
            secret_labels: map_to_list(input.output.secret_labels),
            write_on_failure: input.output.write_on_failure,
        },
        container: input.container,
        remote_id: input.remote_id,
        file_name: input.file_name,
        file: wo::FileOptions {
            name: input.file.name,
            secret_labels: map_to_list(input.file.secret_labels),
            secret_annotations: map_to_list(input.file.secret_annotations),
            versioned: input.file.versioned,
            persistence_method: match input.file.persistence_method {
                c::PersistenceMethod::OneToOne => wo::PersistenceMethod::OneToOne,
                c::PersistenceMethod::FanOut => wo::PersistenceMethod::FanOut,
            },
        },
        content: input.content.0,
        exit_code: input.exit_code,
    }
}

pub(crate) fn output_result_size(result: &Result<wo::OutputResult, wtt::Reason>) -> usize {
    let pairs = |m: &[(String, String)]| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    match result {
        Ok(r) => {
            let secrets: usize = r
                .secrets
                .iter()
                .map(|s| {
                    s.name.len()
                        + s.data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                        + pairs(&s.labels)
                        + pairs(&s.annotations)
                })
                .sum();
            secrets + r.reasons.iter().map(reason_size).sum::<usize>()
        }
        Err(r) => reason_size(r),
    }
}

pub(crate) fn output_result_out(
    result: Result<wo::OutputResult, wtt::Reason>,
) -> Result<Result<c::OutputResult, c::Reason>, String> {
    Ok(match result {
        Ok(r) => Ok(c::OutputResult {
            secrets: r
                .secrets
                .into_iter()
                .map(|s| {
                    Ok(c::SecretSpec {
                        data: list_to_map(
                            &format!("data of secret {:?}", s.name),
                            s.data.into_iter().map(|(k, v)| (k, c::Bytes(v))).collect(),
                        )?,
                        labels: list_to_map(&format!("label of secret {:?}", s.name), s.labels)?,
                        annotations: list_to_map(
                            &format!("annotation of secret {:?}", s.name),
                            s.annotations,
                        )?,
                        name: s.name,
                        versioned: s.versioned,
                    })
                })
                .collect::<Result<_, String>>()?,
            reasons: reasons_out(r.reasons)?,
        }),
        Err(r) => Err(checked_reason(r.code, r.message)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_must_be_camel_case_identifiers() {
        assert!(checked_reason("StrategyNow".into(), "ok".into()).is_ok());
        for bad in ["", "lower", "Has Space", "Dash-Code", &"A".repeat(65)] {
            assert!(
                checked_reason(bad.into(), String::new()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_to_map_keeps_every_key_and_names_the_first_repeat() {
        let keys = [
            "key-10",
            "b",
            "key-2",
            "a\u{0}",
            "a",
            "key-100000000",
            "key-1000000",
        ];
        let list: Vec<(String, usize)> = keys.iter().map(|k| (k.to_string(), k.len())).collect();
        let map = list_to_map("data", list.clone()).expect("no duplicates");
        assert_eq!(map, list.into_iter().collect::<BTreeMap<_, _>>());
        let repeated = ["z", "y", "x", "y", "z", "x"].map(|k| (k.to_owned(), ()));
        let err = list_to_map("data", repeated.to_vec()).unwrap_err();
        assert!(err.contains("duplicate data key \"y\""), "{err}");
    }

    #[test]
    fn duplicate_keys_from_a_policy_are_refused() {
        let err = list_to_map("label", vec![("a".into(), 1), ("a".into(), 2)]).unwrap_err();
        assert!(err.contains("duplicate label key \"a\""), "{err}");
    }
}
