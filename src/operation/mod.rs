//! Operations: what a weight-changing command becomes, as plain data. The
//! journal records these facts; the ledger folds them into where each
//! operation stands; the engine moves it on. No I/O here.
//!
//! [`plan_step`] is the one function that turns an operation into the plan
//! of its next step.

mod checks;
mod refusal;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use checks::{CapacityCheck, CheckResult, GateCheck, Reading};
pub use refusal::Refusal;

use crate::approval::Approval;
use crate::backend::{BackendError, GateFailure, Snapshot};
use crate::command::add::AddOp;
use crate::command::hold::{HoldChange, TimeLimit};
use crate::command::remove::RemoveOp;
use crate::command::rollback::RollbackOp;
use crate::command::set::SetOp;
use crate::command::shift::ShiftOp;
use crate::command::to::FailoverOp;
use crate::command::{self, Command, CommandError, Situation};
use crate::ids::{ClusterId, EnvId, MessageRef, OpId, UserId};
use crate::plan::{Plan, PlanError, PlanScope, Target, Weights};

/// What an operation was asked to do: the command, with what it left open
/// (the shift's target, the steps still ahead) fixed when it started. Each
/// kind's steps are worked out in its verb's file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OperationKind {
    Shift(ShiftOp),
    Set(SetOp),
    Failover(FailoverOp),
    Rollback(RollbackOp),
    Add(AddOp),
    Remove(RemoveOp),
}

impl OperationKind {
    /// The operation a command starts, given the weights now; `None` for a
    /// command that changes no weight.
    pub fn start(
        command: &Command,
        situation: &Situation<'_>,
    ) -> Option<Result<OperationKind, CommandError>> {
        let now = situation.now;
        Some(match command {
            Command::Shift(shift) => shift.operation(now).map(OperationKind::Shift),
            Command::Set(set) => set.operation(now).map(OperationKind::Set),
            Command::To(to) => to.operation(now).map(OperationKind::Failover),
            Command::Drill(drill) => drill.operation(now).map(OperationKind::Failover),
            Command::Rollback => {
                command::rollback::operation(situation).map(OperationKind::Rollback)
            }
            Command::Add(add) => add.operation(now).map(OperationKind::Add),
            Command::Remove(remove) => remove.operation(now).map(OperationKind::Remove),
            Command::Status
            | Command::History
            | Command::Drills
            | Command::Abort
            | Command::Freeze(_)
            | Command::Unfreeze
            | Command::Hold(_) => return None,
        })
    }

    pub fn total_steps(&self) -> usize {
        match self {
            OperationKind::Failover(failover) => failover.total_steps(),
            _ => 1,
        }
    }

    /// Whether step `step` is on a drill's way back (`and back`).
    pub fn returning(&self, step: usize) -> bool {
        match self {
            OperationKind::Failover(failover) => {
                failover.back.is_some() && step > failover.forward_steps()
            }
            _ => false,
        }
    }

    /// Break-glass: health gates are shown on the plan, not enforced.
    pub fn force(&self) -> bool {
        matches!(self, OperationKind::Shift(ShiftOp { force: true, .. }))
    }

    /// Where step `step` (1-based) takes the environment from `now`.
    fn step_target(
        &self,
        step: usize,
        now: &Weights,
        start: &Weights,
    ) -> Result<Target, PlanError> {
        match self {
            OperationKind::Shift(shift) => shift.step(now),
            OperationKind::Set(set) => set.step(now),
            OperationKind::Failover(failover) => failover.step(step, now, start),
            OperationKind::Rollback(rollback) => rollback.step(now),
            OperationKind::Add(add) => add.step(now),
            OperationKind::Remove(remove) => remove.step(now),
        }
    }
}

/// What a step aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aim {
    /// The operation's own next step.
    Forward,
    /// Back to the weights before the operation: an after-gate tripped, or
    /// a time-limited shift's time is up.
    Back,
    /// No weight moves: an `extend` or `keep` of a time-limited shift.
    Stay,
}

impl OperationState {
    /// What the step being planned aims at.
    pub fn aim(&self) -> Aim {
        match &self.hold {
            Some(hold) if hold.changing() => Aim::Stay,
            Some(hold) if hold.returning.is_some() => Aim::Back,
            _ if self.tripped.is_some() => Aim::Back,
            _ => Aim::Forward,
        }
    }
}

/// The plan of step `step` of an operation, from the weights `now`; the
/// way back to the weights before it when an after-gate `tripped`.
pub fn plan_step(
    header: &OperationHeader,
    step: usize,
    now: &Weights,
    tripped: bool,
) -> Result<Plan, PlanError> {
    let aim = if tripped { Aim::Back } else { Aim::Forward };
    plan_aimed(header, step, now, aim)
}

/// The plan of step `step` of an operation, aimed as `aim` says.
pub fn plan_aimed(
    header: &OperationHeader,
    step: usize,
    now: &Weights,
    aim: Aim,
) -> Result<Plan, PlanError> {
    let target = match aim {
        Aim::Back => back_to_start(header, now),
        Aim::Forward => header.kind.step_target(step, now, &header.start)?,
        Aim::Stay => Target::weights(now.clone()),
    };
    let scope = PlanScope {
        env: header.env.clone(),
        operation: header.id,
        step,
    };
    Plan::new(scope, target.change, now.clone(), target.after)
}

