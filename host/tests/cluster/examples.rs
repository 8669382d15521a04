//! spec.md §7: the examples under `examples/` work as their comments say, applied and patched
//! with the real `kubectl`, as the README and `scripts/demo` tell users to.

use crate::{Cluster, wait_for, wait_secret};

/// Runs `kubectl -n <test namespace> <args>` against the test's cluster; returns stdout.
fn kubectl(c: &Cluster, args: &[&str]) -> String {
    let args: Vec<&str> = ["-n", c.namespace.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    crate::kubectl(&c.kubeconfig, &args)
}

fn field(c: &Cluster, qjob: &str, path: &str) -> String {
    kubectl(
        c,
        &["get", "qjob", qjob, "-o", &format!("jsonpath={{{path}}}")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_work_as_documented() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    for example in [
        "qjob_errand.yaml",
        "qjob_one_off.yaml",
        "qjob_one_off_delete_pod.yaml",
        "qjob_one_off_config_change.yaml",
        "qjob_output.yaml",
    ] {
        kubectl(&c, &["apply", "-f", &format!("examples/{example}")]);
    }
    for one_off in [
        "one-off",
        "one-off-delete-pod",
        "one-off-config-change",
        "output-job",
    ] {
        wait_for(&format!("{one_off} to complete"), || async {
            field(&c, one_off, ".status.completed") == "true"
        })
        .await;
        assert_eq!(field(&c, one_off, ".spec.trigger.strategy"), "done");
    }

    // The output example: Secret foo-json with foo and bar, and the label key=value.
    let secret = wait_secret(&c, "foo-json").await;
    let data = secret.data.unwrap_or_default();
    assert_eq!(data.get("foo").map(|v| v.0.as_slice()), Some(&b"1"[..]));
    assert_eq!(data.get("bar").map(|v| v.0.as_slice()), Some(&b"baz"[..]));
    assert_eq!(
        secret.metadata.labels.unwrap_or_default().get("key"),
        Some(&"value".to_owned())
    );

    // The errand runs once when patched to now, then is manual again.
    assert_eq!(field(&c, "errand1", ".status.runCount"), "0");
    kubectl(
        &c,
        &[
            "patch",
            "qjob",
            "errand1",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"trigger":{"strategy":"now"}}}"#,
        ],
    );
    wait_for("the errand to run and finish", || async {
        field(&c, "errand1", ".status.runCount") == "1"
            && field(&c, "errand1", ".status.completed") == "true"
    })
    .await;
    assert_eq!(field(&c, "errand1", ".spec.trigger.strategy"), "manual");

    // The config-change example runs again when its ConfigMap changes.
    kubectl(
        &c,
        &[
            "patch",
            "configmap",
            "one-off-config",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"greeting":"hi again"}}"#,
        ],
    );
    wait_for("the config-change re-run", || async {
        field(&c, "one-off-config-change", ".status.runCount") == "2"
    })
    .await;
    // Succeeded Jobs and their pods are gone.
    wait_for("succeeded Jobs to be cleaned up", || async {
        kubectl(&c, &["get", "jobs,pods", "-o", "name"])
            .trim()
            .is_empty()
    })
    .await;
}
