//! The operator's HTTP client for pulls from OCI registries, built so that a tenant's
//! `oci://` reference cannot turn the operator into a proxy or exhaust its memory:
//!
//! * every URL (the registry's, a token `realm`, each redirect hop) must pass
//!   [`RegistryRules::url`]: an allowed host and port, TLS unless the registry is insecure;
//! * names are resolved once by [`CheckedResolver`], and the connection goes to the addresses
//!   that were checked (a second lookup cannot rebind the name to `127.0.0.1`);
//! * connect and read timeouts, and [`PULL_DEADLINE`] on the whole pull;
//! * every body is read with a cap (manifest, token, error; the layer with the module limit),
//!   no proxy from the environment (it would bypass the address check).
//!
//! `oci-client` (used by `policy push`) cannot be given a resolver, a redirect policy or body
//! caps, hence this small client of the distribution API's two GETs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};

use super::access::{Refusal, RegistryRules, bounded};

/// Connecting to a registry (TCP and TLS) takes at most this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A registry that sends nothing for this long is given up on.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole pull (token, manifest, layer) takes at most this long.
pub const PULL_DEADLINE: Duration = Duration::from_secs(120);
/// The largest manifest read (a policy artifact's is well under 1 KiB).
pub const MAX_MANIFEST_BYTES: usize = 256 << 10;
/// The largest token response read.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;
/// The most of an error response read (and then cut to a few hundred characters).
pub const MAX_ERROR_BYTES: usize = 4 << 10;
/// Redirects followed per request (each to an allowed host).
const MAX_REDIRECTS: usize = 5;

/// Why one request failed.
#[derive(Debug)]
pub enum Failure {
    /// The operator's rules refused a host, an address or a redirect.
    Refused(String),
    /// A body was larger than its cap.
    TooLarge { what: &'static str, limit: usize },
    /// The registry could not be reached or broke off.
    Transport(String),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r.0)
    }
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        // A refusal of the resolver or of the redirect policy travels inside reqwest's error.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut parts: Vec<String> = Vec::new();
        while let Some(cause) = source {
            if let Some(refusal) = cause.downcast_ref::<Refusal>() {
                return Failure::Refused(refusal.0.clone());
            }
            let text = cause.to_string();
            if !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            source = cause.source();
        }
        let what = if e.is_timeout() {
            format!("no answer within the timeout: {}", parts.join(": "))
        } else {
            parts.join(": ")
        };
        Failure::Transport(bounded(&what))
    }
}

/// Resolves a registry's name once and hands reqwest only the addresses the rules allow, so
/// that what was checked is what is connected to.
struct CheckedResolver {
    rules: Arc<RegistryRules>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = self.rules.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match rules.address(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(why)) => Err(Box::new(Refusal(format!(
                    "{host} resolves only to addresses the operator may not reach: {why}"
                )))
                    as Box<dyn std::error::Error + Send + Sync>),
                (true, None) => Err(format!("{host} has no address").into()),
                (false, _) => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// An HTTP client bound to the operator's registry rules.
#[derive(Clone)]
pub struct RegistryHttp {
    rules: Arc<RegistryRules>,
    client: reqwest::Client,
}

impl RegistryHttp {
    pub fn new(rules: RegistryRules) -> anyhow::Result<RegistryHttp> {
        // reqwest uses the process's TLS provider: ring, as kube does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rules = Arc::new(rules);
        let redirect_rules = rules.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(Refusal(format!("more than {MAX_REDIRECTS} redirects")));
            }
            let downgrade = attempt.url().scheme() == "http"
                && attempt.previous().iter().any(|p| p.scheme() == "https");
            let checked = if downgrade {
                Err(Refusal("a redirect from HTTPS to plain HTTP".to_owned()))
            } else {
                redirect_rules.url(attempt.url())
            };
            match checked {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(Refusal(format!("refused a redirect: {why}"))),
            }
        });
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver {
                rules: rules.clone(),
            }))
            .redirect(redirects)
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("quarks-job/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(RegistryHttp { rules, client })
    }

    pub fn rules(&self) -> &RegistryRules {
        &self.rules
    }

    /// `GET url`, the URL checked first (an address literal never reaches the resolver).
    pub async fn get(
        &self,
        url: &Url,
        accept: Option<&str>,
        authorization: Option<&HeaderValue>,
    ) -> Result<reqwest::Response, Failure> {
        self.rules.url(url)?;
        let mut request = self.client.get(url.clone());
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        Ok(request.send().await?)
    }
}

/// Reads `response`'s body, refusing one larger than `limit` (announced or streamed).
pub async fn read_capped(
    mut response: reqwest::Response,
    what: &'static str,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Failure::TooLarge { what, limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(Failure::TooLarge { what, limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The start of an error response's body, as bounded text (what is left is never read).
pub async fn error_text(mut response: reqwest::Response) -> String {
    let status = response.status();
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BYTES);
    let text = String::from_utf8_lossy(&body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        bounded(&format!("HTTP {status}: {text}"))
    }
}

/// A `WWW-Authenticate` challenge: its scheme and parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `Bearer realm="…",service="…"` (one challenge; quoted or bare values).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_owned();
        let after = after.trim_start();
        let value;
        if let Some(quoted) = after.strip_prefix('"') {
            let mut text = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => text.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => text.push(c),
                }
            }
            value = text;
            rest = &quoted[end?..];
        } else {
            let end = after.find(',').unwrap_or(after.len());
            value = after[..end].trim().to_owned();
            rest = &after[end..];
        }
        params.push((key, value));
    }
    Some(Challenge {
        scheme: scheme.to_owned(),
        params,
    })
}

/// The challenge of a 401 answer, if it has one.
pub fn challenge_of(response: &reqwest::Response) -> Option<Challenge> {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quoted_and_bare_values() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example/token"));
        assert_eq!(c.param("service"), Some("registry.example"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull"));
        let c = parse_challenge(r#"Basic realm=registry, charset="UTF-8""#).unwrap();
        assert_eq!(c.scheme, "Basic");
        assert_eq!(c.param("realm"), Some("registry"));
        assert_eq!(c.param("charset"), Some("UTF-8"));
        let c = parse_challenge(r#"Bearer realm="a\"b""#).unwrap();
        assert_eq!(c.param("realm"), Some("a\"b"));
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
    }
}
