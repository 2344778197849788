//! The journal's line store in a real API server (kube_env): JournalSegment
//! objects, appended under resourceVersion preconditions, fenced by a
//! writer epoch, archived by export + retention. Faults come from the fault
//! proxy in front of the API server.

mod support;

use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::clock::OffsetClock;
use failover_bot::config::Config;
use failover_bot::engine::{CommandRequest, Engine, Reaction};
use failover_bot::journal::sign::{start_signing, Signer};
use failover_bot::plan::Weights;
use failover_bot::store::journal::{open, Connect, Opened};
use failover_bot::store::kube::{JournalSegment, KubeStore, KubeStoreSettings};
use failover_bot::store::{line_hash, Batch, Head, LineStore, StoreError};
use support::bot::Builder;
use support::chat::RecordingChat;
use support::fault_proxy::{Fault, FaultProxy, Rule, Upstream};
use support::kube_env::{wait_for, KubeEnv, ADMIN_TOKEN};

const NAMESPACE: &str = "failover-bot";
const CRD: &str = "manifests/home/crd-journalsegment.yaml";
const CRD_NAME: &str = "journalsegments.failover-bot.github.io";
/// Small segments, so a few appends cross several boundaries (a line of
/// [`Lines`] is about 110 bytes).
const SEGMENT_BYTES: usize = 400;
/// Segments no test fills: every append patches the open segment.
const ROOMY: usize = 1 << 20;
/// Every append to a non-empty segment seals it and creates the next.
const TINY: usize = 1;

/// One API server with the JournalSegment CRD (Established) and the bot's
/// namespace.
async fn journal_env() -> KubeEnv {
    let env = KubeEnv::start(1).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD);
    let crd = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {CRD}: {e}"));
    env.apply(0, &crd);
    env.apply(
        0,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"),
    );
    let established = wait_for(
        "the JournalSegment CRD Established",
        Duration::from_secs(60),
        || async {
            let out = env.kubectl(
                0,
                &[
                    "get",
                    "crd",
                    CRD_NAME,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                ],
                None,
            );
            String::from_utf8_lossy(&out.stdout).trim() == "True"
        },
    )
    .await;
    assert!(established, "the JournalSegment CRD is Established");
    env
}

fn store_on(client: kube::Client, segment_bytes: usize, clock: &Arc<OffsetClock>) -> KubeStore {
    let settings = KubeStoreSettings {
        segment_bytes,
        call_timeout: Duration::from_secs(2),
        ..KubeStoreSettings::default()
    };
    KubeStore::new(client, NAMESPACE, settings, clock.clone())
}

async fn store(env: &KubeEnv, clock: &Arc<OffsetClock>) -> KubeStore {
    store_on(env.client(0).await, SEGMENT_BYTES, clock)
}

/// A client that reaches cluster 0 through `proxy`.
async fn client_via(env: &KubeEnv, proxy: &FaultProxy) -> kube::Client {
    let path = env.kubeconfig_via(ADMIN_TOKEN, &[proxy.url()]);
    client_at(&path, &env.clusters()[0].context).await
}

