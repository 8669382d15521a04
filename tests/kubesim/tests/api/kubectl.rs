//! The real kubectl (1.32) against kubesim: the commands users and scripts rely on.
//! kubectl works in the test's namespace (the kubeconfig's context namespace).

use std::process::Stdio;
use std::time::Duration;

use kubesim::KubeSimOptions;
use tokio::io::AsyncBufReadExt;

use super::common::Cluster;

/// kubectl with the test's kubeconfig and a private discovery cache.
fn command(c: &Cluster, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(c.kubeconfig_path())
        .arg("--cache-dir")
        .arg(c.scratch_dir().join("kubectl-cache"))
        .args(args);
    cmd
}

async fn kubectl(c: &Cluster, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = command(c, args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl runs");
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut s = child.stdin.take().expect("stdin");
        s.write_all(input.as_bytes()).await.expect("write stdin");
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished")
        .expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn ok(c: &Cluster, args: &[&str]) -> String {
    let (success, out, err) = kubectl(c, args, None).await;
    assert!(success, "kubectl {args:?} failed: {err}\n{out}");
    out
}

async fn ok_stdin(c: &Cluster, args: &[&str], input: &str) -> String {
    let (success, out, err) = kubectl(c, args, Some(input)).await;
    assert!(success, "kubectl {args:?} failed: {err}\n{out}");
    assert!(!err.contains("warning"), "kubectl {args:?} warned: {err}");
    out
}

const MANIFEST: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  labels:\n    app: demo\ndata:\n  key: one\n";

#[tokio::test]
async fn discovery_create_get_describe() {
    let c = Cluster::start().await;
    let out = ok(&c, &["api-resources"]).await;
    for want in [
        "configmaps",
        "jobs",
        "leases",
        "customresourcedefinitions",
        "clusterrolebindings",
    ] {
        assert!(out.contains(want), "api-resources lacks {want}:\n{out}");
    }
    let team = c.name("team");
    c.delete_on_stop(&format!("/api/v1/namespaces/{team}"));
    let team = team.as_str();
    ok(&c, &["create", "namespace", team]).await;
    ok(
        &c,
        &[
            "create",
            "configmap",
            "c1",
            "-n",
            team,
            "--from-literal=a=b",
        ],
    )
    .await;
    ok(
        &c,
        &[
            "create",
            "secret",
            "generic",
            "s1",
            "-n",
            team,
            "--from-literal=password=hunter2",
        ],
    )
    .await;
    let secret = ok(
        &c,
        &[
            "get",
            "secret",
            "s1",
            "-n",
            team,
            "-o",
            "jsonpath={.data.password}",
        ],
    )
    .await;
    assert_eq!(secret, "aHVudGVyMg==");
    let yaml = ok(&c, &["get", "configmap", "c1", "-n", team, "-o", "yaml"]).await;
    assert!(
        yaml.contains("name: c1") && yaml.contains("a: b") && yaml.contains("resourceVersion"),
        "{yaml}"
    );
    let table = ok(&c, &["get", "configmaps", "-n", team]).await;
    assert!(
        table.contains("NAME") && table.contains("DATA") && table.contains("c1"),
        "{table}"
    );
    let described = ok(&c, &["describe", "configmap", "c1", "-n", team]).await;
    assert!(
        described.contains("Name:") && described.contains("c1"),
        "{described}"
    );
    let ns = ok(&c, &["get", "namespaces"]).await;
    assert!(ns.contains(team) && ns.contains("Active"), "{ns}");
    c.stop().await;
}

#[tokio::test]
async fn apply_client_and_server_side_patch_label_annotate() {
    let c = Cluster::start().await;
    ok_stdin(&c, &["apply", "-f", "-"], MANIFEST).await;
    let changed = MANIFEST.replace("key: one", "key: two");
    let out = ok_stdin(&c, &["apply", "-f", "-"], &changed).await;
    assert!(out.contains("configured"), "{out}");
    let out = ok_stdin(
        &c,
        &["apply", "--server-side", "-f", "-"],
        &changed.replace("key: two", "key: three"),
    )
    .await;
    assert!(out.contains("serverside-applied"), "{out}");
    // A different manager applying another value conflicts, unless forced.
    let (success, _, err) = kubectl(
        &c,
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&changed.replace("key: two", "key: four")),
    )
    .await;
    assert!(!success && err.contains("conflict"), "{err}");
    ok_stdin(
        &c,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &changed.replace("key: two", "key: four"),
    )
    .await;
    ok(
        &c,
        &[
            "patch",
            "configmap",
            "cfg",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"m":"1"}}"#,
        ],
    )
    .await;
    ok(
        &c,
        &[
            "patch",
            "configmap",
            "cfg",
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
        ],
    )
    .await;
    ok(
        &c,
        &[
            "patch",
            "configmap",
            "cfg",
            "--type",
            "strategic",
            "-p",
            r#"{"data":{"s":"3"}}"#,
        ],
    )
    .await;
    ok(&c, &["label", "configmap", "cfg", "tier=web"]).await;
    ok(&c, &["annotate", "configmap", "cfg", "note=hi"]).await;
    let data = ok(&c, &["get", "configmap", "cfg", "-o", "jsonpath={.data.key},{.data.m},{.data.j},{.data.s},{.metadata.labels.tier},{.metadata.annotations.note}"]).await;
    assert_eq!(data, "four,1,2,3,web,hi");
    let by_label = ok(&c, &["get", "configmaps", "-l", "tier=web", "-o", "name"]).await;
    assert_eq!(by_label.trim(), "configmap/cfg");
    let none = ok(&c, &["get", "configmaps", "-l", "tier=db", "-o", "name"]).await;
    assert_eq!(none.trim(), "");
    c.stop().await;
}

