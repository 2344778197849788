//! Issue 13's start-up targets, for the file journal: after a history of
//! 100,000 operations, start (open the journal, replay it, resume) in
//! under 300 ms with an RSS under 30 MB.
//!
//! `cargo bench --bench start_up [-- OPERATIONS]` (default 100,000):
//! 1. generates the history once, cached in `target/start_up/`: each
//!    operation is `/failover to b steps 100` (or back to a) and its
//!    approval, driven through the real engine, whose records go to a file
//!    without an fsync per write (the records and snapshots are the real
//!    ones; only durability is skipped, to generate in minutes);
//! 2. derives the same history without snapshot records: start-up as it
//!    was before snapshots, for comparison;
//! 3. starts each in a fresh process (this binary again) three times and
//!    prints the time to ready and the peak RSS (`VmHWM`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use failover_bot::config::Config;
use failover_bot::engine::{CommandRequest, Engine, Reaction};
use failover_bot::journal::sink::{LineSink, SinkError};
use failover_bot::journal::{Journal, FORMAT_VERSION};
use support::bot::Builder;
use support::chat::NullChat;

const CONFIG: &str = "slack: {channels: [C1]}\napproval: {approvers: [alice, bob]}\nenvironments:\n  dev:\n    channel: C1\n    clusters:\n      - {name: a, context: a, weight: 100}\n      - {name: b, context: b, weight: 0}\n";

/// Set in the child process: the journal to start from.
const MEASURE: &str = "START_UP_MEASURE";

/// Writes lines to a buffered file with no fsync: generating only.
#[derive(Debug)]
struct FastFile(BufWriter<File>);

impl LineSink for FastFile {
    fn append(&mut self, lines: &[String], _snapshot: bool) -> Result<(), SinkError> {
        for line in lines {
            writeln!(self.0, "{line}").map_err(|e| SinkError {
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
    fn name(&self) -> String {
        "generated".into()
    }
}

fn config() -> Arc<Config> {
    Arc::new(Config::from_yaml(CONFIG).unwrap())
}

fn engine_on(journal: Journal, records: Vec<failover_bot::journal::Record>) -> Engine {
    Builder::new(config())
        .chat(Arc::new(NullChat::default()))
        .build_on(journal, records)
}

async fn generate(path: &Path, operations: usize) {
    let sink = FastFile(BufWriter::new(File::create(path).unwrap()));
    let (journal, records) = Journal::on_sink(Box::new(sink), "", &[]).unwrap();
    let engine = engine_on(journal, records);
    for n in 0..operations {
        let target = if n % 2 == 0 { "b" } else { "a" };
        let understood = engine.understand(CommandRequest {
            user: "alice".into(),
            channel: "C1".into(),
            text: format!("to {target} steps 100"),
            event_id: Some(format!("Cmd{n}")),
        });
        let answer = engine.first_answer(&understood);
        engine.handle(understood).await;
        let Some(message) = engine.pending_plan_messages().pop() else {
            panic!(
                "operation {n}: no plan; answer {:?}; active {:#?}; last finished {:#?}",
                answer.text,
                engine.active_operation("dev"),
                engine.finished_operations().last()
            );
        };
        engine
            .handle_reaction(Reaction {
                user: "bob".into(),
                name: "white_check_mark".into(),
                message,
                added: true,
                event_id: Some(format!("Ev{n}")),
            })
            .await;
        if n % 10_000 == 9_999 {
            eprintln!("  {} operations", n + 1);
        }
    }
    // The engine's sink is flushed when the engine (and its journal) drop.
}

/// The same history without its snapshot records.
fn without_snapshots(from: &Path, to: &Path) {
    let text = std::fs::read_to_string(from).unwrap();
    let mut out = BufWriter::new(File::create(to).unwrap());
    for line in text.lines() {
        if !line.contains(r#""type":"snapshot""#) {
            writeln!(out, "{line}").unwrap();
        }
    }
}

/// In the child: start as `serve` does after opening the journal, then
/// print the milliseconds to ready and the peak RSS in kB.
async fn measure(path: &Path) {
    let started = Instant::now();
    let (journal, records) = Journal::open(path).unwrap();
    let read = records.len();
    let engine = engine_on(journal, records);
    engine.resume().await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_owned()
    };
    println!("{ms:.1} {} {} {read}", field("VmHWM:"), field("VmRSS:"));
    drop(engine);
}

fn start_in_child(path: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(MEASURE, path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn report(label: &str, path: &Path) {
    let lines = std::fs::read_to_string(path).unwrap().lines().count();
    let bytes = std::fs::metadata(path).unwrap().len();
    println!(
        "{label}: {lines} records, {:.1} MB",
        bytes as f64 / 1_000_000.0
    );
    for _ in 0..3 {
        let fields: Vec<String> = start_in_child(path).split(' ').map(str::to_owned).collect();
        println!(
            "  start to ready {} ms · peak RSS {} kB · RSS {} kB · {} records read",
            fields[0], fields[1], fields[2], fields[3]
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(path) = std::env::var_os(MEASURE) {
        runtime.block_on(measure(Path::new(&path)));
        return;
    }
    let operations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/start_up");
    std::fs::create_dir_all(&dir).unwrap();
    let with = dir.join(format!("journal-v{FORMAT_VERSION}-{operations}.jsonl"));
    if !with.exists() {
        eprintln!("generating {operations} operations into {}", with.display());
        let partial = with.with_extension("partial");
        runtime.block_on(generate(&partial, operations));
        std::fs::rename(&partial, &with).unwrap();
    }
    let without = dir.join(format!(
        "journal-v{FORMAT_VERSION}-{operations}-no-snapshots.jsonl"
    ));
    if !without.exists() {
        without_snapshots(&with, &without);
    }
    report("with snapshots (this release)", &with);
    report("without snapshots (start-up as before)", &without);
}
