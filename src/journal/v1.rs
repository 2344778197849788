//! Format 1: the records of releases before format versions (up to
//! 0.1.0 at commit 49eaf19). They journaled some sentences where format 2
//! keeps facts: what the bot said, why a step failed, a write's error. Those
//! are read as they were written and carried as `Legacy` text, which is
//! shown as it was; everything else maps onto today's records one to one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::approval::ApprovalState;
use crate::backend::BackendError;
use crate::ids::{ClusterId, MessageRef, OpId, UserId};
use crate::notice::{Destination, Notice};
use crate::operation::{self as op, GateWarning, OperationHeader, StopCause, WriteFailure};
use crate::plan::{Plan, PlanHash};

#[derive(Debug, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub prev: String,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Command {
        user: UserId,
        channel: String,
        text: String,
        #[serde(default)]
        event: Option<String>,
        #[serde(default)]
        answered: bool,
    },
    Say {
        said: Said,
    },
    Delivered {
        say: u64,
    },
    Answered {
        event: String,
    },
    Started {
        header: OperationHeader,
    },
    PlanPosting {
        op: OpId,
        step: usize,
    },
    Proposed {
        op: OpId,
        step: usize,
        plan: Plan,
        message: MessageRef,
        expires_at: DateTime<Utc>,
        #[serde(default)]
        warnings: Vec<String>,
        #[serde(default)]
        versions: BTreeMap<ClusterId, String>,
    },
    Decided {
        op: OpId,
        step: usize,
        plan: PlanHash,
        state: ApprovalState,
        #[serde(default)]
        event: Option<String>,
    },
    StepStarted {
        op: OpId,
        step: usize,
        plan: PlanHash,
    },
    Changed {
        op: OpId,
        step: usize,
        results: Vec<ClusterResult>,
    },
    StepFinished {
        op: OpId,
        step: usize,
        outcome: StepOutcome,
        millis: u64,
    },
    Finished {
        op: OpId,
        outcome: OperationOutcome,
    },
}

/// A message as format 1 journaled it: rendered text.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Said {
    Post {
        channel: String,
        thread: Option<MessageRef>,
        message: Text,
    },
    Update {
        at: MessageRef,
        message: Text,
    },
}

#[derive(Debug, Deserialize)]
pub struct Text {
    pub text: String,
}

