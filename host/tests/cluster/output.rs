//! spec.md §4–§5: output files become Secrets, through the helper in the pod and the
//! built-in output policy.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;

use serde_json::json;

use crate::{
    Cluster, QJob, event_notes, events_in, list_labelled, output_qjob, put_config_map, qjob_status,
    runs_of, secret_opt, set_strategy, string_value, wait_for, wait_secret, wait_status,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_becomes_secret_foo_json_and_a_missing_file_is_reported() {
    let c = Cluster::start().await;
    let op = c.operator().await;
    let script = r#"echo '{"foo": "1", "bar": "baz"}' > /mnt/quarks/output.json"#;
    c.create_qjob(&output_qjob("output-job", script, false))
        .await;
    let secret = wait_secret(&c, "foo-json").await;
    let data = secret.data.unwrap();
    assert_eq!(data["foo"].0, b"1");
    assert_eq!(data["bar"].0, b"baz");
    let labels = secret.metadata.labels.unwrap();
    assert_eq!(labels["key"], "value");
    assert_eq!(labels["quarks.cloudfoundry.org/container-name"], "busybox");
    let s = wait_status(
        &c,
        &c.namespace,
        "output-job",
        "both files recorded and the run complete",
        |s| s.completed && s.outputs.len() == 2,
    )
    .await;
    let written = s.outputs.iter().find(|o| o.file == "output.json").unwrap();
    assert_eq!(written.secrets, ["foo-json"]);
    let missing = s.outputs.iter().find(|o| o.file == "missing.json").unwrap();
    assert_eq!(
        missing.reason.as_deref(),
        Some("FileMissing"),
        "{missing:?}"
    );
    // The staging Secret was consumed, and no value reached the operator's log.
    assert!(staged(&c).await.is_empty());
    assert!(!op.log().contains("baz"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_output_writes_a_new_version_only_when_the_content_changes() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    put_config_map(&c, "input", "a").await;
    c.create_qjob(&crate::versioned_from_config("versioned"))
        .await;
    let v1 = wait_secret(&c, "foo-json-v1").await;
    let labels = v1.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["quarks.cloudfoundry.org/secret-kind"],
        "versionedSecret"
    );
    assert_eq!(labels["quarks.cloudfoundry.org/secret-version"], "1");

    put_config_map(&c, "input", "b").await;
    assert_eq!(
        wait_secret(&c, "foo-json-v2").await.data.unwrap()["value"].0,
        b"b"
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers for the scenarios below.

/// Waits until status records `count` output files, then returns the status.
async fn wait_outputs(c: &Cluster, name: &str, count: usize) -> quarks_job::crd::QuarksJobStatus {
    wait_status(
        c,
        &c.namespace,
        name,
        &format!("{count} output records"),
        |s| s.outputs.len() >= count,
    )
    .await
}

fn record<'a>(
    status: &'a quarks_job::crd::QuarksJobStatus,
    container: &str,
    file: &str,
) -> &'a quarks_job::crd::OutputRecord {
    status
        .outputs
        .iter()
        .find(|r| r.container == container && r.file == file)
        .unwrap_or_else(|| panic!("no output record for {container}/{file}: {status:?}"))
}

/// The pods of a QuarksJob's runs.
async fn pods_of(c: &Cluster, qjob: &str) -> Vec<Pod> {
    list_labelled(c, &c.namespace, &runs_of(qjob)).await
}

/// The output staging Secrets in the test's namespace.
async fn staged(c: &Cluster) -> Vec<Secret> {
    list_labelled(
        c,
        &c.namespace,
        "quarks.cloudfoundry.org/output-staging=true",
    )
    .await
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_one_to_one_and_fan_out_in_one_pod() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let output = json!({"outputMap": {
        "plain": {"output.json": {"name": "plain-json"}},
        "fan": {"fan.json": {
            "name": "fan", "persistencemethod": "fan-out", "secretLabels": {"kind": "fanned"},
        }},
    }});
    let plain = r#"printf '%s' '{"user": "admin", "pass": "p1"}' > /mnt/quarks/output.json"#;
    let fan = r#"printf '%s' '{"alpha": "{\"k\": \"1\", \"l\": \"x\"}", "beta": "{\"k\": \"2\"}"}' > /mnt/quarks/fan.json"#;
    c.create_qjob(
        &QJob::new("two", "once")
            .output(output)
            .container("plain", plain, json!({}))
            .container("fan", fan, json!({})),
    )
    .await;

    let plain = wait_secret(&c, "plain-json").await;
    assert_eq!(string_value(&plain, "user"), "admin");
    assert_eq!(string_value(&plain, "pass"), "p1");
    assert_eq!(
        plain.metadata.labels.as_ref().unwrap()["quarks.cloudfoundry.org/container-name"],
        "plain"
    );
    let alpha = wait_secret(&c, "fan-alpha").await;
    let beta = wait_secret(&c, "fan-beta").await;
    assert_eq!(string_value(&alpha, "k"), "1");
    assert_eq!(string_value(&alpha, "l"), "x");
    assert_eq!(string_value(&beta, "k"), "2");
    assert_eq!(beta.data.as_ref().unwrap().len(), 1);
    for s in [&alpha, &beta] {
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["quarks.cloudfoundry.org/container-name"], "fan");
        assert_eq!(labels["kind"], "fanned");
    }
    // Neither container's file became the other's Secret, and no fan-out Secret `fan` exists.
    assert!(secret_opt(&c, "fan").await.is_none());

    let status = wait_outputs(&c, "two", 2).await;
    assert_eq!(
        record(&status, "plain", "output.json").secrets,
        ["plain-json"]
    );
    let mut fanned = record(&status, "fan", "fan.json").secrets.clone();
    fanned.sort();
    assert_eq!(fanned, ["fan-alpha", "fan-beta"]);
    wait_status(&c, &c.namespace, "two", "the run complete", |s| s.completed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_id_env_becomes_a_label_only_where_set() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let output = json!({"outputMap": {
        "with-id": {"output.json": {"name": "with-id"}},
        "without-id": {"output.json": {"name": "without-id"}},
    }});
    let script = r#"printf '%s' '{"a": "b"}' > /mnt/quarks/output.json"#;
    let env = json!({"env": [{"name": "REMOTE_ID", "value": "zone-7.node-3"}]});
    c.create_qjob(
        &QJob::new("remote", "once")
            .output(output)
            .container("with-id", script, env)
            .container("without-id", script, json!({})),
    )
    .await;
    let with = wait_secret(&c, "with-id").await;
    let without = wait_secret(&c, "without-id").await;
    assert_eq!(
        with.metadata.labels.as_ref().unwrap()["quarks.cloudfoundry.org/remote-id"],
        "zone-7.node-3"
    );
    assert!(
        !without
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("quarks.cloudfoundry.org/remote-id")
    );
}

/// Two containers exiting 1 and 3 after writing their files; the Job fails either way.
async fn write_on_failure_scenario(c: &Cluster, name: &str, write_on_failure: bool) {
    let output = json!({"writeOnFailure": write_on_failure, "outputMap": {
        "exit-one": {"output.json": {"name": format!("{name}-one")}},
        "exit-three": {"output.json": {"name": format!("{name}-three")}},
    }});
    let one = r#"printf '%s' '{"code": "1"}' > /mnt/quarks/output.json; exit 1"#;
    let three = r#"printf '%s' '{"code": "3"}' > /mnt/quarks/output.json; exit 3"#;
    c.create_qjob(
        &QJob::new(name, "once")
            .output(output)
            .container("exit-one", one, json!({}))
            .container("exit-three", three, json!({})),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_failure_false_writes_nothing_for_exit_codes_1_and_3() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    write_on_failure_scenario(&c, "nowof", false).await;
    let status = wait_outputs(&c, "nowof", 2).await;
    for container in ["exit-one", "exit-three"] {
        let r = record(&status, container, "output.json");
        assert!(r.secrets.is_empty(), "{r:?}");
        let error = r.error.as_deref().unwrap_or_default();
        assert!(error.contains("ContainerFailed"), "{r:?}");
    }
    assert!(
        record(&status, "exit-three", "output.json")
            .error
            .as_deref()
            .unwrap()
            .contains("code 3")
    );
    assert!(secret_opt(&c, "nowof-one").await.is_none());
    assert!(secret_opt(&c, "nowof-three").await.is_none());
    wait_for("an OutputFailed Event per container", || async {
        let notes = event_notes(&c, "OutputFailed").await;
        ["exit-one", "exit-three"].iter().all(|c| {
            notes
                .iter()
                .any(|n| n.starts_with(&format!("{c}/output.json")))
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_failure_true_writes_for_exit_codes_1_and_3() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    write_on_failure_scenario(&c, "wof", true).await;
    let one = wait_secret(&c, "wof-one").await;
    let three = wait_secret(&c, "wof-three").await;
    assert_eq!(string_value(&one, "code"), "1");
    assert_eq!(string_value(&three, "code"), "3");
    let status = wait_outputs(&c, "wof", 2).await;
    assert_eq!(
        record(&status, "exit-one", "output.json").secrets,
        ["wof-one"]
    );
    assert_eq!(
        record(&status, "exit-three", "output.json").secrets,
        ["wof-three"]
    );
    // The run itself still failed, and the Job is kept for inspection.
    wait_status(&c, &c.namespace, "wof", "the failed run recorded", |s| {
        s.last_failure.is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_crashes_before_writing_its_file_does_not_hang_the_pod() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let output = json!({"writeOnFailure": true, "outputMap": {
        "crasher": {"output.json": {"name": "never"}},
    }});
    // Killed by a signal before it writes anything.
    let crash = "kill -KILL $$";
    c.create_qjob(&QJob::new("crash", "once").output(output).container(
        "crasher",
        crash,
        json!({}),
    ))
    .await;
    let status = wait_outputs(&c, "crash", 1).await;
    let r = record(&status, "crasher", "output.json");
    assert_eq!(r.reason.as_deref(), Some("FileMissing"), "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("output.json"), "{r:?}");
    assert!(secret_opt(&c, "never").await.is_none());
    // The helper ended too: the whole pod finished.
    wait_for("the pod to finish", || async {
        pods_of(&c, "crash").await.iter().all(|p| {
            matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Failed") | Some("Succeeded")
            )
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_not_in_the_output_map_are_not_waited_for() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    // `ghost` is mapped but not in the pod; `sidecar` is in the pod but not mapped and runs
    // far longer than the test waits.
    let output = json!({"outputMap": {
        "writer": {"output.json": {"name": "from-writer"}},
        "ghost": {"output.json": {"name": "from-ghost"}},
    }});
    let writer = r#"printf '%s' '{"a": "b"}' > /mnt/quarks/output.json"#;
    c.create_qjob(
        &QJob::new("sidecar", "once")
            .output(output)
            .container("writer", writer, json!({}))
            .container("sidecar", "sleep 300", json!({})),
    )
    .await;
    wait_secret(&c, "from-writer").await;
    let status = wait_outputs(&c, "sidecar", 1).await;
    assert_eq!(status.outputs.len(), 1, "{status:?}");
    assert_eq!(
        record(&status, "writer", "output.json").secrets,
        ["from-writer"]
    );
    // The sidecar is still running: the Secret did not wait for it.
    let pods = pods_of(&c, "sidecar").await;
    let sidecar_running = pods.iter().any(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .any(|s| {
                s.name == "sidecar" && s.state.as_ref().and_then(|s| s.running.as_ref()).is_some()
            })
    });
    assert!(sidecar_running, "{pods:?}");
    assert!(secret_opt(&c, "from-ghost").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_files_write_nothing_and_are_reported_while_the_others_are_written() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let output = json!({"outputMap": {"busybox": {
        "good.json": {"name": "good"},
        "invalid.json": {"name": "from-invalid"},
        "nested.json": {"name": "from-nested"},
        "big.json": {"name": "from-big"},
        "badname.json": {"name": "not..valid"},
    }}});
    let script = r#"cd /mnt/quarks
printf '%s' '{"ok": "yes"}' > good.json
printf '%s' '{"ok": "yes"' > invalid.json
printf '%s' '{"ok": {"deeper": "no"}}' > nested.json
{ printf '{"big": "'; head -c 2097152 /dev/zero | tr '\0' a; printf '"}'; } > big.json
printf '%s' '{"ok": "yes"}' > badname.json"#;
    c.create_qjob(&QJob::new("invalid", "once").output(output).script(script))
        .await;
    let good = wait_secret(&c, "good").await;
    assert_eq!(string_value(&good, "ok"), "yes");
    let status = wait_outputs(&c, "invalid", 5).await;
    let expect = [
        ("invalid.json", "InvalidJson"),
        ("nested.json", "NotFlat"),
        ("big.json", "TooLarge"),
        ("badname.json", "InvalidSecretName"),
    ];
    for (file, code) in expect {
        let r = record(&status, "busybox", file);
        assert!(r.secrets.is_empty(), "{r:?}");
        let error = r.error.as_deref().unwrap_or_default();
        assert!(error.contains(code), "{file}: expected {code} in {r:?}");
    }
    for name in ["from-invalid", "from-nested", "from-big"] {
        assert!(secret_opt(&c, name).await.is_none(), "{name} was written");
    }
    wait_for(
        "an OutputFailed Event naming each bad file and reason",
        || async {
            let notes = event_notes(&c, "OutputFailed").await;
            expect.iter().all(|(file, code)| {
                notes
                    .iter()
                    .any(|n| n.starts_with(&format!("busybox/{file}:")) && n.contains(code))
            })
        },
    )
    .await;
    wait_for("an OutputWritten Event for the good file", || async {
        event_notes(&c, "OutputWritten")
            .await
            .iter()
            .any(|n| n.starts_with("busybox/good.json"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_large_files_of_one_container_are_both_written() {
    // Each file fits a Secret (600 KiB < 1 MiB); together they do not fit one object.
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let output = json!({"outputMap": {"busybox": {
        "first.json": {"name": "first"},
        "second.json": {"name": "second"},
    }}});
    let script = r#"cd /mnt/quarks
for f in first second; do { printf '{"v": "'; head -c 614400 /dev/zero | tr '\0' b; printf '"}'; } > $f.json; done"#;
    c.create_qjob(&QJob::new("large", "once").output(output).script(script))
        .await;
    let status = wait_outputs(&c, "large", 2).await;
    for file in ["first", "second"] {
        let r = record(&status, "busybox", &format!("{file}.json"));
        assert_eq!(r.secrets, [file], "{r:?}");
        assert_eq!(
            string_value(&wait_secret(&c, file).await, "v").len(),
            614400
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_identical_rerun_writes_no_new_version_and_consumers_move_to_the_next() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    // The producer: an errand (strategy `now`) whose output is the ConfigMap's value.
    let output = json!({"outputMap": {
        "producer": {"output.json": {"name": "cred", "versioned": true}},
    }});
    let producer =
        r#"printf '{"value": "%s"}' "$(cat /etc/config/value)" > /mnt/quarks/output.json"#;
    let qjob = QJob::new("producer", "now")
        .output(output)
        .container("producer", producer, json!({}))
        .volume(
            json!({"name": "config", "configMap": {"name": "input"}}),
            "/etc/config",
        );
    put_config_map(&c, "input", "a").await;
    c.create_qjob(&qjob).await;
    wait_secret(&c, "cred-v1").await;
    let run_done = |run: i64| {
        let job = quarks_job::names::job::job_name("producer", run as u64);
        move |s: &quarks_job::crd::QuarksJobStatus| {
            s.run_count == run && s.completed && s.outputs.iter().any(|r| r.job == job)
        }
    };
    wait_status(&c, &c.namespace, "producer", "run 1", run_done(1)).await;

    // A consumer referencing `cred-v1`, re-run when a new version appears; its output shows
    // which version its Job mounted.
    let consumer_output = json!({"outputMap": {"consumer": {"output.json": {"name": "seen"}}}});
    let consumer = r#"printf '{"seen": "%s"}' "$(cat /etc/cred/value)" > /mnt/quarks/output.json"#;
    let consumer_qjob = QJob::new("consumer", "once")
        .update_on_config_change(true)
        .output(consumer_output)
        .container("consumer", consumer, json!({}))
        .volume(
            json!({"name": "cred", "secret": {"secretName": "cred-v1"}}),
            "/etc/cred",
        );
    c.create_qjob(&consumer_qjob).await;
    let seen = wait_secret(&c, "seen").await;
    assert_eq!(string_value(&seen, "seen"), "a");

    // Identical re-run: no -v2, and status names the existing version.
    set_strategy(&c, &c.namespace, "producer", "now").await;
    let s = wait_status(&c, &c.namespace, "producer", "run 2", run_done(2)).await;
    assert!(secret_opt(&c, "cred-v2").await.is_none());
    let job2 = quarks_job::names::job::job_name("producer", 2);
    let r = s.outputs.iter().find(|r| r.job == job2).unwrap();
    assert_eq!(r.secrets, ["cred-v1"], "{r:?}");

    // Changed re-run: -v2, and the consumer re-runs with it although it names -v1.
    put_config_map(&c, "input", "b").await;
    set_strategy(&c, &c.namespace, "producer", "now").await;
    let v2 = wait_secret(&c, "cred-v2").await;
    assert_eq!(string_value(&v2, "value"), "b");
    wait_for("the consumer to see version 2", || async {
        secret_opt(&c, "seen")
            .await
            .is_some_and(|s| string_value(&s, "seen") == "b")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_value_never_reaches_logs_events_or_status() {
    let c = Cluster::start().await;
    let op = c.operator().await;
    // The value exists only at run time (the container upper-cases what the spec holds), so
    // finding it anywhere means it came from the output.
    let canary_source = format!("xq-{}-canary", std::process::id());
    let canary = canary_source.to_uppercase();
    // Written on failure so that the failed Job's pod, and its helper's log, are kept. One
    // good file, and bad ones whose error paths could be tempted to quote content.
    let output = json!({"writeOnFailure": true, "outputMap": {"busybox": {
        "good.json": {"name": "canary-good"},
        "invalid.json": {"name": "canary-invalid"},
        "nested.json": {"name": "canary-nested"},
        "fan.json": {"name": "canary-fan", "persistencemethod": "fan-out"},
    }}});
    let script = format!(
        r#"cd /mnt/quarks
canary=$(echo {canary_source} | tr a-z A-Z)
printf '{{"secret": "%s"}}' $canary > good.json
printf '{{"secret": "%s' $canary > invalid.json
printf '{{"secret": {{"x": "%s"}}}}' $canary > nested.json
printf '{{"k": "%s"}}' $canary > fan.json
exit 1"#
    );
    c.create_qjob(&QJob::new("canary", "once").output(output).script(&script))
        .await;
    let good = wait_secret(&c, "canary-good").await;
    assert_eq!(string_value(&good, "secret"), canary);
    let status = wait_outputs(&c, "canary", 4).await;
    assert!(
        status.outputs.iter().filter(|r| r.error.is_some()).count() == 3,
        "{status:?}"
    );
    wait_status(&c, &c.namespace, "canary", "the failed run recorded", |s| {
        s.last_failure.is_some()
    })
    .await;

    // The helper's log, through pods/log (the failed Job's pod is kept).
    let pods = pods_of(&c, "canary").await;
    assert_eq!(pods.len(), 1);
    let pod = pods[0].metadata.name.clone().unwrap();
    let helper_log = || async {
        c.api::<Pod>()
            .logs(
                &pod,
                &kube::api::LogParams {
                    container: Some("quarks-persist-output".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_default()
    };
    wait_for("the helper's log", || async {
        helper_log().await.contains("handed output to the operator")
    })
    .await;
    let helper_log = helper_log().await;
    assert!(!helper_log.contains(&canary), "helper log: {helper_log}");
    let op_log = op.log();
    assert!(
        op_log.contains("canary"),
        "the operator log covers this QuarksJob"
    );
    assert!(!op_log.contains(&canary), "operator log leaks the value");
    let events = events_in(&c, &c.namespace).await;
    assert!(!serde_json::to_string(&events).unwrap().contains(&canary));
    let qjob = c.qjobs().get("canary").await.unwrap();
    assert!(!serde_json::to_string(&qjob).unwrap().contains(&canary));
}

/// A client acting as the helper's service account, with a token of its own.
async fn helper_client(c: &Cluster) -> kube::Client {
    c.service_account_client(
        &c.namespace,
        quarks_job::output::pod::HELPER_SERVICE_ACCOUNT,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_may_create_staging_secrets_but_not_read_other_secrets() {
    let c = Cluster::start_with(kubesim::KubeSimOptions {
        enforce_rbac: true,
        ..Default::default()
    })
    .await;
    let _op = c.operator().await;
    // A Secret the helper has no business reading.
    let unrelated: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "unrelated"}, "stringData": {"password": "hunter2"}
    }))
    .unwrap();
    c.api::<Secret>()
        .create(&Default::default(), &unrelated)
        .await
        .unwrap();

    // A whole output run under enforced RBAC: the helper watches its pod and creates its
    // staging Secret with the Role the operator set up, nothing more.
    let output = json!({"outputMap": {"busybox": {"output.json": {"name": "rbac-out"}}}});
    let script = r#"printf '%s' '{"a": "b"}' > /mnt/quarks/output.json"#;
    c.create_qjob(&QJob::new("rbac", "once").output(output).script(script))
        .await;
    assert_eq!(string_value(&wait_secret(&c, "rbac-out").await, "a"), "b");

    let helper: kube::Api<Secret> = kube::Api::namespaced(helper_client(&c).await, &c.namespace);
    let status_code = |r: Result<Secret, kube::Error>| match r {
        Ok(_) => 200,
        Err(kube::Error::Api(e)) => e.code,
        Err(e) => panic!("unexpected error: {e}"),
    };
    assert_eq!(status_code(helper.get("unrelated").await), 403);
    assert!(matches!(
        helper.list(&ListParams::default()).await,
        Err(kube::Error::Api(e)) if e.code == 403
    ));
    let mut changed = unrelated.clone();
    changed.metadata.resource_version = None;
    assert_eq!(
        status_code(
            helper
                .replace("unrelated", &Default::default(), &changed)
                .await
        ),
        403
    );
    assert!(matches!(
        helper.delete("unrelated", &Default::default()).await,
        Err(kube::Error::Api(e)) if e.code == 403
    ));
    // What it is for: creating a staging Secret.
    let staging: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probe-output-busybox", "labels": {"quarks.cloudfoundry.org/output-staging": "probe"}},
        "data": {}
    }))
    .unwrap();
    assert_eq!(
        status_code(helper.create(&Default::default(), &staging).await),
        200
    );
    // And the helper in the pod asked for nothing else about Secrets (kubesim keeps a request
    // log; on a real cluster the Secret written above is what shows its requests succeeded).
    if let Some(sim) = &c.sim {
        let user = format!(
            "system:serviceaccount:{}:{}",
            c.namespace,
            quarks_job::output::pod::HELPER_SERVICE_ACCOUNT
        );
        let log = sim.request_log();
        let pod_requests: Vec<_> = log.iter().filter(|r| r.user == user).collect();
        assert!(
            pod_requests
                .iter()
                .any(|r| r.resource == "secrets" && r.verb == "create" && r.code == 201),
            "{pod_requests:?}"
        );
        assert!(
            pod_requests
                .iter()
                .all(|r| r.code < 400 || r.name == "unrelated" || r.verb == "list"),
            "the helper was refused something it needed: {pod_requests:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_pod_overwrites_the_output_of_the_failed_attempt() {
    // The attempts coordinate through a host directory: pods of kubesim's kubelet (also as
    // `kubesim node` of a real cluster) are processes of this machine.
    let c = Cluster::start().await;
    let op = c.operator().await;
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().display().to_string();
    let output = json!({"writeOnFailure": true, "outputMap": {
        "busybox": {"output.json": {"name": "attempt"}},
    }});
    // Attempt 1 waits for the test's go-ahead, writes attempt=1 and fails; attempt 2 writes
    // attempt=2 and succeeds (backoffLimit 1).
    let script = format!(
        r#"d={dir_path}
if [ -e $d/first-done ]; then printf '%s' '{{"attempt": "2"}}' > /mnt/quarks/output.json; exit 0; fi
while [ ! -e $d/go ]; do sleep 0.05; done
printf '%s' '{{"attempt": "1"}}' > /mnt/quarks/output.json
touch $d/first-done
exit 1"#
    );
    c.create_qjob(
        &QJob::new("retry", "once")
            .backoff_limit(1)
            .output(output)
            .script(&script),
    )
    .await;
    wait_for("the first attempt's pod", || async {
        !pods_of(&c, "retry").await.is_empty()
    })
    .await;
    // With the operator down, both attempts hand over their output before anything is
    // consumed, so the next operator sees both staging Secrets at once.
    assert!(op.stop().await.success());
    std::fs::write(dir.path().join("go"), b"").unwrap();
    wait_for("both attempts' staging Secrets", || async {
        staged(&c).await.len() == 2
    })
    .await;
    let _op = c.operator().await;
    wait_for(
        "the staging Secrets to be consumed and the run to complete",
        || async {
            staged(&c).await.is_empty() && qjob_status(&c, &c.namespace, "retry").await.completed
        },
    )
    .await;
    assert_eq!(
        string_value(&wait_secret(&c, "attempt").await, "attempt"),
        "2"
    );
    let status = qjob_status(&c, &c.namespace, "retry").await;
    let r = record(&status, "busybox", "output.json");
    assert_eq!(
        (r.secrets.as_slice(), r.error.as_deref()),
        (["attempt".to_owned()].as_slice(), None),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_versioned_secret_lose_no_version() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let output = json!({"outputMap": {
        "busybox": {"output.json": {"name": "shared", "versioned": true}},
    }});
    // Two QuarksJobs started together, writing different content to the same prefix.
    for writer in ["a", "b"] {
        let script = format!(r#"printf '{{"writer": "{writer}"}}' > /mnt/quarks/output.json"#);
        c.create_qjob(
            &QJob::new(&format!("writer-{writer}"), "once")
                .output(output.clone())
                .script(&script),
        )
        .await;
    }
    for writer in ["a", "b"] {
        wait_outputs(&c, &format!("writer-{writer}"), 1).await;
    }
    let versions: Vec<Secret> = list_labelled(
        &c,
        &c.namespace,
        "quarks.cloudfoundry.org/secret-kind=versionedSecret",
    )
    .await;
    let mut names: Vec<_> = versions
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["shared-v1", "shared-v2"]);
    let mut writers: Vec<_> = versions.iter().map(|s| string_value(s, "writer")).collect();
    writers.sort();
    assert_eq!(writers, ["a", "b"]);
    // Each QuarksJob's status names the version holding its own content.
    for writer in ["a", "b"] {
        let status = qjob_status(&c, &c.namespace, &format!("writer-{writer}")).await;
        let written = &record(&status, "busybox", "output.json").secrets;
        assert_eq!(written.len(), 1, "{status:?}");
        let secret = versions
            .iter()
            .find(|s| s.metadata.name.as_ref() == Some(&written[0]))
            .unwrap();
        assert_eq!(string_value(secret, "writer"), writer);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_helpers_deadline_finished_output_is_written_and_the_rest_reported() {
    let c = Cluster::start().await;
    let _op = c
        .operator_with(&c.monitored_id, &["--persist-output-deadline-seconds", "1"])
        .await;
    let output = json!({"outputMap": {
        "quick": {"output.json": {"name": "from-quick"}},
        "slow": {"output.json": {"name": "from-slow"}},
    }});
    let quick = r#"printf '%s' '{"a": "b"}' > /mnt/quarks/output.json"#;
    let slow = "sleep 300";
    c.create_qjob(
        &QJob::new("deadline", "once")
            .output(output)
            .container("quick", quick, json!({}))
            .container("slow", slow, json!({})),
    )
    .await;
    let status = wait_outputs(&c, "deadline", 2).await;
    assert_eq!(
        record(&status, "quick", "output.json").secrets,
        ["from-quick"]
    );
    let slow = record(&status, "slow", "output.json");
    assert_eq!(slow.reason.as_deref(), Some("Unfinished"), "{slow:?}");
    assert!(
        slow.error
            .as_deref()
            .unwrap_or_default()
            .contains("deadline"),
        "{slow:?}"
    );
    assert!(secret_opt(&c, "from-slow").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_versions_deletes_older_versions_except_those_a_running_job_mounts() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let script = r#"echo "{\"value\": \"$(cat /etc/config/value)\"}" > /mnt/quarks/output.json"#;
    let producer = QJob::new("producer", "once")
        .script(script)
        .output(json!({"outputMap": {"busybox": {
            "output.json": {"name": "foo-json", "versioned": true, "keepVersions": 1},
        }}}))
        .update_on_config_change(true)
        .volume(
            json!({"name": "config", "configMap": {"name": "input"}}),
            "/etc/config",
        );
    put_config_map(&c, "input", "a").await;
    c.create_qjob(&producer).await;
    wait_secret(&c, "foo-json-v1").await;
    // Something that only looks like a version: never the operator's to delete.
    let kind = json!({"quarks.cloudfoundry.org/secret-kind": "versionedSecret"});
    crate::put_secret(&c, "foo-json-v0000", kind, json!({"value": "mine"})).await;
    // A consumer still running with v1 mounted.
    c.create_qjob(&crate::consumer_of("consumer", "foo-json-v1"))
        .await;
    wait_for("the consumer's Job", || async {
        !list_labelled::<k8s_openapi::api::batch::v1::Job>(&c, &c.namespace, &runs_of("consumer"))
            .await
            .is_empty()
    })
    .await;

    put_config_map(&c, "input", "b").await;
    wait_secret(&c, "foo-json-v2").await;
    put_config_map(&c, "input", "c").await;
    wait_secret(&c, "foo-json-v3").await;
    // v2 is beyond the newest 1 and unreferenced: deleted; v1 is mounted by the running Job.
    wait_for("v2 to be deleted", || async {
        secret_opt(&c, "foo-json-v2").await.is_none()
    })
    .await;
    assert!(
        secret_opt(&c, "foo-json-v1").await.is_some(),
        "a mounted version was deleted"
    );
    assert!(secret_opt(&c, "foo-json-v0000").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_names_are_sanitised_as_the_original_did_and_recorded() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let script = r#"echo '{"a": "1"}' > /mnt/quarks/one.json; echo '{"ADMIN_USER": "{\"u\": \"x\"}"}' > /mnt/quarks/fan.json"#;
    let output = json!({"outputMap": {"busybox": {
        "one.json": {"name": "DB_PASSWORD"},
        "fan.json": {"name": "Creds", "persistencemethod": "fan-out"},
    }}});
    c.create_qjob(&QJob::new("names", "once").output(output).script(script))
        .await;
    assert_eq!(
        string_value(&wait_secret(&c, "db-password").await, "a"),
        "1"
    );
    assert_eq!(
        string_value(&wait_secret(&c, "creds-admin-user").await, "u"),
        "x"
    );
    let status = wait_outputs(&c, "names", 2).await;
    assert_eq!(
        record(&status, "busybox", "one.json").secrets,
        ["db-password"]
    );
    assert_eq!(
        record(&status, "busybox", "fan.json").secrets,
        ["creds-admin-user"]
    );
}