/// A client for `context` of the kubeconfig at `path`.
async fn client_at(path: &std::path::Path, context: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn proxy(env: &KubeEnv) -> FaultProxy {
    let (cert, key) = env.serving_cert(0);
    let upstream = Upstream::https(&env.clusters()[0].server, cert.clone(), cert, key);
    FaultProxy::start(upstream).await
}

fn clock() -> Arc<OffsetClock> {
    Arc::new(OffsetClock::frozen_at(
        chrono::DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
    ))
}

/// Journal-like lines: each names its number and the hash of the line
/// before it, padded to about 100 bytes.
struct Lines {
    next: u64,
    last_hash: String,
}

impl Lines {
    fn after(head: &Head) -> Lines {
        Lines {
            next: head.position,
            last_hash: head.last_hash.clone(),
        }
    }

    fn take(&mut self, n: usize, tag: &str) -> Vec<String> {
        (0..n)
            .map(|_| {
                let line = format!(
                    r#"{{"seq":{},"prev":"{}","tag":"{tag}","pad":"{}"}}"#,
                    self.next,
                    self.last_hash,
                    "x".repeat(8)
                );
                self.next += 1;
                self.last_hash = line_hash(&line);
                line
            })
            .collect()
    }
}

/// Every segment in the namespace, oldest first.
async fn segments(env: &KubeEnv) -> Vec<JournalSegment> {
    let api: Api<JournalSegment> = Api::namespaced(env.client(0).await, NAMESPACE);
    let mut all = api.list(&ListParams::default()).await.unwrap().items;
    all.sort_by_key(|s| s.metadata.name.clone());
    all
}

fn names(segments: &[JournalSegment]) -> Vec<String> {
    segments
        .iter()
        .map(|s| s.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn chain_holds(prev_hash: &str, lines: &[String]) -> bool {
    let mut expected = prev_hash.to_owned();
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if value["prev"] != expected.as_str() {
            return false;
        }
        expected = line_hash(line);
    }
    true
}

/// Appends `batches` batches of 1–3 lines, one at a time; returns all lines
/// written and the head after them.
async fn append_many(
    store: &KubeStore,
    mut head: Head,
    batches: usize,
    tag: &str,
) -> (Vec<String>, Head) {
    let mut lines = Lines::after(&head);
    let mut written = Vec::new();
    for i in 0..batches {
        let batch = Batch::new(lines.take(1 + i % 3, tag));
        head = store
            .append(&head, &batch)
            .await
            .unwrap_or_else(|e| panic!("batch {i}: {e}"));
        written.extend(batch.lines);
    }
    (written, head)
}

#[tokio::test]
async fn appends_load_back_in_order_across_segment_boundaries() {
    let env = journal_env().await;
    let clock = clock();
    let writer = store(&env, &clock).await;
    let start = writer.takeover("pod-a").await.unwrap();
    assert!(start.lines.is_empty() && start.head.position == 0);
    let (mut written, head) = append_many(&writer, start.head, 12, "a").await;
    // A checkpoint batch, then more.
    let mut lines = Lines::after(&head);
    let checkpoint = Batch::checkpoint(lines.take(2, "checkpoint"));
    let head = writer.append(&head, &checkpoint).await.unwrap();
    let checkpoint_at = written.len() as u64;
    written.extend(checkpoint.lines.clone());
    let (after, head) = append_many(&writer, head, 6, "b").await;
    written.extend(after);

    let stored = segments(&env).await;
    assert!(
        stored.len() >= 5,
        "{} segments: {:?}",
        stored.len(),
        names(&stored)
    );
    for segment in &stored[..stored.len() - 1] {
        let bytes = segment.spec.bytes();
        assert!(
            segment.spec.sealed_at.is_some(),
            "all but the last are sealed"
        );
        assert!(
            bytes <= SEGMENT_BYTES,
            "{bytes} bytes in {:?}",
            segment.metadata.name
        );
    }

    // Another process reads everything back, in order, chained.
    let reader = store(&env, &clock).await;
    let all = reader.load_from(0).await.unwrap();
    assert_eq!((all.first, all.prev_hash.as_str()), (0, ""));
    assert_eq!(all.lines, written);
    assert!(chain_holds("", &all.lines));
    assert_eq!(all.head, head);
    assert_eq!(head.position, written.len() as u64);
    assert_eq!(head.last_hash, line_hash(written.last().unwrap()));

    // Start-up reads from the checkpoint on; any position can be read.
    let from_checkpoint = reader.load().await.unwrap();
    assert_eq!(from_checkpoint.first, checkpoint_at);
    assert_eq!(from_checkpoint.lines, written[checkpoint_at as usize..]);
    assert_eq!(
        from_checkpoint.prev_hash,
        line_hash(&written[checkpoint_at as usize - 1])
    );
    let middle = reader.load_from(7).await.unwrap();
    assert_eq!(middle.lines, written[7..]);
    assert!(chain_holds(&middle.prev_hash, &middle.lines));

    // The writer carries on where it was.
    let more = Batch::new(Lines::after(&head).take(1, "c"));
    writer.append(&head, &more).await.unwrap();
    assert_eq!(
        reader.load_from(0).await.unwrap().lines.len(),
        written.len() + 1
    );
}

#[tokio::test]
async fn two_writers_racing_for_the_same_append_one_wins_the_other_is_superseded() {
    let env = journal_env().await;
    let clock = clock();
    let head = store(&env, &clock)
        .await
        .takeover("pod-a")
        .await
        .unwrap()
        .head;
    append_many(&store(&env, &clock).await, head, 2, "a").await;

    // Once inside a segment (a patch), once at a boundary (seal + create).
    for (round, segment_bytes) in [("in a segment", ROOMY), ("at a segment boundary", TINY)] {
        let one = store_on(env.client(0).await, segment_bytes, &clock);
        let two = store_on(env.client(0).await, segment_bytes, &clock);
        let head = one.load().await.unwrap().head;
        let lines_each = 2;
        let mut lines = Lines::after(&head);
        let a = Batch::new(lines.take(lines_each, "one"));
        let mut lines = Lines::after(&head);
        let b = Batch::new(lines.take(lines_each, "two"));
        let (ra, rb) = tokio::join!(one.append(&head, &a), two.append(&head, &b));
        let (winner, loser) = match (&ra, &rb) {
            (Ok(_), Err(StoreError::Superseded { .. })) => (&a, rb.unwrap_err()),
            (Err(StoreError::Superseded { .. }), Ok(_)) => (&b, ra.unwrap_err()),
            other => panic!("{round}: exactly one must win: {other:?}"),
        };
        assert!(
            matches!(loser, StoreError::Superseded { .. }),
            "{round}: {loser}"
        );
        let stored = one.load_from(head.position).await.unwrap();
        assert_eq!(
            &stored.lines, &winner.lines,
            "{round}: only the winner's lines"
        );
    }
}

#[tokio::test]
async fn after_a_takeover_every_append_by_the_old_writer_is_refused() {
    let env = journal_env().await;
    let clock = clock();
    let (old, new) = (store(&env, &clock).await, store(&env, &clock).await);
    let head = old.takeover("pod-a").await.unwrap().head;
    let (written, old_head) = append_many(&old, head, 3, "a").await;
    let old_in_segment = store_on(env.client(0).await, ROOMY, &clock);
    let old_at_boundary = store_on(env.client(0).await, TINY, &clock);

    let taken = new.takeover("pod-b").await.unwrap();
    assert_eq!(
        taken.lines, written,
        "the new writer replays what the old one wrote"
    );
    assert_eq!(taken.head.writer, "pod-b");
    assert_eq!(taken.head.epoch, old_head.epoch + 1);

    // The old writer's next append, inside its segment or starting a new
    // one, is refused and names the new writer.
    for old in [old_in_segment, old_at_boundary] {
        let batch = Batch::new(Lines::after(&old_head).take(2, "stale"));
        let refused = old.append(&old_head, &batch).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Superseded { writer } if writer == "pod-b"),
            "{refused}"
        );
    }
    let next = Batch::new(Lines::after(&taken.head).take(1, "b"));
    new.append(&taken.head, &next).await.unwrap();
    let stored = new.load_from(0).await.unwrap().lines;
    assert_eq!(stored.len(), written.len() + 1);
    assert!(stored.iter().all(|l| !l.contains("stale")));
}

