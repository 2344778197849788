//! Approve and Reject buttons on plans (issue 17, item 1): a click obeys
//! exactly a reaction's rules — an approver, not the requester, the exact
//! plan shown, before expiry, once however often it is delivered, each
//! approver once where several must approve —, a refused click is answered
//! only to the clicker, and a decided plan shows who decided and when in
//! place of its buttons.
//!
//! The rules through the engine as `tests/engine.rs` drives it (a clock
//! that moves only when told); the transports through the real `serve`
//! process against the fake Slack, over Socket Mode and signed HTTP.

mod support;

use std::time::Duration;

use failover_bot::approval::PlanClaim;
use failover_bot::chat::{ButtonChoice, Message, MessageKind, MessageRef};
use failover_bot::messages::CONFIRM_TEXT_MAX;
use support::fake_slack::{self, FakeSlack};
use support::serve_proc::{now, ServeProc as Bot, Transport, WAIT};
use support::{weights, Harness, CONFIG};

const BLUE: &str = "k8s-blue.dev.example.com";
const GREEN: &str = "k8s-green.dev.example.com";

fn blue_green(blue: u8, green: u8) -> failover_bot::plan::Weights {
    weights(&[(BLUE, blue), (GREEN, green)])
}

/// dev needs two approvals.
fn two_approvals() -> String {
    CONFIG.replace(
        "  expires_after: 15m\n",
        "  expires_after: 15m\n  approvals_required: 2\n",
    )
}

/// The refusals only `user` saw, by name.
fn refusals_to(h: &Harness, user: &str) -> Vec<String> {
    h.chat
        .ephemerals(user)
        .iter()
        .filter(|m| m.kind == MessageKind::Refused)
        .map(|m| m.fact("refusal").unwrap_or_default().to_owned())
        .collect()
}

/// What the plan message at `at` shows now.
fn shown(h: &Harness, at: &MessageRef) -> Message {
    h.chat.shown(at).expect("the plan message exists")
}

/// `/failover shift 50` by alice; the plan message.
async fn proposed(h: &Harness) -> MessageRef {
    h.cmd("alice", "shift 50").await;
    h.newest_pending().expect("a plan awaits approval")
}

// ------------------------------------------------------------ the message

#[tokio::test]
async fn a_plan_awaiting_approval_carries_buttons_naming_the_exact_plan() {
    let h = Harness::new(CONFIG);
    let plan = proposed(&h).await;
    let message = shown(&h, &plan);
    let buttons = message.buttons.expect("a pending plan has buttons");
    let claim = PlanClaim::parse(&buttons.value).expect("the value names a plan");
    let op = h.engine.active_operation("dev").unwrap();
    let hash = match &op.phase {
        failover_bot::operation::Phase::AwaitingApproval(shown) => shown.plan.hash.clone(),
        other => panic!("awaiting approval, not {other:?}"),
    };
    assert_eq!(
        (claim.op, claim.step, claim.plan),
        (op.header.id, 1, hash),
        "operation, step and plan hash"
    );
    let approve = &buttons.approve;
    assert_eq!(approve.title, "Approve #1 · step 1/1?");
    assert_eq!(
        approve.text,
        "In dev: blue 100→50, green 0→50. The bot applies it at once."
    );
    assert!(buttons
        .reject
        .text
        .starts_with("In dev: blue 100→50, green 0→50. Rejecting"));
    assert!(approve.text.chars().count() <= CONFIRM_TEXT_MAX);
}

#[tokio::test]
async fn a_confirmation_that_would_not_fit_counts_the_clusters() {
    // 30 clusters at 5 each: shifting 50% to one changes every weight, and
    // 30 entries like `c07longername 5→2` are far over 300 characters.
    let clusters: String = (0..30)
        .map(|i| {
            format!("      - {{name: k8s-c{i:02}longername.dev.example.com, context: c{i}, weight: 5}}\n")
        })
        .collect();
    let config = format!(
        "slack:\n  channels: [C1]\napproval:\n  approvers: [alice, bob]\nenvironments:\n  dev:\n    channel: C1\n    clusters:\n{clusters}"
    );
    let h = Harness::new(&config);
    h.cmd("alice", "shift 50 to c29longername").await;
    let plan = h.newest_pending().expect("a plan awaits approval");
    let buttons = shown(&h, &plan).buttons.expect("buttons");
    let text = &buttons.approve.text;
    assert!(text.chars().count() <= CONFIRM_TEXT_MAX, "{text}");
    assert!(
        text.starts_with("In dev: ")
            && text.contains(" of 30 clusters change weight (see the plan)."),
        "{text}"
    );
}

