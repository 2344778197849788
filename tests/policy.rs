//! Who may act (issue 14): per-environment policy — requesters, several
//! approvers, break-glass, abort and rollback, reasons —, channel binding,
//! and freezes. The engine end to end through its traits, as
//! `tests/engine.rs` drives it.

mod support;

use failover_bot::chat::{Message, MessageKind};
use failover_bot::config::Config;
use support::chat::is;
use support::{weights, Harness};

const BLUE: &str = "k8s-blue.prod.example.com";
const GREEN: &str = "k8s-green.prod.example.com";

/// dev keeps the defaults (one approval, anyone may ask); prod overrides:
/// two approvals, SREs request, on-call breaks glass, a reason required,
/// bound to its own channel.
const CONFIG: &str = r#"
slack:
  channels: [C1, C2]
approval:
  approvers: [alice, bob, S0SRE]
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: dev-blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: dev-green, weight: 0}
  prod:
    channel: C2
    approval:
      approvals_required: 2
      requesters: [alice, S0SRE]
      break_glass: [erin]
      require_reason: true
    clusters:
      - {name: k8s-blue.prod.example.com, context: prod-blue, weight: 100}
      - {name: k8s-green.prod.example.com, context: prod-green, weight: 0}
"#;

fn prod(blue: u8, green: u8) -> failover_bot::plan::Weights {
    weights(&[(BLUE, blue), (GREEN, green)])
}

fn prod_weights(h: &Harness) -> failover_bot::plan::Weights {
    h.weights()
        .iter()
        .filter(|(c, _)| c.ends_with(".prod.example.com"))
        .collect()
}

/// The refusals `user` got, by name.
fn refusals(h: &Harness, user: &str) -> Vec<String> {
    h.chat
        .ephemerals(user)
        .iter()
        .filter(|m| m.kind == MessageKind::Refused)
        .map(|m| m.fact("refusal").unwrap_or_default().to_owned())
        .collect()
}

fn last_in_thread(h: &Harness, at: &failover_bot::chat::MessageRef) -> Message {
    h.chat.thread(at).pop().expect("a reply in the thread")
}

#[test]
fn existing_configs_keep_working_and_policies_are_checked_by_key() {
    let config = Config::from_yaml(CONFIG).unwrap();
    let dev = config.approval_for("dev");
    assert_eq!(dev.approvals_required, 1);
    assert_eq!(dev.requesters, None);
    assert_eq!(dev.break_glass(), ["alice", "bob", "S0SRE"]);
    let prod = config.approval_for("prod");
    assert_eq!(prod.approvals_required, 2);
    assert_eq!(prod.break_glass(), ["erin"]);
    assert!(prod.require_reason);
    assert_eq!(prod.approvers, dev.approvers, "not overridden: the default");

    let broken = CONFIG.replace("approvals_required: 2", "approvals_required: 0");
    let err = Config::from_yaml(&broken).unwrap_err().to_string();
    assert!(
        err.contains("environments.prod.approval.approvals_required: must be 1–10"),
        "{err}"
    );
    let empty = CONFIG.replace("requesters: [alice, S0SRE]", "requesters: []");
    let err = Config::from_yaml(&empty).unwrap_err().to_string();
    assert!(
        err.contains("environments.prod.approval.requesters"),
        "{err}"
    );
}

#[tokio::test]
async fn two_approvals_are_two_distinct_approvers_and_never_the_requester() {
    let h = Harness::new(CONFIG);
    h.cmd_in("C2", "alice", "shift 50 because INC-4711 db failover")
        .await;
    let plan = h.newest_pending().expect("a plan");
    h.approve("alice").await; // the requester
    assert_eq!(
        last_in_thread(&h, &plan).fact("refusal"),
        Some("self_approval")
    );
    h.approve("bob").await;
    assert_eq!(prod_weights(&h), prod(100, 0), "one of two is not enough");
    let shown = h.chat.updates(&plan).pop().unwrap();
    assert!(
        is(
            &shown,
            MessageKind::Plan,
            &[
                ("status", "pending"),
                ("approvals", "1/2"),
                ("approved_by", "bob")
            ]
        ),
        "the plan shows 1 of 2 and who: {shown:?}"
    );
    h.approve("bob").await; // again
    assert_eq!(
        last_in_thread(&h, &plan).fact("refusal"),
        Some("already_approved")
    );
    h.approve("dave").await; // a member of S0SRE
    assert_eq!(prod_weights(&h), prod(50, 50));
    let finished = h.engine.finished_operations();
    let approvers: Vec<&str> = finished[0]
        .approvals
        .iter()
        .map(|a| a.by.as_str())
        .collect();
    assert_eq!(approvers, ["bob", "dave"]);
    assert_eq!(
        finished[0].header.reason.as_deref(),
        Some("INC-4711 db failover")
    );
}

