//! The journal in the home cluster's API server: [`JournalSegment`]s in the
//! bot's namespace (see [`segment`] for the object and why it is a CRD of
//! the bot's own).
//!
//! # Writing
//!
//! The head is the highest-numbered segment. An append adds its lines to
//! the head with a resourceVersion precondition (a JSON patch, so only the
//! new lines travel); when they would make it larger than
//! [`KubeStoreSettings::segment_bytes`], the head is sealed (again under its
//! resourceVersion) and the next segment is created by name with the lines.
//! Every revision of an object is kept whole in etcd until compaction, and
//! the API server handles the whole object on every append, so segments
//! stay small: 16 KiB by default (see [`KubeStoreSettings`]).
//!
//! # Fencing
//!
//! Every segment carries a writer epoch. [`LineStore::takeover`] raises it
//! on the head under the head's resourceVersion (or creates the next
//! segment with it, if the head was sealed). From then on, every append
//! prepared before the takeover fails its precondition: a patch of the head
//! fails on the resourceVersion, a create of the next segment on the name
//! (the takeover made it, or sealing the head first fails). The failed
//! writer re-reads the lines after its head: a newer epoch or other lines
//! mean it was superseded.
//!
//! # Answers that never came
//!
//! A write whose answer is lost (a timeout, a reset connection, a 5xx from
//! a server that may still apply it) is judged by re-reading: if exactly
//! the batch follows the head in the same epoch, it landed; if nothing does,
//! it is tried again under the same precondition (so at most one of the two
//! tries can land); anything else is another writer's. Only when the
//! re-read fails too is the answer [`StoreError::Unknown`].

pub mod archive;
pub mod segment;

use crate::backend::kube::tls::TlsVerification;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

pub use self::segment::{crd_yaml, CheckpointRef, JournalSegment, JournalSegmentSpec};
use self::segment::{segment_name, segment_number, unless_empty, FIRST_LINE_LABEL};
use super::{check_batch, judge, Batch, Head, Judgement, LineStore, Loaded, StoreError, Tip};
use crate::clock::Clock;

/// The most bytes one append may carry: well under etcd's 1.5 MiB request
/// limit even with JSON escaping, and far more than any batch of records.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Lines per page when listing segment names.
const LIST_PAGE: u32 = 500;
/// Segments read at once while loading.
const PARALLEL_READS: usize = 4;
/// Tries of an append whose precondition failed with nothing appended (a
/// segment's metadata changed), and of a takeover that raced an append.
const TRIES: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeStoreSettings {
    /// A segment is sealed when the next batch would take it past this.
    pub segment_bytes: usize,
    /// The longest any one call to the API server may take.
    pub call_timeout: Duration,
    /// Whether the home cluster's context may skip TLS verification.
    pub tls: TlsVerification,
}

impl Default for KubeStoreSettings {
    /// 16 KiB segments: the API server reads, validates and writes the
    /// whole object on every append, and etcd keeps each revision whole, so
    /// an append's cost grows with the segment. On the test API server
    /// (benches/journal_append.rs, a shared 2-core machine) one-line appends
    /// took p50/p99 4.1/16.9 ms with 8 KiB segments, 5.9/18.3 ms with 16 KiB
    /// and 8.4/44.9 ms with 32 KiB at a load average of 3–4; at 9–11 the p99s
    /// were 20.8, 36.1 and 102 ms (p50s unchanged). 16 KiB holds about fifty
    /// records; 8 KiB is the choice where p99 matters more than objects.
    fn default() -> Self {
        Self {
            segment_bytes: 16 * 1024,
            call_timeout: Duration::from_secs(5),
            tls: TlsVerification::Required,
        }
    }
}

/// The kube store's part of a [`Head`]: the segment the next line goes into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentTip {
    number: u64,
    /// Of the open segment; `None`: segment `number` is yet to be created.
    resource_version: Option<String>,
    /// Bytes of lines already in the segment.
    bytes: usize,
    /// The latest checkpoint, carried into the next segment.
    checkpoint: Option<CheckpointRef>,
}

impl SegmentTip {
    pub fn number(&self) -> u64 {
        self.number
    }
}

pub struct KubeStore {
    api: Api<JournalSegment>,
    settings: KubeStoreSettings,
    clock: Arc<dyn Clock>,
}

