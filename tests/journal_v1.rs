//! A journal written by the release before format versions (0.1.0, commit
//! 49eaf19) still opens, resumes and passes `audit verify`.
//!
//! `tests/fixtures/journal-v1.jsonl` was written by that release's own
//! engine (its test harness, frozen clock at 2026-11-25 12:00 UTC) driving
//! 13 operations: a shift, a two-step failover approved partly through a
//! user group, a rejection, an expiry, a withdrawal, an abort, a refused
//! shift and a break-glass one, a write failure put back, a superseded plan
//! and a write conflict, a rollback, an add and a remove, and a failover
//! left awaiting its second step's approval across two restarts (one with a
//! command and one with a message a crash cut short). Its records are format
//! 1: no `"v"`, sentences where format 2 keeps facts.
//!
//! The clusters the journal ends with: blue 50, green 50, grey unrouted.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::chat::MessageKind;
use failover_bot::config::Config;
use failover_bot::journal::{verify_chain, Entry, Journal, FORMAT_VERSION};
use failover_bot::messages::RESENT_NOTE;
use failover_bot::operation::{OperationOutcome, Phase, StopCause};
use support::chat::is;
use support::{weights, Harness};

/// The config the fixture was written with.
const CONFIG: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [alice, bob, S0SRE]
  expires_after: 15m
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 50}
      - {name: k8s-green.dev.example.com, context: green, weight: 50}
      - {name: k8s-grey.dev.example.com, context: grey}
"#;

const BLUE: &str = "k8s-blue.dev.example.com";
const GREEN: &str = "k8s-green.dev.example.com";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1.jsonl")
}

