#![allow(dead_code)]
//! A fake Slack for integration tests: a real HTTP + WebSocket server on
//! 127.0.0.1 that speaks the Web API and Socket Mode on the wire, closely
//! enough that `slack-morphism` works against it unmodified when pointed at
//! [`FakeSlack::api_url`].
//!
//! Everything the client does is recorded in memory, per instance, so many
//! fakes can run in parallel in one test binary. Faults can be queued per
//! method to exercise the bot's error handling.
//!
//! What slack-morphism 2.31 sends: `auth.test`, `users.info` and
//! `usergroups.users.list` are GETs with query parameters; `chat.postMessage`,
//! `chat.update`, `chat.postEphemeral`, `reactions.add` and
//! `apps.connections.open` are POSTs with a JSON body. The token always
//! travels as `Authorization: Bearer …`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use futures::SinkExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub const TEAM_ID: &str = "TFAKE";
pub const APP_ID: &str = "AFAKE";
pub const BOT_ID: &str = "BFAKE";
pub const DEFAULT_BOT_USER: &str = "UBOT";
const JSON_UTF8: &str = "application/json; charset=utf-8";
/// Message timestamps start here: 1700000000.000100, then +100 µs each.
const TS_BASE_MICROS: u64 = 1_700_000_000_000_000;
const POLL: Duration = Duration::from_millis(10);

/// One Web API request, recorded when it arrives (so a `Slow` call shows up
/// before it is answered). Faulted and failed calls are recorded too: look at
/// `ok` / `error`.
#[derive(Clone, Debug)]
pub struct ApiCall {
    pub method: String,
    pub token: Option<String>,
    /// Query string, then form or JSON body, merged (the body wins).
    pub params: Value,
    /// `None` while in flight, then whether Slack answered `"ok": true`.
    pub ok: Option<bool>,
    /// The Slack error code answered: e.g. `channel_not_found`, `ratelimited`
    /// for a `RateLimited` fault, `http_500` for a `ServerError` fault.
    pub error: Option<String>,
}

/// A message the bot posted, or the new content of one it updated.
#[derive(Clone, Debug, PartialEq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    /// Empty when only blocks were sent.
    pub text: String,
    pub blocks: Option<Value>,
    pub ephemeral_user: Option<String>,
}

/// What the next call to a method gets instead of a normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429, `Retry-After: N`, body `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// HTTP 500 with a plain-text body.
    ServerError,
    /// Wait, then answer normally.
    Slow(Duration),
    /// Act at once (the message exists, other clients can see and react to
    /// it), but hold the answer back: the caller learns of it late.
    LateAnswer(Duration),
    /// HTTP 200 `{"ok":false,"error":E}`.
    SlackError(&'static str),
}

pub struct FakeSlack {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
}

struct Shared {
    port: u16,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<ApiCall>,
    posts: Vec<Posted>,
    updates: Vec<Posted>,
    reactions: Vec<(String, String, String)>,
    faults: HashMap<String, VecDeque<Fault>>,
    usergroups: HashMap<String, Vec<String>>,
    bot_user: String,
    issued_ts: u64,
    issued_tickets: u64,
    sockets: SocketState,
}

#[derive(Default)]
struct SocketState {
    accepted: usize,
    /// Open connections, oldest first: the last one is "current".
    open: Vec<OpenSocket>,
    /// Every text frame the client sent, in order.
    frames: Vec<String>,
    /// First ack seen per envelope id.
    acks: HashMap<String, Value>,
    issued_envelopes: u64,
}

struct OpenSocket {
    id: usize,
    commands: mpsc::UnboundedSender<SocketCommand>,
}

