//! spec.md §1–§3 and §6, proven through the API with the real operator binary.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use quarks_job::crd::{QuarksJob, Strategy};

use crate::{
    Cluster, DEADLINE, QJob, events_in, list_labelled, poll, put_config_map, run_count, runs_of,
    set_strategy, wait_completed, wait_for, wait_status, wait_until,
};

async fn qjob(c: &Cluster, name: &str) -> QuarksJob {
    c.qjobs().get(name).await.expect("get QuarksJob")
}

async fn jobs_of(c: &Cluster, name: &str) -> Vec<Job> {
    list_labelled(c, &c.namespace, &runs_of(name)).await
}

/// Asserts the run count stays at `runs` for a while (used to prove that nothing happens): 2.5 s,
/// longer than the 1 s for which the operator gathers config changes before it decides.
async fn stays_at(c: &Cluster, name: &str, runs: i64) {
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            run_count(c, &c.namespace, name).await,
            runs,
            "{name} must not run"
        );
    }
    assert!(jobs_of(c, name).await.is_empty() || runs > 0);
}

/// A one-off printing `/etc/config/value` of ConfigMap `config_map`.
fn with_config_map(name: &str, config_map: &str, update: bool) -> QJob {
    QJob::new(name, "once")
        .update_on_config_change(update)
        .script("cat /etc/config/value")
        .volume(
            serde_json::json!({"name": "config", "configMap": {"name": config_map}}),
            "/etc/config",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errand_runs_only_when_set_to_now_then_resets_to_manual() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    c.create_qjob(&QJob::new("errand", "manual").script("echo errand"))
        .await;
    stays_at(&c, "errand", 0).await;
    assert!(jobs_of(&c, "errand").await.is_empty());

    set_strategy(&c, &c.namespace, "errand", "now").await;
    wait_completed(&c, &c.namespace, "errand", 1).await;
    let q = qjob(&c, "errand").await;
    assert_eq!(q.spec.trigger.strategy, Strategy::Manual);
    assert_eq!(q.status.unwrap().last_job_name.as_deref(), Some("errand-1"));
    stays_at(&c, "errand", 1).await;

    // Run again: the same Event again within minutes joins the first one's series.
    set_strategy(&c, &c.namespace, "errand", "now").await;
    wait_completed(&c, &c.namespace, "errand", 2).await;
    wait_for("one RunStarted Event counting both runs", || async {
        let started: Vec<_> = events_in(&c, &c.namespace)
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("RunStarted"))
            .collect();
        started.len() == 1 && started[0].series.as_ref().is_some_and(|s| s.count == 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errand_created_with_now_runs() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    c.create_qjob(&QJob::new("errand", "now").script("true"))
        .await;
    wait_completed(&c, &c.namespace, "errand", 1).await;
    assert_eq!(
        qjob(&c, "errand").await.spec.trigger.strategy,
        Strategy::Manual
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_runs_once_becomes_done_and_its_job_and_pods_are_deleted() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    c.create_qjob(&QJob::new("one-off", "once").script("echo once"))
        .await;
    wait_completed(&c, &c.namespace, "one-off", 1).await;
    assert_eq!(
        qjob(&c, "one-off").await.spec.trigger.strategy,
        Strategy::Done
    );
    wait_for("the succeeded Job and its pods to be deleted", || async {
        jobs_of(&c, "one-off").await.is_empty()
            && list_labelled::<Pod>(&c, &c.namespace, "job-name=one-off-1")
                .await
                .is_empty()
    })
    .await;
    stays_at(&c, "one-off", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_kept_with_a_failed_condition_and_goes_with_its_quarksjob() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    c.create_qjob(&QJob::new("fails", "once").script("exit 3"))
        .await;
    let status = wait_status(&c, &c.namespace, "fails", "the Failed condition", |s| {
        s.conditions
            .iter()
            .any(|cond| cond.type_ == "Failed" && cond.status == "True")
            && s.last_failure.is_some()
    })
    .await;
    assert!(!status.completed);
    assert_eq!(
        jobs_of(&c, "fails").await.len(),
        1,
        "a failed Job stays for inspection"
    );
    // Events are published in the background, after the status write.
    wait_for("a RunFailed Event", || async {
        events_in(&c, &c.namespace)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("RunFailed"))
    })
    .await;

    c.qjobs()
        .delete("fails", &DeleteParams::background())
        .await
        .unwrap();
    // The garbage collector of kube-controller-manager acts on a QuarksJob's dependents only
    // once its discovery (every 30 s) has seen the CRD: on a cluster whose CRD is new, that
    // alone can take longer than DEADLINE.
    let gone = poll(GC_DISCOVERY + DEADLINE, || async {
        jobs_of(&c, "fails").await.is_empty().then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the failed Job did not go with its QuarksJob"
    );
}

/// kube-controller-manager's garbage collector rediscovers resources (new CRDs) this often.
const GC_DISCOVERY: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_changes_rerun_a_done_one_off_only_with_update_on_config_change() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    put_config_map(&c, "settings", "one").await;
    c.create_qjob(&with_config_map("watching", "settings", true))
        .await;
    c.create_qjob(&with_config_map("ignoring", "settings", false))
        .await;
    wait_completed(&c, &c.namespace, "watching", 1).await;
    wait_completed(&c, &c.namespace, "ignoring", 1).await;

    put_config_map(&c, "settings", "two").await;
    wait_completed(&c, &c.namespace, "watching", 2).await;
    stays_at(&c, "ignoring", 1).await;
    // The same content again is no change.
    put_config_map(&c, "settings", "two").await;
    stays_at(&c, "watching", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_and_a_secret_changed_together_rerun_a_one_off_once_with_both() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    put_config_map(&c, "settings", "one").await;
    let secrets = c.api::<Secret>();
    let secret = |value: &str| -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "password"}, "stringData": {"value": value},
        }))
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &secret("one"))
        .await
        .unwrap();
    // Each run fails unless it sees the ConfigMap and the Secret at the same value.
    let env = serde_json::json!({"env": [
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "password", "key": "value"}}},
    ]});
    c.create_qjob(
        &QJob::new("together", "once")
            .update_on_config_change(true)
            .container(
                "busybox",
                r#"test "$(cat /etc/config/value)" = "$PASSWORD""#,
                env,
            )
            .volume(
                serde_json::json!({"name": "config", "configMap": {"name": "settings"}}),
                "/etc/config",
            ),
    )
    .await;
    wait_completed(&c, &c.namespace, "together", 1).await;
    // A change no decision follows (a label): the window it opens closes with nothing to decide,
    // and must not let the next change through undelayed.
    c.api::<ConfigMap>()
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // One manifest's objects are written one after another: 300 ms apart here, which without
    // the operator gathering them started a run with the ConfigMap's change alone, then another.
    put_config_map(&c, "settings", "two").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    secrets
        .replace("password", &PostParams::default(), &secret("two"))
        .await
        .unwrap();
    wait_completed(&c, &c.namespace, "together", 2).await;
    stays_at(&c, "together", 2).await;
    let status = qjob(&c, "together").await.status.unwrap();
    assert_eq!(status.last_failure, None, "run 2 saw both changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_changes_and_new_versions_of_versioned_secrets_rerun_a_done_one_off() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let secrets = c.api::<Secret>();
    let plain: Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "plain"}, "stringData": {"value": "a"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &plain)
        .await
        .unwrap();
    // Versions of `creds` are what a producer QuarksJob writes from ConfigMap `source` (only
    // versions the operator made count as versions).
    put_config_map(&c, "source", "a").await;
    let producer = QJob::new("producer", "once")
        .update_on_config_change(true)
        .script(r#"echo "{\"value\": \"$(cat /etc/source/value)\"}" > /mnt/quarks/creds.json"#)
        .output(serde_json::json!({"outputMap": {"busybox": {"creds.json": {"name": "creds", "versioned": true}}}}))
        .volume(
            serde_json::json!({"name": "source", "configMap": {"name": "source"}}),
            "/etc/source",
        );
    c.create_qjob(&producer).await;
    wait_until("creds-v1", || async {
        secrets.get_opt("creds-v1").await.unwrap()
    })
    .await;
    // The container checks that it sees the newest version of `creds`, whatever the template says.
    put_config_map(&c, "expected", "a").await;
    let env = serde_json::json!({"env": [
        {"name": "PLAIN", "valueFrom": {"secretKeyRef": {"name": "plain", "key": "value"}}},
        {"name": "CREDS", "valueFrom": {"secretKeyRef": {"name": "creds-v1", "key": "value"}}},
        {"name": "EXPECTED", "valueFrom": {"configMapKeyRef": {"name": "expected", "key": "value"}}},
    ]});
    c.create_qjob(
        &QJob::new("secrets", "once")
            .update_on_config_change(true)
            .container("busybox", "test \"$CREDS\" = \"$EXPECTED\"", env),
    )
    .await;
    wait_completed(&c, &c.namespace, "secrets", 1).await;

    secrets
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"value": "b"}})),
        )
        .await
        .unwrap();
    wait_completed(&c, &c.namespace, "secrets", 2).await;

    // A new version, and the expectation of it, in one change each: the expectation first would
    // itself re-run (and fail) the job, so write the version first and the expectation after.
    put_config_map(&c, "source", "b").await;
    wait_status(
        &c,
        &c.namespace,
        "secrets",
        "run 3 for the new version",
        |s| s.run_count >= 3,
    )
    .await;
    put_config_map(&c, "expected", "b").await;
    // Run 4 succeeds only if its Job was given creds-v2 although the template names creds-v1.
    wait_completed(&c, &c.namespace, "secrets", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waits_for_missing_config_and_starts_when_it_appears() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    c.create_qjob(&with_config_map("waiting", "later", false))
        .await;
    wait_status(
        &c,
        &c.namespace,
        "waiting",
        "a WaitingForConfig condition naming the ConfigMap",
        |s| {
            s.conditions.iter().any(|cond| {
                cond.reason == "WaitingForConfig" && cond.message.contains("configmap/later")
            })
        },
    )
    .await;
    assert_eq!(run_count(&c, &c.namespace, "waiting").await, 0);
    put_config_map(&c, "later", "now here").await;
    wait_completed(&c, &c.namespace, "waiting", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restart_runs_nothing_again_but_catches_up_on_changes_made_while_down() {
    let c = Cluster::start().await;
    let op = c.operator().await;
    put_config_map(&c, "settings", "one").await;
    c.create_qjob(&with_config_map("restart", "settings", true))
        .await;
    wait_completed(&c, &c.namespace, "restart", 1).await;
    assert!(op.stop().await.success(), "graceful shutdown exits 0");

    let op = c.operator().await;
    stays_at(&c, "restart", 1).await;
    assert!(op.stop().await.success());

    put_config_map(&c, "settings", "two").await;
    let _op = c.operator().await;
    wait_completed(&c, &c.namespace, "restart", 2).await;
    stays_at(&c, "restart", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_labelled_later_is_picked_up() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let other = format!("{}-late", c.namespace);
    c.create_namespace(&other, None).await;
    c.create_qjob_in(&other, &QJob::new("late", "once").script("true"))
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(run_count(&c, &other, "late").await, 0, "not monitored yet");

    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(c.client.clone());
    namespaces
        .patch(&other, &PatchParams::default(), &Patch::Merge(serde_json::json!({"metadata": {"labels": {"quarks.cloudfoundry.org/monitored": c.monitored_id}}})))
        .await
        .unwrap();
    wait_status(
        &c,
        &other,
        "late",
        "run in the newly labelled namespace",
        |s| s.completed && s.run_count == 1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_without_any_monitored_namespace_and_then_acts_in_one_labelled_later() {
    let c = Cluster::start().await;
    // A monitored id no namespace carries yet: its caches sync empty, which is ready.
    let id = format!("{}-none-yet", c.monitored_id);
    let op = c.operator_with(&id, &[]).await;
    wait_for("/readyz to answer 200", || async {
        op.http_get("/readyz").await.0 == 200
    })
    .await;
    let later = format!("{}-later", c.namespace);
    c.create_namespace(&later, Some(&id)).await;
    c.create_qjob_in(&later, &QJob::new("first", "once").script("true"))
        .await;
    wait_status(&c, &later, "first", "run in the new namespace", |s| {
        s.completed && s.run_count == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_with_different_monitored_ids_act_only_on_their_own_namespaces() {
    let c = Cluster::start().await;
    let _mine = c.operator().await;
    let other_id = format!("{}-other", c.monitored_id);
    let other_ns = format!("{}-other", c.namespace);
    c.create_namespace(&other_ns, Some(&other_id)).await;
    let _theirs = c.operator_with(&other_id, &[]).await;
    c.create_qjob(&QJob::new("mine", "once").script("true"))
        .await;
    c.create_qjob_in(&other_ns, &QJob::new("theirs", "once").script("true"))
        .await;
    wait_completed(&c, &c.namespace, "mine", 1).await;
    wait_status(&c, &other_ns, "theirs", "run by the other operator", |s| {
        s.completed && s.run_count == 1
    })
    .await;
    // Each Job was created by exactly one operator: the run counters would show a double run.
    stays_at(&c, "mine", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_quarksjob_is_rejected_by_the_schema() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let manifest = QJob::new("bad", "sometimes").script("true").yaml();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest).unwrap();
    let out = tokio::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            c.kubeconfig.to_str().unwrap(),
            "-n",
            &c.namespace,
            "apply",
            "-f",
            file.path().to_str().unwrap(),
        ])
        .output()
        .await
        .expect("kubectl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.trigger.strategy") && err.contains("sometimes"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_rapid_config_changes_never_run_two_jobs_at_once_and_the_last_run_sees_the_last_config()
 {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    put_config_map(&c, "burst", "0").await;
    c.create_qjob(&with_config_map("burst", "burst", true))
        .await;
    wait_completed(&c, &c.namespace, "burst", 1).await;
    let watcher = {
        let api = c.api::<Job>();
        tokio::spawn(async move {
            let mut most = 0;
            for _ in 0..100 {
                let active = api
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .filter(|j| {
                        quarks_job::reconcile::settle::job_state(j)
                            == quarks_job::reconcile::settle::JobState::Active
                    })
                    .count();
                most = most.max(active);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            most
        })
    };
    for i in 1..=20 {
        put_config_map(&c, "burst", &i.to_string()).await;
    }
    let final_cm = c.api::<ConfigMap>().get("burst").await.unwrap();
    let expected = quarks_job::reconcile::digest::config_digest(&[
        quarks_job::reconcile::digest::ConfigContent::from_config_map(&final_cm),
    ]);
    wait_status(
        &c,
        &c.namespace,
        "burst",
        "a run with the final config",
        |s| s.completed && s.config_digest.as_deref() == Some(expected.as_str()),
    )
    .await;
    assert!(
        watcher.await.unwrap() <= 1,
        "never two Jobs of one QuarksJob at once"
    );
    let runs = run_count(&c, &c.namespace, "burst").await;
    assert!(runs < 21, "bursts collapse: {runs} runs for 20 changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubesim_only_injected_conflicts_errors_and_dropped_watches_do_not_change_the_outcome() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let faults = c.sim().faults();
    faults.fail_next("create", "jobs", 500, 2);
    faults.fail_next("patch", "quarksjobs", 409, 2);
    c.create_qjob(&QJob::new("faulty", "once").script("true"))
        .await;
    faults.close_watches();
    wait_completed(&c, &c.namespace, "faulty", 1).await;
    assert_eq!(
        qjob(&c, "faulty").await.spec.trigger.strategy,
        Strategy::Done
    );
    stays_at(&c, "faulty", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_leader_election_never_both_act() {
    let c = Cluster::start().await;
    let lease_ns = c.namespace.clone();
    let a = c
        .operator_with(
            &c.monitored_id,
            &["--leader-election", "--operator-namespace", &lease_ns],
        )
        .await;
    let b = c
        .operator_with(
            &c.monitored_id,
            &["--leader-election", "--operator-namespace", &lease_ns],
        )
        .await;
    for i in 0..5 {
        c.create_qjob(&QJob::new(&format!("q{i}"), "once").script("true"))
            .await;
    }
    for i in 0..5 {
        wait_completed(&c, &c.namespace, &format!("q{i}"), 1).await;
    }
    let leaders = [a.log(), b.log()]
        .iter()
        .filter(|l| l.contains("became leader"))
        .count();
    assert_eq!(leaders, 1, "exactly one replica leads");
    for i in 0..5 {
        stays_at(&c, &format!("q{i}"), 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_stopped_during_start_up_exits_promptly() {
    let c = Cluster::start().await;
    for delay_ms in [100, 300, 600] {
        let op = crate::OperatorProcess::spawn(
            tokio::process::Command::new(env!("CARGO_BIN_EXE_quarks-job"))
                .args(["--kubeconfig", c.kubeconfig.to_str().unwrap()])
                .args(["--monitored-id", &c.monitored_id, "--listen", "127.0.0.1:0"])
                .env_remove("KUBECONFIG"),
        );
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let started = std::time::Instant::now();
        op.stop().await;
        // Before the fix it waited for a cache sync that no longer came, for good.
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "stopped {delay_ms} ms after start, it took {:?} to exit",
            started.elapsed()
        );
    }
}
