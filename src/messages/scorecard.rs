//! The words of a drill's scorecard: its times per step and part, and how
//! it compares with the environment's earlier drills.
//!
//! Times are shown rounded (to the second for drills of minutes), and the
//! figures a reader adds up must still add up: each cell is rounded by
//! running sums (cell = rounded sum up to and with it − rounded sum before
//! it), so every row, every column and the grand total agree, and no cell
//! is off by more than one unit.

use std::fmt::Write as _;

use super::{mention, table};
use crate::chat::Upload;
use crate::drill::chart::{self, ChartError};
use crate::drill::{Comparison, DrillEnd, Part, PastDrill, Scorecard};
use crate::notice::{DrillChart, DrillLine, DrillsNotice};

pub(super) fn text(card: &Scorecard) -> String {
    let unit = Resolution::for_total(card.total_ms);
    let steps = card.steps.len();
    let plural = if steps == 1 { "" } else { "s" };
    let took = unit.format(unit.count(card.total_ms));
    let mut text = match card.ended {
        DrillEnd::Completed => format!(
            ":stopwatch: *Drill #{} in {}* took *{took}* in {steps} step{plural}.\n",
            card.op, card.env,
        ),
        ended => format!(
            ":stopwatch: *Drill #{} in {}* {} after *{took}*, in step {steps}: not counted among the times to beat.\n",
            card.op,
            card.env,
            ended_words(ended),
        ),
    };
    text.push_str(&times_table(card, unit));
    if card.ended.is_completed() {
        text.push_str(&comparison(card, unit));
    }
    text.trim_end().to_owned()
}

fn ended_words(ended: DrillEnd) -> &'static str {
    match ended {
        DrillEnd::Completed => "completed",
        DrillEnd::Rejected => "was rejected",
        DrillEnd::Expired => "expired",
        DrillEnd::Withdrawn => "was withdrawn",
        DrillEnd::Aborted => "was aborted",
        DrillEnd::Failed => "failed",
    }
}

/// The chart's caption, where the scorecard's thread shows the file.
pub(super) fn chart_text(chart: &DrillChart) -> String {
    let count = chart.drills.len();
    format!(
        ":bar_chart: Drills in {}: {count} completed drill{}, time per drill split into awaiting approval, applying and converging.",
        chart.env,
        if count == 1 { "" } else { "s" }
    )
}

/// The chart as a file for the thread: a PNG drawn from the drills.
pub fn chart_file(chart: &DrillChart) -> Result<Upload, ChartError> {
    let bytes = chart::render(&chart.drills)?;
    Ok(Upload::png(
        &format!("drills-{}.png", chart.env),
        &format!("Drills in {}, up to #{}", chart.env, chart.op),
        &alt_text(chart),
        bytes,
    ))
}

/// What a screen reader says instead of the chart: each drill's total.
fn alt_text(chart: &DrillChart) -> String {
    let totals: Vec<String> = chart
        .drills
        .iter()
        .filter_map(|d| {
            let (_, total) = d.sums()?;
            let unit = Resolution::for_total(total);
            Some(format!("#{} {}", d.op, unit.format(unit.count(total))))
        })
        .collect();
    format!(
        "Bar chart of failover drill durations in {}, oldest first: {}",
        chart.env,
        totals.join(", ")
    )
}

/// `drills`: the environment's drills, newest first.
pub(super) fn list_text(list: &DrillsNotice) -> String {
    if list.running.is_none() && list.finished.is_empty() {
        return format!(
            "No drills in {} yet. `/failover drill to CLUSTER and back` runs one.",
            list.env
        );
    }
    let mut text = format!(":stopwatch: Drills in *{}*, newest first:\n", list.env);
    for line in list.running.iter().chain(&list.finished) {
        text.push_str(&drill_line(line));
        text.push('\n');
    }
    text.trim_end().to_owned()
}

fn drill_line(line: &DrillLine) -> String {
    let when = line.started_at.format("%b %-d %H:%M UTC");
    let who = mention(&line.requester);
    let took = |ms: u64| {
        let unit = Resolution::for_total(ms);
        unit.format(unit.count(ms))
    };
    match (line.ended, line.total_ms) {
        (None, _) => format!(
            "• #{} {when} by {who} — running: `/failover {}`",
            line.op, line.command
        ),
        (Some(DrillEnd::Completed), Some(ms)) => format!(
            "• #{} {when} by {who} — completed in *{}*: `/failover {}`",
            line.op,
            took(ms),
            line.command
        ),
        (Some(ended), ms) => format!(
            "• #{} {when} by {who} — {}{}: `/failover {}`",
            line.op,
            ended.word(),
            ms.map(|ms| format!(" after {}", took(ms)))
                .unwrap_or_default(),
            line.command
        ),
    }
}

/// How finely times are shown: to the second for drills of minutes, finer
/// for quick ones (the sandbox's take seconds, its steps milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    Millis,
    Tenths,
    Seconds,
}

impl Resolution {
    fn for_total(total_ms: u64) -> Resolution {
        match total_ms {
            0..1_000 => Resolution::Millis,
            1_000..60_000 => Resolution::Tenths,
            _ => Resolution::Seconds,
        }
    }

    fn unit_ms(self) -> u128 {
        match self {
            Resolution::Millis => 1,
            Resolution::Tenths => 100,
            Resolution::Seconds => 1_000,
        }
    }

    /// `ms` in units, rounded half up.
    fn count(self, ms: impl Into<u128>) -> u64 {
        let unit = self.unit_ms();
        u64::try_from((ms.into() + unit / 2) / unit).unwrap_or(u64::MAX)
    }