enum SocketCommand {
    /// Write a text frame; reports whether the write succeeded.
    Send(String, oneshot::Sender<bool>),
    /// Drop the connection without a close frame.
    Abort,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake slack binds 127.0.0.1");
        let port = listener.local_addr().expect("bound address").port();
        let shared = Arc::new(Shared {
            port,
            state: Mutex::new(FakeState {
                bot_user: DEFAULT_BOT_USER.to_owned(),
                ..FakeState::default()
            }),
        });
        let app = Router::new()
            .route("/api/{method}", any(api_handler))
            .route("/socket", get(socket_handler))
            .with_state(shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        // Graceful shutdown (on drop) also closes idle keep-alive connections,
        // which would otherwise outlive the aborted accept loop.
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        FakeSlack {
            shared,
            server,
            shutdown: Some(shutdown),
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.base_url())
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    pub fn calls(&self) -> Vec<ApiCall> {
        self.shared.state().calls.clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<ApiCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Successful `chat.postMessage` and `chat.postEphemeral`, in order.
    pub fn posts(&self) -> Vec<Posted> {
        self.shared.state().posts.clone()
    }

    /// Successful `chat.update`: `ts` is the updated message's.
    pub fn updates(&self) -> Vec<Posted> {
        self.shared.state().updates.clone()
    }

    /// The bot's plan messages: channel posts (not in a thread, not
    /// ephemeral) that were posted awaiting approval, in order.
    pub fn plan_posts(&self) -> Vec<Posted> {
        self.posts()
            .into_iter()
            .filter(|p| {
                p.thread_ts.is_none()
                    && p.ephemeral_user.is_none()
                    && p.text.contains("awaiting approval")
            })
            .collect()
    }

    /// The texts posted in the thread of message `ts`, in order.
    pub fn thread_texts(&self, ts: &str) -> Vec<String> {
        self.posts()
            .into_iter()
            .filter(|p| p.thread_ts.as_deref() == Some(ts))
            .map(|p| p.text)
            .collect()
    }

    /// The text message `ts` was last updated to, if it ever was.
    pub fn last_update(&self, ts: &str) -> Option<String> {
        self.updates()
            .into_iter()
            .filter(|u| u.ts == ts)
            .map(|u| u.text)
            .next_back()
    }

    /// Successful `reactions.add`: (channel, ts, name).
    pub fn reactions_added(&self) -> Vec<(String, String, String)> {
        self.shared.state().reactions.clone()
    }

    /// Polls `pred` every 10 ms. On timeout, prints `what` and every call so
    /// far to stderr (shown by the test harness when the test fails).
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&FakeSlack) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() >= deadline {
                eprintln!("fake slack: timed out after {timeout:?} waiting for {what}");
                eprintln!("{}", self.dump());
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every call and socket event so far, one a line, for failure output.
    pub fn dump(&self) -> String {
        let state = self.shared.state();
        let mut out = format!("{} Web API calls:\n", state.calls.len());
        for call in &state.calls {
            let outcome = match (&call.ok, &call.error) {
                (None, _) => "in flight".to_owned(),
                (Some(true), _) => "ok".to_owned(),
                (Some(false), e) => format!("error {}", e.as_deref().unwrap_or("?")),
            };
            out += &format!("  {} {} -> {}\n", call.method, call.params, outcome);
        }
        let sockets = &state.sockets;
        out += &format!(
            "Socket Mode: {} accepted, {} open, {} frames from the client:\n",
            sockets.accepted,
            sockets.open.len(),
            sockets.frames.len()
        );
        for frame in &sockets.frames {
            out += &format!("  {frame}\n");
        }
        out
    }

    /// Queues a fault for the next call to `method`; several apply in order.
    pub fn fail_next(&self, method: &str, fault: Fault) {
        self.shared
            .state()
            .faults
            .entry(method.to_owned())
            .or_default()
            .push_back(fault);
    }

    pub fn set_usergroup(&self, group_id: &str, members: &[&str]) {
        let members = members.iter().map(|m| (*m).to_owned()).collect();
        self.shared
            .state()
            .usergroups
            .insert(group_id.to_owned(), members);
    }

    /// What `auth.test` returns as `user_id`, and the author of posts.
    pub fn set_bot_user(&self, user_id: &str) {
        self.shared.state().bot_user = user_id.to_owned();
    }

    /// Socket Mode connections accepted so far, open or not.
    pub fn socket_connections(&self) -> usize {
        self.shared.state().sockets.accepted
    }

    pub fn open_sockets(&self) -> usize {
        self.shared.state().sockets.open.len()
    }

    /// Every text frame any client sent over Socket Mode, in order.
    pub fn socket_frames(&self) -> Vec<String> {
        self.shared.state().sockets.frames.clone()
    }

    /// Until `n_total` connections were accepted and one is open now.
    pub async fn wait_connected(&self, n_total: usize, timeout: Duration) -> bool {
        let what = format!("{n_total} Socket Mode connections, one open");
        self.wait_until(&what, timeout, |f| {
            f.socket_connections() >= n_total && f.open_sockets() > 0
        })
        .await
    }

    /// Sends an envelope on the newest open socket and returns its id once
    /// written. Panics if no socket is open.
    pub async fn send_envelope(
        &self,
        kind: &str,
        payload: Value,
        accepts_response_payload: bool,
    ) -> String {
        let envelope_id = self.shared.next_envelope_id();
        let envelope = json!({
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": payload,
        });
        self.send_raw(&envelope.to_string()).await;
        envelope_id
    }

    /// Sends any text frame on the newest open socket. Panics if none is open.
    pub async fn send_raw(&self, text: &str) {
        let socket = self.current_socket();
        let (written, was_written) = oneshot::channel();
        let queued = socket.send(SocketCommand::Send(text.to_owned(), written));
        // A socket closing under us is for the test to notice (no ack will
        // come); say so rather than panic.
        if queued.is_err() || !was_written.await.unwrap_or(false) {
            eprintln!("fake slack: socket closed before this frame was written: {text}");
        }
    }

    /// The client's ack for `envelope_id`, e.g. `{"envelope_id":..,"payload":{..}}`.
    pub async fn wait_ack(&self, envelope_id: &str, timeout: Duration) -> Option<Value> {
        let what = format!("an ack of envelope {envelope_id}");
        let acked = self
            .wait_until(&what, timeout, |f| f.ack(envelope_id).is_some())
            .await;
        acked.then(|| self.ack(envelope_id)).flatten()
    }

    pub fn ack(&self, envelope_id: &str) -> Option<Value> {
        self.shared.state().sockets.acks.get(envelope_id).cloned()
    }

    pub async fn send_disconnect(&self, reason: &str) {
        let frame = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}});
        self.send_raw(&frame.to_string()).await;
    }

    /// Drops the newest open connection without a close frame, and returns
    /// once it is gone. Panics if none is open.
    pub async fn drop_socket(&self) {
        let socket = self.current_socket();
        if socket.send(SocketCommand::Abort).is_ok() {
            socket.closed().await;
        }
    }

    fn current_socket(&self) -> mpsc::UnboundedSender<SocketCommand> {
        let state = self.shared.state();
        let newest = state.sockets.open.last();
        let socket =
            newest.expect("fake slack: no open Socket Mode connection (wait_connected first)");
        socket.commands.clone()
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.shutdown.take();
        self.server.abort();
        // Socket tasks outlive the server task; dropping their command
        // channels makes them drop their connections.
        self.shared.state().sockets.open.clear();
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock must not hide the
        // recordings from the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_envelope_id(&self) -> String {
        let mut state = self.state();
        state.sockets.issued_envelopes += 1;
        format!("fake-envelope-{:04}", state.sockets.issued_envelopes)
    }
}

