//! Reading the bot's journal from outside: its records, a watch for one
//! record as it grows, `failover-bot audit verify`, and a summary for
//! failure messages.

use std::path::{Path, PathBuf};

use failover_bot::journal::{Entry, Record};
use failover_bot::notice::{Destination, Notice};

/// A journal record the kill can wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Started,
    Proposed,
    StepStarted,
    Changed,
    StepFinished,
    Finished,
}

/// The journal's complete records (a torn last line is left out).
pub fn records(journal: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Looks for a record in a growing journal, parsing only when it grew.
pub struct JournalWatch {
    pub path: PathBuf,
    pub length: Option<u64>,
}

impl JournalWatch {
    pub fn new(path: PathBuf) -> Self {
        Self { path, length: None }
    }

    pub fn find(&mut self, kind: Kind, step: usize) -> Option<Record> {
        let length = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if self.length == Some(length) {
            return None;
        }
        self.length = Some(length);
        records(&self.path).into_iter().find(|r| is(r, kind, step))
    }
}

pub fn is(record: &Record, kind: Kind, step: usize) -> bool {
    match (&record.entry, kind) {
        (Entry::Proposed { step: s, .. }, Kind::Proposed)
        | (Entry::StepStarted { step: s, .. }, Kind::StepStarted)
        | (Entry::Changed { step: s, .. }, Kind::Changed)
        | (Entry::StepFinished { step: s, .. }, Kind::StepFinished) => *s == step,
        (Entry::Started { .. }, Kind::Started) | (Entry::Finished { .. }, Kind::Finished) => true,
        _ => false,
    }
}

/// `failover-bot audit verify JOURNAL` exits 0.
pub fn audit_verifies(journal: &Path) -> Result<(), String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["audit", "verify"])
        .arg(journal)
        .output()
        .map_err(|e| format!("cannot run audit verify: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "audit verify exited {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

pub fn records_of(records: &[Record], kind: &str) -> usize {
    records.iter().filter(|r| r.entry.name() == kind).count()
}

pub fn journal_summary(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| {
            let detail = match &r.entry {
                Entry::Decided { step, state, .. } => format!(" step {step} {}", state.name()),
                Entry::Voted { step, by, .. } | Entry::Unvoted { step, by, .. } => {
                    format!(" step {step} by {by}")
                }
                Entry::Proposed { step, message, .. } => format!(" step {step} ts {}", message.ts),
                Entry::StepStarted { step, .. } | Entry::Changed { step, .. } => {
                    format!(" step {step}")
                }
                Entry::StepFinished { step, outcome, .. } => format!(" step {step} {outcome:?}"),
                Entry::Finished { outcome, .. } => format!(" {outcome:?}"),
                Entry::Say { to, notice } => format!(" {}", say_summary(to, notice)),
                Entry::Delivered { say } => format!(" {say}"),
                _ => String::new(),
            };
            format!("    {} {}{detail}", r.seq, r.entry.name())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A notice in a few words: where it goes, its kind and its facts.
fn say_summary(to: &Destination, notice: &Notice) -> String {
    let (what, at) = match to {
        Destination::Post { thread, .. } => (
            "post in",
            thread.as_ref().map_or("channel", |t| t.ts.as_str()),
        ),
        Destination::Update { at } => ("update", at.ts.as_str()),
        Destination::Upload { thread } => ("upload in", thread.ts.as_str()),
    };
    let facts: Vec<String> = notice
        .facts()
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!("{what} {at}: {} {}", notice.kind(), facts.join(" "))
}
