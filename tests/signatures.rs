//! Tamper evidence (issue 14, item 5): the bot signs every journal record
//! with a key from its Secret; `audit verify --public-key` checks them
//! with the public key only; a record someone appended without the key
//! makes the bot refuse weight changes, naming the line, while it still
//! answers `status` and `history`; the channel anchors the chain
//! (`--expect-head`); keys rotate, and a lost key is replaced by a new
//! signed chain. Engine tests run on a real journal file; `audit` and
//! `keys` are the real binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use failover_bot::approval::ApprovalState;
use failover_bot::chat::MessageKind;
use failover_bot::config::Config;
use failover_bot::journal::sign::Signer;
use failover_bot::journal::{line_hash, Entry};
use failover_bot::operation::Phase;
use support::bot::reopen_journal;
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
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

const BLUE: &str = "k8s-blue.dev.example.com";
const GREEN: &str = "k8s-green.dev.example.com";

fn bot() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_failover-bot"))
}

/// Runs the binary; its exit code and what it printed.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(bot()).args(args).output().unwrap();
    let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), said)
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A new key, its seed and its public key each in a file of `dir`.
fn key_files(dir: &Path, name: &str) -> (Signer, PathBuf, PathBuf) {
    let signer = Signer::generate().unwrap();
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&secret, signer.secret_hex()).unwrap();
    std::fs::write(&public, signer.public().to_string()).unwrap();
    (signer, secret, public)
}

fn audit(journal: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["audit", "verify", path_str(journal)];
    args.extend_from_slice(extra);
    run(&args)
}

/// A signing bot that ran one whole shift (approved by bob) and has a
/// second one awaiting approval.
async fn signed_bot(signer: Signer) -> Harness {
    let mut h = Harness::new(CONFIG);
    h.restart_signing(signer).await;
    h.cmd("alice", "shift 50 to green").await;
    h.approve("bob").await;
    assert_eq!(h.weights(), weights(&[(BLUE, 50), (GREEN, 50)]));
    h.cmd("alice", "shift 100 to green").await;
    h
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_record_a_signing_bot_writes_verifies_with_the_public_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _, public) = key_files(dir.path(), "bot");
    let h = signed_bot(signer).await;
    let all = lines(&h.journal_path);
    assert!(all[0].contains("\"type\":\"checkpoint\""), "{}", all[0]);
    assert!(all
        .iter()
        .all(|l| l.ends_with("\"}") && l.contains(",\"sig\":\"")));
    let (code, said) = audit(&h.journal_path, &["--public-key", path_str(&public)]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("✓ signatures: {} records signed", all.len())),
        "{said}"
    );

    // Another key is not the one in force.
    let (_, _, stranger) = key_files(dir.path(), "stranger");
    let (code, said) = audit(&h.journal_path, &["--public-key", path_str(&stranger)]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("is signed with key"), "{said}");
}

#[tokio::test]
async fn an_appended_decision_without_a_valid_signature_is_refused_and_its_line_named() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _, public) = key_files(dir.path(), "bot");
    let mut h = signed_bot(signer.clone()).await;
    let op = h
        .engine
        .active_operation("dev")
        .expect("an operation awaits approval");
    let (op, step, plan) = match &op.phase {
        Phase::AwaitingApproval(shown) => (op.header.id, op.step, shown.plan.hash.clone()),
        other => panic!("{other:?}"),
    };
    // Someone with write access to the journal, but not the key, approves
    // the plan by appending a well-chained, unsigned record.
    let forged_line = lines(&h.journal_path).len() + 1;
    h.restart_after(Entry::Decided {
        op,
        step,
        plan,
        state: ApprovalState::Approved {
            by: "bob".into(),
            at: support::bot::start_time(),
        },
        event: None,
    })
    .await;

    assert_eq!(
        h.weights(),
        weights(&[(BLUE, 50), (GREEN, 50)]),
        "the forged approval moved nothing"
    );
    let stopped = h
        .chat
        .of_kind(MessageKind::Finished)
        .pop()
        .expect("the operation stops, and the thread is told");
    assert_eq!(
        stopped.fact("refusal"),
        Some("journal_untrusted"),
        "{stopped:?}"
    );
    assert!(
        stopped
            .text
            .contains(&format!("journal line {forged_line} ")),
        "{}",
        stopped.text
    );

    h.cmd("carol", "status").await;
    h.cmd("carol", "history").await;
    assert!(!h.chat.of_kind(MessageKind::Status).is_empty());
    assert!(!h.chat.of_kind(MessageKind::History).is_empty());
    h.cmd("alice", "shift 10 to green").await;
    let refused = h.chat.ephemerals("alice");
    assert_eq!(
        refused.last().and_then(|m| m.fact("refusal")),
        Some("journal_untrusted"),
        "{refused:?}"
    );

    let (code, said) = audit(&h.journal_path, &["--public-key", path_str(&public)]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!("journal line {forged_line}: no signature")),
        "{said}"
    );
}

#[tokio::test]
async fn a_journal_from_the_previous_release_opens_under_a_checkpoint_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _, public) = key_files(dir.path(), "bot");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1.jsonl");
    let path = dir.path().join("journal.jsonl");
    std::fs::copy(&fixture, &path).unwrap();
    let old = lines(&path).len();
    let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
    let memory = Arc::new(failover_bot::backend::memory::MemoryBackend::from_config(
        &config,
    ));
    let mut h = Harness::assemble(config, memory, path.clone(), None);
    h.restart_signing(signer).await;
    let now = lines(&path);
    assert_eq!(
        &now[..old],
        &lines(&fixture)[..],
        "the old records stay as they were"
    );
    assert!(now[old].contains("\"type\":\"checkpoint\""), "{}", now[old]);
    let (code, said) = audit(&path, &["--public-key", path_str(&public)]);
    assert_eq!(code, Some(0), "{said}");
}