// ---------------------------------------------------------------- Web API

async fn api_handler(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = parse_form(query.as_deref().unwrap_or(""))
        .into_iter()
        .collect::<Map<_, _>>();
    let body_error = match body_params(&headers, &body) {
        Ok(from_body) => {
            params.extend(from_body);
            None
        }
        Err(error) => Some(error),
    };
    let token = bearer_token(&headers).or_else(|| str_param(&params, "token"));
    let (index, fault) = shared.record_call(&method, token.clone(), &params);

    let mut answer_after = None;
    match fault {
        None => {}
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::LateAnswer(delay)) => answer_after = Some(delay),
        Some(fault) => return shared.answer_fault(index, fault),
    }
    let answer = match body_error {
        Some(error) => Err(error),
        None => shared.dispatch(&method, token.as_deref(), &params),
    };
    if let Some(delay) = answer_after {
        tokio::time::sleep(delay).await;
    }
    shared.finish_call(index, answer.as_ref().err().copied());
    let body = match answer {
        Ok(fields) => ok_body(fields),
        Err(error) => json!({"ok": false, "error": error}),
    };
    json_response(StatusCode::OK, &body)
}

impl Shared {
    /// Records the call and takes the fault queued for it, if any.
    fn record_call(
        &self,
        method: &str,
        token: Option<String>,
        params: &Map<String, Value>,
    ) -> (usize, Option<Fault>) {
        let mut state = self.state();
        state.calls.push(ApiCall {
            method: method.to_owned(),
            token,
            params: Value::Object(params.clone()),
            ok: None,
            error: None,
        });
        let fault = state.faults.get_mut(method).and_then(VecDeque::pop_front);
        (state.calls.len() - 1, fault)
    }

    fn finish_call(&self, index: usize, error: Option<&str>) {
        let mut state = self.state();
        let call = &mut state.calls[index];
        call.ok = Some(error.is_none());
        call.error = error.map(str::to_owned);
    }

