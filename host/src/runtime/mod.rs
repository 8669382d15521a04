//! The operator process: start-up ([`run`]: client, CRD, probes and metrics over [`http`],
//! signals, [`leader`] election), the watches feeding the controller (`watches`), the monitored
//! [`namespaces`], the API client's request counter ([`rest_client`]) and the allocator set-up
//! ([`heap`]). Each QuarksJob is reconciled by [`crate::reconcile`].

pub mod heap;
pub mod http;
mod index;
pub mod leader;
pub mod namespaces;
pub mod operator_key;
pub mod rest_client;
pub mod served_crd;
mod watches;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::metrics;
use crate::policy::calls::NamespacePolicies;
use crate::policy::fairness::CpuBudget;
use crate::policy::resolver::{OciSettings, PolicyResolver};
use crate::policy::{Limits, PolicyEngine};
use crate::reconcile::context::{Context, MonitoredNamespaces};
use crate::reconcile::{self, observe::JobCache};

/// How the operator runs (from the command line; see `cli`).
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub monitored_id: String,
    pub apply_crd: bool,
    pub max_workers: u16,
    pub listen: SocketAddr,
    pub leader_election: bool,
    pub operator_namespace: String,
    /// The ClusterRole a namespace's RoleBinding grants the operator, and the operator's
    /// ServiceAccount: what a `NamespaceNotBound` message tells to bind.
    pub namespace_cluster_role: String,
    pub service_account: String,
    /// The output helper's ClusterRole, bound in each namespace (`--persist-output-cluster-role`).
    pub persist_output_cluster_role: String,
    pub limits: Limits,
    /// How the output helper runs, its image pulled as --persist-output-image-pull-* say.
    pub helper: crate::output::pod::HelperSpec,
    /// Policies from OCI registries.
    pub oci: OciSettings,
    /// Versioned secrets without the operator's seal count as versions too.
    pub trust_unsealed_versions: bool,
}

/// Runs the operator until SIGINT/SIGTERM.
pub async fn run(config: OperatorConfig) -> anyhow::Result<()> {
    heap::limit_arenas();
    info!(
        "Starting quarks-job {}, monitoring namespaces labeled with '{}'",
        crate::VERSION,
        config.monitored_id
    );
    let metrics = Arc::new(metrics::Metrics::default());
    let (client, endpoint) = client(&config, metrics.rest_client_requests_total.clone()).await?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let http_state = http::HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        refused: Default::default(),
    };
    let http = tokio::spawn(http::serve(
        config.listen,
        http_state.clone(),
        shutdown.clone(),
    ));
    if config.apply_crd {
        apply_crd(&client).await?;
    }
    if !wait_for_usable_crd(&client, &http_state, &shutdown).await? {
        let _ = http.await;
        return Ok(());
    }

    let identity = format!("{}-{}", hostname(), std::process::id());
    let elector = config.leader_election.then(|| {
        leader::LeaderElection::new(
            Api::namespaced(client.clone(), &config.operator_namespace),
            format!("quarks-job-{}", config.monitored_id),
            identity.clone(),
            leader::Timing::default(),
        )
    });
    if let Some(elector) = &elector
        && !lead(elector, &ready, &shutdown).await?
    {
        return Ok(());
    }

    let handover = crate::output::handover::HandoverSetup {
        key: operator_key::load_or_create(&client, &config.operator_namespace).await?,
        endpoint,
    };
    let caches = watches::Caches::default();
    // A namespace whose policy module finished compiling: its QuarksJobs decide again.
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let resolver = PolicyResolver::new(
        client.clone(),
        Arc::new(PolicyEngine::new(config.limits)?),
        config.operator_namespace.clone(),
        caches.selections.clone(),
        wake_tx,
        config.oci.clone(),
    )?;
    let monitored = MonitoredNamespaces::default();
    let access = Arc::new(namespaces::NamespaceAccess::new(
        monitored.clone(),
        metrics.clone(),
        &config,
    ));
    let reconcile_caches = reconcile::context::Caches {
        monitored,
        jobs: JobCache::new(
            caches.jobs.clone(),
            caches.jobs_synced.clone(),
            caches.job_owners.clone(),
        ),
        own_writes: Default::default(),
        own_echoes: Default::default(),
        job_echoes: Default::default(),
    };
    let mut ctx = Context::new(
        client.clone(),
        NamespacePolicies::new(resolver, CpuBudget::default(), metrics.clone()),
        config.helper.clone(),
        handover,
        reconcile_caches,
        metrics,
        identity,
    );
    ctx.trust_unsealed_versions = config.trust_unsealed_versions;
    ctx.helper_identity =
        crate::output::write::HelperIdentity::new(config.persist_output_cluster_role.clone());
    let ctx = Arc::new(ctx);
    watches::report_ready_when_synced(&caches, ready);
    if shutdown.is_cancelled() {
        // Stopped during start-up: nothing runs yet, nothing to wait for.
        let _ = http.await;
        info!("stopped");
        return Ok(());
    }
    let controller = watches::controller(&config, &client, &ctx, &access, caches, wake_rx)
        .graceful_shutdown_on({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        })
        .run(
            move |qjob, ctx| namespaces::reconcile(qjob, ctx, access.clone()),
            reconcile::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        });
    let led = tokio::select! {
        led = run_while_leading(controller, elector.as_ref()) => led,
        // kube-runtime's graceful shutdown waits for running reconciles, and, when the stop
        // comes before the caches first synced, for a sync that no longer happens: the
        // process ends anyway a while after the request (Kubernetes would SIGKILL it later).
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running at the end of the shutdown grace; stopping anyway");
            Ok(())
        }
    };
    shutdown.cancel();
    let _ = http.await;
    info!("stopped");
    led
}

