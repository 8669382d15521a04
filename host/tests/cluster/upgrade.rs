//! Upgrading from the Go operator (README "Migrating from the Go operator"): its CRD and the
//! QuarksJobs, status and Jobs it left in place, then this operator.
//!
//! These tests replace the cluster-wide CRD, which would break every other test on a shared
//! cluster: on kubesim each has its own kubesim; on the real-cluster pass (a kubeconfig in
//! `QUARKS_TEST_KUBECONFIG`) each starts a control plane of its own (`../shared/k8s`, as the
//! shared one) with an in-process `kubesim node` as its node.

use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubesim::KubeSimOptions;
use quarks_job::crd::{QuarksJob, Strategy};
use tokio_util::sync::CancellationToken;

use crate::chart::Deployed;
use crate::{
    Cluster, DEADLINE, OperatorProcess, QJob, jobs_in, kubectl, list_labelled, poll,
    put_config_map, qjob_status, set_strategy, wait_completed, wait_for, wait_status,
};

const CRD_NAME: &str = "quarksjobs.quarks.cloudfoundry.org";

fn original_crd_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/original-crd.yaml")
}

/// A cluster of the test's own: a fresh kubesim (RBAC enforced), or on the real-cluster pass a
/// control plane with a node, both stopped when dropped.
struct OwnCluster {
    cluster: Option<Cluster>,
    node: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    _plane: Option<kubesim::control_plane::ControlPlane>,
}

impl OwnCluster {
    async fn start() -> OwnCluster {
        if std::env::var_os("QUARKS_TEST_KUBECONFIG").is_none() {
            let cluster = Cluster::start_with(KubeSimOptions {
                enforce_rbac: true,
                ..Default::default()
            })
            .await;
            return OwnCluster {
                cluster: Some(cluster),
                node: None,
                _plane: None,
            };
        }
        let plane = tokio::task::spawn_blocking(kubesim::control_plane::ControlPlane::start)
            .await
            .unwrap()
            .expect("a control plane of this test's own starts (../shared/k8s)");
        let kubeconfig = plane.kubeconfig();
        let shutdown = CancellationToken::new();
        let options = kubesim::node::NodeOptions {
            kubeconfig: kubeconfig.clone(),
            name: "upgrade-node".to_owned(),
            state_dir: None,
            images: kubesim::kubelet::images::ImageTable::with_defaults(Some(PathBuf::from(env!(
                "CARGO_BIN_EXE_quarks-job"
            )))),
        };
        let node = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                if let Err(e) = kubesim::node::run(options, shutdown, |_| {}).await {
                    eprintln!("kubesim node: {e:#}");
                }
            }
        });
        let client = plane.client().await.expect("client");
        let cluster = Cluster {
            client,
            kubeconfig,
            sim: None,
            namespace: "legacy".to_owned(),
            monitored_id: "legacy-id".to_owned(),
        };
        cluster
            .create_namespace(&cluster.namespace, Some(&cluster.monitored_id))
            .await;
        OwnCluster {
            cluster: Some(cluster),
            node: Some((shutdown, node)),
            _plane: Some(plane),
        }
    }

    fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().unwrap()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        if let Some((shutdown, node)) = self.node.take() {
            shutdown.cancel();
            node.abort();
        }
    }
}

/// The Go operator's CRD, served (and nothing of ours).
async fn install_original_crd(c: &Cluster) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    assert!(
        crds.get_opt(CRD_NAME).await.unwrap().is_none(),
        "a cluster of this test's own has no QuarksJob CRD yet"
    );
    kubectl(
        &c.kubeconfig,
        &["apply", "-f", original_crd_file().to_str().unwrap()],
    );
    wait_for("the Go operator's CRD to be established", || async {
        let crd = crds.get_opt(CRD_NAME).await.ok().flatten();
        crd.and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    })
    .await;
    // Established is not yet "served" everywhere: the first request may still 404.
    let qjobs: Api<QuarksJob> = c.qjobs();
    wait_for("QuarksJobs to be served", || async {
        qjobs.list(&Default::default()).await.is_ok()
    })
    .await;
}

/// Creates `qjob` and gives it `status` as the Go operator wrote it (its status subresource).
async fn create_as_the_original_left_it(c: &Cluster, qjob: &QJob, status: serde_json::Value) {
    let created = c.create_qjob(qjob).await;
    let name = created.metadata.name.unwrap();
    c.qjobs()
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .expect("write the Go operator's status");
}

/// A Job as the Go operator made it for QuarksJob `owner`: `<name>-<16 hex>`, its `qjob-name`
/// label on the Job and the pod template, a controller owner reference, no run annotation.
async fn create_original_job(c: &Cluster, owner: &QuarksJob, suffix: &str) -> String {
    let owner_name = owner.metadata.name.clone().unwrap();
    let name = format!("{owner_name}-{suffix}");
    let job: Job = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {"quarks.cloudfoundry.org/qjob-name": owner_name},
            "ownerReferences": [{
                "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
                "name": owner_name, "uid": owner.metadata.uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {"quarks.cloudfoundry.org/qjob-name": owner_name}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "busybox", "image": "busybox", "command": ["sh", "-c", "echo done"]},
            ]},
        }},
    }))
    .unwrap();
    c.api::<Job>()
        .create(&PostParams::default(), &job)
        .await
        .expect("create the Go operator's Job");
    name
}

