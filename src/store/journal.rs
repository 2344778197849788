//! The journal on a [`LineStore`] (the Kubernetes journal: `serve --journal
//! kube`). The journal makes the records and the hash chain as it does for
//! a file; a [`StoreSink`] stores their lines.
//!
//! The journal appends synchronously (the engine makes each record durable,
//! under its lock, before acting on it), while a store is async. So the
//! store runs on a thread of its own, with a runtime of its own, and the
//! sink waits for each answer: like an fsync, the append blocks its caller
//! for as long as the store takes, and it cannot deadlock on the caller's
//! runtime whatever its flavour. The store's client is made on that thread
//! too ([`Connect`]), because a Kubernetes client runs its connections on
//! the runtime it was made in.
//!
//! Opening takes the store over ([`LineStore::takeover`]): from then on an
//! earlier writer's appends are refused. An append refused because another
//! writer took over, one whose fate stays unknown, or one finding the store
//! inconsistent breaks the sink: it refuses every later append (the head is
//! no longer known to be ours), and [`Fenced`] tells the process to stop.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Batch, Head, LineStore, Loaded, StoreError};
use crate::journal::sign::Tail;
use crate::journal::sink::{LineSink, SinkError};
use crate::journal::{Journal, JournalError, Record};

/// Makes the store, on the store's own thread.
pub type Connect =
    Box<dyn FnOnce() -> BoxFuture<'static, Result<Arc<dyn LineStore>, StoreError>> + Send>;

/// Tries of an append whose fate the store could not learn, before the
/// sink gives up on it (the store re-reads before answering `Unknown`, so
/// each try already waited out the store's call timeout).
const UNKNOWN_TRIES: usize = 3;
/// Pause between those tries.
const UNKNOWN_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot start the journal's thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the journal's thread ended before the journal opened")]
    Ended,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The journal kept in a store, opened.
pub struct Opened {
    pub journal: Journal,
    pub records: Vec<Record>,
    pub fenced: Fenced,
    /// The lines loaded (from the latest checkpoint segment on), for the
    /// signature check.
    pub tail: Tail,
}

/// Opens the journal in the store `connect` makes, as writer `writer`:
/// takes the store over and replays what it holds. `name` says where the
/// journal is, in messages.
pub async fn open(connect: Connect, writer: &str, name: &str) -> Result<Opened, OpenError> {
    let (opened_tx, opened_rx) = oneshot::channel();
    let (requests, receiver) = mpsc::unbounded_channel();
    let (fence, fenced) = watch::channel(None);
    let writer = writer.to_owned();
    std::thread::Builder::new()
        .name("journal-store".into())
        .spawn(move || run(connect, writer, opened_tx, receiver))
        .map_err(OpenError::Thread)?;
    let loaded = opened_rx.await.map_err(|_| OpenError::Ended)??;
    let sink = StoreSink {
        requests,
        name: name.to_owned(),
        broken: None,
        fence,
    };
    let (journal, records) = Journal::on_sink(Box::new(sink), &loaded.prev_hash, &loaded.lines)?;
    tracing::info!(
        journal = name,
        records = records.len(),
        first_line = loaded.first,
        epoch = loaded.head.epoch,
        "journal taken over"
    );
    Ok(Opened {
        journal,
        records,
        fenced: Fenced(fenced),
        tail: Tail {
            first_line: usize::try_from(loaded.first)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
            lines: loaded.lines,
        },
    })
}

/// Tells when the sink stopped for good (another writer took over, or an
/// append's fate is unknown): the process must stop acting.
#[derive(Clone, Debug)]
pub struct Fenced(watch::Receiver<Option<String>>);

impl Fenced {
    /// Waits until the sink breaks; returns why. Pending forever if it
    /// never does.
    pub async fn broken(&mut self) -> String {
        match self.0.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }
}

/// One append, and where its answer goes.
struct Request {
    batch: Batch,
    answer: std::sync::mpsc::Sender<Result<(), StoreError>>,
}

/// The store's thread: connect, take over, then append until the sink is
/// dropped.
fn run(
    connect: Connect,
    writer: String,
    opened: oneshot::Sender<Result<Loaded, StoreError>>,
    requests: mpsc::UnboundedReceiver<Request>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = opened.send(Err(StoreError::Failed {
                what: "starting the journal's runtime".into(),
                reason: e.to_string(),
            }));
            return;
        }
    };
    runtime.block_on(async move {
        let (store, loaded) = match take_over(connect, &writer).await {
            Ok(taken) => taken,
            Err(e) => {
                let _ = opened.send(Err(e));
                return;
            }
        };
        let head = loaded.head.clone();
        if opened.send(Ok(loaded)).is_ok() {
            serve_appends(&*store, head, requests).await;
        }
    });
}

async fn take_over(
    connect: Connect,
    writer: &str,
) -> Result<(Arc<dyn LineStore>, Loaded), StoreError> {
    let store = connect().await?;
    let loaded = store.takeover(writer).await?;
    Ok((store, loaded))
}

/// Appends each request's batch after the last one, in order.
async fn serve_appends(
    store: &dyn LineStore,
    mut head: Head,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(request) = requests.recv().await {
        let answer = append(store, &mut head, &request.batch).await;
        let _ = request.answer.send(answer);
    }
}