/// How long a shutdown waits for running reconciles (the chart's pods get 30 s to end).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Waits to lead (a standby replica is healthy and ready; it just does not act). `false` when
/// shut down first.
async fn lead(
    elector: &leader::LeaderElection,
    ready: &AtomicBool,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    ready.store(true, Ordering::Relaxed);
    tokio::select! {
        acquired = elector.acquire() => acquired?,
        () = shutdown.cancelled() => return Ok(false),
    }
    ready.store(false, Ordering::Relaxed);
    Ok(true)
}

/// Runs the controller, with leader election as long as the lease is renewed.
async fn run_while_leading(
    controller: impl std::future::Future<Output = ()>,
    elector: Option<&leader::LeaderElection>,
) -> anyhow::Result<()> {
    let Some(elector) = elector else {
        controller.await;
        return Ok(());
    };
    tokio::select! {
        () = controller => Ok(()),
        () = elector.keep_renewing() => {
            error!("leadership lost; exiting before another replica can take over, so that only the leader acts");
            anyhow::bail!("leadership lost")
        }
    }
}

/// The operator's client, and the API server's address as the output helpers should use it.
async fn client(
    config: &OperatorConfig,
    requests: crate::metrics::RequestCounter,
) -> anyhow::Result<(kube::Client, crate::output::handover::ApiEndpoint)> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let endpoint = crate::output::handover::ApiEndpoint::of(&kube_config);
    Ok((
        rest_client::counted_client(kube_config, requests)?,
        endpoint,
    ))
}

/// Creates or updates the CRD (server-side apply) and waits until it is served.
async fn apply_crd(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crate::crd::crd();
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply(crate::names::FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await?;
    // Polled by name (`get`, the one read the served-CRD check needs anyway), not watched: no
    // list/watch grant on CRDs.
    let established = async {
        loop {
            let crd = api.get(&name).await?;
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                return Ok::<_, kube::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), established).await??;
    info!(crd = %name, "CRD applied and established");
    Ok(())
}

/// How often a served CRD that cannot hold the operator's status is read again.
const CRD_RECHECK: Duration = Duration::from_secs(5);

/// Reads the served QuarksJob CRD until it can hold everything the operator writes
/// ([`served_crd::problems`]); meanwhile the operator does nothing, says why in its log and in
/// `/readyz` (failing). `false` when shut down first.
///
/// A CRD that cannot be read for lack of permission (RBAC without the chart's `get` rule) is
/// not checked: a warning says so and the operator goes on.
async fn wait_for_usable_crd(
    client: &kube::Client,
    http: &http::HttpState,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ours = crate::crd::crd();
    let name = ours.name_any();
    let mut reported = String::new();
    loop {
        let why = match api.get_opt(&name).await {
            Ok(Some(served)) => {
                let problems = served_crd::problems(&ours, &served);
                if problems.is_empty() {
                    break;
                }
                format!(
                    "the served CRD {name} cannot hold what this operator writes: {}; refusing to act until it is replaced by this operator's CRD (`quarks-job crd | kubectl apply --server-side --force-conflicts -f -`, or run with --apply-crd)",
                    problems.join("; ")
                )
            }
            Ok(None) => format!(
                "CRD {name} is not installed; waiting for it (install the chart's crds/, or run with --apply-crd)"
            ),
            Err(kube::Error::Api(e)) if e.code == 403 => {
                tracing::warn!(crd = %name, error = %e.message, "cannot read the served CRD: not checked whether it can hold the operator's status");
                break;
            }
            Err(e) => format!("cannot read CRD {name}: {e}"),
        };
        if why != reported {
            error!("{why}");
            reported = why.clone();
        }
        http.refuse(Some(why));
        tokio::select! {
            () = tokio::time::sleep(CRD_RECHECK) => {}
            () = shutdown.cancelled() => return Ok(false),
        }
    }
    if !reported.is_empty() {
        info!(crd = %name, "the served CRD can hold the operator's status now");
    }
    http.refuse(None);
    Ok(true)
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            () = term => {}
        }
        info!("shutdown requested");
        shutdown.cancel();
    });
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .or_else(|_| std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_owned()))
        .unwrap_or_else(|_| "quarks-job".to_owned())
}
