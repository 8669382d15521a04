//! A change of referenced config is decided on [`CONFIG_SETTLE`] after the operator first saw
//! it, and the changes that arrive meanwhile join it: one `kubectl apply` of a ConfigMap and a
//! Secret that a one-off with `updateOnConfigChange` references re-runs it once, with both.
//! Decided at once, the re-run would start with the first change alone, and the second would
//! make another run after it (seen on kube-apiserver: kubectl writes the objects of a manifest
//! one after another, tens of milliseconds apart, and any reconcile in between, such as the
//! one a deleted Job's event starts, reads the config half-changed).
//!
//! A window opens when a referenced object's watch event arrives or, if a reconcile reads the
//! change first, then. Its length is fixed: a window that moved with every change could keep
//! a QuarksJob whose config changes every second from ever re-running. A watch event after
//! the window closed opens a new one: it is a change the closed window did not gather.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use crate::crd::QuarksJob;

/// How long changes of a QuarksJob's referenced config gather before it is decided on.
pub const CONFIG_SETTLE: Duration = Duration::from_secs(1);

/// How long a closed window is kept for a reconcile to consume (the reconcile it requeued is
/// due at its close, later only when the workers are busy). A window whose change no reconcile
/// saw as one (a label changed, or the content changed back) is stale after it: a change a
/// reconcile reads first then opens a window of its own, rather than being decided at once.
const CLOSED_KEPT: Duration = Duration::from_secs(60);

/// The open (and recently closed) windows of config changes, by QuarksJob.
#[derive(Default)]
pub struct ConfigSettle {
    windows: Mutex<Windows>,
}

impl ConfigSettle {
    /// A watch event of config that `qjobs` reference.
    pub fn changed(&self, qjobs: &[ObjectRef<QuarksJob>]) {
        let mut windows = self.lock();
        for qjob in qjobs {
            windows.open(qjob, Instant::now());
        }
    }

    /// A reconcile of `qjob` found its config changed since the last run: how long to wait
    /// before deciding, or `None` when the change has settled (its window is then consumed).
    pub fn wait(&self, qjob: &ObjectRef<QuarksJob>) -> Option<Duration> {
        self.lock().wait(qjob, Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pure: time is given.
#[derive(Default)]
struct Windows {
    /// When each QuarksJob's window closes.
    closes: HashMap<ObjectRef<QuarksJob>, Instant>,
    /// The number of windows after the last prune: the next prune is due at twice as many.
    kept_after_prune: usize,
}

impl Windows {
    /// A change of `qjob`'s config seen at `now`: it joins the open window, or opens one.
    fn open(&mut self, qjob: &ObjectRef<QuarksJob>, now: Instant) {
        if self.closes.get(qjob).is_none_or(|closes| *closes <= now) {
            self.start(qjob, now);
        }
    }

    fn wait(&mut self, qjob: &ObjectRef<QuarksJob>, now: Instant) -> Option<Duration> {
        match self.closes.get(qjob) {
            Some(closes) if *closes > now => Some(*closes - now),
            Some(closes) if !stale(*closes, now) => {
                self.closes.remove(qjob);
                None
            }
            _ => {
                self.start(qjob, now);
                Some(CONFIG_SETTLE)
            }
        }
    }

    fn start(&mut self, qjob: &ObjectRef<QuarksJob>, now: Instant) {
        self.closes.insert(qjob.clone(), now + CONFIG_SETTLE);
        if self.closes.len() >= (2 * self.kept_after_prune).max(64) {
            self.closes.retain(|_, closes| !stale(*closes, now));
            self.kept_after_prune = self.closes.len();
        }
    }
}

/// Whether a window that closes at `closes` is, at `now`, too old for a reconcile to consume.
fn stale(closes: Instant, now: Instant) -> bool {
    now.saturating_duration_since(closes) >= CLOSED_KEPT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qjob(name: &str) -> ObjectRef<QuarksJob> {
        ObjectRef::new(name).within("ns")
    }

    #[test]
    fn changes_within_a_window_join_it_and_the_decision_waits_for_its_close() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut windows = Windows::default();
        windows.open(&qjob("a"), at(0));
        // A second change joins the open window: it does not move its close.
        windows.open(&qjob("a"), at(300));
        assert_eq!(
            windows.wait(&qjob("a"), at(400)),
            Some(Duration::from_millis(600))
        );
        assert_eq!(windows.wait(&qjob("a"), at(1000)), None, "settled");
        // Consumed: the next change found by a reconcile opens a window of its own.
        assert_eq!(windows.wait(&qjob("a"), at(1100)), Some(CONFIG_SETTLE));
        assert_eq!(windows.wait(&qjob("a"), at(2100)), None);
        // Another QuarksJob's window is its own.
        assert_eq!(windows.wait(&qjob("b"), at(2100)), Some(CONFIG_SETTLE));
    }

    #[test]
    fn a_window_no_reconcile_consumed_does_not_let_a_later_change_through_at_once() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut windows = Windows::default();
        // A change no reconcile took for one (a label): its window closes unconsumed.
        windows.open(&qjob("a"), at(0));
        // A later change's watch event opens a window of its own...
        windows.open(&qjob("a"), at(5_000));
        assert_eq!(
            windows.wait(&qjob("a"), at(5_100)),
            Some(Duration::from_millis(900))
        );
        assert_eq!(windows.wait(&qjob("a"), at(6_000)), None);
        // ...and one a reconcile reads first, once the unconsumed window is stale, too.
        windows.open(&qjob("b"), at(0));
        let later = at(1_000) + CLOSED_KEPT;
        assert_eq!(windows.wait(&qjob("b"), later), Some(CONFIG_SETTLE));
        // A window consumed late (busy workers) but not stale is consumed.
        windows.open(&qjob("c"), at(0));
        assert_eq!(windows.wait(&qjob("c"), at(30_000)), None);
    }

    #[test]
    fn windows_no_reconcile_consumed_are_dropped_a_while_after_they_closed() {
        let start = Instant::now();
        let mut windows = Windows::default();
        for i in 0..64 {
            windows.open(&qjob(&format!("old-{i}")), start);
        }
        let later = start + CONFIG_SETTLE + CLOSED_KEPT;
        for i in 0..64 {
            windows.open(&qjob(&format!("new-{i}")), later);
        }
        assert_eq!(windows.closes.len(), 64, "the old ones are gone");
        assert!(windows.closes.contains_key(&qjob("new-0")));
    }
}
