//! Ledger snapshots: every so many records the journal gets the ledger's
//! state, and start-up reads from the latest one instead of replaying the
//! whole history — losing nothing a restart needs.

mod support;

use std::process::Command;

use failover_bot::engine::Reaction;
use failover_bot::journal::ledger::{Ledger, HISTORY_KEPT};
use failover_bot::journal::sign::Tail;
use failover_bot::journal::{parse_line, verify_chain, Entry, Record};
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
"#;

/// Records between snapshots here: a few operations' worth.
const EVERY: usize = 25;

/// Operations finished before the restart.
const OPERATIONS: usize = 12;

fn is_snapshot(line: &str) -> bool {
    parse_line(line).is_ok_and(|r| matches!(r.entry, Entry::Snapshot { .. }))
}

fn records(lines: &[String]) -> Vec<Record> {
    lines.iter().map(|l| parse_line(l).unwrap()).collect()
}

/// `bob` reacts ✅ on the newest pending plan with delivery id `event`.
async fn approve_as_delivery(h: &Harness, event: &str) {
    let at = h.newest_pending().expect("a plan awaits approval");
    h.engine
        .handle_reaction(Reaction {
            user: "bob".into(),
            name: "white_check_mark".into(),
            message: at,
            added: true,
            event_id: Some(event.into()),
        })
        .await;
}

#[tokio::test]
async fn start_up_reads_from_the_latest_snapshot_and_loses_nothing() {
    let mut h = Harness::new(CONFIG);
    h.snapshot_every(EVERY);
    // The first approval's delivery id must still be known after the
    // restart, though snapshots come between.
    h.cmd("alice", "to b steps 100").await;
    approve_as_delivery(&h, "EvEarly").await;
    for i in 1..OPERATIONS {
        let target = if i % 2 == 0 { "b" } else { "a" };
        h.cmd("alice", &format!("to {target} steps 100")).await;
        h.approve("bob").await;
    }
    assert_eq!(h.weights(), weights(&[("a", 100), ("b", 0)]));
    h.cmd("alice", "to b steps 100").await;
    let history = h.engine.finished_operations();
    assert_eq!(history.len(), OPERATIONS);

    let lines = h.journal_lines();
    let snapshots = lines.iter().filter(|l| is_snapshot(l)).count();
    assert!(
        snapshots >= lines.len() / (EVERY + 1),
        "{snapshots} snapshots in {} records",
        lines.len()
    );
    // What start-up reads: from the latest snapshot on, not line 1.
    let tail = Tail::read_since_snapshot(&h.journal_path).unwrap();
    assert!(is_snapshot(&tail.lines[0]), "the tail starts at a snapshot");
    assert!(
        tail.lines.len() <= EVERY + 2,
        "start-up reads {} of {} records",
        tail.lines.len(),
        lines.len()
    );
    // Replaying from it gives the state a whole replay gives.
    let all = records(&lines);
    let from_snapshot = records(&tail.lines);
    assert_eq!(
        Ledger::replay(&from_snapshot).snapshot(HISTORY_KEPT),
        Ledger::replay(&all).snapshot(HISTORY_KEPT),
    );

    h.restart().await;
    assert_eq!(h.engine.finished_operations(), history, "history kept");
    // The delivery seen before the snapshots is still a duplicate.
    approve_as_delivery(&h, "EvEarly").await;
    assert!(
        h.newest_pending().is_some(),
        "a redelivery approves nothing"
    );
    assert_eq!(h.weights(), weights(&[("a", 100), ("b", 0)]));
    // The plan pending across the restart is approved and applied.
    h.approve("bob").await;
    assert_eq!(h.weights(), weights(&[("a", 0), ("b", 100)]));
    let finished = h.engine.finished_operations();
    assert_eq!(finished.len(), OPERATIONS + 1);
    assert_eq!(finished.last().unwrap().header.id, OPERATIONS as u64 + 1);

    let lines = h.journal_lines();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(verify_chain(&lines), Ok(()), "one chain through snapshots");
    let audit = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["audit", "verify"])
        .arg(&h.journal_path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{report}");
    for op in 1..=OPERATIONS + 1 {
        assert!(
            report.contains(&format!("\n#{op} ")),
            "audit lists #{op}:\n{report}"
        );
    }
}

#[tokio::test]
async fn a_snapshot_keeps_recent_history_and_the_last_weight_change() {
    let mut h = Harness::new(CONFIG);
    h.snapshot_every(EVERY);
    // One weight change, then more aborted operations than a snapshot keeps.
    h.cmd("alice", "to b steps 100").await;
    h.approve("bob").await;
    for _ in 0..HISTORY_KEPT + 5 {
        h.cmd("alice", "to a steps 100").await;
        h.cmd("alice", "abort").await;
    }
    h.restart().await;
    let kept = h.engine.finished_operations();
    let all = HISTORY_KEPT + 6;
    // The latest snapshot kept HISTORY_KEPT and the change; operations
    // finished after it are replayed on top.
    assert!(
        kept.len() > HISTORY_KEPT && kept.len() < all,
        "{} of {all} operations kept",
        kept.len()
    );
    let newest: Vec<u64> = kept[1..].iter().map(|f| f.header.id).collect();
    let expected: Vec<u64> = (all as u64 - newest.len() as u64 + 1..=all as u64).collect();
    assert_eq!(newest, expected, "the newest ones, in order");
    assert!(
        !kept[0].approvals.is_empty(),
        "the last weight change is kept"
    );
    // `rollback` still finds it.
    h.cmd("alice", "rollback").await;
    h.approve("bob").await;
    assert_eq!(h.weights(), weights(&[("a", 100), ("b", 0)]));
}
