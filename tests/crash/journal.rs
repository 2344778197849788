//! Reading the bot's journal from outside: its records, a watch for one
//! record as it grows, `failover-bot audit verify`, and a summary for
//! failure messages.

use std::path::{Path, PathBuf};

use failover_bot::chat::Said;
use failover_bot::journal::{Entry, Record};

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

fn kind_name(entry: &Entry) -> &'static str {
    match entry {
        Entry::Command { .. } => "command",
        Entry::Answered { .. } => "answered",
        Entry::PlanPosting { .. } => "plan_posting",
        Entry::Say { .. } => "say",
        Entry::Delivered { .. } => "delivered",
        Entry::Started { .. } => "started",
        Entry::Proposed { .. } => "proposed",
        Entry::Decided { .. } => "decided",
        Entry::StepStarted { .. } => "step_started",
        Entry::Changed { .. } => "changed",
        Entry::StepFinished { .. } => "step_finished",
        Entry::Finished { .. } => "finished",
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
    records
        .iter()
        .filter(|r| kind_name(&r.entry) == kind)
        .count()
}

pub fn journal_summary(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| {
            let detail = match &r.entry {
                Entry::Decided { step, state, .. } => format!(" step {step} {}", state.label()),
                Entry::Proposed { step, message, .. } => format!(" step {step} ts {}", message.ts),
                Entry::StepStarted { step, .. } | Entry::Changed { step, .. } => {
                    format!(" step {step}")
                }
                Entry::StepFinished { step, outcome, .. } => format!(" step {step} {outcome:?}"),
                Entry::Finished { outcome, .. } => format!(" {outcome:?}"),
                Entry::Say { said } => format!(" {}", said_summary(said)),
                Entry::Delivered { say } => format!(" {say}"),
                _ => String::new(),
            };
            format!("    {} {}{detail}", r.seq, kind_name(&r.entry))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message in a few words: what it does, where, and its first words.
fn said_summary(said: &Said) -> String {
    let (what, at, text) = match said {
        Said::Post {
            thread, message, ..
        } => (
            "post in",
            thread.as_ref().map_or("channel", |t| t.ts.as_str()),
            &message.text,
        ),
        Said::Update { at, message } => ("update", at.ts.as_str(), &message.text),
    };
    let words: String = text.chars().take(50).collect();
    format!("{what} {at}: {words}")
}
