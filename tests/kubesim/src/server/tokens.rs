//! `POST serviceaccounts/NAME/token` (TokenRequest): what a kubelet calls for each projected
//! `serviceAccountToken` source. kubesim's tokens are its fixed per-account bearer tokens
//! ([`crate::service_account_token`]); the answer carries the requested spec back with an
//! expiration time, so the kubelet's refresh logic runs exactly as against a real server.

use serde_json::{Value, json};

use super::Cluster;
use super::error::{ApiError, ApiResult, Cause};
use super::http::{Response, json_response};

/// kube-apiserver's default and minimum token lifetimes.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The audience of tokens requested without one (kube-apiserver's `--api-audiences`).
const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// Answers a TokenRequest (`body`) for ServiceAccount `ns/name`.
pub fn create(cluster: &Cluster, ns: &str, name: &str, body: Value) -> ApiResult<Response> {
    if cluster.store.get("serviceaccounts", ns, name).is_none() {
        return Err(ApiError::not_found("", "serviceaccounts", name));
    }
    let mut spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            vec![Cause::new(
                "FieldValueInvalid",
                "spec.expirationSeconds",
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    spec["expirationSeconds"] = json!(expiration);
    let no_audience = spec
        .get("audiences")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    if no_audience {
        spec["audiences"] = json!([DEFAULT_AUDIENCE]);
    }
    Ok(json_response(
        201,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": spec,
            "status": {
                "token": crate::service_account_token(ns, name),
                "expirationTimestamp": super::meta::now_plus(expiration),
            },
        }),
    ))
}
