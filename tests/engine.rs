//! The engine end to end through its traits: real journal file, in-memory
//! clusters (with injected failures), a chat that records what the channel
//! saw, and a frozen clock.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::backend::{BackendError, Written};
use failover_bot::chat::{Message, MessageKind};
use failover_bot::journal::Entry;
use failover_bot::messages::RESENT_NOTE;
use failover_bot::notice::{Destination, Notice};
use support::backend::{Hooked, Write};
use support::chat::{is, kinds};
use support::{weights, Harness, CONFIG, THREE_CLUSTERS};

const BLUE: &str = "k8s-blue.dev.example.com";
const GREEN: &str = "k8s-green.dev.example.com";

fn blue_green(blue: u8, green: u8) -> failover_bot::plan::Weights {
    weights(&[(BLUE, blue), (GREEN, green)])
}

#[tokio::test]
async fn shift_is_planned_then_applied_after_a_second_persons_approval() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plans = h.chat.plans();
    assert_eq!(plans.len(), 1);
    let (plan_msg, plan) = &plans[0];
    assert!(
        is(
            plan,
            MessageKind::Plan,
            &[
                ("op", "1"),
                ("step", "1"),
                ("total", "1"),
                ("requester", "alice"),
                ("after", &format!("{BLUE}=50 {GREEN}=50")),
            ]
        ),
        "{plan:?}"
    );
    assert_eq!(
        h.weights(),
        blue_green(100, 0),
        "nothing applied before approval"
    );

    h.approve("bob").await;
    assert_eq!(h.weights(), blue_green(50, 50));
    assert!(
        h.chat.thread_has(
            plan_msg,
            MessageKind::StepResult,
            &[("step", "1"), ("outcome", "applied")]
        ),
        "{:?}",
        kinds(&h.chat.thread(plan_msg))
    );
    let last = h.chat.updates(plan_msg).pop().unwrap();
    assert!(
        is(
            &last,
            MessageKind::Plan,
            &[("status", "applied"), ("approved_by", "bob")]
        ),
        "{last:?}"
    );
    assert!(h.engine.active_operation("dev").is_none());
}

/// The refusal `message` answers with, by its name.
fn refusal(message: &Message) -> &str {
    assert_eq!(message.kind, MessageKind::Refused, "{message:?}");
    message.fact("refusal").unwrap_or_default()
}

#[tokio::test]
async fn self_approval_is_refused_in_the_thread_and_changes_nothing() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plan = h.newest_pending().unwrap();
    h.approve("alice").await;
    assert_eq!(h.weights(), blue_green(100, 0));
    let thread = h.chat.thread(&plan);
    assert_eq!(refusal(&thread[0]), "self_approval");
    assert!(h.newest_pending().is_some(), "still awaiting approval");
}

#[tokio::test]
async fn non_approver_is_refused() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plan = h.newest_pending().unwrap();
    h.approve("carol").await;
    assert_eq!(h.weights(), blue_green(100, 0));
    assert_eq!(refusal(&h.chat.thread(&plan)[0]), "not_approver");
}

#[tokio::test]
async fn user_group_member_may_approve() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    h.approve("dave").await; // dave is in S0SRE
    assert_eq!(h.weights(), blue_green(50, 50));
}

#[tokio::test]
async fn reactions_by_the_bot_itself_are_ignored() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    h.approve("UBOT").await;
    assert_eq!(h.weights(), blue_green(100, 0));
    assert!(h.newest_pending().is_some());
}

#[tokio::test]
async fn rejection_ends_the_operation_without_changes() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plan = h.newest_pending().unwrap();
    h.react("bob", "x").await;
    assert_eq!(h.weights(), blue_green(100, 0));
    assert!(h.engine.active_operation("dev").is_none());
    assert_eq!(h.chat.plan_status(&plan).as_deref(), Some("rejected"));
    assert!(h.chat.thread_has(
        &plan,
        MessageKind::Finished,
        &[("outcome", "rejected"), ("step", "1")]
    ));
}

