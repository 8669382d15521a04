//! Projected service-account tokens: which ones a pod needs, getting them through
//! TokenRequest (`serviceaccounts/<sa>/token`, bound to the pod), and when to renew them.
//!
//! Owns the API side only; the files are written by [`super::volumes`] (first setup, from
//! [`super::env::ConfigSources::tokens`]) and [`super::volumes::rewrite_tokens`] (renewal).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};

use super::retry_transient;
use super::volumes::service_account_name;

/// kube-apiserver's default lifetime of a projected token without `expirationSeconds`.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Renew at this share of a token's lifetime, as the kubelet does (80 %).
const RENEW_AT_PERCENT: u32 = 80;

/// What distinguishes two token requests of one pod: the audience and the lifetime.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenKey {
    pub audience: Option<String>,
    pub expiration_seconds: i64,
}

impl TokenKey {
    pub fn of(source: &ServiceAccountTokenProjection) -> Self {
        TokenKey {
            audience: source.audience.clone().filter(|a| !a.is_empty()),
            expiration_seconds: source
                .expiration_seconds
                .unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        }
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("TokenRequest for service account {0} failed: {1}")]
    Api(String, #[source] kube::Error),
    #[error("TokenRequest for service account {0} was answered without a token")]
    NoToken(String),
}

/// A token as issued: its value and how long it is valid from the moment it was received.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub lifetime: Duration,
}

/// The pod's projected token sources, one per distinct request.
pub fn token_keys(pod: &Pod) -> Vec<TokenKey> {
    let mut keys: Vec<TokenKey> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()))
        .filter_map(|s| s.service_account_token.as_ref().map(TokenKey::of))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Requests every token the pod's projected volumes need.
pub async fn request_all(
    client: &Client,
    pod: &Pod,
) -> Result<BTreeMap<TokenKey, IssuedToken>, TokenError> {
    let mut out = BTreeMap::new();
    for key in token_keys(pod) {
        let token = request(client, pod, &key).await?;
        out.insert(key, token);
    }
    Ok(out)
}

/// One TokenRequest for the pod's service account, bound to the pod (the token stops
/// working when the pod is deleted, as with a real kubelet).
async fn request(client: &Client, pod: &Pod, key: &TokenKey) -> Result<IssuedToken, TokenError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: key.audience.iter().cloned().collect(),
            expiration_seconds: Some(key.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let sa = service_account_name(pod);
    let pp = PostParams::default();
    let answer = retry_transient(|| api.create_token_request(&sa, &pp, &request))
        .await
        .map_err(|e| TokenError::Api(sa.clone(), e))?;
    let status = answer.status.ok_or(TokenError::NoToken(sa))?;
    let until = status.expiration_timestamp.0;
    let lifetime =
        Duration::try_from(until.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO);
    Ok(IssuedToken {
        token: status.token,
        lifetime,
    })
}

/// When to renew the given tokens: at 80 % of the shortest lifetime (never in under a second,
/// so a server that issues expired tokens is not asked in a tight loop).
pub fn renew_after(tokens: &BTreeMap<TokenKey, IssuedToken>) -> Option<Duration> {
    tokens
        .values()
        .map(|t| (t.lifetime * RENEW_AT_PERCENT / 100).max(Duration::from_secs(1)))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_distinct_requests_and_renewal_is_at_80_percent() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "volumes": [
                {"name": "a", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"serviceAccountToken": {"path": "vault", "audience": "vault"}}]}},
                {"name": "b", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "t", "expirationSeconds": 3607}}]}}]}
        }))
        .expect("pod");
        let keys = token_keys(&pod);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].expiration_seconds, 3607);
        assert_eq!(keys[1].audience.as_deref(), Some("vault"));
        let tokens: BTreeMap<_, _> = keys
            .into_iter()
            .zip([100, 1000])
            .map(|(k, secs)| {
                let t = IssuedToken {
                    token: String::new(),
                    lifetime: Duration::from_secs(secs),
                };
                (k, t)
            })
            .collect();
        assert_eq!(renew_after(&tokens), Some(Duration::from_secs(80)));
        assert_eq!(renew_after(&BTreeMap::new()), None);
    }
}
