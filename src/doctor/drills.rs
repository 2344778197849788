//! The age of an environment's last drill.
//!
//! A drill is an operation started with `/failover drill …`, marked so on
//! its journaled header; [`is_drill`] is the one place that asks.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::age;
use crate::journal::ledger::Finished;
use crate::operation::{OperationHeader, OperationOutcome};
use crate::readiness::{Check, Finding, Severity};

/// Whether the operation was started as a drill (`/failover drill …`).
pub fn is_drill(header: &OperationHeader) -> bool {
    header.drill
}

/// When the last drill of `env` that ran to its end finished.
pub fn last_drill(finished: &[Finished], env: &str) -> Option<DateTime<Utc>> {
    finished
        .iter()
        .filter(|f| f.header.env == env && f.outcome == OperationOutcome::Completed)
        .filter(|f| is_drill(&f.header))
        .map(|f| f.finished_at)
        .max()
}

/// A warning when there was no drill, or the last one is older than
/// `max_age`.
pub fn age_finding(last: Option<DateTime<Utc>>, now: DateTime<Utc>, max_age: Duration) -> Finding {
    let subject = "last drill";
    let limit = age(max_age);
    let Some(last) = last else {
        return Finding::new(
            Severity::Warning,
            Check::Drill,
            subject,
            format!("none in the journal (doctor.drill_max_age is {limit}): practise with `/failover drill to CLUSTER and back`"),
        );
    };
    let since = (now - last).to_std().unwrap_or_default();
    let at = last.format("%Y-%m-%d %H:%M UTC");
    if since > max_age {
        Finding::new(
            Severity::Warning,
            Check::Drill,
            subject,
            format!(
                "{at}, {} ago: older than doctor.drill_max_age ({limit})",
                age(since)
            ),
        )
    } else {
        Finding::ok(Check::Drill, subject, format!("{at}, {} ago", age(since)))
    }
}

/// Without the journal the last drill cannot be found: a warning, since
/// readiness includes having practised.
pub fn unknown_age() -> Finding {
    Finding::new(
        Severity::Warning,
        Check::Drill,
        "last drill",
        "unknown: no journal given (--journal FILE, as `serve --journal`)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ages_past_the_limit_warn_and_within_it_pass() {
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let month = Duration::from_secs(30 * 86_400);
        let days = |n| Some(now - chrono::Duration::days(n));
        assert_eq!(age_finding(days(29), now, month).severity, Severity::Ok);
        let old = age_finding(days(31), now, month);
        assert_eq!(old.severity, Severity::Warning);
        assert_eq!(
            old.detail,
            "2026-11-05 12:00 UTC, 31 days ago: older than doctor.drill_max_age (30 days)"
        );
        assert_eq!(age_finding(None, now, month).severity, Severity::Warning);
    }
}
