//! Create/get/update/delete semantics: resourceVersion, uid, generation, conflicts,
//! validation errors, generateName, namespaces, Secrets, dry runs.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use super::common::{Cluster, create, eventually, raw, rejected};

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()})).expect("cm")
}

fn job(name: &str, image: &str) -> Job {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image}]}}}})).expect("job")
}

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": image}]}})).expect("pod")
}

/// A raw request to `path` below this test's namespace, with a (content type, body).
async fn in_ns(c: &Cluster, method: &str, path: &str, body: Option<(&str, &str)>) -> (u16, Value) {
    let (content_type, body) = body.unzip();
    let path = format!("/api/v1/namespaces/{}/{path}", c.ns);
    raw(&c.client, method, &path, content_type, body).await
}

const JSON: &str = "application/json";

#[tokio::test]
async fn create_assigns_identity_and_versions() {
    let c = Cluster::start().await;
    let api: Api<ConfigMap> = c.api();
    let a = create(&api, &cm("a", &[("k", "v")])).await;
    let b = create(&api, &cm("b", &[])).await;
    let rv = |c: &ConfigMap| {
        c.metadata
            .resource_version
            .clone()
            .expect("rv")
            .parse::<u64>()
            .expect("numeric rv")
    };
    assert!(rv(&b) > rv(&a), "resourceVersion grows");
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    assert_ne!(a.metadata.uid, b.metadata.uid);
    let got = api.get("a").await.expect("get");
    assert_eq!(got.data, a.data);
    let err = rejected(api.create(&PostParams::default(), &cm("a", &[])), "exists").await;
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    let err = rejected(api.get("nope"), "missing").await;
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    c.stop().await;
}

#[tokio::test]
async fn stale_update_conflicts_and_noop_keeps_version() {
    let c = Cluster::start().await;
    let api: Api<ConfigMap> = c.api();
    let created = create(&api, &cm("c", &[("k", "1")])).await;
    let mut first = created.clone();
    first.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let updated = api
        .replace("c", &PostParams::default(), &first)
        .await
        .expect("update");
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("k".to_string(), "3".to_string())]));
    let err = rejected(api.replace("c", &PostParams::default(), &stale), "stale").await;
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
    // Writing the same content again is a no-op: same resourceVersion.
    let again = api
        .replace("c", &PostParams::default(), &updated)
        .await
        .expect("noop update");
    assert_eq!(
        again.metadata.resource_version,
        updated.metadata.resource_version
    );
    c.stop().await;
}

#[tokio::test]
async fn jobs_are_defaulted() {
    let c = Cluster::start().await;
    let api: Api<Job> = c.api();
    let j = create(&api, &job("g", "busybox")).await;
    assert_eq!(j.metadata.generation, Some(1));
    // Defaults like the real API server: selector, template labels, backoffLimit.
    assert_eq!(j.spec.as_ref().and_then(|s| s.backoff_limit), Some(6));
    let labels = j
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("template labels");
    assert_eq!(labels.get("job-name").map(String::as_str), Some("g"));
    assert!(j.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some());
    c.stop().await;
}

