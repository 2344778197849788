//! Checks the fake Slack itself with plain HTTP and WebSocket clients, so a
//! failing bot test can be trusted to be about the bot.

#[path = "support/fake_slack/mod.rs"]
mod fake_slack;

use std::time::{Duration, Instant};

use fake_slack::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const BOT_TOKEN: &str = "xoxb-test";
const APP_TOKEN: &str = "xapp-test";
const WAIT: Duration = Duration::from_secs(5);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn http() -> reqwest::Client {
    // A proxy from the environment must not see requests meant for 127.0.0.1.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post_json(fake: &FakeSlack, method: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}/{method}", fake.api_url()))
        .bearer_auth(BOT_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The answer's JSON, after checking it is a normal 200 JSON answer.
async fn api(fake: &FakeSlack, method: &str, body: Value) -> Value {
    let response = post_json(fake, method, body).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert_eq!(content_type, "application/json; charset=utf-8");
    response.json().await.unwrap()
}

fn ts_value(ts: &str) -> (u64, u64) {
    let (secs, micros) = ts.split_once('.').unwrap();
    (secs.parse().unwrap(), micros.parse().unwrap())
}

#[tokio::test]
async fn chat_calls_are_recorded_with_increasing_ts() {
    let fake = FakeSlack::start().await;
    let first = api(
        &fake,
        "chat.postMessage",
        json!({"channel": "C1", "text": "plan"}),
    )
    .await;
    assert_eq!(first["ok"], true);
    assert_eq!(first["channel"], "C1");
    assert_eq!(first["message"]["text"], "plan");
    assert_eq!(first["message"]["user"], "UBOT");
    let ts = first["ts"].as_str().unwrap().to_owned();
    assert_eq!(first["message"]["ts"], ts.as_str());

    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]);
    let reply = json!({"channel": "C1", "thread_ts": ts, "text": "step 1", "blocks": blocks});
    let second = api(&fake, "chat.postMessage", reply).await;
    assert_eq!(second["message"]["thread_ts"], ts.as_str());
    let update = json!({"channel": "C1", "ts": ts, "text": "plan (approved)"});
    let updated = api(&fake, "chat.update", update).await;
    assert_eq!(
        (&updated["ts"], &updated["text"]),
        (&json!(ts), &json!("plan (approved)"))
    );
    assert_eq!(updated["message"]["text"], "plan (approved)");
    let ephemeral = json!({"channel": "C1", "user": "U2", "text": "not you"});
    let ephemeral = api(&fake, "chat.postEphemeral", ephemeral).await;
    let reaction = json!({"channel": "C1", "timestamp": ts, "name": "eyes"});
    assert_eq!(
        api(&fake, "reactions.add", reaction.clone()).await,
        json!({"ok": true})
    );
    let again = api(&fake, "reactions.add", reaction).await;
    assert_eq!(again, json!({"ok": false, "error": "already_reacted"}));

    let posts = fake.posts();
    assert_eq!(posts.len(), 3);
    assert_eq!(
        (posts[0].ts.as_str(), posts[0].text.as_str()),
        (ts.as_str(), "plan")
    );
    assert_eq!(posts[1].thread_ts.as_deref(), Some(ts.as_str()));
    assert_eq!(posts[1].blocks, Some(blocks));
    assert_eq!(posts[2].ephemeral_user.as_deref(), Some("U2"));
    assert_eq!(posts[2].ts, ephemeral["message_ts"].as_str().unwrap());
    assert_eq!(ts, "1700000000.000100");
    assert!(posts
        .windows(2)
        .all(|w| ts_value(&w[0].ts) < ts_value(&w[1].ts)));
    let updates = fake.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(
        (updates[0].ts.as_str(), updates[0].text.as_str()),
        (ts.as_str(), "plan (approved)")
    );
    let reactions = fake.reactions_added();
    assert_eq!(reactions, vec![("C1".into(), ts.clone(), "eyes".into())]);
    assert_eq!(fake.calls().len(), 6);
    assert_eq!(
        fake.calls_to("reactions.add")[1].error.as_deref(),
        Some("already_reacted")
    );
}

