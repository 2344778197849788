//! Resume goes through the gates (issue 13): a step the bot was applying
//! when it died is finished after the restart only if the clusters' identity
//! and health gates pass now and the step began less than an approval's
//! lifetime ago. Otherwise the bot writes nothing — or puts back what it had
//! written of its own half-done step —, says why and where every weight
//! stands, and the operation needs a new approval.

mod support;

use std::sync::Arc;
use std::time::Duration;

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::chat::MessageKind;
use failover_bot::config::Config;
use failover_bot::operation::OperationOutcome;
use support::chat::is;
use support::{weights, Harness};

const CONFIG: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [alice, bob]
environments:
  dev:
    channel: C1
    clusters:
      - {name: a, context: a, weight: 100}
      - {name: c, context: c, weight: 0}
"#;

/// The journal of `shift 50 to c`, cut right after its step began: the
/// bot died before (or while) writing.
async fn journal_cut_at_step_start() -> Vec<String> {
    let reference = Harness::new(CONFIG);
    reference.cmd("alice", "shift 50 to c").await;
    reference.approve("bob").await;
    let lines = reference.journal_lines();
    let started = lines
        .iter()
        .position(|l| l.contains("\"type\":\"step_started\""))
        .expect("the step started");
    lines[..=started].to_vec()
}

/// A bot restarting on that journal, with the clusters at `a` and `c`,
/// as the step began. `while_down` runs on the clusters first (what
/// happened while the bot was down).
fn restarted(
    lines: &[String],
    (a, c): (Option<u8>, Option<u8>),
    while_down: impl FnOnce(&MemoryBackend),
) -> Harness {
    let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let memory = Arc::new(MemoryBackend::from_config(&config));
    memory.edit_weight("a", a);
    memory.edit_weight("c", c);
    while_down(&memory);
    Harness::assemble(config, memory, path, Some(dir))
}

fn stopped_because(h: &Harness, refusal: &str) {
    let stopped = h.chat.of_kind(MessageKind::StepStopped);
    assert_eq!(stopped.len(), 1, "{}", h.chat.all_text());
    assert_eq!(stopped[0].fact("refusal"), Some(refusal), "{stopped:?}");
    let finished = h.engine.finished_operations();
    assert!(
        matches!(finished[0].outcome, OperationOutcome::Failed { .. }),
        "the operation ends and needs a new approval: {:?}",
        finished[0].outcome
    );
}

#[tokio::test]
async fn a_target_that_went_sick_while_the_bot_was_down_gets_no_traffic() {
    // On-call put the weights back by hand because c went sick.
    let h = restarted(
        &journal_cut_at_step_start().await,
        (Some(100), Some(0)),
        |m| m.set_unhealthy("c", Some("503 from /healthz")),
    );
    h.engine.resume().await;
    assert_eq!(h.backend.writes(), 0, "nothing written");
    assert_eq!(h.weights(), weights(&[("a", 100), ("c", 0)]));
    stopped_because(&h, "gate_failed");
}

#[tokio::test]
async fn a_cluster_whose_identity_changed_while_the_bot_was_down_is_not_written() {
    let h = restarted(
        &journal_cut_at_step_start().await,
        (Some(100), Some(0)),
        |m| m.set_identity("c", "k8s-elsewhere.example.com"),
    );
    h.engine.resume().await;
    assert_eq!(h.backend.writes(), 0, "nothing written");
    stopped_because(&h, "gate_failed");
}

#[tokio::test]
async fn its_own_half_written_step_is_put_back_when_the_target_went_sick() {
    // The bot raised c to 50 and died before lowering a.
    let h = restarted(
        &journal_cut_at_step_start().await,
        (Some(100), Some(50)),
        |m| m.set_unhealthy("c", Some("503 from /healthz")),
    );
    h.engine.resume().await;
    assert_eq!(h.weights(), weights(&[("a", 100), ("c", 0)]), "c put back");
    assert_eq!(h.backend.writes(), 1, "only c, back to its weight before");
    stopped_because(&h, "gate_failed");
    let stopped = &h.chat.of_kind(MessageKind::StepStopped)[0];
    assert_eq!(stopped.fact("put_back"), Some("c"));
}

#[tokio::test]
async fn a_step_older_than_an_approval_lasts_is_not_finished() {
    let h = restarted(
        &journal_cut_at_step_start().await,
        (Some(100), Some(0)),
        |_| {},
    );
    h.advance(Duration::from_secs(16 * 60)); // approvals last 15 minutes
    h.engine.resume().await;
    assert_eq!(h.backend.writes(), 0, "nothing written");
    stopped_because(&h, "step_too_old");
}

#[tokio::test]
async fn a_recent_step_whose_gates_pass_is_finished() {
    let h = restarted(
        &journal_cut_at_step_start().await,
        (Some(100), Some(50)),
        |_| {},
    );
    h.advance(Duration::from_secs(60));
    h.engine.resume().await;
    assert_eq!(h.weights(), weights(&[("a", 50), ("c", 50)]));
    let result = h.chat.of_kind(MessageKind::StepResult).pop().unwrap();
    assert!(is(
        &result,
        MessageKind::StepResult,
        &[("verified", "true")]
    ));
}