#[tokio::test]
async fn delete_with_each_cascade() {
    let c = Cluster::start().await;
    for cascade in ["background", "foreground", "orphan"] {
        let owner = format!("owner-{cascade}");
        let out = ok_stdin(
            &c,
            &["create", "-f", "-", "-o", "jsonpath={.metadata.uid}"],
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {owner}\n"),
        )
        .await;
        let dep = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dep-{cascade}\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: {owner}\n    uid: {out}\n    blockOwnerDeletion: true\n"
        );
        ok_stdin(&c, &["create", "-f", "-"], &dep).await;
        ok(
            &c,
            &[
                "delete",
                "configmap",
                &owner,
                &format!("--cascade={cascade}"),
                "--timeout=20s",
            ],
        )
        .await;
        let mut dep_exists = true;
        for _ in 0..40 {
            let (found, _, _) =
                kubectl(&c, &["get", "configmap", &format!("dep-{cascade}")], None).await;
            dep_exists = found;
            if !found || cascade == "orphan" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(dep_exists, cascade == "orphan", "--cascade={cascade}");
    }
    c.stop().await;
}

#[tokio::test]
async fn get_watch_prints_changes() {
    let c = Cluster::start().await;
    ok_stdin(&c, &["apply", "-f", "-"], MANIFEST).await;
    let mut child = command(&c, &["get", "configmaps", "-l", "app=demo", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut until_row = async |name: &str| loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no watch output for {name} in time"))
            .expect("read")
            .expect("kubectl still watching");
        if line.split_whitespace().next() == Some(name) {
            return;
        }
    };
    // The existing object is printed once kubectl has listed; the watch starts from that
    // list, so what is created afterwards is printed too.
    until_row("cfg").await;
    let second = MANIFEST.replace("name: cfg", "name: cfg2");
    ok_stdin(&c, &["apply", "-f", "-"], &second).await;
    until_row("cfg2").await;
    c.stop().await;
}

/// Needs kubesim's kubelet and Job controller (the real control plane has no kubelet).
#[tokio::test]
async fn kubesim_only_jobs_complete_fail_and_log_with_the_kubelet() {
    let c = Cluster::kubesim_with(KubeSimOptions::default()).await;
    let job = |name: &str, script: &str, backoff: u32| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  backoffLimit: {backoff}\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n        command: [\"sh\", \"-c\", \"{script}\"]\n        volumeMounts: [{{name: scratch, mountPath: /scratch}}]\n      volumes: [{{name: scratch, emptyDir: {{}}}}]\n"
        )
    };
    ok_stdin(
        &c,
        &["apply", "-f", "-"],
        &job("good", "echo written > /scratch/f && cat /scratch/f", 0),
    )
    .await;
    ok(
        &c,
        &[
            "wait",
            "--for=condition=complete",
            "job/good",
            "--timeout=60s",
        ],
    )
    .await;
    let logs = ok(&c, &["logs", "job/good"]).await;
    assert_eq!(logs.trim(), "written");
    ok_stdin(&c, &["apply", "-f", "-"], &job("bad", "exit 1", 1)).await;
    ok(
        &c,
        &["wait", "--for=condition=failed", "job/bad", "--timeout=60s"],
    )
    .await;
    let pods = ok(&c, &["get", "pods", "-l", "job-name=bad", "-o", "name"]).await;
    assert_eq!(
        pods.lines().count(),
        2,
        "backoffLimit 1 means two pods: {pods}"
    );
    c.stop().await;
}

#[tokio::test]
async fn describe_shows_events_recorded_through_events_api() {
    use k8s_openapi::api::events::v1::Event;
    use kube::api::PostParams;
    let c = Cluster::start().await;
    let client = c.client.clone();
    ok_stdin(&c, &["apply", "-f", "-"], MANIFEST).await;
    let uid = ok(
        &c,
        &["get", "configmap", "cfg", "-o", "jsonpath={.metadata.uid}"],
    )
    .await;
    let e: Event = serde_json::from_value(serde_json::json!({"metadata": {"name": "cfg.1"}, "eventTime": "2024-01-01T00:00:00.000000Z",
        "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "namespace": c.ns, "uid": uid},
        "note": "reconciled the thing", "reason": "Reconciled", "type": "Normal", "action": "Reconcile",
        "reportingController": "quarks-job", "reportingInstance": "quarks-job-0"})).expect("event");
    kube::Api::<Event>::namespaced(client, &c.ns)
        .create(&PostParams::default(), &e)
        .await
        .expect("event");
    let described = ok(&c, &["describe", "configmap", "cfg"]).await;
    assert!(
        described.contains("Reconciled") && described.contains("reconciled the thing"),
        "{described}"
    );
    c.stop().await;
}
