//! A drill's stopwatch: the journal's timestamps of one drill, folded into
//! [`StepTimes`] as the records arrive (the ledger feeds it), so a restart
//! that replays the journal gets the same times to the millisecond.
//!
//! The steps tile the drill's time with no gap: each step starts where the
//! one before ended (the first where the drill started) and is cut at its
//! approval and at the end of its writes. Whatever happens between two
//! steps — the next plan being made and posted, a bake, a plan made again
//! after the weights moved — is time awaiting approval of the next step.
//! So the parts of all steps add up to the drill's total, by construction:
//! the total *is* the time from the drill's start to its last step's end
//! (to its end, for a drill that stopped half-way).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StepTimes;

/// The marks of the step under way, and the steps done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillClock {
    /// Where the step under way began: the drill's start or the end of the
    /// step before.
    begin: DateTime<Utc>,
    /// The step's approval, once given (the latest, if a plan was made
    /// and approved again).
    approved: Option<DateTime<Utc>>,
    /// Its writes done, once they are.
    written: Option<DateTime<Utc>>,
    steps: Vec<StepTimes>,
}

impl DrillClock {
    pub fn start(at: DateTime<Utc>) -> DrillClock {
        DrillClock {
            begin: at,
            approved: None,
            written: None,
            steps: Vec::new(),
        }
    }

    /// The step under way was approved.
    pub fn approved(&mut self, at: DateTime<Utc>) {
        self.approved = Some(at);
        self.written = None;
    }

    /// Its writes are done; what follows is converging (verification).
    pub fn written(&mut self, at: DateTime<Utc>) {
        if self.approved.is_some() {
            self.written = Some(at);
        }
    }

    /// The step under way ended at `at`.
    pub fn step_done(&mut self, at: DateTime<Utc>) {
        let step = self.cut(at);
        self.steps.push(step);
        self.begin = self.begin.max(at);
        self.approved = None;
        self.written = None;
    }

    /// A step that did not count (nothing to change, or a write that met
    /// someone else's and is planned again): its time stays with the step
    /// under way, as time awaiting approval.
    pub fn step_again(&mut self) {
        self.approved = None;
        self.written = None;
    }

    /// The steps done, oldest first.
    pub fn steps(&self) -> &[StepTimes] {
        &self.steps
    }

    /// The drill's steps when it ends at `at`: a drill that stopped with a
    /// step under way (rejected, expired, aborted, failed) counts that step
    /// as far as it got, so its total runs to its end.
    pub fn close(&self, at: DateTime<Utc>, completed: bool) -> Vec<StepTimes> {
        let mut steps = self.steps.clone();
        if !completed && at > self.begin {
            steps.push(self.cut(at));
        }
        steps
    }

    /// The step from `begin` to `end`, cut at its marks. A clock that went
    /// backwards yields zero for that part rather than a negative time.
    fn cut(&self, end: DateTime<Utc>) -> StepTimes {
        let approved = self
            .approved
            .unwrap_or(end)
            .clamp(self.begin, end.max(self.begin));
        let written = self
            .written
            .unwrap_or(end)
            .clamp(approved, end.max(approved));
        let end = end.max(written);
        let ms = |from: DateTime<Utc>, to: DateTime<Utc>| {
            u64::try_from((to - from).num_milliseconds()).unwrap_or(0)
        };
        StepTimes {
            waiting_ms: ms(self.begin, approved),
            applying_ms: ms(approved, written),
            converging_ms: ms(written, end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap() + Duration::seconds(seconds)
    }

    fn total(steps: &[StepTimes]) -> u64 {
        steps.iter().map(|s| s.total_ms().unwrap()).sum()
    }

    #[test]
    fn steps_tile_the_drill_from_its_start_to_its_last_step() {
        let mut clock = DrillClock::start(t(0));
        clock.approved(t(100));
        clock.written(t(103));
        clock.step_done(t(140));
        // The next plan is made and posted at 141; approved at 200.
        clock.approved(t(200));
        clock.written(t(201));
        clock.step_done(t(230));
        let steps = clock.close(t(231), true);
        assert_eq!(
            steps,
            vec![
                StepTimes::from_durations(
                    std::time::Duration::from_secs(100),
                    std::time::Duration::from_secs(3),
                    std::time::Duration::from_secs(37)
                ),
                StepTimes::from_durations(
                    std::time::Duration::from_secs(60),
                    std::time::Duration::from_secs(1),
                    std::time::Duration::from_secs(29)
                ),
            ]
        );
        assert_eq!(total(&steps), 230_000, "start to the last step's end");
    }

    #[test]
    fn a_step_planned_again_keeps_its_time_as_waiting() {
        let mut clock = DrillClock::start(t(0));
        clock.approved(t(10));
        clock.written(t(11));
        clock.step_again(); // a conflict: planned and approved again
        clock.approved(t(50));
        clock.written(t(52));
        clock.step_done(t(60));
        let step = clock.steps()[0];
        assert_eq!(
            (step.waiting_ms, step.applying_ms, step.converging_ms),
            (50_000, 2_000, 8_000)
        );
    }

    #[test]
    fn a_drill_that_stopped_counts_its_step_under_way_to_its_end() {
        let mut clock = DrillClock::start(t(0));
        clock.approved(t(10));
        clock.written(t(12));
        clock.step_done(t(20));
        // Step 2's plan waits until the drill is aborted at 95.
        let steps = clock.close(t(95), false);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1].waiting_ms, 75_000);
        assert_eq!(total(&steps), 95_000);
        assert_eq!(
            clock.close(t(95), true).len(),
            1,
            "a completed drill ends at its last step"
        );
    }

    #[test]
    fn a_clock_that_went_backwards_gives_no_negative_time() {
        let mut clock = DrillClock::start(t(100));
        clock.approved(t(90));
        clock.written(t(80));
        clock.step_done(t(70));
        assert_eq!(clock.steps()[0], StepTimes::default());
        clock.approved(t(110));
        clock.step_done(t(120));
        assert_eq!(total(clock.steps()), 20_000);
    }
}