#[tokio::test]
async fn params_come_from_json_form_and_query() {
    let fake = FakeSlack::start().await;
    api(
        &fake,
        "chat.postMessage",
        json!({"channel": "C1", "text": "json"}),
    )
    .await;

    let form = "channel=C2&text=two+words%21&blocks=%5B%7B%22type%22%3A%22divider%22%7D%5D";
    let response = http()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .bearer_auth(BOT_TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["ok"], true);

    let url = format!("{}/users.info?user=U7&include_locale=true", fake.api_url());
    let response = http().get(url).bearer_auth(BOT_TOKEN).send().await.unwrap();
    let user: Value = response.json().await.unwrap();
    assert_eq!(
        (&user["user"]["id"], &user["user"]["is_bot"]),
        (&json!("U7"), &json!(false))
    );

    // A token in the body, as some clients send it, instead of the header.
    let response = http()
        .post(format!("{}/auth.test", fake.api_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=xoxb-in-body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["user_id"], "UBOT");

    let posts = fake.posts();
    assert_eq!(
        (posts[1].channel.as_str(), posts[1].text.as_str()),
        ("C2", "two words!")
    );
    assert_eq!(posts[1].blocks, Some(json!([{"type": "divider"}])));
    let calls = fake.calls();
    let methods: Vec<_> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "chat.postMessage",
            "chat.postMessage",
            "users.info",
            "auth.test"
        ]
    );
    assert_eq!(calls[0].params, json!({"channel": "C1", "text": "json"}));
    assert_eq!(
        calls[2].params,
        json!({"user": "U7", "include_locale": "true"})
    );
    assert_eq!(calls[2].token.as_deref(), Some(BOT_TOKEN));
    assert_eq!(calls[3].token.as_deref(), Some("xoxb-in-body"));
    assert!(calls.iter().all(|c| c.ok == Some(true)));
}

#[tokio::test]
async fn bad_requests_get_slack_errors() {
    let fake = FakeSlack::start().await;
    let error = |v: Value| v["error"].as_str().unwrap().to_owned();
    let no_channel = api(&fake, "chat.postMessage", json!({"text": "x"})).await;
    assert_eq!(error(no_channel), "channel_not_found");
    let no_text = api(&fake, "chat.postMessage", json!({"channel": "C1"})).await;
    assert_eq!(error(no_text), "no_text");
    assert_eq!(
        error(api(&fake, "chat.deleteEverything", json!({})).await),
        "unknown_method"
    );
    let url = format!("{}/auth.test", fake.api_url());
    let anonymous: Value = http().get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(error(anonymous), "not_authed");
    let bot_token_socket = api(&fake, "apps.connections.open", json!({})).await;
    assert_eq!(error(bot_token_socket), "not_allowed_token_type");
    assert!(fake.posts().is_empty());
    assert!(fake.calls().iter().all(|c| c.ok == Some(false)));
}

/// The bot's kind and facts travel as message metadata: the fake keeps
/// them, from a JSON body or a form's JSON, reads them back as kind and
/// facts, and refuses malformed metadata as Slack does.
#[tokio::test]
async fn message_metadata_is_kept_read_back_and_checked() {
    let fake = FakeSlack::start().await;
    let metadata = json!({
        "event_type": "failover_bot_plan",
        "event_payload": {"op": "1", "step": "2", "status": "pending"},
    });
    let plan = json!({"channel": "C1", "text": "plan", "metadata": metadata});
    let ts = api(&fake, "chat.postMessage", plan).await["ts"]
        .as_str()
        .unwrap()
        .to_owned();
    let applied =
        json!({"event_type": "failover_bot_plan", "event_payload": {"status": "applied"}});
    let form = format!(
        "channel=C1&ts={ts}&text=applied&metadata={}",
        urlencoding(&applied.to_string())
    );
    let response = http()
        .post(format!("{}/chat.update", fake.api_url()))
        .bearer_auth(BOT_TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["ok"], true);
    let thread = json!({"channel": "C1", "thread_ts": ts, "text": "no metadata"});
    api(&fake, "chat.postMessage", thread).await;

    let posted = &fake.posts()[0];
    assert_eq!(posted.kind(), Some("plan"));
    assert_eq!(posted.fact("step"), Some("2"));
    assert_eq!(posted.fact("missing"), None);
    assert!(posted.is("plan", &[("op", "1"), ("status", "pending")]));
    assert!(!posted.is("plan", &[("status", "applied")]));
    assert!(!posted.is("step_result", &[]));
    assert_eq!(fake.plan_posts().len(), 1, "a top-level plan, pending");
    assert_eq!(fake.plan_status(&ts).as_deref(), Some("applied"));
    let reply = &fake.thread(&ts)[0];
    assert_eq!((reply.kind(), reply.fact("op")), (None, None));
    assert_eq!(fake_slack::plans_in(&fake.posts(), "C1"), [(2, ts.clone())]);

    let bad_json = json!({"channel": "C1", "text": "x", "metadata": "{not json"});
    let refused = api(&fake, "chat.postMessage", bad_json).await;
    assert_eq!(refused["error"], "invalid_metadata_format");
    let no_type = json!({"channel": "C1", "text": "x", "metadata": {"event_payload": {}}});
    let refused = api(&fake, "chat.postMessage", no_type).await;
    assert_eq!(refused["error"], "invalid_metadata_schema");
    assert_eq!(fake.posts().len(), 2, "refused posts are not recorded");
}

