//! The journal: an append-only file, one JSON record per line, each fsync'd
//! before the engine acts on it. It is both the audit trail and the state the
//! bot restarts from.
//!
//! Every record carries the SHA-256 of the line before it (`prev`), so an
//! edited or deleted line breaks the chain and [`verify_chain`] finds it.
//! A crash can leave a torn last line (no newline); it is cut off on open,
//! because the action it described was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ClusterResult, OpId, OperationHeader, OperationOutcome, StepOutcome};
use crate::approval::ApprovalState;
use crate::chat::MessageRef;
use crate::plan::{Plan, PlanHash};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// SHA-256 (hex) of the previous line; empty for the first record.
    pub prev: String,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A command as received, valid or not.
    Command {
        user: String,
        channel: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
        /// Already answered when journaled (help or a mistake, answered in
        /// Slack's acknowledgement).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        answered: bool,
    },
    /// A message about to be sent to the channel (its id is this record's
    /// `seq`); [`Entry::Delivered`] says it no longer needs sending.
    Say {
        said: crate::chat::Said,
    },
    /// Slack took the message of the `Say` record number `say`, or refused
    /// it for good: either way, a restart need not send it again.
    Delivered {
        say: u64,
    },
    /// The command delivered as `event` has had its answer (one that
    /// started an operation is answered by its `Started`). A command with
    /// neither was cut short by a restart: its author is told so.
    Answered {
        event: String,
    },
    Started {
        header: OperationHeader,
    },
    /// A step's plan is about to be posted (see
    /// [`crate::operation::OperationState::posting_plan`]).
    PlanPosting {
        op: OpId,
        step: usize,
    },
    /// A step's plan was shown in `message` and awaits approval.
    Proposed {
        op: OpId,
        step: usize,
        plan: Plan,
        message: MessageRef,
        expires_at: DateTime<Utc>,
        #[serde(default)]
        warnings: Vec<String>,
        #[serde(default)]
        versions: std::collections::BTreeMap<String, String>,
    },
    /// The approval of a step changed state.
    Decided {
        op: OpId,
        step: usize,
        plan: PlanHash,
        state: ApprovalState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    StepStarted {
        op: OpId,
        step: usize,
        plan: PlanHash,
    },
    /// Per-cluster results of the writes of a step (and of any restore).
    Changed {
        op: OpId,
        step: usize,
        results: Vec<ClusterResult>,
    },
    StepFinished {
        op: OpId,
        step: usize,
        outcome: StepOutcome,
        millis: u64,
    },
    Finished {
        op: OpId,
        outcome: OperationOutcome,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Another process has the journal open: two writers would fork the
    /// hash chain and the state.
    #[error("journal {path} is in use by another failover-bot process")]
    Locked { path: String },
    #[error("journal {path}, line {line}: not a journal record ({reason}); move the file aside to start empty")]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Where records go: a file in production, memory in the sandbox.
#[derive(Debug)]
pub struct Journal {
    file: Option<(File, PathBuf)>,
    next_seq: u64,
    last_hash: String,
}

impl Journal {
    /// A journal that keeps nothing across runs (the sandbox).
    pub fn in_memory() -> Self {
        Self {
            file: None,
            next_seq: 1,
            last_hash: String::new(),
        }
    }

    /// Opens (or creates) the journal at `path` and returns its records.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Record>), JournalError> {
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        // An exclusive lock for as long as this process runs (the kernel
        // drops it when the process dies, even by SIGKILL): one writer only,
        // also across replicas on a shared volume.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    path: path.display().to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
        let (records, good_len, last_hash) = read_records(&file, path)?;
        if file.metadata().map_err(io)?.len() > good_len {
            tracing::warn!(path = %path.display(), "cutting off a torn last journal line");
            file.set_len(good_len).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        let next_seq = records.last().map_or(1, |r| r.seq + 1);
        let journal = Journal {
            file: Some((file, path.to_owned())),
            next_seq,
            last_hash,
        };
        Ok((journal, records))
    }

    /// Appends one record and makes it durable before returning.
    pub fn append(&mut self, at: DateTime<Utc>, entry: Entry) -> Result<Record, JournalError> {
        let mut records = self.append_batch(at, vec![entry])?;
        Ok(records.remove(0))
    }

    /// Appends records in one write and one fsync: a crashed process leaves
    /// all of them or none (the kernel finishes a write to a file before it
    /// delivers SIGKILL; a power cut mid-write tears the tail, which `open`
    /// cuts off, losing only records never acknowledged).
    pub fn append_batch(
        &mut self,
        at: DateTime<Utc>,
        entries: Vec<Entry>,
    ) -> Result<Vec<Record>, JournalError> {
        let mut records = Vec::with_capacity(entries.len());
        let mut lines = String::new();
        let (mut seq, mut last_hash) = (self.next_seq, self.last_hash.clone());
        for entry in entries {
            let record = Record {
                seq,
                at,
                prev: last_hash,
                entry,
            };
            let line = serde_json::to_string(&record).map_err(|e| JournalError::Io {
                path: self.path(),
                source: std::io::Error::other(e),
            })?;
            last_hash = line_hash(&line);
            lines.push_str(&line);
            lines.push('\n');
            seq += 1;
            records.push(record);
        }
        if let Some((file, path)) = &mut self.file {
            let io = |source| JournalError::Io {
                path: path.display().to_string(),
                source,
            };
            file.write_all(lines.as_bytes()).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        self.next_seq = seq;
        self.last_hash = last_hash;
        Ok(records)
    }

    fn path(&self) -> String {
        self.file
            .as_ref()
            .map_or_else(|| "(memory)".into(), |(_, p)| p.display().to_string())
    }
}

fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// Reads all complete records; returns them, the byte length of the good
/// prefix, and the hash of the last good line.
fn read_records(file: &File, path: &Path) -> Result<(Vec<Record>, u64, String), JournalError> {
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut good_len = 0u64;
    let mut last_hash = String::new();
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|source| JournalError::Io {
                path: path.display().to_string(),
                source,
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        if !line.ends_with('\n') {
            // Torn write from a crash: never acknowledged, so dropped.
            break;
        }
        let text = line.trim_end_matches('\n');
        let record: Record = serde_json::from_str(text).map_err(|e| JournalError::Corrupt {
            path: path.display().to_string(),
            line: number,
            reason: e.to_string(),
        })?;
        records.push(record);
        last_hash = line_hash(text);
        good_len += read as u64;
    }
    Ok((records, good_len, last_hash))
}

/// A break in the hash chain: the line whose `prev` does not match.
#[derive(Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub line: usize,
}

/// Checks that every line names the hash of the line before it.
pub fn verify_chain(lines: &[&str]) -> Result<(), ChainBreak> {
    let mut expected = String::new();
    for (i, line) in lines.iter().enumerate() {
        let prev = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("prev")?.as_str().map(str::to_owned));
        if prev.as_deref() != Some(expected.as_str()) {
            return Err(ChainBreak { line: i + 1 });
        }
        expected = line_hash(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(text: &str) -> Entry {
        Entry::Command {
            user: "alice".into(),
            channel: "C1".into(),
            text: text.into(),
            event: None,
            answered: false,
        }
    }

    #[test]
    fn appends_reopen_and_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut journal, records) = Journal::open(&path).unwrap();
        assert!(records.is_empty());
        journal.append(Utc::now(), command("status")).unwrap();
        journal.append(Utc::now(), command("help")).unwrap();
        drop(journal);

        let (mut journal, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].seq, 2);
        journal.append(Utc::now(), command("history")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(verify_chain(&lines), Ok(()));

        let edited = lines[1].replace("help", "hack");
        let tampered = [lines[0], edited.as_str(), lines[2]];
        assert_eq!(verify_chain(&tampered), Err(ChainBreak { line: 3 }));
    }

    #[test]
    fn a_batch_is_chained_like_single_appends_and_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.append(Utc::now(), command("status")).unwrap();
        let batch = vec![command("shift 50"), command("help"), command("history")];
        let written = journal.append_batch(Utc::now(), batch).unwrap();
        assert_eq!(written.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3, 4]);
        journal.append(Utc::now(), command("abort")).unwrap();
        drop(journal);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(verify_chain(&lines), Ok(()));
        let (_, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[1..4], written[..]);
    }

    #[test]
    fn torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.append(Utc::now(), command("status")).unwrap();
        drop(journal);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"seq\":2,\"at\":").unwrap();
        drop(file);

        let (mut journal, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 1);
        journal.append(Utc::now(), command("help")).unwrap();
        drop(journal);
        let (_, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].seq, 2);
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_has_it_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (first, _) = Journal::open(&path).unwrap();
        let err = Journal::open(&path).unwrap_err();
        assert!(matches!(err, JournalError::Locked { .. }), "{err}");
        drop(first);
        assert!(Journal::open(&path).is_ok(), "free again once closed");
    }

    #[test]
    fn corrupt_middle_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, "not json\n").unwrap();
        let err = Journal::open(&path).unwrap_err();
        assert!(
            matches!(err, JournalError::Corrupt { line: 1, .. }),
            "{err}"
        );
    }
}