    fn answer_fault(&self, index: usize, fault: Fault) -> Response {
        match fault {
            Fault::RateLimited { retry_after_secs } => {
                self.finish_call(index, Some("ratelimited"));
                let body = json!({"ok": false, "error": "ratelimited"});
                let retry_after = [(header::RETRY_AFTER, retry_after_secs.to_string())];
                (
                    retry_after,
                    json_response(StatusCode::TOO_MANY_REQUESTS, &body),
                )
                    .into_response()
            }
            Fault::ServerError => {
                self.finish_call(index, Some("http_500"));
                let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    plain,
                    "fake slack: injected server error",
                )
                    .into_response()
            }
            Fault::SlackError(error) => {
                self.finish_call(index, Some(error));
                json_response(StatusCode::OK, &json!({"ok": false, "error": error}))
            }
            Fault::Slow(_) | Fault::LateAnswer(_) => {
                unreachable!("a slow or late call is answered normally")
            }
        }
    }

    /// The answer's fields (besides `ok`), or the Slack error code.
    fn dispatch(
        &self,
        method: &str,
        token: Option<&str>,
        p: &Map<String, Value>,
    ) -> Result<Value, &'static str> {
        check_token(method, token)?;
        let mut state = self.state();
        match method {
            "auth.test" => Ok(auth_test(&state)),
            "chat.postMessage" => post_message(&mut state, p),
            "chat.update" => update_message(&mut state, p),
            "chat.postEphemeral" => post_ephemeral(&mut state, p),
            "reactions.add" => add_reaction(&mut state, p),
            "users.info" => users_info(&state, p),
            "usergroups.users.list" => usergroup_members(&state, p),
            "apps.connections.open" => {
                state.issued_tickets += 1;
                let url = format!(
                    "ws://127.0.0.1:{}/socket?ticket={}",
                    self.port, state.issued_tickets
                );
                Ok(json!({"url": url}))
            }
            _ => Err("unknown_method"),
        }
    }
}

/// Any token is accepted, except one of the wrong kind by its prefix: Socket
/// Mode needs an app-level `xapp-` token and nothing else accepts one, so a
/// bot that mixes them up fails here as it would against Slack.
fn check_token(method: &str, token: Option<&str>) -> Result<(), &'static str> {
    let token = token.filter(|t| !t.is_empty()).ok_or("not_authed")?;
    let is_app_token = token.starts_with("xapp-");
    let is_other_slack_token = token.starts_with("xox");
    let wrong_kind = if method == "apps.connections.open" {
        is_other_slack_token
    } else {
        is_app_token
    };
    if wrong_kind {
        return Err("not_allowed_token_type");
    }
    Ok(())
}

fn auth_test(state: &FakeState) -> Value {
    json!({
        "url": "https://fake-workspace.slack.com/",
        "team": "Fake Workspace",
        "user": "failover-bot",
        "team_id": TEAM_ID,
        "user_id": state.bot_user,
        "bot_id": BOT_ID,
    })
}

fn post_message(state: &mut FakeState, p: &Map<String, Value>) -> Result<Value, &'static str> {
    let channel = required(p, "channel", "channel_not_found")?;
    let (text, blocks) = message_content(p)?;
    let thread_ts = str_param(p, "thread_ts");
    let ts = state.next_ts();
    let message = message_json(
        &state.bot_user,
        &text,
        Some(&ts),
        blocks.as_ref(),
        thread_ts.as_deref(),
    );
    state.posts.push(Posted {
        channel: channel.clone(),
        ts: ts.clone(),
        thread_ts,
        text,
        blocks,
        ephemeral_user: None,
    });
    Ok(json!({"channel": channel, "ts": ts, "message": message}))
}

/// Accepts any `ts`: the fake does not check that the message exists.
fn update_message(state: &mut FakeState, p: &Map<String, Value>) -> Result<Value, &'static str> {
    let channel = required(p, "channel", "channel_not_found")?;
    let ts = required(p, "ts", "message_not_found")?;
    let (text, blocks) = message_content(p)?;
    // slack-morphism requires `message` in the answer, as Slack sends it.
    let message = message_json(&state.bot_user, &text, None, blocks.as_ref(), None);
    state.updates.push(Posted {
        channel: channel.clone(),
        ts: ts.clone(),
        thread_ts: None,
        text: text.clone(),
        blocks,
        ephemeral_user: None,
    });
    Ok(json!({"channel": channel, "ts": ts, "text": text, "message": message}))
}

fn post_ephemeral(state: &mut FakeState, p: &Map<String, Value>) -> Result<Value, &'static str> {
    let channel = required(p, "channel", "channel_not_found")?;
    let user = required(p, "user", "user_not_in_channel")?;
    let (text, blocks) = message_content(p)?;
    let ts = state.next_ts();
    state.posts.push(Posted {
        channel,
        ts: ts.clone(),
        thread_ts: str_param(p, "thread_ts"),
        text,
        blocks,
        ephemeral_user: Some(user),
    });
    Ok(json!({"message_ts": ts}))
}