/// Percent-encodes a form value.
fn urlencoding(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn button(action_id: &str, confirm_text: &str) -> Value {
    json!({
        "type": "button", "action_id": action_id, "value": "7:1:0123456789ab",
        "text": {"type": "plain_text", "text": "Approve"},
        "confirm": {
            "title": {"type": "plain_text", "text": "Approve?"},
            "text": {"type": "plain_text", "text": confirm_text},
            "confirm": {"type": "plain_text", "text": "Approve"},
            "deny": {"type": "plain_text", "text": "Cancel"},
        },
    })
}

#[tokio::test]
async fn buttons_are_read_back_clicked_and_checked_against_block_kit_limits() {
    let fake = FakeSlack::start().await;
    let actions = |buttons: Vec<Value>| json!([{"type": "actions", "elements": buttons}]);
    let ok = json!({"channel": "C1", "text": "plan",
        "blocks": actions(vec![button("approve", "In dev: blue 100→50."), button("reject", "x")])});
    let answer = api(&fake, "chat.postMessage", ok).await;
    let ts = answer["ts"].as_str().unwrap().to_owned();
    assert_eq!(
        fake.buttons(&ts),
        [
            ("approve".to_owned(), "7:1:0123456789ab".to_owned()),
            ("reject".to_owned(), "7:1:0123456789ab".to_owned())
        ]
    );
    let payload = fake.click_payload("UBOB", &ts, "reject", "trig-1").unwrap();
    assert_eq!(payload["type"], "block_actions");
    assert_eq!(payload["user"]["id"], "UBOB");
    assert_eq!(payload["container"]["message_ts"], ts.as_str());
    assert_eq!(payload["container"]["channel_id"], "C1");
    assert_eq!(payload["trigger_id"], "trig-1");
    assert_eq!(payload["actions"][0]["action_id"], "reject");
    assert_eq!(payload["actions"][0]["value"], "7:1:0123456789ab");
    assert_eq!(fake.click_payload("UBOB", &ts, "open", "trig-2"), None);
    let form = interaction_form(&payload);
    assert!(form.starts_with("payload=%7B%22"), "{form}");

    // An update whose blocks have no actions block takes the buttons away
    // (the bot always sends its blocks whole).
    let section = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "applied"}}]);
    let decided = json!({"channel": "C1", "ts": ts, "text": "applied", "blocks": section});
    api(&fake, "chat.update", decided).await;
    assert!(fake.buttons(&ts).is_empty());
    assert_eq!(fake.click_payload("UBOB", &ts, "approve", "trig-3"), None);

    let too_long = "x".repeat(301);
    let duplicate = vec![button("approve", "a"), button("approve", "b")];
    for blocks in [
        actions(vec![button("approve", &too_long)]),
        actions(duplicate),
    ] {
        let refused = json!({"channel": "C1", "text": "plan", "blocks": blocks});
        let answer = api(&fake, "chat.postMessage", refused).await;
        assert_eq!(answer["error"], "invalid_blocks", "{answer}");
    }
}

