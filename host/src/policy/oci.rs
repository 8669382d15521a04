//! Policies as OCI artifacts: one manifest whose config has the media type
//! [`WASM_CONFIG_MEDIA_TYPE`] and whose single layer is the component ([`WASM_LAYER_MEDIA_TYPE`]),
//! the layout the CNCF "wasm OCI artifact" convention uses (and `wkg`, `wasm-to-oci`, Kubewarden
//! understand). Pulling is size-capped and verified against the layer digest; `policy push`
//! publishes a component the same way.
//!
//! The transport is the maintained `oci-client` crate; this module only decides what to accept.

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use super::PolicyError;
use super::selection::OciRef;

/// Media type of the artifact's config blob.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the layer holding the component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// A client for `registries`; those in `insecure` are spoken to over plain HTTP (local
/// registries only: an explicit opt-in, never a fallback).
pub fn client(insecure: &[String]) -> Client {
    // reqwest (under oci-client) uses the process's TLS provider: ring, as kube does. Installing
    // it twice is harmless; another provider installed first is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
        ..Default::default()
    })
}

/// A pulled component and where it came from.
#[derive(Debug)]
pub struct Pulled {
    /// The manifest digest (a tag resolved to the digest it had).
    pub manifest_digest: String,
    pub bytes: Vec<u8>,
}

/// Pulls the component of `oci`: at most `max_bytes`, verified against the layer digest (and,
/// when pinned, against the manifest digest).
pub async fn pull(
    client: &Client,
    oci: &OciRef,
    auth: &RegistryAuth,
    max_bytes: u64,
) -> Result<Pulled, PolicyError> {
    let text = format!("oci://{}", oci.without_scheme());
    let reference: Reference = oci
        .without_scheme()
        .parse()
        .map_err(|e| PolicyError::Selection(format!("{text}: {e}")))?;
    let (manifest, manifest_digest) = client
        .pull_image_manifest(&reference, auth)
        .await
        .map_err(|e| classify(&text, e))?;
    if let Some(pinned) = &oci.digest
        && &manifest_digest != pinned
    {
        return Err(PolicyError::DigestMismatch {
            reference: text,
            expected: pinned.clone(),
            found: manifest_digest,
        });
    }
    let wasm: Vec<_> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER_MEDIA_TYPE)
        .collect();
    let [layer] = wasm.as_slice() else {
        return Err(PolicyError::ModuleMissing(format!(
            "{text} is not a policy artifact: it has {} layers of type {WASM_LAYER_MEDIA_TYPE} (one expected)",
            wasm.len()
        )));
    };
    let too_large = |size: u64| PolicyError::ModuleTooLarge {
        size,
        limit: max_bytes,
    };
    if u64::try_from(layer.size).unwrap_or(u64::MAX) > max_bytes {
        return Err(too_large(u64::try_from(layer.size).unwrap_or(u64::MAX)));
    }
    let mut stream = client
        .pull_blob_stream(&reference, *layer)
        .await
        .map_err(|e| classify(&text, e))?
        .stream;
    // The registry may lie about the size: count what arrives, stop at the cap.
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| PolicyError::Unavailable(format!("{text}: {e}")))?;
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large((bytes.len() + chunk.len()) as u64));
        }
        bytes.extend_from_slice(&chunk);
    }
    let found = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    if found != layer.digest {
        return Err(PolicyError::DigestMismatch {
            reference: text,
            expected: layer.digest.clone(),
            found,
        });
    }
    Ok(Pulled {
        manifest_digest,
        bytes,
    })
}

/// Publishes `component` at `reference` (`registry/repository:tag`); returns the manifest
/// digest to pin in selections.
pub async fn push(
    client: &Client,
    reference: &str,
    component: Vec<u8>,
    auth: &RegistryAuth,
) -> anyhow::Result<String> {
    let reference: Reference = reference
        .strip_prefix("oci://")
        .unwrap_or(reference)
        .parse()
        .map_err(|e| anyhow::anyhow!("{reference} is not an OCI reference: {e}"))?;
    let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(&component)));
    let layers = vec![ImageLayer::new(
        component,
        WASM_LAYER_MEDIA_TYPE.to_owned(),
        None,
    )];
    let config_json = serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    }))?;
    let config = Config::new(config_json, WASM_CONFIG_MEDIA_TYPE.to_owned(), None);
    let manifest = OciImageManifest::build(&layers, &config, None);
    client
        .push(&reference, &layers, config, auth, Some(manifest))
        .await?;
    Ok(client.fetch_manifest_digest(&reference, auth).await?)
}

/// Credentials for `registry` from a `kubernetes.io/dockerconfigjson` Secret's
/// `.dockerconfigjson`; anonymous when it has none for that registry.
pub fn registry_auth(dockerconfigjson: &[u8], registry: &str) -> Result<RegistryAuth, String> {
    #[derive(serde::Deserialize)]
    struct DockerConfig {
        #[serde(default)]
        auths: std::collections::BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        username: Option<String>,
        password: Option<String>,
        auth: Option<String>,
    }
    let config: DockerConfig = serde_json::from_slice(dockerconfigjson)
        .map_err(|e| format!("not a .dockerconfigjson: {e}"))?;
    let entry = config.auths.iter().find(|(host, _)| {
        let host = host
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        host.trim_end_matches('/') == registry
    });
    let Some((_, entry)) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic(user.clone(), password.clone()));
    }
    let encoded = entry
        .auth
        .as_deref()
        .ok_or("the entry has neither username/password nor auth")?;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "auth is not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "auth is not UTF-8")?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or("auth is not <user>:<password>")?;
    Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
}

/// Sorts a registry failure into "not there" and "could not ask".
fn classify(reference: &str, error: OciDistributionError) -> PolicyError {
    match &error {
        OciDistributionError::ImageManifestNotFoundError(_) => {
            PolicyError::ModuleMissing(format!("{reference}: {error}"))
        }
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            }) =>
        {
            PolicyError::ModuleMissing(format!("{reference}: {error}"))
        }
        OciDistributionError::ServerError { code: 404, .. } => {
            PolicyError::ModuleMissing(format!("{reference}: {error}"))
        }
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => {
            PolicyError::Unavailable(format!("{reference}: not allowed: {error}"))
        }
        _ => PolicyError::Unavailable(format!("{reference}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_matching_dockerconfigjson_entry() {
        let config = br#"{"auths": {
            "https://registry.example:5000/": {"username": "u", "password": "p"},
            "ghcr.io": {"auth": "YWxpY2U6czNjcjN0"}
        }}"#;
        assert!(matches!(
            registry_auth(config, "registry.example:5000"),
            Ok(RegistryAuth::Basic(u, p)) if u == "u" && p == "p"
        ));
        assert!(matches!(
            registry_auth(config, "ghcr.io"),
            Ok(RegistryAuth::Basic(u, p)) if u == "alice" && p == "s3cr3t"
        ));
        assert!(matches!(
            registry_auth(config, "quay.io"),
            Ok(RegistryAuth::Anonymous)
        ));
        assert!(registry_auth(b"{", "x").is_err());
    }
}