/// Like Slack, refuses the same reaction twice on one message.
fn add_reaction(state: &mut FakeState, p: &Map<String, Value>) -> Result<Value, &'static str> {
    let channel = required(p, "channel", "no_item_specified")?;
    let ts = required(p, "timestamp", "no_item_specified")?;
    let name = required(p, "name", "invalid_name")?;
    let reaction = (channel, ts, name);
    if state.reactions.contains(&reaction) {
        return Err("already_reacted");
    }
    state.reactions.push(reaction);
    Ok(json!({}))
}

/// Every user exists; names derive from the id (`U1` → `u1`).
fn users_info(state: &FakeState, p: &Map<String, Value>) -> Result<Value, &'static str> {
    let id = required(p, "user", "user_not_found")?;
    let name = id.to_lowercase();
    let real_name = format!("User {id}");
    Ok(json!({"user": {
        "id": id,
        "team_id": TEAM_ID,
        "name": name,
        "real_name": real_name,
        "deleted": false,
        "is_bot": id == state.bot_user,
        "is_admin": false,
        "tz": "Etc/UTC",
        "tz_offset": 0,
        "profile": {"real_name": real_name, "display_name": name},
    }}))
}

fn usergroup_members(state: &FakeState, p: &Map<String, Value>) -> Result<Value, &'static str> {
    let group = required(p, "usergroup", "invalid_arguments")?;
    let members = state.usergroups.get(&group).ok_or("no_such_subteam")?;
    Ok(json!({"users": members}))
}

impl FakeState {
    /// Strictly increasing, unique within this fake.
    fn next_ts(&mut self) -> String {
        self.issued_ts += 1;
        let micros = TS_BASE_MICROS + self.issued_ts * 100;
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }
}

/// A message as Slack echoes it back in `chat.postMessage` / `chat.update`.
fn message_json(
    user: &str,
    text: &str,
    ts: Option<&str>,
    blocks: Option<&Value>,
    thread_ts: Option<&str>,
) -> Value {
    let mut message = json!({
        "type": "message",
        "text": text,
        "user": user,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
    });
    let optional = [
        ("ts", ts.map(Value::from)),
        ("blocks", blocks.cloned()),
        ("thread_ts", thread_ts.map(Value::from)),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            message[key] = value;
        }
    }
    message
}

/// Text and blocks of a message; blocks may come as a JSON array or, in form
/// and query parameters, as a string holding one.
fn message_content(p: &Map<String, Value>) -> Result<(String, Option<Value>), &'static str> {
    let text = str_param(p, "text");
    let blocks = match p.get("blocks") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(serde_json::from_str(s).map_err(|_| "invalid_blocks")?),
        Some(other) => Some(other.clone()),
    };
    if blocks.as_ref().is_some_and(|b| !b.is_array()) {
        return Err("invalid_blocks");
    }
    if text.is_none() && blocks.is_none() && !p.contains_key("attachments") {
        return Err("no_text");
    }
    Ok((text.unwrap_or_default(), blocks))
}

fn required(
    p: &Map<String, Value>,
    key: &str,
    error: &'static str,
) -> Result<String, &'static str> {
    str_param(p, key).ok_or(error)
}

/// A non-empty string parameter; numbers and booleans count, as their text.
fn str_param(p: &Map<String, Value>, key: &str) -> Option<String> {
    let text = match p.get(key)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

/// Parameters from a JSON or form body; a body of any other type is ignored.
fn body_params(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, &'static str> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-www-form-urlencoded");
    if content_type.starts_with("application/json") {
        match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err("invalid_json"),
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        Ok(parse_form(&String::from_utf8_lossy(body))
            .into_iter()
            .collect())
    } else {
        Ok(Map::new())
    }
}

fn ok_body(fields: Value) -> Value {
    let mut body = json!({"ok": true});
    if let Value::Object(fields) = fields {
        body.as_object_mut().expect("object").extend(fields);
    }
    body
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, JSON_UTF8)],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------- Socket Mode

async fn socket_handler(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| run_socket(shared, socket))
}

enum SocketEnd {
    /// The client closed it, or it broke.
    Closed,
    /// `drop_socket`, or the fake itself was dropped.
    Aborted,
}

async fn run_socket(shared: Arc<Shared>, mut socket: WebSocket) {
    let (commands, mut inbox) = mpsc::unbounded_channel();
    let (id, open_now) = shared.register_socket(commands);
    let hello = hello_frame(open_now);
    let end = match socket.send(Message::Text(hello.into())).await {
        Ok(()) => pump(&shared, &mut socket, &mut inbox).await,
        Err(_) => SocketEnd::Closed,
    };
    match end {
        SocketEnd::Aborted => drop(socket),
        SocketEnd::Closed => {
            shared.unregister_socket(id);
            // Finish the close handshake tungstenite started, if any.
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close()).await;
        }
    }
    shared.unregister_socket(id);
    // Last: `drop_socket` waits for the inbox to go, so the connection must
    // already be closed by then.
    drop(inbox);
}