/// How one call to the API server ended, when not with an answer.
#[derive(Debug)]
enum CallError {
    /// 409: a precondition failed or the name exists.
    Conflict,
    NotFound,
    /// The server refused the call (4xx): nothing was done.
    Refused(String),
    /// No answer, or one that does not say whether it was done.
    Unsure(String),
}

impl CallError {
    fn from_kube(error: kube::Error) -> CallError {
        match error {
            kube::Error::Api(status) if status.code == 409 => CallError::Conflict,
            kube::Error::Api(status) if status.code == 404 => CallError::NotFound,
            // A 500/503/504 may come from a server whose storage still
            // completes the write; 429 is only ever a refusal.
            kube::Error::Api(status) if status.code >= 500 => {
                CallError::Unsure(format!("{} ({})", status.message, status.code))
            }
            kube::Error::Api(status) => {
                CallError::Refused(format!("{} ({})", status.message, status.code))
            }
            other => CallError::Unsure(crate::backend::kube::with_causes(&other)),
        }
    }

    fn reason(&self) -> String {
        match self {
            CallError::Conflict => "conflict".into(),
            CallError::NotFound => "not found".into(),
            CallError::Refused(reason) | CallError::Unsure(reason) => reason.clone(),
        }
    }
}

impl KubeStore {
    pub fn new(
        client: Client,
        namespace: &str,
        settings: KubeStoreSettings,
        clock: Arc<dyn Clock>,
    ) -> KubeStore {
        KubeStore {
            api: Api::namespaced(client, namespace),
            settings,
            clock,
        }
    }