#[tokio::test]
async fn a_group_member_counts_once_however_they_are_listed() {
    // dave is in S0SRE; listing him directly too does not make two votes.
    let config = CONFIG.replace(
        "approvers: [alice, bob, S0SRE]",
        "approvers: [alice, dave, S0SRE]",
    );
    let h = Harness::new(&config);
    h.cmd_in("C2", "alice", "shift 50 because drill").await;
    h.approve("dave").await;
    h.approve("dave").await;
    assert_eq!(prod_weights(&h), prod(100, 0), "still one of two");
}

#[tokio::test]
async fn an_approval_can_be_taken_back_until_the_plan_is_decided() {
    let h = Harness::new(CONFIG);
    h.cmd_in("C2", "alice", "shift 50 because drill").await;
    let plan = h.newest_pending().unwrap();
    h.approve("bob").await;
    h.react_on(&plan, "bob", "white_check_mark", false).await;
    assert!(h
        .chat
        .thread_has(&plan, MessageKind::ApprovalTakenBack, &[("user", "bob")]));
    h.approve("dave").await;
    assert_eq!(prod_weights(&h), prod(100, 0), "bob's vote is gone: 1 of 2");
    h.approve("bob").await;
    assert_eq!(prod_weights(&h), prod(50, 50));
}

#[tokio::test]
async fn only_requesters_may_start_operations_where_the_policy_names_them() {
    let h = Harness::new(CONFIG);
    h.cmd_in("C2", "carol", "shift 50 because drill").await;
    assert_eq!(refusals(&h, "carol"), ["not_requester"]);
    h.cmd_in("C2", "dave", "shift 50 because drill").await; // in S0SRE
    assert!(h.newest_pending().is_some(), "a group member may");
    // dev names no requesters: anyone in its channel may ask.
    h.cmd("carol", "shift 50").await;
    assert!(h.engine.active_operation("dev").is_some());
}

#[tokio::test]
async fn a_reason_is_required_where_the_policy_says_so_and_shown_everywhere() {
    let h = Harness::new(CONFIG);
    h.cmd_in("C2", "alice", "shift 50").await;
    assert_eq!(refusals(&h, "alice"), ["reason_required"]);
    h.cmd_in(
        "C2",
        "alice",
        "shift 50 to green because INC-4711 db failover",
    )
    .await;
    let (_, plan) = h.chat.plans().pop().unwrap();
    assert!(plan.text.contains("INC-4711 db failover"), "{plan:?}");
    let journal = h.journal_lines().join("\n");
    assert!(
        journal.contains("\"reason\":\"INC-4711 db failover\""),
        "journaled"
    );
    h.react("bob", "x").await;
    h.cmd_in("C2", "alice", "history").await;
    let history = h.chat.ephemerals("alice").pop().unwrap();
    assert!(history.text.contains("INC-4711 db failover"), "{history:?}");
}

#[tokio::test]
async fn abort_and_rollback_are_for_the_requester_or_an_approver() {
    let h = Harness::new(CONFIG);
    h.cmd("carol", "to green steps 50,100").await;
    h.approve("bob").await;
    h.cmd("erin", "abort").await; // neither the requester nor an approver
    assert_eq!(refusals(&h, "erin"), ["not_yours"]);
    assert!(h.engine.active_operation("dev").is_some());
    let answer = h.chat.ephemerals("erin").pop().unwrap();
    assert!(
        answer.text.contains("<@carol>"),
        "the refusal names who may: {answer:?}"
    );
    h.cmd("carol", "abort").await; // the requester
    assert!(h.engine.active_operation("dev").is_none());

    h.cmd("erin", "rollback").await;
    assert_eq!(refusals(&h, "erin"), ["not_yours", "not_yours"]);
    h.cmd("bob", "rollback").await; // an approver
    assert!(h.newest_pending().is_some());
}

