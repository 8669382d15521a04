//! The approval policy in Python (examples/policies/approval-py, 17 MiB: too big for a
//! ConfigMap) and in Rust, both pushed to a real registry with `quarks-job policy push` and
//! selected by digest in two namespaces: the operator makes the same decisions with either,
//! QuarksJob by QuarksJob (conditions, messages, runs, strategies written back).

use std::time::{Duration, Instant};

#[path = "../policies/python_policy.rs"]
mod python_policy;

use crate::registry::Registry;
use crate::{
    Cluster, QJob, approve, policy_component, poll, select_policies, set_strategy, wait_for,
};

const APPROVAL: &str = "quarks.cloudfoundry.org/approved";

/// Loading a 17 MiB component means pulling and compiling it (seconds in a debug build, more
/// on a busy machine) before the first decision; everything after that uses the harness's
/// usual deadline.
const FIRST_DECISION: Duration = Duration::from_secs(180);

/// A QuarksJob, optionally approved (`approval` is the annotation's value) and optionally
/// referencing a ConfigMap through an environment variable.
fn qjob(name: &str, strategy: &str, approval: Option<&str>, config_map: Option<&str>) -> QJob {
    let mut qjob = QJob::new(name, strategy);
    if let Some(value) = approval {
        qjob = qjob.annotation(APPROVAL, value);
    }
    let env = match config_map {
        Some(config_map) => serde_json::json!([{
            "name": "SETTING",
            "valueFrom": {"configMapKeyRef": {"name": config_map, "key": "value"}},
        }]),
        None => serde_json::json!([]),
    };
    qjob.container("busybox", "true", serde_json::json!({ "env": env }))
}

/// What an observer sees of one QuarksJob: Ready's reason and message, runs, strategy.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Seen {
    reason: String,
    message: String,
    run_count: i64,
    strategy: String,
}

async fn seen(c: &Cluster, namespace: &str, name: &str) -> Option<Seen> {
    let qjob = c.qjobs_in(namespace).get_opt(name).await.ok()??;
    let strategy = serde_json::to_value(qjob.spec.trigger.strategy).ok()?;
    let status = qjob.status?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some(Seen {
        reason: ready.reason.clone(),
        message: ready.message.clone(),
        run_count: status.run_count,
        strategy: strategy.as_str()?.to_owned(),
    })
}

/// Waits until `name` shows `reason`, `run_count` and `strategy` in both namespaces, then
/// asserts that everything else seen is the same too.
async fn same_in_both(
    c: &Cluster,
    [rust, python]: [&str; 2],
    name: &str,
    (reason, run_count, strategy): (&str, i64, &str),
) -> Seen {
    let wanted = |s: &Option<Seen>| {
        s.as_ref().is_some_and(|s| {
            s.reason == reason && s.run_count == run_count && s.strategy == strategy
        })
    };
    wait_for(
        &format!(
            "{name} to show {reason}, {run_count} run(s), strategy {strategy}, in both namespaces"
        ),
        || async { wanted(&seen(c, rust, name).await) && wanted(&seen(c, python, name).await) },
    )
    .await;
    let (by_rust, by_python) = (seen(c, rust, name).await, seen(c, python, name).await);
    assert_eq!(by_python, by_rust, "{name}: Python vs Rust");
    by_rust.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_approval_policy_from_a_registry_decides_like_the_rust_one_on_the_operator() {
    let python_component = python_policy::approval_py();
    let c = Cluster::start().await;
    let registry = Registry::start().await;
    let rust_component = policy_component("approval-trigger");
    let rust_ref = registry.push(&rust_component, "policies/approval-rust:v1");
    let python_ref = registry.push(&python_component, "policies/approval-py:v1");

    let rust = format!("{}-rust", c.namespace);
    let python = format!("{}-python", c.namespace);
    let cache = tempfile::tempdir().unwrap();
    let _op = c
        .operator_with(
            &c.monitored_id,
            &[
                // A registry on loopback: allowed by name, private addresses allowed.
                "--policy-allow-registry",
                &registry.addr,
                "--policy-allow-private-addresses",
                "--policy-insecure-registry",
                &registry.addr,
                "--policy-cache-dir",
                cache.path().to_str().unwrap(),
            ],
        )
        .await;
    for (namespace, reference) in [(&rust, &rust_ref), (&python, &python_ref)] {
        c.create_namespace(namespace, Some(&c.monitored_id)).await;
        select_policies(&c, namespace, &[("trigger", reference)]).await;
    }

    // The first QuarksJob in each namespace waits for its policy to be pulled and compiled.
    let created = Instant::now();
    let qjobs = [
        qjob("unapproved", "once", None, None),
        qjob("approved-false", "once", Some("false"), None),
        qjob("approved", "once", Some("true"), None),
        qjob("errand", "manual", None, None),
        qjob("waiting", "once", Some("true"), Some("missing-settings")),
    ];
    for namespace in [&rust, &python] {
        for q in &qjobs {
            c.create_qjob_in(namespace, q).await;
        }
    }
    for (namespace, language) in [(&rust, "Rust"), (&python, "Python")] {
        let decided = poll(FIRST_DECISION, || async {
            seen(&c, namespace, "unapproved")
                .await
                .is_some_and(|s| s.reason == "NotApproved")
                .then_some(())
        })
        .await;
        assert!(
            decided.is_some(),
            "{language}: no decision within {FIRST_DECISION:?}: {:?}",
            seen(&c, namespace, "unapproved").await
        );
        println!(
            "{language}: QuarksJobs created → first decision by the pulled policy: {:?}",
            created.elapsed()
        );
    }

    let ns = [rust.as_str(), python.as_str()];
    let unapproved = same_in_both(&c, ns, "unapproved", ("NotApproved", 0, "once")).await;
    assert!(
        unapproved
            .message
            .contains("annotate the QuarksJob with quarks.cloudfoundry.org/approved=true"),
        "{unapproved:?}"
    );
    same_in_both(&c, ns, "approved-false", ("NotApproved", 0, "once")).await;
    same_in_both(&c, ns, "errand", ("StrategyManual", 0, "manual")).await;
    let waiting = same_in_both(&c, ns, "waiting", ("WaitingForConfig", 0, "once")).await;
    assert!(
        waiting.message.contains("configmap/missing-settings"),
        "{waiting:?}"
    );
    // Approved: it ran once, `done` was written back, and the decision after the run says so.
    same_in_both(&c, ns, "approved", ("StrategyDone", 1, "done")).await;

    // An errand set to `now` waits for approval and stays `now`; approving runs it once and
    // resets it to `manual`.
    for namespace in ns {
        set_strategy(&c, namespace, "errand", "now").await;
    }
    same_in_both(&c, ns, "errand", ("NotApproved", 0, "now")).await;
    for namespace in ns {
        approve(&c, namespace, "errand").await;
    }
    same_in_both(&c, ns, "errand", ("StrategyManual", 1, "manual")).await;

    // Approved later: runs then, exactly like the one approved from the start.
    for namespace in ns {
        approve(&c, namespace, "unapproved").await;
    }
    same_in_both(&c, ns, "unapproved", ("StrategyDone", 1, "done")).await;
}
