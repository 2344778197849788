//! The journal as a file: one line per record, each batch written and
//! fsync'd before the engine acts on it. The same [`Journal`] also keeps
//! its lines in memory only (the sandbox) or hands them to a
//! [`LineSink`] (the Kubernetes journal).
//!
//! Fail-stop: a write or fsync that fails is cut back off the file before
//! the error is returned, so the file always ends with the last record that
//! was acknowledged, and the next append (or the next start) finds a clean
//! tail. If even cutting back fails, the journal refuses every later append:
//! the engine then acts on nothing it could not record.
//!
//! A crash can still leave a torn last line (no newline); it is cut off on
//! open, because the action it described was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::scan::SnapshotAt;
use super::sign::{Signatures, Signer};
use super::sink::{replay, AppendGuard, LineSink, Replayed};
use super::{line_hash, parse_line, to_line, Entry, Record, FORMAT_VERSION};

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
    #[error("journal {path}, line {line}: {reason}; move the file aside to start empty")]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
    /// An earlier append failed and could not be cut back off the file.
    #[error("journal {path} failed to take back a failed write; restart the bot")]
    Poisoned { path: String },
    /// The journal's store did not take a batch: nothing of it counts.
    #[error("journal {path}: {reason}")]
    Sink { path: String, reason: String },
    /// This process may no longer act (see [`AppendGuard`]): nothing was
    /// written.
    #[error("journal {path}: not appending: {reason}")]
    NotActing { path: String, reason: String },
}

/// Where records go: a file or a store in production, memory in the
/// sandbox.
#[derive(Debug)]
pub struct Journal {
    sink: Sink,
    next_seq: u64,
    last_hash: String,
    guard: Option<Box<dyn AppendGuard>>,
    /// Signs every line written, once the bot has a key.
    signer: Option<Signer>,
}

/// Records on their way into the journal, chained, not yet durable.
struct Batch {
    records: Vec<Record>,
    lines: Vec<String>,
    seq: u64,
    last_hash: String,
}

impl Batch {
    fn after(journal: &Journal) -> Batch {
        Batch {
            records: Vec::new(),
            lines: Vec::new(),
            seq: journal.next_seq,
            last_hash: journal.last_hash.clone(),
        }
    }

    fn add(
        &mut self,
        journal: &Journal,
        at: DateTime<Utc>,
        entry: Entry,
    ) -> Result<(), JournalError> {
        let record = Record {
            v: FORMAT_VERSION,
            seq: self.seq,
            at,
            prev: std::mem::take(&mut self.last_hash),
            sig: None,
            entry,
        };
        let line = journal.line_of(&record)?;
        self.last_hash = line_hash(&line);
        self.lines.push(line);
        self.seq += 1;
        self.records.push(record);
        Ok(())
    }
}

#[derive(Debug)]
enum Sink {
    Memory,
    File(Opened),
    Lines(Box<dyn LineSink>),
}

#[derive(Debug)]
struct Opened {
    file: File,
    path: PathBuf,
    /// Bytes up to the end of the last acknowledged record.
    len: u64,
    poisoned: bool,
}

impl Journal {
    /// A journal that keeps nothing across runs (the sandbox).
    pub fn in_memory() -> Self {
        Self {
            sink: Sink::Memory,
            next_seq: 1,
            last_hash: String::new(),
            guard: None,
            signer: None,
        }
    }

    /// Opens (or creates, readable by its owner only) the journal at `path`
    /// and returns its records.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Record>), JournalError> {
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        let created = !path.exists();
        let mut file = open_private(path).map_err(io)?;
        if created {
            // The new file's name must survive a power cut too.
            sync_parent(path).map_err(io)?;
        }
        // An exclusive lock for as long as this process runs (the kernel
        // drops it when the process dies, even by SIGKILL): one writer only.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    path: path.display().to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
        let len = file.metadata().map_err(io)?.len();
        let from = super::scan::latest_snapshot(&file, len).map_err(io)?;
        let (records, good_len, last_hash) = read_records(&file, path, from)?;
        if file.metadata().map_err(io)?.len() > good_len {
            tracing::warn!(path = %path.display(), "cutting off a torn last journal line");
            file.set_len(good_len).map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let next_seq = records.last().map_or(1, |r| r.seq + 1);
        let journal = Journal {
            sink: Sink::File(Opened {
                file,
                path: path.to_owned(),
                len: good_len,
                poisoned: false,
            }),
            next_seq,
            last_hash,
            guard: None,
            signer: None,
        };
        Ok((journal, records))
    }

    /// The same journal, appending only while `guard` allows.
    pub fn guarded(mut self, guard: Box<dyn AppendGuard>) -> Journal {
        self.guard = Some(guard);
        self
    }

