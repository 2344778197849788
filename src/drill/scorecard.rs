//! A drill's scorecard as facts: what [`crate::messages`] says at a drill's
//! end, computed here so that the numbers are tested once, without words.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DrillError, DrillTimings, StepTimes};
use crate::ids::{EnvId, OpId};

/// The facts of one drill's scorecard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scorecard {
    pub op: OpId,
    pub env: EnvId,
    pub started_at: DateTime<Utc>,
    /// Each step's parts, in the order the steps ran; all of them together
    /// make `total_ms`.
    pub steps: Vec<StepTimes>,
    /// Each part summed over the steps; together they make `total_ms`.
    pub parts: StepTimes,
    pub total_ms: u64,
    /// `None`: the environment's first drill.
    pub earlier: Option<Comparison>,
    /// How the drill ended; only a completed drill is compared with later
    /// ones (a drill cut short is not a time to beat).
    #[serde(default, skip_serializing_if = "DrillEnd::is_completed")]
    pub ended: DrillEnd,
}

/// How a drill ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillEnd {
    #[default]
    Completed,
    Rejected,
    Expired,
    Withdrawn,
    Aborted,
    Failed,
}

impl DrillEnd {
    pub fn is_completed(&self) -> bool {
        *self == DrillEnd::Completed
    }

    pub fn word(self) -> &'static str {
        match self {
            DrillEnd::Completed => "completed",
            DrillEnd::Rejected => "rejected",
            DrillEnd::Expired => "expired",
            DrillEnd::Withdrawn => "withdrawn",
            DrillEnd::Aborted => "aborted",
            DrillEnd::Failed => "failed",
        }
    }
}

/// This drill against the environment's earlier ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// How many earlier drills there were.
    pub drills: usize,
    /// The one just before.
    pub last: PastDrill,
    /// The fastest (the earliest of equally fast ones).
    pub best: PastDrill,
    /// The median of their totals (of the two middle ones, their mean
    /// rounded down).
    pub median_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastDrill {
    pub op: OpId,
    pub started_at: DateTime<Utc>,
    pub total_ms: u64,
}

/// The scorecard of `drill`, compared with the drills in `history` that are
/// of its environment and started before it. `history` may hold anything
/// the journal has (other environments, `drill` itself, later drills): what
/// does not belong is left out here, as are drills with no timed step.
pub fn scorecard(drill: &DrillTimings, history: &[DrillTimings]) -> Result<Scorecard, DrillError> {
    if drill.steps.is_empty() {
        return Err(DrillError::NoSteps { op: drill.op });
    }
    let (parts, total_ms) = drill.sums().ok_or(DrillError::Overflow { op: drill.op })?;
    let earlier = earlier_drills(drill, history);
    Ok(Scorecard {
        op: drill.op,
        env: drill.env.clone(),
        started_at: drill.started_at,
        steps: drill.steps.clone(),
        parts,
        total_ms,
        earlier: compare(earlier),
        ended: DrillEnd::Completed,
    })
}

/// The drills of `drill`'s environment before it, each with its total.
fn earlier_drills(drill: &DrillTimings, history: &[DrillTimings]) -> Vec<PastDrill> {
    let before = |other: &DrillTimings| (other.started_at, other.op) < (drill.started_at, drill.op);
    history
        .iter()
        .filter(|other| other.env == drill.env && other.op != drill.op && before(other))
        .filter(|other| !other.steps.is_empty())
        .filter_map(|other| {
            let (_, total_ms) = other.sums()?;
            Some(PastDrill {
                op: other.op,
                started_at: other.started_at,
                total_ms,
            })
        })
        .collect()
}

fn compare(mut earlier: Vec<PastDrill>) -> Option<Comparison> {
    earlier.sort_by_key(|d| (d.started_at, d.op));
    let last = earlier.last()?.clone();
    let best = earlier
        .iter()
        .min_by_key(|d| (d.total_ms, d.started_at, d.op))?
        .clone();
    let totals: Vec<u64> = earlier.iter().map(|d| d.total_ms).collect();
    Some(Comparison {
        drills: earlier.len(),
        last,
        best,
        median_ms: median(totals)?,
    })
}

