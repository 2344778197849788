//! Archiving old segments: the journal is the audit trail, so a segment is
//! deleted only after it was exported (written out as JSON lines, for
//! backups and a SIEM), only once it is older than the retention, and never
//! one that start-up still reads (at or after the latest checkpoint).
//!
//! Deletion takes the oldest segments first and stops at the first one that
//! must stay, so what is kept is always one unbroken run; its first segment
//! carries the hash of the line before it (`prevHash`), so the chain stays
//! verifiable from there.

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::segment::segment_name;
use super::{check_run, missing, CallError, JournalSegment, KubeStore};
use crate::store::StoreError;

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// Position of the first line written.
    pub first: u64,
    /// SHA-256 (hex) of the line before the first one (empty at position 0):
    /// where the exported chain starts.
    pub prev_hash: String,
    pub lines: u64,
    /// The sealed segments written whole, with the resourceVersion that
    /// was written: only these may be marked exported.
    pub sealed: Vec<(u64, String)>,
}

/// What a prune did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Segment numbers deleted, oldest first.
    pub deleted: Vec<u64>,
    /// Why the next segment was kept (empty if there was nothing left).
    pub stopped_at: String,
}

impl KubeStore {
    /// Writes every line from `position` on (from the oldest kept, if that
    /// is later) to `out`, one per line, segment by segment, checking that
    /// the segments follow each other. Marks nothing: call
    /// [`KubeStore::mark_exported`] once `out` is safely stored.
    pub async fn export<W>(&self, position: u64, out: &mut W) -> Result<Export, StoreError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let listed = self.list().await?;
        let start = listed
            .iter()
            .rev()
            .find(|(_, first)| first.is_some_and(|f| f <= position))
            .or(listed.first())
            .map(|(number, _)| *number);
        let mut export = Export {
            first: position,
            prev_hash: String::new(),
            lines: 0,
            sealed: Vec::new(),
        };
        let (Some(start), Some(&(last, _))) = (start, listed.last()) else {
            return Ok(export);
        };
        let mut previous: Option<JournalSegment> = None;
        let mut number = start;
        loop {
            let Some(segment) = self.get(number).await? else {
                if number < last && previous.is_none() {
                    number += 1; // archived since it was listed
                    continue;
                }
                if number <= last {
                    return Err(missing(number));
                }
                break;
            };
            if let Some(before) = previous.take() {
                check_run(&[before, segment.clone()])?;
            } else {
                let (_, prev) = segment.spec.lines_from(position);
                export.first = position.max(segment.spec.first());
                export.prev_hash = prev;
            }
            write_lines(out, &segment, position, &mut export).await?;
            let sealed = segment.spec.is_sealed();
            if sealed {
                let version = segment.metadata.resource_version.clone();
                export.sealed.push((number, version.unwrap_or_default()));
            }
            previous = Some(segment);
            if !sealed && number >= last {
                break;
            }
            number += 1;
        }
        out.flush().await.map_err(write_failed)?;
        Ok(export)
    }

    /// Marks the sealed segments of `export` as exported, each only if it
    /// is unchanged since it was written out; returns how many were marked.
    pub async fn mark_exported(&self, export: &Export) -> Result<usize, StoreError> {
        let mut marked = 0;
        for (number, version) in &export.sealed {
            let patch = json!({
                "metadata": {"resourceVersion": version},
                "spec": {"exportedAt": self.now()},
            });
            let name = segment_name(*number);
            let answer = self
                .call(
                    self.api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
                )
                .await;
            match answer {
                Ok(_) => marked += 1,
                // Changed or archived since: it stays unmarked (and kept).
                Err(CallError::Conflict | CallError::NotFound) => {}
                Err(error) => return Err(Self::failed(format!("marking {name} exported"), error)),
            }
        }
        Ok(marked)
    }

    /// Deletes the oldest segments that were exported, were sealed more
    /// than `retention` ago and come before the latest checkpoint; stops at
    /// the first one that does not qualify.
    pub async fn prune(&self, retention: Duration) -> Result<Pruned, StoreError> {
        let listed = self.list().await?;
        let Some(&(last, _)) = listed.last() else {
            return Ok(Pruned::default());
        };
        let tail = self.read_tail(last).await?;
        let Some(checkpoint) = tail.last().and_then(|s| s.spec.checkpoint.clone()) else {
            return Ok(Pruned {
                deleted: Vec::new(),
                stopped_at: "no checkpoint yet: start-up still reads every line".into(),
            });
        };
        let keep_from = checkpoint.segment.max(0) as u64;
        let retention = chrono::Duration::from_std(retention).ok();
        let Some(oldest_allowed) = retention.and_then(|r| self.clock.now().checked_sub_signed(r))
        else {
            return Ok(Pruned {
                deleted: Vec::new(),
                stopped_at: "the retention reaches back before any time there is".into(),
            });
        };
        let mut pruned = Pruned::default();
        for &(number, _) in &listed {
            if number >= keep_from {
                pruned.stopped_at = format!(
                    "{} and later are read at start-up (latest checkpoint)",
                    segment_name(keep_from)
                );
                break;
            }
            let Some(segment) = self.get(number).await? else {
                continue;
            };
            if let Some(why) = must_keep(&segment, oldest_allowed) {
                pruned.stopped_at = format!("{} {why}", segment_name(number));
                break;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: segment.metadata.resource_version.clone(),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            let name = segment_name(number);
            match self.call(self.api.delete(&name, &params)).await {
                Ok(_) | Err(CallError::NotFound) => pruned.deleted.push(number),
                Err(CallError::Conflict) => {
                    pruned.stopped_at = format!("{name} changed while pruning");
                    break;
                }
                Err(error) => return Err(Self::failed(format!("deleting {name}"), error)),
            }
        }
        Ok(pruned)
    }
}

/// Why a segment before the checkpoint must stay, if it must.
fn must_keep(
    segment: &JournalSegment,
    oldest_allowed: chrono::DateTime<chrono::Utc>,
) -> Option<&'static str> {
    let time = |at: &Option<String>| {
        at.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let spec = &segment.spec;
    let Some(sealed) = time(&spec.sealed_at) else {
        return Some("is not sealed");
    };
    if time(&spec.exported_at).is_none() {
        return Some("was not exported");
    }
    (sealed > oldest_allowed).then_some("is younger than the retention")
}

async fn write_lines<W>(
    out: &mut W,
    segment: &JournalSegment,
    position: u64,
    export: &mut Export,
) -> Result<(), StoreError>
where
    W: AsyncWrite + Unpin + Send,
{
    let (lines, _) = segment.spec.lines_from(position);
    let mut text = String::with_capacity(segment.spec.bytes() + lines.len());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    out.write_all(text.as_bytes()).await.map_err(write_failed)?;
    export.lines += lines.len() as u64;
    Ok(())
}

fn write_failed(error: std::io::Error) -> StoreError {
    StoreError::Failed {
        what: "writing the export".into(),
        reason: error.to_string(),
    }
}
