//! Issue 13's start-up targets, for the file journal: after a history of
//! 100,000 operations, start (open the journal, replay it, resume) in
//! under 300 ms with an RSS under 30 MB.
//!
//! `cargo bench --bench start_up [-- OPERATIONS]` (default 100,000; as a
//! test, under `cargo test --all-targets`, 300):
//! 1. generates the history once, cached in `target/start_up/`: each
//!    operation is `/failover to b steps 100` (or back to a) and its
//!    approval, driven through the real engine, whose records go to a file
//!    without an fsync per write (the records and snapshots are the real
//!    ones; only durability is skipped, to generate in minutes);
//! 2. derives the same history without snapshot records: start-up as it
//!    was before snapshots, for comparison;
//! 3. starts each in a fresh process (this binary again) three times and
//!    prints the time to ready and the peak RSS (`VmHWM`);
//! 4. the Kubernetes journal, when the test peers are provisioned
//!    (`eval "$(scripts/test-env/provision)"`): the first 10,000 operations'
//!    records appended to JournalSegments on a real kube-apiserver (a
//!    snapshot starts a checkpoint batch, as the bot writes it); the
//!    segments as stored; start-up in a fresh process (take the store
//!    over, load from the latest checkpoint, replay, resume); then export
//!    + 30-day retention 31 days later, what is left, and start-up again.

#[path = "../tests/support/mod.rs"]
mod support;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};

use failover_bot::clock::{OffsetClock, SystemClock};
use failover_bot::config::Config;
use failover_bot::engine::{CommandRequest, Engine, Reaction};
use failover_bot::journal::sink::{LineSink, SinkError};
use failover_bot::journal::{Journal, Record, FORMAT_VERSION};
use failover_bot::store::journal::Connect;
use failover_bot::store::kube::{JournalSegment, KubeStore, KubeStoreSettings};
use failover_bot::store::{Batch, LineStore};
use support::bot::Builder;
use support::chat::NullChat;
use support::kube_env::KubeEnv;

const CONFIG: &str = "slack: {channels: [C1]}\napproval: {approvers: [alice, bob]}\nenvironments:\n  dev:\n    channel: C1\n    clusters:\n      - {name: a, context: a, weight: 100}\n      - {name: b, context: b, weight: 0}\n";

/// Set in the child process: the journal to start from.
const MEASURE: &str = "START_UP_MEASURE";
/// Set in the child process: `KUBECONFIG|CONTEXT|NAMESPACE` of a kube journal.
const MEASURE_KUBE: &str = "START_UP_MEASURE_KUBE";

/// Operations in the Kubernetes journal part.
const KUBE_OPERATIONS: usize = 10_000;
/// Operations when run as a test (`cargo test --all-targets`).
const SMOKE_OPERATIONS: usize = 300;
const NAMESPACE: &str = "failover-bot";
/// Bytes of lines per append when filling the kube journal.
const APPEND_BYTES: usize = 4 * 1024;

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

fn engine_on(journal: Journal, records: Vec<Record>) -> Engine {
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
    ready(started, journal, records).await;
}

/// In the child: the same on the Kubernetes journal at
/// `KUBECONFIG|CONTEXT|NAMESPACE`.
async fn measure_kube(at: &str) {
    let started = Instant::now();
    let parts: Vec<String> = at.split('|').map(str::to_owned).collect();
    let [kubeconfig, context, namespace] = <[String; 3]>::try_from(parts).unwrap();
    let connect: Connect = Box::new(move || {
        Box::pin(async move {
            let store = store_at(Path::new(&kubeconfig), &context, &namespace).await;
            Ok(Arc::new(store) as Arc<dyn LineStore>)
        })
    });
    let opened = failover_bot::store::journal::open(connect, "bench", "kube:bench")
        .await
        .unwrap();
    ready(started, opened.journal, opened.records).await;
}

/// Builds the engine on what was opened, resumes, and prints the time to
/// ready, the peak RSS and the RSS (kB), and how many records were read.
async fn ready(started: Instant, journal: Journal, records: Vec<Record>) {
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

fn start_in_child(var: &str, value: &OsStr) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(var, value)
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
    starts(MEASURE, path.as_os_str());
}

/// Three starts in fresh processes, printed.
fn starts(var: &str, value: &OsStr) {
    for _ in 0..3 {
        let fields: Vec<String> = start_in_child(var, value)
            .split(' ')
            .map(str::to_owned)
            .collect();
        println!(
            "  start to ready {} ms · peak RSS {} kB · RSS {} kB · {} records read",
            fields[0], fields[1], fields[2], fields[3]
        );
    }
}