    /// The store in `namespace` of the cluster of kubeconfig `context`
    /// (`in-cluster`: the cluster the bot runs in).
    pub async fn connect(
        context: &str,
        namespace: &str,
        settings: KubeStoreSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<KubeStore, StoreError> {
        let client = crate::backend::kube::client_for_context(context, settings.tls)
            .await
            .map_err(|reason| StoreError::Failed {
                what: format!("connecting to context {context}"),
                reason,
            })?;
        Ok(KubeStore::new(client, namespace, settings, clock))
    }

    fn now(&self) -> String {
        self.clock
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Runs one call with the store's timeout.
    async fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(self.settings.call_timeout, call).await {
            Ok(answer) => answer.map_err(CallError::from_kube),
            Err(_) => Err(CallError::Unsure(format!(
                "no answer within {:?}",
                self.settings.call_timeout
            ))),
        }
    }

    fn failed(what: impl Into<String>, error: CallError) -> StoreError {
        StoreError::Failed {
            what: what.into(),
            reason: error.reason(),
        }
    }

    // ------------------------------------------------------------ reading

    /// Every segment's number and first position (from its label), oldest
    /// first, listed by metadata only.
    async fn list(&self) -> Result<Vec<(u64, Option<u64>)>, StoreError> {
        let mut found = Vec::new();
        let mut params = ListParams::default().limit(LIST_PAGE);
        loop {
            let page = self
                .call(self.api.list_metadata(&params))
                .await
                .map_err(|e| Self::failed("listing journal segments", e))?;
            for meta in &page.items {
                let name = meta.metadata.name.as_deref().unwrap_or_default();
                let Some(number) = segment_number(name) else {
                    continue;
                };
                let first = meta
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(FIRST_LINE_LABEL))
                    .and_then(|first| first.parse().ok());
                found.push((number, first));
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    async fn get(&self, number: u64) -> Result<Option<JournalSegment>, StoreError> {
        let name = segment_name(number);
        self.call(self.api.get_opt(&name))
            .await
            .map_err(|e| Self::failed(format!("reading {name}"), e))
    }

    /// Segments `from..to`, read a few at a time, in order. Leading ones
    /// that are gone were archived meanwhile and are skipped; a gap after
    /// the first one found is corruption.
    async fn read_range(&self, from: u64, to: u64) -> Result<Vec<JournalSegment>, StoreError> {
        let found: Vec<Option<JournalSegment>> = futures::stream::iter(from..to)
            .map(|number| self.get(number))
            .buffered(PARALLEL_READS)
            .try_collect()
            .await?;
        let mut run = Vec::with_capacity(found.len());
        for (number, segment) in (from..to).zip(found) {
            match segment {
                Some(segment) => run.push(segment),
                None if run.is_empty() => {}
                None => return Err(missing(number)),
            }
        }
        Ok(run)
    }

    /// Segment `number` and every one after it (a segment is followed only
    /// once it is sealed). Empty if `number` does not exist.
    async fn read_tail(&self, number: u64) -> Result<Vec<JournalSegment>, StoreError> {
        let mut run = Vec::new();
        let mut next = number;
        while let Some(segment) = self.get(next).await? {
            let sealed = segment.spec.is_sealed();
            run.push(segment);
            if !sealed {
                break;
            }
            next += 1;
        }
        Ok(run)
    }

    /// The segments from the one holding `start` to the head.
    async fn read_from(&self, start: Start) -> Result<Vec<JournalSegment>, StoreError> {
        let listed = self.list().await?;
        let Some(&(last, _)) = listed.last() else {
            return Ok(Vec::new());
        };
        let tail = self.read_tail(last).await?;
        if tail.is_empty() {
            // The head is never archived: it vanished under our feet.
            return Err(missing(last));
        }
        let checkpoint = tail.last().and_then(|s| s.spec.checkpoint.clone());
        let first_number = match (start, &checkpoint) {
            (Start::Checkpoint, Some(checkpoint)) => checkpoint.segment.max(0) as u64,
            (Start::Checkpoint, None) => listed[0].0,
            (Start::Position(position), _) => listed
                .iter()
                .rev()
                .find(|(_, first)| first.is_some_and(|f| f <= position))
                .map_or(listed[0].0, |(number, _)| *number),
        };
        let mut run = self.read_range(first_number, last).await?;
        run.extend(tail);
        check_run(&run)?;
        if let (Start::Checkpoint, Some(_)) = (start, &checkpoint) {
            let found = run.first().and_then(|s| s.metadata.name.as_deref());
            if found.and_then(segment_number) > Some(first_number) {
                // Start-up would silently skip the records it needs.
                return Err(missing(first_number));
            }
        }
        Ok(run)
    }

    async fn loaded(&self, start: Start) -> Result<Loaded, StoreError> {
        let run = self.read_from(start).await?;
        let position = match start {
            Start::Position(position) => position,
            Start::Checkpoint => run
                .last()
                .and_then(|s| s.spec.checkpoint.as_ref())
                .map_or(0, |c| c.position.max(0) as u64),
        };
        Ok(lines_of(&run, position))
    }

    // ------------------------------------------------------------ writing

    /// One try at storing `batch` after `head`.
    async fn attempt(
        &self,
        head: &Head,
        tip: &SegmentTip,
        batch: &Batch,
    ) -> Result<Head, CallError> {
        let Some(version) = &tip.resource_version else {
            return self.create(tip.number, head, tip, batch).await;
        };
        let fits = tip.bytes + batch.bytes() <= self.settings.segment_bytes;
        if tip.bytes == 0 || fits {
            return self.add_lines(tip, version, head, batch).await;
        }
        self.seal(tip.number, version).await?;
        self.create(tip.number + 1, head, tip, batch).await
    }

    async fn add_lines(
        &self,
        tip: &SegmentTip,
        version: &str,
        head: &Head,
        batch: &Batch,
    ) -> Result<Head, CallError> {
        let mut ops = vec![precondition(version)];
        ops.extend(
            batch
                .lines
                .iter()
                .map(|line| json!({"op": "add", "path": "/spec/lines/-", "value": line})),
        );
        if batch.checkpoint {
            let checkpoint = checkpoint_at(tip.number, head.position);
            ops.push(json!({"op": "add", "path": "/spec/checkpoint", "value": checkpoint}));
        }
        let saved = self.json_patch(tip.number, ops).await?;
        Ok(head_after(&saved))
    }

    async fn seal(&self, number: u64, version: &str) -> Result<JournalSegment, CallError> {
        let ops = vec![
            precondition(version),
            json!({"op": "add", "path": "/spec/sealedAt", "value": self.now()}),
        ];
        self.json_patch(number, ops).await
    }

    /// Creates segment `number` with `batch` after `head`; the name makes
    /// it a compare-and-swap.
    async fn create(
        &self,
        number: u64,
        head: &Head,
        tip: &SegmentTip,
        batch: &Batch,
    ) -> Result<Head, CallError> {
        let checkpoint = if batch.checkpoint {
            Some(checkpoint_at(number, head.position))
        } else {
            tip.checkpoint.clone()
        };
        let spec = JournalSegmentSpec {
            first: head.position as i64,
            prev_hash: unless_empty(&head.last_hash),
            epoch: head.epoch as i64,
            writer: unless_empty(&head.writer),
            lines: batch.lines.clone(),
            checkpoint,
            sealed_at: None,
            exported_at: None,
        };
        let saved = self.create_segment(number, spec).await?;
        Ok(head_after(&saved))
    }

    async fn create_segment(
        &self,
        number: u64,
        spec: JournalSegmentSpec,
    ) -> Result<JournalSegment, CallError> {
        let mut segment = JournalSegment::new(&segment_name(number), spec);
        segment.metadata.labels = Some(
            [(FIRST_LINE_LABEL.to_owned(), segment.spec.first.to_string())]
                .into_iter()
                .collect(),
        );
        self.call(self.api.create(&PostParams::default(), &segment))
            .await
    }

    async fn json_patch(
        &self,
        number: u64,
        ops: Vec<serde_json::Value>,
    ) -> Result<JournalSegment, CallError> {
        let patch = serde_json::from_value(serde_json::Value::Array(ops))
            .map_err(|e| CallError::Refused(format!("building the patch: {e}")))?;
        self.call(self.api.patch(
            &segment_name(number),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        ))
        .await
    }

    /// What is stored after `head` now: the lines, the epoch and writer,
    /// and the head after them.
    async fn reread(&self, head: &Head, tip: &SegmentTip) -> Result<Seen, StoreError> {
        let run = self.read_tail(tip.number).await?;
        if run.is_empty() {
            if tip.resource_version.is_some() {
                return Err(missing(tip.number));
            }
            // The segment to be created is not there: nothing came after.
            return Ok(Seen {
                after: Vec::new(),
                head: head.clone(),
            });
        }
        check_run(&run)?;
        let loaded = lines_of(&run, head.position);
        Ok(Seen {
            after: loaded.lines,
            head: loaded.head,
        })
    }

    /// Makes `writer` the writer of a new epoch at `head`.
    async fn claim(&self, head: &Head, tip: &SegmentTip, writer: &str) -> Result<Head, CallError> {
        let epoch = head.epoch + 1;
        let saved = match &tip.resource_version {
            Some(version) => {
                let ops = vec![
                    precondition(version),
                    json!({"op": "replace", "path": "/spec/epoch", "value": epoch}),
                    json!({"op": "add", "path": "/spec/writer", "value": writer}),
                ];
                self.json_patch(tip.number, ops).await?
            }
            None => {
                let spec = JournalSegmentSpec {
                    first: head.position as i64,
                    prev_hash: unless_empty(&head.last_hash),
                    epoch: epoch as i64,
                    writer: unless_empty(writer),
                    lines: Vec::new(),
                    checkpoint: tip.checkpoint.clone(),
                    sealed_at: None,
                    exported_at: None,
                };
                self.create_segment(tip.number, spec).await?
            }
        };
        Ok(head_after(&saved))
    }
}

#[derive(Clone, Copy, Debug)]
enum Start {
    /// The latest checkpoint (or the oldest line kept, if none).
    Checkpoint,
    Position(u64),
}

struct Seen {
    after: Vec<String>,
    head: Head,
}

fn missing(number: u64) -> StoreError {
    StoreError::Corrupt {
        reason: format!("{} is missing", segment_name(number)),
    }
}

/// A JSON patch operation that makes the patch fail with 409 unless the
/// object is still at `version`.
fn precondition(version: &str) -> serde_json::Value {
    json!({"op": "replace", "path": "/metadata/resourceVersion", "value": version})
}

fn checkpoint_at(segment: u64, position: u64) -> CheckpointRef {
    CheckpointRef {
        segment: segment as i64,
        position: position as i64,
    }
}

fn tip_of(head: &Head) -> Result<SegmentTip, StoreError> {
    match &head.tip {
        Tip::Segment(tip) => Ok(tip.clone()),
        Tip::Plain => Err(StoreError::Invalid {
            reason: "a head from another kind of store".into(),
        }),
    }
}

/// Checks that consecutive segments follow each other: numbers without a
/// gap, positions without a gap or overlap, each one's `prevHash` the hash
/// of the line before it, and only the last one open.
fn check_run(run: &[JournalSegment]) -> Result<(), StoreError> {
    for pair in run.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (name_a, name_b) = (a.metadata.name.clone(), b.metadata.name.clone());
        let (name_a, name_b) = (name_a.unwrap_or_default(), name_b.unwrap_or_default());
        let corrupt = |why: String| {
            Err(StoreError::Corrupt {
                reason: format!("{name_b} after {name_a}: {why}"),
            })
        };
        if segment_number(&name_b) != segment_number(&name_a).map(|n| n + 1) {
            return corrupt("not the next number".into());
        }
        if !a.spec.is_sealed() {
            return corrupt(format!("{name_a} is not sealed"));
        }
        if b.spec.first() != a.spec.end() {
            return corrupt(format!(
                "starts at line {} instead of {}",
                b.spec.first(),
                a.spec.end()
            ));
        }
        if b.spec.prev_hash() != a.spec.last_hash() {
            return corrupt("its prevHash is not the hash of the line before".into());
        }
    }
    Ok(())
}

/// The head after the last segment of a run.
fn head_after(last: &JournalSegment) -> Head {
    let spec = &last.spec;
    let number = last
        .metadata
        .name
        .as_deref()
        .and_then(segment_number)
        .unwrap_or_default();
    let tip = if spec.is_sealed() {
        SegmentTip {
            number: number + 1,
            resource_version: None,
            bytes: 0,
            checkpoint: spec.checkpoint.clone(),
        }
    } else {
        SegmentTip {
            number,
            resource_version: last.metadata.resource_version.clone(),
            bytes: spec.bytes(),
            checkpoint: spec.checkpoint.clone(),
        }
    };
    Head {
        position: spec.end(),
        last_hash: spec.last_hash(),
        epoch: spec.epoch(),
        writer: spec.writer().to_owned(),
        tip: Tip::Segment(tip),
    }
}

fn empty_head() -> Head {
    Head {
        position: 0,
        last_hash: String::new(),
        epoch: 0,
        writer: String::new(),
        tip: Tip::Segment(SegmentTip {
            number: 1,
            resource_version: None,
            bytes: 0,
            checkpoint: None,
        }),
    }
}

/// The lines of a checked run from `position` on (from its first line if
/// it starts later), with the head after it.
fn lines_of(run: &[JournalSegment], position: u64) -> Loaded {
    let Some(last) = run.last() else {
        return Loaded {
            first: 0,
            prev_hash: String::new(),
            lines: Vec::new(),
            head: empty_head(),
        };
    };
    let start = position.max(run[0].spec.first()).min(last.spec.end());
    let mut lines = Vec::new();
    let mut prev_hash = None;
    for segment in run.iter().filter(|s| s.spec.end() > start) {
        let (from_here, prev) = segment.spec.lines_from(start);
        prev_hash.get_or_insert(prev);
        lines.extend_from_slice(from_here);
    }
    Loaded {
        first: start,
        prev_hash: prev_hash.unwrap_or_else(|| last.spec.last_hash()),
        lines,
        head: head_after(last),
    }
}

#[async_trait]
impl LineStore for KubeStore {
    async fn load(&self) -> Result<Loaded, StoreError> {
        self.loaded(Start::Checkpoint).await
    }

    async fn load_from(&self, position: u64) -> Result<Loaded, StoreError> {
        self.loaded(Start::Position(position)).await
    }

    async fn takeover(&self, writer: &str) -> Result<Loaded, StoreError> {
        if writer.is_empty() {
            return Err(StoreError::Invalid {
                reason: "a takeover needs the writer's name".into(),
            });
        }
        let mut last_error = String::new();
        for _ in 0..TRIES {
            let loaded = self.load().await?;
            let tip = tip_of(&loaded.head)?;
            match self.claim(&loaded.head, &tip, writer).await {
                Ok(head) => return Ok(Loaded { head, ..loaded }),
                // The old writer appended meanwhile (or the answer was
                // lost): read again and claim what is there now.
                Err(CallError::Conflict) => last_error = "conflict".into(),
                Err(CallError::Unsure(reason)) => last_error = reason,
                Err(error) => return Err(Self::failed("taking the journal over", error)),
            }
        }
        Err(StoreError::Failed {
            what: "taking the journal over".into(),
            reason: format!("still racing after {TRIES} tries ({last_error})"),
        })
    }

    async fn append(&self, head: &Head, batch: &Batch) -> Result<Head, StoreError> {
        check_batch(batch, MAX_BATCH_BYTES)?;
        let mut tip = tip_of(head)?;
        let mut last_error = String::new();
        for _ in 0..TRIES {
            let error = match self.attempt(head, &tip, batch).await {
                Ok(after) => return Ok(after),
                Err(CallError::Refused(reason)) => {
                    return Err(StoreError::Failed {
                        what: "appending to the journal".into(),
                        reason,
                    })
                }
                Err(error) => error,
            };
            last_error = error.reason();
            let seen = self
                .reread(head, &tip)
                .await
                .map_err(|reread| StoreError::Unknown {
                    reason: format!("{last_error}; re-reading: {reread}"),
                })?;
            match judge(batch, head.epoch, &seen.after, seen.head.epoch) {
                Judgement::Landed => return Ok(seen.head),
                Judgement::Superseded => {
                    return Err(StoreError::Superseded {
                        writer: seen.head.writer,
                    })
                }
                // Not stored, and no one else's lines: try again at the
                // head as it is now (same position, same epoch).
                Judgement::Absent => tip = tip_of(&seen.head)?,
            }
        }
        Err(StoreError::Unknown {
            reason: format!("not stored after {TRIES} tries ({last_error})"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::line_hash;

    fn segment(
        number: u64,
        first: u64,
        prev: &str,
        lines: &[&str],
        sealed: bool,
    ) -> JournalSegment {
        let spec = JournalSegmentSpec {
            first: first as i64,
            prev_hash: unless_empty(prev),
            epoch: 1,
            writer: Some("a".into()),
            lines: lines.iter().map(|l| l.to_string()).collect(),
            checkpoint: None,
            sealed_at: sealed.then(|| "2026-01-05T10:00:00Z".into()),
            exported_at: None,
        };
        let mut segment = JournalSegment::new(&segment_name(number), spec);
        segment.metadata.resource_version = Some(format!("{number}00"));
        segment
    }

    fn run() -> Vec<JournalSegment> {
        vec![
            segment(1, 0, "", &["a", "b"], true),
            segment(2, 2, &line_hash("b"), &["c"], true),
            segment(3, 3, &line_hash("c"), &["d"], false),
        ]
    }

    #[test]
    fn lines_from_a_position_span_segments_and_the_head_follows_the_last() {
        let run = run();
        assert!(check_run(&run).is_ok());
        let loaded = lines_of(&run, 1);
        assert_eq!(
            (loaded.first, loaded.lines.as_slice()),
            (1, &["b".to_owned(), "c".into(), "d".into()][..])
        );
        assert_eq!(loaded.prev_hash, line_hash("a"));
        assert_eq!(loaded.head.position, 4);
        assert_eq!(loaded.head.last_hash, line_hash("d"));
        assert_eq!(loaded.head.segment(), Some(3));
        let past_the_end = lines_of(&run, 99);
        assert_eq!((past_the_end.first, past_the_end.lines.len()), (4, 0));
        assert_eq!(past_the_end.prev_hash, line_hash("d"));
    }

    #[test]
    fn a_sealed_last_segment_puts_the_head_in_the_next_one_to_create() {
        let mut run = run();
        run[2].spec.sealed_at = Some("2026-01-05T10:00:00Z".into());
        let head = lines_of(&run, 0).head;
        let Tip::Segment(tip) = &head.tip else {
            panic!("a segment tip")
        };
        assert_eq!((tip.number, tip.resource_version.as_deref()), (4, None));
    }

    #[test]
    fn an_edited_gapped_or_overlapping_run_is_corrupt() {
        let mut edited = run();
        edited[1].spec.lines[0] = "C".into();
        let mut open_in_the_middle = run();
        open_in_the_middle[1].spec.sealed_at = None;
        let mut overlapping = run();
        overlapping[2].spec.first = 2;
        let mut renumbered = run();
        renumbered[2].metadata.name = Some(segment_name(5));
        for (case, says) in [
            (edited, "prevHash is not the hash of the line before"),
            (open_in_the_middle, "segment-000002 is not sealed"),
            (overlapping, "starts at line 2 instead of 3"),
            (renumbered, "not the next number"),
        ] {
            let error = check_run(&case).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