// ------------------------------------------------------------ the rules

#[tokio::test]
async fn an_approvers_click_applies_the_step_and_the_buttons_give_way_to_who_and_when() {
    let h = Harness::new(CONFIG);
    let plan = proposed(&h).await;
    h.click("bob", ButtonChoice::Approve).await;
    assert_eq!(h.weights(), blue_green(50, 50));
    assert_eq!(h.chat.plan_status(&plan).as_deref(), Some("applied"));
    let now = shown(&h, &plan);
    assert_eq!(now.buttons, None, "a decided plan has no buttons");
    assert!(
        now.text.contains("Approved by <@bob> at 12:00 UTC."),
        "{}",
        now.text
    );
    assert!(h.chat.ephemerals("bob").is_empty());
}

#[tokio::test]
async fn a_reject_click_ends_the_operation_and_says_who_and_when() {
    let h = Harness::new(CONFIG);
    let plan = proposed(&h).await;
    h.advance(Duration::from_secs(120));
    h.click("bob", ButtonChoice::Reject).await;
    assert_eq!(h.weights(), blue_green(100, 0));
    assert_eq!(h.chat.plan_status(&plan).as_deref(), Some("rejected"));
    let now = shown(&h, &plan);
    assert_eq!(now.buttons, None);
    assert!(
        now.text.contains("Rejected by <@bob> at 12:02 UTC."),
        "{}",
        now.text
    );
    assert!(h.engine.active_operation("dev").is_none());
}

#[tokio::test]
async fn the_requesters_click_and_a_non_approvers_are_refused_only_to_them() {
    let h = Harness::new(CONFIG);
    let plan = proposed(&h).await;
    h.click("alice", ButtonChoice::Approve).await;
    h.click("carol", ButtonChoice::Approve).await;
    h.click("carol", ButtonChoice::Reject).await;
    assert_eq!(refusals_to(&h, "alice"), ["self_approval"]);
    assert_eq!(refusals_to(&h, "carol"), ["not_approver", "not_approver"]);
    let answer = &h.chat.ephemerals("alice")[0].text;
    assert!(
        answer.contains("cannot approve their own request"),
        "{answer}"
    );
    // Nothing else happened: no weight, no word in the thread, still pending.
    assert_eq!(h.weights(), blue_green(100, 0));
    assert!(
        h.chat.thread(&plan).is_empty(),
        "{:?}",
        h.chat.thread(&plan)
    );
    assert!(shown(&h, &plan).buttons.is_some());
    assert_eq!(h.newest_pending(), Some(plan));
}

#[tokio::test]
async fn the_requesters_reject_click_withdraws_as_their_reaction_does() {
    let h = Harness::new(CONFIG);
    let plan = proposed(&h).await;
    h.click("alice", ButtonChoice::Reject).await;
    assert_eq!(h.chat.plan_status(&plan).as_deref(), Some("withdrawn"));
    assert!(shown(&h, &plan)
        .text
        .contains("Withdrawn by <@alice> at 12:00 UTC."));
}

#[tokio::test]
async fn a_click_on_a_superseded_plan_is_refused() {
    let h = Harness::new(CONFIG);
    let first = proposed(&h).await;
    let stale = h.button_value(&first).unwrap();
    h.memory.edit_weight(BLUE, Some(80)); // someone else
    h.approve("bob").await; // finds the weights moved: a new plan
    let second = h.newest_pending().expect("a new plan is shown");
    assert_ne!(first, second);
    assert_eq!(
        shown(&h, &first).buttons,
        None,
        "the old plan lost its buttons"
    );

    // The old message's button, clicked late (a client that had not refreshed).
    h.click_with(&first, "dave", ButtonChoice::Approve, &stale, "click:late")
        .await;
    // The old value on the new message: same operation and step, another plan.
    h.click_with(
        &second,
        "dave",
        ButtonChoice::Approve,
        &stale,
        "click:mixed",
    )
    .await;
    assert_eq!(refusals_to(&h, "dave"), ["plan_closed", "plan_changed"]);
    assert_eq!(h.weights(), blue_green(80, 0));
    assert_eq!(h.newest_pending(), Some(second));
}