/// The store in `namespace`, through a client made on the calling runtime.
async fn store_at(kubeconfig: &Path, context: &str, namespace: &str) -> KubeStore {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let options = kube::config::KubeConfigOptions {
        context: Some(context.to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(config, &options)
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    KubeStore::new(
        client,
        namespace,
        KubeStoreSettings::default(),
        Arc::new(SystemClock),
    )
}

/// The JournalSegment objects: how many, and their bytes as stored (JSON).
async fn stored(env: &KubeEnv) -> (usize, usize) {
    let api: Api<JournalSegment> = Api::namespaced(env.client(0).await, NAMESPACE);
    let mut params = ListParams::default().limit(500);
    let (mut count, mut bytes) = (0, 0);
    loop {
        let page = api.list(&params).await.unwrap();
        count += page.items.len();
        bytes += page
            .items
            .iter()
            .map(|s| serde_json::to_vec(s).map_or(0, |v| v.len()))
            .sum::<usize>();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return (count, bytes),
        }
    }
}

/// The first `operations` operations' records of the generated journal,
/// appended to the store as the bot writes them (batches of about a
/// record's worth; a snapshot starts a checkpoint batch). Returns how many.
async fn fill(store: &KubeStore, journal: &Path, operations: usize) -> usize {
    let text = std::fs::read_to_string(journal).unwrap();
    let mut head = store.takeover("bench").await.unwrap().head;
    let mut finished = 0;
    let mut batch = Batch::default();
    let mut lines = 0;
    for line in text.lines() {
        let snapshot = line.contains(r#""type":"snapshot""#);
        if !batch.lines.is_empty() && (snapshot || batch.bytes() > APPEND_BYTES) {
            let full = std::mem::take(&mut batch);
            head = store.append(&head, &full).await.unwrap();
        }
        batch.checkpoint |= batch.lines.is_empty() && snapshot;
        batch.lines.push(line.to_owned());
        lines += 1;
        finished += usize::from(line.contains(r#""type":"finished""#));
        if finished == operations {
            break;
        }
    }
    store.append(&head, &batch).await.unwrap();
    lines
}

/// A kube-apiserver with the JournalSegment CRD and the bot's namespace.
async fn journal_cluster() -> KubeEnv {
    let env = KubeEnv::start(1).await;
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/home/crd-journalsegment.yaml"
    ))
    .unwrap();
    env.apply(0, &crd);
    env.apply(
        0,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"),
    );
    let established = env.kubectl(
        0,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/journalsegments.failover-bot.github.io",
        ],
        None,
    );
    assert!(established.status.success(), "the JournalSegment CRD");
    env
}

async fn kube_part(journal: &Path, operations: usize) {
    let env = journal_cluster().await;
    let clock = Arc::new(OffsetClock::new());
    let store = KubeStore::new(
        env.client(0).await,
        NAMESPACE,
        KubeStoreSettings::default(),
        clock.clone(),
    );
    let filling = Instant::now();
    let lines = fill(&store, journal, operations).await;
    let (count, bytes) = stored(&env).await;
    println!(
        "kube journal, {operations} operations: {lines} records appended in {:.1?}; \
         {count} segments, {:.1} MB as stored",
        filling.elapsed(),
        bytes as f64 / 1_000_000.0
    );
    let at = format!(
        "{}|{}|{NAMESPACE}",
        env.kubeconfig().display(),
        env.clusters()[0].context
    );
    starts(MEASURE_KUBE, OsStr::new(&at));

    let mut out = Vec::new();
    let export = store.export(0, &mut out).await.unwrap();
    store.mark_exported(&export).await.unwrap();
    clock.advance(Duration::from_secs(31 * 24 * 3600));
    let pruned = store
        .prune(Duration::from_secs(30 * 24 * 3600))
        .await
        .unwrap();
    let (count, bytes) = stored(&env).await;
    println!(
        "  export ({:.1} MB of lines) + 30-day retention 31 days later: {} segments deleted; \
         {count} left, {:.1} MB as stored ({})",
        out.len() as f64 / 1_000_000.0,
        pruned.deleted.len(),
        bytes as f64 / 1_000_000.0,
        pruned.stopped_at
    );
    starts(MEASURE_KUBE, OsStr::new(&at));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(path) = std::env::var_os(MEASURE) {
        runtime.block_on(measure(Path::new(&path)));
        return;
    }
    if let Ok(at) = std::env::var(MEASURE_KUBE) {
        runtime.block_on(measure_kube(&at));
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // too, without it: then a small history, to show the bench still works.
    let measuring = std::env::args().any(|a| a == "--bench");
    let operations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if measuring { 100_000 } else { SMOKE_OPERATIONS });
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
    match std::env::var_os("FAILOVER_BOT_KUBE_BIN") {
        Some(_) => runtime.block_on(kube_part(&with, KUBE_OPERATIONS.min(operations))),
        None => println!(
            "kube journal: skipped; provision the test peers first: \
             eval \"$(scripts/test-env/provision)\""
        ),
    }
}
