//! The operator key ([`crate::seal`]) lives in a Secret of the operator's own namespace: read
//! at start, created (with a fresh random key) when missing. All replicas and restarts share
//! it, so a hand-over signed before a restart, or by a run another replica started, is still
//! accepted. Only the operator reads it; its bytes are never logged.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use tracing::info;

use crate::names::FIELD_MANAGER;
use crate::seal::OperatorKey;

/// Name of the Secret holding the operator key, in the operator's namespace.
pub const OPERATOR_KEY_SECRET: &str = "quarks-job-operator-key";
/// Its data key.
const KEY: &str = "key";

/// Reads the operator key, or creates it once (a replica that loses the race reads the winner's).
pub async fn load_or_create(client: &kube::Client, namespace: &str) -> anyhow::Result<OperatorKey> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..2 {
        if let Some(secret) = secrets
            .get_opt(OPERATOR_KEY_SECRET)
            .await
            .with_context(|| format!("reading Secret {namespace}/{OPERATOR_KEY_SECRET}"))?
        {
            return key_of(&secret).with_context(|| {
                format!(
                    "Secret {namespace}/{OPERATOR_KEY_SECRET} does not hold a {}-byte `{KEY}`; \
                     delete it to have a new key made (runs in flight then lose their output)",
                    crate::seal::KEY_LEN
                )
            });
        }
        let key = OperatorKey::generate().context("generating the operator key")?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(OPERATOR_KEY_SECRET.to_owned()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                KEY.to_owned(),
                ByteString(key.as_bytes().to_vec()),
            )])),
            immutable: Some(true),
            type_: Some("Opaque".to_owned()),
            ..Default::default()
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match secrets.create(&params, &secret).await {
            Ok(_) => {
                info!(
                    namespace,
                    secret = OPERATOR_KEY_SECRET,
                    "created the operator key"
                );
                return Ok(key);
            }
            // Another replica made it first: read theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating Secret {namespace}/{OPERATOR_KEY_SECRET}"));
            }
        }
    }
    bail!("Secret {namespace}/{OPERATOR_KEY_SECRET} was neither readable nor creatable")
}

fn key_of(secret: &Secret) -> Option<OperatorKey> {
    OperatorKey::from_bytes(&secret.data.as_ref()?.get(KEY)?.0)
}
