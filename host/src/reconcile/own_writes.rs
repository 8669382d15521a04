//! What the operator itself wrote to each QuarksJob, and the watch events those writes cause.
//!
//! - [`OwnWrites`]: the generation and run each write left. A reconcile on a cached copy that
//!   shows less is older than the operator's own write: acting on it would redo the write (and
//!   could start the run again), so it waits for the watch.
//! - [`OwnEchoes`]: the resource versions the writes produced. The watch delivers each of them
//!   as an event ("echo"); reconciling one finds nothing to do — the reconcile that wrote it
//!   acted on everything it changed, and any other change to the QuarksJob has a version, and
//!   an event, of its own — so the QuarksJob watch drops it before the controller. That saves
//!   the two reconciles a run's strategy and status writes used to cost. An echo a reconcile
//!   waits for (it found a copy from before the write) is let through. The same for the Jobs
//!   the operator creates: the create's echo on the Job watch reconciles nothing (the
//!   reconcile that created it goes on from there); the Job's later changes do.
//!
//! Pure bookkeeping under a lock, no API calls.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube::{Resource, ResourceExt};

use crate::crd::{QuarksJob, QuarksJobStatus};

/// How long a recorded write is waited for; after that the cached copy is used as it is (a
/// safety net: the watch delivers the operator's own writes within milliseconds). Also how long
/// an echo is remembered.
const OWN_WRITE_PATIENCE: Duration = Duration::from_secs(10);

/// Entries are not pruned before there are this many.
const PRUNED_FROM: usize = 4096;

/// Entries by QuarksJob uid, each with the time it was last set. Entries older than
/// [`OWN_WRITE_PATIENCE`] are pruned when the map has doubled since the last prune (at least
/// [`PRUNED_FROM`] entries), so pruning costs O(1) per insert, amortised.
struct ByUid<V> {
    entries: Mutex<HashMap<String, (V, Instant)>>,
    prune_at: AtomicUsize,
}

impl<V> Default for ByUid<V> {
    fn default() -> Self {
        ByUid {
            entries: Mutex::default(),
            prune_at: AtomicUsize::new(PRUNED_FROM),
        }
    }
}

impl<V> ByUid<V> {
    /// Runs `f` on the map, after pruning it if it has doubled.
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, (V, Instant)>) -> R) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.prune_at.load(Ordering::Relaxed) {
            let now = Instant::now();
            entries.retain(|_, (_, at)| now.duration_since(*at) < OWN_WRITE_PATIENCE);
            let next = (2 * entries.len()).max(PRUNED_FROM);
            self.prune_at.store(next, Ordering::Relaxed);
        }
        f(&mut entries)
    }
}

