//! `failover-bot journal …`: the journal in the home cluster, from outside
//! the bot: print its CRD, export it as JSON lines, delete what was
//! exported and is older than the retention.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SystemClock;
use crate::store::kube::archive::Export;
use crate::store::kube::{KubeStore, KubeStoreSettings};
use crate::store::StoreError;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Print the JournalSegment CustomResourceDefinition (YAML), as in
    /// manifests/home/crd-journalsegment.yaml.
    Crd,
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
