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
//!
//! Here: the handle, the recordings and reading them. [`web_api`] answers
//! the Web API methods and injects [`Fault`]s; [`socket_mode`] is the
//! WebSocket side (envelopes out, acks in); [`payloads`] builds what Slack
//! sends a bot (slash commands, reaction events) and signs requests;
//! [`files`] is the external upload flow (`files.getUploadURLExternal`, the
//! upload URL, `files.completeUploadExternal`), checking what arrives.

#![allow(dead_code)]

mod files;
mod payloads;
mod socket_mode;
mod web_api;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::routing::{any, get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[allow(unused_imports)] // not every test reads files
pub use files::SharedFile;
#[allow(unused_imports)] // not every test builds payloads
pub use payloads::{
    block_actions, interaction_form, reaction_event, sign, slash_command, slash_command_form,
    Clicked,
};
use socket_mode::SocketState;

pub const TEAM_ID: &str = "TFAKE";
pub const APP_ID: &str = "AFAKE";
pub const BOT_ID: &str = "BFAKE";
pub const DEFAULT_BOT_USER: &str = "UBOT";
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
    /// The message's metadata, as Slack keeps it: the bot's kind and facts.
    pub metadata: Option<Value>,
}

impl Posted {
    /// The bot's kind of message (`plan`, `step_result`…), from its metadata.
    pub fn kind(&self) -> Option<&str> {
        self.metadata
            .as_ref()?
            .get("event_type")?
            .as_str()?
            .strip_prefix("failover_bot_")
    }

    /// One fact of the message, from its metadata.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.metadata
            .as_ref()?
            .get("event_payload")?
            .get(key)?
            .as_str()
    }

    /// Whether it is of `kind` with every fact in `facts`.
    pub fn is(&self, kind: &str, facts: &[(&str, &str)]) -> bool {
        self.kind() == Some(kind) && facts.iter().all(|(k, v)| self.fact(k) == Some(*v))
    }

    /// Posted in the channel itself: not in a thread, not ephemeral.
    pub fn is_channel_post(&self) -> bool {
        self.thread_ts.is_none() && self.ephemeral_user.is_none()
    }

    /// The kind and facts in a line, for failure messages.
    pub fn summary(&self) -> String {
        let payload = self
            .metadata
            .as_ref()
            .and_then(|m| m.get("event_payload"))
            .map_or_else(String::new, Value::to_string);
        format!("{} {payload}", self.kind().unwrap_or("(no kind)"))
    }
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
    files: files::FilesState,
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
            .route("/api/{method}", any(web_api::api_handler))
            .route("/socket", get(socket_mode::socket_handler))
            .route("/upload/{id}", post(files::upload_bytes))
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
    /// ephemeral) of kind `plan`, posted awaiting approval, in order.
    pub fn plan_posts(&self) -> Vec<Posted> {
        self.posts()
            .into_iter()
            .filter(|p| p.is_channel_post() && p.is("plan", &[("status", "pending")]))
            .collect()
    }

    /// The messages posted in the thread of message `ts`, in order.
    pub fn thread(&self, ts: &str) -> Vec<Posted> {
        thread_of(&self.posts(), ts).cloned().collect()
    }

    /// Whether the thread of message `ts` has a message of `kind` with
    /// every fact in `facts`.
    pub fn thread_has(&self, ts: &str, kind: &str, facts: &[(&str, &str)]) -> bool {
        thread_of(&self.posts(), ts).any(|p| p.is(kind, facts))
    }

    /// What message `ts` was last updated to, if it ever was.
    pub fn last_update(&self, ts: &str) -> Option<Posted> {
        self.updates().into_iter().rfind(|u| u.ts == ts)
    }

    /// Message `ts` as it shows now: its newest update, else as posted.
    pub fn message_now(&self, ts: &str) -> Option<Posted> {
        self.last_update(ts)
            .or_else(|| self.posts().into_iter().find(|p| p.ts == ts))
    }

    /// The buttons message `ts` shows now, as (action_id, value).
    pub fn buttons(&self, ts: &str) -> Vec<(String, String)> {
        let Some(blocks) = self.message_now(ts).and_then(|m| m.blocks) else {
            return Vec::new();
        };
        let elements = blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default());
        elements
            .filter(|e| e["type"] == "button")
            .map(|e| {
                let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                (field("action_id"), field("value"))
            })
            .collect()
    }

    /// The `block_actions` payload of `user` clicking the button
    /// `action_id` on message `ts` as it shows now, or `None` if it shows
    /// no such button.
    pub fn click_payload(
        &self,
        user: &str,
        ts: &str,
        action_id: &str,
        trigger_id: &str,
    ) -> Option<Value> {
        let message = self.message_now(ts)?;
        let (_, value) = self
            .buttons(ts)
            .into_iter()
            .find(|(id, _)| id == action_id)?;
        let blocks = message.blocks.clone().unwrap_or(Value::Null);
        let clicked = Clicked {
            user,
            channel: &message.channel,
            ts,
            action_id,
            value: &value,
            text: &message.text,
            blocks: &blocks,
        };
        Some(block_actions(&clicked, trigger_id))
    }

    /// The status the plan message `ts` shows now (`pending`, `applied`,
    /// `rejected`…): its newest update's, or as posted.
    pub fn plan_status(&self, ts: &str) -> Option<String> {
        let now = self
            .last_update(ts)
            .or_else(|| self.posts().into_iter().find(|p| p.ts == ts))?;
        now.fact("status").map(str::to_owned)
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
        out += &state.sockets.dump();
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
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.shutdown.take();
        self.server.abort();
        // Socket tasks outlive the server task; dropping their command
        // channels makes them drop their connections.
        self.shared.state().sockets.close_all();
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock must not hide the
        // recordings from the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// --------------------------------------------------- reading a transcript

/// The bot's plan messages in `channel`, as (step, ts): top-level posts
/// of kind `plan`, by their `step` fact.
pub fn plans_in(posts: &[Posted], channel: &str) -> Vec<(usize, String)> {
    posts
        .iter()
        .filter(|p| p.channel == channel && p.is_channel_post() && p.kind() == Some("plan"))
        .filter_map(|p| Some((p.fact("step")?.parse().ok()?, p.ts.clone())))
        .collect()
}

/// The messages posted in the thread under message `ts`, in order.
pub fn thread_of<'a>(posts: &'a [Posted], ts: &'a str) -> impl Iterator<Item = &'a Posted> + 'a {
    posts
        .iter()
        .filter(move |p| p.thread_ts.as_deref() == Some(ts))
}