/// Relays frames both ways until the connection ends. Pings need nothing
/// here: tungstenite queues the pong and flushes it on the next read.
async fn pump(
    shared: &Shared,
    socket: &mut WebSocket,
    inbox: &mut mpsc::UnboundedReceiver<SocketCommand>,
) -> SocketEnd {
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => shared.record_frame(text.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return SocketEnd::Closed,
                Some(Ok(_)) => {}
            },
            command = inbox.recv() => match command {
                Some(SocketCommand::Send(text, written)) => {
                    let sent = socket.send(Message::Text(text.into())).await.is_ok();
                    let _ = written.send(sent);
                }
                Some(SocketCommand::Abort) | None => return SocketEnd::Aborted,
            },
        }
    }
}

fn hello_frame(num_connections: usize) -> String {
    json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {"host": "fake", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": APP_ID},
    })
    .to_string()
}

impl Shared {
    /// Returns the connection's id and how many are open, it included.
    fn register_socket(&self, commands: mpsc::UnboundedSender<SocketCommand>) -> (usize, usize) {
        let sockets = &mut self.state().sockets;
        sockets.accepted += 1;
        let id = sockets.accepted;
        sockets.open.push(OpenSocket { id, commands });
        (id, sockets.open.len())
    }

    fn unregister_socket(&self, id: usize) {
        self.state().sockets.open.retain(|s| s.id != id);
    }

    fn record_frame(&self, text: &str) {
        let sockets = &mut self.state().sockets;
        sockets.frames.push(text.to_owned());
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(envelope_id) = frame.get("envelope_id").and_then(Value::as_str) {
            sockets.acks.entry(envelope_id.to_owned()).or_insert(frame);
        }
    }
}

// ------------------------------------------------------ payload builders

/// A `/failover` slash command as Slack sends it over Socket Mode.
pub fn slash_command(user: &str, channel: &str, text: &str, trigger_id: &str) -> Value {
    let fields = slash_command_fields(user, channel, text, trigger_id);
    let map = fields
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)));
    Value::Object(map.collect())
}

/// The same, as the form body Slack POSTs to a slash command URL.
pub fn slash_command_form(user: &str, channel: &str, text: &str, trigger_id: &str) -> String {
    slash_command_fields(user, channel, text, trigger_id)
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// In the order Slack sends them.
fn slash_command_fields(
    user: &str,
    channel: &str,
    text: &str,
    trigger_id: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("token", "fake-verification-token".to_owned()),
        ("team_id", TEAM_ID.to_owned()),
        ("team_domain", "fake-workspace".to_owned()),
        ("channel_id", channel.to_owned()),
        ("channel_name", channel.to_lowercase()),
        ("user_id", user.to_owned()),
        ("user_name", user.to_lowercase()),
        ("command", "/failover".to_owned()),
        ("text", text.to_owned()),
        ("api_app_id", APP_ID.to_owned()),
        ("is_enterprise_install", "false".to_owned()),
        (
            "response_url",
            format!("https://hooks.slack.com/commands/{TEAM_ID}/1/fake"),
        ),
        ("trigger_id", trigger_id.to_owned()),
    ]
}

/// A `reaction_added` / `reaction_removed` event_callback. The reacted-to
/// message is taken to be the bot's (`item_user` is the default bot user).
pub fn reaction_event(
    event_id: &str,
    user: &str,
    reaction: &str,
    channel: &str,
    ts: &str,
    added: bool,
) -> Value {
    let event_time = chrono::Utc::now().timestamp();
    let kind = if added {
        "reaction_added"
    } else {
        "reaction_removed"
    };
    json!({
        "token": "fake-verification-token",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "event": {
            "type": kind,
            "user": user,
            "reaction": reaction,
            "item_user": DEFAULT_BOT_USER,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "event_ts": format!("{event_time}.000100"),
        },
    })
}

/// Slack's request signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

// ------------------------------------------------------- form encoding

/// `application/x-www-form-urlencoded` pairs, as strings.
fn parse_form(text: &str) -> Vec<(String, Value)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(key), Value::String(form_decode(value)))
        })
        .collect()
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex_digit(*hi).zip(hex_digit(*lo)),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((hi, lo)), _) => {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, other) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// As Slack encodes form bodies (the signing test vector relies on it):
/// letters, digits and `*-._` stay, space becomes `+`, the rest is `%XX`.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ------------------------------------------------- redelivered envelopes

