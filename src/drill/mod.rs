//! Drills: practice failovers, timed, so a team sees itself get faster
//! (Lunar went from four hours to forty minutes in 17 practice runs).
//!
//! A drill is an operation marked as one (`/failover drill`). Its steps are
//! measured in three parts — awaiting approval, applying, converging — from
//! the timestamps of the journal records the engine writes anyway
//! ([`DrillClock`], fed by the ledger's fold, so a restart replays the same
//! times), and kept as [`DrillTimings`] when it ends. From those this module
//! computes, with no I/O:
//!
//! - [`scorecard`]: the facts of a drill's scorecard ([`Scorecard`]): its
//!   total, its steps (which add up to the total), and how it compares with
//!   earlier drills of its environment; [`crate::messages`] words it;
//! - [`chart::render`]: a PNG of drill durations over time, split into the
//!   three parts, for the scorecard's thread.
//!
//! Times are whole milliseconds: exact in the journal (no float, no rounding
//! on the way back), so sums computed before and after a restart agree.

pub mod chart;
mod clock;
mod scorecard;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{EnvId, OpId};

pub use clock::DrillClock;
pub use scorecard::{scorecard, Comparison, DrillEnd, PastDrill, Scorecard};

/// One drill as measured: what a scorecard and the chart are made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillTimings {
    pub op: OpId,
    pub env: EnvId,
    pub started_at: DateTime<Utc>,
    /// In the order the steps ran.
    pub steps: Vec<StepTimes>,
}

/// How long one step spent in each part, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTimes {
    /// From the plan's post to its approval.
    pub waiting_ms: u64,
    /// From the approval to every cluster's weight written.
    pub applying_ms: u64,
    /// From written to carried by what serves traffic (Ingresses, DNS).
    pub converging_ms: u64,
}

/// The three parts of a step, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Waiting,
    Applying,
    Converging,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Waiting, Part::Applying, Part::Converging];

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Waiting => "waiting",
            Part::Applying => "applying",
            Part::Converging => "converging",
        }
    }
}

impl StepTimes {
    /// From measured durations; a duration beyond `u64` milliseconds (half a
    /// billion years) is kept at the maximum.
    pub fn from_durations(waiting: Duration, applying: Duration, converging: Duration) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        StepTimes {
            waiting_ms: ms(waiting),
            applying_ms: ms(applying),
            converging_ms: ms(converging),
        }
    }

    pub fn part_ms(&self, part: Part) -> u64 {
        match part {
            Part::Waiting => self.waiting_ms,
            Part::Applying => self.applying_ms,
            Part::Converging => self.converging_ms,
        }
    }

    /// The step's total, or `None` if it does not fit in `u64`.
    pub fn total_ms(&self) -> Option<u64> {
        self.waiting_ms
            .checked_add(self.applying_ms)?
            .checked_add(self.converging_ms)
    }

    /// Part by part sums, or `None` if one does not fit in `u64`.
    fn checked_add(self, other: StepTimes) -> Option<StepTimes> {
        Some(StepTimes {
            waiting_ms: self.waiting_ms.checked_add(other.waiting_ms)?,
            applying_ms: self.applying_ms.checked_add(other.applying_ms)?,
            converging_ms: self.converging_ms.checked_add(other.converging_ms)?,
        })
    }
}

impl DrillTimings {
    /// Each part summed over the steps, and the drill's total; `None` if a
    /// sum does not fit in `u64` (times no real drill takes).
    pub fn sums(&self) -> Option<(StepTimes, u64)> {
        let parts = self
            .steps
            .iter()
            .try_fold(StepTimes::default(), |sum, step| sum.checked_add(*step))?;
        let total = parts.total_ms()?;
        Some((parts, total))
    }
}

/// Why a drill cannot be scored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DrillError {
    #[error("drill #{op} has no timed step: nothing to score")]
    NoSteps { op: OpId },
    #[error("drill #{op}'s times add up to more than can be counted: its timings are corrupt")]
    Overflow { op: OpId },
}
