//! The HTTP server every controller runs: `/healthz` (the process is alive), `/readyz` (the CRD is
//! established and this replica's first watch sync is done) and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::ControllerMetrics;

/// Readiness flags, flipped by the controller as it starts.
#[derive(Debug, Default)]
pub struct Health {
    crd_established: AtomicBool,
    watch_synced: AtomicBool,
    standby: AtomicBool,
}

impl Health {
    /// Records that the CRD is established.
    pub fn set_crd_established(&self) {
        self.crd_established.store(true, Ordering::Release);
    }

    /// Records that the first watch sync finished.
    pub fn set_watch_synced(&self) {
        self.watch_synced.store(true, Ordering::Release);
    }

    /// Records whether this replica is a standby waiting for the leader lease.
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Release);
    }

    /// Ready means the CRD is established and, unless this replica is a standby (which is ready so that
    /// rollouts and `helm --wait` finish), the first watch sync is done; the reason names what is missing.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.crd_established.load(Ordering::Acquire) {
            return Err("KeystoneAPI CRD not established yet");
        }
        if self.standby.load(Ordering::Acquire) {
            return Ok(());
        }
        if !self.watch_synced.load(Ordering::Acquire) {
            return Err("initial watch sync not finished yet");
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: ControllerMetrics,
}

/// The server's routes.
pub fn router(health: Arc<Health>, metrics: ControllerMetrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .with_state(AppState { health, metrics })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.readiness() {
        Ok(()) => {
            state.metrics.ready.set(1);
            (StatusCode::OK, "ok".to_owned())
        }
        Err(why) => {
            state.metrics.ready.set(0);
            (StatusCode::SERVICE_UNAVAILABLE, why.to_owned())
        }
    }
}

async fn metrics_page(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// Binds `addr` (so a taken port fails at startup, not later) and returns the serving future, which ends when
/// `shutdown` completes.
pub async fn bind(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: ControllerMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let app = router(health, metrics);
    Ok(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await })
}