impl FakeSlack {
    /// Sends an envelope with a chosen id and Slack's retry fields, as Slack
    /// does when it redelivers one that was not acknowledged in time: the
    /// same `envelope_id` (or a new one) around the same payload, so the
    /// same `event_id` / `trigger_id`. Panics if no socket is open.
    pub async fn send_envelope_as(
        &self,
        envelope_id: &str,
        kind: &str,
        payload: Value,
        accepts_response_payload: bool,
        retry_attempt: u32,
    ) {
        let retry_reason = if retry_attempt == 0 { "" } else { "timeout" };
        let envelope = json!({
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
            "payload": payload,
        });
        self.send_raw(&envelope.to_string()).await;
    }

    /// Every ack frame the client sent for `envelope_id`, in order: one per
    /// delivery when an envelope was redelivered under the same id.
    pub fn acks_of(&self, envelope_id: &str) -> Vec<Value> {
        self.socket_frames()
            .iter()
            .filter_map(|f| serde_json::from_str::<Value>(f).ok())
            .filter(|f| f.get("envelope_id").and_then(Value::as_str) == Some(envelope_id))
            .collect()
    }
}

// ------------------------------------ the bot under test, and deliveries

/// How Slack reaches the bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Socket,
    Http,
}

/// What `failover-bot serve --in-memory` is started with.
#[derive(Clone, Debug)]
pub struct BotSetup {
    pub config: String,
    pub transport: Transport,
    pub bot_token: String,
    /// Set for Socket Mode only (it wins over HTTP when present).
    pub app_token: String,
    /// Always set: HTTP needs it, and in Socket Mode it is one more secret
    /// in the environment that must not leak.
    pub signing_secret: String,
    pub rust_log: String,
    pub extra_env: Vec<(String, String)>,
}

impl BotSetup {
    pub fn new(config: &str, transport: Transport) -> BotSetup {
        BotSetup {
            config: config.to_owned(),
            transport,
            bot_token: "xoxb-test-bot-token".to_owned(),
            app_token: "xapp-test-app-token".to_owned(),
            signing_secret: "8f742231b10e8888abcd99yyyzzz85a5".to_owned(),
            rust_log: "info".to_owned(),
            extra_env: Vec::new(),
        }
    }
}

