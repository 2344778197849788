//! The Web API: one handler for every method, the faults queued for it,
//! and each method's answer as Slack gives it.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::payloads::parse_form;
use super::{ApiCall, FakeState, Fault, Posted, Shared, APP_ID, BOT_ID, TEAM_ID};

const JSON_UTF8: &str = "application/json; charset=utf-8";
/// Message timestamps start here: 1700000000.000100, then +100 µs each.
const TS_BASE_MICROS: u64 = 1_700_000_000_000_000;

pub(super) async fn api_handler(
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
            "files.getUploadURLExternal" => super::files::upload_url(&mut state, self.port, p),
            "files.completeUploadExternal" => super::files::complete(&mut state, p),
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
    let metadata = message_metadata(p)?;
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
        metadata,
    });
    Ok(json!({"channel": channel, "ts": ts, "message": message}))
}

/// Accepts any `ts`: the fake does not check that the message exists.
fn update_message(state: &mut FakeState, p: &Map<String, Value>) -> Result<Value, &'static str> {
    let channel = required(p, "channel", "channel_not_found")?;
    let ts = required(p, "ts", "message_not_found")?;
    let (text, blocks) = message_content(p)?;
    let metadata = message_metadata(p)?;
    // slack-morphism requires `message` in the answer, as Slack sends it.
    let message = message_json(&state.bot_user, &text, None, blocks.as_ref(), None);
    state.updates.push(Posted {
        channel: channel.clone(),
        ts: ts.clone(),
        thread_ts: None,
        text: text.clone(),
        blocks,
        ephemeral_user: None,
        metadata,
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
        metadata: None,
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
    if let Some(blocks) = &blocks {
        check_buttons(blocks)?;
    }
    if text.is_none() && blocks.is_none() && !p.contains_key("attachments") {
        return Err("no_text");
    }
    Ok((text.unwrap_or_default(), blocks))
}

/// Slack refuses a message whose buttons break Block Kit's limits: a
/// button's text at most 75 characters, its value 2,000, its action_id
/// 255 (unique in the message); a confirmation dialog's title 100, its
/// text 300, its confirm and deny labels 30.
fn check_buttons(blocks: &Value) -> Result<(), &'static str> {
    let within = |v: &Value, max: usize| v.as_str().is_some_and(|s| s.chars().count() <= max);
    let buttons = blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["type"] == "button");
    let mut action_ids = std::collections::HashSet::new();
    for button in buttons {
        let action_id = &button["action_id"];
        let ok = within(&button["text"]["text"], 75)
            && (button["value"].is_null() || within(&button["value"], 2000))
            && within(action_id, 255)
            && action_ids.insert(action_id.to_string());
        let confirm = &button["confirm"];
        let confirm_ok = confirm.is_null()
            || (within(&confirm["title"]["text"], 100)
                && within(&confirm["text"]["text"], 300)
                && within(&confirm["confirm"]["text"], 30)
                && within(&confirm["deny"]["text"], 30));
        if !ok || !confirm_ok {
            return Err("invalid_blocks");
        }
    }
    Ok(())
}

/// A message's `metadata`, as Slack takes it: an object (or, in a form
/// body, its JSON) with a string `event_type` and an object
/// `event_payload`. Anything else is refused, as Slack does, so a bot
/// that sends malformed metadata fails here too.
fn message_metadata(p: &Map<String, Value>) -> Result<Option<Value>, &'static str> {
    let metadata = match p.get("metadata") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => {
            serde_json::from_str::<Value>(s).map_err(|_| "invalid_metadata_format")?
        }
        Some(other) => other.clone(),
    };
    let has_type = metadata.get("event_type").is_some_and(Value::is_string);
    let payload_is_object = metadata
        .get("event_payload")
        .is_none_or(|payload| payload.is_object());
    if !has_type || !payload_is_object {
        return Err("invalid_metadata_schema");
    }
    Ok(Some(metadata))
}

fn required(
    p: &Map<String, Value>,
    key: &str,
    error: &'static str,
) -> Result<String, &'static str> {
    str_param(p, key).ok_or(error)
}

/// A non-empty string parameter; numbers and booleans count, as their text.
pub(super) fn str_param(p: &Map<String, Value>, key: &str) -> Option<String> {
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
