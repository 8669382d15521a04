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

/// The condition `type` of QuarksJob `qjob`: (status, reason, message).
fn condition(c: &Cluster, qjob: &str, type_: &str) -> (String, String, String) {
    let path = |f: &str| format!(".status.conditions[?(@.type==\"{type_}\")].{f}");
    (
        field(c, qjob, &path("status")),
        field(c, qjob, &path("reason")),
        field(c, qjob, &path("message")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_shaped_like_the_originals_examples_apply_unchanged_and_behave() {
    let c = Cluster::start().await;
    let _op = c.operator().await;
    // kubectl 1.32 validates strictly on the server: `spec.template.backoffLimit` must be
    // accepted (the original's schema kept it).
    for example in [
        "errand.yaml",
        "auto-errand.yaml",
        "auto-errand-deletes-pod.yaml",
        "auto-errand-updating.yaml",
        "output.yaml",
    ] {
        kubectl(
            &c,
            &[
                "apply",
                "-f",
                &format!("examples/original-shapes/{example}"),
            ],
        );
    }
    for one_off in [
        "orig-one-off",
        "orig-deletes-pod",
        "orig-updating",
        "orig-output",
    ] {
        wait_for(&format!("{one_off} to complete"), || async {
            field(&c, one_off, ".status.completed") == "true"
        })
        .await;
        assert_eq!(field(&c, one_off, ".spec.trigger.strategy"), "done");
    }
    let secret = wait_secret(&c, "orig-foo-json").await;
    assert_eq!(secret.data.unwrap()["bar"].0, b"baz");

    // The misplaced key is kept, ignored and reported, naming where it belongs.
    assert_eq!(field(&c, "orig-output", ".spec.template.backoffLimit"), "2");
    let (status, reason, message) = condition(&c, "orig-output", "UnknownFields");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "UnknownTemplateFields")
    );
    assert!(
        message
            .contains("spec.template.backoffLimit (it belongs in spec.template.spec.backoffLimit)"),
        "{message}"
    );
    let events = kubectl(
        &c,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=UnknownTemplateFields",
            "-o",
            "name",
        ],
    );
    assert!(!events.trim().is_empty(), "no UnknownTemplateFields Event");
    // Where the key is in its place, nothing is reported.
    assert_eq!(condition(&c, "orig-one-off", "UnknownFields").0, "");

    // The errand runs when its manifest says `now`, and is manual again.
    kubectl(
        &c,
        &[
            "apply",
            "-f",
            "examples/original-shapes/errand_updated.yaml",
        ],
    );
    wait_for("the errand to run and finish", || async {
        field(&c, "orig-errand", ".status.runCount") == "1"
            && field(&c, "orig-errand", ".status.completed") == "true"
    })
    .await;
    assert_eq!(field(&c, "orig-errand", ".spec.trigger.strategy"), "manual");

    // The updating one-off runs again when its config changes.
    kubectl(
        &c,
        &[
            "apply",
            "-f",
            "examples/original-shapes/auto-errand-updating_updated.yaml",
        ],
    );
    wait_for("orig-updating to run again", || async {
        field(&c, "orig-updating", ".status.runCount") == "2"
            && field(&c, "orig-updating", ".status.completed") == "true"
    })
    .await;
}
