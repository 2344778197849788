//! Time, injectable: approvals expire by this clock, so tests and the sandbox
//! can move time forward without sleeping.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall-clock time plus an offset that only grows: the sandbox's `wait 16m`
/// and tests that need an approval to expire.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset: Mutex<chrono::Duration>,
    base: Option<DateTime<Utc>>,
}

impl OffsetClock {
    /// Real time, movable forward.
    pub fn new() -> Self {
        Self::default()
    }

    /// Time frozen at `at`, movable forward: fully deterministic tests.
    pub fn frozen_at(at: DateTime<Utc>) -> Self {
        Self {
            offset: Mutex::new(chrono::Duration::zero()),
            base: Some(at),
        }
    }

    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut offset = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *offset = offset.checked_add(&by).unwrap_or(*offset);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = *self.offset.lock().unwrap_or_else(|e| e.into_inner());
        let base = self.base.unwrap_or_else(Utc::now);
        base.checked_add_signed(offset).unwrap_or(base)
    }
}