fn fixture_lines() -> Vec<String> {
    std::fs::read_to_string(fixture())
        .expect("the fixture is readable")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The fixture's first `lines` lines (all when `None`), in a fresh file:
/// the journal as a crash after that line left it.
fn copy_of(lines: Option<usize>) -> (tempfile::TempDir, PathBuf) {
    let all = fixture_lines();
    let kept = &all[..lines.unwrap_or(all.len())];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let text: String = kept.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// The bot restarting on the fixture (or its first `lines` lines), with the
/// clusters as the journal left them, 16 minutes after it began.
async fn restarted_on(lines: Option<usize>) -> Harness {
    let (dir, path) = copy_of(lines);
    let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
    let memory = Arc::new(MemoryBackend::from_config(&config));
    as_the_journal_left_them(&memory);
    let h = Harness::assemble(config, memory, path, Some(dir));
    h.advance(Duration::from_secs(16 * 60));
    h.engine.resume().await;
    h
}

/// The in-memory clusters with the weights and object versions the
/// fixture's last plan was made from (blue 50 at version 10, green 50 at
/// 12, grey unrouted at 3): each edit bumps a version, as a write to a
/// Kubernetes object does.
fn as_the_journal_left_them(memory: &MemoryBackend) {
    for (cluster, weight, version) in [
        (BLUE, Some(50), 10),
        (GREEN, Some(50), 12),
        ("k8s-grey.dev.example.com", None, 3),
    ] {
        for _ in 1..version {
            memory.edit_weight(cluster, weight);
        }
    }
}

fn audit(path: &Path) -> (Option<i32>, String) {
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

#[test]
fn the_fixture_is_format_1_and_every_record_reads() {
    let lines = fixture_lines();
    assert_eq!(lines.len(), 228);
    assert!(
        lines.iter().all(|l| !l.contains("\"v\":")),
        "format 1 records carry no version"
    );
    let (_dir, path) = copy_of(None);
    let (_, records) = Journal::open(&path).expect("a format 1 journal opens");
    assert_eq!(records.len(), 228);
    assert!(records.iter().all(|r| r.v == 1), "read as its own version");
    let says = records
        .iter()
        .filter(|r| matches!(r.entry, Entry::Say { .. }))
        .count();
    assert_eq!(says, 49);
}

#[test]
fn the_fixture_passes_audit_verify_with_every_operation() {
    let (code, out) = audit(&fixture());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("hash chain intact over 228 records"), "{out}");
    for line in [
        "#1 2026-11-25 12:00 UTC dev · `/failover shift 50` requested by alice · approved step 1 by bob · completed",
        "#2 2026-11-25 12:00 UTC dev · `/failover to blue steps 80,100` requested by alice · approved step 1 by bob, step 2 by dave · completed",
        "#3 2026-11-25 12:00 UTC dev · `/failover shift 50` requested by alice · no step approved · rejected",
        "#13 2026-11-25 12:16 UTC dev · `/failover to green steps 50,100` requested by alice · approved step 1 by bob · running",
    ] {
        assert!(out.contains(line), "{line}\nin:\n{out}");
    }
}

#[tokio::test]
async fn the_fixture_resumes_its_pending_approval_and_finishes_the_failover() {
    let h = restarted_on(None).await;
    let op = h
        .engine
        .active_operation("dev")
        .expect("#13 is still running");
    assert_eq!((op.header.id, op.step), (13, 2));
    assert!(matches!(op.phase, Phase::AwaitingApproval(_)));
    assert!(h.chat.of_kind(MessageKind::Resuming).len() == 1);
    let history = h.engine.finished_operations();
    assert_eq!(history.len(), 12, "every finished operation is known");
    let outcomes: Vec<&str> = history.iter().map(|f| f.outcome.word()).collect();
    assert_eq!(
        outcomes,
        [
            "completed",
            "completed",
            "rejected",
            "expired",
            "withdrawn",
            "aborted",
            "completed",
            "failed",
            "completed",
            "completed",
            "completed",
            "completed"
        ]
    );
    // Format 1 kept the reason a step failed as a sentence: it is shown
    // as it was.
    let OperationOutcome::Failed {
        cause: StopCause::Legacy { reason },
    } = &history[7].outcome
    else {
        panic!("#8 failed: {:?}", history[7].outcome);
    };
    assert!(reason.contains("injected failure"), "{reason}");

    // The plan shown before the restarts is approved after them.
    h.approve("bob").await;
    assert_eq!(h.weights(), weights(&[(BLUE, 0), (GREEN, 100)]));
    assert!(h.engine.active_operation("dev").is_none());
    let end = h.chat.of_kind(MessageKind::Finished).pop().unwrap();
    assert!(is(
        &end,
        MessageKind::Finished,
        &[("op", "13"), ("outcome", "completed")]
    ));
    // The next operation continues the numbering.
    h.cmd("alice", "rollback").await;
    assert_eq!(h.chat.plans().pop().unwrap().1.fact("op"), Some("14"));
}

#[tokio::test]
async fn current_records_appended_to_a_format_1_journal_keep_one_chain() {
    let h = restarted_on(None).await;
    h.approve("bob").await;
    let lines = h.journal_lines();
    assert!(lines.len() > 228);
    let current = format!("{{\"v\":{FORMAT_VERSION},");
    assert!(lines[228..].iter().all(|l| l.starts_with(&current)));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(verify_chain(&refs), Ok(()));
    let (code, out) = audit(&h.journal_path);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("`/failover to green steps 50,100` requested by alice · approved step 1 by bob, step 2 by bob · completed"),
        "{out}"
    );
}

/// Cut after line 225, the journal holds a message a crash cut off (format
/// 1's rendered text): the next start sends it, marked, as it was worded.
#[tokio::test]
async fn a_format_1_message_the_crash_cut_off_is_sent_as_it_was_worded() {
    let h = restarted_on(Some(225)).await;
    let legacy = h.chat.of_kind(MessageKind::Legacy);
    assert_eq!(legacy.len(), 1, "{}", h.chat.all_text());
    assert_eq!(
        legacy[0].text,
        format!("a message a crash cut off\n{RESENT_NOTE}")
    );
}

/// Cut after line 221, the journal holds a command a crash cut short.
#[tokio::test]
async fn a_format_1_command_cut_short_is_answered() {
    let h = restarted_on(Some(221)).await;
    let told = h.chat.ephemerals("carol");
    assert_eq!(told.len(), 1, "{}", h.chat.all_text());
    assert_eq!(told[0].kind, MessageKind::CommandCutShort);
    assert!(told[0].text.contains("`/failover status`"), "{told:?}");
}
