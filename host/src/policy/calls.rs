//! Calling a namespace's policies: resolving its selection ([`super::resolver`]) and running
//! each call under the namespace's fair share of policy time ([`super::fairness`]): a
//! quarantine for modules that ran into their CPU limit, a token bucket of CPU time, and one
//! call at a time per namespace; every call timed and every failure counted in the metrics.
//! The same for both worlds: trigger decisions and output transforms.
//!
//! No reconcile waits long for a namespace: the quarantine and the budget are checked first
//! (without waiting), and a namespace's turn is waited for at most [`TURN_WAIT`]; a reconcile
//! that does not get it ends with `PolicyBusy` and is requeued, so a namespace whose calls are
//! slow occupies one reconcile worker (the one running its call), never all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    gates: Mutex<HashMap<String, Arc<Semaphore>>>,
    metrics: Arc<Metrics>,
}

/// How long a reconcile waits for its namespace's turn before it is requeued (`PolicyBusy`):
/// long enough for a queue of fast calls, much shorter than one slow call (the CPU limit).
pub const TURN_WAIT: Duration = Duration::from_millis(20);

/// When a reconcile that found its namespace busy tries again (plus up to as much jitter).
const BUSY_RETRY: Duration = Duration::from_millis(100);

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
            PolicyError::BudgetExhausted { retry_after, .. }
            | PolicyError::Busy { retry_after, .. } => *retry_after,
            PolicyError::EngineBusy => Duration::from_millis(250),
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
    ///
    /// For the output world this also admits the output phase: the module must not be
    /// quarantined, the namespace must have policy time left, and the resolution holds the
    /// namespace's turn until it is dropped. So the transforms of the files a reconcile
    /// writes are never refused half-way (output is never dropped for fairness: a refused
    /// output phase leaves the staging Secrets for a later reconcile).
    pub async fn resolve(&self, namespace: &str, world: World) -> Result<Resolved, PolicyFailure> {
        let mut resolved = self
            .resolver
            .resolve(namespace, world)
            .await
            .map_err(|error| self.unresolved(world, error))?;
        if world == World::Output {
            match self.admit(namespace, &resolved, world).await {
                Ok(turn) => resolved.turn = Some(Arc::new(turn)),
                Err(error) => {
                    return Err(PolicyFailure {
                        world,
                        error,
                        policy: Some(resolved),
                    });
                }
            }
        }
        Ok(resolved)
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

    /// Runs `namespace`'s output policy, under the same quarantine, budget and turn as
    /// decisions. With a resolution that holds the turn (an admitted output phase) only the
    /// quarantine can refuse it.
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

    /// Whether `namespace` may call `policy` now: not quarantined, budget left, and its turn
    /// (waited for at most [`TURN_WAIT`]). Every refusal is counted.
    async fn admit(
        &self,
        namespace: &str,
        policy: &Resolved,
        world: World,
    ) -> Result<OwnedSemaphorePermit, PolicyError> {
        let module = policy.policy.digest();
        let refused = |error: PolicyError| {
            self.count_policy_error(world, &error, Some(&module.to_string()));
            Err(error)
        };
        if let Some(error) = self.quarantine.check(namespace, &module, Instant::now()) {
            return refused(error);
        }
        // The budget is checked after the quarantine, so a quarantined module keeps one
        // reason (a flip between two reasons would rewrite status on every reconcile).
        if let Err(retry_after) = self.budget.check(namespace, Instant::now()) {
            return refused(PolicyError::BudgetExhausted {
                namespace: namespace.to_owned(),
                retry_after,
            });
        }
        let gate = self.gate(namespace);
        let Ok(Ok(turn)) = tokio::time::timeout(TURN_WAIT, gate.acquire_owned()).await else {
            return refused(PolicyError::Busy {
                namespace: namespace.to_owned(),
                retry_after: BUSY_RETRY + jitter(BUSY_RETRY),
            });
        };
        // The call before may have just run into the limit.
        if let Some(error) = self.quarantine.check(namespace, &module, Instant::now()) {
            return refused(error);
        }
        Ok(turn)
    }

    /// The namespace's gate: one policy call at a time.
    fn gate(&self, namespace: &str) -> Arc<Semaphore> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        // Gates nobody holds are dropped now and then, so the map follows the namespaces in
        // use rather than every namespace ever seen.
        if gates.len() > 1024 {
            gates.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        gates
            .entry(namespace.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone()
    }

    /// Runs a policy call on a blocking thread (policy calls are CPU-bound), once admitted
    /// (or in the turn `policy` holds), measures it, charges it to the namespace and counts
    /// its failure.
    async fn call_policy<T: Send + 'static>(
        &self,
        namespace: &str,
        policy: &Resolved,
        world: World,
        call: impl FnOnce(&PolicyEngine) -> Result<T, PolicyError> + Send + 'static,
    ) -> Result<T, PolicyError> {
        let module = policy.policy.digest();
        let digest = module.to_string();
        let _turn = match &policy.turn {
            // An admitted output phase: only a quarantine (a timeout of this phase's calls)
            // refuses its later files.
            Some(_) => {
                if let Some(error) = self.quarantine.check(namespace, &module, Instant::now()) {
                    self.count_policy_error(world, &error, Some(&digest));
                    return Err(error);
                }
                None
            }
            None => Some(self.admit(namespace, policy, world).await?),
        };
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
        if let Err(error @ PolicyError::Timeout(_)) = &result {
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

    /// Counts a policy failure; `digest` is `None` when no module was resolved. Host-side
    /// refusals (`PolicyBusy`, `PolicyEngineBusy`) are not the policy's failures: not counted.
    pub fn count_policy_error(&self, world: World, error: &PolicyError, digest: Option<&str>) {
        if error.is_host_side() {
            return;
        }
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

/// Up to `max` of jitter, so that requeued reconciles of one namespace spread out.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    max.mul_f64(f64::from(nanos % 1000) / 1000.0)
}
