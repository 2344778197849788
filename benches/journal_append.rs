//! The Kubernetes journal store on a real kube-apiserver + etcd started
//! here (issue 13: append p99 < 20 ms):
//! - append latency p50 / p90 / p99 / max of one-line appends (a typical
//!   record, ~300 bytes), split into appends inside a segment (one JSON
//!   patch) and appends that start a segment (seal + create), for segment
//!   limits of 8, 16 and 32 KiB (`JOURNAL_BENCH_SEGMENT_KIB=8,16,32`): the
//!   API server reads, validates and writes the whole object every time;
//! - the same lines appended to a local file with an fsync each (what the
//!   file journal does), for scale;
//! - whole journal appends (a record made, chained, and stored) through the
//!   journal on the store (`serve --journal kube`: the store on its own
//!   thread, the engine's thread waiting) and through the file journal, at
//!   the default segment limit;
//! - segment sizes: lines, bytes of lines, and the whole object as stored
//!   (JSON), which etcd keeps one revision of per append;
//! - at the default limit: load times, start-up (from the latest
//!   checkpoint) and the whole journal; then export + retention and what is
//!   left.
//!
//! Run: `cargo bench --bench journal_append` after `scripts/test-env/provision`.

#[path = "../tests/support/kube_env.rs"]
mod kube_env;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};

use failover_bot::clock::{OffsetClock, SystemClock};
use failover_bot::journal::{Entry, Journal};
use failover_bot::store::journal::Connect;
use failover_bot::store::kube::{JournalSegment, KubeStore, KubeStoreSettings};
use failover_bot::store::{line_hash, Batch, Head, LineStore};

const NAMESPACE: &str = "failover-bot";
const SIZES_KIB: &str = "8,16,32";
const APPENDS: usize = 3_000;
/// A checkpoint every this many appends (as the lead's compaction might).
const CHECKPOINT_EVERY: usize = 1_000;

/// A record-like line of about 300 bytes chained to the one before.
fn line(seq: u64, prev: &str) -> String {
    format!(
        r#"{{"seq":{seq},"at":"2026-01-05T10:00:00.000Z","prev":"{prev}","type":"decided","op":{},"step":1,"plan":"{}","state":"approved","event":"Ev0{seq:08}","user":"U0ALICE","note":"{}"}}"#,
        seq / 7,
        &prev[..prev.len().min(16)],
        "x".repeat(60)
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what:<44} n={:>5}  p50 {:>7.2?}  p90 {:>7.2?}  p99 {:>7.2?}  max {:>7.2?}",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or_default()
    );
}

async fn namespace(env: &kube_env::KubeEnv, name: &str) {
    env.apply(
        0,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
    );
}

async fn journal_env() -> kube_env::KubeEnv {
    let env = kube_env::KubeEnv::start(1).await;
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/home/crd-journalsegment.yaml"
    ))
    .expect("manifests/home/crd-journalsegment.yaml");
    env.apply(0, &crd);
    namespace(&env, NAMESPACE).await;
    let ready = kube_env::wait_for("JournalSegment CRD", Duration::from_secs(60), || async {
        let out = env.kubectl(0, &["get", "journalsegments", "-n", NAMESPACE], None);
        out.status.success()
    })
    .await;
    assert!(ready, "the JournalSegment CRD is served");
    env
}

/// Appends `APPENDS` one-line batches; returns (inside a segment, starting
/// a segment) latencies and the last head.
async fn append_all(store: &KubeStore, mut head: Head) -> (Vec<Duration>, Vec<Duration>, Head) {
    let (mut inside, mut starting) = (Vec::new(), Vec::new());
    let mut prev = head.last_hash.clone();
    for i in 0..APPENDS {
        let text = line(head.position, &prev);
        prev = line_hash(&text);
        let batch = match i % CHECKPOINT_EVERY {
            0 if i > 0 => Batch::checkpoint(vec![text]),
            _ => Batch::new(vec![text]),
        };
        let before = head.position;
        let started = Instant::now();
        let after = store.append(&head, &batch).await.expect("append");
        let took = started.elapsed();
        let segment_before = head.segment();
        head = after;
        assert_eq!(head.position, before + 1);
        if head.segment() != segment_before {
            starting.push(took);
        } else {
            inside.push(took);
        }
    }
    (inside, starting, head)
}

