//! `failover-bot audit verify JOURNAL [--public-key FILE] [--expect-head
//! HASH]`: checks the journal's hash chain (and, given the public key, every
//! record's signature), that the chain passes through the record a
//! finished operation's thread quoted, and lists who requested and who
//! approved every weight change.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::journal::ledger::Ledger;
use crate::journal::sign::{verify_lines, PublicKey};
use crate::journal::{line_hash, parse_line, verify_chain};
use crate::notice::ANCHOR_DIGITS;

pub fn verify(path: &Path, public_key: Option<&Path>, expect_head: Option<&str>) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("failover-bot: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    if let Err(brk) = verify_chain(&lines) {
        println!("{}", broken(path, brk.line));
        return ExitCode::FAILURE;
    }
    let signed = match public_key.map(PublicKey::from_file) {
        None => None,
        Some(Err(e)) => {
            eprintln!("failover-bot: --public-key: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(key)) => match verify_lines(&lines, Some(&key)) {
            Ok(signatures) => Some(signatures.signed),
            Err(problem) => {
                println!("✗ {}: {problem}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(head) = expect_head {
        if let Err(why) = passes_through(&lines, head) {
            println!("✗ {}: {why}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match parse_line(line) {
            Ok(r) => records.push(r),
            Err(e) => {
                println!("{}", unreadable(path, i + 1, &e.to_string()));
                return ExitCode::FAILURE;
            }
        }
    }
    let ledger = Ledger::replay_history(&records);
    println!("{}", report(path, records.len(), &ledger));
    if let Some(signed) = signed {
        println!("✓ signatures: {signed} records signed, every one since the first checkpoint");
    }
    if let Some(head) = expect_head {
        println!("✓ the chain passes through {head}");
    }
    ExitCode::SUCCESS
}

/// The chain passes through a line whose hash starts with `head` (at
/// least [`ANCHOR_DIGITS`] hex digits, as the channel quotes them).
fn passes_through(lines: &[&str], head: &str) -> Result<(), String> {
    let head = head.trim().to_ascii_lowercase();
    if head.len() < ANCHOR_DIGITS || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "--expect-head takes at least {ANCHOR_DIGITS} hex digits, got `{head}`"
        ));
    }
    if lines.iter().any(|line| line_hash(line).starts_with(&head)) {
        Ok(())
    } else {
        Err(format!(
            "no record has hash {head}…: the journal is not the one the channel anchored (records were rewritten or removed)"
        ))
    }
}

/// `failover-bot audit verify`: the chain is broken at `line`.
fn broken(path: &Path, line: usize) -> String {
    format!(
        "✗ {}: record {line} does not follow the one before it — a record was edited, inserted or deleted at or before line {line}",
        path.display()
    )
}

fn unreadable(path: &Path, line: usize, reason: &str) -> String {
    format!(
        "✗ {}: line {line} is not a journal record: {reason}",
        path.display()
    )
}

/// Who asked for and who approved every weight change, oldest first.
fn report(path: &Path, records: usize, ledger: &Ledger) -> String {
    let mut out = format!(
        "✓ {}: hash chain intact over {records} records",
        path.display()
    );
    let running = ledger
        .active
        .values()
        .map(|op| (&op.header, &op.approvals, "running"));
    let finished = ledger
        .finished
        .iter()
        .map(|f| (&f.header, &f.approvals, f.outcome.word()));
    let mut operations: Vec<_> = finished.chain(running).collect();
    operations.sort_by_key(|(header, _, _)| header.id);
    for (header, approvals, outcome) in operations {
        let approved: Vec<String> = approvals
            .iter()
            .map(|a| format!("step {} by {}", a.step, a.by))
            .collect();
        let approved = if approved.is_empty() {
            "no step approved".to_owned()
        } else {
            format!("approved {}", approved.join(", "))
        };
        let _ = write!(
            out,
            "\n#{} {} {} · `/failover {}` requested by {} · {approved} · {outcome}",
            header.id,
            header.started_at.format("%Y-%m-%d %H:%M UTC"),
            header.env,
            header.command.trim().trim_start_matches("/failover").trim(),
            header.requester,
        );
    }
    out
}
