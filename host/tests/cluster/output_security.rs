//! The output path under attack (issue: "output that cannot be forged"): a tenant of a
//! monitored namespace who may create QuarksJobs, Secrets and pods there, and job images that
//! are untrusted. Each test performs one attack and shows that it fails, on kubesim and on
//! the real control plane.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::{
    Cluster, DEADLINE, QJob, consumer_of, event_notes, list_labelled, mounted_secrets, output_qjob,
    poll, put_config_map, put_secret, runs_of, secret_opt, string_value, versioned_from_config,
    wait_secret, wait_status, wait_until,
};

const STAGING_LABEL: &str = "quarks.cloudfoundry.org/output-staging";
const QJOB_NAME_LABEL: &str = "quarks.cloudfoundry.org/qjob-name";

/// Waits for an Event with `reason` whose note contains `text`; returns the note.
async fn wait_note(c: &Cluster, reason: &str, text: &str) -> String {
    wait_until(&format!("a {reason} Event about {text}"), || async {
        event_notes(c, reason)
            .await
            .into_iter()
            .find(|n| n.contains(text))
    })
    .await
}

/// A tenant of the test's namespace: a ServiceAccount that may create Secrets there (and
/// nothing else), and a client acting as it.
async fn tenant(c: &Cluster) -> kube::Client {
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "tenant"}})).unwrap();
    c.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "tenant"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}],
    }))
    .unwrap();
    c.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "tenant"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
        "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": c.namespace}],
    }))
    .unwrap();
    c.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    c.service_account_client(&c.namespace, "tenant").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_operator_did_not_make_is_not_overwritten_and_the_collision_is_reported() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    put_secret(
        &c,
        "db-credentials",
        json!({}),
        json!({"password": "original"}),
    )
    .await;
    // Anyone who may create QuarksJobs names that Secret as output.
    let output = json!({"outputMap": {"busybox": {
        "output.json": {"name": "db-credentials"},
        "other.json": {"name": "other-out"},
    }}});
    let script = r#"echo '{"password": "attacker"}' > /mnt/quarks/output.json; echo '{"x": "y"}' > /mnt/quarks/other.json"#;
    c.create_qjob(&QJob::new("overwrite", "once").output(output).script(script))
        .await;
    let status = wait_status(&c, &c.namespace, "overwrite", "both files recorded", |s| {
        s.outputs.len() == 2
    })
    .await;
    let record = status
        .outputs
        .iter()
        .find(|r| r.file == "output.json")
        .unwrap();
    assert_eq!(
        record.reason.as_deref(),
        Some("SecretNotOwned"),
        "{record:?}"
    );
    assert!(record.error.as_deref().unwrap().contains("db-credentials"));
    assert!(record.secrets.is_empty());
    let note = wait_note(&c, "OutputFailed", "SecretNotOwned").await;
    assert!(note.contains("db-credentials"), "{note}");
    // Untouched, and the other file of the run was written.
    let kept = secret_opt(&c, "db-credentials").await.unwrap();
    assert_eq!(string_value(&kept, "password"), "original");
    assert!(
        !kept
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key(QJOB_NAME_LABEL)
    );
    assert_eq!(string_value(&wait_secret(&c, "other-out").await, "x"), "y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_labels_cannot_make_an_existing_secret_look_like_staging() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    put_secret(&c, "victim", json!({}), json!({"token": "keep-me"})).await;
    // The staging markers as secretLabels: once on the victim, the next reconcile would have
    // "consumed" and deleted it.
    let output = json!({
        "outputMap": {"busybox": {"output.json": {"name": "victim"}, "mine.json": {"name": "mine"}}},
        "secretLabels": {STAGING_LABEL: "true", QJOB_NAME_LABEL: "reserved"},
    });
    let script =
        r#"echo '{"a": "b"}' > /mnt/quarks/output.json; echo '{"a": "b"}' > /mnt/quarks/mine.json"#;
    c.create_qjob(&QJob::new("relabel", "once").output(output).script(script))
        .await;
    let status = wait_status(
        &c,
        &c.namespace,
        "relabel",
        "run complete, files recorded",
        |s| s.completed && s.outputs.len() == 2,
    )
    .await;
    for record in &status.outputs {
        assert_eq!(
            record.reason.as_deref(),
            Some("InvalidOutput"),
            "{record:?}"
        );
        let error = record.error.as_deref().unwrap();
        assert!(error.contains("reserved"), "{error}");
        assert!(
            error.contains(STAGING_LABEL) || error.contains(QJOB_NAME_LABEL),
            "{error}"
        );
    }
    assert!(secret_opt(&c, "mine").await.is_none());
    // A while later, and after another reconcile of the QuarksJob: the victim is still there,
    // unlabelled.
    crate::patch_qjob(
        &c,
        &c.namespace,
        "relabel",
        json!({"metadata": {"annotations": {"poke": "1"}}}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let victim = secret_opt(&c, "victim").await.expect("victim not deleted");
    assert_eq!(string_value(&victim, "token"), "keep-me");
    assert!(
        !victim
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key(STAGING_LABEL)
    );
}

/// A staging Secret for QuarksJob `qjob` claiming to come from `job` (uid `job_uid`), with a
/// file `output.json` holding `{"password": "forged"}` and a signature that is not the run's.
fn forged_staging(name: &str, qjob: &str, job: &str, job_uid: &str) -> Secret {
    let manifest = json!({
        "quarks-job": qjob, "pod": format!("{job}-abcde"), "pod-uid": "made-up",
        "job-uid": job_uid, "container": "busybox", "exit-code": 0,
        "files": {"output.json": {"state": "present", "key": "file-0"}},
    });
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {STAGING_LABEL: "true", QJOB_NAME_LABEL: qjob},
            "annotations": {
                "quarks.cloudfoundry.org/output-manifest": manifest.to_string(),
                "quarks.cloudfoundry.org/output-signature": "00".repeat(32),
            },
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": job_uid}],
        },
        "stringData": {"file-0": r#"{"password": "forged"}"#},
    }))
    .unwrap()
}