#[tokio::test]
async fn a_forged_button_value_is_refused_and_changes_nothing() {
    let h = Harness::new(CONFIG);
    let plan = proposed(&h).await;
    let value = h.button_value(&plan).unwrap();
    let other_op = value.replacen("1:", "9:", 1);
    for (n, forged) in ["", "approve", "1:1", "1:1:zzzz", other_op.as_str()]
        .into_iter()
        .enumerate()
    {
        let delivery = format!("click:forged-{n}");
        h.click_with(&plan, "bob", ButtonChoice::Approve, forged, &delivery)
            .await;
    }
    assert_eq!(refusals_to(&h, "bob"), vec!["unknown_button"; 5]);
    let answer = &h.chat.ephemerals("bob")[0].text;
    assert!(answer.contains("not on a plan the bot showed"), "{answer}");
    assert_eq!(h.weights(), blue_green(100, 0));
    assert_eq!(h.newest_pending(), Some(plan));
}

#[tokio::test]
async fn a_click_after_expiry_is_refused_and_the_plan_expires() {
    let h = Harness::new(CONFIG);
    let plan = proposed(&h).await;
    let value = h.button_value(&plan).unwrap();
    h.advance(Duration::from_secs(16 * 60));
    h.click_with(&plan, "bob", ButtonChoice::Approve, &value, "click:late")
        .await;
    assert_eq!(refusals_to(&h, "bob"), ["not_pending"]);
    assert_eq!(h.weights(), blue_green(100, 0));
    assert_eq!(h.chat.plan_status(&plan).as_deref(), Some("expired"));
    let now = shown(&h, &plan);
    assert_eq!(now.buttons, None);
    assert!(now.text.contains("Expired at 12:15 UTC."), "{}", now.text);
}

#[tokio::test]
async fn a_click_delivered_twice_acts_once() {
    let h = Harness::new(&two_approvals());
    let plan = proposed(&h).await;
    let value = h.button_value(&plan).unwrap();
    for _ in 0..3 {
        h.click_with(&plan, "bob", ButtonChoice::Approve, &value, "click:T1")
            .await;
    }
    let op = h.engine.active_operation("dev").unwrap();
    let votes = match &op.phase {
        failover_bot::operation::Phase::AwaitingApproval(shown) => shown.approval.votes.len(),
        other => panic!("awaiting approval, not {other:?}"),
    };
    assert_eq!(votes, 1, "one vote");
    assert!(
        h.chat.ephemerals("bob").is_empty(),
        "a redelivery is silent"
    );
    let voted = h
        .journal_lines()
        .iter()
        .filter(|l| l.contains("\"type\":\"voted\""))
        .count();
    assert_eq!(voted, 1, "one Voted record");
}

#[tokio::test]
async fn with_two_approvals_each_approver_counts_once_and_the_message_shows_the_count() {
    let h = Harness::new(&two_approvals());
    let plan = proposed(&h).await;
    h.click("bob", ButtonChoice::Approve).await;
    // A second click by bob (a new click, not a redelivery) does not count.
    h.click("bob", ButtonChoice::Approve).await;
    assert_eq!(refusals_to(&h, "bob"), ["already_approved"]);
    assert_eq!(h.weights(), blue_green(100, 0));
    let counted = shown(&h, &plan);
    assert!(
        counted.text.contains("Approvals: 1 of 2 (<@bob>)"),
        "{}",
        counted.text
    );
    assert!(counted.buttons.is_some(), "still awaiting: still buttons");
    // dave, through the S0SRE group, by reaction: both ways count alike.
    h.approve("dave").await;
    assert_eq!(h.weights(), blue_green(50, 50));
    let decided = shown(&h, &plan);
    assert_eq!(decided.buttons, None);
    assert!(
        decided
            .text
            .contains("Approved by <@bob> and <@dave> at 12:00 UTC."),
        "{}",
        decided.text
    );
}

