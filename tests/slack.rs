//! The real `failover-bot serve` process against the wire-level fake Slack,
//! over both transports: Socket Mode and the signed Events API over HTTP.
//! Every scenario runs on both; assertions are on what the channel saw: the
//! kind and facts of each message, which travel as its Slack metadata (the
//! words are pinned by the snapshots of `tests/messages.rs`). Answers only
//! their recipient sees (a slash command's acknowledgement, an ephemeral
//! message) carry no metadata: for those the text is all there is.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::fake_slack::{self, FakeSlack, Fault};
use support::serve_proc::{now, ServeProc as Bot, Transport, WAIT};

const CONFIG: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [UALICE, UBOB, S0SRE]
  expires_after: EXPIRY
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

/// `serve` with [`CONFIG`], approvals expiring after `15m`.
async fn start_bot(fake: &FakeSlack, transport: Transport) -> Bot {
    start_bot_with(fake, transport, "15m").await
}

async fn start_bot_with(fake: &FakeSlack, transport: Transport, expiry: &str) -> Bot {
    let config = CONFIG.replace("EXPIRY", expiry);
    Bot::options(&config).transport(transport).start(fake).await
}

/// A step's result in the thread of plan `ts`: applied and verified.
fn applied(fake: &FakeSlack, ts: &str) -> bool {
    fake.thread_has(
        ts,
        "step_result",
        &[("outcome", "applied"), ("verified", "true")],
    )
}

async fn wait(fake: &FakeSlack, bot: &Bot, what: &str, pred: impl Fn(&FakeSlack) -> bool) {
    bot.wait_for(fake, what, WAIT, pred).await;
}

/// `/failover shift 50` by alice; returns the plan message's ts.
async fn propose(fake: &FakeSlack, bot: &Bot) -> String {
    let reply = bot.slash(fake, "UALICE", "shift 50", "trig-1").await;
    // The acknowledgement: text only (no metadata).
    assert!(reply.contains("Working on `/failover shift 50`"), "{reply}");
    wait(fake, bot, "plan posted", |f| !f.plan_posts().is_empty()).await;
    fake.plan_posts()[0].ts.clone()
}

async fn happy_path(transport: Transport) {
    let fake = FakeSlack::start().await;
    let bot = start_bot(&fake, transport).await;
    let ts = propose(&fake, &bot).await;
    let plan = &fake.plan_posts()[0];
    let after = "k8s-blue.dev.example.com=50 k8s-green.dev.example.com=50";
    assert!(
        plan.is(
            "plan",
            &[
                ("op", "1"),
                ("step", "1"),
                ("requester", "UALICE"),
                ("after", after)
            ]
        ),
        "{}",
        plan.summary()
    );
    // Who may approve comes from the config, not from the plan's facts:
    // only the words name them.
    assert!(
        plan.text.contains("<@UBOB>"),
        "who may approve: {}",
        plan.text
    );
    assert!(plan.blocks.is_some(), "Block Kit with a text fallback");
    wait(&fake, &bot, "approve/reject hints", |f| {
        f.reactions_added().len() == 2
    })
    .await;

    bot.reaction(&fake, "Ev-self", "UALICE", "white_check_mark", &ts, true)
        .await;
    wait(&fake, &bot, "self-approval refused in the thread", |f| {
        f.thread_has(&ts, "refused", &[("refusal", "self_approval")])
    })
    .await;
    bot.reaction(&fake, "Ev-bob", "UBOB", "white_check_mark", &ts, true)
        .await;
    wait(&fake, &bot, "applied in the thread", |f| applied(f, &ts)).await;
    wait(&fake, &bot, "plan updated to applied", |f| {
        f.last_update(&ts)
            .is_some_and(|u| u.is("plan", &[("status", "applied"), ("approved_by", "UBOB")]))
    })
    .await;
}

#[tokio::test]
async fn socket_mode_shift_refuses_self_approval_and_applies_on_second_person() {
    happy_path(Transport::Socket).await;
}

#[tokio::test]
async fn http_shift_refuses_self_approval_and_applies_on_second_person() {
    happy_path(Transport::Http).await;
}

async fn group_approver(transport: Transport) {
    let fake = FakeSlack::start().await;
    fake.set_usergroup("S0SRE", &["UDAVE"]);
    let bot = start_bot(&fake, transport).await;
    let ts = propose(&fake, &bot).await;
    bot.reaction(&fake, "Ev-dave", "UDAVE", "white_check_mark", &ts, true)
        .await;
    wait(&fake, &bot, "group member's approval applies", |f| {
        applied(f, &ts)
    })
    .await;
    assert_eq!(fake.calls_to("usergroups.users.list").len(), 1);
}

