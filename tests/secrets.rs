//! Secrets (issue #7, item 6): the bot token, the app token and the
//! signing secret never appear in logs, `Debug` output, error messages or
//! panics — not verbatim, not percent- or base64-encoded, not even a
//! 12-character piece of one.
//!
//! The process-level tests run the real `failover-bot serve --in-memory`
//! (in-memory clusters: no API servers needed) against the fake Slack with
//! `RUST_LOG=trace`, in every log format the binary has (`--log-format
//! text|json`, through `FAILOVER_BOT_LOG_FORMAT`), over both transports,
//! through a whole operation and the failure paths: a forged signature,
//! Slack answering `invalid_auth` and a 500, and (Socket Mode) a
//! `disconnect` and a dropped connection. Everything the process printed on
//! stdout and stderr is searched, and so are `/metrics`, `/healthz` and
//! `/readyz`. (This replaces the token check `tests/slack.rs` did on its
//! `info` log.)
//!
//! The unit-level tests format every value and error that could carry a
//! secret: `SlackSettings`, `Secret`, the settings and config errors, and
//! `ChatError` from real failed Slack calls.

mod support;

use std::sync::Arc;
use std::time::Duration;

use failover_bot::chat::{Chat, Message, MessageKind};
use failover_bot::config::Config;
use failover_bot::engine::EngineError;
use failover_bot::slack::web::SlackChat;
use failover_bot::slack::{Secret, SlackSettings};
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::prelude::*;
use support::fake_slack::{self, FakeSlack, Fault};
use support::serve_proc::{Secrets, ServeOptions, ServeProc, Transport};

/// Shaped like the real ones, with `/` and `+` so that their
/// percent-encoded forms differ from them.
const BOT_TOKEN: &str = "xoxb-4711081542-7305-Zq9/Tk+Rw8Lp3Vn6Hs2Jd";
const APP_TOKEN: &str = "xapp-1-A0FAKE77-8841-Qw7+Er5/Ty3Ui1Op9As4Df";
const SIGNING_SECRET: &str = "9c1f+e7b/2d4a6c8e0f1a3b5c7d9e1f3";
const SECRETS: [(&str, &str); 3] = [
    ("bot token", BOT_TOKEN),
    ("app token", APP_TOKEN),
    ("signing secret", SIGNING_SECRET),
];
/// The shortest piece of a secret that counts as leaked.
const PIECE: usize = 12;
const WAIT: Duration = Duration::from_secs(20);

const CONFIG: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [UALICE, UBOB]
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

// ------------------------------------------------- what counts as a leak

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every form in which `secret` must not show: each piece of [`PIECE`]
/// characters (the whole secret and its prefixes among them), its
/// percent-encoding, and its base64 in both alphabets at each of the three
/// byte alignments it could have inside a larger encoded blob (whole
/// 3-byte groups only, as the edges depend on the neighbours).
fn leaked_forms(secret: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = secret.chars().collect();
    let mut forms: Vec<(String, String)> = chars
        .windows(PIECE)
        .map(|w| ("a 12-character piece".to_owned(), w.iter().collect()))
        .collect();
    forms.push(("percent-encoded".to_owned(), percent_encoded(secret)));
    for skip in 0..3 {
        let bytes = &secret.as_bytes()[skip..];
        let whole = &bytes[..bytes.len() - bytes.len() % 3];
        for (name, alphabet) in [("base64", STANDARD), ("base64url", URL_SAFE)] {
            forms.push((format!("{name} (offset {skip})"), base64(whole, alphabet)));
        }
    }
    forms
}

/// Up to 80 characters either side of byte `at`.
fn around(text: &str, at: usize) -> String {
    let before: String = text[..at].chars().rev().take(80).collect();
    let after: String = text[at..].chars().take(80 + PIECE).collect();
    before.chars().rev().chain(after.chars()).collect()
}

/// Each secret `text` holds in any form: the secret, how many forms, and
/// where the first one is.
fn leaks(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (name, secret) in SECRETS {
        let hits: Vec<(String, usize)> = leaked_forms(secret)
            .into_iter()
            .filter_map(|(form, needle)| Some((form, text.find(&needle)?)))
            .collect();
        if let Some((form, at)) = hits.first() {
            let n = hits.len();
            found.push(format!(
                "{name} ({n} forms), e.g. as {form} in: …{}…",
                around(text, *at)
            ));
        }
    }
    found
}

