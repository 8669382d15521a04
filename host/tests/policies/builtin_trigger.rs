//! spec.md §2, row by row, through the engine and the built-in `trigger-default` component.

use quarks_job::policy::contract::{
    JobOutcome, QuarksJobView, Strategy, TriggerDecision, TriggerEvent, TriggerInput,
};

use super::{engine, trigger_default};

struct Case {
    name: &'static str,
    event: TriggerEvent,
    strategy: Strategy,
    update_on_config_change: bool,
    digest_now: Option<&'static str>,
    digest_last_run: Option<&'static str>,
    missing: &'static [&'static str],
    run_active: bool,
    expect_run: bool,
    expect_write: Option<Strategy>,
    expect_code: &'static str,
}

const fn case(name: &'static str, event: TriggerEvent, strategy: Strategy) -> Case {
    Case {
        name,
        event,
        strategy,
        update_on_config_change: false,
        digest_now: Some("sha256:aa"),
        digest_last_run: None,
        missing: &[],
        run_active: false,
        expect_run: false,
        expect_write: None,
        expect_code: "",
    }
}

fn input(c: &Case) -> TriggerInput {
    TriggerInput {
        event: c.event,
        quarks_job: QuarksJobView {
            name: "qjob".into(),
            namespace: "staging".into(),
            uid: "uid-1".into(),
            generation: 1,
            labels: Default::default(),
            annotations: Default::default(),
            strategy: c.strategy,
            update_on_config_change: c.update_on_config_change,
            completed: false,
            run_count: 0,
            spec: serde_json::json!({"trigger": {"strategy": c.strategy}}),
        },
        config_digest_now: c.digest_now.map(str::to_owned),
        config_digest_last_run: c.digest_last_run.map(str::to_owned),
        missing_config: c.missing.iter().map(|s| s.to_string()).collect(),
        run_active: c.run_active,
    }
}

fn cases() -> Vec<Case> {
    use Strategy::*;
    use TriggerEvent::*;
    vec![
        Case {
            expect_code: "StrategyManual",
            ..case("manual never runs on create", Created, Manual)
        },
        Case {
            expect_code: "StrategyManual",
            ..case("manual never runs on resync", Resync, Manual)
        },
        Case {
            expect_code: "StrategyManual",
            update_on_config_change: true,
            digest_last_run: Some("sha256:bb"),
            ..case("manual ignores config changes", ConfigChanged, Manual)
        },
        Case {
            expect_run: true,
            expect_write: Some(Manual),
            expect_code: "StrategyNow",
            ..case("now runs on create and resets to manual", Created, Now)
        },
        Case {
            expect_run: true,
            expect_write: Some(Manual),
            expect_code: "StrategyNow",
            ..case(
                "now runs when changed from manual",
                StrategyChanged { previous: Manual },
                Now,
            )
        },
        Case {
            expect_run: true,
            expect_write: Some(Manual),
            expect_code: "StrategyNow",
            ..case(
                "now runs when changed from done (from anything)",
                StrategyChanged { previous: Done },
                Now,
            )
        },
        Case {
            run_active: true,
            expect_code: "RunActive",
            ..case(
                "now waits while a run is active",
                StrategyChanged { previous: Manual },
                Now,
            )
        },
        Case {
            expect_run: true,
            expect_write: Some(Manual),
            expect_code: "StrategyNow",
            ..case(
                "now left over after a finished run runs again",
                JobFinished {
                    outcome: JobOutcome::Succeeded,
                },
                Now,
            )
        },
        Case {
            expect_run: true,
            expect_write: Some(Done),
            expect_code: "StrategyOnce",
            ..case("once runs on create and becomes done", Created, Once)
        },
        Case {
            run_active: true,
            expect_code: "RunActive",
            ..case("once waits while a run is active", Created, Once)
        },
        Case {
            missing: &["configmap/settings", "secret/creds"],
            expect_code: "WaitingForConfig",
            ..case("once waits for missing config", Created, Once)
        },
        Case {
            update_on_config_change: true,
            digest_last_run: Some("sha256:bb"),
            expect_run: true,
            expect_write: None,
            expect_code: "ConfigChanged",
            ..case(
                "done re-runs when referenced config changed",
                ConfigChanged,
                Done,
            )
        },
        Case {
            update_on_config_change: true,
            digest_last_run: Some("sha256:aa"),
            ..case("done does not re-run for unchanged config", Resync, Done)
        },
        Case {
            update_on_config_change: false,
            digest_last_run: Some("sha256:bb"),
            ..case(
                "done ignores config changes without updateOnConfigChange",
                ConfigChanged,
                Done,
            )
        },
        Case {
            update_on_config_change: true,
            digest_last_run: None,
            expect_code: "NoBaseline",
            ..case(
                "done without a recorded digest does not run",
                ConfigChanged,
                Done,
            )
        },
        Case {
            update_on_config_change: true,
            digest_last_run: Some("sha256:bb"),
            run_active: true,
            expect_code: "RunActive",
            ..case(
                "done with changed config waits for the active run",
                ConfigChanged,
                Done,
            )
        },
    ]
}

#[test]
fn every_row_of_the_trigger_table_through_the_engine() {
    let engine = engine();
    let policy = trigger_default(&engine);
    for c in cases() {
        let decision: TriggerDecision = engine
            .decide(&policy, input(&c))
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(decision.run, c.expect_run, "{}: run ({decision:?})", c.name);
        assert_eq!(
            decision.write_strategy, c.expect_write,
            "{}: write-back ({decision:?})",
            c.name
        );
        assert!(
            !decision.reasons.is_empty(),
            "{}: a decision always says why",
            c.name
        );
        if !c.expect_code.is_empty() {
            assert!(
                decision.reasons.iter().any(|r| r.code == c.expect_code),
                "{}: expected reason {} in {decision:?}",
                c.name,
                c.expect_code
            );
        }
    }
}

#[test]
fn waiting_for_config_names_what_is_missing() {
    let engine = engine();
    let policy = trigger_default(&engine);
    let c = Case {
        missing: &["configmap/settings"],
        ..case("", TriggerEvent::Created, Strategy::Now)
    };
    let decision = engine.decide(&policy, input(&c)).unwrap();
    assert!(!decision.run);
    assert!(
        decision
            .reasons
            .iter()
            .any(|r| r.message.contains("configmap/settings")),
        "{decision:?}"
    );
}