#[tokio::test]
async fn reactions_keep_working_beside_the_buttons() {
    let h = Harness::new(CONFIG);
    let plan = proposed(&h).await;
    h.approve("bob").await;
    assert_eq!(h.weights(), blue_green(50, 50));
    assert_eq!(shown(&h, &plan).buttons, None);
    // A click after the reaction decided: refused, only to the clicker.
    let value = h
        .chat
        .posts()
        .into_iter()
        .find(|(at, _)| *at == plan)
        .and_then(|(_, m)| m.buttons)
        .unwrap()
        .value;
    h.click_with(&plan, "dave", ButtonChoice::Approve, &value, "click:after")
        .await;
    assert_eq!(refusals_to(&h, "dave"), ["plan_closed"]);
}

// ------------------------------------------------------------ the transports

const SERVE_CONFIG: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [UALICE, UBOB]
  expires_after: 15m
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

async fn serve(fake: &FakeSlack, transport: Transport) -> Bot {
    Bot::options(SERVE_CONFIG)
        .transport(transport)
        .start(fake)
        .await
}

/// alice's `/failover shift 50`; the plan message's ts.
async fn propose(fake: &FakeSlack, bot: &Bot) -> String {
    bot.slash(fake, "UALICE", "shift 50", "trig-1").await;
    bot.wait_for(fake, "plan posted", WAIT, |f| !f.plan_posts().is_empty())
        .await;
    let ts = fake.plan_posts()[0].ts.clone();
    bot.wait_proposed(&ts).await;
    ts
}

fn applied(fake: &FakeSlack, ts: &str) -> bool {
    fake.thread_has(ts, "step_result", &[("outcome", "applied")])
}

async fn a_click_approves_over(transport: Transport) {
    let fake = FakeSlack::start().await;
    let bot = serve(&fake, transport).await;
    let ts = propose(&fake, &bot).await;
    let buttons = fake.buttons(&ts);
    let ids: Vec<&str> = buttons.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["approve", "reject"], "the plan shows both buttons");

    // The requester's click: refused, only to her, by chat.postEphemeral.
    bot.click(&fake, "UALICE", &ts, "approve").await;
    bot.wait_for(&fake, "an answer to alice", WAIT, |f| {
        f.posts()
            .iter()
            .any(|p| p.ephemeral_user.as_deref() == Some("UALICE"))
    })
    .await;
    let answer = fake
        .posts()
        .into_iter()
        .find(|p| p.ephemeral_user.as_deref() == Some("UALICE"))
        .unwrap();
    assert!(
        answer.text.contains("cannot approve their own request"),
        "{}",
        answer.text
    );
    assert!(!applied(&fake, &ts));

    bot.click(&fake, "UBOB", &ts, "approve").await;
    bot.wait_for(&fake, "the step applied", WAIT, |f| applied(f, &ts))
        .await;
    bot.wait_for(&fake, "the plan updated to applied", WAIT, |f| {
        f.plan_status(&ts).as_deref() == Some("applied")
    })
    .await;
    assert!(
        fake.buttons(&ts).is_empty(),
        "chat.update took the buttons away"
    );
    let now = fake.message_now(&ts).unwrap();
    assert!(now.text.contains("Approved by <@UBOB> at "), "{}", now.text);
}

#[tokio::test]
async fn a_click_approves_over_socket_mode() {
    a_click_approves_over(Transport::Socket).await;
}

#[tokio::test]
async fn a_click_approves_over_http() {
    a_click_approves_over(Transport::Http).await;
}

#[tokio::test]
async fn with_two_approvals_clicks_over_socket_mode_count_each_approver_once() {
    let fake = FakeSlack::start().await;
    let config = SERVE_CONFIG
        .replace("[UALICE, UBOB]", "[UALICE, UBOB, UDAVE]")
        .replace(
            "  expires_after: 15m\n",
            "  expires_after: 15m\n  approvals_required: 2\n",
        );
    let bot = Bot::options(&config)
        .transport(Transport::Socket)
        .start(&fake)
        .await;
    let ts = propose(&fake, &bot).await;
    bot.click(&fake, "UBOB", &ts, "approve").await;
    bot.wait_for(&fake, "the count shown", WAIT, |f| {
        f.message_now(&ts)
            .is_some_and(|m| m.text.contains("Approvals: 1 of 2 (<@UBOB>)"))
    })
    .await;
    assert_eq!(fake.buttons(&ts).len(), 2, "still awaiting: still buttons");
    bot.click(&fake, "UBOB", &ts, "approve").await;
    bot.wait_for(&fake, "bob told he approved already", WAIT, |f| {
        f.posts().iter().any(|p| {
            p.ephemeral_user.as_deref() == Some("UBOB") && p.text.contains("already approved")
        })
    })
    .await;
    assert!(!applied(&fake, &ts));
    bot.click(&fake, "UDAVE", &ts, "approve").await;
    bot.wait_for(&fake, "the step applied", WAIT, |f| applied(f, &ts))
        .await;
    bot.wait_for(&fake, "the buttons gone", WAIT, |f| {
        f.buttons(&ts).is_empty()
    })
    .await;
    let now = fake.message_now(&ts).unwrap();
    assert!(
        now.text.contains("Approved by <@UBOB> and <@UDAVE> at "),
        "{}",
        now.text
    );
}

