//! The operator's watches and caches, and which QuarksJobs each watched change concerns. The
//! QuarksJobs and the monitored Namespaces are watched cluster-wide; everything else per
//! monitored namespace, started when it becomes monitored and stopped when it no longer is
//! (nothing of other namespaces is cached, and the operator needs rights only there): its Jobs,
//! its ConfigMaps and Secrets (metadata only), its policy selection. A ConfigMap or Secret
//! change reconciles only the QuarksJobs that reference it ([`QuarksJobIndex`]); also the
//! namespaces whose policy became ready.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::reconcile::recorder::{Event, EventType, Recorder, Reporter};
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::OperatorConfig;
use super::index::QuarksJobIndex;
use super::namespaces::{Access, NamespaceAccess, monitored_selector};
use crate::crd::QuarksJob;
use crate::names::job::QJOB_NAME_LABEL;
use crate::reconcile::context::Context;
use crate::reconcile::observe::{CachedJob, JobOwners};
use crate::reconcile::references::ConfigKind;

/// The reflector caches the reconciles read, with the writers their watches fill and a token
/// per cache cancelled once it has listed everything (a store's `wait_until_ready` wakes only
/// one waiter, and the Controller is already waiting on the QuarksJob store).
///
/// The stores of Jobs and policy selections are filled by one watch per monitored namespace
/// (through [`NamespaceFeed`]): a namespace's objects enter when it becomes monitored and leave
/// when it stops being monitored. Both stores count as ready from the start; a namespace is acted
/// in only once its own watches have listed (see [`super::namespaces`]).
pub struct Caches {
    pub selections: Store<ConfigMap>,
    selections_writer: Shared<ConfigMap>,
    namespaces_synced: CancellationToken,
    pub jobs: Store<CachedJob>,
    jobs_writer: Shared<CachedJob>,
    /// The cached Jobs by their QuarksJob, kept with the store.
    pub job_owners: Arc<JobOwners>,
    /// Cancelled once every namespace monitored at start-up has listed its Jobs (or was found
    /// unbound).
    pub jobs_synced: CancellationToken,
    qjobs_synced: CancellationToken,
    /// QuarksJobs by what they reference.
    pub index: Arc<QuarksJobIndex>,
}

/// A store written by several watches.
type Shared<K> = Arc<Mutex<Writer<K>>>;

/// A store fed only through [`NamespaceFeed`]s, ready from the start.
fn shared_store<K>() -> (Store<K>, Shared<K>)
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    (store, Arc::new(Mutex::new(writer)))
}

