//! Time-limited shifts through the whole engine (issue 16, item 3):
//! `shift 50 to green for 2m` holds the weights, reminds the thread, and
//! puts them back by itself. The clock is the harness's, moved by hand, so
//! a two-minute (or 72-hour) shift takes no time; a restart is the
//! harness's crash (the engine thrown away, a new one on the same journal).
//! The test of a gate refusing the return reads a real Prometheus.

mod support;

use std::time::Duration;

use failover_bot::chat::{Message, MessageKind};
use support::chat::is;
use support::prometheus::{Exporter, Prometheus};
use support::{weights, Harness};

const BLUE: &str = "k8s-blue.dev.example.com";
const GREEN: &str = "k8s-green.dev.example.com";

const CONFIG: &str = r#"
approval:
  approvers: [alice, bob, erin]
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

fn dev(blue: u8, green: u8) -> failover_bot::plan::Weights {
    weights(&[(BLUE, blue), (GREEN, green)])
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// Time passes and the bot's once-a-second tick runs.
async fn later(h: &Harness, by: Duration) {
    h.advance(by);
    h.engine.tick().await;
}

fn of_kind(h: &Harness, kind: MessageKind) -> Vec<Message> {
    h.chat.of_kind(kind)
}

/// The plan posts (not their updates), oldest first.
fn plan_posts(h: &Harness) -> Vec<Message> {
    h.chat.plans().into_iter().map(|(_, m)| m).collect()
}

fn refusals(h: &Harness, user: &str) -> Vec<Message> {
    h.chat
        .ephemerals(user)
        .into_iter()
        .filter(|m| m.kind == MessageKind::Refused)
        .collect()
}

/// Shifts 50% to green for `limit`, approved by bob: the weights hold.
async fn shifted_for(h: &Harness, limit: &str) {
    h.cmd("alice", &format!("shift 50 to green for {limit}"))
        .await;
    let plan = plan_posts(h).pop().expect("the shift's plan");
    assert_eq!(plan.fact("time_limit"), Some(limit), "{plan:?}");
    h.approve("bob").await;
    assert_eq!(h.weights(), dev(50, 50));
}

fn status_says_holding(h: &Harness) -> bool {
    h.chat
        .of_kind(MessageKind::Status)
        .last()
        .is_some_and(|m| m.text.contains("(holding); the weights go back at"))
}

#[tokio::test]
async fn a_two_minute_shift_returns_by_itself_with_no_second_approval() {
    let h = Harness::new(CONFIG);
    shifted_for(&h, "2m").await;
    h.cmd("carol", "status").await;
    assert!(status_says_holding(&h), "{}", h.chat.all_text());

    // Less than ten minutes to go: the thread is reminded at once.
    later(&h, Duration::from_secs(1)).await;
    let reminders = of_kind(&h, MessageKind::HoldReminder);
    assert_eq!(reminders.len(), 1, "{}", h.chat.all_text());
    assert_eq!(h.weights(), dev(50, 50), "not yet");

    later(&h, minutes(2)).await;
    assert_eq!(h.weights(), dev(100, 0), "{}", h.chat.all_text());
    let plans = h
        .chat
        .posts()
        .into_iter()
        .filter(|(_, m)| m.kind == MessageKind::Plan)
        .map(|(_, m)| m)
        .collect::<Vec<_>>();
    let ret = plans.last().unwrap();
    assert_eq!(ret.fact("hold"), Some("return"), "{ret:?}");
    assert_eq!(
        of_kind(&h, MessageKind::HoldReminder).len(),
        1,
        "one reminder"
    );
    // The environment is free again.
    h.cmd("alice", "shift 10 to green").await;
    assert!(refusals(&h, "alice").is_empty(), "{}", h.chat.all_text());
}

#[tokio::test]
async fn a_holding_shift_survives_a_restart_and_returns_on_time() {
    let mut h = Harness::new(CONFIG);
    shifted_for(&h, "2m").await;
    h.restart().await;
    let resumed = of_kind(&h, MessageKind::Resuming).pop().unwrap();
    assert_eq!(resumed.fact("doing"), Some("holding"), "{resumed:?}");
    later(&h, minutes(1)).await;
    assert_eq!(h.weights(), dev(50, 50), "a minute to go");
    h.restart().await;
    later(&h, minutes(1)).await;
    assert_eq!(h.weights(), dev(100, 0), "{}", h.chat.all_text());
}

#[tokio::test]
async fn new_operations_are_refused_while_the_weights_hold_and_a_freeze_does_not_block_the_return()
{
    let h = Harness::new(CONFIG);
    shifted_for(&h, "30m").await;
    h.cmd("alice", "shift 10 to green").await;
    let busy = refusals(&h, "alice");
    assert!(
        busy.iter().any(|m| m.fact("refusal") == Some("busy")),
        "{busy:?}"
    );
    h.cmd("bob", "freeze quarter-end close").await;
    later(&h, minutes(30)).await;
    assert_eq!(
        h.weights(),
        dev(100, 0),
        "the return is part of an approved operation: {}",
        h.chat.all_text()
    );
}

#[tokio::test]
async fn weights_changed_by_hand_make_the_return_ask_for_an_approval() {
    let h = Harness::new(CONFIG);
    shifted_for(&h, "2m").await;
    h.memory.edit_weight(GREEN, Some(70));
    later(&h, minutes(2)).await;
    assert_eq!(
        h.memory.weights(),
        weights(&[(BLUE, 50), (GREEN, 70)]),
        "nothing moves without an approval"
    );
    let ret = plan_posts(&h).pop().unwrap();
    assert_eq!(ret.fact("hold"), Some("return"), "{ret:?}");
    assert_eq!(ret.fact("status"), Some("pending"));
    h.approve("bob").await;
    assert_eq!(h.weights(), dev(100, 0), "{}", h.chat.all_text());
}

#[tokio::test]
async fn extend_needs_an_approval_and_moves_the_return() {
    let h = Harness::new(CONFIG);
    shifted_for(&h, "2m").await;
    h.cmd("alice", "extend 1h").await;
    let extend = plan_posts(&h).pop().unwrap();
    assert_eq!(extend.fact("hold"), Some("extend"), "{extend:?}");
    // Whoever asked may not approve it.
    h.approve("alice").await;
    let refused = of_kind(&h, MessageKind::Refused);
    assert!(
        refused
            .last()
            .is_some_and(|m| m.facts.iter().any(|(_, v)| v == "self_approval")),
        "{refused:?}"
    );
    later(&h, minutes(2)).await;
    assert_eq!(h.weights(), dev(100, 0), "without the approval, time is up");

    let h = Harness::new(CONFIG);
    shifted_for(&h, "2m").await;
    h.cmd("alice", "extend 1h").await;
    h.approve("bob").await;
    later(&h, minutes(2)).await;
    assert_eq!(h.weights(), dev(50, 50), "extended: {}", h.chat.all_text());
    later(&h, minutes(60)).await;
    assert_eq!(h.weights(), dev(100, 0), "{}", h.chat.all_text());
}

#[tokio::test]
async fn keep_ends_the_operation_with_the_weights_kept() {
    let h = Harness::new(CONFIG);
    shifted_for(&h, "2m").await;
    h.cmd("alice", "keep").await;
    let keep = plan_posts(&h).pop().unwrap();
    assert_eq!(keep.fact("hold"), Some("keep"), "{keep:?}");
    h.approve("bob").await;
    let finished = of_kind(&h, MessageKind::Finished).pop().unwrap();
    assert!(
        is(
            &finished,
            MessageKind::Finished,
            &[("outcome", "completed")]
        ),
        "{finished:?}"
    );
    later(&h, minutes(10)).await;
    assert_eq!(h.weights(), dev(50, 50), "kept");
}

#[tokio::test]
async fn a_rejected_extend_leaves_the_return_as_it_was() {
    let h = Harness::new(CONFIG);
    shifted_for(&h, "5m").await;
    h.cmd("alice", "extend 1h").await;
    h.cmd("carol", "status").await;
    assert!(!status_says_holding(&h), "the extend awaits approval");
    h.react("bob", "x").await;
    h.cmd("carol", "status").await;
    assert!(
        status_says_holding(&h),
        "rejected, the shift holds as before: {}",
        h.chat.all_text()
    );
    later(&h, minutes(5)).await;
    assert_eq!(h.weights(), dev(100, 0), "{}", h.chat.all_text());
}

#[tokio::test]
async fn abort_cancels_the_return() {
    let h = Harness::new(CONFIG);
    shifted_for(&h, "2m").await;
    h.cmd("alice", "abort").await;
    let finished = of_kind(&h, MessageKind::Finished).pop().unwrap();
    assert_eq!(finished.fact("outcome"), Some("aborted"), "{finished:?}");
    later(&h, minutes(5)).await;
    assert_eq!(h.weights(), dev(50, 50), "the return was cancelled");
}

#[tokio::test]
async fn extend_and_keep_are_refused_when_nothing_holds_and_past_72_hours() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "extend 1h").await;
    let refused = refusals(&h, "alice");
    assert_eq!(
        refused.last().and_then(|m| m.fact("refusal")),
        Some("not_holding"),
        "{refused:?}"
    );
    shifted_for(&h, "72h").await;
    h.cmd("alice", "extend 1h").await;
    let refused = refusals(&h, "alice");
    assert_eq!(
        refused.last().and_then(|m| m.fact("refusal")),
        Some("hold_too_long"),
        "{refused:?}"
    );
    h.cmd("alice", "shift 50 to green for 73h").await;
    h.cmd("carol", "keep").await;
    let refused = refusals(&h, "carol");
    assert_eq!(
        refused.last().and_then(|m| m.fact("refusal")),
        Some("not_yours"),
        "only the requester or an approver: {refused:?}"
    );
}

