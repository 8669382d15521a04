//! Calling a namespace's policies: resolving its selection ([`super::resolver`]) and running
//! each call under the namespace's fair share of policy time ([`super::fairness`]): one call at
//! a time per namespace, a quarantine for modules that ran into their CPU limit, a token bucket
//! of CPU time; every call timed and every failure counted in the metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::contract::{OutputInput, OutputResult, TriggerDecision, TriggerInput};
use super::fairness::{CpuBudget, Quarantine};
use super::resolver::{PolicyResolver, Resolved};
use super::{PolicyDigest, PolicyEngine, PolicyError, World};
use crate::metrics::{Metrics, PolicyErrorLabels, PolicyLabels};

/// The policies of every namespace, as the reconciles call them.
pub struct NamespacePolicies {
    /// The policy each namespace selected.
    pub resolver: PolicyResolver,
    /// Policy CPU time per namespace.
    budget: CpuBudget,
    /// Modules that timed out, per namespace.
    quarantine: Quarantine<PolicyDigest>,
    /// One policy call at a time per namespace.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    metrics: Arc<Metrics>,
}

/// A policy the namespace selected could not be used: fail closed.
#[derive(Debug)]
pub struct PolicyFailure {
    pub world: World,
    pub error: PolicyError,
    /// The module that failed, when one was resolved.
    pub policy: Option<Resolved>,
}

impl PolicyFailure {
    /// The condition's and Event's message, naming the module.
    pub fn message(&self) -> String {
        let (world, error) = (self.world, &self.error);
        match &self.policy {
            Some(p) => format!(
                "{world} policy {} ({}): {error}",
                p.reference,
                p.policy.digest()
            ),
            None => format!("{world} policy: {error}"),
        }
    }

    /// When to look again without an event.
    pub fn retry_after(&self) -> Duration {
        match &self.error {
            PolicyError::BudgetExhausted { retry_after, .. } => *retry_after,
            // Woken when compilation ends; this is only a safety net.
            PolicyError::Pending(_) => Duration::from_secs(10),
            // A change of selection or module reconciles at once; this is a safety net.
            _ => Duration::from_secs(30),
        }
    }
}

impl NamespacePolicies {
    pub fn new(resolver: PolicyResolver, budget: CpuBudget, metrics: Arc<Metrics>) -> Self {
        NamespacePolicies {
            resolver,
            budget,
            quarantine: Quarantine::new(Duration::from_secs(30)),
            gates: Mutex::default(),
            metrics,
        }
    }

    /// The module `namespace` selected for `world`; a failure is counted (as `unresolved`).
    pub async fn resolve(&self, namespace: &str, world: World) -> Result<Resolved, PolicyFailure> {
        self.resolver
            .resolve(namespace, world)
            .await
            .map_err(|error| {
                self.count_policy_error(world, &error, None);
                PolicyFailure {
                    world,
                    error,
                    policy: None,
                }
            })
    }

    /// Runs `namespace`'s trigger policy, unless the namespace has used up its policy CPU
    /// budget.
    pub async fn decide(
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
    pub async fn transform(
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
            let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
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
        let engine = self.resolver.engine().clone();
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
}
