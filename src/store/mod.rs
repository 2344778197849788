//! Where the journal's lines are kept: [`LineStore`], below the record
//! level. A store keeps lines in order, appends batches of them atomically
//! and durably, and lets exactly one writer append at a time. It knows
//! nothing of records: the journal above it turns records into lines (each
//! carrying the SHA-256 of the line before it) and back.
//!
//! - [`memory`]: in this process only (the sandbox, engine unit tests).
//! - [`kube`]: `JournalSegment` objects in the bot's home cluster, appended
//!   with resourceVersion preconditions, fenced by a writer epoch.
//!
//! [`journal`] puts the journal (records, hash chain) on a store.

pub mod journal;
pub mod kube;
pub mod memory;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// An ordered, durable sequence of lines, with one writer at a time.
///
/// # Contract
///
/// - **Lines.** A line is non-empty UTF-8 without `\n` or `\r`. Lines are
///   numbered from 0 in the order they were appended (their *position*);
///   a store never reorders or edits a line it acknowledged, and drops one
///   only when an archive (the kube store's export + retention) says so.
///   Lines are assumed unique (the journal's carry a sequence number, a
///   time and the previous line's hash): a store recognises its own batch
///   by comparing lines.
/// - **Heads.** A [`Head`] is where a writer saw the end of the store. Only
///   a store makes one ([`LineStore::load`], [`LineStore::takeover`], or a
///   successful [`LineStore::append`]); a writer appends with the head its
///   last call returned, one append at a time.
/// - **Append** is atomic and conditional: the batch is stored right after
///   the lines `head` describes, all of it or nothing, and only if nothing
///   was appended and no one took over since `head` was read. `Ok` means
///   durable: every later load, by any process, returns the batch.
/// - **Superseded** ([`StoreError::Superseded`]): another writer appended
///   or took over since `head`. Nothing of the batch counts; the caller is
///   no longer the writer and must stop acting at once.
/// - **Unknown** ([`StoreError::Unknown`]): the store could not learn
///   whether the batch landed (a timeout, a lost answer), and re-reading to
///   judge failed too. The caller must not act on the batch. Calling
///   `append` again with the same head and batch is safe: a store that
///   finds the batch already stored after `head` answers `Ok` without
///   storing it twice, and one that finds another writer's lines answers
///   `Superseded`. (A store judges a timed-out append by re-reading itself
///   before it answers; `Unknown` is what is left when that fails too.)
/// - **Takeover** fences: once [`LineStore::takeover`] returns, every
///   append with a head read before it fails with `Superseded`. It returns
///   the lines as of the takeover, so the new writer replays exactly what
///   the old one wrote. A head from [`LineStore::load`] may be appended
///   with too, but fences no one out.
/// - **Checkpoints.** A batch marked [`Batch::checkpoint`] starts with a
///   line the journal can restart from: [`LineStore::load`] returns the
///   lines from the latest such line on, so start-up does not read the whole
///   history. [`LineStore::load_from`] reads from any position still kept.
/// - **Errors that store nothing**: [`StoreError::Invalid`] (bad input,
///   refused before any call), [`StoreError::Failed`] (the store answered
///   with an error, or a read failed); [`StoreError::Corrupt`] means what is
///   stored does not fit together (a missing or edited segment).
#[async_trait]
pub trait LineStore: Send + Sync {
    /// The lines from the latest checkpoint on (all lines if none was
    /// marked), and the head after them.
    async fn load(&self) -> Result<Loaded, StoreError>;

    /// The lines from `position` on, or from the oldest line still kept if
    /// older ones were archived and deleted ([`Loaded::first`] says which).
    async fn load_from(&self, position: u64) -> Result<Loaded, StoreError>;

    /// Makes `writer` the only one whose appends are accepted, and returns
    /// the lines as of that moment (from the latest checkpoint on, as
    /// [`LineStore::load`]) with a head to append after.
    async fn takeover(&self, writer: &str) -> Result<Loaded, StoreError>;

    /// Appends `batch` right after `head` (see the contract above); returns
    /// the head after it.
    async fn append(&self, head: &Head, batch: &Batch) -> Result<Head, StoreError>;
}

/// Where a writer saw the end of the store. Made only by a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// How many lines come before the next one: the next line's position.
    pub position: u64,
    /// SHA-256 (hex) of the line at `position - 1`; empty at position 0.
    pub last_hash: String,
    /// The writer epoch: every takeover starts a new one.
    pub epoch: u64,
    /// Who took over last (empty if no one has).
    pub writer: String,
    /// Where the head is in the store's own terms.
    pub(crate) tip: Tip,
}

impl Head {
    /// The kube store's segment the next line goes into (for logs and
    /// metrics); `None` for other stores.
    pub fn segment(&self) -> Option<u64> {
        match &self.tip {
            Tip::Segment(tip) => Some(tip.number()),
            Tip::Plain => None,
        }
    }
}

/// A store's own notion of its head, opaque to callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tip {
    /// The memory store needs nothing beyond position and epoch.
    Plain,
    /// The kube store: the segment the next line goes into.
    Segment(kube::SegmentTip),
}

/// Lines to append together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub lines: Vec<String>,
    /// The first line is a checkpoint: [`LineStore::load`] may start there.
    pub checkpoint: bool,
}

