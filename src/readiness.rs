//! The readiness doctor's findings as plain facts, and when the scheduled
//! check speaks about them. No I/O: [`crate::doctor`] gathers the findings,
//! the engine decides here whether a result is worth a post, and
//! [`crate::messages`] words it.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::EnvId;

/// How a finding stands. Ordered: the worst is the greatest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    /// Not ready in full, but a failover would still go (an old drill, a
    /// gate that blocks right now, weights not carried yet).
    Warning,
    /// A failover would be refused or go wrong.
    Problem,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Problem => "problem",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The cluster answers as the cluster the config names.
    Identity,
    /// SelfSubjectAccessReviews for what the bot does to routing objects.
    Permissions,
    /// The routing object can be read.
    Weight,
    /// The cluster's health gate.
    Health,
    /// One Prometheus gate.
    Gate,
    /// Every Route53 record has a weighted set per cluster.
    Records,
    /// Mode `route53`: the external-dns registry gives the records to us.
    Ownership,
    /// Weights as set against weights as served (Ingresses, DNS).
    Drift,
    /// The Lease in the home cluster: held and renewed.
    Lease,
    /// What the bot does to the Lease and the journal in its home cluster.
    HomePermissions,
    /// The age of the environment's last drill.
    Drill,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Identity => "identity",
            Check::Permissions => "permissions",
            Check::Weight => "weight",
            Check::Health => "health",
            Check::Gate => "gate",
            Check::Records => "records",
            Check::Ownership => "ownership",
            Check::Drift => "drift",
            Check::Lease => "lease",
            Check::HomePermissions => "home-permissions",
            Check::Drill => "drill",
        }
    }
}

/// One thing the doctor found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub check: Check,
    /// What it is about: a cluster, a gate on a cluster, a zone, the Lease.
    pub subject: String,
    /// What was found, in a few words.
    pub detail: String,
}

impl Finding {
    pub fn new(
        severity: Severity,
        check: Check,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            check,
            subject: subject.into(),
            detail: detail.into(),
        }
    }

    pub fn ok(check: Check, subject: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding::new(Severity::Ok, check, subject, detail)
    }
}

/// Everything found about one environment (`home` for the bot's own
/// Lease and journal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub env: EnvId,
    pub findings: Vec<Finding>,
}

/// What a result is compared by: each finding that is not ok, by what it is
/// about and how bad, but not by its words. The words carry ages ("renewed
/// 3 s ago", "41 days ago") that change on every check, and a post on every
/// check is the noise the scheduled check must not make.
pub type Signature = BTreeSet<(Check, String, Severity)>;

impl Report {
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    pub fn worst(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    pub fn signature(&self) -> Signature {
        self.findings
            .iter()
            .filter(|f| f.severity != Severity::Ok)
            .map(|f| (f.check, f.subject.clone(), f.severity))
            .collect()
    }

    /// Findings that are not ok, worst first, in the order found otherwise.
    pub fn not_ok(&self) -> Vec<&Finding> {
        let mut found: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Ok)
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.severity));
        found
    }
}

/// How often an environment whose checks all pass hears so anyway: silence
/// alone cannot tell "all is well" from "the doctor stopped".
pub const ALL_CLEAR_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why the scheduled check posts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Occasion {
    /// The result differs from the last one posted (or none was).
    Changed,
    /// Unchanged and clean, and the last post is a week old.
    AllClear,
}

/// The last result the scheduled check posted about an environment: what
/// the next one is compared with (kept in the journal, so a restart does
/// not post the same result again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPost {
    pub at: DateTime<Utc>,
    pub signature: Signature,
}

/// Whether `report`, found at `now`, is worth a post after `last`.
pub fn occasion(last: Option<&LastPost>, report: &Report, now: DateTime<Utc>) -> Option<Occasion> {
    let Some(last) = last else {
        return Some(Occasion::Changed);
    };
    if last.signature != report.signature() {
        return Some(Occasion::Changed);
    }
    let clean = report.worst() == Severity::Ok;
    let quiet_for = (now - last.at).to_std().unwrap_or_default();
    (clean && quiet_for >= ALL_CLEAR_EVERY).then_some(Occasion::AllClear)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
    }

    fn report(findings: Vec<Finding>) -> Report {
        Report {
            env: "dev".into(),
            findings,
        }
    }

    fn old_drill(days: u32) -> Finding {
        let detail = format!("{days}days ago");
        Finding::new(Severity::Warning, Check::Drill, "last drill", detail)
    }

    #[test]
    fn a_result_is_compared_by_what_is_wrong_not_by_its_words() {
        let first = report(vec![old_drill(31)]);
        let last = LastPost {
            at: at(1),
            signature: first.signature(),
        };
        let aged = report(vec![old_drill(32)]);
        assert_eq!(occasion(Some(&last), &aged, at(2)), None);
        let worse = report(vec![
            old_drill(32),
            Finding::new(Severity::Problem, Check::Identity, "a", "x"),
        ]);
        assert_eq!(
            occasion(Some(&last), &worse, at(2)),
            Some(Occasion::Changed)
        );
        assert_eq!(occasion(None, &aged, at(2)), Some(Occasion::Changed));
    }

    #[test]
    fn only_a_clean_result_gets_the_weekly_all_clear() {
        let clean = report(vec![Finding::ok(Check::Health, "a", "fine")]);
        let last = LastPost {
            at: at(1),
            signature: clean.signature(),
        };
        assert_eq!(occasion(Some(&last), &clean, at(7)), None);
        assert_eq!(
            occasion(Some(&last), &clean, at(8)),
            Some(Occasion::AllClear)
        );
        let warned = report(vec![old_drill(40)]);
        let last = LastPost {
            at: at(1),
            signature: warned.signature(),
        };
        assert_eq!(occasion(Some(&last), &warned, at(20)), None);
    }
}
