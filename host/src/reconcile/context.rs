//! What every reconcile shares: the API client, the namespaces' policies, the output helper's
//! set-up, the caches it reads instead of the API, metrics, the Event publisher and per-object
//! backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::recorder::{Event, Recorder, Reporter};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::config_settle::ConfigSettle;
use super::events::QuarksJobEvent;
use super::observe::JobCache;
use super::own_writes::{OwnEchoes, OwnWrites};
use crate::crd::QuarksJob;
use crate::metrics::Metrics;
use crate::output::handover::HandoverSetup;
use crate::output::pod::HelperSpec;
use crate::output::write::{HelperIdentity, RejectedHandOvers, VersionTrust};
use crate::policy::PolicyError;
use crate::policy::calls::NamespacePolicies;
use crate::policy::contract::{OutputInput, OutputResult};
use crate::policy::resolver::Resolved;

pub struct Context {
    pub client: kube::Client,
    /// Every namespace's policies, called under its fair share.
    pub policies: NamespacePolicies,
    /// How the output helper runs in pods with output, and its identity in each namespace.
    pub helper: HelperSpec,
    pub helper_identity: HelperIdentity,
    /// The operator key and the API server's address, for the runs' hand-over Secrets.
    pub handover: HandoverSetup,
    pub rejected_hand_overs: RejectedHandOvers,
    /// Count unsealed versioned secrets (other writers') as versions (`--trust-unsealed-versions`).
    pub trust_unsealed_versions: bool,
    pub caches: Caches,
    /// Config changes gathering before they are decided on.
    pub config_settle: ConfigSettle,
    pub metrics: Arc<Metrics>,
    /// Events to publish, in the background: a reconcile does not wait for them.
    events: tokio::sync::mpsc::UnboundedSender<(Event, ObjectReference)>,
    pub backoff: Backoff,
}

/// What the reconciles read instead of asking the API.
pub struct Caches {
    pub monitored: MonitoredNamespaces,
    /// The operator's Jobs.
    pub jobs: JobCache,
    /// What the operator last wrote to each QuarksJob.
    pub own_writes: OwnWrites,
    /// The watch events of those writes still to come.
    pub own_echoes: OwnEchoes,
    /// The same for the Jobs the operator created.
    pub job_echoes: OwnEchoes,
}

impl Context {
    /// `instance` names this operator process in the Events it publishes.
    pub fn new(
        client: kube::Client,
        policies: NamespacePolicies,
        helper: HelperSpec,
        handover: HandoverSetup,
        caches: Caches,
        metrics: Arc<Metrics>,
        instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: "quarks-job".into(),
            instance: Some(instance),
        };
        Context {
            events: spawn_event_publisher(Recorder::new(client.clone(), reporter)),
            client,
            policies,
            helper,
            helper_identity: HelperIdentity::default(),
            handover,
            rejected_hand_overs: RejectedHandOvers::default(),
            trust_unsealed_versions: false,
            caches,
            config_settle: ConfigSettle::default(),
            metrics,
            backoff: Backoff::default(),
        }
    }

    /// Which Secrets count as versions of versioned secrets.
    pub fn version_trust(&self) -> VersionTrust<'_> {
        VersionTrust {
            key: &self.handover.key,
            unsealed: self.trust_unsealed_versions,
        }
    }

    /// Publishes an Event on the QuarksJob, in the background. Failing to publish is logged,
    /// never fatal.
    pub fn publish(&self, qjob: &QuarksJob, event: &QuarksJobEvent) {
        let reason = event.reason().to_owned();
        let published = Event {
            type_: event.type_(),
            reason: reason.clone(),
            note: Some(event.note()),
            action: event.action().to_owned(),
            secondary: event.related(&qjob.namespace().unwrap_or_default()),
        };
        let mut reference = qjob.object_ref(&());
        reference.field_path = event.field_path();
        if self.events.send((published, reference)).is_err() {
            warn!(name = %qjob.name_any(), reason, "could not publish Event: publisher stopped");
        }
    }
}

/// How many Events are published at once.
const EVENTS_IN_FLIGHT: usize = 4;

/// Publishes queued Events, a few at a time, until every sender is gone.
fn spawn_event_publisher(
    recorder: Recorder,
) -> tokio::sync::mpsc::UnboundedSender<(Event, ObjectReference)> {
    let recorder = Arc::new(recorder);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Event, ObjectReference)>();
    let queued = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    tokio::spawn(
        queued
            .map(move |(event, reference)| {
                let recorder = recorder.clone();
                async move {
                    if let Err(error) = recorder.publish(&event, &reference).await {
                        warn!(name = ?reference.name, %error, reason = %event.reason, "could not publish Event");
                    }
                }
            })
            .buffer_unordered(EVENTS_IN_FLIGHT)
            .for_each(|()| async {}),
    );
    tx
}

/// Per-object exponential backoff for failed reconciles: 500 ms doubling up to 60 s.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<ObjectRef<QuarksJob>, u32>>,
}

impl Backoff {
    pub fn next(&self, qjob: &QuarksJob) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(ObjectRef::from_obj(qjob)).or_insert(0);
        *count = count.saturating_add(1);
        let millis = 500u64.saturating_mul(1u64 << (*count - 1).min(7));
        Duration::from_millis(millis.min(60_000))
    }

    pub fn reset(&self, qjob: &QuarksJob) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&ObjectRef::from_obj(qjob));
    }
}

/// The output policy a namespace selected, bound for one reconcile's output writes.
pub struct NamespaceOutputPolicy<'a> {
    pub ctx: &'a Context,
    pub namespace: &'a str,
    pub policy: Resolved,
}

impl crate::output::write::OutputPolicyRunner for NamespaceOutputPolicy<'_> {
    async fn transform(&self, input: OutputInput) -> Result<OutputResult, PolicyError> {
        self.ctx
            .policies
            .transform(self.namespace, &self.policy, input)
            .await
    }
}

/// The namespaces the operator acts in: monitored (labelled for its id), with rights there
/// and their watches synced. Kept by the runtime's per-namespace watches; a namespace labelled
/// later joins once its caches are filled.
#[derive(Clone, Default)]
pub struct MonitoredNamespaces {
    acting: Arc<std::sync::RwLock<std::collections::HashSet<String>>>,
}

impl MonitoredNamespaces {
    pub fn contains(&self, namespace: &str) -> bool {
        self.acting
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(namespace)
    }

    /// `namespace` is acted in (`true`) or not (`false`).
    pub fn set(&self, namespace: &str, acting: bool) {
        let mut set = self.acting.write().unwrap_or_else(|p| p.into_inner());
        if acting {
            set.insert(namespace.to_owned());
        } else {
            set.remove(namespace);
        }
    }
}