fn median(mut values: Vec<u64>) -> Option<u64> {
    values.sort_unstable();
    let upper = *values.get(values.len() / 2)?;
    if values.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = values[values.len() / 2 - 1];
    // lower + half the gap: the mean without overflowing.
    Some(lower + (upper - lower) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, 10, 0, 0).unwrap()
    }

    fn step(waiting_ms: u64, applying_ms: u64, converging_ms: u64) -> StepTimes {
        StepTimes {
            waiting_ms,
            applying_ms,
            converging_ms,
        }
    }

    fn drill(op: OpId, env: &str, d: u32, steps: Vec<StepTimes>) -> DrillTimings {
        DrillTimings {
            op,
            env: env.into(),
            started_at: day(d),
            steps,
        }
    }

    /// A one-step drill taking `total_ms`, all of it waiting.
    fn taking(op: OpId, d: u32, total_ms: u64) -> DrillTimings {
        drill(op, "dev", d, vec![step(total_ms, 0, 0)])
    }

    #[test]
    fn the_steps_and_the_parts_add_up_to_the_total() {
        let this = drill(
            9,
            "dev",
            20,
            vec![step(120_000, 1_500, 45_250), step(61_000, 900, 30_001)],
        );
        let card = scorecard(&this, &[]).unwrap();
        assert_eq!(
            card.total_ms,
            120_000 + 1_500 + 45_250 + 61_000 + 900 + 30_001
        );
        let by_steps: u64 = card.steps.iter().map(|s| s.total_ms().unwrap()).sum();
        assert_eq!(by_steps, card.total_ms);
        assert_eq!(card.parts, step(181_000, 2_400, 75_251));
        assert_eq!(card.parts.total_ms(), Some(card.total_ms));
        assert_eq!(card.steps, this.steps);
        assert_eq!(
            card.earlier, None,
            "the first drill has nothing to compare with"
        );
    }

    #[test]
    fn earlier_drills_of_the_environment_give_last_best_and_median() {
        let history = vec![
            taking(1, 1, 50_000),
            taking(2, 2, 30_000),
            taking(3, 3, 40_000),
            taking(4, 4, 60_000),
            drill(5, "prod", 5, vec![step(1, 0, 0)]),
            taking(6, 30, 1),
        ];
        let this = taking(7, 20, 45_000);
        let card = scorecard(&this, &history).unwrap();
        let earlier = card.earlier.unwrap();
        assert_eq!(earlier.drills, 4, "only dev's drills before this one");
        assert_eq!((earlier.last.op, earlier.last.total_ms), (4, 60_000));
        assert_eq!((earlier.best.op, earlier.best.total_ms), (2, 30_000));
        assert_eq!(earlier.median_ms, 45_000, "the mean of 40 s and 50 s");
    }

    #[test]
    fn an_odd_count_has_a_middle_one_and_ties_pick_the_earliest_best() {
        let history = vec![taking(3, 3, 10), taking(1, 1, 10), taking(2, 2, 99)];
        let earlier = scorecard(&taking(4, 4, 5), &history)
            .unwrap()
            .earlier
            .unwrap();
        assert_eq!(earlier.median_ms, 10);
        assert_eq!(earlier.best.op, 1);
        assert_eq!(earlier.last.op, 3);
    }

    #[test]
    fn the_drill_itself_and_drills_without_steps_are_not_compared() {
        let this = taking(7, 20, 45_000);
        let history = vec![this.clone(), drill(3, "dev", 3, vec![])];
        assert_eq!(scorecard(&this, &history).unwrap().earlier, None);
    }

    #[test]
    fn drills_started_in_the_same_instant_are_ordered_by_number() {
        let history = vec![taking(8, 20, 1_000), taking(6, 20, 2_000)];
        let earlier = scorecard(&taking(7, 20, 45_000), &history)
            .unwrap()
            .earlier
            .unwrap();
        assert_eq!(earlier.drills, 1);
        assert_eq!(earlier.last.op, 6);
    }

    #[test]
    fn a_drill_without_steps_or_with_impossible_times_is_refused() {
        assert_eq!(
            scorecard(&drill(3, "dev", 3, vec![]), &[]),
            Err(DrillError::NoSteps { op: 3 })
        );
        let corrupt = drill(4, "dev", 4, vec![step(u64::MAX, 1, 0)]);
        assert_eq!(
            scorecard(&corrupt, &[]),
            Err(DrillError::Overflow { op: 4 })
        );
        let across_steps = drill(5, "dev", 5, vec![step(u64::MAX, 0, 0), step(1, 0, 0)]);
        assert_eq!(
            scorecard(&across_steps, &[]),
            Err(DrillError::Overflow { op: 5 })
        );
        let card = scorecard(&taking(6, 6, 10), &[corrupt]).unwrap();
        assert_eq!(card.earlier, None, "a corrupt earlier drill is left out");
    }

    #[test]
    fn the_median_of_huge_totals_does_not_overflow() {
        assert_eq!(median(vec![u64::MAX, u64::MAX - 2]), Some(u64::MAX - 1));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn timings_are_plain_milliseconds_in_json() {
        let json = serde_json::to_value(taking(1, 1, 1_500)).unwrap();
        assert_eq!(
            json["steps"][0],
            serde_json::json!({"waiting_ms": 1500, "applying_ms": 0, "converging_ms": 0})
        );
        let back: DrillTimings = serde_json::from_value(json).unwrap();
        assert_eq!(back, taking(1, 1, 1_500));
    }
}