/// Every routed cluster back to its weight when the operation started (0
/// for one it did not have then).
fn back_to_start(header: &OperationHeader, now: &Weights) -> Target {
    let after = now
        .clusters()
        .map(|c| (c.clone(), header.start.get(c).unwrap_or(0)))
        .collect();
    Target::weights(after)
}

/// The fixed facts of an operation, journaled when it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationHeader {
    pub id: OpId,
    pub env: EnvId,
    pub channel: String,
    pub requester: UserId,
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
    /// Why, as the requester said it (`… because INC-4711 db failover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Started during a freeze, by break-glass: the freeze it broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during_freeze: Option<Freeze>,
    /// `for 2h`: once its steps are done, the weights hold that long, then
    /// go back to `start` (the approval of the steps covers that return).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<TimeLimit>,
    /// A drill (`/failover drill …`): a practice run, timed from its
    /// records and scored at its end. Absent in journals from before drills.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill: bool,
}

/// A freeze of an environment: who, why, since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub by: UserId,
    pub reason: String,
    pub since: DateTime<Utc>,
}

impl OperationHeader {
    /// The command as typed, without the leading `/failover`.
    pub fn typed(&self) -> &str {
        self.command.trim().trim_start_matches("/failover").trim()
    }
}

/// A gate that failed on a cluster and was pushed through with break-glass
/// (or an advisory gate's failing reading, shown for information).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GateWarning {
    Failed {
        cluster: ClusterId,
        failure: GateFailure,
    },
    Metric {
        check: GateCheck,
    },
    Capacity {
        capacity: CapacityCheck,
    },
    /// Written by a release before facts were journaled: the sentence.
    Legacy(String),
}

/// A step whose plan has been shown and awaits (or has) its approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownPlan {
    pub plan: Plan,
    pub message: MessageRef,
    pub approval: Approval,
    /// Gate failures pushed through with break-glass, shown on the plan.
    pub warnings: Vec<GateWarning>,
    /// Each routing object's version (resourceVersion) when the plan was
    /// made: if one moved, the plan is made and asked for again.
    pub versions: BTreeMap<ClusterId, String>,
    /// The before-gates' readings when the plan was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<GateCheck>,
    /// The capacity gate's counts when the plan was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity: Vec<CapacityCheck>,
}

impl ShownPlan {
    /// Routing objects whose version moved since the plan was made
    /// (someone else wrote them, even if the weights look the same).
    pub fn moved_objects(&self, snapshot: &Snapshot) -> Vec<ClusterId> {
        self.versions
            .iter()
            .filter(|(cluster, version)| snapshot.version(cluster) != Some(version.as_str()))
            .map(|(cluster, _)| cluster.clone())
            .collect()
    }
}

/// Where a running operation is. Each phase is the result of a journal
/// record; the engine knows what to do next from the phase alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The current step needs a plan shown (first time, or after the weights
    /// moved under a shown plan).
    Proposing,
    AwaitingApproval(ShownPlan),
    /// Approved, not started: the weights are re-checked before applying.
    Approved(ShownPlan),
    /// Writes may be under way; on resume the step is finished or restored.
    Applying(ShownPlan),
    /// The step is applied; the after-gates must hold until `until` before
    /// the operation goes on.
    Baking {
        until: DateTime<Utc>,
    },
    /// A time-limited shift's steps are done: the weights hold until
    /// [`Hold::until`], then go back.
    Holding,
    /// Done; the end is recorded next.
    Finishing(OperationOutcome),
}

/// Who approved a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepApproval {
    pub step: usize,
    pub by: UserId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationState {
    pub header: OperationHeader,
    /// 1-based.
    pub step: usize,
    pub phase: Phase,
    pub approvals: Vec<StepApproval>,
    /// The last plan shown, kept after its step ends: its message is the
    /// thread for later replies and is updated to the final state.
    pub last_shown: Option<ShownPlan>,
    /// A plan for `step` is being posted and is not journaled yet. Slack
    /// names a message only in its answer, so a crash in between leaves a
    /// copy the bot cannot find: after a restart it says that copy is void.
    pub posting_plan: bool,
    /// When the step being applied began its writes.
    pub step_started_at: Option<DateTime<Utc>>,
    /// The bake's message in the thread, once posted.
    pub bake_message: Option<MessageRef>,
    /// An after-gate tripped: the step being planned is the way back to the
    /// weights before the operation.
    pub tripped: Option<Tripped>,
    /// A time-limited shift whose steps are done.
    pub hold: Option<Hold>,
}

