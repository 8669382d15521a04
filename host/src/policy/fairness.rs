//! Per-namespace protection of the policy CPU time, so that one namespace's slow or hostile
//! policy cannot take the CPU that other namespaces' decisions need. Pure: the caller passes
//! the time. Three layers (the last in `calls`):
//!
//! * one policy call at a time per namespace, waited for briefly (a busy namespace's
//!   reconciles are requeued, they do not hold workers);
//! * [`Quarantine`]: a module that ran into its CPU limit fails fast in that namespace for a
//!   while, with the same error, instead of burning its limit once per QuarksJob;
//! * [`CpuBudget`]: a token bucket of policy time per namespace, for policies that are slow
//!   without hitting the limit.
//!
//! Every namespace starts with [`BudgetConfig::burst`] of policy time and regains
//! [`BudgetConfig::share`] of a CPU (e.g. 0.25 = 250 ms per second). A trigger decision or an
//! output phase is refused (and retried when the bucket refills) while the bucket is empty;
//! a refused output phase leaves its staging Secrets, so output is delayed, never dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetConfig {
    /// Policy time a namespace may use at once after being idle.
    pub burst: Duration,
    /// Share of one CPU a namespace regains per second of wall time.
    pub share: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            burst: Duration::from_secs(1),
            share: 0.25,
        }
    }
}

/// The state of one namespace's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Policy time available, in seconds; negative after a call overran what was left.
    available: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, config: &BudgetConfig, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.available = (self.available + elapsed * config.share).min(config.burst.as_secs_f64());
        self.updated = now;
    }
}

#[derive(Debug, Default)]
pub struct CpuBudget {
    config: BudgetConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl CpuBudget {
    pub fn new(config: BudgetConfig) -> Self {
        CpuBudget {
            config,
            buckets: Mutex::default(),
        }
    }

    /// `Ok` when `namespace` has policy time left; otherwise how long until it has some.
    pub fn check(&self, namespace: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(bucket) = buckets.get_mut(namespace) else {
            return Ok(());
        };
        bucket.refill(&self.config, now);
        if bucket.available > 0.0 {
            return Ok(());
        }
        let missing = -bucket.available + 0.001;
        Err(Duration::from_secs_f64(
            missing / self.config.share.max(1e-6),
        ))
    }

    /// Charges `used` policy time to `namespace`.
    pub fn charge(&self, namespace: &str, used: Duration, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let config = self.config;
        let bucket = buckets.entry(namespace.to_owned()).or_insert(Bucket {
            available: config.burst.as_secs_f64(),
            updated: now,
        });
        bucket.refill(&config, now);
        bucket.available -= used.as_secs_f64();
        // Namespaces back at a full bucket hold no state worth keeping.
        if buckets.len() > 1024 {
            buckets.retain(|_, b| {
                let mut b = *b;
                b.refill(&config, now);
                b.available < config.burst.as_secs_f64()
            });
        }
    }
}

/// Modules that timed out, per namespace, and until when their calls fail fast.
#[derive(Debug)]
pub struct Quarantine<K> {
    period: Duration,
    entries: Mutex<HashMap<(String, K), (Instant, crate::policy::PolicyError)>>,
}

impl<K: std::hash::Hash + Eq + Clone> Quarantine<K> {
    pub fn new(period: Duration) -> Self {
        Quarantine {
            period,
            entries: Mutex::default(),
        }
    }

    /// The error to fail with, while `module` is quarantined in `namespace`.
    pub fn check(
        &self,
        namespace: &str,
        module: &K,
        now: Instant,
    ) -> Option<crate::policy::PolicyError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (until, _)| *until > now);
        entries
            .get(&(namespace.to_owned(), module.clone()))
            .map(|(_, error)| error.clone())
    }

    /// Quarantines `module` in `namespace` after `error` (a timeout).
    pub fn record(
        &self,
        namespace: &str,
        module: K,
        error: crate::policy::PolicyError,
        now: Instant,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert((namespace.to_owned(), module), (now + self.period, error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyError;

    #[test]
    fn a_timed_out_module_fails_fast_in_its_namespace_until_the_period_ends() {
        let quarantine = Quarantine::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let timeout = PolicyError::Timeout(100 * MS);
        quarantine.record("c", "loop", timeout.clone(), t0);
        assert_eq!(
            quarantine.check("c", &"loop", t0 + 29 * 1000 * MS),
            Some(timeout)
        );
        assert_eq!(quarantine.check("a", &"loop", t0), None, "other namespaces");
        assert_eq!(quarantine.check("c", &"fixed", t0), None, "another module");
        assert_eq!(quarantine.check("c", &"loop", t0 + 30 * 1000 * MS), None);
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_namespace_that_burns_its_burst_waits_for_the_refill() {
        let budget = CpuBudget::new(BudgetConfig {
            burst: 300 * MS,
            share: 0.25,
        });
        let t0 = Instant::now();
        // Three calls that each hit a 100 ms limit use the burst up.
        for _ in 0..3 {
            assert_eq!(budget.check("hostile", t0), Ok(()));
            budget.charge("hostile", 100 * MS, t0);
        }
        let wait = budget.check("hostile", t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait < 10 * MS, "{wait:?}");
        // Other namespaces are not affected.
        assert_eq!(budget.check("quiet", t0), Ok(()));
        // 0.25 CPU: 400 ms of wall time give back 100 ms of policy time.
        assert_eq!(budget.check("hostile", t0 + 400 * MS), Ok(()));
        budget.charge("hostile", 100 * MS, t0 + 400 * MS);
        assert!(budget.check("hostile", t0 + 400 * MS).is_err());
    }

    #[test]
    fn an_overrun_is_paid_back_before_the_next_call() {
        let budget = CpuBudget::new(BudgetConfig {
            burst: 100 * MS,
            share: 0.5,
        });
        let t0 = Instant::now();
        budget.charge("ns", 300 * MS, t0);
        let wait = budget.check("ns", t0).unwrap_err();
        // 200 ms of debt at half a CPU: about 400 ms.
        assert!(wait >= 400 * MS && wait < 410 * MS, "{wait:?}");
        assert!(budget.check("ns", t0 + 399 * MS).is_err());
        assert_eq!(budget.check("ns", t0 + 410 * MS), Ok(()));
    }

    #[test]
    fn the_bucket_never_holds_more_than_the_burst() {
        let budget = CpuBudget::new(BudgetConfig {
            burst: 100 * MS,
            share: 1.0,
        });
        let t0 = Instant::now();
        budget.charge("ns", Duration::ZERO, t0);
        // An hour idle still allows only the burst.
        let later = t0 + Duration::from_secs(3600);
        budget.charge("ns", 100 * MS, later);
        assert!(budget.check("ns", later).is_err());
    }
}
