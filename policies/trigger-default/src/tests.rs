//! Every row of spec.md §2, table-driven, against the native build of [`decide`].

use super::*;
use quarks_policy_sdk::trigger::{JobOutcome, QuarksJob, TriggerEvent};

struct Case {
    name: &'static str,
    strategy: Strategy,
    update_on_config_change: bool,
    now: Option<&'static str>,
    last_run: Option<&'static str>,
    missing: &'static [&'static str],
    run_active: bool,
    /// (run, write back, reason code)
    expect: (bool, Option<Strategy>, &'static str),
}

const fn case(name: &'static str, strategy: Strategy) -> Case {
    Case {
        name,
        strategy,
        update_on_config_change: false,
        now: Some("sha256:a"),
        last_run: Some("sha256:a"),
        missing: &[],
        run_active: false,
        expect: (false, None, ""),
    }
}

fn input(c: &Case, event: TriggerEvent) -> TriggerInput {
    TriggerInput {
        event,
        quarks_job: QuarksJob {
            name: "qjob".into(),
            namespace: "staging".into(),
            uid: "uid-1".into(),
            generation: 1,
            labels: vec![],
            annotations: vec![],
            strategy: c.strategy,
            update_on_config_change: c.update_on_config_change,
            completed: false,
            run_count: 0,
            spec_json: "{}".into(),
        },
        config_digest_now: c.now.map(String::from),
        config_digest_last_run: c.last_run.map(String::from),
        missing_config: c.missing.iter().map(|m| m.to_string()).collect(),
        run_active: c.run_active,
    }
}

fn cases() -> Vec<Case> {
    use Strategy::*;
    vec![
        Case {
            expect: (false, None, "StrategyManual"),
            ..case("manual never runs", Manual)
        },
        Case {
            update_on_config_change: true,
            now: Some("sha256:b"),
            expect: (false, None, "StrategyManual"),
            ..case("manual ignores config changes", Manual)
        },
        Case {
            expect: (true, Some(Manual), "StrategyNow"),
            ..case("now runs and resets to manual", Now)
        },
        Case {
            run_active: true,
            expect: (false, None, "RunActive"),
            ..case("now waits for the active run", Now)
        },
        Case {
            missing: &["configmap/settings", "secret/creds"],
            now: None,
            expect: (false, None, "WaitingForConfig"),
            ..case("now waits for missing config", Now)
        },
        Case {
            expect: (true, Some(Done), "StrategyOnce"),
            ..case("once runs and becomes done", Once)
        },
        Case {
            run_active: true,
            expect: (false, None, "RunActive"),
            ..case("once waits for the active run", Once)
        },
        Case {
            missing: &["secret/creds"],
            now: None,
            expect: (false, None, "WaitingForConfig"),
            ..case("once waits for missing config", Once)
        },
        Case {
            last_run: None,
            expect: (true, Some(Done), "StrategyOnce"),
            ..case("once needs no baseline", Once)
        },
        Case {
            now: Some("sha256:b"),
            expect: (false, None, "StrategyDone"),
            ..case("done without updateOnConfigChange never reruns", Done)
        },
        Case {
            update_on_config_change: true,
            expect: (false, None, "ConfigUnchanged"),
            ..case("done with unchanged config does not rerun", Done)
        },
        Case {
            update_on_config_change: true,
            now: Some("sha256:b"),
            expect: (true, None, "ConfigChanged"),
            ..case("done reruns on config change without write back", Done)
        },
        Case {
            update_on_config_change: true,
            now: Some("sha256:b"),
            run_active: true,
            expect: (false, None, "RunActive"),
            ..case("done config change waits for the active run", Done)
        },
        Case {
            update_on_config_change: true,
            last_run: None,
            now: Some("sha256:b"),
            expect: (false, None, "NoBaseline"),
            ..case("done without a recorded digest does not run", Done)
        },
        Case {
            update_on_config_change: true,
            now: None,
            missing: &["configmap/settings"],
            expect: (false, None, "WaitingForConfig"),
            ..case("done with deleted config waits for it", Done)
        },
        Case {
            update_on_config_change: true,
            now: None,
            expect: (false, None, "ConfigDigestUnknown"),
            ..case("done with unknown digest does not run", Done)
        },
    ]
}

#[test]
fn every_row_of_the_spec_table_for_every_event() {
    let events = [
        TriggerEvent::Created,
        TriggerEvent::SpecChanged,
        TriggerEvent::StrategyChanged(Strategy::Manual),
        TriggerEvent::ConfigChanged,
        TriggerEvent::JobFinished(JobOutcome::Succeeded),
        TriggerEvent::JobFinished(JobOutcome::Failed),
        TriggerEvent::Resync,
    ];
    for c in cases() {
        for event in &events {
            let decision = decide(&input(&c, *event));
            let (run, write, code) = c.expect;
            assert_eq!(decision.run, run, "{}: run ({event:?})", c.name);
            assert_eq!(
                decision.write_strategy, write,
                "{}: write back ({event:?})",
                c.name
            );
            assert_eq!(
                decision.reasons.len(),
                1,
                "{}: {:?}",
                c.name,
                decision.reasons
            );
            assert_eq!(
                decision.reasons[0].code, code,
                "{}: {:?}",
                c.name, decision.reasons
            );
            assert!(!decision.reasons[0].message.is_empty(), "{}", c.name);
        }
    }
}

#[test]
fn waiting_for_config_names_what_is_missing() {
    let c = Case {
        missing: &["configmap/settings", "secret/creds"],
        now: None,
        ..case("", Strategy::Now)
    };
    let decision = decide(&input(&c, TriggerEvent::Created));
    let message = &decision.reasons[0].message;
    assert!(
        message.contains("configmap/settings, secret/creds"),
        "{message}"
    );
}

#[test]
fn reason_codes_are_camel_case() {
    for c in cases() {
        let decision = decide(&input(&c, TriggerEvent::Resync));
        for reason in &decision.reasons {
            let code = &reason.code;
            assert!(
                code.starts_with(|ch: char| ch.is_ascii_uppercase()),
                "{code}"
            );
            assert!(code.chars().all(|ch| ch.is_ascii_alphanumeric()), "{code}");
        }
    }
}

#[test]
fn the_export_delegates_to_decide() {
    let c = case("", Strategy::Once);
    let exported = <TriggerDefault as Guest>::decide(input(&c, TriggerEvent::Created));
    assert_eq!(exported, Ok(decide(&input(&c, TriggerEvent::Created))));
}
