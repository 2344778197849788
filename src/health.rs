//! The bot's own HTTP endpoints, up from the first moment of `serve`:
//! `/healthz` (the process answers: liveness), `/readyz` (this replica leads
//! and has resumed the journal: readiness, so a Service sends Slack's
//! Events API traffic only to the leader) and `/metrics` (Prometheus).
//! Slack's routes are added once the replica is ready; until then they
//! answer 503, which Slack retries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::metrics::Metrics;

pub struct Health {
    ready: AtomicBool,
    metrics: Arc<Metrics>,
    slack_events: OnceLock<Router>,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            ready: AtomicBool::new(false),
            metrics,
            slack_events: OnceLock::new(),
        })
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.metrics.set_ready(true);
    }

    /// Serves Slack's Events API routes from now on.
    pub fn take_slack_events(&self, router: Router) {
        let _ = self.slack_events.set(router);
    }
}

/// The routes, for a server or a test.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(slack)
        .with_state(health)
}

/// Binds `addr` (an error if it cannot) and serves in a task.
pub async fn listen(addr: SocketAddr, health: Arc<Health>) -> Result<JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "listening (health, metrics, Slack Events API)");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(health)).await {
            tracing::error!(%error, "HTTP server failed");
        }
    }))
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    if health.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not leading yet").into_response()
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.render(),
    )
        .into_response()
}

async fn slack(State(health): State<Arc<Health>>, request: Request<Body>) -> Response {
    match health.slack_events.get() {
        Some(router) => match router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response(),
    }
}
