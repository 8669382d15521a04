//! The operator's watches and caches, and which QuarksJobs each watched change concerns: the
//! QuarksJobs themselves, their Jobs, the monitored Namespaces, referenced ConfigMaps and
//! Secrets (metadata only), the policy selections, and namespaces whose policy became ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::OperatorConfig;
use super::namespaces::monitored_selector;
use crate::crd::QuarksJob;
use crate::names::{job::QJOB_NAME_LABEL, versioned};
use crate::reconcile::context::Context;
use crate::reconcile::observe::JobCache;
use crate::reconcile::references::{ConfigKind, referenced_config};

/// The reflector caches the reconciles read, with the writers their watches fill and a token
/// per cache cancelled once it has listed everything (a store's `wait_until_ready` wakes only
/// one waiter, and the Controller is already waiting on the QuarksJob store).
pub struct Caches {
    pub selections: Store<ConfigMap>,
    selections_writer: Writer<ConfigMap>,
    pub namespaces: Store<Namespace>,
    namespaces_writer: Writer<Namespace>,
    namespaces_synced: CancellationToken,
    pub jobs: Store<Job>,
    jobs_writer: Writer<Job>,
    pub jobs_synced: CancellationToken,
    qjobs_synced: CancellationToken,
}

impl Default for Caches {
    fn default() -> Self {
        let (selections, selections_writer) = reflector::store();
        let (namespaces, namespaces_writer) = reflector::store();
        let (jobs, jobs_writer) = reflector::store();
        Caches {
            selections,
            selections_writer,
            namespaces,
            namespaces_writer,
            namespaces_synced: CancellationToken::new(),
            jobs,
            jobs_writer,
            jobs_synced: CancellationToken::new(),
            qjobs_synced: CancellationToken::new(),
        }
    }
}

/// Ready once the caches the decisions depend on are synced.
pub fn report_ready_when_synced(caches: &Caches, ready: Arc<AtomicBool>) {
    let synced = [
        caches.qjobs_synced.clone(),
        caches.namespaces_synced.clone(),
        caches.jobs_synced.clone(),
    ];
    tokio::spawn(async move {
        for token in synced {
            token.cancelled().await;
        }
        ready.store(true, Ordering::Relaxed);
        info!("caches synced; ready");
    });
}

/// The QuarksJob controller, fed by every watch that concerns a QuarksJob.
pub fn controller(
    config: &OperatorConfig,
    client: &kube::Client,
    ctx: &Arc<Context>,
    caches: Caches,
    woken_namespaces: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Controller<QuarksJob> {
    let (qjob_store, qjob_writer) = reflector::store::<QuarksJob>();
    let qjobs = qjob_watch(client, qjob_writer, &caches.qjobs_synced);
    let namespaces = reflector::reflector(
        caches.namespaces_writer,
        watcher(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default().labels(&monitored_selector(&config.monitored_id)),
        ),
    )
    .default_backoff()
    .inspect_ok(synced_on_init_done(&caches.namespaces_synced))
    .touched_objects();
    // The operator's Jobs, cached for the reconciles (which read their annotations, owner and
    // status), and each change of one reconciles its QuarksJob.
    let jobs = watcher(
        Api::<Job>::all(client.clone()),
        watcher::Config::default()
            .labels(QJOB_NAME_LABEL)
            .any_semantic(),
    )
    .default_backoff()
    .modify(JobCache::slim)
    .reflect(caches.jobs_writer)
    .inspect_ok(synced_on_init_done(&caches.jobs_synced))
    .touched_objects();
    // The policy selections: full objects (small), cached for the resolver.
    let selections = reflector::reflector(
        caches.selections_writer,
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

    let store = qjob_store.clone();
    let in_namespace = move |ns: Namespace| qjobs_in(&store, &ns.name_any());
    let (store, policy_ctx) = (qjob_store.clone(), ctx.clone());
    let referencing_map = move |cm: PartialObjectMeta<ConfigMap>| {
        let mut affected = referencing(&store, ConfigKind::ConfigMap, &cm);
        for namespace in policy_ctx.policies.resolver.module_touched(&cm) {
            affected.extend(qjobs_in(&store, &namespace));
        }
        affected
    };
    let store = qjob_store.clone();
    let referencing_secret =
        move |s: PartialObjectMeta<Secret>| referencing(&store, ConfigKind::Secret, &s);
    let (store, policy_ctx) = (qjob_store.clone(), ctx.clone());
    let selection_changed = move |selection: ConfigMap| {
        policy_ctx.policies.resolver.evict_unused();
        qjobs_in(&store, &selection.namespace().unwrap_or_default())
    };
    let woken = woken_qjobs(qjob_store.clone(), woken_namespaces);

    Controller::for_stream(qjobs, qjob_store)
        .with_config(ControllerConfig::default().concurrency(config.max_workers))
        .owns_stream(jobs)
        .watches_stream(namespaces, in_namespace)
        .watches_stream(metadata_watch::<ConfigMap>(client), referencing_map)
        .watches_stream(metadata_watch::<Secret>(client), referencing_secret)
        .watches_stream(selections, selection_changed)
        .reconcile_on(woken)
}

/// The QuarksJobs, into their cache. It keeps what decisions need, not managedFields or
/// kubectl's last-applied copy of the whole object (together most of a cached QuarksJob's size).
fn qjob_watch(
    client: &kube::Client,
    writer: Writer<QuarksJob>,
    synced: &CancellationToken,
) -> impl Stream<Item = Result<QuarksJob, watcher::Error>> + Send + 'static {
    let api = Api::<QuarksJob>::all(client.clone());
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|qjob| {
            qjob.managed_fields_mut().clear();
            qjob.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(writer)
        .inspect_ok(synced_on_init_done(synced))
        .applied_objects()
}

/// Every change of a kind, as metadata only (all namespaces).
fn metadata_watch<K>(
    client: &kube::Client,
) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    PartialObjectMeta<K>: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    watcher(
        Api::<PartialObjectMeta<K>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects()
}

/// The QuarksJobs of each namespace whose policy module became ready.
fn woken_qjobs(
    store: Store<QuarksJob>,
    namespaces: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> impl Stream<Item = ObjectRef<QuarksJob>> + Send + 'static {
    futures::stream::unfold(namespaces, |mut rx| async move {
        rx.recv().await.map(|namespace| (namespace, rx))
    })
    .flat_map(move |namespace| futures::stream::iter(qjobs_in(&store, &namespace)))
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