/// The Job of the QuarksJob's first run, once it exists.
async fn first_job(c: &Cluster, qjob: &str) -> Job {
    wait_until(&format!("the Job of {qjob}"), || async {
        list_labelled::<Job>(c, &c.namespace, &runs_of(qjob))
            .await
            .into_iter()
            .next()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_staging_secrets_are_not_consumed_and_are_reported_and_the_real_output_wins() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let output = json!({"outputMap": {"busybox": {"output.json": {"name": "app-password"}}}});
    // The real run takes a moment: the forgeries arrive while it runs.
    let script = r#"sleep 6; echo '{"password": "real"}' > /mnt/quarks/output.json"#;
    c.create_qjob(&QJob::new("victim", "once").output(output).script(script))
        .await;
    let job = first_job(&c, "victim").await;
    let (job_name, job_uid) = (job.metadata.name.unwrap(), job.metadata.uid.unwrap());

    // With the helper's own ServiceAccount (what any output pod's containers ran as before),
    // and with a tenant's that may create Secrets.
    let helper = c
        .service_account_client(
            &c.namespace,
            quarks_job::output::pod::HELPER_SERVICE_ACCOUNT,
        )
        .await;
    let forgers = [
        ("forged-by-helper", helper),
        ("forged-by-tenant", tenant(&c).await),
    ];
    for (name, client) in &forgers {
        Api::<Secret>::namespaced(client.clone(), &c.namespace)
            .create(
                &PostParams::default(),
                &forged_staging(name, "victim", &job_name, &job_uid),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // One claiming no Job at all.
    let mut orphan = forged_staging("forged-orphan", "victim", &job_name, &job_uid);
    orphan.metadata.owner_references = None;
    c.api::<Secret>()
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();

    for name in ["forged-by-helper", "forged-by-tenant", "forged-orphan"] {
        let note = wait_note(&c, "OutputRejected", name).await;
        assert!(note.contains("not accepted"), "{note}");
    }
    let status = wait_status(&c, &c.namespace, "victim", "a HandOver condition", |s| {
        s.conditions.iter().any(|c| c.type_ == "HandOver")
    })
    .await;
    let handover = status
        .conditions
        .iter()
        .find(|c| c.type_ == "HandOver")
        .expect("HandOver condition");
    assert_eq!(
        (handover.status.as_str(), handover.reason.as_str()),
        ("False", "OutputRejected")
    );
    for name in ["forged-by-helper", "forged-by-tenant", "forged-orphan"] {
        assert!(secret_opt(&c, name).await.is_some(), "{name} was deleted");
    }
    assert!(
        secret_opt(&c, "app-password").await.is_none(),
        "a forgery was written"
    );

    // The real hand-over is written; the forgeries wrote nothing and are left where they are.
    let written = wait_until("the real output", || async {
        secret_opt(&c, "app-password")
            .await
            .filter(|s| string_value(s, "password") == "real")
    })
    .await;
    assert_eq!(string_value(&written, "password"), "real");
    wait_status(&c, &c.namespace, "victim", "run complete", |s| s.completed).await;
    assert_eq!(
        string_value(&secret_opt(&c, "app-password").await.unwrap(), "password"),
        "real"
    );
    // Left where they are (the garbage collector deletes those the forger made owned by the
    // Job, with the Job; the one owned by nothing stays).
    assert!(secret_opt(&c, "forged-orphan").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_staging_name_does_not_stop_the_real_hand_over() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let script = r#"sleep 2; echo '{"foo": "real"}' > /mnt/quarks/output.json"#;
    c.create_qjob(&output_qjob("squatted", script, false)).await;
    // The pod's former staging name, taken first (a 409 was success for the helper).
    let pod = wait_until("the run's pod", || async {
        list_labelled::<Pod>(&c, &c.namespace, &runs_of("squatted"))
            .await
            .into_iter()
            .next()
    })
    .await;
    let squat = format!("{}-output-busybox", pod.metadata.name.unwrap());
    put_secret(&c, &squat, json!({}), json!({"x": "y"})).await;
    let written = wait_secret(&c, "foo-json").await;
    assert_eq!(string_value(&written, "foo"), "real");
    assert_eq!(
        string_value(&secret_opt(&c, &squat).await.unwrap(), "x"),
        "y",
        "the squatter's Secret is not the operator's to touch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_containers_of_an_output_pod_hold_no_helper_credentials() {
    let c = Cluster::start_with(kubesim::KubeSimOptions {
        enforce_rbac: true,
        ..Default::default()
    })
    .await;
    let _op = c.operator().await;
    // The job's own code tries what the helper may do, with whatever credentials it has (the
    // pod's ServiceAccount, here the namespace's default one), and looks for the helper's.
    // (curl with the mounted token: kubectl sends no token to kubesim's plain-http server.)
    let script = r#"
sa=/var/run/secrets/kubernetes.io/serviceaccount
ns=$(cat $sa/namespace)
if [ -s $sa/ca.crt ]; then url=https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; tls="--cacert $sa/ca.crt"; else url=http://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; tls=""; fi
auth="Authorization: Bearer $(cat $sa/token)"
create=$(curl -s -o /dev/null -w '%{http_code}' $tls -H "$auth" -H 'Content-Type: application/json' -X POST -d '{"metadata":{"name":"stolen"}}' $url/api/v1/namespaces/$ns/secrets)
list=$(curl -s -o /dev/null -w '%{http_code}' $tls -H "$auth" $url/api/v1/namespaces/$ns/pods)
if [ -e /var/run/secrets/quarks-job/handover ]; then handover=visible; else handover=absent; fi
echo "{\"create\": \"$create\", \"list\": \"$list\", \"handover\": \"$handover\"}" > /mnt/quarks/output.json
"#;
    c.create_qjob(&output_qjob("probe", script, false)).await;
    let found = wait_secret(&c, "foo-json").await;
    assert_eq!(
        string_value(&found, "create"),
        "403",
        "a user container may create a Secret"
    );
    assert_eq!(
        string_value(&found, "list"),
        "403",
        "a user container may list pods"
    );
    assert_eq!(string_value(&found, "handover"), "absent");
    assert!(secret_opt(&c, "stolen").await.is_none());
    // The pod runs as the template's account, not as the helper's.
    let pod = list_labelled::<Pod>(&c, &c.namespace, &runs_of("probe"))
        .await
        .into_iter()
        .next();
    if let Some(pod) = pod {
        let account = pod.spec.unwrap().service_account_name;
        assert_ne!(
            account.as_deref(),
            Some(quarks_job::output::pod::HELPER_SERVICE_ACCOUNT)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_with_its_own_service_account_writes_its_output() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap();
    c.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    // A second container, not in outputMap, keeps the Job running after the output is written
    // (a succeeded Job is deleted).
    let mut qjob = output_qjob(
        "own-account",
        r#"echo '{"foo": "1"}' > /mnt/quarks/output.json"#,
        false,
    )
    .container("sidecar", "sleep 30", json!({}))
    .build();
    let mut template = qjob.spec.template.job().unwrap();
    let pod = template
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .unwrap();
    pod.service_account_name = Some("app".into());
    qjob.spec.template = quarks_job::crd::JobTemplate::new(&template).unwrap();
    c.qjobs()
        .create(&PostParams::default(), &qjob)
        .await
        .unwrap();
    assert_eq!(string_value(&wait_secret(&c, "foo-json").await, "foo"), "1");
    let job = first_job(&c, "own-account").await;
    let account = job
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .service_account_name;
    assert_eq!(account.as_deref(), Some("app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_version_999999_moves_neither_the_mounted_version_nor_the_next_number() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    put_config_map(&c, "input", "a").await;
    c.create_qjob(&versioned_from_config("producer")).await;
    wait_secret(&c, "foo-json-v1").await;

    // Everything a version carries, but not made by the operator.
    let forged: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "foo-json-v999999",
            "labels": {
                "quarks.cloudfoundry.org/secret-kind": "versionedSecret",
                "quarks.cloudfoundry.org/secret-version": "999999",
                QJOB_NAME_LABEL: "producer",
            },
            "annotations": {"quarks.cloudfoundry.org/version-seal": "00".repeat(32)},
        },
        "stringData": {"value": "forged"},
    }))
    .unwrap();
    c.api::<Secret>()
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();

    // A consumer of the newest version mounts v1.
    c.create_qjob(&consumer_of("consumer", "foo-json-v1")).await;
    let job = first_job(&c, "consumer").await;
    assert_eq!(mounted_secrets(&job), ["foo-json-v1"]);

    // The next version of the producer is 2.
    put_config_map(&c, "input", "b").await;
    let v2 = wait_secret(&c, "foo-json-v2").await;
    assert_eq!(string_value(&v2, "value"), "b");
    assert!(secret_opt(&c, "foo-json-v1000000").await.is_none());
    // The forgery is still there, untouched: it is not the operator's.
    let still = poll(DEADLINE, || async {
        secret_opt(&c, "foo-json-v999999").await
    })
    .await;
    assert_eq!(string_value(&still.unwrap(), "value"), "forged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_file_fanning_out_to_thousands_of_secrets_writes_none_of_them() {
    let c = Cluster::start().await;
    let op = c.operator().await;
    // 3000 keys, each a Secret of its own.
    let script = r#"
{ printf '{'; i=0; while [ $i -lt 3000 ]; do [ $i -gt 0 ] && printf ','; printf '"k%d": "{}"' $i; i=$((i+1)); done; printf '}'; } > /mnt/quarks/output.json
"#;
    let output = json!({"outputMap": {"busybox": {"output.json": {"name": "fan", "persistencemethod": "fan-out"}}}});
    c.create_qjob(&QJob::new("fan-out", "once").output(output).script(script))
        .await;
    let status = wait_status(&c, &c.namespace, "fan-out", "the file recorded", |s| {
        !s.outputs.is_empty()
    })
    .await;
    let record = &status.outputs[0];
    assert_eq!(
        record.reason.as_deref(),
        Some("TooManySecrets"),
        "{record:?}"
    );
    assert!(
        record.error.as_deref().unwrap().contains("3000 Secrets"),
        "{record:?}"
    );
    // (Its staging and hand-over Secrets carry the mark too.)
    let output_of_fan_out = format!(
        "{QJOB_NAME_LABEL}=fan-out,!{STAGING_LABEL},!quarks.cloudfoundry.org/output-handover"
    );
    let written: Vec<Secret> = list_labelled(&c, &c.namespace, &output_of_fan_out).await;
    assert!(written.is_empty(), "{} Secrets written", written.len());
    // The operator is well and keeps working.
    let (code, _) = op.http_get("/healthz").await;
    assert_eq!(code, 200);
    c.create_qjob(&output_qjob(
        "after",
        r#"echo '{"a": "b"}' > /mnt/quarks/output.json"#,
        false,
    ))
    .await;
    assert_eq!(string_value(&wait_secret(&c, "foo-json").await, "a"), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trust_unsealed_versions_versions_other_writers_made_count_as_before() {
    let c = Cluster::start().await;
    // Where another component (the Quarks operator) writes versions, as the original allowed.
    let _op = c
        .operator_with(&c.monitored_id, &["--trust-unsealed-versions"])
        .await;
    for version in [1, 2] {
        let labels = json!({
            "quarks.cloudfoundry.org/secret-kind": "versionedSecret",
            "quarks.cloudfoundry.org/secret-version": version.to_string(),
        });
        put_secret(
            &c,
            &format!("manifest-v{version}"),
            labels,
            json!({"value": "x"}),
        )
        .await;
    }
    c.create_qjob(&consumer_of("consumer", "manifest-v1")).await;
    let job = first_job(&c, "consumer").await;
    assert_eq!(mounted_secrets(&job), ["manifest-v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_secret_labelled_with_the_quarks_jobs_mark_is_adopted() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    // Written by the Go operator, say; adopted by labelling it for QuarksJob `adopter`.
    put_secret(
        &c,
        "foo-json",
        json!({QJOB_NAME_LABEL: "adopter"}),
        json!({"foo": "old", "stale": "x"}),
    )
    .await;
    let script = r#"echo '{"foo": "new"}' > /mnt/quarks/output.json"#;
    c.create_qjob(&output_qjob("adopter", script, false)).await;
    let written = wait_until("the adopted Secret rewritten", || async {
        secret_opt(&c, "foo-json")
            .await
            .filter(|s| string_value(s, "foo") == "new")
    })
    .await;
    assert_eq!(string_value(&written, "foo"), "new");
}
