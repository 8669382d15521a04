//! A run's hand-over credentials: what the output helper container — and only it — needs to
//! hand the run's output over. API effects.
//!
//! Before a run's Job with output is created, the operator writes one Secret for the run,
//! `<job>-handover-<random>`, mounted into the helper container alone
//! ([`super::pod::HANDOVER_DIR`]):
//!
//! * `run-key`: the run's key ([`crate::seal::RunKey`], derived from the operator key), which
//!   signs the staging Secrets, so that no one else's staging Secret is accepted;
//! * `kubeconfig`: the API server as the operator reaches it and a TokenRequest token of the
//!   helper's ServiceAccount, bound to this very Secret (deleting the Secret revokes it) and
//!   valid for the helper's deadline plus [`TOKEN_SLACK_SECONDS`].
//!
//! The pod itself runs as the template's ServiceAccount, so the user's containers get none of
//! this. Once the Job exists the Secret is owned by it alone (the garbage collector deletes
//! it, and so revokes the token, with the Job).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::pod::HELPER_SERVICE_ACCOUNT;
use crate::crd::QuarksJob;
use crate::names::FIELD_MANAGER;
use crate::names::job::{QJOB_NAME_LABEL, qjob_name_label_value};
use crate::seal::{OperatorKey, RunIdentity};

/// Label marking hand-over Secrets.
pub const HANDOVER_LABEL: &str = "quarks.cloudfoundry.org/output-handover";
/// Key of the run key in the hand-over Secret.
pub const RUN_KEY_KEY: &str = "run-key";
/// Key of the helper's kubeconfig in the hand-over Secret.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// The helper's token outlives its deadline by this much (the pod may wait to be scheduled).
pub const TOKEN_SLACK_SECONDS: u64 = 3600;

/// How the operator reaches the API server, as the helper should (same address, same trust).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiEndpoint {
    pub server: String,
    /// The CA certificates the operator trusts, PEM.
    pub ca_pem: Option<String>,
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
}

impl ApiEndpoint {
    pub fn of(config: &kube::Config) -> ApiEndpoint {
        ApiEndpoint {
            server: config
                .cluster_url
                .to_string()
                .trim_end_matches('/')
                .to_owned(),
            ca_pem: config
                .root_cert
                .as_ref()
                .map(|certs| certs.iter().map(|der| pem_certificate(der)).collect()),
            tls_server_name: config.tls_server_name.clone(),
            insecure_skip_tls_verify: config.accept_invalid_certs,
        }
    }
}

/// What the operator needs to set up hand-overs: its key and the API server's address.
#[derive(Clone, Debug)]
pub struct HandoverSetup {
    pub key: OperatorKey,
    pub endpoint: ApiEndpoint,
}

fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The helper's kubeconfig: `endpoint` and `token`.
pub fn kubeconfig(endpoint: &ApiEndpoint, token: &str) -> Result<String, serde_yaml::Error> {
    use base64::Engine as _;
    let mut cluster = serde_json::json!({"server": endpoint.server});
    if let Some(ca) = &endpoint.ca_pem {
        cluster["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(ca).into();
    }
    if let Some(name) = &endpoint.tls_server_name {
        cluster["tls-server-name"] = name.clone().into();
    }
    if endpoint.insecure_skip_tls_verify {
        cluster["insecure-skip-tls-verify"] = true.into();
    }
    serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "helper", "user": {"token": token}}],
        "contexts": [{"name": "helper", "context": {"cluster": "cluster", "user": "helper"}}],
        "current-context": "helper",
    }))
}