#[tokio::test]
async fn generation_follows_spec_not_metadata_or_status() {
    use k8s_openapi::api::batch::v1::CronJob;
    let c = Cluster::start().await;
    // A suspended CronJob: a real controller-manager leaves its status alone (a Job's it
    // rewrites at once), so these writes race with nobody.
    let api: Api<CronJob> = c.api();
    let cj: CronJob = serde_json::from_value(json!({"metadata": {"name": "g"}, "spec": {"schedule": "0 0 1 1 *", "suspend": true,
        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}))
    .expect("cronjob");
    let j = create(&api, &cj).await;
    assert_eq!(j.metadata.generation, Some(1));
    let mut m = j.clone();
    m.metadata.labels = Some(BTreeMap::from([("x".to_string(), "y".to_string())]));
    let m = api
        .replace("g", &PostParams::default(), &m)
        .await
        .expect("label update");
    assert_eq!(
        m.metadata.generation,
        Some(1),
        "metadata changes keep generation"
    );
    let scheduled = "2024-01-01T00:00:00Z";
    let mut s = m.clone();
    s.status =
        Some(serde_json::from_value(json!({"lastScheduleTime": scheduled})).expect("status"));
    let s = api
        .replace_status("g", &PostParams::default(), &s)
        .await
        .expect("status update");
    assert_eq!(
        s.metadata.generation,
        Some(1),
        "status changes keep generation"
    );
    let last_scheduled = |cj: &CronJob| {
        cj.status
            .as_ref()
            .and_then(|st| st.last_schedule_time.as_ref())
            .map(|t| t.0.to_string())
    };
    assert!(last_scheduled(&s).is_some());
    let mut p = s.clone();
    if let Some(spec) = p.spec.as_mut() {
        spec.successful_jobs_history_limit = Some(1);
    }
    p.status = None;
    let p = api
        .replace("g", &PostParams::default(), &p)
        .await
        .expect("spec update");
    assert_eq!(
        p.metadata.generation,
        Some(2),
        "spec change bumps generation"
    );
    assert_eq!(
        last_scheduled(&p),
        last_scheduled(&s),
        "status is ignored on the main resource"
    );
    c.stop().await;
}

#[tokio::test]
async fn names_are_validated_and_generated() {
    let c = Cluster::start().await;
    let api: Api<ConfigMap> = c.api();
    let err = rejected(
        api.create(&PostParams::default(), &cm("Bad_Name", &[])),
        "invalid",
    )
    .await;
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let causes = err
        .details
        .as_ref()
        .map(|d| d.causes.clone())
        .unwrap_or_default();
    assert_eq!(
        causes.first().map(|c| c.field.as_str()),
        Some("metadata.name")
    );
    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "pre-"}})).expect("cm");
    let made = create(&api, &generated).await;
    let name = made.metadata.name.expect("name");
    assert!(name.starts_with("pre-") && name.len() == 9, "{name}");
    let absent = c.name("absent");
    let err = rejected(
        Api::<ConfigMap>::namespaced(c.client.clone(), &absent)
            .create(&PostParams::default(), &cm("x", &[])),
        "no ns",
    )
    .await;
    assert_eq!(err.code, 404);
    assert!(
        err.message
            .contains(&format!("namespaces \"{absent}\" not found")),
        "{}",
        err.message
    );
    let bad_job = rejected(c.api::<Job>().create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}})).expect("job")), "restartPolicy").await;
    assert_eq!(bad_job.code, 422);
    assert!(
        bad_job.message.contains("spec.template.spec.restartPolicy"),
        "{}",
        bad_job.message
    );
    c.stop().await;
}

#[tokio::test]
async fn secrets_merge_string_data() {
    let c = Cluster::start().await;
    let api: Api<Secret> = c.api();
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "plain"}}),
    )
    .expect("secret");
    let made = create(&api, &s).await;
    let data = made.data.expect("data");
    assert_eq!(data.get("a").map(|b| b.0.clone()), Some(b"a".to_vec()));
    assert_eq!(data.get("b").map(|b| b.0.clone()), Some(b"plain".to_vec()));
    assert!(made.string_data.is_none(), "stringData is write-only");
    assert_eq!(made.type_.as_deref(), Some("Opaque"));
    c.stop().await;
}

#[tokio::test]
async fn errors_are_status_objects() {
    let c = Cluster::start().await;
    let (code, body) = in_ns(&c, "PATCH", "configmaps/x", Some(("application/xml", "{}"))).await;
    assert_eq!(
        (code, body["kind"].as_str(), body["reason"].as_str()),
        (415, Some("Status"), Some("UnsupportedMediaType"))
    );
    let (code, body) = in_ns(&c, "POST", "configmaps", Some((JSON, "{not json"))).await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    let (code, body) = in_ns(&c, "GET", "widgets", None).await;
    assert_eq!((code, body["kind"].as_str()), (404, Some("Status")));
    let (code, _) = in_ns(
        &c,
        "POST",
        "configmaps",
        Some((
            JSON,
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
        )),
    )
    .await;
    assert_eq!(code, 400, "kind mismatch");
    c.stop().await;
}