/// What the operator last wrote to each QuarksJob (by uid): the generation its spec had after
/// the write and the run it recorded.
#[derive(Default)]
pub struct OwnWrites {
    by_uid: ByUid<OwnWrite>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct OwnWrite {
    generation: i64,
    run_count: i64,
    finished: bool,
    /// Digest of the output records written (only the operator writes them).
    outputs: u64,
}

/// A digest of a status's output records, to tell a copy without the latest ones.
fn outputs_digest(status: &QuarksJobStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_string(&status.outputs)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

impl OwnWrites {
    /// Records a write of `status` to `qjob`, whose spec was at `generation` afterwards.
    pub fn record(&self, qjob: &QuarksJob, generation: Option<i64>, status: &QuarksJobStatus) {
        let Some(uid) = qjob.metadata.uid.clone() else {
            return;
        };
        let write = OwnWrite {
            generation: generation.unwrap_or_default(),
            run_count: status.run_count,
            finished: status.last_run_finished_at.is_some(),
            outputs: outputs_digest(status),
        };
        self.by_uid.with(|w| w.insert(uid, (write, Instant::now())));
    }

    /// Whether `qjob` (a cached copy) predates the operator's last write to it. Forgets the
    /// write once a copy shows it.
    pub fn predates_own_write(&self, qjob: &QuarksJob) -> bool {
        let Some(uid) = qjob.metadata.uid.as_deref() else {
            return false;
        };
        let status = qjob.status.clone().unwrap_or_default();
        self.by_uid.with(|writes| {
            let Some((write, at)) = writes.get(uid).copied() else {
                return false;
            };
            let stale = write_is_newer(&write, qjob.metadata.generation, &status);
            if !stale || at.elapsed() > OWN_WRITE_PATIENCE {
                writes.remove(uid);
                return false;
            }
            true
        })
    }
}

/// Whether a QuarksJob at `generation` with `status` has not yet seen `write`.
fn write_is_newer(write: &OwnWrite, generation: Option<i64>, status: &QuarksJobStatus) -> bool {
    generation.unwrap_or_default() < write.generation
        || status.run_count < write.run_count
        || (status.run_count == write.run_count
            && write.finished
            && status.last_run_finished_at.is_none())
        // Output records written for this run that the copy lacks: a status write from it
        // would erase them.
        || (status.run_count == write.run_count && outputs_digest(status) != write.outputs)
}

/// The resource versions of the operator's own writes to each QuarksJob whose watch events
/// have not come yet, and whether a reconcile waits for them.
#[derive(Default)]
pub struct OwnEchoes {
    by_uid: ByUid<Echoes>,
}

#[derive(Default)]
struct Echoes {
    /// In the order written (the watch delivers them in that order); the last is the newest
    /// write. At most [`ECHOES_KEPT`].
    pending: VecDeque<String>,
    /// A reconcile found a copy older than the newest write: its echo goes to the controller.
    awaited: bool,
    /// The newest write's echo came and was dropped: the cache holds that write.
    newest_dropped: bool,
}

/// A reconcile writes at most three times (strategy, status, and status again after a refused
/// Job); more pending versions than this mean their events were missed (a re-list).
const ECHOES_KEPT: usize = 4;

/// What a reconcile on a copy older than the operator's own write should do.
#[derive(Debug, PartialEq, Eq)]
pub enum StaleCopy {
    /// The cache holds the write already (its echo was dropped meanwhile): look again now.
    LookAgain,
    /// The echo is still to come; it will reconcile this QuarksJob.
    AwaitEcho,
}

impl OwnEchoes {
    /// A write to `object` returned `resource_version`: its watch event is an echo.
    pub fn expect(&self, object: &impl Resource, resource_version: Option<String>) {
        let (Some(uid), Some(version)) = (object.meta().uid.clone(), resource_version) else {
            return;
        };
        self.by_uid.with(|echoes| {
            let (echo, at) = echoes
                .entry(uid)
                .or_insert_with(|| (Echoes::default(), Instant::now()));
            *at = Instant::now();
            if echo.pending.len() == ECHOES_KEPT {
                echo.pending.pop_front();
            }
            echo.pending.push_back(version);
            echo.newest_dropped = false;
        });
    }

    /// Whether the watch should drop this applied `object` (an echo nobody waits for).
    pub fn drop_echo(&self, object: &impl Resource) -> bool {
        let (Some(uid), Some(version)) = (object.uid(), object.resource_version()) else {
            return false;
        };
        self.by_uid.with(|echoes| {
            let Some((echo, _)) = echoes.get_mut(&uid) else {
                return false;
            };
            let Some(at) = echo.pending.iter().position(|v| *v == version) else {
                return false;
            };
            let newest = at + 1 == echo.pending.len();
            // Events come in order: the versions before this one will not come any more.
            echo.pending.drain(..=at);
            if echo.awaited {
                if newest {
                    echoes.remove(&uid);
                }
                return false;
            }
            echo.newest_dropped = newest;
            true
        })
    }

    /// A reconcile found `qjob`'s cached copy older than the operator's write to it.
    pub fn stale_copy(&self, qjob: &QuarksJob) -> StaleCopy {
        let Some(uid) = qjob.uid() else {
            return StaleCopy::AwaitEcho;
        };
        self.by_uid.with(|echoes| {
            let (echo, at) = echoes
                .entry(uid)
                .or_insert_with(|| (Echoes::default(), Instant::now()));
            *at = Instant::now();
            if echo.newest_dropped {
                echo.newest_dropped = false;
                StaleCopy::LookAgain
            } else {
                echo.awaited = true;
                StaleCopy::AwaitEcho
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qjob(generation: i64, status: serde_json::Value) -> QuarksJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "quarks.cloudfoundry.org/v1alpha1", "kind": "QuarksJob",
            "metadata": {"name": "q", "namespace": "ns", "uid": "u1", "generation": generation},
            "spec": {"trigger": {"strategy": "once"}, "template": {"spec": {"template": {}}}},
            "status": status,
        }))
        .unwrap()
    }

    fn at_version(version: &str) -> QuarksJob {
        let mut q = qjob(1, serde_json::json!({}));
        q.metadata.resource_version = Some(version.to_owned());
        q
    }

    #[test]
    fn the_echoes_of_a_write_are_dropped_and_other_versions_are_not() {
        let echoes = OwnEchoes::default();
        let q = at_version("10");
        echoes.expect(&q, Some("11".into()));
        echoes.expect(&q, Some("12".into()));
        assert!(!echoes.drop_echo(&at_version("10")), "not ours");
        assert!(echoes.drop_echo(&at_version("11")));
        assert!(
            !echoes.drop_echo(&at_version("13")),
            "someone else's change"
        );
        assert!(echoes.drop_echo(&at_version("12")));
        assert!(!echoes.drop_echo(&at_version("12")), "each echo once");
    }

    #[test]
    fn an_awaited_echo_goes_through() {
        let echoes = OwnEchoes::default();
        let q = at_version("10");
        echoes.expect(&q, Some("11".into()));
        echoes.expect(&q, Some("12".into()));
        assert_eq!(echoes.stale_copy(&q), StaleCopy::AwaitEcho);
        assert!(!echoes.drop_echo(&at_version("11")));
        assert!(!echoes.drop_echo(&at_version("12")));
        // Then forgotten: the next write's echoes are dropped again.
        echoes.expect(&q, Some("13".into()));
        assert!(echoes.drop_echo(&at_version("13")));
    }

    #[test]
    fn a_stale_copy_after_the_echo_was_dropped_looks_again_at_once() {
        let echoes = OwnEchoes::default();
        let q = at_version("10");
        echoes.expect(&q, Some("11".into()));
        assert!(echoes.drop_echo(&at_version("11")));
        assert_eq!(echoes.stale_copy(&q), StaleCopy::LookAgain);
        // An older echo dropped says nothing about the newest write.
        echoes.expect(&q, Some("12".into()));
        echoes.expect(&q, Some("13".into()));
        assert!(echoes.drop_echo(&at_version("12")));
        assert_eq!(echoes.stale_copy(&q), StaleCopy::AwaitEcho);
        assert!(!echoes.drop_echo(&at_version("13")));
    }

    #[test]
    fn a_copy_from_before_the_run_was_recorded_predates_the_write() {
        let writes = OwnWrites::default();
        let before = qjob(1, serde_json::json!({}));
        // The strategy write-back made generation 2, and status recorded run 1.
        writes.record(&before, Some(2), &started(1));
        assert!(writes.predates_own_write(&before));
        // Status arrived, the strategy write not yet.
        assert!(writes.predates_own_write(&qjob(1, serde_json::json!({"runCount": 1}))));
        assert!(!writes.predates_own_write(&qjob(2, serde_json::json!({"runCount": 1}))));
        // Forgotten once seen: later copies are taken as they are.
        assert!(!writes.predates_own_write(&before));
    }

    fn started(run: i64) -> QuarksJobStatus {
        serde_json::from_value(serde_json::json!({"runCount": run})).unwrap()
    }

    #[test]
    fn a_recorded_finish_must_show_in_the_copy() {
        let writes = OwnWrites::default();
        let running = qjob(1, serde_json::json!({"runCount": 1}));
        let finished: QuarksJobStatus = serde_json::from_value(
            serde_json::json!({"runCount": 1, "lastRunFinishedAt": "2026-01-01T00:00:00Z"}),
        )
        .unwrap();
        writes.record(&running, Some(1), &finished);
        assert!(writes.predates_own_write(&running));
        let seen = qjob(
            1,
            serde_json::json!({"runCount": 1, "lastRunFinishedAt": "2026-01-01T00:00:00Z"}),
        );
        assert!(!writes.predates_own_write(&seen));
    }

    #[test]
    fn a_copy_without_the_recorded_outputs_is_stale() {
        let writes = OwnWrites::default();
        let running = qjob(1, serde_json::json!({"runCount": 1}));
        let with_outputs: QuarksJobStatus = serde_json::from_value(serde_json::json!({
            "runCount": 1,
            "outputs": [{"job": "q-1", "container": "c", "file": "o.json", "secrets": ["s"]}]
        }))
        .unwrap();
        writes.record(&running, Some(1), &with_outputs);
        assert!(writes.predates_own_write(&running));
        let seen = qjob(
            1,
            serde_json::json!({"runCount": 1, "outputs": [{"job": "q-1", "container": "c", "file": "o.json", "secrets": ["s"]}]}),
        );
        assert!(!writes.predates_own_write(&seen));
    }

    #[test]
    fn a_newer_user_change_is_not_stale() {
        let writes = OwnWrites::default();
        writes.record(&qjob(1, serde_json::json!({})), Some(2), &started(1));
        // The user changed the spec again after the operator's write.
        assert!(!writes.predates_own_write(&qjob(3, serde_json::json!({"runCount": 1}))));
    }
}