impl Default for Caches {
    fn default() -> Self {
        let (selections, selections_writer) = shared_store();
        let (jobs, jobs_writer) = shared_store();
        Caches {
            selections,
            selections_writer,
            namespaces_synced: CancellationToken::new(),
            jobs,
            jobs_writer,
            job_owners: Arc::default(),
            jobs_synced: CancellationToken::new(),
            qjobs_synced: CancellationToken::new(),
            index: Arc::default(),
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

/// The QuarksJob controller: QuarksJobs watched cluster-wide, everything else per monitored
/// namespace ([`NamespaceWatches`]), each change mapped to the QuarksJobs it concerns.
pub fn controller(
    config: &OperatorConfig,
    client: &kube::Client,
    ctx: &Arc<Context>,
    access: &Arc<NamespaceAccess>,
    caches: Caches,
    woken_namespaces: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Controller<QuarksJob> {
    let (qjob_store, qjob_writer) = reflector::store::<QuarksJob>();
    let qjobs = qjob_watch(
        client,
        qjob_writer,
        &caches.qjobs_synced,
        &caches.index,
        ctx,
    );
    let (triggers, triggered) = tokio::sync::mpsc::unbounded_channel();
    let watches = NamespaceWatches {
        shared: Arc::new(NamespaceShared {
            client: client.clone(),
            ctx: ctx.clone(),
            access: access.clone(),
            index: caches.index.clone(),
            jobs: caches.jobs.clone(),
            jobs_writer: caches.jobs_writer,
            job_owners: caches.job_owners.clone(),
            selections: caches.selections.clone(),
            selections_writer: caches.selections_writer,
            triggers,
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: "quarks-job".into(),
                    instance: None,
                },
            ),
        }),
        monitored_id: config.monitored_id.clone(),
        operator_namespace: config.operator_namespace.clone(),
        namespaces_synced: caches.namespaces_synced,
        jobs_synced: caches.jobs_synced,
    };
    tokio::spawn(watches.run());
    let woken = woken_qjobs(caches.index.clone(), woken_namespaces);
    Controller::for_stream(qjobs, qjob_store)
        .with_config(ControllerConfig::default().concurrency(config.max_workers))
        .reconcile_on(receiver_stream(triggered))
        .reconcile_on(woken)
}

fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

/// The QuarksJobs, into their cache. It keeps what decisions need, not managedFields or
/// kubectl's last-applied copy of the whole object (together most of a cached QuarksJob's size).
/// The echoes of the operator's own writes update the cache but reconcile nothing (see
/// [`crate::reconcile::own_writes`]).
fn qjob_watch(
    client: &kube::Client,
    writer: Writer<QuarksJob>,
    synced: &CancellationToken,
    index: &Arc<QuarksJobIndex>,
    ctx: &Arc<Context>,
) -> impl Stream<Item = Result<QuarksJob, watcher::Error>> + Send + 'static {
    let api = Api::<QuarksJob>::all(client.clone());
    let index = index.clone();
    let ctx = ctx.clone();
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|qjob| {
            qjob.managed_fields_mut().clear();
            qjob.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(writer)
        .inspect_ok(move |event| index.observe(event))
        .inspect_ok(synced_on_init_done(synced))
        .try_filter(move |event| {
            let echo = matches!(event, watcher::Event::Apply(qjob)
                if ctx.caches.own_echoes.drop_echo(qjob));
            std::future::ready(!echo)
        })
        .applied_objects()
}

/// The QuarksJobs of each namespace whose policy module became ready.
fn woken_qjobs(
    index: Arc<QuarksJobIndex>,
    namespaces: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> impl Stream<Item = ObjectRef<QuarksJob>> + Send + 'static {
    receiver_stream(namespaces)
        .flat_map(move |namespace| futures::stream::iter(index.in_namespace(&namespace)))
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

/// What every namespace's watches share.
struct NamespaceShared {
    client: kube::Client,
    ctx: Arc<Context>,
    access: Arc<NamespaceAccess>,
    index: Arc<QuarksJobIndex>,
    jobs: Store<CachedJob>,
    jobs_writer: Shared<CachedJob>,
    job_owners: Arc<JobOwners>,
    selections: Store<ConfigMap>,
    selections_writer: Shared<ConfigMap>,
    /// QuarksJobs to reconcile, into the controller.
    triggers: tokio::sync::mpsc::UnboundedSender<ObjectRef<QuarksJob>>,
    /// Events on Namespaces (cluster-scoped: they go to `default`).
    recorder: Recorder,
}

impl NamespaceShared {
    fn trigger(&self, qjobs: impl IntoIterator<Item = ObjectRef<QuarksJob>>) {
        for qjob in qjobs {
            // Only fails once the controller is gone (shutting down).
            let _ = self.triggers.send(qjob);
        }
    }

    /// Reconciles the QuarksJobs that reference config `kind/name` of `namespace`, which
    /// changed, and opens their windows for more of the change ([`ConfigSettle`]).
    ///
    /// [`ConfigSettle`]: crate::reconcile::config_settle::ConfigSettle
    fn config_changed(&self, namespace: &str, kind: ConfigKind, name: &str) {
        let affected = self.index.referencing(namespace, kind, name);
        self.ctx.config_settle.changed(&affected);
        self.trigger(affected);
    }
}

/// Starts the watches of a namespace when it becomes monitored and stops them (dropping its
/// objects from the caches) when it no longer is.
struct NamespaceWatches {
    shared: Arc<NamespaceShared>,
    monitored_id: String,
    operator_namespace: String,
    namespaces_synced: CancellationToken,
    jobs_synced: CancellationToken,
}

/// A running namespace's watches.
struct Running {
    stop: CancellationToken,
    /// Cancelled once the namespace is bound (its watches listed) or found unbound.
    settled: CancellationToken,
}

impl NamespaceWatches {
    async fn run(self) {
        // The catalog (`catalog:` policies) in the operator's namespace, monitored or not.
        tokio::spawn(catalog_watch(
            self.shared.clone(),
            self.operator_namespace.clone(),
        ));
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut listing: Option<HashSet<String>> = None;
        let namespaces = watcher(
            Api::<Namespace>::all(self.shared.client.clone()),
            watcher::Config::default().labels(&monitored_selector(&self.monitored_id)),
        )
        .default_backoff();
        futures::pin_mut!(namespaces);
        while let Some(event) = namespaces.next().await {
            match event {
                Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(ns) | watcher::Event::Apply(ns)) => {
                    let name = ns.name_any();
                    if let Some(listing) = listing.as_mut() {
                        listing.insert(name.clone());
                    }
                    running
                        .entry(name.clone())
                        .or_insert_with(|| self.start(&ns, name));
                }
                Ok(watcher::Event::Delete(ns)) => self.stop(&mut running, &ns.name_any()),
                Ok(watcher::Event::InitDone) => {
                    let listed = listing.take().unwrap_or_default();
                    let gone: Vec<String> = running
                        .keys()
                        .filter(|n| !listed.contains(*n))
                        .cloned()
                        .collect();
                    for name in gone {
                        self.stop(&mut running, &name);
                    }
                    if !self.namespaces_synced.is_cancelled() {
                        let settled: Vec<CancellationToken> =
                            running.values().map(|r| r.settled.clone()).collect();
                        let jobs_synced = self.jobs_synced.clone();
                        tokio::spawn(async move {
                            for token in settled {
                                token.cancelled().await;
                            }
                            jobs_synced.cancel();
                        });
                        self.namespaces_synced.cancel();
                    }
                }
                Err(error) => warn!(%error, "watching the monitored namespaces"),
            }
        }
    }

    fn start(&self, ns: &Namespace, name: String) -> Running {
        info!(namespace = %name, "namespace monitored: starting its watches");
        let running = Running {
            stop: CancellationToken::new(),
            settled: CancellationToken::new(),
        };
        self.shared.access.set(&name, Some(Access::Pending));
        tokio::spawn(watch_namespace(
            self.shared.clone(),
            name,
            ns.object_ref(&()),
            running.stop.clone(),
            running.settled.clone(),
        ));
        running
    }

    fn stop(&self, running: &mut HashMap<String, Running>, name: &str) {
        if let Some(r) = running.remove(name) {
            info!(namespace = %name, "namespace no longer monitored: stopping its watches");
            r.stop.cancel();
            r.settled.cancel();
        }
    }
}

/// Retries of a namespace's watches: 0.5 s doubling to 5 s (a RoleBinding created for an
/// unbound namespace is noticed within seconds).
struct NamespaceBackoff(Duration);

impl Default for NamespaceBackoff {
    fn default() -> Self {
        NamespaceBackoff(Duration::from_millis(500))
    }
}

impl Iterator for NamespaceBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for NamespaceBackoff {
    fn reset(&mut self) {
        *self = NamespaceBackoff::default();
    }
}

/// One watch event of a namespace.
enum Change {
    Job(Box<watcher::Event<CachedJob>>),
    ConfigMap(watcher::Event<PartialObjectMeta<ConfigMap>>),
    Secret(watcher::Event<PartialObjectMeta<Secret>>),
    Selection(watcher::Event<ConfigMap>),
}

/// Which watch, for its sync flag and the refusal message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Jobs,
    ConfigMaps,
    Secrets,
    Selections,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Jobs,
        Source::ConfigMaps,
        Source::Secrets,
        Source::Selections,
    ];