    /// A journal whose lines `sink` keeps, which holds `lines` already
    /// (stored after a line whose hash is `prev_hash`; empty from the
    /// start); returns their records.
    pub fn on_sink(
        sink: Box<dyn LineSink>,
        prev_hash: &str,
        lines: &[String],
    ) -> Result<(Journal, Vec<Record>), JournalError> {
        let Replayed {
            records,
            next_seq,
            last_hash,
        } = replay(&sink.name(), prev_hash, lines)?;
        let journal = Journal {
            sink: Sink::Lines(sink),
            next_seq,
            last_hash,
            guard: None,
            signer: None,
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
        let mut batch = Batch::after(self);
        for entry in entries {
            batch.add(self, at, entry)?;
        }
        self.commit(batch)
    }

    /// [`Journal::append_batch`] of `first` and what `then` makes of the
    /// hash of `first`'s line: a message that quotes the record it is
    /// about, written with it.
    pub fn append_quoting(
        &mut self,
        at: DateTime<Utc>,
        first: Entry,
        then: impl FnOnce(&str) -> Vec<Entry>,
    ) -> Result<Vec<Record>, JournalError> {
        let mut batch = Batch::after(self);
        batch.add(self, at, first)?;
        for entry in then(&batch.last_hash.clone()) {
            batch.add(self, at, entry)?;
        }
        self.commit(batch)
    }

    /// Signs every line from now on with `signer`. A journal not signed so
    /// far gets a checkpoint under the key first, covering what is there.
    pub fn sign_with(
        &mut self,
        at: DateTime<Utc>,
        signer: Signer,
        signatures: &Signatures,
    ) -> Result<(), JournalError> {
        let key = signer.public().to_string();
        self.signer = Some(signer);
        if signatures.key.is_none() {
            let lines = self.next_seq.saturating_sub(1);
            self.append(at, Entry::Checkpoint { key, lines })?;
        }
        Ok(())
    }

    /// The hash of the last line: what the next record names as `prev`.
    pub fn head(&self) -> &str {
        &self.last_hash
    }

    fn line_of(&self, record: &Record) -> Result<String, JournalError> {
        let line = to_line(record).map_err(|e| JournalError::Io {
            path: self.path(),
            source: std::io::Error::other(e),
        })?;
        Ok(match &self.signer {
            Some(signer) => signer.sign_line(&line),
            None => line,
        })
    }

    /// Makes a batch durable (unless this process may no longer act), then
    /// takes it as the journal's new end.
    fn commit(&mut self, batch: Batch) -> Result<Vec<Record>, JournalError> {
        self.may_act()?;
        let snapshot = batch
            .records
            .first()
            .is_some_and(|r| matches!(r.entry, Entry::Snapshot { .. }));
        self.store(&batch.lines, snapshot)?;
        self.next_seq = batch.seq;
        self.last_hash = batch.last_hash;
        // Asked again: an append to a slow store may end after the deadline,
        // when another replica may already act. The records are durable
        // (the next leader replays them), but nothing may act on them here.
        self.may_act()?;
        Ok(batch.records)
    }

    /// The guard's answer, if the journal has one.
    fn may_act(&self) -> Result<(), JournalError> {
        match &self.guard {
            Some(guard) => guard
                .may_append()
                .map_err(|reason| JournalError::NotActing {
                    path: self.path(),
                    reason,
                }),
            None => Ok(()),
        }
    }

    /// Makes `lines` durable, all or none.
    fn store(&mut self, lines: &[String], snapshot: bool) -> Result<(), JournalError> {
        match &mut self.sink {
            Sink::Memory => Ok(()),
            Sink::File(opened) => {
                let mut text = lines.join("\n");
                text.push('\n');
                opened.write(text.as_bytes())
            }
            Sink::Lines(sink) => sink
                .append(lines, snapshot)
                .map_err(|e| JournalError::Sink {
                    path: sink.name(),
                    reason: e.reason,
                }),
        }
    }

    fn path(&self) -> String {
        match &self.sink {
            Sink::Memory => "(memory)".into(),
            Sink::File(opened) => opened.path.display().to_string(),
            Sink::Lines(sink) => sink.name(),
        }
    }
}

impl Opened {
    /// Writes and syncs `bytes`, or leaves the file as it was.
    fn write(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        let path = self.path.display().to_string();
        if self.poisoned {
            return Err(JournalError::Poisoned { path });
        }
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(source) => {
                self.take_back();
                Err(JournalError::Io { path, source })
            }
        }
    }

    /// Cuts a failed write back off the file; if that fails too, refuses
    /// every later write.
    fn take_back(&mut self) {
        let cut = self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.seek(SeekFrom::Start(self.len)).map(|_| ()))
            .and_then(|()| self.file.sync_data());
        if let Err(error) = cut {
            tracing::error!(%error, path = %self.path.display(), "cannot take back a failed journal write: refusing further writes");
            self.poisoned = true;
        }
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
}

