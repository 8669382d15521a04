//! spec.md §4–§5: output files become Secrets, through the helper in the pod and the
//! built-in output policy.

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;

use crate::{Cluster, put_config_map, wait_for};

fn output_qjob(name: &str, script: &str, versioned: bool) -> String {
    format!(
        r#"
apiVersion: quarks.cloudfoundry.org/v1alpha1
kind: QuarksJob
metadata:
  name: {name}
spec:
  trigger:
    strategy: once
  output:
    outputMap:
      busybox:
        output.json:
          name: foo-json
          versioned: {versioned}
        missing.json:
          name: never-written
    secretLabels:
      key: value
  template:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: busybox
            image: busybox
            command: ["sh", "-c", {script:?}]
"#
    )
}

async fn qjob_status(c: &Cluster, name: &str) -> quarks_job::crd::QuarksJobStatus {
    c.qjobs()
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_becomes_secret_foo_json_and_a_missing_file_is_reported() {
    let c = Cluster::start().await;
    let op = c.operator().await;
    let script = r#"echo '{"foo": "1", "bar": "baz"}' > /mnt/quarks/output.json"#;
    c.create_qjob(&output_qjob("output-job", script, false))
        .await;
    wait_for("Secret foo-json", || async {
        c.api::<Secret>()
            .get_opt("foo-json")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let secret = c.api::<Secret>().get("foo-json").await.unwrap();
    let data = secret.data.unwrap();
    assert_eq!(data["foo"].0, b"1");
    assert_eq!(data["bar"].0, b"baz");
    let labels = secret.metadata.labels.unwrap();
    assert_eq!(labels["key"], "value");
    assert_eq!(labels["quarks.cloudfoundry.org/container-name"], "busybox");
    wait_for(
        "status to record both files and the run to complete",
        || async {
            let s = qjob_status(&c, "output-job").await;
            s.completed && s.outputs.len() == 2
        },
    )
    .await;
    let s = qjob_status(&c, "output-job").await;
    let written = s.outputs.iter().find(|o| o.file == "output.json").unwrap();
    assert_eq!(written.secrets, ["foo-json"]);
    let missing = s.outputs.iter().find(|o| o.file == "missing.json").unwrap();
    assert!(
        missing.error.as_deref().unwrap().starts_with("FileMissing"),
        "{missing:?}"
    );
    // The staging Secret was consumed, and no value reached the operator's log.
    let staged = c
        .api::<Secret>()
        .list(&ListParams::default().labels("quarks.cloudfoundry.org/output-staging=true"))
        .await
        .unwrap();
    assert!(staged.items.is_empty());
    assert!(!op.log().contains("baz"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_output_writes_a_new_version_only_when_the_content_changes() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    let script = r#"echo "{\"value\": \"$(cat /etc/config/value)\"}" > /mnt/quarks/output.json"#;
    let mut yaml = output_qjob("versioned", script, true).replace(
        "strategy: once",
        "strategy: once\n  updateOnConfigChange: true",
    );
    yaml = yaml.replace(
        "          containers:",
        "          volumes:\n          - name: config\n            configMap: {name: input}\n          containers:",
    );
    yaml.push_str(
        "            volumeMounts:\n            - {name: config, mountPath: /etc/config}\n",
    );
    put_config_map(&c, "input", "a").await;
    c.create_qjob(&yaml).await;
    wait_for("foo-json-v1", || async {
        c.api::<Secret>()
            .get_opt("foo-json-v1")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let v1 = c.api::<Secret>().get("foo-json-v1").await.unwrap();
    let labels = v1.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["quarks.cloudfoundry.org/secret-kind"],
        "versionedSecret"
    );
    assert_eq!(labels["quarks.cloudfoundry.org/secret-version"], "1");

    put_config_map(&c, "input", "b").await;
    wait_for("foo-json-v2", || async {
        c.api::<Secret>()
            .get_opt("foo-json-v2")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert_eq!(
        c.api::<Secret>()
            .get("foo-json-v2")
            .await
            .unwrap()
            .data
            .unwrap()["value"]
            .0,
        b"b"
    );
}
