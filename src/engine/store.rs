//! The journal and the ledger folded from it, behind one lock: every change
//! of state is made durable first and then applied, in one place. Shared by
//! the engine and its outbox (which journals what Slack has taken). Each
//! record is counted in the metrics as it lands, so the numbers count
//! exactly what the audit trail holds.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::ids::OpId;
use crate::journal::ledger::Ledger;
use crate::journal::{Entry, Journal, JournalError, Record};
use crate::metrics::Metrics;

struct Inner {
    journal: Journal,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    /// Operation ids handed out and not yet started or given back.
    reserved: BTreeSet<OpId>,
}

impl Inner {
    /// Folds records just made durable into the ledger and the counts.
    fn take_in(&mut self, records: &[Record]) {
        for record in records {
            self.ledger.apply(record);
            if let Entry::Started { header } = &record.entry {
                self.reserved.remove(&header.id);
            }
            count(&self.metrics, record);
        }
    }
}

#[derive(Clone)]
pub(super) struct Store(Arc<Mutex<Inner>>);

impl Store {
    pub fn new(journal: Journal, ledger: Ledger, metrics: Arc<Metrics>) -> Self {
        Store(Arc::new(Mutex::new(Inner {
            journal,
            ledger,
            metrics,
            reserved: BTreeSet::new(),
        })))
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
        self.0.lock().unwrap_or_else(|e| e.into_inner())
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