#[tokio::test]
async fn dry_run_stores_nothing_and_delete_returns_object() {
    let c = Cluster::start().await;
    let api: Api<ConfigMap> = c.api();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let d = api.create(&pp, &cm("dry", &[])).await.expect("dry create");
    assert_eq!(d.metadata.name.as_deref(), Some("dry"));
    assert_eq!(rejected(api.get("dry"), "not stored").await.code, 404);
    create(&api, &cm("del", &[])).await;
    let gone = api
        .delete("del", &DeleteParams::default())
        .await
        .expect("delete");
    // An object removed at once is answered with a Status naming it, not the object.
    let status = gone.right().expect("a Status");
    assert_eq!(
        status.details.map(|d| (d.name, d.kind)),
        Some(("del".to_string(), "configmaps".to_string()))
    );
    assert_eq!(
        rejected(api.delete("del", &DeleteParams::default()), "twice")
            .await
            .code,
        404
    );
    c.stop().await;
}

#[tokio::test]
async fn events_are_shared_between_core_and_events_api() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::ListParams;
    let c = Cluster::start().await;
    let new_api: Api<Event> = c.api();
    let e: Event = serde_json::from_value(json!({"metadata": {"name": "e1"}, "eventTime": "2024-01-01T00:00:00.000000Z",
        "regarding": {"kind": "ConfigMap", "name": "cfg", "namespace": c.ns}, "note": "hello", "reason": "Created", "type": "Normal",
        "action": "Create", "reportingController": "ctl", "reportingInstance": "ctl-1"})).expect("event");
    create(&new_api, &e).await;
    let core: Api<CoreEvent> = c.api();
    let listed = core
        .list(
            &ListParams::default().fields("involvedObject.name=cfg,involvedObject.kind=ConfigMap"),
        )
        .await
        .expect("core list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].message.as_deref(), Some("hello"));
    assert_eq!(listed.items[0].reporting_component.as_deref(), Some("ctl"));
    let back = new_api
        .list(&ListParams::default().fields("regarding.name=cfg"))
        .await
        .expect("new list");
    assert_eq!(back.items[0].note.as_deref(), Some("hello"));
    let p = json!({"note": "again"});
    let patched = new_api
        .patch(
            "e1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&p),
        )
        .await
        .expect("patch");
    assert_eq!(patched.note.as_deref(), Some("again"));
    assert_eq!(
        core.get("e1").await.expect("core get").message.as_deref(),
        Some("again")
    );
    c.stop().await;
}

