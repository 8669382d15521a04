//! Leader election when the API server stops answering one replica (issue 15): a leader whose
//! renew calls hang steps down (ends) before the other replica takes over, and the other one
//! then acts.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use tokio::process::Command;

use crate::{Cluster, DEADLINE, OperatorProcess, QJob, run_count, wait_completed};

/// Lease duration, renew deadline and retry period of the operator (leader::Timing's default).
const LEASE: Duration = Duration::from_secs(15);
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

/// An operator with leader election, talking to the API server as its own ServiceAccount
/// (so that faults can target one replica).
fn replica(c: &Cluster, kubeconfig: &std::path::Path) -> OperatorProcess {
    OperatorProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_quarks-job"))
            .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
            .args(["--monitored-id", &c.monitored_id])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "info,quarks_job=debug",
            ])
            .args(["--leader-election", "--operator-namespace", &c.namespace])
            .env_remove("KUBECONFIG"),
    )
}

/// When (on the test's clock) `check` first holds, polling every 20 ms, at most `within`.
async fn first_time(within: Duration, mut check: impl FnMut() -> bool) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubesim_only_a_leader_whose_renew_hangs_steps_down_before_the_other_replica_takes_over() {
    let c = Cluster::start().await;
    let accounts = c.api_in::<ServiceAccount>(&c.namespace);
    for name in ["replica-a", "replica-b"] {
        let account: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        accounts
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig_a = c
        .service_account_kubeconfig(dir.path(), &c.namespace, "replica-a")
        .await;
    let kubeconfig_b = c
        .service_account_kubeconfig(dir.path(), &c.namespace, "replica-b")
        .await;
    // The CRD first, by the test's admin identity (the replicas do not apply it); this
    // operator monitors no namespace.
    let _crd = c
        .operator_with(&format!("{}-crd", c.monitored_id), &[])
        .await;

    let mut a = replica(&c, &kubeconfig_a);
    first_time(DEADLINE, || a.log().contains("became leader"))
        .await
        .unwrap_or_else(|| panic!("a leads\n{}", a.log()));
    let b = replica(&c, &kubeconfig_b);
    first_time(DEADLINE, || b.log().contains("standing by"))
        .await
        .unwrap_or_else(|| panic!("b stands by\n{}", b.log()));
    c.create_qjob(&QJob::new("before", "once").script("true"))
        .await;
    wait_completed(&c, &c.namespace, "before", 1).await;

    // From now on the API server holds a's Lease calls for 10 minutes.
    let user_a = format!("system:serviceaccount:{}:replica-a", c.namespace);
    c.sim()
        .faults()
        .delay_requests_of(&user_a, "*", "leases", Duration::from_secs(600));
    let hung = Instant::now();
    let a_exit = tokio::time::timeout(LEASE + DEADLINE, a.child.wait())
        .await
        .unwrap_or_else(|_| panic!("a ends\n{}", a.log()))
        .unwrap();
    let a_ended = Instant::now();
    assert!(!a_exit.success(), "a ends with an error: {a_exit}");
    assert!(a.log().contains("stepping down"), "{}", a.log());
    let b_leads = first_time(LEASE + DEADLINE, || b.log().contains("became leader"))
        .await
        .unwrap_or_else(|| panic!("b takes over\n{}", b.log()));
    let stepped_down = a_ended - hung;
    let took_over = b_leads - hung;
    println!(
        "renew hung at 0 s; a ended after {:.1} s, b led after {:.1} s (lease {LEASE:?}, renew deadline {RENEW_DEADLINE:?})",
        stepped_down.as_secs_f64(),
        took_over.as_secs_f64()
    );
    assert!(
        stepped_down <= RENEW_DEADLINE + Duration::from_secs(3),
        "a stepped down within its renew deadline: {stepped_down:?}\n{}",
        a.log()
    );
    assert!(b_leads > a_ended, "b took over only after a ended");
    // a's last renew was at most a retry period before the hang; b waits a whole lease from
    // when it saw it.
    assert!(
        took_over + RETRY >= LEASE,
        "b waited for the lease to expire by its own clock: {took_over:?}"
    );

    c.create_qjob(&QJob::new("after", "once").script("true"))
        .await;
    wait_completed(&c, &c.namespace, "after", 1).await;
    assert_eq!(run_count(&c, &c.namespace, "before").await, 1);
    c.sim().faults().reset();
}
