//! Operations: what a weight-changing command becomes, and the engine that
//! runs them.
//!
//! The state is event-sourced. Every change is first appended to the
//! [`journal`] (one fsync'd JSON line) and then folded into the [`ledger`] by
//! the same function that replays the journal on start, so the state after a
//! restart is the state before it, by construction. The [`engine`] drives an
//! operation forward from whatever phase the ledger says it is in; resuming
//! after a crash is just driving again.

pub mod apply;
pub mod engine;
pub mod journal;
pub mod ledger;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::Approval;
use crate::chat::MessageRef;
use crate::plan::{Percent, Plan, Weights};

pub type OpId = u64;

/// What an operation was asked to do. Each kind knows its steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OperationKind {
    Shift {
        percent: Percent,
        target: String,
        /// Break-glass: health-gate failures are shown, not enforced.
        #[serde(default)]
        force: bool,
    },
    Failover {
        target: String,
        steps: Vec<Percent>,
    },
    Rollback {
        of: OpId,
        to: Weights,
    },
    Add {
        cluster: String,
    },
    Remove {
        cluster: String,
    },
}

impl OperationKind {
    pub fn total_steps(&self) -> usize {
        match self {
            OperationKind::Failover { steps, .. } => steps.len(),
            _ => 1,
        }
    }

    pub fn force(&self) -> bool {
        matches!(self, OperationKind::Shift { force: true, .. })
    }
}

/// The fixed facts of an operation, journaled when it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationHeader {
    pub id: OpId,
    pub env: String,
    pub channel: String,
    pub requester: String,
    pub kind: OperationKind,
    /// The command as typed, for the audit trail.
    pub command: String,
    /// Weights when the operation started: what `rollback` returns to.
    pub start: Weights,
    pub started_at: DateTime<Utc>,
    /// The Slack delivery of the command that started it: that command's
    /// answer is the operation itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// A step whose plan has been shown and awaits (or has) its approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownPlan {
    pub plan: Plan,
    pub message: MessageRef,
    pub approval: Approval,
    /// Gate failures pushed through with break-glass, shown on the plan.
    pub warnings: Vec<String>,
    /// Each routing object's version (resourceVersion) when the plan was
    /// made: if one moved, the plan is made and asked for again.
    pub versions: BTreeMap<String, String>,
}

/// Where a running operation is. Each phase is the result of a journal
/// record; the engine knows what to do next from the phase alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The current step needs a plan shown (first time, or after the weights
    /// moved under a shown plan).
    Proposing,
    AwaitingApproval(ShownPlan),
    /// Approved, not started: the weights are re-checked before applying.
    Approved(ShownPlan),
    /// Writes may be under way; on resume the step is finished or restored.
    Applying(ShownPlan),
    /// Done; the end is recorded next.
    Finishing(OperationOutcome),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationState {
    pub header: OperationHeader,
    /// 1-based.
    pub step: usize,
    pub phase: Phase,
    /// (step, approver) for every approved step.
    pub approvals: Vec<(usize, String)>,
    /// The last plan shown, kept after its step ends: its message is the
    /// thread for later replies and is updated to the final state.
    pub last_shown: Option<ShownPlan>,
    /// A plan for `step` is being posted and is not journaled yet. Slack
    /// names a message only in its answer, so a crash in between leaves a
    /// copy the bot cannot find: after a restart it says that copy is void.
    pub posting_plan: bool,
}

impl OperationState {
    pub fn total_steps(&self) -> usize {
        self.header.kind.total_steps()
    }

    pub fn shown(&self) -> Option<&ShownPlan> {
        match &self.phase {
            Phase::AwaitingApproval(s) | Phase::Approved(s) | Phase::Applying(s) => Some(s),
            _ => None,
        }
    }
}

/// What happened to one cluster during a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterResult {
    pub cluster: String,
    pub from: Option<u8>,
    pub to: Option<u8>,
    pub outcome: ClusterOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ClusterOutcome {
    /// Already at the target: nothing written.
    Unchanged,
    Applied,
    DryRun,
    Failed {
        error: String,
    },
    /// Changed, then put back to its weight before the step.
    Restored,
    /// Changed, and putting it back failed: it holds `to`.
    RestoreFailed {
        error: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    /// Every cluster holds the plan's weights. `unverified` names clusters
    /// whose Ingresses/DNS did not show the weight in time.
    Applied {
        #[serde(default)]
        unverified: Vec<String>,
        #[serde(default)]
        dry_run: Vec<String>,
    },
    /// The plan changed nothing.
    Skipped,
    /// A write conflicted with someone else's; everything was put back and
    /// the step is planned and asked for again.
    Conflict,
    /// A write failed; every changed cluster was put back.
    Restored { reason: String },
    /// A write failed and some clusters could not be put back.
    Incomplete { reason: String },
    /// A gate (identity, health) or invariant refused the step before any write.
    Refused { reason: String },
}

impl StepOutcome {
    /// A short name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            StepOutcome::Applied { .. } => "applied",
            StepOutcome::Skipped => "skipped",
            StepOutcome::Conflict => "conflict",
            StepOutcome::Restored { .. } => "restored",
            StepOutcome::Incomplete { .. } => "incomplete",
            StepOutcome::Refused { .. } => "refused",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OperationOutcome {
    Completed,
    Rejected {
        by: String,
    },
    Expired,
    Withdrawn {
        by: String,
    },
    Aborted {
        by: String,
    },
    /// Stopped after a step that did not fully succeed.
    Failed {
        reason: String,
    },
}

impl OperationOutcome {
    pub fn word(&self) -> &'static str {
        match self {
            OperationOutcome::Completed => "completed",
            OperationOutcome::Rejected { .. } => "rejected",
            OperationOutcome::Expired => "expired",
            OperationOutcome::Withdrawn { .. } => "withdrawn",
            OperationOutcome::Aborted { .. } => "aborted",
            OperationOutcome::Failed { .. } => "failed",
        }
    }
}
