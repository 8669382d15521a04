//! kubesim's Job controller: a `batch/v1` Job becomes Pods, and the Pods' fate becomes the
//! Job's status — an ordinary API client, like kube-controller-manager's job controller.
//!
//! [`plan_job`] is the pure core (what the status should be, how many pods to create,
//! which to delete, when to look again); [`run_job_controller`] watches Jobs and their Pods
//! and applies the plan. Behaviour follows Kubernetes 1.33:
//! * pods are named `<job>-<random>` (generateName), labelled `job-name`,
//!   `batch.kubernetes.io/job-name`, `controller-uid`, `batch.kubernetes.io/controller-uid`,
//!   and controlled by the Job (`blockOwnerDeletion`), so they go with it through GC;
//! * `completions`/`parallelism` (a work queue when only `parallelism` is set),
//!   `backoffLimit` (default 6; with `restartPolicy: OnFailure` container restarts count,
//!   as in `pastBackoffLimitOnFailure`), `activeDeadlineSeconds`, `suspend`;
//! * a failing Job first gets `FailureTarget`, its running pods are deleted, and `Failed`
//!   follows once none is left; a succeeding one gets `SuccessCriteriaMet`, then `Complete`
//!   with `completionTime`.
//!
//! Deliberate differences: the back-off before re-creating a failed pod is 100 ms doubling
//! up to 5 s (Kubernetes: 10 s up to 6 min) so tests stay fast; pods are counted by their
//! phase rather than through `batch.kubernetes.io/job-tracking` finalizers (a failed pod
//! deleted by hand is therefore not counted); `podFailurePolicy`, `successPolicy`, Indexed
//! completion mode and `ttlSecondsAfterFinished` are not implemented.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

/// Back-off before re-creating a pod after the n-th failure: `BASE * 2^(n-1)`, capped.
const POD_BACKOFF_BASE: Duration = Duration::from_millis(100);
const POD_BACKOFF_MAX: Duration = Duration::from_secs(5);
const DEFAULT_BACKOFF_LIMIT: i32 = 6;

pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const LABEL_LEGACY_JOB_NAME: &str = "job-name";
pub const LABEL_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const LABEL_LEGACY_CONTROLLER_UID: &str = "controller-uid";

#[derive(Debug, thiserror::Error)]
pub enum JobControllerError {
    #[error("Job has no {0}")]
    Incomplete(&'static str),
    #[error("encoding Job status: {0}")]
    Encode(serde_json::Error),
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

/// What the controller should do for one Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// The status to write (compared with the current one by the caller).
    pub status: JobStatus,
    /// Pods to create from the template.
    pub create: usize,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// Look again after this long (back-off, deadline), even without events.
    pub requeue_after: Option<Duration>,
}

fn condition_true(status: &JobStatus, type_: &str) -> Option<JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
        .cloned()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: &Time) -> JobCondition {
    JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// Sets a condition, keeping the existing entry (and its transition time) when unchanged.
fn set_condition(status: &mut JobStatus, new: JobCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) if existing.status == new.status => {}
        Some(existing) => *existing = new,
        None => conditions.push(new),
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// When a failed pod finished: its latest container finish time, else its start time.
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    let containers = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten());
    containers
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max()
        .or_else(|| status.start_time.as_ref().map(|t| t.0))
}

/// Container restarts of the Job's running/pending pods (`pastBackoffLimitOnFailure`).
fn restarts(pods: &[&Pod]) -> i32 {
    pods.iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .flat_map(|p| {
            let s = p.status.as_ref();
            let init = s
                .and_then(|s| s.init_container_statuses.clone())
                .unwrap_or_default();
            let main = s
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            init.into_iter().chain(main)
        })
        .map(|c| c.restart_count)
        .sum()
}