    fn what(self) -> &'static str {
        match self {
            Source::Jobs => "list/watch jobs",
            Source::ConfigMaps | Source::Selections => "list/watch configmaps",
            Source::Secrets => "list/watch secrets",
        }
    }
}

type NamespaceStream =
    futures::stream::BoxStream<'static, (Source, Result<Change, watcher::Error>)>;

fn namespaced_watch<K>(
    client: &kube::Client,
    namespace: &str,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    watcher(Api::<K>::namespaced(client.clone(), namespace), config)
        .backoff(NamespaceBackoff::default())
}

/// The watches of one monitored namespace: its Jobs (into the Job cache), ConfigMaps and
/// Secrets (metadata only: which QuarksJobs they concern), and its policy selection (into the
/// selection cache). Runs until `stop`; then the namespace's objects leave the caches.
async fn watch_namespace(
    shared: Arc<NamespaceShared>,
    namespace: String,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    stop: CancellationToken,
    settled: CancellationToken,
) {
    let client = &shared.client;
    let streams: Vec<NamespaceStream> = vec![
        namespaced_watch::<CachedJob>(
            client,
            &namespace,
            watcher::Config::default()
                .labels(QJOB_NAME_LABEL)
                .any_semantic(),
        )
        .map(|r| (Source::Jobs, r.map(|e| Change::Job(Box::new(e)))))
        .boxed(),
        metadata_watch::<ConfigMap>(client, &namespace)
            .map(|r| (Source::ConfigMaps, r.map(Change::ConfigMap)))
            .boxed(),
        metadata_watch::<Secret>(client, &namespace)
            .map(|r| (Source::Secrets, r.map(Change::Secret)))
            .boxed(),
        namespaced_watch::<ConfigMap>(
            client,
            &namespace,
            watcher::Config::default().fields(&format!(
                "metadata.name={}",
                crate::policy::selection::SELECTION_CONFIG_MAP
            )),
        )
        .map(|r| (Source::Selections, r.map(Change::Selection)))
        .boxed(),
    ];
    let mut changes = futures::stream::select_all(streams);
    let owners = shared.job_owners.clone();
    let mut jobs = NamespaceFeed::new(shared.jobs_writer.clone(), shared.jobs.clone()).observed_by(
        Arc::new(move |event: &watcher::Event<CachedJob>| match event {
            watcher::Event::Apply(job) | watcher::Event::InitApply(job) => owners.applied(job),
            watcher::Event::Delete(job) => owners.deleted(job),
            watcher::Event::Init | watcher::Event::InitDone => {}
        }),
    );
    let mut selections =
        NamespaceFeed::new(shared.selections_writer.clone(), shared.selections.clone());
    let mut synced: HashSet<Source> = HashSet::new();
    loop {
        let (source, change) = tokio::select! {
            () = stop.cancelled() => break,
            next = changes.next() => match next {
                Some(next) => next,
                None => break,
            },
        };
        let change = match change {
            Ok(change) => change,
            Err(error) if forbidden(&error) => {
                synced.remove(&source);
                let message = shared.access.not_bound_message(&namespace, source.what());
                if shared
                    .access
                    .set(&namespace, Some(Access::Unbound(message.clone())))
                {
                    warn!(%namespace, %error, "{message}");
                    publish_not_bound(&shared, &reference, &message).await;
                    shared.trigger(shared.index.in_namespace(&namespace));
                }
                settled.cancel();
                continue;
            }
            Err(error) => {
                warn!(%namespace, ?source, %error, "watch failed; retrying");
                continue;
            }
        };
        let init_done = match &change {
            Change::Job(e) => matches!(**e, watcher::Event::InitDone),
            Change::ConfigMap(e) => matches!(e, watcher::Event::InitDone),
            Change::Secret(e) => matches!(e, watcher::Event::InitDone),
            Change::Selection(e) => matches!(e, watcher::Event::InitDone),
        };
        apply_change(&shared, &namespace, change, &mut jobs, &mut selections);
        if init_done {
            synced.insert(source);
            if Source::ALL.iter().all(|s| synced.contains(s))
                && shared.access.set(&namespace, Some(Access::Bound))
            {
                info!(%namespace, "namespace watched: acting in it");
                // Every QuarksJob there needs a look (it became monitored, or bound).
                shared.trigger(shared.index.in_namespace(&namespace));
                settled.cancel();
            }
        }
    }
    jobs.clear();
    selections.clear();
    shared.access.set(&namespace, None);
}

