//! A registry that misbehaves, for the tests of the operator's registry rules (issue 15): an
//! axum server on loopback, and a second one standing for another host.

/// A registry that misbehaves, on loopback (plain HTTP), and a second server standing for
/// "another host" (another port: for the operator's rules a different registry, never
/// allowed). Repositories:
/// * `realm`: asks for a token from a realm on the other host;
/// * `redirect`: redirects the manifest to the other host;
/// * `huge`: a manifest that streams 4 GiB;
/// * `noisy`: a 500 whose body is 1 MiB of text.
///
/// The other host counts the requests it gets (there must be none).
pub struct HostileRegistry {
    pub addr: String,
    pub elsewhere: String,
    pub elsewhere_hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Bytes of the `huge` manifest sent before the client hung up.
    pub streamed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl HostileRegistry {
    pub async fn start() -> HostileRegistry {
        use axum::body::{Body, Bytes};
        use axum::http::{StatusCode, Uri, header};
        use axum::response::Response;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};

        static CHUNK: [u8; 64 << 10] = [b' '; 64 << 10];
        let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = main.local_addr().unwrap().to_string();
        let elsewhere = other.local_addr().unwrap().to_string();
        let elsewhere_hits = Arc::new(AtomicU64::new(0));
        let streamed = Arc::new(AtomicU64::new(0));

        let hostile = {
            let elsewhere = elsewhere.clone();
            let streamed = streamed.clone();
            move |uri: Uri| {
                let elsewhere = elsewhere.clone();
                let streamed = streamed.clone();
                async move {
                    let path = uri.path();
                    let builder = Response::builder();
                    if path == "/v2/" {
                        return builder.body(Body::from("{}")).unwrap();
                    }
                    let repository = path
                        .strip_prefix("/v2/")
                        .and_then(|p| p.split_once("/manifests/"))
                        .map(|(r, _)| r);
                    match repository {
                        Some("realm") => builder
                            .status(StatusCode::UNAUTHORIZED)
                            .header(
                                header::WWW_AUTHENTICATE,
                                format!(
                                    r#"Bearer realm="http://{elsewhere}/token",service="hostile""#
                                ),
                            )
                            .body(Body::empty())
                            .unwrap(),
                        Some("redirect") => builder
                            .status(StatusCode::TEMPORARY_REDIRECT)
                            .header(
                                header::LOCATION,
                                format!("http://{elsewhere}/v2/redirect/manifests/v1"),
                            )
                            .body(Body::empty())
                            .unwrap(),
                        Some("huge") => {
                            let chunks = (0..(4u64 << 30) / CHUNK.len() as u64).map(move |_| {
                                streamed.fetch_add(CHUNK.len() as u64, Ordering::Relaxed);
                                Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK))
                            });
                            builder
                                .header(
                                    header::CONTENT_TYPE,
                                    "application/vnd.oci.image.manifest.v1+json",
                                )
                                .body(Body::from_stream(futures::stream::iter(chunks)))
                                .unwrap()
                        }
                        Some("noisy") => builder
                            .status(StatusCode::INTERNAL_SERVER_ERROR)
                            .body(Body::from("error ".repeat((1 << 20) / 6)))
                            .unwrap(),
                        _ => builder
                            .status(StatusCode::NOT_FOUND)
                            .body(Body::empty())
                            .unwrap(),
                    }
                }
            }
        };
        let counting = {
            let hits = elsewhere_hits.clone();
            move || {
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::Relaxed);
                    r#"{"token":"from-elsewhere"}"#
                }
            }
        };
        let servers = vec![
            tokio::spawn(async move {
                let _ = axum::serve(main, axum::Router::new().fallback(hostile)).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(other, axum::Router::new().fallback(counting)).await;
            }),
        ];
        HostileRegistry {
            addr,
            elsewhere,
            elsewhere_hits,
            streamed,
            servers,
        }
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}