#[tokio::test]
async fn deletecollection_and_delete_preconditions() {
    use kube::api::{ListParams, Preconditions};
    let c = Cluster::start().await;
    let api: Api<ConfigMap> = c.api();
    for (n, app) in [("x1", "x"), ("x2", "x"), ("y1", "y")] {
        let c: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": n, "labels": {"app": app}}}))
                .expect("cm");
        create(&api, &c).await;
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=x"),
    )
    .await
    .expect("deletecollection");
    // Only this test's objects: real namespaces also hold kube-root-ca.crt.
    let left: Vec<String> = api
        .list(&ListParams::default().labels("app"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["y1"]);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        rejected(api.delete("y1", &dp), "precondition").await.code,
        409
    );
    let err = rejected(
        api.replace("absent", &PostParams::default(), &cm("absent", &[])),
        "update of missing",
    )
    .await;
    assert_eq!(err.code, 404);
    c.stop().await;
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully() {
    let c = Cluster::start().await;
    let pods: Api<Pod> = c.api();
    for n in ["bound", "unbound"] {
        // For a scheduler nobody runs: on a shared cluster a `kubesim node` would bind it first.
        let mut unscheduled = pod(n, "i");
        unscheduled.spec.as_mut().unwrap().scheduler_name = Some(c.name("no-scheduler"));
        let made = create(&pods, &unscheduled).await;
        assert_eq!(
            made.status.and_then(|s| s.phase).as_deref(),
            Some("Pending")
        );
    }
    // A node nobody runs (a real cluster may have a `kubesim node` whose kubelet would
    // finish the graceful deletion at once).
    let node = c.name("no-kubelet");
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}}).to_string();
    for (expected, what) in [(201, "bound"), (409, "already bound")] {
        let (code, _) = in_ns(&c, "POST", "pods/bound/binding", Some((JSON, &binding))).await;
        assert_eq!(code, expected, "{what}");
    }
    assert_eq!(
        pods.get("bound")
            .await
            .expect("get")
            .spec
            .and_then(|s| s.node_name)
            .as_deref(),
        Some(node.as_str())
    );
    pods.delete("unbound", &DeleteParams::default())
        .await
        .expect("delete unbound");
    assert!(
        pods.get_opt("unbound").await.expect("get").is_none(),
        "unscheduled pods go at once"
    );
    pods.delete("bound", &DeleteParams::default())
        .await
        .expect("delete bound");
    let terminating = pods.get("bound").await.expect("still there");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("force");
    assert!(
        pods.get_opt("bound").await.expect("get").is_none(),
        "the kubelet's grace-0 delete removes it"
    );
    c.stop().await;
}

#[tokio::test]
async fn immutable_fields_are_rejected() {
    use kube::api::{Patch, PatchParams};
    let c = Cluster::start().await;
    let jobs: Api<Job> = c.api();
    create(&jobs, &job("im", "busybox")).await;
    let p =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "other"}]}}}});
    let err = rejected(
        jobs.patch("im", &PatchParams::default(), &Patch::Strategic(&p)),
        "template is immutable",
    )
    .await;
    assert_eq!(err.code, 422);
    assert!(err.message.contains("spec.template"), "{}", err.message);
    let p = json!({"spec": {"backoffLimit": 1}});
    jobs.patch("im", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .expect("backoffLimit may change");
    let pods: Api<Pod> = c.api();
    create(&pods, &pod("ip", "a")).await;
    let image = json!({"spec": {"containers": [{"name": "c", "image": "b"}]}});
    pods.patch("ip", &PatchParams::default(), &Patch::Strategic(&image))
        .await
        .expect("image may change");
    let cmd = json!({"spec": {"containers": [{"name": "c", "command": ["x"]}]}});
    assert_eq!(
        rejected(
            pods.patch("ip", &PatchParams::default(), &Patch::Strategic(&cmd)),
            "command may not"
        )
        .await
        .code,
        422
    );
    let secrets: Api<Secret> = c.api();
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "frozen"}, "immutable": true, "stringData": {"a": "1"}}),
    )
    .expect("secret");
    create(&secrets, &s).await;
    let change = json!({"stringData": {"a": "2"}});
    assert_eq!(
        rejected(
            secrets.patch("frozen", &PatchParams::default(), &Patch::Merge(&change)),
            "immutable secret"
        )
        .await
        .code,
        422
    );
    let label = json!({"metadata": {"labels": {"ok": "yes"}}});
    secrets
        .patch("frozen", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("metadata may change");
    c.stop().await;
}

#[tokio::test]
async fn new_namespaces_get_a_default_service_account() {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use kube::api::{Patch, PatchParams};
    let c = Cluster::start().await;
    let name = c.name("applied");
    c.delete_on_stop(&format!("/api/v1/namespaces/{name}"));
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    Api::<Namespace>::all(c.client.clone())
        .patch(&name, &PatchParams::apply("t"), &Patch::Apply(&ns))
        .await
        .expect("apply namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), &name);
    eventually("the default service account", || async {
        sas.get_opt("default").await.expect("get").is_some()
    })
    .await;
    c.stop().await;
}