/// Writes the hand-over Secret of run Job `job_name` (see the module docs); returns its name.
pub async fn create(
    client: &kube::Client,
    qjob: &QuarksJob,
    job_name: &str,
    setup: &HandoverSetup,
    deadline_seconds: u64,
) -> Result<String, kube::Error> {
    let namespace = qjob.namespace().unwrap_or_default();
    let qjob_uid = qjob.uid().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let run_key = setup.key.run_key(RunIdentity {
        namespace: &namespace,
        qjob_uid: &qjob_uid,
        job_name,
    });
    let secret = Secret {
        metadata: ObjectMeta {
            generate_name: Some(format!("{job_name}-handover-")),
            labels: Some(BTreeMap::from([
                (HANDOVER_LABEL.to_owned(), "true".to_owned()),
                (
                    QJOB_NAME_LABEL.to_owned(),
                    qjob_name_label_value(&qjob.name_any()),
                ),
            ])),
            // Until the Job exists: gone with the QuarksJob if the Job is never created.
            owner_references: Some(vec![OwnerReference {
                api_version: QuarksJob::api_version(&()).into_owned(),
                kind: QuarksJob::kind(&()).into_owned(),
                name: qjob.name_any(),
                uid: qjob_uid.clone(),
                controller: Some(false),
                block_owner_deletion: Some(false),
            }]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            RUN_KEY_KEY.to_owned(),
            ByteString(run_key.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    };
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let created = secrets.create(&params, &secret).await?;
    let name = created.name_any();
    let written = async {
        let token = helper_token(client, &namespace, &created, deadline_seconds).await?;
        let kubeconfig =
            kubeconfig(&setup.endpoint, &token).map_err(|e| kube::Error::Service(Box::new(e)))?;
        let patch =
            serde_json::json!({"data": {KUBECONFIG_KEY: ByteString(kubeconfig.into_bytes())}});
        secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    };
    match written.await {
        Ok(_) => Ok(name),
        Err(e) => {
            discard(client, &namespace, &name).await;
            Err(e)
        }
    }
}

/// A token of the helper's ServiceAccount bound to the hand-over Secret.
async fn helper_token(
    client: &kube::Client,
    namespace: &str,
    bound_to: &Secret,
    deadline_seconds: u64,
) -> Result<String, kube::Error> {
    let request = TokenRequest {
        metadata: ObjectMeta::default(),
        spec: TokenRequestSpec {
            // The API server's own audience: the helper talks to it, and to nothing else.
            audiences: Vec::new(),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
                name: bound_to.metadata.name.clone(),
                uid: bound_to.metadata.uid.clone(),
            }),
            expiration_seconds: Some(
                i64::try_from(deadline_seconds.saturating_add(TOKEN_SLACK_SECONDS))
                    .unwrap_or(i64::MAX),
            ),
        },
        status: None,
    };
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_subresource(
            "token",
            HELPER_SERVICE_ACCOUNT,
            &PostParams::default(),
            &request,
        )
        .await?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| kube::Error::Service("TokenRequest answered without a token".into()))
}

/// Hands the hand-over Secret to the run's Job: owned by it alone, deleted with it.
pub async fn own_by_job(
    client: &kube::Client,
    name: &str,
    job: &impl Resource,
) -> Result<(), kube::Error> {
    let namespace = job.namespace().unwrap_or_default();
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.name_any(),
        uid: job.uid().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    };
    let patch = serde_json::json!({"metadata": {"ownerReferences": [owner]}});
    // Metadata only in the response: the hand-over's key and token do not come back.
    Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), &namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Deletes a hand-over Secret no Job will use (best effort: the QuarksJob owns it anyway).
pub async fn discard(client: &kube::Client, namespace: &str, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Err(error) = secrets.delete(name, &DeleteParams::default()).await {
        tracing::debug!(%error, secret = name, "could not delete an unused hand-over Secret");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helpers_kubeconfig_reaches_the_api_server_as_the_operator_does() {
        let endpoint = ApiEndpoint {
            server: "https://10.96.0.1:443".into(),
            ca_pem: Some(pem_certificate(b"der bytes")),
            tls_server_name: None,
            insecure_skip_tls_verify: false,
        };
        let text = kubeconfig(&endpoint, "tok").unwrap();
        let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.96.0.1:443"));
        assert!(cluster.certificate_authority_data.is_some());
        assert_eq!(parsed.current_context.as_deref(), Some("helper"),);
        let pem = endpoint.ca_pem.unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE-----\n")
                && pem.ends_with("-----END CERTIFICATE-----\n")
        );
    }
}
