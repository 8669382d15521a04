//! Policies from an OCI registry (issue 8): a real registry (Debian's `docker-registry`, the
//! CNCF distribution server) on loopback, components pushed with `quarks-job policy push`,
//! selected by digest or tag in namespaces on kubesim.

use quarks_job::policy::PolicyDigest;

use crate::registry::Registry;
use crate::{
    Cluster, QJob, jobs_in, policy_component, poll, qjob_status, ready_condition, select_policies,
    wait_for_reason, wait_status,
};

fn component_digest(name: &str) -> String {
    PolicyDigest::of(&std::fs::read(policy_component(name)).unwrap()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_come_from_a_registry_by_digest_or_tag_fail_closed_and_survive_a_restart_from_the_disk_cache()
 {
    let c = Cluster::start().await;
    let mut registry = Registry::start().await;
    let approval = registry.push(
        &policy_component("approval-trigger"),
        "policies/approval:v1",
    );
    let approval_digest = component_digest("approval-trigger");
    let manifest_digest = approval.rsplit_once('@').unwrap().1.to_owned();
    // 44 KiB, over the 40 KiB this operator accepts.
    let big = registry.push(&policy_component("loop-forever"), "policies/big:v1");
    let cache = tempfile::tempdir().unwrap();
    let registry_addr = registry.addr.clone();
    let operator_args = [
        "--policy-insecure-registry",
        &registry_addr,
        "--policy-cache-dir",
        cache.path().to_str().unwrap(),
        "--policy-max-module-kib",
        "40",
    ];
    let op = c.operator_with(&c.monitored_id, &operator_args).await;

    let ns = |suffix: &str| format!("{}-{suffix}", c.namespace);
    let cases = [
        ("digest", approval.clone(), "NotApproved"),
        (
            "tag",
            format!("oci://{}/policies/approval:v1", registry.addr),
            "NotApproved",
        ),
        (
            "wrong-digest",
            format!(
                "oci://{}/policies/approval@sha256:{}",
                registry.addr,
                "0".repeat(64)
            ),
            "PolicyModuleMissing",
        ),
        (
            "missing",
            format!("oci://{}/policies/nothing:v1", registry.addr),
            "PolicyModuleMissing",
        ),
        ("oversized", big, "PolicyModuleTooLarge"),
    ];
    for (suffix, reference, _) in &cases {
        c.create_namespace(&ns(suffix), Some(&c.monitored_id)).await;
        select_policies(&c, &ns(suffix), &[("trigger", reference)]).await;
        c.create_qjob_in(&ns(suffix), &QJob::new("deploy", "once").script("true"))
            .await;
    }
    c.create_qjob(&QJob::new("default-ns", "once").script("true"))
        .await;
    for (suffix, _, reason) in &cases {
        let message = wait_for_reason(&c, &ns(suffix), "deploy", reason).await;
        println!("{suffix}: {reason}: {message}");
    }
    let by_digest = qjob_status(&c, &ns("digest"), "deploy").await;
    let policies = by_digest.policies.unwrap();
    assert_eq!(policies.trigger.as_deref(), Some(approval_digest.as_str()));
    assert_eq!(policies.trigger_source.as_deref(), Some(approval.as_str()));
    let by_tag = qjob_status(&c, &ns("tag"), "deploy")
        .await
        .policies
        .unwrap();
    assert_eq!(
        by_tag.trigger_source,
        Some(format!(
            "oci://{}/policies/approval:v1@{manifest_digest}",
            registry.addr
        )),
        "the tag is recorded with the digest it resolved to"
    );
    // The namespace without a selection was never affected.
    wait_status(&c, &c.namespace, "default-ns", "its run", |s| {
        s.run_count == 1
    })
    .await;
    for (suffix, _, _) in &cases {
        let jobs = jobs_in(&c, &ns(suffix)).await;
        assert!(jobs.is_empty(), "{suffix}: failed closed, no Job");
    }

    // Registry down: an artifact never pulled cannot load; those already loaded keep working.
    registry.stop();
    c.create_namespace(&ns("down"), Some(&c.monitored_id)).await;
    let down = format!("oci://{}/policies/approval:v2", registry.addr);
    select_policies(&c, &ns("down"), &[("trigger", &down)]).await;
    c.create_qjob_in(&ns("down"), &QJob::new("deploy", "once").script("true"))
        .await;
    let message = wait_for_reason(&c, &ns("down"), "deploy", "PolicyUnavailable").await;
    println!("registry down: {message}");
    c.create_qjob_in(&ns("digest"), &QJob::new("second", "once").script("true"))
        .await;
    wait_for_reason(&c, &ns("digest"), "second", "NotApproved").await;

    // A restart with the registry still down: the pinned module comes from the disk cache.
    op.stop().await;
    let op = c.operator_with(&c.monitored_id, &operator_args).await;
    c.create_qjob_in(
        &ns("digest"),
        &QJob::new("after-restart", "once").script("true"),
    )
    .await;
    let decided = poll(crate::DEADLINE, || async {
        ready_condition(&c, &ns("digest"), "after-restart")
            .await
            .filter(|(reason, _)| reason == "NotApproved")
    })
    .await;
    assert!(
        decided.is_some(),
        "after the restart: {:?}\n{}",
        qjob_status(&c, &ns("digest"), "after-restart").await,
        op.log()
    );
    assert!(
        op.log()
            .contains("policy module loaded from the disk cache"),
        "{}",
        op.log()
    );
    assert!(
        !op.log().contains("policy module pulled"),
        "no pull after the restart"
    );
}
