//! The chart's way into a thread: Slack's external upload flow as the bot's
//! Slack chat sends it over the wire, against a small stand-in for the three
//! endpoints that can be scripted to fail, and (last test) against the
//! shared fake Slack, which the drill tests upload to.
//! It checks that the calls come in order, with the bot token, the declared
//! length, the bytes unchanged, and the file shared in the right thread;
//! that a 429 on the upload URL is retried a bounded number of times; and
//! that a refusal from Slack or an empty file is an error that says why.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use slack_morphism::prelude::*;

#[path = "support/fake_slack/mod.rs"]
mod fake_slack;

use failover_bot::chat::{Chat, MessageRef, Upload};
use failover_bot::drill::chart::{self, HEIGHT, WIDTH};
use failover_bot::slack::web::SlackChat;
use failover_bot::slack::Secret;

const BOT_TOKEN: &str = "xoxb-upload-test";
const FILE_ID: &str = "F0CHART";

/// One request as it arrived.
#[derive(Clone, Debug)]
enum Call {
    Ticket {
        authorization: String,
        params: HashMap<String, String>,
    },
    Bytes {
        content_type: String,
        body: Vec<u8>,
    },
    Complete {
        authorization: String,
        body: Value,
    },
}

/// What the stand-in answers.
#[derive(Clone, Default)]
struct Script {
    /// Answer the upload URL's first N POSTs with 429.
    rate_limited_uploads: usize,
    /// Answer `files.completeUploadExternal` with this Slack error.
    complete_error: Option<&'static str>,
}

#[derive(Clone)]
struct Stand {
    base: String,
    script: Script,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Stand {
    fn record(&self, call: Call) -> usize {
        let mut calls = self.calls.lock().unwrap();
        calls.push(call);
        calls.len()
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn uploads_so_far(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::Bytes { .. }))
            .count()
    }
}

fn authorization(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `files.getUploadURLExternal`, as GET with a query or as a form POST:
/// Slack takes both.
async fn ticket(
    State(stand): State<Stand>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let mut params = query;
    params
        .extend(serde_urlencoded::from_bytes::<HashMap<String, String>>(&body).unwrap_or_default());
    stand.record(Call::Ticket {
        authorization: authorization(&headers),
        params,
    });
    Json(json!({
        "ok": true,
        "upload_url": format!("{}/upload/{FILE_ID}", stand.base),
        "file_id": FILE_ID,
    }))
}

/// The upload URL: answers like files.slack.com, in plain text.
async fn bytes(State(stand): State<Stand>, headers: HeaderMap, body: Bytes) -> Response {
    let length = body.len();
    let earlier = stand.uploads_so_far();
    stand.record(Call::Bytes {
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body.to_vec(),
    });
    if earlier < stand.script.rate_limited_uploads {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            "ratelimited",
        )
            .into_response();
    }
    format!("OK - {length}").into_response()
}

async fn complete(State(stand): State<Stand>, headers: HeaderMap, body: Bytes) -> Json<Value> {
    let body: Value = serde_json::from_slice(&body).expect("completeUploadExternal takes JSON");
    stand.record(Call::Complete {
        authorization: authorization(&headers),
        body: body.clone(),
    });
    match stand.script.complete_error {
        Some(error) => Json(json!({"ok": false, "error": error})),
        None => Json(json!({
            "ok": true,
            "files": [{"id": FILE_ID, "title": body["files"][0]["title"]}],
        })),
    }
}

async fn start(script: Script) -> Stand {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stand = Stand {
        base: format!("http://{}", listener.local_addr().unwrap()),
        script,
        calls: Arc::default(),
    };
    let app = Router::new()
        .route("/api/files.getUploadURLExternal", any(ticket))
        .route("/upload/{id}", post(bytes))
        .route("/api/files.completeUploadExternal", post(complete))
        .with_state(stand.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    stand
}

fn chat(stand: &Stand) -> SlackChat<HttpConnector> {
    let connector = SlackClientHyperConnector::with_connector(HttpConnector::new())
        .with_slack_api_url(&format!("{}/api", stand.base));
    SlackChat::new(
        Arc::new(SlackClient::new(connector)),
        &Secret::new(BOT_TOKEN),
    )
}

fn thread() -> MessageRef {
    MessageRef {
        channel: "C0FAILOVER".into(),
        ts: "1764070200.000100".into(),
    }
}

/// A few bytes that start like a PNG; what they are does not matter here.
fn chart() -> Upload {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(5_000));
    Upload::png(
        "drills-dev.png",
        "Drills in dev",
        "Bar chart of drill durations in dev",
        bytes,
    )
}

