//! Finding a file journal's latest snapshot from its end, so start-up reads
//! the records after it and not the whole history.
//!
//! A snapshot line carries `"type":"snapshot"` among its top-level fields,
//! right after the line's `prev` hash. Inside a JSON string those quotes
//! would be escaped, so the bytes only appear in a record's own structure;
//! every hit is still parsed before it counts.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use super::{parse_line, Entry};

const MARKER: &[u8] = br#""type":"snapshot""#;

/// How far back from the end one read goes.
const CHUNK: u64 = 256 * 1024;

/// How far before its marker a snapshot line may start (its `v`, `seq`,
/// `at` and `prev` fields come first).
const HEAD_MAX: u64 = 1024;

/// The latest snapshot line of a journal file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotAt {
    /// Byte offset of the line's first byte.
    pub offset: u64,
    /// The record's sequence number: its line number in the file.
    pub seq: u64,
}

/// The latest complete snapshot line in the first `len` bytes of `file`,
/// if any. Reads backwards in chunks and stops at the first that counts.
pub fn latest_snapshot(file: &File, len: u64) -> std::io::Result<Option<SnapshotAt>> {
    let mut end = len;
    // The first bytes of the chunk read before, so that a marker across a
    // chunk boundary is still found.
    let mut overlap: Vec<u8> = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut bytes = read_at(file, start, end - start)?;
        bytes.extend_from_slice(&overlap);
        for hit in rfind_all(&bytes, MARKER) {
            let marker = start + hit as u64;
            if let Some(found) = snapshot_line_around(file, marker, len)? {
                return Ok(Some(found));
            }
        }
        overlap = bytes[..bytes.len().min(MARKER.len() - 1)].to_vec();
        end = start;
    }
    Ok(None)
}

/// The snapshot record whose marker is at `marker`, if the line holding it
/// is a complete snapshot record.
fn snapshot_line_around(file: &File, marker: u64, len: u64) -> std::io::Result<Option<SnapshotAt>> {
    let from = marker.saturating_sub(HEAD_MAX);
    let before = read_at(file, from, marker - from)?;
    let offset = match before.iter().rposition(|b| *b == b'\n') {
        Some(newline) => from + newline as u64 + 1,
        None if from == 0 => 0,
        None => return Ok(None),
    };
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(offset))?;
    let mut line = String::new();
    let read = reader.read_line(&mut line)?;
    if offset + read as u64 > len || !line.ends_with('\n') {
        return Ok(None);
    }
    Ok(match parse_line(line.trim_end_matches('\n')) {
        Ok(record) if matches!(record.entry, Entry::Snapshot { .. }) => Some(SnapshotAt {
            offset,
            seq: record.seq,
        }),
        _ => None,
    })
}

fn read_at(file: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut reader = file;
    reader.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0; len as usize];
    reader.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Every position of `needle` in `haystack`, last first.
fn rfind_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .rev()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_hit_last_first() {
        let hits: Vec<usize> = rfind_all(b"abXab", b"ab").collect();
        assert_eq!(hits, vec![3, 0]);
    }
}