/// A time-limited shift's weights, holding until they go back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// When the weights go back.
    pub until: DateTime<Utc>,
    /// When they began to hold: the 72 h cap counts from here.
    pub since: DateTime<Utc>,
    /// The weights the operation left; a return from others (changed by
    /// hand meanwhile) is planned again and needs an approval.
    pub left: Weights,
    /// The thread has been reminded of the return.
    pub reminded: bool,
    /// Time is up: the step being planned is the return.
    pub returning: Option<Return>,
    /// An `extend` or `keep` asked for: the step being planned is its
    /// (weightless) plan, approved like any other.
    pub change: Option<HoldAsk>,
}

/// The return of a time-limited shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    /// The weights were changed by hand while they held: the return was
    /// planned again and needs an approval.
    pub by_hand: bool,
}

/// `extend` or `keep`, and who asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldAsk {
    pub change: HoldChange,
    pub by: UserId,
}

impl Hold {
    /// The step being planned changes no weight: it is an `extend` or `keep`.
    pub fn changing(&self) -> bool {
        self.change.is_some()
    }
}

/// Why an operation turned back: the after-gate readings that blocked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tripped {
    pub step: usize,
    pub checks: Vec<GateCheck>,
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

    /// Who asked for the step being planned: the requester, or whoever
    /// asked for an `extend` or `keep` — never its approver.
    pub fn asker(&self) -> &UserId {
        match self.hold.as_ref().and_then(|h| h.change.as_ref()) {
            Some(ask) => &ask.by,
            None => &self.header.requester,
        }
    }

    /// The plan message whose thread carries this operation's replies.
    pub fn thread(&self) -> Option<&MessageRef> {
        self.last_shown.as_ref().map(|s| &s.message)
    }
}

/// What happened to one cluster during a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterResult {
    pub cluster: ClusterId,
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
        error: BackendError,
    },
    /// Changed, then put back to its weight before the step.
    Restored,
    /// Changed, and putting it back failed: it holds `to`.
    RestoreFailed {
        error: BackendError,
    },
}

/// Why a step's writes did not all land.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WriteFailure {
    Errors(Vec<BackendError>),
    /// Written by a release before facts were journaled: the sentence.
    Legacy(String),
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
        dry_run: Vec<ClusterId>,
    },
    /// The plan changed nothing.
    Skipped,
    /// A write conflicted with someone else's; everything was put back and
    /// the step is planned and asked for again.
    Conflict,
    /// A write failed; every changed cluster was put back.
    Restored { failure: WriteFailure },
    /// A write failed and some clusters could not be put back.
    Incomplete { failure: WriteFailure },
    /// A gate (identity, health) or invariant refused the step before any write.
    Refused { refusal: Refusal },
    /// The bot restarted during the step and stopped it without writing:
    /// finishing it was not safe (see the refusal).
    Interrupted { refusal: Refusal },
}

impl StepOutcome {
    /// A short name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            StepOutcome::Applied { .. } => "applied",
            StepOutcome::Skipped => "skipped",
            StepOutcome::Conflict => "conflict",
            StepOutcome::Restored { .. } => "restored",
            StepOutcome::Incomplete { .. } | StepOutcome::Interrupted { .. } => "incomplete",
            StepOutcome::Refused { .. } => "refused",
        }
    }
}

/// Why an operation stopped before its last step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum StopCause {
    /// The step was applied, but what serves traffic did not carry it in time.
    Unverified { step: usize, clusters: Vec<String> },
    /// A step's writes failed (put back, or not).
    WritesFailed { failure: WriteFailure },
    /// A step was refused before any write, or could not be planned.
    Refused { refusal: Refusal },
    /// Slack would not take a step's plan, so nobody could approve it.
    PlanNotPosted { step: usize, reason: String },
    /// An after-gate tripped after step `step`; the weights went back (or
    /// the way back was refused or rejected: see the thread).
    GateTripped { step: usize, checks: Vec<GateCheck> },
    /// A time-limited shift's return was refused (a gate failed, a cluster
    /// could not be read): the weights stay where the shift left them.
    ReturnRefused { refusal: Refusal },
    /// Written by a release before facts were journaled: the sentence.
    Legacy { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OperationOutcome {
    Completed,
    Rejected {
        by: UserId,
    },
    Expired,
    Withdrawn {
        by: UserId,
    },
    Aborted {
        by: UserId,
    },
    /// Stopped after a step that did not fully succeed.
    Failed {
        cause: StopCause,
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

/// How a shown plan stands; the plan message's headline says it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PlanStatus {
    Pending,
    Applying { by: UserId },
    Applied,
    Failed,
    Refused,
    Rejected { by: UserId },
    Expired,
    Withdrawn { by: UserId },
    Aborted { by: UserId },
    Superseded,
}

impl PlanStatus {
    pub fn label(&self) -> &'static str {
        match self {
            PlanStatus::Pending => "pending",
            PlanStatus::Applying { .. } => "applying",
            PlanStatus::Applied => "applied",
            PlanStatus::Failed => "failed",
            PlanStatus::Refused => "refused",
            PlanStatus::Rejected { .. } => "rejected",
            PlanStatus::Expired => "expired",
            PlanStatus::Withdrawn { .. } => "withdrawn",
            PlanStatus::Aborted { .. } => "aborted",
            PlanStatus::Superseded => "superseded",
        }
    }
}