#[tokio::test]
async fn each_fault_applies_once_in_order() {
    let fake = FakeSlack::start().await;
    let post = json!({"channel": "C1", "text": "hi"});
    fake.fail_next(
        "chat.postMessage",
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    );
    fake.fail_next("chat.postMessage", Fault::ServerError);
    fake.fail_next("chat.postMessage", Fault::SlackError("is_archived"));
    fake.fail_next("chat.postMessage", Fault::Slow(Duration::from_millis(300)));

    // Other methods are unaffected.
    assert_eq!(api(&fake, "auth.test", json!({})).await["ok"], true);

    let limited = post_json(&fake, "chat.postMessage", post.clone()).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body, json!({"ok": false, "error": "ratelimited"}));

    let broken = post_json(&fake, "chat.postMessage", post.clone()).await;
    assert_eq!(broken.status(), 500);

    let refused = api(&fake, "chat.postMessage", post.clone()).await;
    assert_eq!(refused, json!({"ok": false, "error": "is_archived"}));

    let started = Instant::now();
    assert_eq!(
        api(&fake, "chat.postMessage", post.clone()).await["ok"],
        true
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    assert_eq!(api(&fake, "chat.postMessage", post).await["ok"], true);
    assert_eq!(fake.posts().len(), 2);
    let errors: Vec<_> = fake
        .calls_to("chat.postMessage")
        .into_iter()
        .map(|c| c.error)
        .collect();
    let expected = [
        Some("ratelimited"),
        Some("http_500"),
        Some("is_archived"),
        None,
        None,
    ];
    assert_eq!(errors, expected.map(|e| e.map(str::to_owned)));
}

#[tokio::test]
async fn usergroups_and_bot_identity() {
    let fake = FakeSlack::start().await;
    fake.set_usergroup("S0SRE", &["U1", "U2"]);
    fake.set_bot_user("UFAILOVER");
    let url = |q: &str| format!("{}/usergroups.users.list?usergroup={q}", fake.api_url());
    let get = |url: String| async move {
        let response = http().get(url).bearer_auth(BOT_TOKEN).send().await.unwrap();
        response.json::<Value>().await.unwrap()
    };
    assert_eq!(
        get(url("S0SRE")).await,
        json!({"ok": true, "users": ["U1", "U2"]})
    );
    assert_eq!(
        get(url("S404")).await,
        json!({"ok": false, "error": "no_such_subteam"})
    );
    let me = api(&fake, "auth.test", json!({})).await;
    assert_eq!(
        (&me["user_id"], &me["team_id"], &me["bot_id"]),
        (&json!("UFAILOVER"), &json!("TFAKE"), &json!("BFAKE"))
    );
}

async fn open_socket(fake: &FakeSlack) -> Socket {
    let response = http()
        .post(format!("{}/apps.connections.open", fake.api_url()))
        .bearer_auth(APP_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    let url = answer["url"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "ws://127.0.0.1:{}/socket?ticket=",
        fake.base_url().rsplit(':').next().unwrap()
    )));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = next_json(&mut socket).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["connection_info"]["app_id"], "AFAKE");
    socket
}

async fn next_message(socket: &mut Socket) -> Option<Result<Message, String>> {
    let next = tokio::time::timeout(WAIT, socket.next()).await;
    next.expect("a frame in time")
        .map(|r| r.map_err(|e| e.to_string()))
}