#[tokio::test]
async fn requester_rejecting_withdraws() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plan = h.newest_pending().unwrap();
    h.react("alice", "x").await;
    assert!(h.engine.active_operation("dev").is_none());
    assert_eq!(h.chat.plan_status(&plan).as_deref(), Some("withdrawn"));
    assert_eq!(h.weights(), blue_green(100, 0));
}

#[tokio::test]
async fn approval_expires_by_the_clock() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plan = h.newest_pending().unwrap();
    h.advance(Duration::from_secs(14 * 60));
    h.engine.tick().await;
    assert!(h.newest_pending().is_some(), "not expired at 14 minutes");
    h.advance(Duration::from_secs(60));
    h.engine.tick().await;
    assert!(h.newest_pending().is_none());
    assert_eq!(h.chat.plan_status(&plan).as_deref(), Some("expired"));
    // A late approval is refused and changes nothing.
    h.react_on(&plan, "bob", "white_check_mark", true).await;
    assert_eq!(h.weights(), blue_green(100, 0));
    assert!(h
        .chat
        .thread_has(&plan, MessageKind::Refused, &[("refusal", "plan_closed")]));
}

#[tokio::test]
async fn approving_after_the_deadline_expires_it_even_without_a_tick() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    h.advance(Duration::from_secs(16 * 60));
    h.approve("bob").await;
    assert_eq!(h.weights(), blue_green(100, 0));
    assert!(h.engine.active_operation("dev").is_none());
}

#[tokio::test]
async fn removing_an_approval_after_the_step_ran_says_it_is_too_late() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plan = h.newest_pending().unwrap();
    h.approve("bob").await;
    h.react_on(&plan, "bob", "white_check_mark", false).await;
    assert_eq!(h.weights(), blue_green(50, 50));
    assert!(h
        .chat
        .thread_has(&plan, MessageKind::ApprovalTooLate, &[("user", "bob")]));
}

#[tokio::test]
async fn a_plan_whose_weights_moved_is_replanned_and_asked_again() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let first = h.newest_pending().unwrap();
    h.memory.edit_weight(BLUE, Some(80)); // someone else
    h.approve("bob").await;
    // Not applied: the plan no longer matches.
    assert_eq!(h.weights(), blue_green(80, 0));
    assert_eq!(h.chat.plan_status(&first).as_deref(), Some("superseded"));
    assert!(h
        .chat
        .thread_has(&first, MessageKind::Superseded, &[("step", "1")]));
    let second = h.newest_pending().expect("a new plan is shown");
    assert_ne!(first, second);
    h.approve("bob").await;
    assert_eq!(h.weights(), blue_green(50, 50));
}

#[tokio::test]
async fn a_write_conflict_restores_and_asks_again() {
    let h = Harness::new(THREE_CLUSTERS);
    h.cmd("alice", "shift 50 to b").await;
    let first = h.newest_pending().unwrap();
    // Between our read and our write someone edits b.
    h.backend.edit_before_next_write("k8s-b.dev.example.com", 7);
    h.approve("bob").await;
    assert!(
        h.chat
            .thread_has(&first, MessageKind::StepResult, &[("outcome", "conflict")]),
        "{:?}",
        kinds(&h.chat.thread(&first))
    );
    let second = h.newest_pending().expect("re-planned");
    assert_ne!(first, second);
    h.approve("bob").await;
    assert_eq!(h.weights().get("k8s-b.dev.example.com"), Some(50));
}

#[tokio::test]
async fn a_second_operation_in_the_same_environment_is_refused() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    h.cmd("bob", "shift 10 to green").await;
    let answers = h.chat.ephemerals("bob");
    assert_eq!(answers.len(), 1);
    assert_eq!(refusal(&answers[0]), "busy");
    assert_eq!(h.chat.plans().len(), 1);
}

