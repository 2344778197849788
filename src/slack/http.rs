//! The Events API over HTTP: `/slack/commands` and `/slack/events`, both
//! signed by Slack. A request whose signature is missing, stale (older than
//! five minutes) or wrong gets 401 and does nothing; the comparison is
//! constant-time (slack-morphism's verifier).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

use super::intake::{Intake, SlashCommand};
use super::Secret;

struct HttpState {
    intake: Arc<Intake>,
    verifier: SlackEventSignatureVerifier,
}

/// The routes, for a server or a test.
pub fn router(intake: Arc<Intake>, signing_secret: &Secret) -> Router {
    let state = Arc::new(HttpState {
        intake,
        verifier: SlackEventSignatureVerifier::new(&SlackSigningSecret::new(
            signing_secret.expose().into(),
        )),
    });
    Router::new()
        .route("/slack/commands", post(command))
        .route("/slack/events", post(event))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    intake: Arc<Intake>,
    signing_secret: &Secret,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "listening for the Slack Events API");
    axum::serve(listener, router(intake, signing_secret))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("HTTP server failed: {e}"))
}

/// Why a request was turned away, before any work.
type Rejection = (StatusCode, &'static str);

fn verified<'b>(
    state: &HttpState,
    headers: &HeaderMap,
    body: &'b Bytes,
) -> Result<&'b str, Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
        header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
    ) else {
        return Err((StatusCode::UNAUTHORIZED, "missing Slack signature"));
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return Err((StatusCode::BAD_REQUEST, "body is not UTF-8"));
    };
    match state.verifier.verify(signature, text, timestamp) {
        Ok(()) => Ok(text),
        Err(error) => {
            tracing::warn!(%error, "refused a request with a bad Slack signature");
            Err((StatusCode::UNAUTHORIZED, "bad Slack signature"))
        }
    }
}

/// The form Slack posts for a slash command (only the fields we use).
#[derive(Deserialize)]
struct CommandForm {
    user_id: String,
    channel_id: String,
    #[serde(default)]
    text: String,
    trigger_id: String,
}

async fn command(State(state): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
    let text = match verified(&state, &headers, &body) {
        Ok(text) => text,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(form) = serde_urlencoded::from_str::<CommandForm>(text) else {
        return (StatusCode::BAD_REQUEST, "not a slash command form").into_response();
    };
    let reply = state.intake.command(SlashCommand {
        user: form.user_id,
        channel: form.channel_id,
        text: form.text,
        trigger_id: form.trigger_id,
    });
    Json(serde_json::json!({ "response_type": "ephemeral", "text": reply.text })).into_response()
}

async fn event(State(state): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
    let text = match verified(&state, &headers, &body) {
        Ok(text) => text,
        Err(refusal) => return refusal.into_response(),
    };
    match serde_json::from_str::<SlackPushEvent>(text) {
        Ok(SlackPushEvent::UrlVerification(challenge)) => {
            Json(serde_json::json!({ "challenge": challenge.challenge })).into_response()
        }
        Ok(SlackPushEvent::EventCallback(callback)) => {
            // Retries (X-Slack-Retry-Num) carry the same event_id; the engine
            // acts on an id once.
            state.intake.event(callback);
            StatusCode::OK.into_response()
        }
        Ok(SlackPushEvent::AppRateLimited(_)) => {
            tracing::warn!("Slack says the app is rate limited; events may be dropped");
            StatusCode::OK.into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "malformed event body");
            (StatusCode::BAD_REQUEST, "malformed event").into_response()
        }
    }
}
