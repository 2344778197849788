//! What a run found, one line per run, and the summary
//! `scripts/crash-harness` shows.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::kill::Landed;
use crate::support::serve_proc::Transport;

/// What one run found.
pub struct RunReport {
    pub seed: u64,
    pub transport: Transport,
    pub aim: &'static str,
    pub kill: String,
    pub landed: Landed,
    pub outcome: String,
    pub took: Duration,
    pub violations: Vec<String>,
    /// Worth knowing, not asserted (see the report's notes).
    pub notes: Vec<String>,
    /// The journal, summarized, for failure messages.
    pub journal: String,
}

pub fn panicked(seed: u64, error: tokio::task::JoinError) -> RunReport {
    let reason = match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned()),
        Err(e) => e.to_string(),
    };
    RunReport {
        seed,
        transport: Transport::Http,
        aim: "?",
        kill: "?".into(),
        landed: Landed {
            phase: "?",
            detail: String::new(),
        },
        outcome: "panicked".into(),
        took: Duration::ZERO,
        violations: vec![format!("the run panicked: {reason}")],
        notes: Vec::new(),
        journal: String::new(),
    }
}

pub fn print_run(r: &RunReport) {
    let verdict = match r.violations.len() {
        0 => "ok".to_owned(),
        n => format!("FAILED ({n})"),
    };
    let landed = format!("{} {}", r.landed.phase, r.landed.detail);
    eprintln!(
        "crash: seed {:>3} {:<6} aim {:<20} kill at {:<26} landed: {:<46} → {:<9} {:>4.1} s  {verdict}",
        r.seed,
        format!("{:?}", r.transport),
        r.aim,
        r.kill,
        landed.trim(),
        r.outcome,
        r.took.as_secs_f64()
    );
    for note in &r.notes {
        eprintln!("crash:          note: {note}");
    }
}

/// The lines `scripts/crash-harness` shows: runs, seeds, phases hit, failures.
pub fn print_summary(reports: &[RunReport], took: Duration) {
    let mut phases: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut notes: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut broken: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in reports {
        phases.entry(r.landed.phase).or_default().push(r.seed);
        for note in &r.notes {
            notes.entry(note).or_default().push(r.seed);
        }
        let kinds: BTreeSet<String> = r.violations.iter().map(|v| kind_of(v)).collect();
        for kind in kinds {
            broken.entry(kind).or_default().push(r.seed);
        }
    }
    let list = |seeds: &[u64]| {
        seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let all: Vec<u64> = reports.iter().map(|r| r.seed).collect();
    let failed: Vec<u64> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| r.seed)
        .collect();
    eprintln!(
        "CRASH SUMMARY: runs {} in {:.1} s",
        reports.len(),
        took.as_secs_f64()
    );
    eprintln!("CRASH SUMMARY: seeds {}", list(&all));
    for (phase, seeds) in &phases {
        eprintln!(
            "CRASH SUMMARY: killed {phase:<32} {:>3}  (seeds {})",
            seeds.len(),
            list(seeds)
        );
    }
    for (note, seeds) in &notes {
        eprintln!(
            "CRASH SUMMARY: note {note}: {} (seeds {})",
            seeds.len(),
            list(seeds)
        );
    }
    for (violation, seeds) in &broken {
        eprintln!(
            "CRASH SUMMARY: broken {violation}: {} (seeds {})",
            seeds.len(),
            list(seeds)
        );
    }
    eprintln!(
        "CRASH SUMMARY: failures {} (seeds {})",
        failed.len(),
        list(&failed)
    );
}

/// A violation without its particulars (numbers, message ids), to group by.
fn kind_of(violation: &str) -> String {
    let first = violation.lines().next().unwrap_or_default();
    let words: Vec<&str> = first
        .split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .collect();
    words.join(" ")
}
