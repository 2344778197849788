//! What the gates on real signals found, as journaled and shown: a
//! Prometheus gate's reading for one cluster, and the capacity gate's
//! count of ready replicas. Facts only; [`crate::messages`] says them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::gates::When;
use crate::ids::ClusterId;

/// A number read from Prometheus. Compared bit for bit, so a journaled
/// reading (NaN included) equals itself.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Reading(pub f64);

impl PartialEq for Reading {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Reading {}

impl fmt::Display for Reading {
    /// Short: `0.0123`, `1.5e-5`, `42`, `NaN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v == v.trunc() && v.abs() < 1e12 {
            write!(f, "{v:.0}")
        } else if v.abs() >= 1e-3 {
            let text = format!("{v:.4}");
            f.write_str(text.trim_end_matches('0').trim_end_matches('.'))
        } else {
            write!(f, "{v:.2e}")
        }
    }
}

/// How a gate reading came out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CheckResult {
    Pass,
    Fail,
    /// No data: a pause unless the gate says `on_no_data: pass`.
    NoData {
        passes: bool,
    },
    /// The query could not be evaluated; never a pass.
    Error {
        message: String,
    },
}

/// One Prometheus gate evaluated for one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateCheck {
    pub gate: String,
    pub cluster: ClusterId,
    pub when: When,
    /// The query as sent.
    pub query: String,
    /// `<`, `<=`, `>` or `>=`, and the threshold.
    pub operator: String,
    pub threshold: Reading,
    /// Every value the query returned.
    pub readings: Vec<Reading>,
    pub result: CheckResult,
    /// Reported, never blocking.
    pub advisory: bool,
}

impl GateCheck {
    /// What it read: its values, or why there are none.
    pub fn values(&self) -> String {
        match &self.result {
            CheckResult::NoData { .. } => "no data".to_owned(),
            CheckResult::Error { message } => format!("nothing ({message})"),
            _ => self
                .readings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    pub fn passed(&self) -> bool {
        match &self.result {
            CheckResult::Pass => true,
            CheckResult::NoData { passes } => *passes,
            CheckResult::Fail | CheckResult::Error { .. } => false,
        }
    }

    /// Whether this reading stops the step (or pauses the operation).
    pub fn blocks(&self) -> bool {
        !self.passed() && !self.advisory
    }
}

/// The capacity gate for one Deployment in one cluster whose share rises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityCheck {
    /// `namespace/name`.
    pub deployment: String,
    pub cluster: ClusterId,
    /// Its ready replicas; `None` when it has no such Deployment.
    pub ready: Option<u32>,
    /// Why the cluster could not be read, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// Ready replicas where traffic is served before the step.
    pub serving: u32,
    /// The cluster's share after the step, in percent.
    pub share_percent: Reading,
    pub headroom: Reading,
    pub required: u32,
    /// `None`: not enough could be read to say.
    pub enough: Option<bool>,
}

impl CapacityCheck {
    /// Its ready replicas as said: a number, or why there is none.
    pub fn ready_text(&self) -> String {
        match (&self.unreadable, self.ready) {
            (Some(why), _) => format!("unknown ({why})"),
            (None, Some(n)) => n.to_string(),
            (None, None) => "no such Deployment, so 0".to_owned(),
        }
    }

    pub fn blocks(&self) -> bool {
        self.enough != Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_read_short() {
        let shown: Vec<String> = [0.0123, 1.5e-5, 42.0, 0.5, f64::NAN]
            .map(|v| Reading(v).to_string())
            .to_vec();
        assert_eq!(shown, ["0.0123", "1.50e-5", "42", "0.5", "NaN"]);
        assert_eq!(Reading(f64::NAN), Reading(f64::NAN));
    }
}
