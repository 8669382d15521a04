//! The operator: watches QuarksJobs (and the Jobs, ConfigMaps, Secrets and Namespaces that
//! concern them), asks the trigger policy, runs Jobs and records status.
//!
//! * pure core: [`naming`], [`references`], [`versioned`], [`digest`], [`job_builder`], [`plan`];
//! * API reads: [`observe`]; API effects on QuarksJobs and Jobs: [`reconcile`];
//! * per-namespace policies: [`policies`] (selection → compiled module), [`budget`] (CPU share);
//! * wiring: [`run`] (this file), [`context`], [`namespaces`], [`leader`], [`http`], [`metrics`],
//!   [`heap`].

pub mod heap;
pub mod http;
pub mod leader;
pub mod namespaces;
pub mod rest_client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::crd::QuarksJob;
use crate::metrics;
use crate::names::{job as naming, versioned};
use crate::policy::{Limits, PolicyEngine};
use crate::policy::{fairness as budget, resolver as policies};
use crate::reconcile::context::{Context, MonitoredNamespaces};
use crate::reconcile::references::{ConfigKind, referenced_config};
use crate::reconcile::{self, observe};
use namespaces::monitored_selector;

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
    pub limits: Limits,
    pub helper: crate::output::pod::HelperSpec,
    /// Policies from OCI registries.
    pub oci: policies::OciSettings,
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
    let client = client(&config, metrics.rest_client_requests_total.clone()).await?;
    if config.apply_crd {
        apply_crd(&client).await?;
    }
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());

    let ready = Arc::new(AtomicBool::new(false));
    let http = tokio::spawn(http::serve(
        config.listen,
        http::HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
        shutdown.clone(),
    ));

    let identity = format!("{}-{}", hostname(), std::process::id());
    let elector = config.leader_election.then(|| leader::LeaderElection {
        api: Api::namespaced(client.clone(), &config.operator_namespace),
        lease_name: format!("quarks-job-{}", config.monitored_id),
        identity: identity.clone(),
        lease_duration: Duration::from_secs(15),
    });
    if let Some(elector) = &elector {
        // A standby replica is healthy and ready; it just does not act.
        ready.store(true, Ordering::Relaxed);
        tokio::select! {
            acquired = elector.acquire() => acquired?,
            () = shutdown.cancelled() => return Ok(()),
        }
        ready.store(false, Ordering::Relaxed);
    }

    let engine = Arc::new(PolicyEngine::new(config.limits)?);
    let (selection_store, selection_writer) = reflector::store::<ConfigMap>();
    // A namespace whose policy module finished compiling: its QuarksJobs decide again.
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let policies = policies::PolicyResolver::new(
        client.clone(),
        engine,
        config.operator_namespace.clone(),
        selection_store,
        wake_tx,
        config.oci.clone(),
    )?;

    let (ns_store, ns_writer) = reflector::store::<Namespace>();
    let monitored = MonitoredNamespaces::new(ns_store);
    // Each cache says when it has listed everything (a store's `wait_until_ready` wakes only
    // one waiter, and the Controller is already waiting on the QuarksJob store).
    let (qjobs_synced, namespaces_synced, jobs_synced) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let (job_store, job_writer) = reflector::store::<Job>();
    let job_cache = observe::JobCache::new(job_store, jobs_synced.clone());
    let ctx = Arc::new(Context::new(
        client.clone(),
        policies,
        budget::CpuBudget::default(),
        config.helper.clone(),
        monitored.clone(),
        job_cache,
        metrics,
        identity,
    ));

    let qjobs: Api<QuarksJob> = Api::all(client.clone());
    // The cache of QuarksJobs keeps what decisions need, not managedFields or kubectl's
    // last-applied copy of the whole object (together most of a cached QuarksJob's size).
    let (qjob_store, qjob_writer) = reflector::store::<QuarksJob>();
    let qjob_stream = watcher(qjobs, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|qjob| {
            qjob.managed_fields_mut().clear();
            qjob.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(qjob_writer)
        .inspect_ok(synced_on_init_done(&qjobs_synced))
        .applied_objects();
    let controller = Controller::for_stream(qjob_stream, qjob_store.clone())
        .with_config(ControllerConfig::default().concurrency(config.max_workers));

    let namespaces = reflector::reflector(
        ns_writer,
        watcher(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default().labels(&monitored_selector(&config.monitored_id)),
        ),
    )
    .default_backoff()
    .inspect_ok(synced_on_init_done(&namespaces_synced))
    .touched_objects();
    // The operator's Jobs, cached for the reconciles (which read their annotations, owner and
    // status), and each change of one reconciles its QuarksJob.
    let jobs = watcher(
        Api::<Job>::all(client.clone()),
        watcher::Config::default()
            .labels(naming::QJOB_NAME_LABEL)
            .any_semantic(),
    )
    .default_backoff()
    .modify(observe::JobCache::slim)
    .reflect(job_writer)
    .inspect_ok(synced_on_init_done(&jobs_synced))
    .touched_objects();
    let in_namespace = {
        let store = qjob_store.clone();
        move |ns: Namespace| qjobs_in(&store, &ns.name_any())
    };
    let config_maps = watcher(
        Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let secrets = watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    let referencing_map = {
        let store = qjob_store.clone();
        let ctx = ctx.clone();
        move |cm: PartialObjectMeta<ConfigMap>| {
            let mut affected = referencing(&store, ConfigKind::ConfigMap, &cm);
            for namespace in ctx.policies.module_touched(&cm) {
                affected.extend(qjobs_in(&store, &namespace));
            }
            affected
        }
    };
    // The policy selections: full objects (small), cached for the resolver.
    let selections = reflector::reflector(
        selection_writer,
        watcher(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default().fields(&format!(
                "metadata.name={}",
                crate::policy::selection::SELECTION_CONFIG_MAP
            )),
        ),
    )
    .default_backoff()
    .touched_objects();
    let selection_changed = {
        let store = qjob_store.clone();
        let ctx = ctx.clone();
        move |selection: ConfigMap| {
            ctx.policies.evict_unused();
            qjobs_in(&store, &selection.namespace().unwrap_or_default())
        }
    };
    let woken = {
        let store = qjob_store.clone();
        futures::stream::unfold(wake_rx, |mut rx| async move {
            rx.recv().await.map(|namespace| (namespace, rx))
        })
        .flat_map(move |namespace| futures::stream::iter(qjobs_in(&store, &namespace)))
    };
    let referencing_secret = {
        let store = qjob_store.clone();
        move |s: PartialObjectMeta<Secret>| referencing(&store, ConfigKind::Secret, &s)
    };

    let controller = controller
        .owns_stream(jobs)
        .watches_stream(namespaces, in_namespace)
        .watches_stream(config_maps, referencing_map)
        .watches_stream(secrets, referencing_secret)
        .watches_stream(selections, selection_changed)
        .reconcile_on(woken)
        .graceful_shutdown_on({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        });

    // Ready once the caches the decisions depend on are synced.
    tokio::spawn({
        let ready = ready.clone();
        async move {
            qjobs_synced.cancelled().await;
            namespaces_synced.cancelled().await;
            jobs_synced.cancelled().await;
            ready.store(true, Ordering::Relaxed);
            info!("caches synced; ready");
        }
    });

    let run = controller
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        });
    match &elector {
        Some(elector) => {
            tokio::select! {
                () = run => {}
                () = elector.keep_renewing() => {
                    error!("leadership lost; exiting so that only the leader acts");
                    shutdown.cancel();
                    anyhow::bail!("leadership lost");
                }
            }
        }
        None => run.await,
    }
    shutdown.cancel();
    let _ = http.await;
    info!("stopped");
    Ok(())
}

