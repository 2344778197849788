//! Socket Mode: the WebSocket the bot opens with the URL from
//! `apps.connections.open`, the envelopes sent down it and the acks that
//! come back, connections dropped and redelivered envelopes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::{FakeSlack, Shared, APP_ID};

#[derive(Default)]
pub(super) struct SocketState {
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
        let envelope_id = self.next_envelope_id();
        self.send_envelope_as(&envelope_id, kind, payload, accepts_response_payload, 0)
            .await;
        envelope_id
    }

    /// An envelope id not used before, as Slack gives every envelope.
    pub fn next_envelope_id(&self) -> String {
        let mut state = self.shared.state();
        state.sockets.issued_envelopes += 1;
        format!("fake-envelope-{:04}", state.sockets.issued_envelopes)
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

impl SocketState {
    /// Connections and every frame from the client, for failure output.
    pub(super) fn dump(&self) -> String {
        let mut out = format!(
            "Socket Mode: {} accepted, {} open, {} frames from the client:\n",
            self.accepted,
            self.open.len(),
            self.frames.len()
        );
        for frame in &self.frames {
            out += &format!("  {frame}\n");
        }
        out
    }

    /// Dropping their command channels makes the connections' tasks drop
    /// the connections.
    pub(super) fn close_all(&mut self) {
        self.open.clear();
    }
}

pub(super) async fn socket_handler(
    State(shared): State<Arc<Shared>>,
    upgrade: WebSocketUpgrade,
) -> Response {
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
