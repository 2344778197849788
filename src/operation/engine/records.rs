//! The journal and the ledger folded from it, behind one lock: every change
//! of state is made durable first and then applied, in one place. Shared by
//! the engine and its outbox (which journals what Slack has taken).

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::operation::journal::{Entry, Journal, JournalError, Record};
use crate::operation::ledger::Ledger;

pub(super) struct Store {
    pub journal: Journal,
    pub ledger: Ledger,
}

#[derive(Clone)]
pub(super) struct Records(Arc<Mutex<Store>>);

impl Records {
    pub fn new(journal: Journal, ledger: Ledger) -> Self {
        Records(Arc::new(Mutex::new(Store { journal, ledger })))
    }

    /// Appends `entry` (fsync'd), then folds it into the ledger.
    pub fn append(&self, at: DateTime<Utc>, entry: Entry) -> Result<Record, JournalError> {
        let mut records = self.append_batch(at, vec![entry])?;
        Ok(records.remove(0))
    }

    /// [`Records::append`] for several entries, durable together.
    pub fn append_batch(
        &self,
        at: DateTime<Utc>,
        entries: Vec<Entry>,
    ) -> Result<Vec<Record>, JournalError> {
        let mut store = self.lock();
        let records = store.journal.append_batch(at, entries)?;
        for record in &records {
            store.ledger.apply(record);
        }
        Ok(records)
    }

    pub fn with_ledger<R>(&self, f: impl FnOnce(&Ledger) -> R) -> R {
        f(&self.lock().ledger)
    }

    /// The store itself, for the rare step that must read the ledger and
    /// append under one lock (allocating an operation id).
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic elsewhere while holding the lock leaves a consistent
        // store: every change is one append followed by one apply.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