#[tokio::test]
async fn a_command_for_a_bound_environment_from_another_channel_names_the_right_one() {
    let h = Harness::new(CONFIG);
    h.cmd_in("C1", "alice", "shift 50 in prod because drill")
        .await;
    let answer = h.chat.ephemerals("alice").pop().unwrap();
    assert_eq!(answer.fact("refusal"), Some("wrong_channel"));
    assert!(answer.text.contains("<#C2>"), "{answer:?}");
    h.cmd_in("D0ALICE", "alice", "status").await;
    assert_eq!(
        refusals(&h, "alice").pop().as_deref(),
        Some("direct_message")
    );
    h.cmd_in("D0ALICE", "alice", "help").await;
    let help = h.chat.ephemerals("alice").pop().unwrap();
    assert_eq!(help.kind, MessageKind::Help, "help works everywhere");
    assert!(h.chat.plans().is_empty());
}

#[tokio::test]
async fn a_freeze_refuses_new_operations_but_break_glass_by_its_users() {
    let h = Harness::new(CONFIG);
    h.cmd_in("C2", "carol", "freeze quarter-end close").await;
    assert_eq!(refusals(&h, "carol"), ["may_not_freeze"]);
    h.cmd_in("C2", "bob", "freeze quarter-end close").await;
    let frozen = h.chat.posts().pop().unwrap().1;
    assert!(
        is(
            &frozen,
            MessageKind::Frozen,
            &[("env", "prod"), ("user", "bob")]
        ),
        "{frozen:?}"
    );

    h.cmd_in("C2", "alice", "shift 50 because drill").await;
    assert_eq!(refusals(&h, "alice"), ["frozen"]);
    // Break-glass by someone who may not break glass: refused.
    h.cmd_in("C2", "alice", "shift! 50 because db down").await;
    assert_eq!(refusals(&h, "alice"), ["frozen", "not_break_glass"]);
    // erin may: the plan says it breaks the freeze, and the journal keeps it.
    let config = CONFIG.replace(
        "requesters: [alice, S0SRE]",
        "requesters: [alice, erin, S0SRE]",
    );
    let mut h = h;
    h.reconfigure(&config).await;
    h.cmd_in("C2", "erin", "shift! 50 because db down").await;
    let (_, plan) = h.chat.plans().pop().expect("break-glass goes through");
    assert!(
        plan.text.contains("break-glass during a freeze"),
        "{plan:?}"
    );
    assert!(h.journal_lines().join("\n").contains("\"during_freeze\""));

    h.cmd_in("C2", "alice", "status").await;
    let status = h.chat.posts().pop().unwrap().1;
    assert_eq!(status.fact("frozen"), Some("true"));
    h.cmd_in("C2", "bob", "unfreeze").await;
    let unfrozen = h.chat.posts().pop().unwrap().1;
    assert_eq!(unfrozen.kind, MessageKind::Unfrozen);
    h.cmd_in("C2", "bob", "unfreeze").await;
    assert_eq!(refusals(&h, "bob"), ["not_frozen"]);
}

#[tokio::test]
async fn an_operation_already_running_goes_on_through_a_freeze_and_abort_still_works() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "to green steps 50,100").await;
    h.cmd("bob", "freeze deploy window").await;
    h.approve("bob").await; // step 1 of the operation that was running
    assert!(h.engine.active_operation("dev").is_some());
    h.approve("bob").await; // step 2
    assert!(
        h.engine.active_operation("dev").is_none(),
        "the running operation finished during the freeze"
    );
    h.cmd("alice", "shift 10 to blue").await;
    assert_eq!(refusals(&h, "alice"), ["frozen"]);
}

#[tokio::test]
async fn help_and_status_show_each_environments_policy() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "help").await;
    let help = h.chat.ephemerals("alice").pop().unwrap();
    assert!(
        help.text
            .contains("*prod*: 2 approvals from <@alice>, <@bob>, <!subteam^S0SRE> · requested by <@alice>, <!subteam^S0SRE> · break-glass by <@erin> · a reason required · only from <#C2>"),
        "{}",
        help.text
    );
    h.cmd_in("C2", "alice", "status").await;
    let status = h.chat.posts().pop().unwrap().1;
    assert!(
        status.text.contains("Policy: 2 approvals"),
        "{}",
        status.text
    );
}
