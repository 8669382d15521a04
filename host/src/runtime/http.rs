//! The operator's HTTP endpoints: `/healthz` (the process serves), `/readyz` (caches synced and,
//! with leader election, either leading or standing by; failing with the reason while the
//! operator refuses to act, e.g. on a served CRD that would prune its status) and `/metrics`
//! (Prometheus).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    /// Why the operator refuses to act (not ready, whatever `ready` says); `None` normally.
    pub refused: Arc<Mutex<Option<String>>>,
}

impl HttpState {
    /// Sets (or, with `None`, clears) why the operator refuses to act.
    pub fn refuse(&self, why: Option<String>) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }
}

pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, String) {
    let refused = state
        .refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(why) = refused {
        (StatusCode::SERVICE_UNAVAILABLE, why)
    } else if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "caches not synced yet".to_owned(),
        )
    }
}

async fn metrics(State(state): State<HttpState>) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
