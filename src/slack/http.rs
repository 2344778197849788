//! The Events API over HTTP: `/slack/commands`, `/slack/events` and
//! `/slack/interactivity` (button clicks), all signed by Slack. A request whose signature is missing, stale (more than
//! five minutes from now) or wrong gets 401 and does nothing; the
//! comparison is constant-time (slack-morphism's verifier).
//!
//! Before any of the body is read (so an unsigned or replayed request
//! costs the bot a header's worth of work, never a body):
//!
//! 1. the signature headers must be there, the signature well-formed and the
//!    timestamp fresh, else 401 at once ([`signature_headers`]);
//! 2. a body declared longer than [`MAX_BODY_BYTES`] gets 413 at once, and
//!    one that turns out longer (chunked) gets 413 when it passes the cap
//!    (tower-http's `RequestBodyLimitLayer`);
//! 3. the body must arrive within [`BODY_READ_TIMEOUT`] of its head, else
//!    408 (tower-http's `RequestBodyDeadlineLayer`).
//!
//! Only then is the HMAC over timestamp and body checked.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::RequestBodyDeadlineLayer;

use super::decode::{self, Inbound};
use super::intake::Intake;
use super::Secret;

/// The largest request body read. What Slack sends these routes is small:
/// a slash command form is ~600 bytes of fields plus the typed text (a
/// `/failover` line with its reason is a few hundred characters, and 64 KiB
/// holds even 20,000 characters form-encoded at 3 bytes each), a
/// `reaction_added` event callback ~1 KB, a `url_verification` ~150 bytes,
/// a button click a few KB (it echoes the plan message: its text of at most
/// 3,000 characters, twice, form-encoded).
/// The bot subscribes to no event that carries message text or files. So
/// 64 KiB is dozens of times what the bot acts on, and 256 connections at
/// the cap hold 16 MB at most.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a body may take to arrive once its head has: Slack gives up
/// after 3 seconds, and sends its (small) body with the head.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Slack's replay window: a timestamp further than this from now, either
/// way, is refused.
const MAX_TIMESTAMP_SKEW_SECS: i64 = SlackEventSignatureVerifier::MAX_TIMESTAMP_AGE_SECONDS;

/// Where Slack POSTs button clicks: the manifest's
/// `settings.interactivity.request_url` ends with it.
pub const INTERACTIVITY_PATH: &str = "/slack/interactivity";

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
    // The last layer added runs first: headers, then the body's size, then
    // its deadline. `route_layer`: an unknown path stays a plain 404.
    Router::new()
        .route("/slack/commands", post(command))
        .route("/slack/events", post(event))
        .route(INTERACTIVITY_PATH, post(interactivity))
        .route_layer(RequestBodyDeadlineLayer::new(BODY_READ_TIMEOUT))
        .route_layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .route_layer(middleware::from_fn(signature_headers_first))
        .with_state(state)
}

/// Why a request was turned away, before any work.
type Rejection = (StatusCode, &'static str);

/// Refuses a request whose signature headers cannot be right, before its
/// body is read.
async fn signature_headers_first(request: Request, next: Next) -> Response {
    let now = chrono::Utc::now().timestamp();
    match signature_headers(request.headers(), now) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::debug!(reason = refusal.1, "refused a request by its headers");
            refusal.into_response()
        }
    }
}

/// What the headers alone can tell about a Slack signature at unix time
/// `now`: both present, a fresh timestamp, a `v0=` signature of 64 hex
/// digits.
fn signature_headers(headers: &HeaderMap, now: i64) -> Result<(), Rejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
        header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
    ) else {
        return Err((StatusCode::UNAUTHORIZED, "missing Slack signature"));
    };
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|at| now.abs_diff(at) <= MAX_TIMESTAMP_SKEW_SECS.unsigned_abs());
    if !fresh {
        return Err((StatusCode::UNAUTHORIZED, "stale Slack timestamp"));
    }
    let well_formed = signature
        .strip_prefix("v0=")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err((StatusCode::UNAUTHORIZED, "bad Slack signature"));
    }
    Ok(())
}