/// The catalog's ConfigMaps in the operator's namespace (metadata only): a changed module
/// there concerns every namespace that selected it.
async fn catalog_watch(shared: Arc<NamespaceShared>, namespace: String) {
    let changes = metadata_watch::<ConfigMap>(&shared.client, &namespace);
    futures::pin_mut!(changes);
    while let Some(change) = changes.next().await {
        match change {
            Ok(
                watcher::Event::Apply(cm)
                | watcher::Event::InitApply(cm)
                | watcher::Event::Delete(cm),
            ) => {
                for touched in shared.ctx.policies.resolver.module_touched(&cm) {
                    shared.trigger(shared.index.in_namespace(&touched));
                }
            }
            Ok(_) => {}
            Err(error) => debug!(%namespace, %error, "watching the policy catalog"),
        }
    }
}

/// The object of a touched-object event (applied, listed or deleted).
fn touched<K>(event: &watcher::Event<K>) -> Option<&K> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
            Some(o)
        }
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// Feeds the caches and reconciles the QuarksJobs a change concerns (looked up in the index).
fn apply_change(
    shared: &NamespaceShared,
    namespace: &str,
    change: Change,
    jobs: &mut NamespaceFeed<CachedJob>,
    selections: &mut NamespaceFeed<ConfigMap>,
) {
    match change {
        Change::Job(event) => {
            let mut event = *event;
            if let watcher::Event::Apply(j) | watcher::Event::InitApply(j) = &mut event {
                j.slim();
            }
            jobs.apply(&event);
            if let watcher::Event::Apply(job) = &event
                && shared.ctx.caches.job_echoes.drop_echo(job)
            {
                return;
            }
            if let Some(owner) = touched(&event).and_then(controlling_qjob) {
                shared.trigger([owner]);
            }
        }
        Change::ConfigMap(event) => {
            let Some(cm) = touched(&event) else { return };
            shared.ctx.metrics.config_events_total.inc();
            shared.config_changed(namespace, ConfigKind::ConfigMap, &cm.name_any());
            for touched in shared.ctx.policies.resolver.module_touched(cm) {
                shared.trigger(shared.index.in_namespace(&touched));
            }
        }
        Change::Secret(event) => {
            let Some(secret) = touched(&event) else {
                return;
            };
            shared.ctx.metrics.config_events_total.inc();
            match staging_owner(secret) {
                Some(owner) => shared.trigger([ObjectRef::new(&owner).within(namespace)]),
                None => shared.config_changed(namespace, ConfigKind::Secret, &secret.name_any()),
            }
        }
        Change::Selection(event) => {
            selections.apply(&event);
            if touched(&event).is_some() {
                shared.ctx.policies.resolver.evict_unused();
                shared.trigger(shared.index.in_namespace(namespace));
            }
        }
    }
}