#[tokio::test]
async fn a_click_redelivered_over_socket_mode_acts_once() {
    let fake = FakeSlack::start().await;
    let bot = serve(&fake, Transport::Socket).await;
    let ts = propose(&fake, &bot).await;
    let payload = fake
        .click_payload("UBOB", &ts, "approve", "trigger-once")
        .unwrap();
    // Slack redelivers an envelope not acknowledged in time: same payload,
    // same trigger_id, under the same envelope id and under a new one.
    let first = fake.next_envelope_id();
    let second = fake.next_envelope_id();
    for (envelope, attempt) in [(&first, 0), (&first, 1), (&second, 2)] {
        let acked = bot
            .deliver_interaction(&fake, payload.clone(), envelope, attempt)
            .await;
        assert!(acked.is_some(), "acknowledged; log:\n{}", bot.log());
    }
    bot.wait_for(&fake, "the step applied", WAIT, |f| applied(f, &ts))
        .await;
    // Give a second copy time to show itself, were it acted on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let results = fake
        .thread(&ts)
        .iter()
        .filter(|p| p.kind() == Some("step_result"))
        .count();
    assert_eq!(results, 1, "{}", fake.dump());
    let refused = fake
        .posts()
        .iter()
        .filter(|p| p.ephemeral_user.is_some())
        .count();
    assert_eq!(refused, 0, "a redelivery is silent: {}", fake.dump());
}

#[tokio::test]
async fn a_forged_or_unsigned_interactivity_request_is_refused_and_changes_nothing() {
    let fake = FakeSlack::start().await;
    let bot = serve(&fake, Transport::Http).await;
    let ts = propose(&fake, &bot).await;
    let payload = fake
        .click_payload("UBOB", &ts, "approve", "trigger-forged")
        .unwrap();
    let form = fake_slack::interaction_form(&payload);
    let client = reqwest::Client::new();
    let url = bot.url("/slack/interactivity");

    let unsigned = client.post(&url).body(form.clone()).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);

    let at = now();
    let forged = client
        .post(&url)
        .header("X-Slack-Request-Timestamp", at.to_string())
        .header(
            "X-Slack-Signature",
            fake_slack::sign("not-the-secret", at, &form),
        )
        .body(form.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    let stale = bot
        .post_signed_at("/slack/interactivity", &form, now() - 600)
        .await;
    assert_eq!(stale.status().as_u16(), 401);

    // Signed, but not an interaction: a short error, no panic.
    let garbage = bot
        .post_signed("/slack/interactivity", "payload=%7Bnot+json", 0)
        .await;
    assert_eq!(garbage.status, 400);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!applied(&fake, &ts), "{}", fake.dump());
    assert_eq!(fake.plan_status(&ts).as_deref(), Some("pending"));
    assert_eq!(fake.buttons(&ts).len(), 2);
    assert!(
        !bot.journal_json()
            .iter()
            .any(|r| r.to_string().contains("\"decided\"")),
        "nothing decided"
    );
}

#[test]
fn the_slack_app_manifest_enables_interactivity_at_the_bots_path() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/slack-app.yaml");
    let manifest: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let interactivity = &manifest["settings"]["interactivity"];
    assert_eq!(interactivity["is_enabled"], true);
    let url = interactivity["request_url"].as_str().unwrap_or_default();
    assert!(
        url.ends_with(failover_bot::slack::http::INTERACTIVITY_PATH),
        "{url}"
    );
}