#[derive(Debug, Deserialize)]
pub struct ClusterResult {
    pub cluster: ClusterId,
    pub from: Option<u8>,
    pub to: Option<u8>,
    pub outcome: ClusterOutcome,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ClusterOutcome {
    Unchanged,
    Applied,
    DryRun,
    Failed { error: String },
    Restored,
    RestoreFailed { error: String },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    Applied {
        #[serde(default)]
        unverified: Vec<String>,
        #[serde(default)]
        dry_run: Vec<ClusterId>,
    },
    Skipped,
    Conflict,
    Restored {
        reason: String,
    },
    Incomplete {
        reason: String,
    },
    Refused {
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OperationOutcome {
    Completed,
    Rejected { by: UserId },
    Expired,
    Withdrawn { by: UserId },
    Aborted { by: UserId },
    Failed { reason: String },
}

impl From<Record> for super::Record {
    fn from(record: Record) -> Self {
        super::Record {
            v: 1,
            seq: record.seq,
            at: record.at,
            prev: record.prev,
            entry: record.entry.into(),
        }
    }
}

impl From<Entry> for super::Entry {
    fn from(entry: Entry) -> Self {
        use super::Entry as Now;
        match entry {
            Entry::Command {
                user,
                channel,
                text,
                event,
                answered,
            } => Now::Command {
                user,
                channel,
                text,
                event,
                answered,
            },
            Entry::Say { said } => said.into(),
            Entry::Delivered { say } => Now::Delivered { say },
            Entry::Answered { event } => Now::Answered { event },
            Entry::Started { header } => Now::Started { header },
            Entry::PlanPosting { op, step } => Now::PlanPosting { op, step },
            Entry::Proposed {
                op,
                step,
                plan,
                message,
                expires_at,
                warnings,
                versions,
            } => Now::Proposed {
                op,
                step,
                plan,
                message,
                expires_at,
                warnings: warnings.into_iter().map(GateWarning::Legacy).collect(),
                versions,
                approvals_required: 1,
                checks: Vec::new(),
                capacity: Vec::new(),
            },
            Entry::Decided {
                op,
                step,
                plan,
                state,
                event,
            } => Now::Decided {
                op,
                step,
                plan,
                state,
                event,
            },
            Entry::StepStarted { op, step, plan } => Now::StepStarted {
                op,
                step,
                plan,
                warnings: Vec::new(),
            },
            Entry::Changed { op, step, results } => Now::Changed {
                op,
                step,
                results: results.into_iter().map(Into::into).collect(),
            },
            Entry::StepFinished {
                op,
                step,
                outcome,
                millis,
            } => Now::StepFinished {
                op,
                step,
                outcome: outcome.into(),
                millis,
                bake_until: None,
            },
            Entry::Finished { op, outcome } => Now::Finished {
                op,
                outcome: outcome.into(),
            },
        }
    }
}

impl From<Said> for super::Entry {
    fn from(said: Said) -> Self {
        let (to, text) = match said {
            Said::Post {
                channel,
                thread,
                message,
            } => (Destination::Post { channel, thread }, message.text),
            Said::Update { at, message } => (Destination::Update { at }, message.text),
        };
        super::Entry::Say {
            to,
            notice: Notice::Legacy { text },
        }
    }
}

/// Format 1 wrote a backend error as its text, `CLUSTER: REASON`.
fn backend_error(text: String) -> BackendError {
    match text.split_once(": ") {
        Some((cluster, reason)) => BackendError::Failed {
            cluster: cluster.to_owned(),
            reason: reason.to_owned(),
        },
        None => BackendError::Failed {
            cluster: String::new(),
            reason: text,
        },
    }
}

impl From<ClusterResult> for op::ClusterResult {
    fn from(result: ClusterResult) -> Self {
        let outcome = match result.outcome {
            ClusterOutcome::Unchanged => op::ClusterOutcome::Unchanged,
            ClusterOutcome::Applied => op::ClusterOutcome::Applied,
            ClusterOutcome::DryRun => op::ClusterOutcome::DryRun,
            ClusterOutcome::Restored => op::ClusterOutcome::Restored,
            ClusterOutcome::Failed { error } => op::ClusterOutcome::Failed {
                error: backend_error(error),
            },
            ClusterOutcome::RestoreFailed { error } => op::ClusterOutcome::RestoreFailed {
                error: backend_error(error),
            },
        };
        op::ClusterResult {
            cluster: result.cluster,
            from: result.from,
            to: result.to,
            outcome,
        }
    }
}

impl From<StepOutcome> for op::StepOutcome {
    fn from(outcome: StepOutcome) -> Self {
        let legacy = WriteFailure::Legacy;
        match outcome {
            StepOutcome::Applied {
                unverified,
                dry_run,
            } => op::StepOutcome::Applied {
                unverified,
                dry_run,
            },
            StepOutcome::Skipped => op::StepOutcome::Skipped,
            StepOutcome::Conflict => op::StepOutcome::Conflict,
            StepOutcome::Restored { reason } => op::StepOutcome::Restored {
                failure: legacy(reason),
            },
            StepOutcome::Incomplete { reason } => op::StepOutcome::Incomplete {
                failure: legacy(reason),
            },
            StepOutcome::Refused { reason } => op::StepOutcome::Refused {
                refusal: op::Refusal::Legacy { text: reason },
            },
        }
    }
}

impl From<OperationOutcome> for op::OperationOutcome {
    fn from(outcome: OperationOutcome) -> Self {
        match outcome {
            OperationOutcome::Completed => op::OperationOutcome::Completed,
            OperationOutcome::Rejected { by } => op::OperationOutcome::Rejected { by },
            OperationOutcome::Expired => op::OperationOutcome::Expired,
            OperationOutcome::Withdrawn { by } => op::OperationOutcome::Withdrawn { by },
            OperationOutcome::Aborted { by } => op::OperationOutcome::Aborted { by },
            OperationOutcome::Failed { reason } => op::OperationOutcome::Failed {
                cause: StopCause::Legacy { reason },
            },
        }
    }
}
