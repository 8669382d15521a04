//! Policies as OCI artifacts: one manifest whose config has the media type
//! [`WASM_CONFIG_MEDIA_TYPE`] and whose single layer is the component ([`WASM_LAYER_MEDIA_TYPE`]),
//! the layout the CNCF "wasm OCI artifact" convention uses (and `wkg`, `wasm-to-oci`, Kubewarden
//! understand). Pulling is size-capped and verified against the layer digest; `policy push`
//! publishes a component the same way.
//!
//! Pulls (the operator, on a tenant's reference) go through [`transport`] under the operator's
//! [`access`] rules; pushes (`policy push`, run by a person) use the maintained `oci-client`.

pub mod access;
pub mod transport;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use reqwest::header::HeaderValue;
use reqwest::{Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use super::PolicyError;
use super::selection::OciRef;
pub use access::RegistryRules;
use transport::{
    Failure, MAX_MANIFEST_BYTES, MAX_TOKEN_BYTES, PULL_DEADLINE, RegistryHttp, read_capped,
};

/// Media type of the artifact's config blob.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the layer holding the component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// A client for `policy push`; registries in `insecure` are spoken to over plain HTTP (local
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

/// Manifest media types asked for (an index is recognised to refuse it clearly).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json";

/// The parts of an image manifest a policy artifact needs.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: i64,
}

/// Pulls policy artifacts from the registries the operator allows, within its limits (see
/// [`access`] and [`transport`]).
#[derive(Clone)]
pub struct Puller {
    http: RegistryHttp,
}

impl Puller {
    pub fn new(rules: RegistryRules) -> anyhow::Result<Puller> {
        Ok(Puller {
            http: RegistryHttp::new(rules)?,
        })
    }

    /// Pulls the component of `oci`: at most `max_bytes`, verified against the layer digest
    /// (and, when pinned, against the manifest digest), within [`PULL_DEADLINE`]. Every error
    /// text is bounded: registry-provided text reaches status and Events.
    pub async fn pull(
        &self,
        oci: &OciRef,
        auth: &RegistryAuth,
        max_bytes: u64,
    ) -> Result<Pulled, PolicyError> {
        let text = access::bounded(&format!("oci://{}", oci.without_scheme()));
        match tokio::time::timeout(PULL_DEADLINE, self.pull_within(&text, oci, auth, max_bytes))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(PolicyError::Unavailable(format!(
                "{text}: the pull did not complete within {PULL_DEADLINE:?}"
            ))),
        }
    }

    async fn pull_within(
        &self,
        text: &str,
        oci: &OciRef,
        auth: &RegistryAuth,
        max_bytes: u64,
    ) -> Result<Pulled, PolicyError> {
        let reference: Reference = oci
            .without_scheme()
            .parse()
            .map_err(|e| PolicyError::Selection(access::bounded(&format!("{text}: {e}"))))?;
        let registry = reference.resolve_registry().to_owned();
        let scheme = self.http.rules().scheme_for(&registry);
        let url = |path: String| {
            Url::parse(&format!("{scheme}://{registry}/v2/{path}"))
                .map_err(|e| PolicyError::Selection(access::bounded(&format!("{text}: {e}"))))
        };
        let mut session = Session::new(&self.http, auth, reference.repository());
        let wanted = oci
            .digest
            .as_deref()
            .or(oci.tag.as_deref())
            .unwrap_or("latest");
        let manifest_url = url(format!("{}/manifests/{wanted}", reference.repository()))?;
        let response = session
            .get(&manifest_url, Some(MANIFEST_ACCEPT))
            .await
            .map_err(|f| failure(text, f))?;
        let response = successful(text, response).await?;
        let body = read_capped(response, "manifest", MAX_MANIFEST_BYTES)
            .await
            .map_err(|f| failure(text, f))?;
        let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if let Some(pinned) = &oci.digest
            && &manifest_digest != pinned
        {
            return Err(PolicyError::DigestMismatch {
                reference: text.to_owned(),
                expected: pinned.clone(),
                found: manifest_digest,
            });
        }
        let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| {
            PolicyError::ModuleMissing(access::bounded(&format!(
                "{text} is not an OCI image manifest: {e}"
            )))
        })?;
        if manifest.manifests.is_some()
            || manifest
                .media_type
                .as_deref()
                .is_some_and(|t| t.contains("index") || t.contains("list"))
        {
            return Err(PolicyError::ModuleMissing(format!(
                "{text} is an image index, not a policy artifact (select the artifact's own manifest)"
            )));
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
        if crate::policy::PolicyDigest::parse(&layer.digest).is_none() {
            return Err(PolicyError::ModuleMissing(access::bounded(&format!(
                "{text}: the layer digest {:?} is not sha256:<64 hex digits>",
                layer.digest
            ))));
        }
        let too_large = |size: u64| PolicyError::ModuleTooLarge {
            size,
            limit: max_bytes,
        };
        let announced = u64::try_from(layer.size).unwrap_or(u64::MAX);
        if announced > max_bytes {
            return Err(too_large(announced));
        }
        let blob_url = url(format!("{}/blobs/{}", reference.repository(), layer.digest))?;
        let response = session
            .get(&blob_url, None)
            .await
            .map_err(|f| failure(text, f))?;
        let mut response = successful(text, response).await?;
        // The registry may lie about the size: count what arrives, stop at the cap.
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failure(text, e.into()))?
        {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_large((bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        let found = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if found != layer.digest {
            return Err(PolicyError::DigestMismatch {
                reference: text.to_owned(),
                expected: layer.digest.clone(),
                found,
            });
        }
        Ok(Pulled {
            manifest_digest,
            bytes,
        })
    }
}

/// The requests of one pull, with the credentials the registry asked for.
struct Session<'a> {
    http: &'a RegistryHttp,
    auth: &'a RegistryAuth,
    repository: &'a str,
    authorization: Option<HeaderValue>,
    challenged: bool,
}