#[tokio::test]
async fn a_failed_write_puts_every_changed_cluster_back() {
    let h = Harness::new(THREE_CLUSTERS);
    h.cmd("alice", "shift 100 to c").await;
    let plan = h.newest_pending().unwrap();
    // c is raised first (works), then a is lowered: that write fails.
    h.backend.fail_writes_to("k8s-a.dev.example.com", false);
    h.approve("bob").await;
    assert_eq!(
        h.weights(),
        weights(&[
            ("k8s-a.dev.example.com", 100),
            ("k8s-b.dev.example.com", 0),
            ("k8s-c.dev.example.com", 0)
        ])
    );
    let result = h
        .chat
        .thread(&plan)
        .into_iter()
        .find(|m| m.kind == MessageKind::StepResult)
        .expect("a step result");
    assert_eq!(result.fact("outcome"), Some("restored"), "{result:?}");
    let clusters = result.fact("clusters").unwrap();
    assert!(
        clusters.contains("k8s-c.dev.example.com=restored")
            && clusters.contains("k8s-a.dev.example.com=failed"),
        "{clusters}"
    );
    assert_eq!(h.chat.plan_status(&plan).as_deref(), Some("failed"));
    assert!(h.engine.active_operation("dev").is_none());
}

#[tokio::test]
async fn a_restore_that_fails_is_reported_cluster_by_cluster() {
    let h = Harness::new(THREE_CLUSTERS);
    h.cmd("alice", "shift 100 to c").await;
    let plan = h.newest_pending().unwrap();
    h.backend.fail_writes_to("k8s-a.dev.example.com", true);
    h.approve("bob").await;
    // a could not be lowered; c was raised and put back.
    assert_eq!(h.weights().get("k8s-c.dev.example.com"), Some(0));
    assert!(h
        .chat
        .thread_has(&plan, MessageKind::StepResult, &[("outcome", "restored")]));
}

#[tokio::test]
async fn never_passes_through_all_zero() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "to green steps 100").await;
    h.approve("bob").await;
    assert_eq!(h.weights(), blue_green(0, 100));
    let trail = h.backend.trail.lock().unwrap().clone();
    assert!(!trail.is_empty());
    for seen in trail {
        assert!(!seen.weights.all_zero(), "all zero at {seen:?}");
    }
}

#[tokio::test]
async fn failover_asks_a_separate_approval_for_every_step() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "to green steps 10,50,100").await;
    for (step, expected) in [(1, (90, 10)), (2, (50, 50)), (3, (0, 100))] {
        let plans = h.chat.plans();
        assert_eq!(plans.len(), step, "one plan per step so far");
        let shown = &plans[step - 1].1;
        assert!(
            is(
                shown,
                MessageKind::Plan,
                &[("step", &step.to_string()), ("total", "3")]
            ),
            "{shown:?}"
        );
        h.approve("alice").await; // the requester never can
        assert_eq!(h.chat.plans().len(), step);
        h.approve("bob").await;
        assert_eq!(
            h.weights(),
            blue_green(expected.0, expected.1),
            "after step {step}"
        );
    }
    assert!(h.engine.active_operation("dev").is_none());
    let finished = h.engine.finished_operations();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].approvals.len(), 3);
    let ends = h.chat.of_kind(MessageKind::Finished);
    assert!(
        is(
            &ends[0],
            MessageKind::Finished,
            &[("op", "1"), ("outcome", "completed")]
        ),
        "{ends:?}"
    );
}

#[tokio::test]
async fn failover_skips_steps_the_target_already_has() {
    let h = Harness::new(CONFIG);
    h.memory.edit_weight(BLUE, Some(50));
    h.memory.edit_weight(GREEN, Some(50));
    h.cmd("alice", "to green").await; // default steps 10,50,100
    let plans = h.chat.plans();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].1.fact("total"), Some("1"), "{:?}", plans[0].1);
}

#[tokio::test]
async fn abort_ends_a_failover_between_steps_without_changing_weights() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "to green steps 50,100").await;
    h.approve("bob").await;
    assert_eq!(h.weights(), blue_green(50, 50));
    let step2 = h.newest_pending().unwrap();
    h.cmd("bob", "abort").await;
    assert_eq!(h.weights(), blue_green(50, 50));
    assert!(h.engine.active_operation("dev").is_none());
    assert_eq!(h.chat.plan_status(&step2).as_deref(), Some("aborted"));
    assert!(h.chat.thread_has(
        &step2,
        MessageKind::Finished,
        &[("outcome", "aborted"), ("step", "2")]
    ));
    h.cmd("bob", "abort").await;
    assert_eq!(refusal(&h.chat.ephemerals("bob")[0]), "nothing_to_abort");
}

