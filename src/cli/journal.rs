//! `failover-bot journal …`: the journal in the home cluster, from outside
//! the bot: print its CRD, move a file journal in, export it as JSON lines,
//! delete what was exported and is older than the retention.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SystemClock;
use crate::journal::{parse_line, verify_chain, Entry};
use crate::store::kube::archive::Export;
use crate::store::kube::{KubeStore, KubeStoreSettings};
use crate::store::{Batch, LineStore, StoreError};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Print the JournalSegment CustomResourceDefinition (YAML), as in
    /// manifests/home/crd-journalsegment.yaml.
    Crd,
    /// Move a file journal (`serve --journal PATH`) in: its lines,
    /// unchanged, so its records and hash chain stay as they were. Only
    /// into an empty journal; stop the bot first (the import takes the
    /// journal over: a bot still writing to it would stop).
    Import {
        #[command(flatten)]
        at: JournalAt,
        /// The journal file.
        file: PathBuf,
    },
    /// Write the journal as JSON lines, one record per line (for backups and
    /// a SIEM), then mark the sealed segments written as exported: only
    /// exported segments are ever deleted by `journal prune`.
    Export {
        #[command(flatten)]
        at: JournalAt,
        /// Start at this line (counted from 0; default: the oldest kept).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Write here (fsynced before anything is marked) instead of
        /// standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Delete the oldest segments that were exported, were sealed longer
    /// ago than the retention, and come before the latest checkpoint.
    Prune {
        #[command(flatten)]
        at: JournalAt,
        /// Keep segments sealed less than this long ago (e.g. `90d`).
        #[arg(long, value_parser = humantime::parse_duration)]
        retention: Duration,
    },
}

/// Where the journal is.
#[derive(Args, Debug)]
pub struct JournalAt {
    /// Kubeconfig context of the bot's home cluster (`in-cluster` inside it).
    #[arg(long, default_value = crate::backend::kube::IN_CLUSTER)]
    context: String,
    /// The bot's namespace there.
    #[arg(long, env = "POD_NAMESPACE", default_value = "failover-bot")]
    namespace: String,
}

pub async fn run(command: JournalCommand) -> ExitCode {
    match command {
        JournalCommand::Crd => {
            print!("{}", crate::store::kube::crd_yaml());
            ExitCode::SUCCESS
        }
        JournalCommand::Import { at, file } => finish(import(&at, &file).await),
        JournalCommand::Export { at, from, output } => {
            finish(export(&at, from, output.as_deref()).await)
        }
        JournalCommand::Prune { at, retention } => finish(prune(&at, retention).await),
    }
}