/// A before-gate on the error ratio of each cluster that gains traffic.
const BEFORE_GATE: &str = r#"
      - name: error-rate
        query: max(app_error_ratio{cluster="{cluster}"})
        when: before
        pass_if: {below: 0.01}
        on_no_data: pass"#;

#[tokio::test]
async fn a_return_onto_a_cluster_whose_gate_fails_does_not_move_and_says_so_in_the_channel() {
    let exporter = Exporter::start();
    exporter.set_for_cluster("app_error_ratio", BLUE, 0.001);
    exporter.set_for_cluster("app_error_ratio", GREEN, 0.001);
    let prometheus = Prometheus::start(&exporter).await;
    let blue = format!("app_error_ratio{{cluster=\"{BLUE}\"}}");
    prometheus.wait_for(&blue, |v| v == [0.001]).await;
    let config = CONFIG.replace(
        "    channel: C1\n",
        &format!(
            "    channel: C1\n    prometheus:\n      url: {}\n      timeout: 5s\n    gates:{BEFORE_GATE}\n",
            prometheus.url()
        ),
    );
    let h = Harness::new(&config);
    shifted_for(&h, "2m").await;

    // Blue, which the return would give traffic back to, goes bad.
    exporter.set_for_cluster("app_error_ratio", BLUE, 0.3);
    prometheus.wait_for(&blue, |v| v == [0.3]).await;
    later(&h, minutes(2)).await;
    assert_eq!(h.weights(), dev(50, 50), "{}", h.chat.all_text());
    let loud = h
        .chat
        .posts()
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| m.kind == MessageKind::Finished)
        .unwrap_or_else(|| panic!("no channel post; said:\n{}", h.chat.all_text()));
    assert_eq!(loud.fact("cause"), Some("return_refused"), "{loud:?}");
    assert_eq!(loud.fact("refusal"), Some("metric_gate"), "{loud:?}");
    assert!(loud.text.contains("<!here>"), "{}", loud.text);
}