fn is_complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

/// The served QuarksJob CRD is ours: it holds everything the operator writes, with our columns.
async fn assert_our_crd_is_served(c: &Cluster) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    let served = crds.get(CRD_NAME).await.unwrap();
    let ours = quarks_job::crd::crd();
    let problems = quarks_job::runtime::served_crd::problems(&ours, &served);
    assert!(problems.is_empty(), "{problems:?}");
    let columns = |crd: &CustomResourceDefinition| -> Vec<String> {
        crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(columns(&served), columns(&ours));
}

/// The Go operator's CRD and what it left (an errand; a `done` one-off with updateOnConfigChange,
/// its status in the Go operator's shape, and that one-off's succeeded Job with its pod), then
/// the chart installed as Helm would over an existing CRD (it skips `crds/`) and the operator
/// run as its Deployment runs it: our CRD is served, nothing re-runs, the leftover Job and its
/// pod are deleted, the errand runs when set to `now`, the one-off when its config changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_from_the_go_operator_keeps_its_quarksjobs_working_and_reruns_nothing() {
    let own = OwnCluster::start().await;
    // The Go operator's QuarksJobs are in the namespace its chart made (`staging` of release
    // `qj-<ns>` in `<ns>-operator`, the names Deployed::install gives), which this chart's
    // `helm upgrade` of that release takes over.
    let base = own.cluster().namespace.clone();
    let staging = format!("{base}-staging");
    // Only that namespace is monitored (the test's first one is not bound by the chart).
    Api::<k8s_openapi::api::core::v1::Namespace>::all(own.cluster().client.clone())
        .patch(
            &base,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "quarks.cloudfoundry.org/monitored": null,
            }}})),
        )
        .await
        .unwrap();
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {
            "name": staging,
            "labels": {
                "quarks.cloudfoundry.org/monitored": own.cluster().monitored_id,
                "app.kubernetes.io/managed-by": "Helm",
            },
            "annotations": {
                "meta.helm.sh/release-name": format!("qj-{base}"),
                "meta.helm.sh/release-namespace": format!("{base}-operator"),
            },
        }}))
        .unwrap();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(own.cluster().client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let c = &own_cluster_handle(&own, &staging);
    let ns = c.namespace.clone();
    install_original_crd(c).await;

    put_config_map(c, "legacy-config", "v1").await;
    let errand = QJob::new("legacy-errand", "manual").script("echo errand");
    create_as_the_original_left_it(
        c,
        &errand,
        serde_json::json!({"lastReconcile": null, "completed": true}),
    )
    .await;
    let volume = serde_json::json!({"name": "config", "configMap": {"name": "legacy-config"}});
    let one_off = QJob::new("legacy-once", "done")
        .update_on_config_change(true)
        .volume(volume, "/etc/legacy")
        .script("cat /etc/legacy/value");
    create_as_the_original_left_it(
        c,
        &one_off,
        serde_json::json!({"lastReconcile": "2026-01-01T00:00:00Z", "completed": true}),
    )
    .await;
    let owner = c.qjobs().get("legacy-once").await.unwrap();
    let leftover = create_original_job(c, &owner, "5e1f0c3a9b7d2e44").await;
    let jobs: Api<Job> = c.api();
    wait_for("the Go operator's Job to succeed", || async {
        jobs.get_opt(&leftover)
            .await
            .unwrap()
            .is_some_and(|j| is_complete(&j))
    })
    .await;
    let leftover_pods = format!("job-name={leftover}");
    assert_eq!(list_labelled::<Pod>(c, &ns, &leftover_pods).await.len(), 1);

    // The chart, as `helm upgrade --install` over the Go operator's CRD would leave it, and the
    // operator as its Deployment runs it (applyCRD defaults to true).
    let monitored = format!("global.monitoredID={}", c.monitored_id);
    let cluster = own_cluster_handle(&own, &own.cluster().namespace);
    let d = Deployed::install(cluster, &[], &[&monitored], false).await;
    assert_eq!(d.staging, staging);
    assert!(
        d.log().contains("CRD applied and established"),
        "{}",
        d.log()
    );
    assert_our_crd_is_served(c).await;

    // The one-off is adopted: its config digest recorded as the baseline, no run, still done.
    let status = poll(DEADLINE, || async {
        let status = qjob_status(c, &ns, "legacy-once").await;
        status.config_digest.is_some().then_some(status)
    })
    .await
    .unwrap_or_else(|| panic!("no config digest recorded; operator log:\n{}", d.log()));
    assert_eq!(status.run_count, 0, "{status:?}");
    assert!(status.completed, "the Go operator's completed stays");
    // The errand is adopted and keeps its strategy.
    let status = wait_status(c, &ns, "legacy-errand", "observed", |s| {
        s.observed_generation.is_some()
    })
    .await;
    assert_eq!(status.run_count, 0, "{status:?}");
    let errand_now = c.qjobs().get("legacy-errand").await.unwrap();
    assert_eq!(errand_now.spec.trigger.strategy, Strategy::Manual);

    // The leftover succeeded Job is deleted with its pod.
    wait_for("the Go operator's succeeded Job to be deleted", || async {
        jobs.get_opt(&leftover).await.unwrap().is_none()
    })
    .await;
    let pods_gone = poll(DEADLINE * 2, || async {
        list_labelled::<Pod>(c, &ns, &leftover_pods)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(pods_gone.is_some(), "the leftover Job's pod is deleted too");
    assert!(jobs_in(c, &ns).await.is_empty(), "no run was started");

    // Existing QuarksJobs keep working: the errand runs when set to now...
    set_strategy(c, &ns, "legacy-errand", "now").await;
    // On a control plane of its own, started a moment ago, the namespace's `default`
    // ServiceAccount may still be missing: the Job controller then retries the pod with its
    // backoff (10 s, 20 s, ...), so this run gets more than the usual deadline.
    let completed = poll(DEADLINE * 3, || async {
        let s = qjob_status(c, &ns, "legacy-errand").await;
        (s.completed && s.run_count == 1 && s.last_run_finished_at.is_some()).then_some(())
    })
    .await;
    assert!(completed.is_some(), "the errand's first run completed");
    wait_for("the errand reset to manual and its Job deleted", || async {
        let q = c.qjobs().get("legacy-errand").await.unwrap();
        q.spec.trigger.strategy == Strategy::Manual && jobs_in(c, &ns).await.is_empty()
    })
    .await;
    assert_eq!(qjob_status(c, &ns, "legacy-once").await.run_count, 0);
    // ...and the one-off when its config changes, once.
    put_config_map(c, "legacy-config", "v2").await;
    wait_completed(c, &ns, "legacy-once", 1).await;
    assert_eq!(qjob_status(c, &ns, "legacy-errand").await.run_count, 1);

    // `kubectl get qjobs` shows our columns.
    let table = kubectl(&c.kubeconfig, &["-n", &ns, "get", "qjobs"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["STRATEGY", "COMPLETED", "LAST JOB", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    d.assert_none_refused().await;
    drop(d);
}

/// The operator refuses to act while the served CRD would prune its status (the Go operator's
/// CRD, `--apply-crd=false`): a log line and a failing `/readyz` say why, no QuarksJob is
/// touched; once our CRD is applied it goes on by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_refuses_to_act_on_a_crd_that_would_prune_its_status() {
    let own = OwnCluster::start().await;
    let c = own.cluster();
    let ns = c.namespace.clone();
    install_original_crd(c).await;
    c.create_qjob(&QJob::new("waits", "once").script("echo hello"))
        .await;

    let operator = OperatorProcess::spawn(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_quarks-job"))
            .args([
                "--kubeconfig",
                c.kubeconfig.to_str().unwrap(),
                "--monitored-id",
                &c.monitored_id,
                "--apply-crd=false",
                "--listen",
                "127.0.0.1:0",
            ])
            .env_remove("KUBECONFIG"),
    );
    let refused = "cannot hold what this operator writes";
    wait_for("the refusal in the log", || async {
        operator.log().contains(refused)
    })
    .await;
    let log = operator.log();
    assert!(log.contains("status.runCount"), "{log}");
    let (code, body) = operator.http_get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(refused) && body.contains("status.runCount"),
        "{body}"
    );
    assert_eq!(operator.http_get("/healthz").await.0, 200);
    // Nothing acted on: no Job, no status, the strategy as it was.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(jobs_in(c, &ns).await.is_empty());
    let q = c.qjobs().get("waits").await.unwrap();
    assert!(q.status.is_none(), "{:?}", q.status);
    assert_eq!(q.spec.trigger.strategy, Strategy::Once);

    // The fix the log line names: our CRD, applied server-side over the old one.
    let crd = std::process::Command::new(env!("CARGO_BIN_EXE_quarks-job"))
        .arg("crd")
        .output()
        .unwrap();
    let crd_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(crd_file.path(), &crd.stdout).unwrap();
    kubectl(
        &c.kubeconfig,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crd_file.path().to_str().unwrap(),
        ],
    );
    wait_completed(c, &ns, "waits", 1).await;
    assert_eq!(operator.http_get("/readyz").await.0, 200);
    assert!(
        operator
            .log()
            .contains("the served CRD can hold the operator's status now"),
        "{}",
        operator.log()
    );
    assert_our_crd_is_served(c).await;
}

/// Another handle on the test's own cluster, for `namespace` (the chart's installation takes
/// one).
fn own_cluster_handle(own: &OwnCluster, namespace: &str) -> Cluster {
    let c = own.cluster();
    Cluster {
        client: c.client.clone(),
        kubeconfig: c.kubeconfig.clone(),
        sim: None,
        namespace: namespace.to_owned(),
        monitored_id: c.monitored_id.clone(),
    }
}