impl Batch {
    pub fn new(lines: Vec<String>) -> Batch {
        Batch {
            lines,
            checkpoint: false,
        }
    }

    pub fn checkpoint(lines: Vec<String>) -> Batch {
        Batch {
            lines,
            checkpoint: true,
        }
    }

    /// Bytes of the lines (without separators).
    pub fn bytes(&self) -> usize {
        self.lines.iter().map(String::len).sum()
    }
}

/// What a load found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// Position of `lines[0]` (of the head, when there are no lines).
    pub first: u64,
    /// SHA-256 (hex) of the line before `lines[0]`; empty at position 0.
    /// The hash chain of the returned lines starts from it.
    pub prev_hash: String,
    pub lines: Vec<String>,
    pub head: Head,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended or took over first: stop acting.
    #[error("the journal has a newer writer ({writer}): this replica must stop acting")]
    Superseded { writer: String },
    /// Whether the batch landed could not be learned, even by re-reading.
    #[error("cannot tell whether the journal append landed ({reason}): not acting on it")]
    Unknown { reason: String },
    /// The store answered with an error, or could not be reached for a read.
    #[error("journal store: {what}: {reason}")]
    Failed { what: String, reason: String },
    /// Bad input, refused before anything was sent.
    #[error("journal append refused: {reason}")]
    Invalid { reason: String },
    /// The stored lines do not fit together.
    #[error("journal store is inconsistent: {reason}")]
    Corrupt { reason: String },
}

/// SHA-256 (hex) of one line, as the journal's hash chain uses it.
pub fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// The hash of the last of `lines`, or `before` when there are none.
pub(crate) fn last_hash_of(lines: &[String], before: &str) -> String {
    lines
        .last()
        .map_or_else(|| before.to_owned(), |line| line_hash(line))
}

/// Refuses a batch no store may take: empty, an empty or multi-line line,
/// or more than `max_bytes` in all.
pub(crate) fn check_batch(batch: &Batch, max_bytes: usize) -> Result<(), StoreError> {
    let invalid = |reason: String| Err(StoreError::Invalid { reason });
    if batch.lines.is_empty() {
        return invalid("an empty batch".into());
    }
    for (i, line) in batch.lines.iter().enumerate() {
        if line.is_empty() {
            return invalid(format!("line {} of the batch is empty", i + 1));
        }
        if line.contains(['\n', '\r']) {
            return invalid(format!("line {} of the batch has a line break", i + 1));
        }
    }
    let bytes = batch.bytes();
    if bytes > max_bytes {
        return invalid(format!(
            "the batch has {bytes} bytes; at most {max_bytes} go in one append"
        ));
    }
    Ok(())
}

/// How the lines after a head compare with the batch appended there: the
/// judgement of an append whose answer was a conflict or never came.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Exactly the batch follows the head, in the same epoch: it landed.
    Landed,
    /// Nothing follows the head and no one took over: it did not land, and
    /// trying again is safe.
    Absent,
    /// Other lines, more lines, or a newer epoch: another writer.
    Superseded,
}

/// Judges `after` (the lines stored after the head, in epoch `epoch`) for
/// a batch appended at a head of epoch `head_epoch`.
pub(crate) fn judge(batch: &Batch, head_epoch: u64, after: &[String], epoch: u64) -> Judgement {
    if epoch != head_epoch {
        Judgement::Superseded
    } else if after.is_empty() {
        Judgement::Absent
    } else if after == batch.lines.as_slice() {
        Judgement::Landed
    } else {
        Judgement::Superseded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn a_batch_with_a_line_break_an_empty_line_or_too_many_bytes_is_refused() {
        let ok = Batch::new(lines(&["{\"a\":1}", "{\"b\":2}"]));
        assert!(check_batch(&ok, 100).is_ok());
        for (batch, says) in [
            (Batch::new(vec![]), "empty batch"),
            (
                Batch::new(lines(&["a", ""])),
                "line 2 of the batch is empty",
            ),
            (
                Batch::new(lines(&["a\nb"])),
                "line 1 of the batch has a line break",
            ),
            (Batch::new(lines(&["a\rb"])), "line break"),
            (Batch::new(lines(&["0123456789"])), "10 bytes; at most 5"),
        ] {
            let error = check_batch(&batch, 5).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn an_append_is_judged_by_what_follows_its_head() {
        let batch = Batch::new(lines(&["x", "y"]));
        assert_eq!(judge(&batch, 3, &lines(&["x", "y"]), 3), Judgement::Landed);
        assert_eq!(judge(&batch, 3, &[], 3), Judgement::Absent);
        assert_eq!(judge(&batch, 3, &[], 4), Judgement::Superseded);
        assert_eq!(
            judge(&batch, 3, &lines(&["x", "y"]), 4),
            Judgement::Superseded
        );
        assert_eq!(judge(&batch, 3, &lines(&["z"]), 3), Judgement::Superseded);
        assert_eq!(
            judge(&batch, 3, &lines(&["x", "y", "z"]), 3),
            Judgement::Superseded
        );
    }

    #[test]
    fn the_chain_hash_is_sha256_hex_of_the_line() {
        assert_eq!(
            line_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(last_hash_of(&[], "before"), "before");
    }
}
