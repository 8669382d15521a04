//! Leader election through a `coordination.k8s.io/v1` Lease, so that two replicas never both
//! act.
//!
//! The decisions are pure ([`Candidate`], [`Term`]: fed observations and monotonic instants,
//! unit-tested); [`LeaderElection`] only makes the API calls, each with a timeout.
//!
//! Why there cannot be two leaders (with D the lease duration, R < D the renew deadline):
//! * a leader's term runs R from the moment it *sent* its last successful write of the Lease;
//!   at the end of its term it stops acting (the process ends; the Deployment restarts it as a
//!   candidate), whether or not the renew call ever answered;
//! * a candidate never compares the Lease's `renewTime` with its own wall clock (the two are
//!   written by different clocks): it takes over only after D of its own monotonic clock have
//!   passed since it first saw the Lease's holder/renewTime as they are now. Whatever it saw
//!   was written after the holder sent it, so the holder's term ended at least D − R before;
//! * the takeover is a write conditioned on the resourceVersion that was seen, so a renew the
//!   candidate did not see makes the takeover fail instead of succeed.
//!
//! The margin D − R absorbs clock rate differences and the time the process takes to exit.

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::time::Instant;
use tracing::{info, warn};

/// The durations of the election (client-go's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a holder that stopped renewing keeps the Lease, as others judge it.
    pub lease_duration: Duration,
    /// How long a leader acts after its last successful renew was sent; less than
    /// `lease_duration`.
    pub renew_deadline: Duration,
    /// How often a leader renews and a candidate looks.
    pub retry_period: Duration,
    /// The longest a candidate waits for one API call.
    pub call_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// What this process reads in a Lease: who holds it, the holder's last renew (an opaque
/// mark: never compared with a local clock) and how long the holder claims it for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    pub renew_time: Option<String>,
    pub transitions: Option<i32>,
    pub duration: Option<Duration>,
}

impl LeaseRecord {
    fn of(lease: &Lease) -> LeaseRecord {
        let spec = lease.spec.as_ref();
        LeaseRecord {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref().map(|t| t.0.to_string())),
            transitions: spec.and_then(|s| s.lease_transitions),
            duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }
}

/// What a candidate should do after looking at the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// There is no Lease: create it.
    Create,
    /// The Lease is free, ours, or its holder has not renewed for a lease duration of this
    /// process's clock: write ourselves in (conditioned on what was read).
    TakeOver,
    /// Someone else holds it; look again, at the latest at `until`.
    Wait { until: Instant },
}

/// A replica that does not lead: when it may take the Lease, judged by its own monotonic
/// clock since it last saw the Lease change.
#[derive(Debug)]
pub struct Candidate {
    identity: String,
    default_duration: Duration,
    /// The Lease as last seen (holder, renewTime, transitions) and when it was first seen so.
    seen: Option<(LeaseRecord, Instant)>,
}

impl Candidate {
    pub fn new(identity: String, default_duration: Duration) -> Candidate {
        Candidate {
            identity,
            default_duration,
            seen: None,
        }
    }

    /// Records what a read at `now` returned and decides.
    pub fn observe(&mut self, lease: Option<&LeaseRecord>, now: Instant) -> Verdict {
        let Some(lease) = lease else {
            self.seen = None;
            return Verdict::Create;
        };
        let mark = LeaseRecord {
            duration: None,
            ..lease.clone()
        };
        let since = match &self.seen {
            Some((seen, since)) if *seen == mark => *since,
            _ => {
                self.seen = Some((mark, now));
                now
            }
        };
        match lease.holder.as_deref() {
            None => Verdict::TakeOver,
            Some(holder) if holder == self.identity => Verdict::TakeOver,
            Some(_) => {
                let held = lease.duration.unwrap_or(self.default_duration);
                let until = since + held;
                if now >= until {
                    Verdict::TakeOver
                } else {
                    Verdict::Wait { until }
                }
            }
        }
    }
}