fn finish(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(summary) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("failover-bot: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn store(at: &JournalAt) -> Result<KubeStore, String> {
    let settings = KubeStoreSettings::default();
    KubeStore::connect(&at.context, &at.namespace, settings, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())
}

/// Who the import writes as, in the store's takeover.
const IMPORT_WRITER: &str = "failover-bot-journal-import";
/// Bytes per append while importing: well inside a segment.
const IMPORT_BATCH_BYTES: usize = 8 * 1024;

async fn import(at: &JournalAt, file: &Path) -> Result<String, String> {
    let lines = read_file_journal(file)?;
    let store = store(at).await?;
    let loaded = store
        .takeover(IMPORT_WRITER)
        .await
        .map_err(|e| e.to_string())?;
    let held = loaded.first + loaded.lines.len() as u64;
    if held > 0 {
        return Err(format!(
            "the journal in namespace {} already holds {held} line(s): import moves a file journal into an empty one only; nothing imported",
            at.namespace
        ));
    }
    let mut head = loaded.head;
    let mut done = 0;
    for batch in batches(&lines, IMPORT_BATCH_BYTES, is_snapshot) {
        let count = batch.lines.len();
        head = store.append(&head, &batch).await.map_err(|e| {
            format!(
                "{e}; imported {done} of {} line(s): delete the JournalSegment objects in namespace {} and import again",
                lines.len(),
                at.namespace
            )
        })?;
        done += count;
    }
    Ok(format!(
        "imported {done} line(s) from {} into namespace {}",
        file.display(),
        at.namespace
    ))
}

/// The complete lines of a file journal, checked before anything is
/// written: a torn last line (never acknowledged) is left out, as `serve`
/// leaves it out; a broken chain or an unreadable record refuses it all.
fn read_file_journal(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    let lines: Vec<&str> = complete.lines().collect();
    if lines.is_empty() {
        return Err(format!(
            "{} holds no record: nothing to import",
            path.display()
        ));
    }
    if let Err(broken) = verify_chain(&lines) {
        return Err(format!(
            "{}: the hash chain breaks at line {}; nothing imported",
            path.display(),
            broken.line
        ));
    }
    for (i, line) in lines.iter().enumerate() {
        parse_line(line)
            .map_err(|e| format!("{}, line {}: {e}; nothing imported", path.display(), i + 1))?;
    }
    Ok(lines.into_iter().map(str::to_owned).collect())
}

/// Whether a journal line is a ledger snapshot (start-up reads from the
/// latest one).
fn is_snapshot(line: &str) -> bool {
    parse_line(line).is_ok_and(|r| matches!(r.entry, Entry::Snapshot { .. }))
}

/// `lines` in order, in batches of at most `max_bytes` (a longer line
/// alone); a snapshot line starts a batch of its own, marked as a
/// checkpoint, so that start-up reads an imported journal from its latest
/// snapshot as it would the file.
fn batches(lines: &[String], max_bytes: usize, snapshot: impl Fn(&str) -> bool) -> Vec<Batch> {
    let mut all = Vec::new();
    let mut current = Batch::default();
    let mut bytes = 0;
    for line in lines {
        let starts_snapshot = snapshot(line);
        let full = bytes + line.len() > max_bytes;
        if !current.lines.is_empty() && (full || starts_snapshot) {
            all.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.checkpoint |= current.lines.is_empty() && starts_snapshot;
        bytes += line.len();
        current.lines.push(line.clone());
    }
    if !current.lines.is_empty() {
        all.push(current);
    }
    all
}

async fn export(at: &JournalAt, from: u64, output: Option<&Path>) -> Result<String, String> {
    let store = store(at).await?;
    let export = match output {
        Some(path) => export_to_file(&store, from, path).await?,
        None => {
            let mut stdout = tokio::io::stdout();
            store
                .export(from, &mut stdout)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let marked = store
        .mark_exported(&export)
        .await
        .map_err(|e| e.to_string())?;
    Ok(describe(&export, marked))
}

/// Writes to a temporary file next to `path`, fsyncs it, renames it into
/// place and fsyncs the directory: once this returns, the export survives
/// a crash, so marking its segments exported is safe.
async fn export_to_file(store: &KubeStore, from: u64, path: &Path) -> Result<Export, String> {
    let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    let partial = path.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| io("cannot create", e))?;
    let written = store.export(from, &mut file).await;
    let export = match written {
        Ok(export) => export,
        Err(error) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(error.to_string());
        }
    };
    file.sync_all().await.map_err(|e| io("cannot sync", e))?;
    drop(file);
    tokio::fs::rename(&partial, path)
        .await
        .map_err(|e| io("cannot write", e))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = tokio::fs::File::open(dir.unwrap_or(Path::new(".")))
        .await
        .map_err(|e| io("cannot open the directory of", e))?;
    dir.sync_all()
        .await
        .map_err(|e| io("cannot sync the directory of", e))?;
    Ok(export)
}

fn describe(export: &Export, marked: usize) -> String {
    let chain = if export.prev_hash.is_empty() {
        "the start of the journal".to_owned()
    } else {
        format!("after the line with SHA-256 {}", export.prev_hash)
    };
    format!(
        "exported {} line(s) from line {} ({chain}); {marked} sealed segment(s) marked exported",
        export.lines, export.first
    )
}

async fn prune(at: &JournalAt, retention: Duration) -> Result<String, String> {
    let store = store(at).await?;
    let pruned = store
        .prune(retention)
        .await
        .map_err(|e: StoreError| e.to_string())?;
    let deleted = match (pruned.deleted.first(), pruned.deleted.last()) {
        (Some(first), Some(last)) => format!(
            "deleted {} segment(s), {} to {}",
            pruned.deleted.len(),
            crate::store::kube::segment::segment_name(*first),
            crate::store::kube::segment::segment_name(*last)
        ),
        _ => "deleted nothing".to_owned(),
    };
    if pruned.stopped_at.is_empty() {
        Ok(deleted)
    } else {
        Ok(format!("{deleted}; kept the rest: {}", pruned.stopped_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_batches_keep_the_order_and_stay_under_the_size() {
        let lines: Vec<String> = ["aaaa", "bb", "cccccccc", "d", "ee"]
            .iter()
            .map(|l| l.to_string())
            .collect();
        let batches = batches(&lines, 6, |_| false);
        let shapes: Vec<Vec<String>> = batches.iter().map(|b| b.lines.clone()).collect();
        assert_eq!(
            shapes,
            [vec!["aaaa", "bb"], vec!["cccccccc"], vec!["d", "ee"]]
        );
        assert!(batches.iter().all(|b| !b.checkpoint));
        assert_eq!(shapes.concat(), lines);
    }

    #[test]
    fn a_snapshot_line_starts_a_checkpoint_batch() {
        let lines: Vec<String> = ["a", "S1", "b", "c", "S2"]
            .iter()
            .map(|l| l.to_string())
            .collect();
        let batches = batches(&lines, 100, |l| l.starts_with('S'));
        let shapes: Vec<(Vec<String>, bool)> = batches
            .iter()
            .map(|b| (b.lines.clone(), b.checkpoint))
            .collect();
        let owned = |v: &[&str]| v.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shapes,
            [
                (owned(&["a"]), false),
                (owned(&["S1", "b", "c"]), true),
                (owned(&["S2"]), true)
            ]
        );
    }
}
