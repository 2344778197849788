//! A failed append leaves the journal as it was (issue 13): the disk fills
//! up in the middle of a write, the write is taken back, and once there is
//! room again the next append lands and the journal reopens whole.
//!
//! The disk is filled for real, with the process's file-size limit
//! (`RLIMIT_FSIZE`): a write past it fails with `EFBIG` after writing what
//! fits, as a full disk leaves a partial line. This is the only test in its
//! binary, because the limit is the whole process's.

use chrono::Utc;
use failover_bot::journal::{Entry, Journal, JournalError};

fn command(text: &str) -> Entry {
    Entry::Command {
        user: "alice".into(),
        channel: "C1".into(),
        text: text.into(),
        event: None,
        answered: false,
    }
}

/// Sets the soft file-size limit, keeping the hard one.
fn limit_file_size(bytes: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = bytes.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

fn unlimited() -> libc::rlim_t {
    libc::RLIM_INFINITY
}

#[test]
fn an_append_the_full_disk_cut_short_is_taken_back_and_the_journal_reopens() {
    // A write past the limit must fail, not kill the process.
    // SAFETY: ignoring a signal for the whole process, before any thread of
    // ours writes.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let (mut journal, _) = Journal::open(&path).unwrap();
    journal.append(Utc::now(), command("status")).unwrap();
    journal.append(Utc::now(), command("history")).unwrap();
    let good = std::fs::metadata(&path).unwrap().len();

    // Room for a few bytes more: the next record does not fit.
    limit_file_size(good + 20);
    let failed = journal.append(Utc::now(), command(&"x".repeat(200)));
    limit_file_size(unlimited());
    assert!(
        matches!(failed, Err(JournalError::Io { .. })),
        "the append fails: {failed:?}"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        good,
        "the partial line was taken back"
    );

    // Room again: the next append lands after the last good record.
    journal.append(Utc::now(), command("abort")).unwrap();
    drop(journal);
    let (_, records) = Journal::open(&path).expect("the journal reopens");
    let texts: Vec<String> = records
        .iter()
        .map(|r| match &r.entry {
            Entry::Command { text, .. } => text.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["status", "history", "abort"]);
    assert_eq!(records[2].seq, 3, "the failed record's number is reused");
}