fn file_appends(lines: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = std::fs::File::create(dir.path().join("journal.jsonl")).expect("file");
    let mut prev = String::new();
    (0..lines as u64)
        .map(|seq| {
            let text = line(seq, &prev);
            prev = line_hash(&text);
            let started = Instant::now();
            file.write_all(text.as_bytes()).expect("write");
            file.write_all(b"\n").expect("write");
            file.sync_data().expect("fsync");
            started.elapsed()
        })
        .collect()
}

async fn segment_sizes(env: &kube_env::KubeEnv, namespace: &str) -> Vec<(usize, usize, usize)> {
    let api: Api<JournalSegment> = Api::namespaced(env.client(0).await, namespace);
    let segments = api.list(&ListParams::default()).await.expect("list");
    segments
        .items
        .iter()
        .map(|s| {
            let stored = serde_json::to_vec(s).map(|v| v.len()).unwrap_or(0);
            (s.spec.lines.len(), s.spec.bytes(), stored)
        })
        .collect()
}

fn describe_sizes(what: &str, sizes: &[(usize, usize, usize)]) {
    let n = sizes.len().max(1);
    let total: usize = sizes.iter().map(|s| s.2).sum();
    let max = sizes.iter().map(|s| s.2).max().unwrap_or(0);
    let lines: usize = sizes.iter().map(|s| s.0).sum();
    println!(
        "{what}: {} segments, {lines} lines, {:.1} lines/segment, line bytes {:.1} KiB/segment, \
         object as stored {:.1} KiB mean / {:.1} KiB max, {:.1} KiB in all",
        sizes.len(),
        lines as f64 / n as f64,
        sizes.iter().map(|s| s.1).sum::<usize>() as f64 / n as f64 / 1024.0,
        total as f64 / n as f64 / 1024.0,
        max as f64 / 1024.0,
        total as f64 / 1024.0
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// The segment limits to measure, in KiB.
fn sizes_kib() -> Vec<usize> {
    let list = std::env::var("JOURNAL_BENCH_SEGMENT_KIB").unwrap_or_else(|_| SIZES_KIB.into());
    list.split(',')
        .map(|kib| {
            kib.trim()
                .parse()
                .expect("JOURNAL_BENCH_SEGMENT_KIB: numbers")
        })
        .collect()
}

/// Appends with segments of `kib` KiB in a namespace of their own.
async fn appends_with(env: &kube_env::KubeEnv, kib: usize, clock: &Arc<OffsetClock>) {
    let namespace = format!("bench-{kib}k");
    self::namespace(env, &namespace).await;
    let settings = KubeStoreSettings {
        segment_bytes: kib * 1024,
        ..KubeStoreSettings::default()
    };
    let store = KubeStore::new(env.client(0).await, &namespace, settings, clock.clone());
    let head = store.takeover("bench").await.expect("takeover").head;
    let (inside, starting, _) = append_all(&store, head).await;
    let mut all = inside.clone();
    all.extend(starting.iter().copied());
    report(&format!("{kib:>2} KiB segments: append, all"), all);
    report(&format!("{kib:>2} KiB segments: inside a segment"), inside);
    report(
        &format!("{kib:>2} KiB segments: starting a segment"),
        starting,
    );
    describe_sizes(
        &format!("{kib:>2} KiB segments"),
        &segment_sizes(env, &namespace).await,
    );
}

/// A command record, as the engine journals one.
fn command_entry(i: usize) -> Entry {
    Entry::Command {
        user: "U0ALICE".into(),
        channel: "C0FAILOVER".into(),
        text: format!("shift {} to k8s-green.prod.example.com", i % 100),
        event: Some(format!("Ev0{i:08}")),
        answered: false,
    }
}

/// `APPENDS` records appended one at a time to `journal`, each timed.
fn journal_appends(journal: &mut Journal) -> Vec<Duration> {
    (0..APPENDS)
        .map(|i| {
            let started = Instant::now();
            journal
                .append(chrono::Utc::now(), command_entry(i))
                .expect("journal append");
            started.elapsed()
        })
        .collect()
}

/// Whole journal appends: on the store (a namespace of its own), and in a
/// file.
async fn journal_level(env: &kube_env::KubeEnv) {
    let namespace = "bench-journal";
    self::namespace(env, namespace).await;
    let kubeconfig = env.kubeconfig().to_owned();
    let context = env.clusters()[0].context.clone();
    let connect: Connect = Box::new(move || {
        Box::pin(async move {
            let store = store_at(&kubeconfig, &context, namespace).await;
            Ok(Arc::new(store) as Arc<dyn LineStore>)
        })
    });
    let mut opened = failover_bot::store::journal::open(connect, "bench", "kube:bench")
        .await
        .expect("the journal on the store opens");
    let on_store = tokio::task::block_in_place(|| journal_appends(&mut opened.journal));
    report("journal append (record), kube journal", on_store);
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut file, _) = Journal::open(&dir.path().join("journal.jsonl")).expect("file journal");
    report(
        "journal append (record), file journal",
        journal_appends(&mut file),
    );
}

/// The store in `namespace`, through a client made on the calling runtime
/// (the journal's own thread).
async fn store_at(kubeconfig: &std::path::Path, context: &str, namespace: &str) -> KubeStore {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let options = kube::config::KubeConfigOptions {
        context: Some(context.to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(config, &options)
        .await
        .expect("kube config");
    let client = kube::Client::try_from(config).expect("client");
    KubeStore::new(
        client,
        namespace,
        KubeStoreSettings::default(),
        Arc::new(SystemClock),
    )
}

async fn run() {
    let env = journal_env().await;
    let clock = Arc::new(OffsetClock::new());
    println!("{APPENDS} one-line appends of ~300 bytes, a checkpoint every {CHECKPOINT_EVERY}");
    for kib in sizes_kib() {
        appends_with(&env, kib, &clock).await;
    }
    report("file append + fsync (same lines)", file_appends(APPENDS));
    journal_level(&env).await;

    let settings = KubeStoreSettings::default();
    println!(
        "default limit, {} KiB: start-up, export, retention",
        settings.segment_bytes / 1024
    );
    let store = KubeStore::new(env.client(0).await, NAMESPACE, settings, clock.clone());
    let head = store.takeover("bench").await.expect("takeover").head;
    append_all(&store, head).await;

    let started = Instant::now();
    let startup = store.load().await.expect("load");
    println!(
        "load from the latest checkpoint: {} lines in {:.1?}",
        startup.lines.len(),
        started.elapsed()
    );
    let started = Instant::now();
    let whole = store.load_from(0).await.expect("load all");
    println!(
        "load of the whole journal: {} lines in {:.1?}",
        whole.lines.len(),
        started.elapsed()
    );

    let started = Instant::now();
    let mut out = Vec::new();
    let export = store.export(0, &mut out).await.expect("export");
    let marked = store.mark_exported(&export).await.expect("mark");
    println!(
        "export: {} lines, {:.1} KiB of JSON lines, {marked} sealed segments marked, in {:.1?}",
        export.lines,
        out.len() as f64 / 1024.0,
        started.elapsed()
    );
    clock.advance(Duration::from_secs(31 * 24 * 3600));
    let started = Instant::now();
    let pruned = store
        .prune(Duration::from_secs(30 * 24 * 3600))
        .await
        .expect("prune");
    println!(
        "retention 30 d, 31 d later: deleted {} segments in {:.1?} ({})",
        pruned.deleted.len(),
        started.elapsed(),
        pruned.stopped_at
    );
    describe_sizes("kept", &segment_sizes(&env, NAMESPACE).await);
}