/// Appends `batch` at `head` and moves `head` past it. An append whose
/// fate is unknown is tried again with the same head and batch, which the
/// store's contract makes safe (it answers `Ok` if the batch had landed).
async fn append(store: &dyn LineStore, head: &mut Head, batch: &Batch) -> Result<(), StoreError> {
    let mut tries = 1;
    loop {
        match store.append(head, batch).await {
            Ok(next) => {
                *head = next;
                return Ok(());
            }
            Err(StoreError::Unknown { reason }) if tries < UNKNOWN_TRIES => {
                tracing::warn!(%reason, tries, "journal append of unknown fate: trying again");
                tries += 1;
                tokio::time::sleep(UNKNOWN_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The journal's side: sends each batch to the store's thread and waits.
#[derive(Debug)]
struct StoreSink {
    requests: mpsc::UnboundedSender<Request>,
    name: String,
    /// Why the sink refuses every append, once it does.
    broken: Option<String>,
    fence: watch::Sender<Option<String>>,
}

impl StoreSink {
    /// Refuses every later append, and tells whoever watches [`Fenced`].
    fn break_for(&mut self, reason: String) {
        tracing::error!(journal = %self.name, %reason, "journal stopped: refusing every later append");
        self.broken = Some(reason.clone());
        self.fence.send_replace(Some(reason));
    }

    fn send(&self, batch: Batch) -> Result<(), StoreError> {
        let (answer, answered) = std::sync::mpsc::channel();
        let request = Request { batch, answer };
        let ended = || StoreError::Failed {
            what: "appending".into(),
            reason: "the journal's thread has ended".into(),
        };
        self.requests.send(request).map_err(|_| ended())?;
        crate::blocking::wait(|| answered.recv()).map_err(|_| ended())?
    }
}

impl LineSink for StoreSink {
    fn append(&mut self, lines: &[String], snapshot: bool) -> Result<(), SinkError> {
        if let Some(reason) = &self.broken {
            return Err(SinkError {
                reason: format!("refusing to append after an earlier failure: {reason}"),
            });
        }
        let batch = match snapshot {
            true => Batch::checkpoint(lines.to_vec()),
            false => Batch::new(lines.to_vec()),
        };
        match self.send(batch) {
            Ok(()) => Ok(()),
            Err(error) => {
                let reason = error.to_string();
                if breaks_the_sink(&error) {
                    self.break_for(reason.clone());
                }
                Err(SinkError { reason })
            }
        }
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// After these the head is not known to be this writer's: appending again
/// could fork the chain, so nothing more is appended.
fn breaks_the_sink(error: &StoreError) -> bool {
    match error {
        StoreError::Superseded { .. } | StoreError::Unknown { .. } | StoreError::Corrupt { .. } => {
            true
        }
        StoreError::Failed { .. } | StoreError::Invalid { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::journal::{verify_chain, Entry};
    use crate::store::memory::MemoryStore;

    fn command(text: &str) -> Entry {
        Entry::Command {
            user: "alice".into(),
            channel: "C1".into(),
            text: text.into(),
            event: None,
            answered: false,
        }
    }

    fn connect(store: &Arc<MemoryStore>) -> Connect {
        let store = store.clone();
        Box::new(move || Box::pin(async move { Ok(store as Arc<dyn LineStore>) }))
    }

    async fn open_on(store: &Arc<MemoryStore>, writer: &str) -> Opened {
        open(connect(store), writer, "memory").await.unwrap()
    }

    #[tokio::test]
    async fn a_reopened_store_journal_has_the_same_records_and_chain_and_goes_on() {
        let store = Arc::new(MemoryStore::new());
        let mut first = open_on(&store, "a").await;
        assert!(first.records.is_empty());
        first.journal.append(Utc::now(), command("status")).unwrap();
        let batch = vec![command("shift 50"), command("help")];
        let written = first.journal.append_batch(Utc::now(), batch).unwrap();
        drop(first);

        let mut second = open_on(&store, "b").await;
        assert_eq!(second.records.len(), 3);
        assert_eq!(second.records[1..], written[..]);
        let next = second.journal.append(Utc::now(), command("abort")).unwrap();
        assert_eq!(next.seq, 4);
        let lines = store.load().await.unwrap().lines;
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(verify_chain(&lines), Ok(()));
    }

    #[tokio::test]
    async fn a_superseded_writer_is_refused_for_good_and_told_to_stop() {
        let store = Arc::new(MemoryStore::new());
        let mut old = open_on(&store, "a").await;
        let mut new = open_on(&store, "b").await;
        let refused = old.journal.append(Utc::now(), command("status"));
        assert!(
            matches!(&refused, Err(JournalError::Sink { reason, .. }) if reason.contains("newer writer")),
            "{refused:?}"
        );
        let why = old.fenced.broken().await;
        assert!(why.contains("newer writer"), "{why}");
        let again = old.journal.append(Utc::now(), command("help")).unwrap_err();
        assert!(again.to_string().contains("earlier failure"), "{again}");
        new.journal.append(Utc::now(), command("abort")).unwrap();
        assert_eq!(store.load().await.unwrap().lines.len(), 1);
    }

    #[tokio::test]
    async fn a_snapshot_is_a_checkpoint_the_store_loads_from() {
        let store = Arc::new(MemoryStore::new());
        let mut first = open_on(&store, "a").await;
        first.journal.append(Utc::now(), command("status")).unwrap();
        let snapshot = Entry::Snapshot {
            state: Box::default(),
        };
        first.journal.append(Utc::now(), snapshot).unwrap();
        first.journal.append(Utc::now(), command("help")).unwrap();
        drop(first);

        let second = open_on(&store, "b").await;
        let seqs: Vec<u64> = second.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![2, 3], "start-up reads from the snapshot on");
    }

    #[test]
    fn only_a_lost_head_breaks_the_sink() {
        let failed = StoreError::Failed {
            what: "x".into(),
            reason: "y".into(),
        };
        assert!(!breaks_the_sink(&failed));
        let unknown = StoreError::Unknown { reason: "y".into() };
        assert!(breaks_the_sink(&unknown));
        let superseded = StoreError::Superseded { writer: "b".into() };
        assert!(breaks_the_sink(&superseded));
    }
}
