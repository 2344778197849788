//! What Slack sends a bot, built as Slack builds it: slash commands (as a
//! Socket Mode payload or an HTTP form), reaction events, button clicks
//! (`block_actions`, as a Socket Mode payload or the `payload=` form), and
//! the request signature; and the form encoding both directions use.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{APP_ID, DEFAULT_BOT_USER, TEAM_ID};

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

/// A click on a button of the bot's message `ts` in `channel`: the
/// `block_actions` payload Slack sends, with the button's `action_id` and
/// `value` as the message showed them, and the message as Slack echoes it.
pub fn block_actions(click: &Clicked<'_>, trigger_id: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "fake-workspace"},
        "user": {"id": click.user, "username": click.user.to_lowercase(), "name": click.user.to_lowercase(), "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "fake-verification-token",
        "container": {"type": "message", "message_ts": click.ts, "channel_id": click.channel, "is_ephemeral": false},
        "trigger_id": trigger_id,
        "channel": {"id": click.channel, "name": click.channel.to_lowercase()},
        "message": {
            "type": "message",
            "user": DEFAULT_BOT_USER,
            "ts": click.ts,
            "text": click.text,
            "blocks": click.blocks,
        },
        "response_url": format!("https://hooks.slack.com/actions/{TEAM_ID}/1/fake"),
        "actions": [{
            "type": "button",
            "action_id": click.action_id,
            "block_id": "plan_actions",
            "value": click.value,
            "text": {"type": "plain_text", "text": click.action_id, "emoji": true},
            "action_ts": format!("{now}.000200"),
        }],
    })
}

/// What a click is on: who clicks which button of which message, and the
/// message as it shows.
pub struct Clicked<'a> {
    pub user: &'a str,
    pub channel: &'a str,
    pub ts: &'a str,
    pub action_id: &'a str,
    pub value: &'a str,
    pub text: &'a str,
    pub blocks: &'a Value,
}

/// The body Slack POSTs to the interactivity request URL.
pub fn interaction_form(payload: &Value) -> String {
    format!("payload={}", form_encode(&payload.to_string()))
}

/// Slack's request signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

// ------------------------------------------------------- form encoding

/// `application/x-www-form-urlencoded` pairs, as strings.
pub(super) fn parse_form(text: &str) -> Vec<(String, Value)> {
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
