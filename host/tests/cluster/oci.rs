//! Policies from an OCI registry (issue 8): a real registry (Debian's `docker-registry`, the
//! CNCF distribution server) on loopback, components pushed with `quarks-job policy push`,
//! selected by digest or tag in namespaces on kubesim. And the operator's registry rules
//! (issue 15): registries off until allowed, loopback only with its own flag, a hostile
//! registry that cannot send the operator elsewhere or exhaust its memory.

use quarks_job::policy::PolicyDigest;

use crate::hostile_registry::HostileRegistry;
use crate::registry::Registry;
use crate::{
    Cluster, QJob, events_in, jobs_in, policy_component, poll, qjob_status, ready_condition,
    select_policies, wait_for_reason, wait_status,
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
    // The registry is on loopback: allowed by name, and private addresses allowed.
    let operator_args = [
        "--policy-allow-registry",
        &registry_addr,
        "--policy-allow-private-addresses",
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

/// The operator's resident memory, in KiB (`VmRSS` of /proc).
fn rss_kib(op: &crate::OperatorProcess) -> u64 {
    let pid = op.child.id().expect("the operator runs");
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Creates namespace `<test namespace>-<suffix>` for `monitored_id`, selecting `reference` as
/// its trigger policy, with one QuarksJob `deploy`.
async fn namespace_selecting(
    c: &Cluster,
    monitored_id: &str,
    suffix: &str,
    reference: &str,
) -> String {
    let ns = format!("{}-{suffix}", c.namespace);
    c.create_namespace(&ns, Some(monitored_id)).await;
    select_policies(c, &ns, &[("trigger", reference)]).await;
    c.create_qjob_in(&ns, &QJob::new("deploy", "once").script("true"))
        .await;
    ns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_references_are_refused_until_an_admin_allows_the_registry_and_loopback_needs_its_own_flag()
 {
    let c = Cluster::start().await;
    // Nothing listens there: a refusal never gets as far as a connection.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let loopback = format!("127.0.0.1:{port}");
    let localhost = format!("localhost:{port}");
    // Three operators, three monitored ids: no registry allowed; loopback allowed by name
    // but not private addresses; a name that resolves to loopback, allowed by name.
    let off = format!("{}-off", c.monitored_id);
    let no_private = format!("{}-noprivate", c.monitored_id);
    let by_name = format!("{}-byname", c.monitored_id);
    let _off = c
        .operator_with(&off, &["--policy-insecure-registry", &loopback])
        .await;
    let _no_private = c
        .operator_with(
            &no_private,
            &[
                "--policy-allow-registry",
                &loopback,
                "--policy-insecure-registry",
                &loopback,
            ],
        )
        .await;
    let _by_name = c
        .operator_with(
            &by_name,
            &[
                "--policy-allow-registry",
                &localhost,
                "--policy-insecure-registry",
                &localhost,
            ],
        )
        .await;
    let reference = format!("oci://{loopback}/policies/approval:v1");
    let cases = [
        (
            off.as_str(),
            "off",
            reference.clone(),
            "--policy-allow-registry",
        ),
        (
            no_private.as_str(),
            "literal",
            reference.clone(),
            "--policy-allow-private-addresses",
        ),
        (
            by_name.as_str(),
            "resolved",
            format!("oci://{localhost}/policies/approval:v1"),
            "--policy-allow-private-addresses",
        ),
    ];
    let mut namespaces = Vec::new();
    for (id, suffix, reference, _) in &cases {
        namespaces.push(namespace_selecting(&c, id, suffix, reference).await);
    }
    for ((_, suffix, _, flag), ns) in cases.iter().zip(&namespaces) {
        let message = wait_for_reason(&c, ns, "deploy", "PolicyRegistryRefused").await;
        println!("{suffix}: {message}");
        assert!(message.contains(flag), "{suffix}: names {flag}: {message}");
        assert!(jobs_in(&c, ns).await.is_empty(), "{suffix}: failed closed");
        // Events are published in the background, after the status write.
        crate::wait_for(
            &format!("{suffix}: a PolicyRegistryRefused Event"),
            || async {
                events_in(&c, ns)
                    .await
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("PolicyRegistryRefused"))
            },
        )
        .await;
    }
    let resolved = ready_condition(&c, &namespaces[2], "deploy")
        .await
        .unwrap()
        .1;
    assert!(
        resolved.contains("resolves only to") && resolved.contains("loopback"),
        "the resolved address was checked: {resolved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_registry_cannot_send_the_operator_elsewhere_flood_its_memory_or_its_status() {
    let c = Cluster::start().await;
    let hostile = HostileRegistry::start().await;
    let op = c
        .operator_with(
            &c.monitored_id,
            &[
                "--policy-allow-registry",
                &hostile.addr,
                "--policy-insecure-registry",
                &hostile.addr,
                "--policy-allow-private-addresses",
            ],
        )
        .await;
    // Let the operator settle (watches synced, built-ins compiled) before the baseline.
    crate::wait_for("the operator to be ready", || async {
        op.http_get("/readyz").await.0 == 200
    })
    .await;
    let rss_before = rss_kib(&op);
    let cases = [
        ("realm", "PolicyRegistryRefused", "token realm"),
        ("redirect", "PolicyRegistryRefused", "redirect"),
        ("huge", "PolicyRegistryRefused", "larger than 262144 bytes"),
        ("noisy", "PolicyUnavailable", "HTTP 500"),
    ];
    let mut namespaces = Vec::new();
    for (repository, _, _) in &cases {
        let reference = format!("oci://{}/{repository}:v1", hostile.addr);
        namespaces.push(namespace_selecting(&c, &c.monitored_id, repository, &reference).await);
    }
    let mut rss_peak = rss_before;
    for ((repository, reason, says), ns) in cases.iter().zip(&namespaces) {
        let message = wait_for_reason(&c, ns, "deploy", reason).await;
        rss_peak = rss_peak.max(rss_kib(&op));
        println!("{repository}: {reason}: {message}");
        assert!(message.contains(says), "{repository}: {message}");
        // Registry text is cut to 300 characters before it reaches status and Events.
        assert!(
            message.chars().count() < 500,
            "{repository}: a bounded message, not {} characters",
            message.chars().count()
        );
        // Events are published in the background, after the status write.
        let event = crate::wait_until(&format!("{repository}: a {reason} Event"), || async {
            events_in(&c, ns)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(*reason))
        })
        .await;
        assert!(event.note.as_deref().unwrap_or_default().chars().count() < 500);
        assert!(
            jobs_in(&c, ns).await.is_empty(),
            "{repository}: failed closed"
        );
    }
    let streamed = hostile.streamed.load(std::sync::atomic::Ordering::Relaxed);
    let rss_after = rss_kib(&op);
    println!(
        "RSS before {rss_before} KiB, peak seen {rss_peak} KiB, after {rss_after} KiB; the 4 GiB manifest: {streamed} bytes sent before the operator hung up"
    );
    assert_eq!(
        hostile
            .elsewhere_hits
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no request reached {} (the realm, the redirect)",
        hostile.elsewhere
    );
    assert!(
        streamed < 64 << 20,
        "the operator stopped reading the manifest early: {streamed} bytes"
    );
    assert!(
        rss_peak < rss_before + 64 * 1024,
        "RSS stays bounded: {rss_before} KiB -> {rss_peak} KiB"
    );
    // The log carries the bounded texts only.
    let log = op.log();
    assert!(
        !log.contains(&"error ".repeat(100)),
        "the 1 MiB error body is not in the log"
    );
}