/// For `inspect_ok` on a reflected watch: cancels `synced` when the initial list is in.
fn synced_on_init_done<K>(synced: &CancellationToken) -> impl FnMut(&watcher::Event<K>) + use<K> {
    let synced = synced.clone();
    move |event| {
        if matches!(event, watcher::Event::InitDone) {
            synced.cancel();
        }
    }
}

/// QuarksJobs in a namespace (a namespace became monitored: all of them need a look).
fn qjobs_in(store: &Store<QuarksJob>, namespace: &str) -> Vec<ObjectRef<QuarksJob>> {
    store
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(namespace))
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// QuarksJobs whose pod template references this ConfigMap/Secret — by name, or as another
/// version of the same versioned secret.
fn referencing<K: kube::Resource>(
    store: &Store<QuarksJob>,
    kind: ConfigKind,
    object: &K,
) -> Vec<ObjectRef<QuarksJob>> {
    let namespace = object.meta().namespace.as_deref();
    if kind == ConfigKind::Secret
        && let Some(owner) = staging_owner(object)
    {
        return store
            .state()
            .iter()
            .filter(|q| q.namespace().as_deref() == namespace && q.name_any() == owner)
            .map(|q| ObjectRef::from_obj(q.as_ref()))
            .collect();
    }
    let name = object.meta().name.as_deref().unwrap_or_default();
    let prefix = versioned::parse_versioned_name(name).map(|v| v.prefix);
    store
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == namespace)
        .filter(|q| {
            let Some(pod) = q
                .spec
                .template
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
            else {
                return false;
            };
            referenced_config(pod).iter().any(|r| {
                r.kind == kind
                    && (r.name == name
                        || (prefix.is_some()
                            && versioned::parse_versioned_name(&r.name).map(|v| v.prefix)
                                == prefix))
            })
        })
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// The QuarksJob a staging Secret of the output helper belongs to.
fn staging_owner<K: kube::Resource>(object: &K) -> Option<String> {
    let meta = object.meta();
    meta.labels
        .as_ref()?
        .get(crate::output::staging::STAGING_LABEL)?;
    let manifest = meta
        .annotations
        .as_ref()?
        .get(crate::output::staging::MANIFEST_ANNOTATION)?;
    let manifest: crate::output::staging::StagingManifest = serde_json::from_str(manifest).ok()?;
    Some(manifest.quarks_job)
}

async fn client(
    config: &OperatorConfig,
    requests: rest_client::RequestCounter,
) -> anyhow::Result<kube::Client> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(rest_client::counted_client(kube_config, requests)?)
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
    let established = kube::runtime::wait::await_condition(
        api,
        &name,
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(30), established).await??;
    info!(crd = %name, "CRD applied and established");
    Ok(())
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