fn to_std(d: SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// The pure sync step of the Job controller. `pods` are the pods the Job controls.
pub fn plan_job(job: &Job, pods: &[Pod], now: Timestamp) -> JobPlan {
    let now_time = Time(now);
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let mut plan = JobPlan {
        status: status.clone(),
        create: 0,
        delete: Vec::new(),
        requeue_after: None,
    };
    if condition_true(&status, "Complete").is_some() || condition_true(&status, "Failed").is_some()
    {
        return plan;
    }

    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .count();
    let succeeded_pods = pods.iter().filter(|p| phase(p) == "Succeeded").count();
    let failed_pods: Vec<&Pod> = pods.iter().filter(|p| phase(p) == "Failed").collect();
    let succeeded = status
        .succeeded
        .unwrap_or(0)
        .max(i32::try_from(succeeded_pods).unwrap_or(i32::MAX));
    let failed = status
        .failed
        .unwrap_or(0)
        .max(i32::try_from(failed_pods.len()).unwrap_or(i32::MAX));
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    // Both unset: a single pod to completion (the API server's defaulting).
    let completions = match (spec.completions, spec.parallelism) {
        (None, None) => Some(1),
        (c, _) => c,
    };
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let suspended = spec.suspend == Some(true);
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");

    if status.start_time.is_none() && !suspended {
        status.start_time = Some(now_time.clone());
    }

    let failure_target = condition_true(&status, "FailureTarget");
    let success_target = condition_true(&status, "SuccessCriteriaMet");
    if failure_target.is_none() && success_target.is_none() {
        let restart_total = if on_failure { restarts(&active) } else { 0 };
        let past_backoff_on_failure = on_failure
            && if backoff_limit == 0 {
                restart_total > 0
            } else {
                restart_total >= backoff_limit
            };
        let past_deadline = match (spec.active_deadline_seconds, status.start_time.as_ref()) {
            (Some(secs), Some(start)) if !suspended => {
                now.duration_since(start.0) >= SignedDuration::from_secs(secs)
            }
            _ => false,
        };
        let complete = match completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
        if failed > backoff_limit || past_backoff_on_failure {
            set_condition(
                &mut status,
                condition(
                    "FailureTarget",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    &now_time,
                ),
            );
        } else if past_deadline {
            set_condition(
                &mut status,
                condition(
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    &now_time,
                ),
            );
        } else if complete {
            set_condition(
                &mut status,
                condition(
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    &now_time,
                ),
            );
        }
    }

    let finishing = condition_true(&status, "FailureTarget")
        .or_else(|| condition_true(&status, "SuccessCriteriaMet"));
    let mut active_names: Vec<String> = active
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if let Some(target) = finishing {
        // Stop what still runs; the final condition waits until nothing does.
        plan.delete = std::mem::take(&mut active_names);
        if active.is_empty() && terminating == 0 {
            let (type_, reason, message) = if target.type_ == "FailureTarget" {
                (
                    "Failed",
                    target.reason.unwrap_or_default(),
                    target.message.unwrap_or_default(),
                )
            } else {
                (
                    "Complete",
                    target.reason.unwrap_or_default(),
                    target.message.unwrap_or_default(),
                )
            };
            set_condition(
                &mut status,
                condition(type_, "True", &reason, &message, &now_time),
            );
            if type_ == "Complete" {
                status.completion_time = Some(now_time.clone());
            }
        }
    } else if suspended {
        plan.delete = std::mem::take(&mut active_names);
        set_condition(
            &mut status,
            condition(
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                &now_time,
            ),
        );
    } else {
        if condition_true(&status, "Suspended").is_some() {
            set_condition(
                &mut status,
                condition("Suspended", "False", "JobResumed", "Job resumed", &now_time),
            );
        }
        let remaining = match completions {
            Some(c) => (c - succeeded).max(0),
            None if succeeded > 0 => 0,
            None => parallelism,
        };
        let wanted = parallelism.min(remaining);
        let missing = usize::try_from(wanted)
            .unwrap_or(0)
            .saturating_sub(active.len());
        if missing > 0 && failed > 0 {
            let exp = u32::try_from(failed - 1).unwrap_or(0).min(16);
            let delay = POD_BACKOFF_BASE
                .saturating_mul(2u32.saturating_pow(exp))
                .min(POD_BACKOFF_MAX);
            let last_failure = failed_pods.iter().filter_map(|p| finished_at(p)).max();
            let waited = last_failure.map_or(delay, |t| to_std(now.duration_since(t)));
            if waited < delay {
                plan.requeue_after = Some(delay - waited);
            } else {
                plan.create = missing;
            }
        } else {
            plan.create = missing;
        }
        if let (Some(secs), Some(start)) =
            (spec.active_deadline_seconds, status.start_time.as_ref())
        {
            let left = to_std(SignedDuration::from_secs(secs) - now.duration_since(start.0));
            plan.requeue_after = Some(plan.requeue_after.map_or(left, |r| r.min(left)));
        }
    }

    let still_active =
        i32::try_from(active.len() - plan.delete.len().min(active.len()) + plan.create)
            .unwrap_or(i32::MAX);
    status.active = Some(still_active).filter(|a| *a > 0);
    let ready = active
        .iter()
        .filter(|p| {
            is_ready(p)
                && !plan
                    .delete
                    .iter()
                    .any(|d| Some(d) == p.metadata.name.as_ref())
        })
        .count();
    status.ready = Some(i32::try_from(ready).unwrap_or(i32::MAX));
    status.succeeded = Some(succeeded).filter(|s| *s > 0);
    status.failed = Some(failed).filter(|f| *f > 0);
    status.terminating = Some(i32::try_from(terminating + plan.delete.len()).unwrap_or(i32::MAX));
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    plan.status = status;
    plan
}

/// The Pod the Job creates (generateName `<job>-`).
pub fn pod_for_job(job: &Job) -> Result<Pod, JobControllerError> {
    let name = job
        .metadata
        .name
        .clone()
        .ok_or(JobControllerError::Incomplete("name"))?;
    let uid = job
        .metadata
        .uid
        .clone()
        .ok_or(JobControllerError::Incomplete("uid"))?;
    let spec = job
        .spec
        .clone()
        .ok_or(JobControllerError::Incomplete("spec"))?;
    let template = spec.template;
    let meta = template.metadata.unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    labels.insert(LABEL_LEGACY_CONTROLLER_UID.into(), uid.clone());
    labels.insert(LABEL_CONTROLLER_UID.into(), uid.clone());
    labels.insert(LABEL_LEGACY_JOB_NAME.into(), name.clone());
    labels.insert(LABEL_JOB_NAME.into(), name.clone());
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}

struct Ctx {
    client: Client,
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, JobControllerError> {
    let ns = job
        .namespace()
        .ok_or(JobControllerError::Incomplete("namespace"))?;
    let uid = job.uid().ok_or(JobControllerError::Incomplete("uid"))?;
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // Read from the API, not a cache: what we created a moment ago is always seen.
    let listed = pods
        .list(&ListParams::default().labels(&format!("{LABEL_CONTROLLER_UID}={uid}")))
        .await?;
    let owned: Vec<Pod> = listed
        .items
        .into_iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .collect();
    let plan = plan_job(&job, &owned, Timestamp::now());
    for name in &plan.delete {
        match pods.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if plan.create > 0 {
        let pod = pod_for_job(&job)?;
        for _ in 0..plan.create {
            pods.create(&PostParams::default(), &pod).await?;
        }
    }
    if job.status.as_ref() != Some(&plan.status) {
        let mut status = serde_json::to_value(&plan.status).map_err(JobControllerError::Encode)?;
        // Counters at zero are omitted, as Kubernetes does; a merge patch must null them
        // explicitly or the old values would stay.
        if let Some(map) = status.as_object_mut() {
            for key in ["active", "succeeded", "failed"] {
                map.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        let patch = serde_json::json!({ "status": status });
        jobs.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(match plan.requeue_after {
        Some(after) => Action::requeue(after.max(Duration::from_millis(10))),
        None => Action::await_change(),
    })
}

fn error_policy(job: Arc<Job>, error: &JobControllerError, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(job = %job.name_any(), namespace = ?job.namespace(), %error, "job sync failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

/// Runs the Job controller until `shutdown`.
pub async fn run_job_controller(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let jobs: Api<Job> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    Controller::new(jobs, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, Arc::new(Ctx { client }))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "job controller event");
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "ns", "uid": "job-uid"},
            "spec": spec, "status": status
        }))
        .expect("job")
    }

    fn template(restart: &str) -> serde_json::Value {
        json!({"metadata": {"labels": {"app": "x"}}, "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "busybox"}]}})
    }

    fn pod(name: &str, phase: &str, finished: Option<i64>, restarts: i32) -> Pod {
        let mut status = json!({"phase": phase, "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "",
            "ready": phase == "Running", "restartCount": restarts, "state": {}}]});
        if let Some(t) = finished {
            status["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 1, "finishedAt": Timestamp::from_second(t).expect("ts").to_string()}});
        }
        if phase == "Running" {
            status["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).expect("pod")
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("ts")
    }

    fn cond<'a>(plan: &'a JobPlan, type_: &str) -> Option<&'a JobCondition> {
        plan.status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
    }

    #[test]
    fn a_new_job_starts_one_pod() {
        let plan = plan_job(
            &job(json!({"template": template("Never")}), json!({})),
            &[],
            at(100),
        );
        assert_eq!(plan.create, 1);
        assert_eq!(plan.status.active, Some(1));
        assert_eq!(plan.status.start_time, Some(Time(at(100))));
    }

    #[test]
    fn success_goes_through_success_criteria_to_complete() {
        let j = job(
            json!({"template": template("Never")}),
            json!({"startTime": at(100).to_string()}),
        );
        let plan = plan_job(&j, &[pod("p1", "Succeeded", None, 0)], at(110));
        assert_eq!(plan.create, 0);
        assert_eq!(
            cond(&plan, "SuccessCriteriaMet").map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(
            cond(&plan, "Complete").map(|c| c.reason.as_deref()),
            Some(Some("CompletionsReached"))
        );
        assert_eq!(plan.status.completion_time, Some(Time(at(110))));
        assert_eq!(plan.status.succeeded, Some(1));
        assert_eq!(plan.status.active, None);
    }

    #[test]
    fn failures_back_off_then_exceed_the_limit() {
        let j = job(
            json!({"template": template("Never"), "backoffLimit": 1}),
            json!({"startTime": at(100).to_string()}),
        );
        // One failure, 50 ms ago: wait for the rest of the 100 ms back-off.
        let now = Timestamp::from_millisecond(110_050).expect("ts");
        let plan = plan_job(&j, &[pod("p1", "Failed", Some(110), 0)], now);
        assert_eq!(plan.create, 0);
        assert_eq!(plan.requeue_after, Some(Duration::from_millis(50)));
        // Later: replace it.
        let plan = plan_job(&j, &[pod("p1", "Failed", Some(110), 0)], at(111));
        assert_eq!(plan.create, 1);
        assert_eq!(plan.status.failed, Some(1));
        // Second failure > backoffLimit 1: Failed (no pod left running).
        let plan = plan_job(
            &j,
            &[
                pod("p1", "Failed", Some(110), 0),
                pod("p2", "Failed", Some(112), 0),
            ],
            at(113),
        );
        assert_eq!(plan.create, 0);
        let failed = cond(&plan, "Failed").expect("Failed condition");
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            cond(&plan, "FailureTarget").map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(plan.status.failed, Some(2));
    }

    #[test]
    fn on_failure_restarts_count_towards_the_limit() {
        let j = job(
            json!({"template": template("OnFailure"), "backoffLimit": 2}),
            json!({"startTime": at(100).to_string()}),
        );
        let plan = plan_job(&j, &[pod("p1", "Running", None, 1)], at(101));
        assert!(cond(&plan, "FailureTarget").is_none());
        let plan = plan_job(&j, &[pod("p1", "Running", None, 2)], at(102));
        assert_eq!(
            cond(&plan, "FailureTarget").and_then(|c| c.reason.as_deref()),
            Some("BackoffLimitExceeded")
        );
        assert_eq!(plan.delete, ["p1"]);
        assert!(
            cond(&plan, "Failed").is_none(),
            "Failed waits for the pod to go"
        );
        let after: Job = Job {
            status: Some(plan.status.clone()),
            ..j.clone()
        };
        let plan = plan_job(&after, &[], at(103));
        assert_eq!(
            cond(&plan, "Failed").and_then(|c| c.reason.as_deref()),
            Some("BackoffLimitExceeded")
        );
    }

    #[test]
    fn the_deadline_stops_the_job_and_is_scheduled() {
        let j = job(
            json!({"template": template("Never"), "activeDeadlineSeconds": 5}),
            json!({"startTime": at(100).to_string()}),
        );
        let plan = plan_job(&j, &[pod("p1", "Running", None, 0)], at(102));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(3)));
        let plan = plan_job(&j, &[pod("p1", "Running", None, 0)], at(105));
        assert_eq!(
            cond(&plan, "FailureTarget").and_then(|c| c.reason.as_deref()),
            Some("DeadlineExceeded")
        );
        assert_eq!(plan.delete, ["p1"]);
        assert_eq!(plan.status.terminating, Some(1));
    }

    #[test]
    fn parallel_completions_and_suspend() {
        let j = job(
            json!({"template": template("Never"), "completions": 3, "parallelism": 2}),
            json!({}),
        );
        let plan = plan_job(&j, &[pod("p1", "Succeeded", None, 0)], at(100));
        assert_eq!(plan.create, 2);
        let plan = plan_job(
            &j,
            &[
                pod("p1", "Succeeded", None, 0),
                pod("p2", "Succeeded", None, 0),
                pod("p3", "Running", None, 0),
            ],
            at(100),
        );
        assert_eq!(plan.create, 0);
        assert_eq!(plan.status.ready, Some(1));
        let s = job(
            json!({"template": template("Never"), "suspend": true}),
            json!({}),
        );
        let plan = plan_job(&s, &[pod("p1", "Running", None, 0)], at(100));
        assert_eq!(plan.delete, ["p1"]);
        assert_eq!(plan.create, 0);
        assert_eq!(
            cond(&plan, "Suspended").map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(plan.status.start_time, None);
    }

    #[test]
    fn pods_carry_job_labels_and_a_controller_reference() {
        let j = job(json!({"template": template("Never")}), json!({}));
        let p = pod_for_job(&j).expect("pod");
        let labels = p.metadata.labels.expect("labels");
        for (k, v) in [
            ("app", "x"),
            ("job-name", "j"),
            ("batch.kubernetes.io/job-name", "j"),
            ("controller-uid", "job-uid"),
            ("batch.kubernetes.io/controller-uid", "job-uid"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(p.metadata.generate_name.as_deref(), Some("j-"));
        let owner = &p.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("Job", Some(true), Some(true))
        );
    }
}
