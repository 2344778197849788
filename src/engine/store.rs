//! The journal and the ledger folded from it, behind one lock: every change
//! of state is made durable first and then applied, in one place. Shared by
//! the engine and its outbox (which journals what Slack has taken). Each
//! record is counted in the metrics as it lands, so the numbers count
//! exactly what the audit trail holds.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::ids::OpId;
use crate::journal::ledger::{Ledger, LedgerSnapshot, HISTORY_KEPT};
use crate::journal::{Entry, Journal, JournalError, Record};
use crate::metrics::Metrics;

/// How many records go into the journal between two snapshots of the
/// ledger: start-up reads at most about this many records after the
/// latest snapshot, however long the history.
pub const SNAPSHOT_EVERY: usize = 2_000;

/// The largest snapshot line: well inside one append to the Kubernetes
/// journal (`crate::store::kube::MAX_BATCH_BYTES`).
const SNAPSHOT_MAX_BYTES: usize = 192 * 1024;

struct Inner {
    journal: Journal,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    /// Operation ids handed out and not yet started or given back.
    reserved: BTreeSet<OpId>,
    /// Records since the latest snapshot (or since the journal began).
    since_snapshot: usize,
    snapshot_every: usize,
}

impl Inner {
    /// Folds records just made durable into the ledger and the counts.
    fn take_in(&mut self, records: &[Record]) {
        for record in records {
            self.ledger.apply(record);
            match &record.entry {
                Entry::Snapshot { .. } => self.since_snapshot = 0,
                Entry::Started { header } => {
                    self.reserved.remove(&header.id);
                    self.since_snapshot += 1;
                }
                _ => self.since_snapshot += 1,
            }
            count(&self.metrics, record);
        }
    }

    /// Journals a snapshot of the ledger once enough records came since
    /// the last one. The records that made it due are durable already: a
    /// snapshot that cannot be written is logged and tried again after the
    /// next record, never an error for what was being recorded.
    fn snapshot_if_due(&mut self, at: DateTime<Utc>) {
        if self.since_snapshot < self.snapshot_every {
            return;
        }
        let state = self.bounded_snapshot();
        match self.journal.append(
            at,
            Entry::Snapshot {
                state: Box::new(state),
            },
        ) {
            Ok(record) => self.take_in(&[record]),
            Err(error) => tracing::warn!(%error, "could not journal a snapshot of the ledger"),
        }
    }

    /// The ledger's snapshot, with less history if the full one would not
    /// fit one append.
    fn bounded_snapshot(&self) -> LedgerSnapshot {
        let mut history = HISTORY_KEPT;
        loop {
            let state = self.ledger.snapshot(history);
            let bytes = serde_json::to_vec(&state).map_or(usize::MAX, |b| b.len());
            if bytes <= SNAPSHOT_MAX_BYTES || history == 0 {
                return state;
            }
            history /= 2;
        }
    }
}

#[derive(Clone)]
pub(super) struct Store(Arc<Mutex<Inner>>);

impl Store {
    /// `since_snapshot`: how many of the records the ledger was replayed
    /// from came after the latest snapshot.
    pub fn new(
        journal: Journal,
        ledger: Ledger,
        metrics: Arc<Metrics>,
        since_snapshot: usize,
    ) -> Self {
        Store(Arc::new(Mutex::new(Inner {
            journal,
            ledger,
            metrics,
            reserved: BTreeSet::new(),
            since_snapshot,
            snapshot_every: SNAPSHOT_EVERY,
        })))
    }

    /// Snapshots the ledger every `records` records instead of
    /// [`SNAPSHOT_EVERY`].
    pub fn snapshot_every(&self, records: usize) {
        self.lock().snapshot_every = records.max(1);
    }

    pub fn count_into(&self, metrics: Arc<Metrics>) {
        self.lock().metrics = metrics;
    }

    /// Appends `entry` (durably), then folds it into the ledger.
    pub fn append(&self, at: DateTime<Utc>, entry: Entry) -> Result<Record, JournalError> {
        let mut records = self.append_batch(at, vec![entry])?;
        Ok(records.remove(0))
    }

    /// [`Store::append`] for several entries, durable together.
    pub fn append_batch(
        &self,
        at: DateTime<Utc>,
        entries: Vec<Entry>,
    ) -> Result<Vec<Record>, JournalError> {
        let mut inner = self.lock();
        let records = inner.journal.append_batch(at, entries)?;
        inner.take_in(&records);
        inner.snapshot_if_due(at);
        Ok(records)
    }

    /// [`Store::append_batch`] of `first` and the entries `then` makes
    /// from the hash of `first`'s line (see [`Journal::append_quoting`]).
    pub fn append_quoting(
        &self,
        at: DateTime<Utc>,
        first: Entry,
        then: impl FnOnce(&str) -> Vec<Entry>,
    ) -> Result<Vec<Record>, JournalError> {
        let mut inner = self.lock();
        let records = inner.journal.append_quoting(at, first, then)?;
        inner.take_in(&records);
        inner.snapshot_if_due(at);
        Ok(records)
    }

    pub fn with_ledger<R>(&self, f: impl FnOnce(&Ledger) -> R) -> R {
        f(&self.lock().ledger)
    }

    /// An id for an operation about to be planned: the plan's hash binds
    /// to it, so it is known before planning. Two environments planning at
    /// once get different ids; an id whose operation never starts is given
    /// back when the reservation is dropped.
    pub fn reserve_op_id(&self) -> Reservation {
        let mut inner = self.lock();
        let highest = inner.reserved.last().copied().unwrap_or(0);
        let id = inner.ledger.last_op.max(highest) + 1;
        inner.reserved.insert(id);
        Reservation {
            id,
            store: self.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a consistent
        // store: every change is one append followed by one apply.
        match self.0.try_lock() {
            Ok(inner) => inner,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            // Held, perhaps across a slow append: wait without taking a
            // runtime worker with us (see `crate::blocking`).
            Err(std::sync::TryLockError::WouldBlock) => {
                crate::blocking::wait(|| self.0.lock().unwrap_or_else(|e| e.into_inner()))
            }
        }
    }
}

/// An operation id held for planning.
pub(super) struct Reservation {
    pub id: OpId,
    store: Store,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.store.lock().reserved.remove(&self.id);
    }
}

/// Counts what a record says happened.
fn count(metrics: &Metrics, record: &Record) {
    match &record.entry {
        Entry::StepFinished {
            outcome, millis, ..
        } => metrics.step_finished(outcome.label(), *millis),
        Entry::Decided { state, .. } => metrics.approval_decided(state.name().as_str()),
        _ => {}
    }
}