fn assert_no_secret(what: &str, text: &str) {
    let found = leaks(text);
    assert!(
        found.is_empty(),
        "{what} leaks secrets:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_leak_detector_finds_each_form() {
    let encoded = base64(format!("user:{BOT_TOKEN}").as_bytes(), STANDARD);
    for leak in [
        format!("Bearer {BOT_TOKEN}"),
        format!("token={}", percent_encoded(APP_TOKEN)),
        format!("Basic {encoded}"),
        format!("secret starts {}", &SIGNING_SECRET[..PIECE]),
    ] {
        assert_eq!(leaks(&leak).len(), 1, "not caught: {leak}");
    }
    assert_eq!(
        base64(b"any carnal pleas", STANDARD),
        "YW55IGNhcm5hbCBwbGVhcw"
    );
    assert_no_secret(
        "clean text",
        "Secret(<redacted>) xoxb-… chat: Slack API error",
    );
}

// ---------------------------------------------------- the whole process

/// Every secret given, in both transports (in Socket Mode the signing
/// secret is one more that must not leak), and every log line written.
fn setup(transport: Transport, log_format: &str) -> ServeOptions {
    let secrets = Secrets {
        bot_token: BOT_TOKEN.to_owned(),
        app_token: APP_TOKEN.to_owned(),
        signing_secret: SIGNING_SECRET.to_owned(),
        signing_secret_in_socket_mode: true,
    };
    ServeProc::options(CONFIG)
        .transport(transport)
        .secrets(secrets)
        .rust_log("trace")
        .env("FAILOVER_BOT_LOG_FORMAT", log_format)
}

async fn wait(fake: &FakeSlack, bot: &ServeProc, what: &str, pred: impl Fn(&FakeSlack) -> bool) {
    assert!(
        fake.wait_until(what, WAIT, pred).await,
        "{what}; log:\n{}",
        bot.log()
    );
}

fn plan_ts(fake: &FakeSlack) -> Option<String> {
    let plans = fake_slack::plans_in(&fake.posts(), "C1");
    plans.into_iter().map(|(_, ts)| ts).next()
}

fn journaled(bot: &ServeProc, kind: &str) -> bool {
    bot.journal_json().iter().any(|r| r["type"] == kind)
}

async fn command(fake: &FakeSlack, bot: &ServeProc, user: &str, text: &str, trigger: &str) {
    let acked = bot
        .deliver_command(
            fake,
            (user, "C1", text, trigger),
            &format!("env-{trigger}"),
            0,
        )
        .await;
    assert!(
        acked.is_some_and(|a| a.status == 200),
        "{text} acknowledged"
    );
}

/// Command, approval, the step, the end of the operation.
async fn operation(fake: &FakeSlack, bot: &ServeProc) {
    command(fake, bot, "UALICE", "shift 50 to green", "trig-op").await;
    wait(fake, bot, "the plan, journaled", |f| {
        plan_ts(f).is_some() && journaled(bot, "proposed")
    })
    .await;
    let ts = plan_ts(fake).expect("plan");
    let event = fake_slack::reaction_event("Ev-ok", "UBOB", "white_check_mark", "C1", &ts, true);
    bot.deliver_event(fake, event, "env-ok", 0).await;
    wait(fake, bot, "applied", |f| {
        f.thread_has(
            &ts,
            "step_result",
            &[("outcome", "applied"), ("verified", "true")],
        )
    })
    .await;
}

/// Slack refuses the token (`invalid_auth`) and fails with a 500.
async fn slack_errors(fake: &FakeSlack, bot: &ServeProc) {
    fake.fail_next("chat.postMessage", Fault::SlackError("invalid_auth"));
    command(fake, bot, "UALICE", "status", "trig-invalid-auth").await;
    wait(fake, bot, "status refused with invalid_auth", |f| {
        let refused = f.calls_to("chat.postMessage");
        refused
            .iter()
            .any(|c| c.error.as_deref() == Some("invalid_auth"))
    })
    .await;
    fake.fail_next("chat.postEphemeral", Fault::ServerError);
    command(fake, bot, "UBOB", "history", "trig-500").await;
    wait(fake, bot, "history answered with a 500", |f| {
        let failed = f.calls_to("chat.postEphemeral");
        failed
            .iter()
            .any(|c| c.error.as_deref() == Some("http_500"))
    })
    .await;
}

/// A request signed with another secret, and one with no signature.
async fn forged(bot: &ServeProc) -> Vec<u16> {
    let body = fake_slack::slash_command_form("UALICE", "C1", "shift 60", "trig-forged");
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp();
    let forged = client
        .post(bot.url("/slack/commands"))
        .header("X-Slack-Request-Timestamp", now.to_string())
        .header(
            "X-Slack-Signature",
            fake_slack::sign("not-the-secret", now, &body),
        )
        .body(body.clone());
    let unsigned = client.post(bot.url("/slack/events")).body("{}");
    let mut statuses = Vec::new();
    for request in [forged, unsigned] {
        let status = request.send().await.map(|r| r.status().as_u16());
        statuses.push(status.unwrap_or(0));
    }
    statuses
}

/// A `disconnect` envelope, then a connection dropped without a close.
async fn reconnects(fake: &FakeSlack, bot: &ServeProc) {
    fake.send_disconnect("refresh_requested").await;
    assert!(
        fake.wait_connected(2, WAIT).await,
        "reconnected; log:\n{}",
        bot.log()
    );
    fake.drop_socket().await;
    assert!(
        fake.wait_connected(3, WAIT).await,
        "reconnected; log:\n{}",
        bot.log()
    );
    command(fake, bot, "UBOB", "status", "trig-after-reconnect").await;
}

/// The bot's HTTP endpoints, whatever they answer.
async fn endpoints(bot: &ServeProc) -> String {
    let mut text = String::new();
    for path in ["/metrics", "/healthz", "/readyz"] {
        if let Ok(response) = reqwest::get(bot.url(path)).await {
            text += &response.text().await.unwrap_or_default();
        }
    }
    text
}

async fn full_run(transport: Transport, log_format: &str) {
    let fake = FakeSlack::start().await;
    let mut bot = setup(transport, log_format).start(&fake).await;
    operation(&fake, &bot).await;
    slack_errors(&fake, &bot).await;
    let statuses = forged(&bot).await;
    if transport == Transport::Http {
        assert_eq!(statuses, [401, 401], "forged and unsigned requests refused");
    } else {
        reconnects(&fake, &bot).await;
    }
    let served = endpoints(&bot).await;
    bot.terminate().await;
    let log = bot.log();

    // The capture is complete: trace level, and each failure path logged.
    let trace = if log_format == "json" {
        "\"level\":\"TRACE\""
    } else {
        "TRACE"
    };
    assert!(log.contains(trace), "no trace-level lines in:\n{log}");
    assert!(
        log.contains("invalid_auth"),
        "the invalid_auth failure is logged"
    );
    if transport == Transport::Http {
        assert!(log.contains("bad Slack signature"), "the forgery is logged");
    }
    eprintln!(
        "{log_format} log over {transport:?}: {} lines, {} bytes, searched for {} forms of 3 secrets",
        log.lines().count(),
        log.len(),
        SECRETS.iter().map(|(_, s)| leaked_forms(s).len()).sum::<usize>()
    );
    assert_no_secret(&format!("the {log_format} log over {transport:?}"), &log);
    assert_no_secret("/metrics, /healthz and /readyz", &served);
}

#[tokio::test]
async fn http_trace_text_log_of_a_full_run_holds_no_secret() {
    full_run(Transport::Http, "text").await;
}

#[tokio::test]
async fn http_trace_json_log_of_a_full_run_holds_no_secret() {
    full_run(Transport::Http, "json").await;
}

#[tokio::test]
async fn socket_mode_trace_text_log_of_a_full_run_holds_no_secret() {
    full_run(Transport::Socket, "text").await;
}

#[tokio::test]
async fn socket_mode_trace_json_log_of_a_full_run_holds_no_secret() {
    full_run(Transport::Socket, "json").await;
}

// ------------------------------------------------- values and errors

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn settings_and_secrets_print_redacted() {
    let settings = SlackSettings::from_env(env_of(&[
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_APP_TOKEN", APP_TOKEN),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET),
    ]))
    .expect("valid settings");
    assert_no_secret("SlackSettings {:?}", &format!("{settings:?}"));
    assert_no_secret("SlackSettings {:#?}", &format!("{settings:#?}"));
    for (_, value) in SECRETS {
        let secret = Secret::new(value);
        assert_no_secret("Secret", &format!("{secret} {secret:?} {secret:#?}"));
    }
}

#[test]
fn settings_errors_never_quote_a_secret() {
    let wrong_kind = SlackSettings::from_env(env_of(&[
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        // The bot token where the app token belongs.
        ("SLACK_APP_TOKEN", BOT_TOKEN),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET),
    ]))
    .expect_err("an xoxb- token is no app token");
    assert_no_secret("a wrong-kind app token error", &wrong_kind);
    let missing = SlackSettings::from_env(env_of(&[
        ("SLACK_APP_TOKEN", APP_TOKEN),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET),
    ]))
    .expect_err("no bot token");
    assert_no_secret("a missing bot token error", &missing);
}