async fn next_json(socket: &mut Socket) -> Value {
    match next_message(socket).await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn send_json(socket: &mut Socket, value: Value) {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn socket_mode_envelopes_acks_and_disconnects() {
    let fake = FakeSlack::start().await;
    let mut socket = open_socket(&fake).await;
    assert!(fake.wait_connected(1, WAIT).await);

    let event = reaction_event(
        "Ev1",
        "U2",
        "white_check_mark",
        "C1",
        "1700000000.000100",
        true,
    );
    let id = fake.send_envelope("events_api", event.clone(), false).await;
    let envelope = next_json(&mut socket).await;
    assert_eq!(envelope["envelope_id"], id.as_str());
    assert_eq!(envelope["type"], "events_api");
    assert_eq!(envelope["accepts_response_payload"], false);
    assert_eq!(envelope["payload"], event);
    assert_eq!(
        envelope["payload"]["event"]["item"]["ts"],
        "1700000000.000100"
    );
    send_json(&mut socket, json!({"envelope_id": id})).await;
    assert_eq!(
        fake.wait_ack(&id, WAIT).await,
        Some(json!({"envelope_id": id}))
    );

    let command = slash_command("U1", "C1", "status dev", "T123");
    assert_eq!(command["command"], "/failover");
    let id = fake.send_envelope("slash_commands", command, true).await;
    let envelope = next_json(&mut socket).await;
    assert_eq!(
        (&envelope["type"], &envelope["accepts_response_payload"]),
        (&json!("slash_commands"), &json!(true))
    );
    assert_eq!(envelope["payload"]["text"], "status dev");
    let ack = json!({"envelope_id": id, "payload": {"text": "on it"}});
    send_json(&mut socket, ack.clone()).await;
    assert_eq!(fake.wait_ack(&id, WAIT).await, Some(ack));
    assert_eq!(
        fake.wait_ack("never-sent", Duration::from_millis(50)).await,
        None
    );

    fake.send_raw("{not json").await;
    assert!(
        matches!(next_message(&mut socket).await, Some(Ok(Message::Text(t))) if t.as_str() == "{not json")
    );

    socket
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    match next_message(&mut socket).await {
        Some(Ok(Message::Pong(body))) => assert_eq!(&body[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }

    fake.send_disconnect("refresh_requested").await;
    let disconnect = next_json(&mut socket).await;
    assert_eq!(
        disconnect,
        json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "fake"}})
    );
    socket.close(None).await.unwrap();
    assert!(
        fake.wait_until("the socket to close", WAIT, |f| f.open_sockets() == 0)
            .await
    );
    assert_eq!(fake.socket_frames().len(), 2);
}

#[tokio::test]
async fn drop_socket_closes_without_a_close_frame() {
    let fake = FakeSlack::start().await;
    let _first = open_socket(&fake).await;
    let mut second = open_socket(&fake).await;
    assert!(fake.wait_connected(2, WAIT).await);
    assert_eq!(fake.open_sockets(), 2);

    // The newest connection is the current one.
    fake.drop_socket().await;
    match next_message(&mut second).await {
        None | Some(Err(_)) => {}
        other => panic!("expected the stream to break, got {other:?}"),
    }
    assert_eq!((fake.socket_connections(), fake.open_sockets()), (2, 1));
}

#[tokio::test]
async fn dropping_the_fake_stops_the_server() {
    let fake = FakeSlack::start().await;
    let url = format!("{}/auth.test", fake.api_url());
    let mut socket = open_socket(&fake).await;
    drop(fake);
    assert!(http().get(url).bearer_auth(BOT_TOKEN).send().await.is_err());
    assert!(!matches!(next_message(&mut socket).await, Some(Ok(_))));
}

#[tokio::test]
async fn wait_until_gives_up_after_the_timeout() {
    let fake = FakeSlack::start().await;
    let started = Instant::now();
    let posted = fake.wait_until("a post", Duration::from_millis(50), |f| {
        !f.posts().is_empty()
    });
    assert!(!posted.await);
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[test]
fn slash_command_form_encodes_like_slack() {
    let form = slash_command_form("U1", "C1", "fail over dev/blue", "T1.2");
    assert!(form.starts_with("token=fake-verification-token&team_id=TFAKE&"));
    assert!(form.contains("&command=%2Ffailover&text=fail+over+dev%2Fblue&"));
    assert!(form.contains("&response_url=https%3A%2F%2Fhooks.slack.com%2F"));
    assert!(form.ends_with("&trigger_id=T1.2"));
    let json = slash_command("U1", "C1", "fail over dev/blue", "T1.2");
    assert_eq!(form.split('&').count(), json.as_object().unwrap().len());
}

#[test]
fn reaction_events_have_slacks_shape() {
    let removed = reaction_event("Ev9", "U2", "x", "C1", "1700000000.000100", false);
    assert_eq!(removed["type"], "event_callback");
    assert_eq!(removed["event"]["type"], "reaction_removed");
    assert_eq!(
        removed["event"]["item"],
        json!({"type": "message", "channel": "C1", "ts": "1700000000.000100"})
    );
    assert!(removed["event_time"].is_i64());
}

#[test]
fn sign_matches_slacks_published_example() {
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        sign("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, body),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}
