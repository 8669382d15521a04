//! Leader election through a `coordination.k8s.io/v1` Lease, so that two replicas never both
//! act. The leader renews the Lease every `renew` interval; a replica takes over only after the
//! holder has not renewed for the lease duration. A leader that cannot renew steps down by
//! ending the process (the Deployment restarts it as a candidate): half-acting is never safe.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tracing::{info, warn};

/// Why a round of leader election did not complete.
#[derive(Debug, thiserror::Error)]
enum LeaseError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

pub struct LeaderElection {
    pub api: Api<Lease>,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

impl LeaderElection {
    fn renew_interval(&self) -> Duration {
        self.lease_duration / 3
    }

    /// One round, given at most a renew interval: a request the API server never answers must
    /// not stall a candidate for good (seen on kube-apiserver under load) or keep a leader
    /// believing it renews.
    async fn round(&self) -> Result<bool, LeaseError> {
        tokio::time::timeout(self.renew_interval(), self.try_acquire_or_renew())
            .await
            .map_err(|_| LeaseError::TimedOut(self.renew_interval()))?
            .map_err(LeaseError::Api)
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) -> anyhow::Result<()> {
        loop {
            match self.round().await {
                Ok(true) => {
                    info!(lease = %self.lease_name, identity = %self.identity, "became leader");
                    return Ok(());
                }
                Ok(false) => {}
                Err(error) => warn!(%error, "leader election attempt failed"),
            }
            tokio::time::sleep(self.renew_interval()).await;
        }
    }

    /// Renews the Lease until renewing fails for a whole lease duration; then returns.
    pub async fn keep_renewing(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_interval()).await;
            match self.round().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.lease_name, "lost the lease to another replica");
                    return;
                }
                Err(error) => {
                    warn!(%error, "renewing the lease failed");
                    if last_renewed.elapsed() >= self.lease_duration {
                        return;
                    }
                }
            }
        }
    }

    /// One round: create the Lease, renew ours, or take over an expired one. Optimistic
    /// concurrency (resourceVersion) makes concurrent candidates safe: one wins, the others get
    /// a conflict.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let held = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0),
            );
            now.duration_since(t.0).as_secs_f64() > held.as_secs_f64()
        });
        if !ours && !expired {
            return Ok(false);
        }
        if !ours {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