/// A token pasted into the config file by mistake (many bots take theirs
/// from a `token:` key) must not be echoed back by the config error, which
/// `serve` prints to its log on startup.
#[test]
fn config_errors_never_quote_a_secret_pasted_into_the_config() {
    let pasted = [
        format!("slack:\n  bot_token: {BOT_TOKEN}\n"),
        format!("slack:\n  channels: [C1]\n  signing_secret: {SIGNING_SECRET}\n"),
        format!("slack:\n  channels: {APP_TOKEN}\n"),
    ];
    for slack in pasted {
        let yaml = format!(
            "{slack}{}",
            CONFIG.replace("slack:\n  channels: [C1]\n", "")
        );
        let error = Config::from_yaml(&yaml).expect_err("not a valid config");
        assert_no_secret("a config error", &format!("{error} {error:?}"));
    }
}

/// A Slack Web API client for the bot's chat, pointed at `api_url`.
fn slack_chat(api_url: &str) -> SlackChat<HttpConnector> {
    let connector =
        SlackClientHyperConnector::with_connector(HttpConnector::new()).with_slack_api_url(api_url);
    SlackChat::new(
        Arc::new(SlackClient::new(connector)),
        &Secret::new(BOT_TOKEN),
    )
}

#[tokio::test]
async fn chat_errors_never_quote_the_token() {
    let fake = FakeSlack::start().await;
    let chat = slack_chat(&fake.api_url());
    let faults = [
        Fault::SlackError("invalid_auth"),
        Fault::SlackError("token_revoked"),
        Fault::ServerError,
    ];
    let message = Message::new(MessageKind::Help, "hello");
    let mut errors = Vec::new();
    for fault in faults {
        fake.fail_next("chat.postMessage", fault);
        errors.push(chat.post("C1", None, &message).await.expect_err("fails"));
    }
    // More 429s than the chat retries.
    for _ in 0..4 {
        let limited = Fault::RateLimited {
            retry_after_secs: 0,
        };
        fake.fail_next("chat.update", limited);
    }
    let at = failover_bot::chat::MessageRef {
        channel: "C1".into(),
        ts: "1.1".into(),
    };
    errors.push(chat.update(&at, &message).await.expect_err("rate limited"));
    // Nobody listening at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let nowhere = format!("http://{}/api", closed.local_addr().expect("address"));
    drop(closed);
    let unreachable = slack_chat(&nowhere);
    errors.push(
        unreachable
            .react(&at, "eyes")
            .await
            .expect_err("unreachable"),
    );

    assert!(
        fake.calls()
            .iter()
            .all(|c| c.token.as_deref() == Some(BOT_TOKEN)),
        "the calls did carry the token"
    );
    for error in errors {
        let shown = format!("{error} {error:?}");
        assert_no_secret("a ChatError", &shown);
        let engine = EngineError::from(error);
        assert_no_secret("an EngineError", &format!("{engine} {engine:?}"));
    }
}
