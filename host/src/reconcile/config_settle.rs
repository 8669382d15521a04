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
//! a QuarksJob whose config changes every second from ever re-running.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use crate::crd::QuarksJob;

/// How long changes of a QuarksJob's referenced config gather before it is decided on.
pub const CONFIG_SETTLE: Duration = Duration::from_secs(1);

/// How long a closed window is kept for a reconcile to consume. A window whose change no
/// reconcile saw as one (a label changed, or the content changed back) is dropped after it.
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
    /// Opens `qjob`'s window at `now`, unless one is open or closed unconsumed.
    fn open(&mut self, qjob: &ObjectRef<QuarksJob>, now: Instant) {
        if !self.closes.contains_key(qjob) {
            self.closes.insert(qjob.clone(), now + CONFIG_SETTLE);
            self.prune_if_grown(now);
        }
    }

    fn wait(&mut self, qjob: &ObjectRef<QuarksJob>, now: Instant) -> Option<Duration> {
        match self.closes.get(qjob) {
            Some(closes) if *closes > now => Some(*closes - now),
            Some(_) => {
                self.closes.remove(qjob);
                None
            }
            None => {
                self.open(qjob, now);
                Some(CONFIG_SETTLE)
            }
        }
    }

    fn prune_if_grown(&mut self, now: Instant) {
        if self.closes.len() < (2 * self.kept_after_prune).max(64) {
            return;
        }
        self.closes
            .retain(|_, closes| now.saturating_duration_since(*closes) < CLOSED_KEPT);
        self.kept_after_prune = self.closes.len();
    }
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