#[tokio::test]
async fn rollback_returns_to_the_weights_before_the_last_operation() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "to green steps 50,100").await;
    h.approve("bob").await;
    h.approve("bob").await;
    assert_eq!(h.weights(), blue_green(0, 100));
    h.cmd("bob", "rollback").await;
    let (_, plan) = h.chat.plans().pop().unwrap();
    assert!(
        is(
            &plan,
            MessageKind::Plan,
            &[("op", "2"), ("after", &format!("{BLUE}=100 {GREEN}=0"))]
        ),
        "{plan:?}"
    );
    h.approve("alice").await;
    assert_eq!(h.weights(), blue_green(100, 0));
}

#[tokio::test]
async fn rollback_with_no_history_is_refused() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "rollback").await;
    assert_eq!(
        refusal(&h.chat.ephemerals("alice")[0]),
        "nothing_to_roll_back"
    );
}

#[tokio::test]
async fn add_creates_at_zero_and_remove_only_at_zero() {
    let h = Harness::new(THREE_CLUSTERS);
    let d = "k8s-d.dev.example.com";
    h.cmd("alice", "shift 10 to d").await;
    assert_eq!(
        refusal(&h.chat.ephemerals("alice")[0]),
        "cluster_not_routed"
    );
    h.cmd("alice", "add d").await;
    assert_eq!(h.memory.weight(d), None, "not before approval");
    h.approve("bob").await;
    assert_eq!(h.memory.weight(d), Some(0));

    h.cmd("alice", "remove a").await;
    let answer = h.chat.ephemerals("alice").pop().unwrap();
    assert_eq!(refusal(&answer), "remove_non_zero");
    h.cmd("alice", "remove d").await;
    h.approve("bob").await;
    assert_eq!(h.memory.weight(d), None);
    assert!(!h.weights().contains(d));
}

#[tokio::test]
async fn identity_mismatch_is_refused_before_anything_is_written() {
    let h = Harness::new(CONFIG);
    h.memory.set_identity(GREEN, "k8s-other.prod.example.com");
    h.cmd("alice", "shift 50").await;
    let answer = h.chat.ephemerals("alice").pop().unwrap();
    assert!(
        is(
            &answer,
            MessageKind::Refused,
            &[
                ("refusal", "gate_failed"),
                ("cluster", GREEN),
                ("gate", "identity_mismatch")
            ]
        ),
        "{answer:?}"
    );
    assert!(h.chat.plans().is_empty());
    assert_eq!(h.backend.writes(), 0);
}

#[tokio::test]
async fn identity_is_checked_again_before_applying() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plan = h.newest_pending().unwrap();
    h.memory.set_identity(GREEN, "k8s-other.prod.example.com");
    h.approve("bob").await;
    assert_eq!(h.backend.writes(), 0);
    assert_eq!(h.chat.plan_status(&plan).as_deref(), Some("refused"));
}

#[tokio::test]
async fn failing_health_gate_refuses_unless_break_glass() {
    let h = Harness::new(CONFIG);
    h.memory.set_unhealthy(GREEN, Some("503 from /healthz"));
    h.cmd("alice", "shift 50").await;
    let answer = h.chat.ephemerals("alice").pop().unwrap();
    assert!(
        is(&answer, MessageKind::Refused, &[("gate", "unhealthy")]),
        "{answer:?}"
    );

    h.cmd("alice", "shift! 50").await;
    let (_, plan) = h.chat.plans().pop().unwrap();
    assert_eq!(plan.fact("break_glass"), Some("true"), "{plan:?}");
    h.approve("bob").await;
    assert_eq!(h.weights(), blue_green(50, 50));
    let journal = h.journal_lines().join("\n");
    assert!(
        journal.contains("\"force\":true"),
        "break-glass is journaled"
    );
}