#[tokio::test]
async fn a_chart_goes_up_in_three_calls_in_order_and_lands_in_the_thread() {
    let stand = start(Script::default()).await;
    let file = chart();
    chat(&stand).upload(&thread(), &file).await.unwrap();

    let calls = stand.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let bearer = format!("Bearer {BOT_TOKEN}");
    let Call::Ticket {
        authorization,
        params,
    } = &calls[0]
    else {
        panic!("first call: {:?}", calls[0]);
    };
    assert_eq!(authorization, &bearer);
    assert_eq!(params["filename"], "drills-dev.png");
    assert_eq!(
        params["length"],
        file.bytes.len().to_string(),
        "the declared length is the bytes'"
    );
    assert_eq!(params["alt_txt"], "Bar chart of drill durations in dev");
    let Call::Bytes {
        content_type, body, ..
    } = &calls[1]
    else {
        panic!("second call: {:?}", calls[1]);
    };
    assert_eq!(content_type, "image/png");
    assert_eq!(body, &file.bytes, "the bytes arrive unchanged");
    let Call::Complete {
        authorization,
        body,
    } = &calls[2]
    else {
        panic!("third call: {:?}", calls[2]);
    };
    assert_eq!(authorization, &bearer);
    assert_eq!(
        body["files"],
        json!([{"id": FILE_ID, "title": "Drills in dev"}])
    );
    assert_eq!(body["channel_id"], "C0FAILOVER");
    assert_eq!(body["thread_ts"], "1764070200.000100");
}

#[tokio::test]
async fn a_rate_limited_upload_is_retried_after_retry_after() {
    let stand = start(Script {
        rate_limited_uploads: 2,
        ..Script::default()
    })
    .await;
    chat(&stand).upload(&thread(), &chart()).await.unwrap();
    let kinds: Vec<&str> = stand
        .calls()
        .iter()
        .map(|c| match c {
            Call::Ticket { .. } => "ticket",
            Call::Bytes { .. } => "bytes",
            Call::Complete { .. } => "complete",
        })
        .collect();
    assert_eq!(kinds, ["ticket", "bytes", "bytes", "bytes", "complete"]);
}

#[tokio::test]
async fn an_upload_slack_keeps_rate_limiting_is_given_up_and_never_shared() {
    let stand = start(Script {
        rate_limited_uploads: usize::MAX,
        ..Script::default()
    })
    .await;
    let error = chat(&stand).upload(&thread(), &chart()).await.unwrap_err();
    assert!(error.unavailable, "the same upload may work later: {error}");
    assert_eq!(stand.uploads_so_far(), 4, "one try and three retries");
    assert!(
        !stand
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Complete { .. })),
        "nothing is shared in the thread"
    );
}

#[tokio::test]
async fn slack_refusing_to_share_the_file_is_an_error_that_says_why() {
    let stand = start(Script {
        complete_error: Some("not_in_channel"),
        ..Script::default()
    })
    .await;
    let error = chat(&stand).upload(&thread(), &chart()).await.unwrap_err();
    assert!(!error.unavailable, "retrying cannot help: {error}");
    assert!(error.reason.contains("not_in_channel"), "{error}");
    assert!(!error.reason.contains(BOT_TOKEN), "{error}");
}

#[tokio::test]
async fn an_empty_file_is_refused_before_any_call() {
    let stand = start(Script::default()).await;
    let empty = Upload::png("drills-dev.png", "Drills in dev", "", vec![]);
    let error = chat(&stand).upload(&thread(), &empty).await.unwrap_err();
    assert!(error.reason.contains("empty"), "{error}");
    assert!(stand.calls().is_empty(), "{:?}", stand.calls());
}

/// A real chart through the shared fake Slack: it arrives once, as a PNG of
/// the size the chart declares and the length the ticket declared, shared
/// in the thread it was meant for.
#[tokio::test]
async fn a_real_chart_reaches_the_shared_fake_as_a_png_of_its_size() {
    let fake = fake_slack::FakeSlack::start().await;
    let connector = SlackClientHyperConnector::with_connector(HttpConnector::new())
        .with_slack_api_url(&fake.api_url());
    let chat = SlackChat::new(
        Arc::new(SlackClient::new(connector)),
        &Secret::new(BOT_TOKEN),
    );
    let bytes = chart::render(&[]).unwrap();
    let file = Upload::png("drills-dev.png", "Drills in dev", "no drills yet", bytes);
    chat.upload(&thread(), &file).await.unwrap();
    let files = fake.files();
    assert_eq!(files.len(), 1, "{files:?}");
    let shared = &files[0];
    assert!(shared.is_complete(), "{shared:?}");
    assert_eq!(shared.posts, 1);
    assert_eq!(shared.declared_length, file.bytes.len());
    assert_eq!(shared.png_size, Some((WIDTH, HEIGHT)));
    assert_eq!(shared.title.as_deref(), Some("Drills in dev"));
    assert_eq!(shared.channel.as_deref(), Some("C0FAILOVER"));
    assert_eq!(shared.thread_ts.as_deref(), Some("1764070200.000100"));
}
