//! Fault injection for tests: close every open watch now, fail the next N requests that
//! match a verb and resource with a chosen status code, delay every request, or hold one
//! user's requests on a resource (an API server that hangs for one client). A
//! [`Faults`] handle is cheap to clone; the API server consults it on each request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// One "fail the next N matching requests" rule.
#[derive(Debug, Clone)]
struct FailRule {
    verb: String,
    resource: String,
    code: u16,
    remaining: u32,
}

/// One "delay every matching request of this user" rule.
#[derive(Debug, Clone)]
struct DelayRule {
    user: String,
    verb: String,
    resource: String,
    delay: Duration,
}

struct Inner {
    rules: Mutex<Vec<FailRule>>,
    delays: Mutex<Vec<DelayRule>>,
    latency_ms: AtomicU64,
    /// Bumped to ask every open watch to end.
    close_watches: watch::Sender<u64>,
    /// Set by the server: forgets the watch history (watches from older versions get 410).
    compactor: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("rules", &self.rules)
            .field("latency_ms", &self.latency_ms)
            .finish_non_exhaustive()
    }
}

/// The fault injection handle.
#[derive(Debug, Clone)]
pub struct Faults {
    inner: Arc<Inner>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl Faults {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(0);
        Faults {
            inner: Arc::new(Inner {
                rules: Mutex::new(Vec::new()),
                delays: Mutex::new(Vec::new()),
                latency_ms: AtomicU64::new(0),
                close_watches: tx,
                compactor: Mutex::new(None),
            }),
        }
    }

    /// Ends every watch that is open now (clients see the stream end and re-watch).
    pub fn close_watches(&self) {
        self.inner.close_watches.send_modify(|g| *g += 1);
    }

    /// Fails the next `count` requests with this verb (`get`, `list`, `watch`, `create`,
    /// `update`, `patch`, `delete`, `deletecollection`, or `*`) on this resource (plural,
    /// e.g. `configmaps`, which includes its subresources; `pods/status` for only that
    /// subresource; or `*`) with `code` (409, 500, 503, ...).
    pub fn fail_next(&self, verb: &str, resource: &str, code: u16, count: u32) {
        if let Ok(mut rules) = self.inner.rules.lock() {
            rules.push(FailRule {
                verb: verb.into(),
                resource: resource.into(),
                code,
                remaining: count,
            });
        }
    }

    /// Holds every request of `user` (e.g. `system:serviceaccount:ns:name`) with this verb on
    /// this resource (as in [`Faults::fail_next`]) for `delay` before serving it: an API server
    /// that hangs for one client. Until [`Faults::reset`].
    pub fn delay_requests_of(&self, user: &str, verb: &str, resource: &str, delay: Duration) {
        if let Ok(mut delays) = self.inner.delays.lock() {
            delays.push(DelayRule {
                user: user.into(),
                verb: verb.into(),
                resource: resource.into(),
                delay,
            });
        }
    }

    /// Adds this latency to every request (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        self.inner.latency_ms.store(
            u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Forgets the retained watch history, as an etcd compaction does: watches and
    /// continue tokens from versions before now answer 410 Gone.
    pub fn compact_history(&self) {
        let compactor = self.inner.compactor.lock().ok().and_then(|c| c.clone());
        if let Some(c) = compactor {
            c();
        }
    }

    /// Clears all failure rules and latency.
    pub fn reset(&self) {
        if let Ok(mut rules) = self.inner.rules.lock() {
            rules.clear();
        }
        if let Ok(mut delays) = self.inner.delays.lock() {
            delays.clear();
        }
        self.set_latency(Duration::ZERO);
    }

    pub(crate) fn set_compactor(&self, f: Arc<dyn Fn() + Send + Sync>) {
        if let Ok(mut c) = self.inner.compactor.lock() {
            *c = Some(f);
        }
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.inner.latency_ms.load(Ordering::Relaxed))
    }

    /// How long to hold this request of `user` (zero without a matching rule).
    pub(crate) fn delay_for(&self, user: &str, verb: &str, resource: &str) -> Duration {
        let Ok(delays) = self.inner.delays.lock() else {
            return Duration::ZERO;
        };
        delays
            .iter()
            .filter(|d| {
                d.user == user
                    && (d.verb == "*" || d.verb == verb)
                    && (d.resource == "*" || d.resource == resource)
            })
            .map(|d| d.delay)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The injected failure code for this request, consuming one count of the rule.
    pub(crate) fn take_failure(
        &self,
        verb: &str,
        resource: &str,
        subresource: &str,
    ) -> Option<u16> {
        let mut rules = self.inner.rules.lock().ok()?;
        let matches_resource = |r: &str| {
            r == "*"
                || r == resource
                || (!subresource.is_empty() && r.split_once('/') == Some((resource, subresource)))
        };
        let idx = rules.iter().position(|r| {
            (r.verb == "*" || r.verb == verb) && matches_resource(&r.resource) && r.remaining > 0
        })?;
        let rule = &mut rules[idx];
        rule.remaining -= 1;
        let code = rule.code;
        if rule.remaining == 0 {
            rules.remove(idx);
        }
        Some(code)
    }

    pub(crate) fn watch_closer(&self) -> watch::Receiver<u64> {
        self.inner.close_watches.subscribe()
    }
}