#[tokio::test]
async fn the_same_delivery_acts_once() {
    let h = Harness::new(CONFIG);
    let request = failover_bot::engine::CommandRequest {
        user: "alice".into(),
        channel: "C1".into(),
        text: "shift 50".into(),
        event_id: Some("Ev-dup".into()),
    };
    for _ in 0..3 {
        h.engine.handle_command(request.clone()).await;
    }
    assert_eq!(h.chat.plans().len(), 1);
    let plan = h.newest_pending().unwrap();
    let approval = failover_bot::engine::Reaction {
        user: "bob".into(),
        name: "white_check_mark".into(),
        message: plan,
        added: true,
        event_id: Some("Ev-approve".into()),
    };
    for _ in 0..3 {
        h.engine.handle_reaction(approval.clone()).await;
    }
    assert_eq!(h.backend.writes(), 2, "one write per cluster, once");
}

#[tokio::test]
async fn bad_input_gets_a_specific_private_answer_and_changes_nothing() {
    let h = Harness::new(CONFIG);
    for (text, expected) in [
        ("shfit 50", "unknown_command"),
        ("shift 150", "bad_percent"),
        ("shift 50 to gren", "unknown_cluster"),
        ("status in prod", "unknown_environment"),
        ("to green steps 50,10", "bad_steps"),
        ("set green=300", "bad_weight"),
    ] {
        h.cmd("alice", text).await;
        let answer = h.chat.ephemerals("alice").pop().unwrap();
        assert_eq!(refusal(&answer), expected, "{text}: {answer:?}");
    }
    assert!(h.chat.posts().is_empty());
    assert_eq!(h.weights(), blue_green(100, 0));
}

#[tokio::test]
async fn commands_outside_the_configured_channels_are_refused() {
    let h = Harness::new(CONFIG);
    h.engine
        .handle_command(failover_bot::engine::CommandRequest {
            user: "alice".into(),
            channel: "C999".into(),
            text: "shift 50".into(),
            event_id: None,
        })
        .await;
    assert_eq!(
        refusal(&h.chat.ephemerals("alice")[0]),
        "channel_not_allowed"
    );
    assert!(h.chat.plans().is_empty());
}

#[tokio::test]
async fn status_and_history_report_from_the_clusters_and_the_journal() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    h.approve("bob").await;
    h.cmd("alice", "shift 100 to green").await;
    h.react("bob", "x").await;
    h.cmd("carol", "status").await;
    let (_, status) = h.chat.posts().pop().unwrap();
    assert!(
        is(
            &status,
            MessageKind::Status,
            &[
                ("running", "none"),
                ("weights", &format!("{BLUE}=50 {GREEN}=50"))
            ]
        ),
        "{status:?}"
    );
    h.cmd("carol", "history").await;
    let history = h.chat.ephemerals("carol").pop().unwrap();
    assert!(
        is(
            &history,
            MessageKind::History,
            &[("ops", "2:rejected 1:completed")]
        ),
        "{history:?}"
    );
    let finished = h.engine.finished_operations();
    assert_eq!(finished[0].approvals[0].by, "bob", "approved step 1 by bob");
}

#[tokio::test]
async fn a_restart_keeps_a_pending_approval_and_its_deadline() {
    let mut h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plan = h.newest_pending().unwrap();
    h.restart().await;
    assert_eq!(h.newest_pending(), Some(plan.clone()));
    h.approve("bob").await;
    assert_eq!(h.weights(), blue_green(50, 50));

    h.cmd("alice", "shift 100 to green").await;
    h.restart().await;
    h.advance(Duration::from_secs(15 * 60));
    h.engine.tick().await;
    assert!(
        h.newest_pending().is_none(),
        "expiry still counts after restart"
    );
}