/// `failover-bot serve --in-memory` pointed at a fake Slack, in its own
/// temporary directory (config, journal, log). Its stdout and stderr both
/// go to the log file, so nothing it prints is lost. Killed on drop.
pub struct ServeBot {
    child: std::process::Child,
    pub transport: Transport,
    pub port: u16,
    log: std::path::PathBuf,
    journal: std::path::PathBuf,
    signing_secret: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for ServeBot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the bot answered one delivery with, and how long it took.
#[derive(Clone, Debug)]
pub struct Acked {
    /// HTTP status (200 for a Socket Mode ack).
    pub status: u16,
    /// The immediate reply text of a slash command, if any.
    pub text: String,
    /// From sending to the answer (HTTP response, or the ack frame seen by
    /// the fake, which polls every 10 ms).
    pub elapsed: Duration,
}

impl ServeBot {
    /// Starts the bot and waits until it is ready: connected over Socket
    /// Mode, or answering `/healthz`. Panics with its log if it never is.
    pub async fn start(fake: &FakeSlack, setup: &BotSetup) -> ServeBot {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, &setup.config).expect("config written");
        let log = dir.path().join("bot.log");
        let journal = dir.path().join("journal.jsonl");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file handle");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"));
        command
            .arg("serve")
            .arg("--in-memory")
            .arg("--config")
            .arg(&config)
            .arg("--journal")
            .arg(&journal)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("SLACK_BOT_TOKEN", &setup.bot_token)
            .env("SLACK_SIGNING_SECRET", &setup.signing_secret)
            .env("SLACK_API_URL", fake.api_url())
            .env("RUST_LOG", &setup.rust_log)
            .env_remove("SLACK_APP_TOKEN")
            .envs(setup.extra_env.iter().map(|(k, v)| (k, v)))
            .stdout(out)
            .stderr(err);
        if setup.transport == Transport::Socket {
            command.env("SLACK_APP_TOKEN", &setup.app_token);
        }
        let bot = ServeBot {
            child: command.spawn().expect("failover-bot serve starts"),
            transport: setup.transport,
            port,
            log,
            journal,
            signing_secret: setup.signing_secret.clone(),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        bot.wait_ready(fake).await;
        bot
    }

    async fn wait_ready(&self, fake: &FakeSlack) {
        let ready = match self.transport {
            Transport::Socket => fake.wait_connected(1, Duration::from_secs(20)).await,
            Transport::Http => {
                let url = self.url("/readyz");
                let mut ok = false;
                for _ in 0..1000 {
                    let answer = self.http.get(&url).send().await;
                    if answer.is_ok_and(|r| r.status().is_success()) {
                        ok = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ok
            }
        };
        assert!(ready, "bot did not become ready; log:\n{}", self.log());
    }

    /// Everything the process printed so far, stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The journal's records, as JSON.
    pub fn journal(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.journal)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Asks the process to shut down (SIGTERM, as Kubernetes does) and
    /// waits up to 10 s for it, then kills it: either way its log is
    /// complete afterwards, shutdown lines included.
    pub async fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        for _ in 0..200 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// POSTs `body` to `path`, signed with the bot's signing secret. A
    /// retry (`attempt` > 0) carries `X-Slack-Retry-Num` and
    /// `X-Slack-Retry-Reason`, as Slack's redeliveries do.
    pub async fn post_signed(&self, path: &str, body: &str, attempt: u32) -> Acked {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(&self.signing_secret, timestamp, body);
        let mut request = self
            .http
            .post(self.url(path))
            .header("X-Slack-Request-Timestamp", timestamp.to_string())
            .header("X-Slack-Signature", signature)
            .body(body.to_owned());
        if attempt > 0 {
            request = request
                .header("X-Slack-Retry-Num", attempt.to_string())
                .header("X-Slack-Retry-Reason", "http_timeout");
        }
        let started = Instant::now();
        let response = request.send().await.expect("the bot answers HTTP");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let elapsed = started.elapsed();
        let text = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["text"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Acked {
            status,
            text,
            elapsed,
        }
    }

    /// Delivers a `/failover` slash command, attempt `attempt` (0 = first).
    /// Over Socket Mode the envelope id is `envelope_id`; over HTTP it is
    /// not used. `None` if a Socket Mode envelope was never acknowledged.
    pub async fn deliver_command(
        &self,
        fake: &FakeSlack,
        payload: (&str, &str, &str, &str),
        envelope_id: &str,
        attempt: u32,
    ) -> Option<Acked> {
        let (user, channel, text, trigger) = payload;
        match self.transport {
            Transport::Http => {
                let form = slash_command_form(user, channel, text, trigger);
                Some(self.post_signed("/slack/commands", &form, attempt).await)
            }
            Transport::Socket => {
                let command = slash_command(user, channel, text, trigger);
                self.deliver_envelope(fake, envelope_id, "slash_commands", command, attempt)
                    .await
            }
        }
    }

    /// Delivers an Events API `event_callback`, attempt `attempt`.
    pub async fn deliver_event(
        &self,
        fake: &FakeSlack,
        event: Value,
        envelope_id: &str,
        attempt: u32,
    ) -> Option<Acked> {
        match self.transport {
            Transport::Http => Some(
                self.post_signed("/slack/events", &event.to_string(), attempt)
                    .await,
            ),
            Transport::Socket => {
                self.deliver_envelope(fake, envelope_id, "events_api", event, attempt)
                    .await
            }
        }
    }

    async fn deliver_envelope(
        &self,
        fake: &FakeSlack,
        envelope_id: &str,
        kind: &str,
        payload: Value,
        attempt: u32,
    ) -> Option<Acked> {
        let accepts = kind == "slash_commands";
        let started = Instant::now();
        fake.send_envelope_as(envelope_id, kind, payload, accepts, attempt)
            .await;
        let ack = fake.wait_ack(envelope_id, Duration::from_secs(30)).await?;
        Some(Acked {
            status: 200,
            text: ack["payload"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            elapsed: started.elapsed(),
        })
    }
}

// --------------------------------------------------- reading a transcript

/// The bot's plan messages in `channel`, as (step, ts): top-level posts
/// that open with `… *Operation #N · step S/T* …`.
pub fn plans_in(posts: &[Posted], channel: &str) -> Vec<(usize, String)> {
    posts
        .iter()
        .filter(|p| p.channel == channel && p.thread_ts.is_none() && p.ephemeral_user.is_none())
        .filter(|p| p.text.contains("*Operation #"))
        .filter_map(|p| {
            let rest = p.text.split(" · step ").nth(1)?;
            let step = rest.split('/').next()?.parse().ok()?;
            Some((step, p.ts.clone()))
        })
        .collect()
}

/// The texts posted in the thread under message `ts`, in order.
pub fn thread_of<'a>(posts: &'a [Posted], ts: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    posts
        .iter()
        .filter(move |p| p.thread_ts.as_deref() == Some(ts))
        .map(|p| p.text.as_str())
}