/// Makes a new file's directory entry durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// Reads the complete records from the latest snapshot on (`from`; all
/// of them when there is none); returns them, the byte length of the good
/// prefix, and the hash of the last good line. The lines before the
/// snapshot are not read: `audit verify` checks the whole file.
fn read_records(
    file: &File,
    path: &Path,
    from: Option<SnapshotAt>,
) -> Result<(Vec<Record>, u64, String), JournalError> {
    let mut reader = BufReader::new(file);
    let io = |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    };
    let start = from.map_or(0, |at| at.offset);
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut records = Vec::new();
    let mut good_len = start;
    let mut last_hash = String::new();
    let mut line = String::new();
    let mut number = from.map_or(0, |at| at.seq.saturating_sub(1) as usize);
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(io)?;
        if read == 0 {
            break;
        }
        number += 1;
        if !line.ends_with('\n') {
            // Torn write from a crash: never acknowledged, so dropped.
            break;
        }
        let text = line.trim_end_matches('\n');
        let record = parse_line(text).map_err(|e| JournalError::Corrupt {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::verify_chain;

    fn command(text: &str) -> Entry {
        Entry::Command {
            user: "alice".into(),
            channel: "C1".into(),
            text: text.into(),
            event: None,
            answered: false,
        }
    }

    fn snapshot() -> Entry {
        let state = crate::journal::ledger::LedgerSnapshot {
            last_op: 7,
            ..Default::default()
        };
        Entry::Snapshot {
            state: Box::new(state),
        }
    }

    #[test]
    fn open_reads_from_the_latest_snapshot_and_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.append(Utc::now(), command("status")).unwrap();
        journal.append(Utc::now(), snapshot()).unwrap();
        // A command whose text names the marker is not a snapshot.
        let tricky = command(r#""type":"snapshot""#);
        journal.append(Utc::now(), tricky).unwrap();
        journal.append(Utc::now(), snapshot()).unwrap();
        journal.append(Utc::now(), command("help")).unwrap();
        drop(journal);
        // A torn line after the snapshot is cut off as before.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"v":3,"seq":6,"#).unwrap();
        drop(file);

        let (mut journal, records) = Journal::open(&path).unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![4, 5], "from the latest snapshot on");
        assert!(matches!(records[0].entry, Entry::Snapshot { .. }));
        let next = journal.append(Utc::now(), command("abort")).unwrap();
        assert_eq!(next.seq, 6);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(verify_chain(&lines), Ok(()), "the chain goes on");
    }

    #[test]
    fn a_journal_without_a_snapshot_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut journal, _) = Journal::open(&path).unwrap();
        for text in ["status", "help", "history"] {
            journal.append(Utc::now(), command(text)).unwrap();
        }
        drop(journal);
        let (_, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 3);
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
        assert_eq!(records[1].v, FORMAT_VERSION);
        journal.append(Utc::now(), command("history")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(verify_chain(&lines), Ok(()));

        let edited = lines[1].replace("help", "hack");
        let tampered = [lines[0], edited.as_str(), lines[2]];
        assert_eq!(
            verify_chain(&tampered),
            Err(crate::journal::ChainBreak { line: 3 })
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_new_journal_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        drop(Journal::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
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

    #[derive(Debug)]
    struct Refuse;

    impl AppendGuard for Refuse {
        fn may_append(&self) -> Result<(), String> {
            Err("the lease deadline passed".into())
        }
    }

    #[test]
    fn a_guard_that_refuses_stops_every_append_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (journal, _) = Journal::open(&path).unwrap();
        let mut journal = journal.guarded(Box::new(Refuse));
        let refused = journal.append(Utc::now(), command("status")).unwrap_err();
        assert!(
            matches!(&refused, JournalError::NotActing { reason, .. } if reason.contains("deadline")),
            "{refused}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    /// Allows the first question only: the deadline passes while the
    /// append it allowed is under way (a slow API server).
    #[derive(Debug, Default)]
    struct PassesDuringTheAppend(std::sync::atomic::AtomicBool);

    impl AppendGuard for PassesDuringTheAppend {
        fn may_append(&self) -> Result<(), String> {
            match self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
                false => Ok(()),
                true => Err("the lease deadline passed".into()),
            }
        }
    }

    #[test]
    fn an_append_that_outlasts_the_deadline_is_kept_but_not_acted_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (journal, _) = Journal::open(&path).unwrap();
        let mut journal = journal.guarded(Box::new(PassesDuringTheAppend::default()));
        let refused = journal.append(Utc::now(), command("status")).unwrap_err();
        assert!(
            matches!(&refused, JournalError::NotActing { .. }),
            "the caller must not act on it: {refused}"
        );
        // Durable all the same: the next leader replays it.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
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

    #[test]
    fn a_record_from_a_newer_release_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, "{\"v\":99,\"seq\":1}\n").unwrap();
        let err = Journal::open(&path).unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
    }
}