/// The QuarksJob controlling a Job (its owner reference with `controller: true`).
fn controlling_qjob(job: &CachedJob) -> Option<ObjectRef<QuarksJob>> {
    let owner = job
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "QuarksJob")?;
    Some(ObjectRef::new(&owner.name).within(&job.namespace()?))
}

/// Whether a watch failed for lack of rights.
fn forbidden(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 403,
        watcher::Error::WatchError(status) => status.code == 403,
        _ => false,
    }
}

/// The Warning Event on an unbound Namespace.
async fn publish_not_bound(
    shared: &NamespaceShared,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    message: &str,
) {
    let event = Event {
        type_: EventType::Warning,
        reason: super::namespaces::NOT_BOUND.to_owned(),
        note: Some(message.to_owned()),
        action: "Watch".to_owned(),
        secondary: None,
    };
    if let Err(error) = shared.recorder.publish(&event, reference).await {
        warn!(namespace = ?reference.name, %error, "could not publish the NamespaceNotBound Event");
    }
}

/// One namespace's share of a store that several namespaces' watches fill: its events become
/// inserts and deletions of its own objects only (a re-list replaces only them), and
/// [`NamespaceFeed::clear`] removes them all.
struct NamespaceFeed<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    writer: Shared<K>,
    store: Store<K>,
    known: HashSet<ObjectRef<K>>,
    relisted: Option<HashSet<ObjectRef<K>>>,
    /// Told every event written to the store (an index kept beside it).
    observer: Option<FeedObserver<K>>,
}

type FeedObserver<K> = Arc<dyn Fn(&watcher::Event<K>) + Send + Sync>;

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> NamespaceFeed<K> {
    fn new(writer: Shared<K>, store: Store<K>) -> Self {
        NamespaceFeed {
            writer,
            store,
            known: HashSet::new(),
            relisted: None,
            observer: None,
        }
    }

    fn observed_by(mut self, observer: FeedObserver<K>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn write(&self, event: &watcher::Event<K>) {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply_watcher_event(event);
        if let Some(observer) = &self.observer {
            observer(event);
        }
    }

    fn delete(&mut self, gone: Vec<ObjectRef<K>>) {
        for reference in gone {
            self.known.remove(&reference);
            if let Some(object) = self.store.get(&reference) {
                self.write(&watcher::Event::Delete(object.as_ref().clone()));
            }
        }
    }

    fn apply(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                let reference = ObjectRef::from_obj(object);
                if let Some(relisted) = self.relisted.as_mut() {
                    relisted.insert(reference.clone());
                }
                self.known.insert(reference);
                self.write(&watcher::Event::Apply(object.clone()));
            }
            watcher::Event::Delete(object) => {
                self.known.remove(&ObjectRef::from_obj(object));
                self.write(event);
            }
            watcher::Event::Init => self.relisted = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let relisted = self.relisted.take().unwrap_or_default();
                let gone = self
                    .known
                    .iter()
                    .filter(|r| !relisted.contains(*r))
                    .cloned()
                    .collect();
                self.delete(gone);
            }
        }
    }

    fn clear(&mut self) {
        let all = self.known.iter().cloned().collect();
        self.delete(all);
    }
}

/// Every change of a kind in a namespace, as metadata only.
fn metadata_watch<K>(
    client: &kube::Client,
    namespace: &str,
) -> impl Stream<Item = Result<watcher::Event<PartialObjectMeta<K>>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    PartialObjectMeta<K>: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + serde::de::DeserializeOwned,
{
    watcher(
        Api::<PartialObjectMeta<K>>::namespaced(client.clone(), namespace),
        watcher::Config::default(),
    )
    .backoff(NamespaceBackoff::default())
}
