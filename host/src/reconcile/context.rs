//! What every reconcile shares: the API client, the per-namespace policies and their CPU
//! budget, the set of monitored namespaces, the cache of Jobs and the record of the operator's
//! own writes, metrics, the Event recorder and per-object backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::decide::PolicyFailure;
use super::events::QuarksJobEvent;
use super::observe::{JobCache, OwnWrites};
use crate::crd::QuarksJob;
use crate::metrics::{Metrics, PolicyErrorLabels, PolicyLabels};
use crate::policy::contract::{OutputInput, OutputResult, TriggerDecision, TriggerInput};
use crate::policy::fairness::{CpuBudget, Quarantine};
use crate::policy::resolver::{PolicyResolver, Resolved};
use crate::policy::{PolicyEngine, PolicyError, World};

pub struct Context {
    pub client: kube::Client,
    /// The policy each namespace selected.
    pub policies: PolicyResolver,
    /// Policy CPU time per namespace.
    pub budget: CpuBudget,
    /// Modules that timed out, per namespace.
    quarantine: Quarantine<crate::policy::PolicyDigest>,
    /// One policy call at a time per namespace.
    namespace_gates: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// How the output helper runs in pods with output.
    pub helper: crate::output::pod::HelperSpec,
    pub helper_identity: crate::output::write::HelperIdentity,
    pub monitored: MonitoredNamespaces,
    /// The operator's Jobs.
    pub jobs: JobCache,
    /// What the operator last wrote to each QuarksJob.
    pub own_writes: OwnWrites,
    pub metrics: Arc<Metrics>,
    /// Events to publish, in the background: a reconcile does not wait for them.
    events: tokio::sync::mpsc::UnboundedSender<(Event, ObjectReference)>,
    pub backoff: Backoff,
    /// How often a QuarksJob with a run active or config awaited is re-evaluated without any
    /// event (a safety net; every real trigger is watch-driven; settled ones wait for events).
    pub resync: Duration,
}

impl Context {
    #[expect(
        clippy::too_many_arguments,
        reason = "the process's wiring hands over every shared service once, here"
    )]
    pub fn new(
        client: kube::Client,
        policies: PolicyResolver,
        budget: CpuBudget,
        helper: crate::output::pod::HelperSpec,
        monitored: MonitoredNamespaces,
        jobs: JobCache,
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
            budget,
            quarantine: Quarantine::new(Duration::from_secs(30)),
            namespace_gates: Mutex::default(),
            helper,
            helper_identity: Default::default(),
            monitored,
            jobs,
            own_writes: OwnWrites::default(),
            metrics,
            backoff: Backoff::default(),
            resync: Duration::from_secs(300),
        }
    }

    /// Runs `namespace`'s trigger policy, unless the namespace has used up its policy CPU
    /// budget.
    pub async fn call_trigger_policy(
        &self,
        namespace: &str,
        policy: &Resolved,
        input: TriggerInput,
    ) -> Result<TriggerDecision, PolicyError> {
        let loaded = policy.policy.clone();
        self.call_policy(namespace, policy, World::Trigger, move |engine| {
            engine.decide(&loaded, input)
        })
        .await
    }

    /// Runs `namespace`'s output policy. Charged to the namespace's budget but never refused
    /// for it: output that a Job produced is not dropped for budget reasons.
    pub async fn call_output_policy(
        &self,
        namespace: &str,
        policy: &Resolved,
        input: OutputInput,
    ) -> Result<OutputResult, PolicyError> {
        let loaded = policy.policy.clone();
        self.call_policy(namespace, policy, World::Output, move |engine| {
            engine.transform(&loaded, input)
        })
        .await
    }

    /// Runs a policy call on a blocking thread (policy calls are CPU-bound), measures it,
    /// charges it to the namespace and counts its failure.
    async fn call_policy<T: Send + 'static>(
        &self,
        namespace: &str,
        policy: &Resolved,
        world: World,
        call: impl FnOnce(&PolicyEngine) -> Result<T, PolicyError> + Send + 'static,
    ) -> Result<T, PolicyError> {
        let gate = {
            let mut gates = self
                .namespace_gates
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Gates nobody holds are dropped now and then, so the map follows the namespaces
            // in use rather than every namespace ever seen.
            if gates.len() > 1024 {
                gates.retain(|_, gate| Arc::strong_count(gate) > 1);
            }
            gates
                .entry(namespace.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1)))
                .clone()
        };
        let _turn = gate.acquire_owned().await;
        let module = policy.policy.digest();
        let digest = module.to_string();
        // Trigger decisions only: an output transform that timed out may be about one huge
        // file, and its neighbours' output must not be dropped for it.
        let quarantined = (world == World::Trigger)
            .then(|| self.quarantine.check(namespace, &module, Instant::now()))
            .flatten();
        if let Some(error) = quarantined {
            self.count_policy_error(world, &error, Some(&digest));
            return Err(error);
        }
        // The budget is checked after the quarantine, so a quarantined module keeps one
        // reason (a flip between two reasons would rewrite status on every reconcile).
        if world == World::Trigger
            && let Err(retry_after) = self.budget.check(namespace, Instant::now())
        {
            let error = PolicyError::BudgetExhausted {
                namespace: namespace.to_owned(),
                retry_after,
            };
            self.count_policy_error(world, &error, Some(&digest));
            return Err(error);
        }
        let engine = self.policies.engine().clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || call(&engine))
            .await
            .unwrap_or_else(|e| {
                Err(PolicyError::Engine(format!(
                    "policy call did not finish: {e}"
                )))
            });
        let elapsed = started.elapsed();
        self.budget.charge(namespace, elapsed, Instant::now());
        if let (World::Trigger, Err(error @ PolicyError::Timeout(_))) = (world, &result) {
            self.quarantine
                .record(namespace, module, error.clone(), Instant::now());
        }
        self.metrics
            .policy_call_seconds
            .get_or_create(&PolicyLabels {
                world: world.as_str(),
                policy: digest.clone(),
            })
            .observe(elapsed.as_secs_f64());
        if let Err(error) = &result {
            self.count_policy_error(world, error, Some(&digest));
        }
        result
    }

    /// Counts a policy failure; `digest` is `None` when no module was resolved.
    pub fn count_policy_error(&self, world: World, error: &PolicyError, digest: Option<&str>) {
        self.metrics
            .policy_errors_total
            .get_or_create(&PolicyErrorLabels {
                world: world.as_str(),
                code: error.code(),
                policy: digest.unwrap_or("unresolved").to_owned(),
            })
            .inc();
    }

    /// A policy that could not be resolved for `world`: counted (as `unresolved`), and the
    /// failure the QuarksJob reports.
    pub fn unresolved(&self, world: World, error: PolicyError) -> PolicyFailure {
        self.count_policy_error(world, &error, None);
        PolicyFailure {
            world,
            error,
            policy: None,
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
            secondary: None,
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
            .call_output_policy(self.namespace, &self.policy, input)
            .await
    }
}

/// A live view of the monitored namespaces (a reflector store filled by a label-selected watch).
#[derive(Clone)]
pub struct MonitoredNamespaces {
    store: Store<Namespace>,
}

impl MonitoredNamespaces {
    pub fn new(store: Store<Namespace>) -> Self {
        MonitoredNamespaces { store }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        self.store.get(&ObjectRef::new(namespace)).is_some()
    }
}