impl<'a> Session<'a> {
    fn new(http: &'a RegistryHttp, auth: &'a RegistryAuth, repository: &'a str) -> Self {
        let authorization = match auth {
            RegistryAuth::Bearer(token) => HeaderValue::from_str(&format!("Bearer {token}")).ok(),
            _ => None,
        };
        Session {
            http,
            auth,
            repository,
            authorization,
            challenged: false,
        }
    }

    /// `GET url`; on a first 401, answers the registry's challenge and asks again.
    async fn get(&mut self, url: &Url, accept: Option<&str>) -> Result<Response, Failure> {
        let response = self
            .http
            .get(url, accept, self.authorization.as_ref())
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED || self.challenged {
            return Ok(response);
        }
        self.challenged = true;
        let Some(challenge) = transport::challenge_of(&response) else {
            return Ok(response);
        };
        let Some(authorization) = self.answer(&challenge).await? else {
            return Ok(response);
        };
        self.authorization = Some(authorization);
        self.http
            .get(url, accept, self.authorization.as_ref())
            .await
    }

    /// The `Authorization` answering `challenge`: Basic with the pull secret's credentials, or
    /// a token from the realm, which must be an allowed registry host too.
    async fn answer(
        &self,
        challenge: &transport::Challenge,
    ) -> Result<Option<HeaderValue>, Failure> {
        let basic = match self.auth {
            RegistryAuth::Basic(user, password) => {
                use base64::Engine as _;
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                HeaderValue::from_str(&format!("Basic {encoded}")).ok()
            }
            _ => None,
        };
        if challenge.scheme.eq_ignore_ascii_case("basic") {
            return Ok(basic);
        }
        if !challenge.scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let realm = challenge
            .param("realm")
            .ok_or_else(|| Failure::Transport("a Bearer challenge without a realm".into()))?;
        let mut realm_url = Url::parse(realm).map_err(|e| {
            Failure::Transport(format!("the token realm {}: {e}", access::bounded(realm)))
        })?;
        {
            let mut query = realm_url.query_pairs_mut();
            query.append_pair("scope", &format!("repository:{}:pull", self.repository));
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
        }
        let response = self
            .http
            .get(&realm_url, None, basic.as_ref())
            .await
            .map_err(|f| match f {
                Failure::Refused(why) => {
                    Failure::Refused(format!("the token realm {}: {why}", access::bounded(realm)))
                }
                other => other,
            })?;
        if !response.status().is_success() {
            return Err(Failure::Transport(format!(
                "the token request was refused: {}",
                transport::error_text(response).await
            )));
        }
        let body = read_capped(response, "token response", MAX_TOKEN_BYTES).await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = serde_json::from_slice(&body)
            .map_err(|e| Failure::Transport(format!("the token response is not JSON: {e}")))?;
        let token = token
            .token
            .or(token.access_token)
            .ok_or_else(|| Failure::Transport("the token response has no token".into()))?;
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map(Some)
            .map_err(|_| Failure::Transport("the token is not a valid header value".into()))
    }
}

/// `response` when it succeeded; else the registry's answer as a bounded error ("not there"
/// or "could not ask").
async fn successful(text: &str, response: Response) -> Result<Response, PolicyError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let answer = transport::error_text(response).await;
    Err(match status {
        StatusCode::NOT_FOUND => {
            PolicyError::ModuleMissing(access::bounded(&format!("{text}: {answer}")))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            PolicyError::Unavailable(access::bounded(&format!("{text}: not allowed: {answer}")))
        }
        _ => PolicyError::Unavailable(access::bounded(&format!("{text}: {answer}"))),
    })
}

/// A failed request as the namespace's policy error, its text bounded.
fn failure(text: &str, failure: Failure) -> PolicyError {
    match failure {
        Failure::Refused(why) => {
            PolicyError::RegistryRefused(access::bounded(&format!("{text}: {why}")))
        }
        Failure::TooLarge { what, limit } => PolicyError::RegistryRefused(format!(
            "{text}: the registry sent a {what} larger than {limit} bytes"
        )),
        Failure::Transport(why) => {
            PolicyError::Unavailable(access::bounded(&format!("{text}: {why}")))
        }
    }
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