/// Slack does not deliver an acknowledged command again: one a crash cut
/// short between "working on it" and its answer is answered after the
/// restart, privately and once, and nothing else is.
#[tokio::test]
async fn a_command_cut_short_by_a_restart_is_answered_once_after_it() {
    let mut h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await; // answered by the operation it started
    h.cmd("carol", "status").await; // answered privately
    h.restart_after(Entry::Command {
        user: "bob".into(),
        channel: "C1".into(),
        text: "shift 100 to green".into(),
        event: Some("Ev-cut-short".into()),
        answered: false,
    })
    .await;
    let chat = h.chat.clone();
    let told = |user: &str| {
        chat.ephemerals(user)
            .into_iter()
            .filter(|m| m.kind == MessageKind::CommandCutShort)
            .collect::<Vec<_>>()
    };
    assert_eq!(told("bob").len(), 1);
    assert!(told("bob")[0]
        .text
        .contains("`/failover shift 100 to green`"));
    assert!(told("alice").is_empty() && told("carol").is_empty());
    assert_eq!(h.weights(), blue_green(100, 0), "nothing changed");
    h.restart().await;
    assert_eq!(told("bob").len(), 1, "told once, not at every restart");
}

/// A message journaled but not yet taken by Slack when the process died
/// (a step result, say) is sent by the next start, marked, and only once.
#[tokio::test]
async fn a_message_the_crash_cut_off_is_sent_after_the_restart_once() {
    let mut h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    let plan = h.newest_pending().expect("a plan");
    h.restart_after(Entry::Say {
        to: Destination::Post {
            channel: "C1".into(),
            thread: Some(plan.clone()),
        },
        notice: Notice::ApprovalTakenBack { user: "bob".into() },
    })
    .await;
    let sent = |h: &Harness| -> Vec<Message> {
        h.chat
            .thread(&plan)
            .into_iter()
            .filter(|m| m.kind == MessageKind::ApprovalTakenBack)
            .collect()
    };
    let once = sent(&h);
    assert_eq!(once.len(), 1);
    assert!(once[0].text.ends_with(RESENT_NOTE), "marked: {once:?}");
    h.restart().await;
    assert_eq!(sent(&h).len(), 1, "delivered once is delivered");
}

/// Slack refusing a plan's post (a channel the bot is not in, a 5xx) must
/// not leave the environment answering "busy" to everyone.
#[tokio::test]
async fn a_plan_slack_refuses_ends_the_operation_and_frees_the_environment() {
    let h = Harness::new(CONFIG);
    h.chat.refuse_next_post("channel_not_found");
    h.cmd("alice", "shift 50").await;
    assert!(h.engine.active_operation("dev").is_none(), "not stuck");
    let told = h
        .chat
        .ephemerals("alice")
        .pop()
        .expect("the requester is told");
    assert!(
        is(
            &told,
            MessageKind::Finished,
            &[("op", "1"), ("outcome", "failed")]
        ),
        "{told:?}"
    );
    assert!(told.text.contains("channel_not_found"), "{told:?}");
    assert_eq!(h.weights(), blue_green(100, 0));
    h.cmd("alice", "shift 50").await;
    let (_, plan) = h
        .chat
        .plans()
        .pop()
        .expect("the next command gets its plan");
    assert_eq!(plan.fact("op"), Some("2"));
}

#[tokio::test]
async fn history_survives_a_restart() {
    let mut h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50").await;
    h.approve("bob").await;
    h.restart().await;
    h.cmd("alice", "history").await;
    let history = h.chat.ephemerals("alice").pop().unwrap();
    assert_eq!(history.fact("ops"), Some("1:completed"));
    h.cmd("alice", "shift 60 to green").await;
    assert_eq!(
        h.chat.plans().pop().unwrap().1.fact("op"),
        Some("2"),
        "ids continue after a restart"
    );
}

/// What a backend that writes all clusters at once (as Route53 batches do)
/// holds: it can be told to fail with everything put back, or with a
/// partial write.
struct AllAtOnce {
    memory: Arc<MemoryBackend>,
    fail: Mutex<Option<BackendError>>,
}