/// A leader's term: it acts until `renew_deadline` after the last successful renew was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Term {
    sent: Instant,
    renew_deadline: Duration,
}

impl Term {
    /// The term that a write sent at `sent` (and answered with success) began.
    pub fn began(sent: Instant, renew_deadline: Duration) -> Term {
        Term {
            sent,
            renew_deadline,
        }
    }

    /// A renew sent at `sent` succeeded.
    pub fn renewed(&mut self, sent: Instant) {
        self.sent = self.sent.max(sent);
    }

    /// When this leader must have stopped acting.
    pub fn deadline(&self) -> Instant {
        self.sent + self.renew_deadline
    }

    pub fn must_step_down(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

/// Why one API call of the election did not complete.
#[derive(Debug, thiserror::Error)]
enum LeaseError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// `call`, given at most `within`.
async fn bounded<T>(
    within: Duration,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, LeaseError> {
    tokio::time::timeout(within, call)
        .await
        .map_err(|_| LeaseError::TimedOut(within))?
        .map_err(LeaseError::Api)
}

/// The result of a write to the Lease.
enum Written {
    Ours,
    /// Someone else wrote first (409).
    Conflict,
}

/// The API side of the election.
pub struct LeaderElection {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    timing: Timing,
    candidate: Mutex<Candidate>,
    /// Set once this replica leads.
    term: Mutex<Option<Term>>,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, lease_name: String, identity: String, timing: Timing) -> Self {
        assert!(
            timing.renew_deadline < timing.lease_duration,
            "the renew deadline must end before the lease expires"
        );
        LeaderElection {
            candidate: Mutex::new(Candidate::new(identity.clone(), timing.lease_duration)),
            api,
            lease_name,
            identity,
            timing,
            term: Mutex::new(None),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) -> anyhow::Result<()> {
        let mut standing_by = false;
        loop {
            let wait = match self.try_acquire().await {
                Ok(Ok(term)) => {
                    *self.term.lock().unwrap_or_else(|p| p.into_inner()) = Some(term);
                    info!(lease = %self.lease_name, identity = %self.identity, "became leader");
                    return Ok(());
                }
                Ok(Err(until)) => {
                    if !standing_by {
                        info!(lease = %self.lease_name, "another replica leads; standing by");
                        standing_by = true;
                    }
                    until
                        .saturating_duration_since(Instant::now())
                        .min(self.timing.retry_period)
                }
                Err(error) => {
                    warn!(%error, "leader election attempt failed");
                    self.timing.retry_period
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One look at the Lease and, when the verdict allows, one write: the term it began, or
    /// when to look again.
    async fn try_acquire(&self) -> Result<Result<Term, Instant>, LeaseError> {
        let timeout = self.timing.call_timeout;
        let lease = bounded(timeout, self.api.get_opt(&self.lease_name)).await?;
        let verdict = self
            .candidate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(lease.as_ref().map(LeaseRecord::of).as_ref(), Instant::now());
        let sent = Instant::now();
        let written = match (verdict, lease) {
            (Verdict::Wait { until }, _) => return Ok(Err(until)),
            (Verdict::Create, _) => bounded(timeout, self.create()).await?,
            (Verdict::TakeOver, Some(lease)) => bounded(timeout, self.write(lease)).await?,
            (Verdict::TakeOver, None) => return Ok(Err(sent)),
        };
        Ok(match written {
            Written::Ours => Ok(Term::began(sent, self.timing.renew_deadline)),
            Written::Conflict => Err(sent + self.timing.retry_period),
        })
    }

    /// Renews the Lease while leading; returns when this replica must stop acting: the Lease
    /// went to another, or no renew succeeded before the term's deadline (a renew call that
    /// hangs is abandoned at the deadline).
    pub async fn keep_renewing(&self) {
        let Some(mut term) = *self.term.lock().unwrap_or_else(|p| p.into_inner()) else {
            return;
        };
        let mut next = Instant::now() + self.timing.retry_period;
        loop {
            tokio::time::sleep_until(next.min(term.deadline())).await;
            if term.must_step_down(Instant::now()) {
                warn!(lease = %self.lease_name, deadline = ?self.timing.renew_deadline, "no renew succeeded within the renew deadline: stepping down");
                return;
            }
            let sent = Instant::now();
            let renew = tokio::time::timeout_at(term.deadline(), self.renew());
            match renew.await {
                Err(_) => {
                    warn!(lease = %self.lease_name, "the renew call did not answer before the renew deadline: stepping down");
                    return;
                }
                Ok(Ok(true)) => term.renewed(sent),
                Ok(Ok(false)) => {
                    warn!(lease = %self.lease_name, "lost the lease to another replica: stepping down");
                    return;
                }
                Ok(Err(error)) => warn!(%error, "renewing the lease failed"),
            }
            next = Instant::now() + self.timing.retry_period;
        }
    }

    /// One renew: read, check that the Lease is still ours, write. `false` when another holds
    /// it. The caller bounds the time.
    async fn renew(&self) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.lease_name).await? else {
            return Ok(false);
        };
        if LeaseRecord::of(&lease).holder.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        // A conflict: someone wrote since the read; the next round reads again.
        self.write(lease).await.map(|_| true)
    }

    fn spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        // renewTime is informational for people: other replicas never compare it with a clock.
        let now = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let ours = previous
            .and_then(|p| p.holder_identity.as_deref())
            .is_some_and(|h| h == self.identity);
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: match (ours, previous) {
                (true, Some(p)) => p.acquire_time.clone(),
                _ => Some(now.clone()),
            },
            renew_time: Some(now),
            lease_transitions: Some(match (ours, previous) {
                (true, _) | (false, None) => transitions,
                (false, Some(_)) => transitions + 1,
            }),
            ..previous.cloned().unwrap_or_default()
        }
    }

    async fn create(&self) -> Result<Written, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.lease_name.clone()),
                ..Default::default()
            },
            spec: Some(self.spec(None)),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Written::Ours),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Written::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Writes ourselves into `lease`, conditioned on its resourceVersion.
    async fn write(&self, mut lease: Lease) -> Result<Written, kube::Error> {
        lease.spec = Some(self.spec(lease.spec.as_ref()));
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Written::Ours),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Written::Conflict),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);
    const R: Duration = Duration::from_secs(10);
    const S: Duration = Duration::from_secs(1);

    fn held_by(holder: &str, renew_time: &str) -> LeaseRecord {
        LeaseRecord {
            holder: Some(holder.to_owned()),
            renew_time: Some(renew_time.to_owned()),
            transitions: Some(0),
            duration: Some(D),
        }
    }

    #[test]
    fn a_lease_that_keeps_changing_is_never_taken_over() {
        let t0 = Instant::now();
        let mut b = Candidate::new("b".into(), D);
        for i in 0..100u32 {
            // A renewTime far in the past: only the change matters, not the value.
            let lease = held_by("a", &format!("1970-01-01T00:00:{:02}Z", i % 60));
            let lease = LeaseRecord {
                transitions: Some(i32::try_from(i / 60).unwrap()),
                ..lease
            };
            let verdict = b.observe(Some(&lease), t0 + 5 * S * i);
            assert!(matches!(verdict, Verdict::Wait { .. }), "{i}: {verdict:?}");
        }
    }

    #[test]
    fn a_holder_that_stopped_renewing_is_taken_over_a_lease_duration_after_the_last_change_seen() {
        let t0 = Instant::now();
        let mut b = Candidate::new("b".into(), D);
        let first = held_by("a", "2020-01-01T00:00:00Z");
        assert_eq!(b.observe(Some(&first), t0), Verdict::Wait { until: t0 + D });
        let renewed = held_by("a", "2020-01-01T00:00:05Z");
        assert_eq!(
            b.observe(Some(&renewed), t0 + 5 * S),
            Verdict::Wait {
                until: t0 + 5 * S + D
            }
        );
        assert!(matches!(
            b.observe(Some(&renewed), t0 + 19 * S),
            Verdict::Wait { .. }
        ));
        assert_eq!(b.observe(Some(&renewed), t0 + 20 * S), Verdict::TakeOver);
    }

    #[test]
    fn a_new_candidate_waits_a_whole_lease_duration_whatever_the_renew_time_says() {
        let t0 = Instant::now();
        let mut b = Candidate::new("b".into(), D);
        // Written by a clock years behind ours: still a full wait, from when we first saw it.
        let stale_looking = held_by("a", "2001-01-01T00:00:00Z");
        assert_eq!(
            b.observe(Some(&stale_looking), t0),
            Verdict::Wait { until: t0 + D }
        );
        // Written by a clock years ahead: no longer wait than a lease duration either.
        let mut c = Candidate::new("c".into(), D);
        let ahead = held_by("a", "2999-01-01T00:00:00Z");
        assert!(matches!(c.observe(Some(&ahead), t0), Verdict::Wait { .. }));
        assert_eq!(c.observe(Some(&ahead), t0 + D), Verdict::TakeOver);
    }

    #[test]
    fn a_missing_free_or_own_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let mut b = Candidate::new("b".into(), D);
        assert_eq!(b.observe(None, t0), Verdict::Create);
        let free = LeaseRecord {
            holder: None,
            ..held_by("", "x")
        };
        assert_eq!(b.observe(Some(&free), t0), Verdict::TakeOver);
        assert_eq!(b.observe(Some(&held_by("b", "x")), t0), Verdict::TakeOver);
    }

    #[test]
    fn the_holders_claimed_duration_counts_not_ours() {
        let t0 = Instant::now();
        let mut b = Candidate::new("b".into(), D);
        let long = LeaseRecord {
            duration: Some(60 * S),
            ..held_by("a", "x")
        };
        assert_eq!(
            b.observe(Some(&long), t0),
            Verdict::Wait { until: t0 + 60 * S }
        );
    }

    #[test]
    fn a_leader_steps_down_at_the_renew_deadline_after_its_last_successful_renew_was_sent() {
        let t0 = Instant::now();
        let mut term = Term::began(t0, R);
        assert!(!term.must_step_down(t0 + 9 * S));
        assert!(term.must_step_down(t0 + R));
        term.renewed(t0 + 4 * S);
        assert_eq!(term.deadline(), t0 + 4 * S + R);
        // An older renew answering late does not extend the term.
        term.renewed(t0 + 2 * S);
        assert_eq!(term.deadline(), t0 + 4 * S + R);
    }

    /// The safety property: whatever the delays between a renew being sent, written and seen,
    /// the old leader's term ends before the candidate takes over.
    #[test]
    fn the_old_leaders_term_ends_before_any_candidate_may_take_over() {
        let t0 = Instant::now();
        for write_delay in [0, 1, 3, 9] {
            for seen_after in [0, 1, 2, 7, 30] {
                let sent = t0 + 3 * S;
                let term = Term::began(sent, R);
                let mut b = Candidate::new("b".into(), D);
                // b saw the previous value long ago; the renew lands and is seen later.
                b.observe(Some(&held_by("a", "old")), t0);
                let seen = sent + (write_delay + seen_after) * S;
                b.observe(Some(&held_by("a", "new")), seen);
                let takeover = (0..200)
                    .map(|i| seen + i * S / 2)
                    .find(|t| b.observe(Some(&held_by("a", "new")), *t) == Verdict::TakeOver)
                    .unwrap();
                assert!(
                    term.deadline() + (D - R) <= takeover,
                    "write {write_delay}s, seen {seen_after}s later"
                );
            }
        }
    }
}