#[tokio::test]
async fn a_takeover_while_the_old_writer_is_between_sealing_and_creating_fences_it_too() {
    let env = journal_env().await;
    let clock = clock();
    let (old, new) = (store(&env, &clock).await, store(&env, &clock).await);
    let head = old.takeover("pod-a").await.unwrap().head;
    let (_, head) = append_many(&old, head, 3, "a").await;
    // The old writer seals its head and stops before creating the next
    // segment (as if it stalled there): its create is refused in the proxy.
    let proxy = proxy(&env).await;
    let stalled = store_on(client_via(&env, &proxy).await, TINY, &clock);
    proxy.set(Rule::new(Fault::status(403)).only("POST", "/journalsegments"));
    let big = Batch::new(Lines::after(&head).take(2, "stalled"));
    let refused = stalled.append(&head, &big).await.unwrap_err();
    assert!(matches!(refused, StoreError::Failed { .. }), "{refused}");
    let last = segments(&env).await.pop().unwrap();
    assert!(last.spec.sealed_at.is_some(), "sealed, next not created");

    let taken = new.takeover("pod-b").await.unwrap();
    proxy.clear();
    let refused = stalled.append(&head, &big).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Superseded { writer } if writer == "pod-b"),
        "{refused}"
    );
    new.append(
        &taken.head,
        &Batch::new(Lines::after(&taken.head).take(1, "b")),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_append_whose_answer_is_lost_is_reread_and_not_stored_twice() {
    let env = journal_env().await;
    let clock = clock();
    let proxy = proxy(&env).await;
    let client = client_via(&env, &proxy).await;
    let writer = store_on(client.clone(), ROOMY, &clock);
    let head = writer.takeover("pod-a").await.unwrap().head;
    let (mut written, mut head) = append_many(&writer, head, 2, "a").await;

    // The API server applies the write; its answer never arrives. A patch
    // inside a segment, then a create at a boundary (after a seal that is
    // answered).
    for (method, segment_bytes) in [("PATCH", ROOMY), ("POST", TINY)] {
        let writer = store_on(client.clone(), segment_bytes, &clock);
        proxy.set(
            Rule::new(Fault::LoseAnswer)
                .only(method, "/journalsegments")
                .times(1),
        );
        let batch = Batch::new(Lines::after(&head).take(2, method));
        head = writer
            .append(&head, &batch)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(
            proxy.injected().lost_answers,
            if method == "PATCH" { 1 } else { 2 }
        );
        written.extend(batch.lines);
        let stored = store(&env, &clock).await.load_from(0).await.unwrap();
        assert_eq!(stored.lines, written, "{method}: stored once");
        assert_eq!(stored.head, head);
    }

    // The answer is lost and the re-read fails too: Unknown, nothing acted
    // on. Asked again once the server answers, it is stored once.
    proxy.set(
        Rule::new(Fault::LoseAnswer)
            .only("PATCH", "/journalsegments")
            .times(1),
    );
    let batch = Batch::new(Lines::after(&head).take(1, "unknown"));
    let silence_after_the_patch = async {
        while proxy.injected().lost_answers < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        proxy.set(Fault::Timeout);
    };
    let (answer, ()) = tokio::join!(writer.append(&head, &batch), silence_after_the_patch);
    let unknown = answer.unwrap_err();
    assert!(matches!(unknown, StoreError::Unknown { .. }), "{unknown}");
    proxy.clear();
    let head_after = writer.append(&head, &batch).await.unwrap();
    written.extend(batch.lines);
    let stored = store(&env, &clock).await.load_from(0).await.unwrap();
    assert_eq!(stored.lines, written, "stored once");
    assert_eq!(stored.head, head_after);
}

#[tokio::test]
async fn export_and_retention_delete_only_exported_segments_before_the_checkpoint() {
    let env = journal_env().await;
    let clock = clock();
    let writer = store(&env, &clock).await;
    let head = writer.takeover("pod-a").await.unwrap().head;
    let (mut written, head) = append_many(&writer, head, 9, "old").await;

    let mut exported = Vec::new();
    let export = writer.export(0, &mut exported).await.unwrap();
    assert_eq!(
        String::from_utf8(exported).unwrap(),
        written.iter().map(|l| format!("{l}\n")).collect::<String>()
    );
    assert_eq!((export.first, export.lines), (0, written.len() as u64));
    let marked = writer.mark_exported(&export).await.unwrap();
    assert_eq!(marked, export.sealed.len());
    assert!(marked >= 2, "{export:?}");

    // Written after the export: never exported, so never deleted.
    let (later, head) = append_many(&writer, head, 6, "later").await;
    written.extend(later);
    let checkpoint = Batch::checkpoint(Lines::after(&head).take(1, "checkpoint"));
    writer.append(&head, &checkpoint).await.unwrap();
    written.extend(checkpoint.lines);
    let before = names(&segments(&env).await);

    let retention = Duration::from_secs(30 * 24 * 3600);
    let young = writer.prune(retention).await.unwrap();
    assert!(young.deleted.is_empty(), "{young:?}");
    assert!(
        young.stopped_at.contains("younger than the retention"),
        "{young:?}"
    );

    clock.advance(retention + Duration::from_secs(3600));
    let pruned = writer.prune(retention).await.unwrap();
    assert_eq!(
        pruned.deleted.len(),
        marked,
        "exactly the exported segments: {pruned:?}"
    );
    assert!(pruned.stopped_at.contains("was not exported"), "{pruned:?}");
    let after = names(&segments(&env).await);
    assert_eq!(after, before[marked..], "the oldest go, the rest stay");

    // What is kept still loads and chains on from the deleted lines.
    let kept = writer.load_from(0).await.unwrap();
    let first = kept.first as usize;
    assert!(first > 0);
    assert_eq!(kept.lines, written[first..]);
    assert_eq!(kept.prev_hash, line_hash(&written[first - 1]));
    assert!(chain_holds(&kept.prev_hash, &kept.lines));
    let restart = writer.load().await.unwrap();
    assert_eq!(restart.lines, written[written.len() - 1..]);
}

#[tokio::test]
async fn a_missing_segment_is_reported_not_skipped() {
    let env = journal_env().await;
    let clock = clock();
    let writer = store(&env, &clock).await;
    let head = writer.takeover("pod-a").await.unwrap().head;
    let (_, head) = append_many(&writer, head, 6, "a").await;
    let checkpoint = Batch::checkpoint(Lines::after(&head).take(1, "checkpoint"));
    let head = writer.append(&head, &checkpoint).await.unwrap();
    let checkpoint_segment = head.segment().unwrap();
    append_many(&writer, head, 6, "b").await;
    let api: Api<JournalSegment> = Api::namespaced(env.client(0).await, NAMESPACE);

    // A gap in the middle of the journal.
    api.delete("segment-000002", &DeleteParams::default())
        .await
        .unwrap();
    let error = writer.load_from(0).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(
        error.to_string().contains("segment-000002 is missing"),
        "{error}"
    );

    // The segment start-up needs (the latest checkpoint's) is gone, with
    // everything before it: start-up must not begin after it.
    let needed = format!("segment-{checkpoint_segment:06}");
    for number in 1..=checkpoint_segment {
        let _ = api
            .delete(&format!("segment-{number:06}"), &DeleteParams::default())
            .await;
    }
    let error = writer.load().await.unwrap_err();
    assert!(
        error.to_string().contains(&format!("{needed} is missing")),
        "{error}"
    );
}

/// `failover-bot journal …` against the API server (admin kubeconfig).
fn journal_command(env: &KubeEnv, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .arg("journal")
        .args(args)
        .args([
            "--context",
            &env.clusters()[0].context,
            "--namespace",
            NAMESPACE,
        ])
        .env("KUBECONFIG", env.kubeconfig())
        .env_remove("POD_NAMESPACE")
        .output()
        .unwrap()
}

#[tokio::test]
async fn journal_export_writes_every_line_and_prune_deletes_only_what_it_marked() {
    let env = journal_env().await;
    let clock = clock();
    let writer = store(&env, &clock).await;
    let head = writer.takeover("pod-a").await.unwrap().head;
    let (mut written, head) = append_many(&writer, head, 6, "a").await;
    let checkpoint = Batch::checkpoint(Lines::after(&head).take(1, "checkpoint"));
    let checkpoint_segment = writer.append(&head, &checkpoint).await.unwrap().segment();
    written.extend(checkpoint.lines);
    let expected: String = written.iter().map(|l| format!("{l}\n")).collect();

    // To standard output, then to a file.
    let out = journal_command(&env, &["export"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("journal.jsonl");
    let out = journal_command(&env, &["export", "--output", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), expected);
    let sealed = segments(&env).await.len() - 1;
    assert!(
        said.contains(&format!("exported {} line(s) from line 0", written.len()))
            && said.contains(&format!("{sealed} sealed segment(s) marked exported")),
        "{said}"
    );
    assert!(segments(&env).await[..sealed]
        .iter()
        .all(|s| s.spec.exported_at.is_some()));

    // Bad input: a short error, nothing deleted.
    let out = journal_command(&env, &["prune", "--retention", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retention"));
    // A retention longer than time itself keeps everything.
    let out = journal_command(&env, &["prune", "--retention", "1000000000y"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("deleted nothing"),
        "{said}"
    );
    // Everything before the checkpoint's segment was exported: with a
    // retention of zero, all of it goes (the command runs on the real clock).
    let out = journal_command(&env, &["prune", "--retention", "0s"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let kept = segments(&env).await;
    assert_eq!(
        names(&kept),
        [format!("segment-{:06}", checkpoint_segment.unwrap())]
    );
    let deleted = format!("deleted {sealed} segment(s), segment-000001 to ");
    assert!(
        said.contains(&deleted) && said.contains("latest checkpoint"),
        "{said}"
    );
    assert_eq!(
        writer.load_from(0).await.unwrap().lines,
        written[kept[0].spec.first() as usize..]
    );
}

// ------------------------------------------------ the journal on the store

/// Segments that a few records fill: an operation's records cross several.
const JOURNAL_SEGMENT_BYTES: usize = 2048;
const JOURNAL_NAME: &str = "kube:failover-bot";

/// The store on cluster 0, made on the journal's own thread (as `serve
/// --journal kube` makes it).
fn connect_to(env: &KubeEnv) -> Connect {
    let path = env.kubeconfig().to_owned();
    let context = env.clusters()[0].context.clone();
    Box::new(move || {
        Box::pin(async move {
            let client = client_at(&path, &context).await;
            let store = store_on(client, JOURNAL_SEGMENT_BYTES, &clock());
            Ok(Arc::new(store) as Arc<dyn LineStore>)
        })
    })
}

/// Opens the journal on cluster 0 as `writer`, taking it over.
async fn open_as(env: &KubeEnv, writer: &str) -> Opened {
    open(connect_to(env), writer, JOURNAL_NAME)
        .await
        .unwrap_or_else(|e| panic!("the journal opens as {writer}: {e}"))
}

/// An engine in the test config's environment (blue 100, green 0 in
/// memory) on `opened`.
fn engine_on(parts: &Builder, opened: Opened) -> Engine {
    parts.clone().build_on(opened.journal, opened.records)
}

fn parts(memory: &Arc<MemoryBackend>, chat: &Arc<RecordingChat>) -> Builder {
    let config = Config::from_yaml(support::CONFIG).expect("test config");
    Builder::new(config)
        .backend(memory.clone())
        .chat(chat.clone())
}

async fn command(engine: &Engine, user: &str, text: &str, event: &str) {
    engine
        .handle_command(CommandRequest {
            user: user.into(),
            channel: "C1".into(),
            text: text.into(),
            event_id: Some(event.into()),
        })
        .await;
}

/// `user` approves the newest plan awaiting approval.
async fn approve(engine: &Engine, user: &str, event: &str) {
    let message = engine
        .pending_plan_messages()
        .pop()
        .expect("a plan awaits approval");
    engine
        .handle_reaction(Reaction {
            user: user.into(),
            name: "white_check_mark".into(),
            message,
            added: true,
            event_id: Some(event.into()),
        })
        .await;
}

fn expect_weights(memory: &MemoryBackend, blue: u8, green: u8) {
    let expected: Weights = support::weights(&[
        ("k8s-blue.dev.example.com", blue),
        ("k8s-green.dev.example.com", green),
    ]);
    assert_eq!(memory.weights(), expected);
}

#[tokio::test]
async fn an_operation_on_the_kube_journal_resumes_after_a_restart_and_its_export_verifies() {
    let env = journal_env().await;
    let memory = Arc::new(MemoryBackend::from_config(
        &Config::from_yaml(support::CONFIG).unwrap(),
    ));
    let chat = Arc::new(RecordingChat::default());
    let parts = parts(&memory, &chat);

    // A two-step failover; the bot dies after the first step.
    let first = open_as(&env, "bot-1").await;
    assert!(first.records.is_empty(), "a new journal is empty");
    let engine = engine_on(&parts, first);
    command(&engine, "alice", "to green steps 50,100", "Ev1").await;
    approve(&engine, "bob", "Ev2").await;
    expect_weights(&memory, 50, 50);
    drop(engine);

    // Another process opens the same journal: the same records, and step 2
    // still awaits its approval.
    let second = open_as(&env, "bot-2").await;
    let replayed = second.records.len();
    assert!(replayed >= 6, "the first run's records: {replayed}");
    let seqs: Vec<u64> = second.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=replayed as u64).collect::<Vec<_>>());
    let engine = engine_on(&parts, second);
    engine.resume().await;
    approve(&engine, "bob", "Ev3").await;
    expect_weights(&memory, 0, 100);
    assert!(
        engine.active_operation("dev").is_none(),
        "the failover ended"
    );
    drop(engine);
    assert!(
        segments(&env).await.len() > 2,
        "the records crossed segment boundaries"
    );

    // The chain, exported from the store, verifies as a file journal does.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let out = journal_command(&env, &["export", "--output", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read_to_string(&file).unwrap();
    assert!(exported.lines().count() > replayed);
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["audit", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "audit verify: {said}");
}

#[tokio::test]
async fn after_a_takeover_the_old_engine_records_nothing_and_changes_no_weight() {
    let env = journal_env().await;
    let memory = Arc::new(MemoryBackend::from_config(
        &Config::from_yaml(support::CONFIG).unwrap(),
    ));
    let chat = Arc::new(RecordingChat::default());
    let parts = parts(&memory, &chat);

    let old = open_as(&env, "bot-1").await;
    let mut old_fenced = old.fenced.clone();
    let old = engine_on(&parts, old);
    command(&old, "alice", "shift 50", "Ev1").await;
    assert_eq!(old.pending_plan_messages().len(), 1);

    // A new leader takes the journal over while the old one still runs,
    // and has appended nothing yet: the takeover alone fences the old one.
    let new = open_as(&env, "bot-2").await;
    let taken_over_at = new.records.len();

    // The old one's approval reaches it first: its journal refuses the
    // record, so it never applies the plan, and it is told to stop.
    approve(&old, "bob", "Ev2").await;
    expect_weights(&memory, 100, 0);
    let why = tokio::time::timeout(Duration::from_secs(5), old_fenced.broken())
        .await
        .expect("the old writer is told it was fenced");
    assert!(why.contains("newer writer"), "{why}");
    // Nor can it abort the operation the new one now runs: that would be
    // a record too.
    command(&old, "alice", "abort", "Ev3").await;

    // The new one resumes and finishes the operation; only its records
    // follow the takeover.
    let new = engine_on(&parts, new);
    new.resume().await;
    approve(&new, "bob", "Ev4").await;
    expect_weights(&memory, 50, 50);
    drop((old, new));
    let last = open_as(&env, "bot-3").await;
    let after: Vec<String> = last.records[taken_over_at..]
        .iter()
        .map(|r| r.entry.name().to_owned())
        .collect();
    assert!(!after.contains(&"command".to_owned()), "{after:?}");
    assert!(after.contains(&"step_finished".to_owned()), "{after:?}");
}

#[tokio::test]
async fn journal_import_moves_a_file_journal_in_with_the_same_records_and_chain() {
    let env = journal_env().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1.jsonl");
    let file = dir.path().join("journal.jsonl");
    std::fs::copy(&fixture, &file).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();

    // Bad input first: a broken chain is refused and writes nothing.
    let edited = dir.path().join("edited.jsonl");
    std::fs::write(&edited, text.replacen("\"seq\":2", "\"seq\":20", 1)).unwrap();
    let out = journal_command(&env, &["import", edited.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("chain breaks at line"),
        "{said}"
    );
    assert!(segments(&env).await.is_empty(), "nothing imported");

    // A file journal (a v1 one, from before format versions) moves in.
    let out = journal_command(&env, &["import", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let count = text.lines().count();
    assert!(
        said.contains(&format!("imported {count} line(s)")),
        "{said}"
    );

    // The bot opens the same records from the cluster as from the file.
    let (_, from_file) = failover_bot::journal::Journal::open(&file).unwrap();
    let opened = open_as(&env, "bot-1").await;
    assert_eq!(opened.records, from_file);

    // Only into an empty journal.
    let out = journal_command(&env, &["import", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("already holds"),
        "{said}"
    );
}

#[tokio::test]
async fn a_signed_journal_in_the_home_cluster_verifies_with_the_public_key_after_a_restart() {
    let env = journal_env().await;
    let memory = Arc::new(MemoryBackend::from_config(
        &Config::from_yaml(support::CONFIG).unwrap(),
    ));
    let chat = Arc::new(RecordingChat::default());
    let parts = parts(&memory, &chat);
    let signer = Signer::generate().unwrap();

    let mut first = open_as(&env, "bot-1").await;
    let problem = start_signing(&mut first.journal, &first.tail, signer.clone(), Utc::now())
        .expect("the journal signs");
    assert_eq!(problem, None, "a new journal");
    let engine = engine_on(&parts, first);
    command(&engine, "alice", "to green steps 50,100", "Ev1").await;
    approve(&engine, "bob", "Ev2").await;
    drop(engine);

    let mut second = open_as(&env, "bot-2").await;
    let problem = start_signing(
        &mut second.journal,
        &second.tail,
        signer.clone(),
        Utc::now(),
    )
    .expect("the journal signs");
    assert_eq!(problem, None, "every record so far is signed by the key");
    let engine = engine_on(&parts, second);
    engine.resume().await;
    approve(&engine, "bob", "Ev3").await;
    expect_weights(&memory, 0, 100);
    drop(engine);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let public = dir.path().join("bot.pub");
    std::fs::write(&public, signer.public().to_string()).unwrap();
    let out = journal_command(&env, &["export", "--output", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["audit", "verify"])
        .arg(&file)
        .arg("--public-key")
        .arg(&public)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "audit verify: {said}");
    assert!(said.contains("✓ signatures:"), "{said}");
}
