//! The kubelet's HTTPS endpoint, as far as the API server uses it for logs:
//! `GET /containerLogs/{namespace}/{pod}/{container}` with the query parameters `pods/log`
//! forwards (`follow`, `tailLines`, `limitBytes`, `previous`), read from the kubelet's log
//! files through [`crate::kubelet::logs`] exactly like kubesim's own `pods/log`.
//!
//! Serves on 127.0.0.1 with a self-signed certificate made at start: kube-apiserver does
//! not verify kubelet serving certificates (no `--kubelet-certificate-authority`), and
//! client certificates are not asked for (anyone on loopback may read logs).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use crate::kubelet::logs::{self, LogQuery};
use crate::server::http::{Response, full, stream_response};

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LogServerError {
    #[error("generating the serving certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("configuring TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// What every request needs.
struct Context {
    client: Client,
    state_dir: PathBuf,
    shutdown: CancellationToken,
}

/// A TLS configuration with a fresh self-signed certificate for 127.0.0.1 and `localhost`.
fn tls_config() -> Result<rustls::ServerConfig, LogServerError> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Prepares TLS; the returned future serves `listener` until `shutdown`.
pub fn serve(
    listener: TcpListener,
    client: Client,
    state_dir: PathBuf,
    shutdown: CancellationToken,
) -> Result<impl Future<Output = ()>, LogServerError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config()?));
    let ctx = Arc::new(Context {
        client,
        state_dir,
        shutdown,
    });
    Ok(async move {
        loop {
            let accepted = tokio::select! {
                () = ctx.shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "log endpoint accept failed");
                    continue;
                }
            };
            let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!(error = %e, "log endpoint TLS handshake failed");
                        return;
                    }
                };
                let shutdown = ctx.shutdown.clone();
                let svc = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    res = conn.as_mut() => if let Err(e) = res {
                        tracing::debug!(error = %e, "log endpoint connection ended with error");
                    },
                    () = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    })
}

fn text(code: StatusCode, body: impl Into<bytes::Bytes>) -> Response {
    let mut r = hyper::Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The pod as JSON, `None` if it is gone.
async fn pod_json(client: &Client, namespace: &str, name: &str) -> Result<Option<Value>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(p)) => serde_json::to_value(p).map(Some).map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

async fn handle(ctx: &Arc<Context>, req: hyper::Request<hyper::body::Incoming>) -> Response {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let parts: Vec<&str> = req.uri().path().split('/').collect();
    let ["", "containerLogs", namespace, pod, container] = parts.as_slice() else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let (namespace, pod, container) = (
        namespace.to_string(),
        pod.to_string(),
        container.to_string(),
    );
    let params: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let query = LogQuery::parse(|k| {
        params
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    });
    let pod_value = match pod_json(&ctx.client, &namespace, &pod).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("pod \"{pod}\" in namespace \"{namespace}\" not found"),
            );
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let path = logs::container_log_path(&ctx.state_dir, &namespace, &pod, &container);
    let start = match logs::open(&path, &query, &pod_value, &container).await {
        Ok(s) => s,
        Err(e) if e.is_bad_request() => return text(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if !query.follow {
        return text(StatusCode::OK, start.first);
    }
    let client = ctx.client.clone();
    let done = move || {
        let (client, namespace, pod, container) = (
            client.clone(),
            namespace.clone(),
            pod.clone(),
            container.clone(),
        );
        async move {
            match pod_json(&client, &namespace, &pod).await {
                Ok(Some(p)) => logs::container_terminated(&p, &container),
                Ok(None) => true,
                // The API is unreachable for now: keep following.
                Err(_) => false,
            }
        }
    };
    let rx = logs::follow(path, start, done, ctx.shutdown.clone());
    stream_response("text/plain", rx)
}