    fn format(self, count: u64) -> String {
        match self {
            Resolution::Millis => format!("{count}ms"),
            Resolution::Tenths => format!("{}.{}s", count / 10, count % 10),
            Resolution::Seconds => clock(count),
        }
    }
}

/// `1h 02m 05s`, `4m 17s`, `42s`.
fn clock(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m {s:02}s"),
    }
}

/// Each step's parts in units, rounded by running sums over the steps in
/// order, so that together they make the rounded total.
fn rounded_steps(card: &Scorecard, unit: Resolution) -> Vec<[u64; 3]> {
    let mut sum: u128 = 0;
    let mut shown = 0;
    card.steps
        .iter()
        .map(|step| {
            Part::ALL.map(|part| {
                sum += u128::from(step.part_ms(part));
                let shown_now = unit.count(sum);
                let cell = shown_now - shown;
                shown = shown_now;
                cell
            })
        })
        .collect()
}

fn times_table(card: &Scorecard, unit: Resolution) -> String {
    let steps = rounded_steps(card, unit);
    let row = |name: String, cells: [u64; 3]| {
        let total = cells.iter().sum();
        let [waiting, applying, converging] = cells.map(|c| unit.format(c));
        [name, waiting, applying, converging, unit.format(total)]
    };
    let mut rows: Vec<[String; 5]> = steps
        .iter()
        .enumerate()
        .map(|(i, cells)| row((i + 1).to_string(), *cells))
        .collect();
    if steps.len() > 1 {
        let column = |k: usize| steps.iter().map(|cells| cells[k]).sum();
        rows.push(row("all".to_owned(), [column(0), column(1), column(2)]));
    }
    table(
        [
            "step",
            "awaiting approval",
            "applying",
            "converging",
            "total",
        ],
        rows,
    )
}

fn comparison(card: &Scorecard, unit: Resolution) -> String {
    let Some(earlier) = &card.earlier else {
        return format!(
            "The first drill in {}: the next ones will be compared with it.",
            card.env
        );
    };
    let Comparison {
        drills,
        last,
        best,
        median_ms,
    } = earlier;
    let mut text = format!(
        "Compared with {drills} earlier drill{} in {}:\n",
        if *drills == 1 { "" } else { "s" },
        card.env
    );
    let against = |what: &str, past: &PastDrill| {
        format!(
            "• {what}, #{} on {}: {} — {}\n",
            past.op,
            past.started_at.format("%b %-d"),
            unit.format(unit.count(past.total_ms)),
            difference(card.total_ms, past.total_ms, unit)
        )
    };
    if last.op == best.op {
        text.push_str(&against("last and best", last));
    } else {
        text.push_str(&against("last", last));
        text.push_str(&against("best", best));
    }
    if *drills > 1 {
        let _ = writeln!(
            text,
            "• median: {} — {}",
            unit.format(unit.count(*median_ms)),
            difference(card.total_ms, *median_ms, unit)
        );
    }
    // A new best only when it shows: 22 ms better is not, at tenths.
    if card.total_ms < best.total_ms && unit.count(best.total_ms - card.total_ms) > 0 {
        text.push_str(":trophy: A new best for this environment.");
    }
    text.trim_end().to_owned()
}

/// `this one 4m 05s faster`, `… slower`, or `just as fast` when the
/// difference does not show at this resolution.
fn difference(this_ms: u64, other_ms: u64, unit: Resolution) -> String {
    let gap = unit.count(this_ms.abs_diff(other_ms));
    match (gap, this_ms < other_ms) {
        (0, _) => "just as fast".to_owned(),
        (_, true) => format!("this one {} faster", unit.format(gap)),
        (_, false) => format!("this one {} slower", unit.format(gap)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::StepTimes;
    use chrono::{TimeZone, Utc};

    fn card(steps: Vec<[u64; 3]>) -> Scorecard {
        let steps: Vec<StepTimes> = steps
            .into_iter()
            .map(|[w, a, c]| StepTimes {
                waiting_ms: w,
                applying_ms: a,
                converging_ms: c,
            })
            .collect();
        let drill = crate::drill::DrillTimings {
            op: 1,
            env: "dev".into(),
            started_at: Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap(),
            steps,
        };
        crate::drill::scorecard(&drill, &[]).unwrap()
    }

    #[test]
    fn rounded_cells_add_up_to_the_rounded_total_however_they_fall() {
        // Each 1.4 s cell rounds to 1 s alone, but six of them make 8.4 s.
        let card = card(vec![[61_400, 1_400, 1_400], [1_400, 1_400, 1_400]]);
        let unit = Resolution::for_total(card.total_ms);
        assert_eq!(unit, Resolution::Seconds);
        let cells = rounded_steps(&card, unit);
        let shown: u64 = cells.iter().flatten().sum();
        assert_eq!(shown, unit.count(card.total_ms));
        assert_eq!(shown, 68, "68.4 s");
        for (cell, step) in cells.iter().flatten().zip(
            card.steps
                .iter()
                .flat_map(|s| Part::ALL.map(|p| s.part_ms(p))),
        ) {
            assert!(cell.abs_diff(step / 1_000) <= 1, "{cells:?}");
        }
    }

    #[test]
    fn times_read_as_a_clock() {
        assert_eq!(clock(0), "0s");
        assert_eq!(clock(42), "42s");
        assert_eq!(clock(257), "4m 17s");
        assert_eq!(clock(3_725), "1h 02m 05s");
        assert_eq!(Resolution::Tenths.format(42), "4.2s");
        assert_eq!(Resolution::Millis.format(7), "7ms");
        assert_eq!(Resolution::Seconds.count(u64::MAX), u64::MAX / 1000 + 1);
    }
}
