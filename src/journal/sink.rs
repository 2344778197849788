//! A journal whose lines something else keeps: [`LineSink`]. The journal
//! still makes the records, their sequence numbers and the hash chain; the
//! sink only stores the lines, in order, all of a batch or none. The
//! Kubernetes journal (`crate::store::journal`) is one: its lines go into
//! JournalSegment objects in the home cluster.

use super::{line_hash, parse_line, JournalError, Record};

/// Stores a journal's lines durably, in order, one batch at a time.
pub trait LineSink: Send + std::fmt::Debug {
    /// Stores `lines` right after the lines stored before, all or none;
    /// `Ok` only once they are durable. An error means the engine must not
    /// act on them. `snapshot`: the first line is a ledger snapshot, which
    /// start-up may read from (`crate::store::Batch::checkpoint`).
    fn append(&mut self, lines: &[String], snapshot: bool) -> Result<(), SinkError>;

    /// Where the lines go, for messages (`kube:NAMESPACE`).
    fn name(&self) -> String;
}

/// Whether this process may still act, asked before every append: every
/// external action is preceded by a record, so a process refused here acts
/// on nothing more (the leader's acting deadline, `crate::leader`).
pub trait AppendGuard: Send + Sync + std::fmt::Debug {
    /// `Err(why)` once this process must not act.
    fn may_append(&self) -> Result<(), String>;
}

/// Why a sink did not store a batch.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct SinkError {
    pub reason: String,
}

/// The lines a sink already holds, read back as records: the records, the
/// sequence number of the next one and the hash the next one chains to.
pub(super) struct Replayed {
    pub records: Vec<Record>,
    pub next_seq: u64,
    pub last_hash: String,
}

/// Reads `lines` (stored after a line whose hash is `prev_hash`, empty at
/// the start) as records; `name` says where, for errors.
pub(super) fn replay(
    name: &str,
    prev_hash: &str,
    lines: &[String],
) -> Result<Replayed, JournalError> {
    let corrupt = |line: usize, reason: String| JournalError::Corrupt {
        path: name.to_owned(),
        line,
        reason,
    };
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let record = parse_line(line).map_err(|e| corrupt(i + 1, e.to_string()))?;
        records.push(record);
    }
    if records.is_empty() && !prev_hash.is_empty() {
        // Older lines were archived and none is left to continue from: the
        // next sequence number is unknown.
        return Err(corrupt(0, "no record after the archived ones".into()));
    }
    Ok(Replayed {
        next_seq: records.last().map_or(1, |r| r.seq + 1),
        last_hash: lines
            .last()
            .map_or_else(|| prev_hash.to_owned(), |line| line_hash(line)),
        records,
    })
}