#[tokio::test]
async fn the_channel_anchors_the_chain_and_audit_checks_it_passes_through() {
    let h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50 to green").await;
    h.approve("bob").await;
    let finished = h.chat.of_kind(MessageKind::Finished).pop().unwrap();
    let anchor = finished
        .fact("anchor")
        .expect("the last message anchors")
        .to_owned();
    assert!(anchor.len() >= 16, "{anchor}");
    let all = lines(&h.journal_path);
    let finishing = all
        .iter()
        .find(|l| l.contains("\"type\":\"finished\""))
        .unwrap();
    assert!(line_hash(finishing).starts_with(&anchor));
    let (code, said) = audit(&h.journal_path, &["--expect-head", &anchor]);
    assert_eq!(code, Some(0), "{said}");

    // The journal rewritten from that record on (chain recomputed, as one
    // without signatures can be): the channel's anchor no longer matches.
    let dir = tempfile::tempdir().unwrap();
    let rewritten = dir.path().join("journal.jsonl");
    let mut out = Vec::new();
    let mut prev = String::new();
    for line in &all {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        value["prev"] = serde_json::Value::String(prev.clone());
        if value["type"] == "finished" {
            value["outcome"]["outcome"] = serde_json::Value::String("aborted".into());
            value["outcome"]["by"] = serde_json::Value::String("bob".into());
        }
        let text = serde_json::to_string(&value).unwrap();
        prev = line_hash(&text);
        out.push(text);
    }
    std::fs::write(&rewritten, out.join("\n") + "\n").unwrap();
    let (code, said) = audit(&rewritten, &[]);
    assert_eq!(code, Some(0), "the chain alone cannot tell: {said}");
    let (code, said) = audit(&rewritten, &["--expect-head", &anchor]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no record has hash"), "{said}");
}

#[tokio::test]
async fn keys_rotate_to_a_new_key_and_a_lost_key_starts_a_new_chain_told_in_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k1_secret, k1_public) = key_files(dir.path(), "k1");
    let (_, k2_secret, k2_public) = key_files(dir.path(), "k2");
    let (k3, k3_secret, k3_public) = key_files(dir.path(), "k3");
    let mut h = signed_bot(k1).await;
    let journal = h.journal_path.clone();
    let release = |h: &mut Harness| {
        h.engine = support::bot::Builder::new(Arc::new(Config::from_yaml(CONFIG).unwrap()))
            .memory_journal()
            .build();
    };
    release(&mut h);

    let (code, said) = run(&[
        "keys",
        "rotate",
        "--journal",
        path_str(&journal),
        "--key",
        path_str(&k1_secret),
        "--new-key",
        path_str(&k2_secret),
    ]);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(
        audit(&journal, &["--public-key", path_str(&k2_public)]).0,
        Some(0)
    );
    assert_eq!(
        audit(&journal, &["--public-key", path_str(&k1_public)]).0,
        Some(1)
    );

    // k2 is lost: a new chain under k3, anchored on the head.
    let head = reopen_journal(&journal).0.head().to_owned();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let (code, said) = run(&[
        "keys",
        "rekey",
        "--journal",
        path_str(&journal),
        "--new-key",
        path_str(&k3_secret),
        "--config",
        path_str(&config),
        "--reason",
        "the Secret was deleted",
    ]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains(&head), "{said}");
    let (code, said) = audit(&journal, &["--public-key", path_str(&k3_public)]);
    assert_eq!(code, Some(0), "{said}");

    // The bot, started with k3, tells the channel.
    h.restart_signing(k3).await;
    let told = h.chat.of_kind(MessageKind::Rekeyed);
    assert_eq!(told.len(), 1, "{}", h.chat.all_text());
    assert!(told[0].text.contains("the Secret was deleted"));
    assert_eq!(
        audit(&journal, &["--public-key", path_str(&k3_public)]).0,
        Some(0)
    );
}

#[tokio::test]
async fn a_decision_naming_another_plan_or_step_is_not_taken() {
    let mut h = Harness::new(CONFIG);
    h.cmd("alice", "shift 50 to green").await;
    let (op, step) = h
        .engine
        .active_operation("dev")
        .map(|o| (o.header.id, o.step))
        .unwrap();
    let approved = ApprovalState::Approved {
        by: "bob".into(),
        at: support::bot::start_time(),
    };
    let other_plan = failover_bot::plan::Plan::new(
        failover_bot::plan::PlanScope {
            env: "dev".into(),
            operation: op,
            step,
        },
        failover_bot::plan::Change::SetWeights,
        weights(&[(BLUE, 100), (GREEN, 0)]),
        weights(&[(BLUE, 0), (GREEN, 100)]),
    )
    .unwrap();
    h.restart_after(Entry::Decided {
        op,
        step,
        plan: other_plan.hash.clone(),
        state: approved.clone(),
        event: None,
    })
    .await;
    let shown = h.engine.active_operation("dev").unwrap().phase;
    assert!(matches!(shown, Phase::AwaitingApproval(_)), "{shown:?}");
    let Phase::AwaitingApproval(shown) = shown else {
        unreachable!()
    };
    h.restart_after(Entry::Decided {
        op,
        step: step + 1,
        plan: shown.plan.hash.clone(),
        state: approved,
        event: None,
    })
    .await;
    let phase = h.engine.active_operation("dev").unwrap().phase;
    assert!(matches!(phase, Phase::AwaitingApproval(_)), "{phase:?}");
    assert_eq!(h.weights(), weights(&[(BLUE, 100), (GREEN, 0)]));
}