/// The answer to a body that could not be read whole.
fn unread_body(rejection: &BytesRejection) -> Rejection {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE
        || caused_by::<http_body_util::LengthLimitError>(rejection)
    {
        (StatusCode::PAYLOAD_TOO_LARGE, "body over the 64 KiB limit")
    } else if caused_by::<tower_http::timeout::TimeoutError>(rejection) {
        (StatusCode::REQUEST_TIMEOUT, "body not received in time")
    } else {
        (StatusCode::BAD_REQUEST, "unreadable body")
    }
}

/// Whether an `E` is somewhere in the error's chain of sources (the body
/// layers' errors arrive wrapped in axum's).
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<E>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The body of a request whose Slack signature holds; else the answer.
fn read_signed(
    state: &HttpState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Rejection> {
    let body = body.map_err(|rejection| unread_body(&rejection))?;
    verified(state, headers, &body)?;
    Ok(body)
}

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

/// The body of a signed request as text, or the answer refusing it.
fn signed_text(
    state: &HttpState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<String, Rejection> {
    let body = read_signed(state, headers, body)?;
    String::from_utf8(body.to_vec()).map_err(|_| (StatusCode::BAD_REQUEST, "body is not UTF-8"))
}

async fn command(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let text = match signed_text(&state, &headers, body) {
        Ok(text) => text,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(command) = decode::slash_command_form(&text) else {
        return (StatusCode::BAD_REQUEST, "not a slash command form").into_response();
    };
    let reply = state.intake.command(command);
    Json(serde_json::json!({ "response_type": "ephemeral", "text": reply.text })).into_response()
}

async fn event(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let text = match signed_text(&state, &headers, body) {
        Ok(text) => text,
        Err(refusal) => return refusal.into_response(),
    };
    match decode::push_event(&text) {
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

/// A button click (`payload=` and its JSON, form-encoded). Slack wants a
/// bare 200 within 3 seconds; the click's work goes on in a task, and what
/// the clicker must hear comes as an ephemeral message.
async fn interactivity(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let text = match signed_text(&state, &headers, body) {
        Ok(text) => text,
        Err(refusal) => return refusal.into_response(),
    };
    match decode::interaction_form(&text) {
        Ok(interactive) => {
            state.intake.interactive(interactive);
            StatusCode::OK.into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "malformed interaction body");
            (StatusCode::BAD_REQUEST, "malformed interaction").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn signed_at(at: i64) -> HeaderMap {
        let signature = format!("v0={}", "0a".repeat(32));
        headers(&[
            ("x-slack-request-timestamp", &at.to_string()),
            ("x-slack-signature", &signature),
        ])
    }

    #[test]
    fn headers_that_can_be_right_pass() {
        for at in [NOW, NOW - 300, NOW + 300] {
            assert_eq!(signature_headers(&signed_at(at), NOW), Ok(()), "{at}");
        }
    }

    #[test]
    fn missing_stale_or_malformed_headers_are_refused() {
        let refused = |map: &HeaderMap| signature_headers(map, NOW).unwrap_err().1;
        assert_eq!(refused(&HeaderMap::new()), "missing Slack signature");
        let only_signature = headers(&[("x-slack-signature", "v0=00")]);
        assert_eq!(refused(&only_signature), "missing Slack signature");
        assert_eq!(refused(&signed_at(NOW - 301)), "stale Slack timestamp");
        assert_eq!(refused(&signed_at(NOW + 301)), "stale Slack timestamp");
        assert_eq!(refused(&signed_at(i64::MIN)), "stale Slack timestamp");
        let mut words = signed_at(NOW);
        words.insert("x-slack-request-timestamp", "soon".parse().unwrap());
        assert_eq!(refused(&words), "stale Slack timestamp");
        for bad in ["v0=abc", "v1=", "0a0a", &format!("v0={}", "zz".repeat(32))] {
            let mut map = signed_at(NOW);
            map.insert("x-slack-signature", bad.parse().unwrap());
            assert_eq!(refused(&map), "bad Slack signature", "{bad}");
        }
    }
}
