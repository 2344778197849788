//! Crash at every point: a reference run records the journal and every state
//! the clusters pass through. Then, for every journal record boundary — and
//! for every backend write between two records — a new engine starts from the
//! journal cut there and the clusters as they were at that moment, resumes,
//! and the approvers keep approving. Whatever the crash point:
//! - no cluster ever holds a weight outside the operation's plans,
//! - the environment is never all zero,
//! - the operation completes (or never started, if the crash came before
//!   its first record),
//! - the journal stays readable and its hash chain intact.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::chat::MessageKind;
use failover_bot::config::Config;
use failover_bot::journal::verify_chain;
use failover_bot::operation::OperationOutcome;
use failover_bot::plan::Weights;
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
      - {name: b, context: b, weight: 0}
      - {name: c, context: c, weight: 0}
"#;

/// Every weight each cluster may hold during `to c steps 50,100`.
fn allowed() -> BTreeMap<&'static str, Vec<u8>> {
    [
        ("a", vec![100, 50, 0]),
        ("b", vec![0]),
        ("c", vec![0, 50, 100]),
    ]
    .into()
}

fn initial() -> Weights {
    weights(&[("a", 100), ("b", 0), ("c", 0)])
}

fn target() -> Weights {
    weights(&[("a", 0), ("b", 0), ("c", 100)])
}

async fn run_script(h: &Harness) {
    h.cmd("alice", "to c steps 50,100").await;
    approve_until_done(h).await;
}

async fn approve_until_done(h: &Harness) {
    for _ in 0..6 {
        if h.newest_pending().is_none() {
            break;
        }
        h.approve("bob").await;
    }
}

fn check_states(h: &Harness, label: &str) {
    let allowed = allowed();
    for seen in h.backend.trail.lock().unwrap().iter() {
        assert!(!seen.weights.all_zero(), "{label}: all zero: {seen:?}");
        for (cluster, weight) in seen.weights.iter() {
            assert!(
                allowed[cluster.as_str()].contains(&weight),
                "{label}: {cluster} at {weight}, outside every plan"
            );
        }
    }
}

/// The clusters' states while the journal had exactly `k` lines.
fn states_at(trail: &[support::Observed], k: usize) -> Vec<Weights> {
    let mut states = vec![trail
        .iter()
        .rev()
        .find(|o| o.journal_lines < k)
        .map_or_else(initial, |o| o.weights.clone())];
    states.extend(
        trail
            .iter()
            .filter(|o| o.journal_lines == k)
            .map(|o| o.weights.clone()),
    );
    states.dedup();
    states
}

#[tokio::test]
async fn crash_at_every_record_boundary_and_write_then_resume() {
    let reference = Harness::new(CONFIG);
    run_script(&reference).await;
    assert_eq!(reference.weights(), target(), "the reference run completes");
    let lines = reference.journal_lines();
    let trail = reference.backend.trail.lock().unwrap().clone();
    assert!(lines.len() > 10, "a real journal: {} lines", lines.len());

    let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
    let mut crash_points = 0;
    for k in 0..=lines.len() {
        for state in states_at(&trail, k) {
            crash_points += 1;
            let label = format!("crash after line {k} with clusters {state:?}");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("journal.jsonl");
            let prefix: String = lines[..k].iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(&path, prefix).unwrap();
            let memory = Arc::new(MemoryBackend::from_config(&config));
            for (cluster, weight) in state.iter() {
                memory.edit_weight(cluster, Some(weight));
            }

            let h = Harness::assemble(config.clone(), memory, path.clone(), None);
            h.engine.resume().await;
            approve_until_done(&h).await;

            check_states(&h, &label);
            let started = lines[..k]
                .iter()
                .any(|l| l.contains("\"type\":\"started\""));
            if started {
                assert_eq!(h.weights(), target(), "{label}");
                let finished = h.engine.finished_operations();
                assert_eq!(finished.len(), 1, "{label}");
                assert_eq!(finished[0].outcome, OperationOutcome::Completed, "{label}");
            } else {
                assert_eq!(h.weights(), initial(), "{label}: nothing started");
                assert!(h.engine.active_operation("dev").is_none(), "{label}");
            }
            assert!(h.engine.active_operation("dev").is_none(), "{label}");

            let text = std::fs::read_to_string(&path).unwrap();
            let all: Vec<&str> = text.lines().collect();
            assert_eq!(verify_chain(&all), Ok(()), "{label}: chain");
            // The engine holds the journal's lock until it is gone, as a
            // process does until it exits.
            drop(h);
            let (_, records) = support::reopen_journal(&path);
            drop(dir);
            assert!(
                records.windows(2).all(|w| w[1].seq == w[0].seq + 1),
                "{label}: sequence numbers"
            );
        }
    }
    assert!(crash_points > lines.len(), "{crash_points} crash points");
    eprintln!(
        "crash recovery: {crash_points} crash points over a {}-record journal and {} backend observations",
        lines.len(),
        trail.len()
    );
}

#[tokio::test]
async fn a_step_interrupted_after_someone_else_changed_a_cluster_stops_and_says_so() {
    let reference = Harness::new(CONFIG);
    reference.cmd("alice", "to c steps 50,100").await;
    reference.approve("bob").await;
    let lines = reference.journal_lines();
    let started = lines
        .iter()
        .position(|l| l.contains("\"type\":\"step_started\""))
        .unwrap();

    let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let prefix: String = lines[..=started].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, prefix).unwrap();
    let memory = Arc::new(MemoryBackend::from_config(&config));
    memory.edit_weight("c", Some(7)); // neither before (0) nor after (50)

    let h = Harness::assemble(config, memory, path, Some(dir));
    h.engine.resume().await;
    assert_eq!(h.backend.writes(), 0, "nothing more is written");
    assert_eq!(
        h.chat.of_kind(MessageKind::Resuming).len(),
        1,
        "{}",
        h.chat.all_text()
    );
    let stopped = h.chat.of_kind(MessageKind::StepStopped);
    assert_eq!(stopped.len(), 1, "{}", h.chat.all_text());
    let journal = h.journal_lines().join("\n");
    assert!(
        journal.contains(
            r#""refusal":"unexpected_weight","cluster":"c","found":7,"before":0,"after":50"#
        ),
        "the journal has why: {journal}"
    );
    let finished = h.engine.finished_operations();
    assert!(matches!(
        finished[0].outcome,
        OperationOutcome::Failed { .. }
    ));
}
