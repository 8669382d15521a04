//! What every reconcile shares: the API client, the policy engine and the trigger policy,
//! the set of monitored namespaces, metrics, the Event recorder and per-object backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::metrics::{Metrics, PolicyLabels};
use super::namespaces::MonitoredNamespaces;
use crate::crd::QuarksJob;
use crate::policy::contract::{OutputInput, OutputResult, TriggerDecision, TriggerInput};
use crate::policy::{LoadedPolicy, PolicyEngine, PolicyError, World};

pub struct Context {
    pub client: kube::Client,
    pub engine: Arc<PolicyEngine>,
    pub trigger_policy: Arc<LoadedPolicy>,
    pub output_policy: Arc<LoadedPolicy>,
    /// How the output helper runs in pods with output.
    pub helper: crate::output::transport::HelperSpec,
    pub helper_identity: crate::output::write::HelperIdentity,
    pub monitored: MonitoredNamespaces,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub backoff: Backoff,
    /// How often a QuarksJob is re-evaluated without any event (a safety net; every real
    /// trigger is watch-driven).
    pub resync: Duration,
}

impl Context {
    pub fn new(
        client: kube::Client,
        engine: Arc<PolicyEngine>,
        trigger_policy: Arc<LoadedPolicy>,
        output_policy: Arc<LoadedPolicy>,
        helper: crate::output::transport::HelperSpec,
        monitored: MonitoredNamespaces,
        metrics: Arc<Metrics>,
        instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: "quarks-job".into(),
            instance: Some(instance),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            engine,
            trigger_policy,
            output_policy,
            helper,
            helper_identity: Default::default(),
            monitored,
            metrics,
            backoff: Backoff::default(),
            resync: Duration::from_secs(300),
        }
    }

    /// Runs the trigger policy.
    pub async fn call_trigger_policy(
        &self,
        input: TriggerInput,
    ) -> Result<TriggerDecision, PolicyError> {
        let policy = self.trigger_policy.clone();
        self.call_policy(World::Trigger, move |engine| engine.decide(&policy, input))
            .await
    }

    /// Runs the output policy. Its failures are counted here; trigger failures are counted
    /// where they are reported (reconcile), as they also change the QuarksJob's condition.
    pub async fn call_output_policy(
        &self,
        input: OutputInput,
    ) -> Result<OutputResult, PolicyError> {
        let policy = self.output_policy.clone();
        let result = self
            .call_policy(World::Output, move |engine| {
                engine.transform(&policy, input)
            })
            .await;
        if let Err(error) = &result {
            self.metrics
                .policy_errors_total
                .get_or_create(&super::metrics::PolicyErrorLabels {
                    world: World::Output.as_str(),
                    code: error.code(),
                })
                .inc();
        }
        result
    }

    /// Runs a policy call on a blocking thread (policy calls are CPU-bound) and measures it.
    async fn call_policy<T: Send + 'static>(
        &self,
        world: World,
        call: impl FnOnce(&PolicyEngine) -> Result<T, PolicyError> + Send + 'static,
    ) -> Result<T, PolicyError> {
        let engine = self.engine.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || call(&engine))
            .await
            .unwrap_or_else(|e| {
                Err(PolicyError::Engine(format!(
                    "policy call did not finish: {e}"
                )))
            });
        self.metrics
            .policy_call_seconds
            .get_or_create(&PolicyLabels {
                world: world.as_str(),
            })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Publishes an Event on the QuarksJob. Failing to publish is logged, never fatal.
    pub async fn event(
        &self,
        qjob: &QuarksJob,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &qjob.object_ref(&())).await {
            warn!(name = %qjob.name_any(), %error, reason, "could not publish Event");
        }
    }
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

impl crate::output::write::OutputPolicyRunner for Context {
    async fn transform(&self, input: OutputInput) -> Result<OutputResult, PolicyError> {
        self.call_output_policy(input).await
    }
}