#[tokio::test]
async fn socket_mode_user_group_member_approves() {
    group_approver(Transport::Socket).await;
}

#[tokio::test]
async fn http_user_group_member_approves() {
    group_approver(Transport::Http).await;
}

async fn reject_and_withdraw(transport: Transport) {
    let fake = FakeSlack::start().await;
    let bot = start_bot(&fake, transport).await;
    let ts = propose(&fake, &bot).await;
    bot.reaction(&fake, "Ev-x", "UBOB", "x", &ts, true).await;
    wait(&fake, &bot, "rejected", |f| {
        f.last_update(&ts)
            .is_some_and(|u| u.is("plan", &[("status", "rejected"), ("by", "UBOB")]))
    })
    .await;

    let reply = bot
        .slash(&fake, "UALICE", "shift 60 to green", "trig-2")
        .await;
    assert!(reply.contains("Working on"), "{reply}"); // the acknowledgement
    wait(&fake, &bot, "second plan", |f| f.plan_posts().len() == 2).await;
    let second = fake.plan_posts()[1].ts.clone();
    bot.reaction(&fake, "Ev-withdraw", "UALICE", "x", &second, true)
        .await;
    wait(&fake, &bot, "withdrawn", |f| {
        f.last_update(&second)
            .is_some_and(|u| u.is("plan", &[("status", "withdrawn"), ("by", "UALICE")]))
    })
    .await;
    let threads: Vec<_> = fake
        .thread(&ts)
        .into_iter()
        .chain(fake.thread(&second))
        .collect();
    assert!(
        !threads.iter().any(|p| p.kind() == Some("step_result")),
        "no step ran: {:?}",
        threads.iter().map(|p| p.summary()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn socket_mode_reject_and_withdraw() {
    reject_and_withdraw(Transport::Socket).await;
}

#[tokio::test]
async fn http_reject_and_withdraw() {
    reject_and_withdraw(Transport::Http).await;
}

async fn expiry(transport: Transport) {
    let fake = FakeSlack::start().await;
    let bot = start_bot_with(&fake, transport, "2s").await;
    let ts = propose(&fake, &bot).await;
    wait(&fake, &bot, "expired by the timer", |f| {
        f.plan_status(&ts).as_deref() == Some("expired")
    })
    .await;
    bot.reaction(&fake, "Ev-late", "UBOB", "white_check_mark", &ts, true)
        .await;
    wait(&fake, &bot, "late approval refused", |f| {
        f.thread_has(&ts, "refused", &[("refusal", "plan_closed")])
    })
    .await;
}

#[tokio::test]
async fn socket_mode_approval_expires() {
    expiry(Transport::Socket).await;
}

#[tokio::test]
async fn http_approval_expires() {
    expiry(Transport::Http).await;
}

async fn duplicate_deliveries(transport: Transport) {
    let fake = FakeSlack::start().await;
    let bot = start_bot(&fake, transport).await;
    let ts = propose(&fake, &bot).await;
    // Slack retries a slash command's trigger and an event's id: each acts once.
    for _ in 0..2 {
        bot.slash(&fake, "UALICE", "shift 50", "trig-1").await;
    }
    for _ in 0..3 {
        bot.reaction(&fake, "Ev-same", "UBOB", "white_check_mark", &ts, true)
            .await;
    }
    wait(&fake, &bot, "applied", |f| applied(f, &ts)).await;
    // The operation is recorded as ended just after its result is posted:
    // ask for status until the bot says nothing runs (bounded).
    let mut idle = false;
    for attempt in 0..20 {
        bot.slash(&fake, "UCAROL", "status", &format!("trig-status-{attempt}"))
            .await;
        idle = fake
            .wait_until("status says idle", Duration::from_millis(500), |f| {
                f.posts()
                    .iter()
                    .any(|p| p.is("status", &[("running", "none")]))
            })
            .await;
        if idle {
            break;
        }
    }
    assert!(idle, "status never said idle; bot log:\n{}", bot.log());
    let results = fake
        .thread(&ts)
        .iter()
        .filter(|p| p.kind() == Some("step_result"))
        .count();
    assert_eq!(results, 1, "one execution");
    assert_eq!(fake.plan_posts().len(), 1, "one plan");
}

#[tokio::test]
async fn socket_mode_same_event_three_times_acts_once() {
    duplicate_deliveries(Transport::Socket).await;
}

#[tokio::test]
async fn http_same_event_three_times_acts_once() {
    duplicate_deliveries(Transport::Http).await;
}

async fn rate_limited(transport: Transport) {
    let fake = FakeSlack::start().await;
    let bot = start_bot(&fake, transport).await;
    fake.fail_next(
        "chat.postMessage",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
    );
    let started = std::time::Instant::now();
    let ts = propose(&fake, &bot).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for Retry-After"
    );
    assert_eq!(
        fake.calls_to("chat.postMessage").len(),
        2,
        "one 429, one retry"
    );
    assert!(!ts.is_empty());
}

#[tokio::test]
async fn socket_mode_429_is_retried_after_retry_after() {
    rate_limited(Transport::Socket).await;
}

#[tokio::test]
async fn http_429_is_retried_after_retry_after() {
    rate_limited(Transport::Http).await;
}

async fn bad_input(transport: Transport) {
    let fake = FakeSlack::start().await;
    let bot = start_bot(&fake, transport).await;
    // Answered in the acknowledgement itself: text only (no metadata).
    let reply = bot.slash(&fake, "UALICE", "shfit 50", "trig-bad").await;
    assert!(reply.contains("did you mean `shift`?"), "{reply}");
    let reply = bot.slash(&fake, "UALICE", "help", "trig-help").await;
    assert!(reply.contains("/failover shift PERCENT"), "{reply}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        fake.calls_to("chat.postMessage").is_empty(),
        "nothing posted"
    );
}

#[tokio::test]
async fn socket_mode_bad_input_is_answered_at_once_and_privately() {
    bad_input(Transport::Socket).await;
}

#[tokio::test]
async fn http_bad_input_is_answered_at_once_and_privately() {
    bad_input(Transport::Http).await;
}

#[tokio::test]
async fn socket_dropped_mid_operation_reconnects_and_completes() {
    let fake = FakeSlack::start().await;
    let bot = start_bot(&fake, Transport::Socket).await;
    let ts = propose(&fake, &bot).await;
    fake.drop_socket().await;
    assert!(
        fake.wait_connected(2, WAIT).await,
        "reconnected; log:\n{}",
        bot.log()
    );
    bot.reaction(
        &fake,
        "Ev-after-drop",
        "UBOB",
        "white_check_mark",
        &ts,
        true,
    )
    .await;
    wait(&fake, &bot, "applied after reconnect", |f| applied(f, &ts)).await;
}

#[tokio::test]
async fn socket_disconnect_envelope_reconnects() {
    let fake = FakeSlack::start().await;
    let bot = start_bot(&fake, Transport::Socket).await;
    fake.send_disconnect("refresh_requested").await;
    assert!(
        fake.wait_connected(2, WAIT).await,
        "reconnected; log:\n{}",
        bot.log()
    );
    propose(&fake, &bot).await;
}

#[tokio::test]
async fn http_forged_or_stale_signatures_get_401_and_do_nothing() {
    let fake = FakeSlack::start().await;
    let bot = start_bot(&fake, Transport::Http).await;
    let body = fake_slack::slash_command_form("UALICE", "C1", "shift 50", "trig-forged");
    let client = reqwest::Client::new();

    let unsigned = client
        .post(bot.url("/slack/commands"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    let forged = client
        .post(bot.url("/slack/commands"))
        .header("X-Slack-Request-Timestamp", now().to_string())
        .header(
            "X-Slack-Signature",
            fake_slack::sign("not-the-secret", now(), &body),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let stale = bot
        .post_signed_at("/slack/commands", &body, now() - 6 * 60)
        .await;
    assert_eq!(stale.status(), 401);

    let event =
        fake_slack::reaction_event("Ev-forged", "UBOB", "white_check_mark", "C1", "1.1", true);
    let forged_event = client
        .post(bot.url("/slack/events"))
        .header("X-Slack-Request-Timestamp", now().to_string())
        .header("X-Slack-Signature", "v0=deadbeef")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged_event.status(), 401);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fake.calls_to("chat.postMessage").is_empty(),
        "nothing posted"
    );
    assert!(
        fake.calls_to("chat.postEphemeral").is_empty(),
        "nothing answered"
    );
}

#[tokio::test]
async fn http_url_verification_and_malformed_events() {
    let fake = FakeSlack::start().await;
    let bot = start_bot(&fake, Transport::Http).await;
    let challenge = r#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let response = bot.post_signed_at("/slack/events", challenge, now()).await;
    assert_eq!(response.status(), 200);
    let json: Value = response.json().await.unwrap();
    assert_eq!(
        json["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    let response = bot
        .post_signed_at("/slack/events", "{not json", now())
        .await;
    assert_eq!(response.status(), 400);
    let response = bot
        .post_signed_at("/slack/commands", "user_id=U1", now())
        .await;
    assert_eq!(response.status(), 400);
}