/// The in-memory backend, written all at once: one `write_all` per step,
/// never a cluster on its own.
fn all_at_once(memory: Arc<MemoryBackend>) -> Hooked<AllAtOnce> {
    let state = AllAtOnce {
        memory: memory.clone(),
        fail: Mutex::new(None),
    };
    Hooked::new(memory, state)
        .before_write(|_, write| match write {
            Write::SetWeight { cluster, .. } => panic!(
                "{} written on its own: all-at-once backends must get one write",
                cluster.name
            ),
            _ => Ok(()),
        })
        .write_all(|state, _, _, after| {
            if let Some(error) = state.fail.lock().unwrap().take() {
                return Some(Err(error));
            }
            for (cluster, weight) in after.iter() {
                state.memory.edit_weight(cluster, Some(weight));
            }
            Some(Ok(Written::Applied))
        })
}

#[tokio::test]
async fn an_all_at_once_write_reports_put_back_or_partial_honestly() {
    let config = failover_bot::config::Config::from_yaml(CONFIG).unwrap();
    let memory = Arc::new(MemoryBackend::from_config(&config));
    let backend = Arc::new(all_at_once(memory.clone()));
    let bot = support::TestBot::new(config, backend.clone());

    bot.cmd("alice", "shift 50").await;
    bot.approve("bob").await;
    assert_eq!(memory.weights(), blue_green(50, 50), "{}", bot.said());

    *backend.fail.lock().unwrap() = Some(BackendError::Failed {
        cluster: "Route53".into(),
        reason: "batch 2 of 2 rejected; every record was put back".into(),
    });
    bot.cmd("alice", "shift 100 to green").await;
    bot.approve("bob").await;
    let results = bot.chat.of_kind(MessageKind::StepResult);
    let result = results.last().unwrap();
    assert_eq!(result.fact("outcome"), Some("restored"), "{result:?}");
    assert_eq!(memory.weights(), blue_green(50, 50));

    *backend.fail.lock().unwrap() = Some(BackendError::Partial {
        cluster: "Route53".into(),
        reason: "batch 2 of 2 rejected; putting the records back failed too".into(),
    });
    bot.cmd("alice", "shift 100 to green").await;
    bot.approve("bob").await;
    let results = bot.chat.of_kind(MessageKind::StepResult);
    let result = results.last().unwrap();
    assert_eq!(result.fact("outcome"), Some("incomplete"), "{result:?}");
    let clusters = result.fact("clusters").unwrap();
    assert!(
        clusters.contains(&format!("{GREEN}=restore_failed"))
            && clusters.contains(&format!("{BLUE}=restore_failed")),
        "each cluster is named as not put back: {clusters}"
    );
}

fn audit(path: &std::path::Path) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn audit_verify_names_requesters_and_approvers_and_detects_an_edited_record() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "to green steps 50,100").await;
    h.approve("bob").await;
    h.approve("dave").await;
    h.cmd("bob", "shift 30 to blue").await;
    h.react("alice", "x").await;

    let (code, out) = audit(&h.journal_path);
    assert_eq!(code, Some(0), "{out}");
    let lines = h.journal_lines();
    assert!(
        out.contains(&format!("hash chain intact over {} records", lines.len())),
        "{out}"
    );
    assert!(
        out.contains("#1 ") && out.contains("`/failover to green steps 50,100` requested by alice · approved step 1 by bob, step 2 by dave · completed"),
        "{out}"
    );
    assert!(
        out.contains("requested by bob · no step approved · rejected"),
        "{out}"
    );

    // Someone rewrites who approved step 1.
    let dir = tempfile::tempdir().unwrap();
    let tampered = dir.path().join("journal.jsonl");
    let edited: Vec<String> = lines
        .iter()
        .map(|l| {
            if l.contains("\"type\":\"decided\"") && l.contains("\"by\":\"bob\"") {
                l.replace("\"by\":\"bob\"", "\"by\":\"eve\"")
            } else {
                l.clone()
            }
        })
        .collect();
    let changed = edited.iter().zip(&lines).position(|(a, b)| a != b).unwrap() + 1;
    std::fs::write(&tampered, edited.join("\n") + "\n").unwrap();
    let (code, out) = audit(&tampered);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("record {} does not follow", changed + 1)),
        "the record after the edited one names it: {out}"
    );
}
