//! The Events API over HTTP: `/slack/commands` and `/slack/events`, both
//! signed by Slack. A request whose signature is missing, stale (older than
//! five minutes) or wrong gets 401 and does nothing; the comparison is
//! constant-time (slack-morphism's verifier).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

use super::decode::{self, Inbound};
use super::intake::Intake;
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
        .with_state(state)
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

async fn command(State(state): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
    let text = match verified(&state, &headers, &body) {
        Ok(text) => text,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(command) = decode::slash_command_form(text) else {
        return (StatusCode::BAD_REQUEST, "not a slash command form").into_response();
    };
    let reply = state.intake.command(command);
    Json(serde_json::json!({ "response_type": "ephemeral", "text": reply.text })).into_response()
}

async fn event(State(state): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
    let text = match verified(&state, &headers, &body) {
        Ok(text) => text,
        Err(refusal) => return refusal.into_response(),
    };
    match decode::push_event(text) {
        Ok(Inbound::UrlVerification { challenge }) => {
            Json(serde_json::json!({ "challenge": challenge })).into_response()
        }
        Ok(Inbound::Reaction(reaction)) => {
            // Retries (X-Slack-Retry-Num) carry the same event_id; the engine
            // acts on an id once.
            state.intake.reaction(reaction);
            StatusCode::OK.into_response()
        }
        Ok(Inbound::Ignored(why)) => {
            tracing::debug!(why, "ignoring event");
            StatusCode::OK.into_response()
        }
        Ok(Inbound::RateLimited) => {
            tracing::warn!("Slack says the app is rate limited; events may be dropped");
            StatusCode::OK.into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "malformed event body");
            (StatusCode::BAD_REQUEST, "malformed event").into_response()
        }
    }
}
