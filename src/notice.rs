//! Everything the bot says, as a kind with its facts — never as text.
//!
//! The engine decides *what* to say ([`Notice`]); [`crate::messages`] says
//! it in words. Notices about operations are journaled before they are
//! sent, so a reworded message changes no saved record, and a message a
//! crash cut off is rendered and sent after the restart. Tests assert on a
//! message's kind and facts; the wording of each kind is pinned by snapshot
//! tests of [`crate::messages`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Convergence, GateFailure, Snapshot};
use crate::chat::MessageKind;
use crate::command::hold::{HoldChange, TimeLimit};
use crate::drill::{DrillEnd, DrillTimings, Scorecard};
use crate::ids::{ClusterId, EnvId, MessageRef, OpId, UserId};
use crate::operation::{
    ClusterResult, Freeze, GateCheck, OperationHeader, OperationOutcome, OperationState, Phase,
    PlanStatus, Refusal, ShownPlan, StepApproval, StepOutcome, StopCause, Tripped, WriteFailure,
};
use crate::plan::{Plan, Weights};
use crate::readiness::{Occasion, Report, Severity};

/// Something the bot says, with the facts it says it from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A step's plan: posted for approval, then updated as it goes.
    Plan(Box<PlanNotice>),
    /// What a step did to each cluster.
    StepResult(Box<StepReport>),
    /// The weights moved under a shown plan; a new one follows.
    Superseded {
        plan: Box<Plan>,
        now: Weights,
        moved: Vec<ClusterId>,
    },
    /// How an operation ended.
    Finished(FinishedNotice),
    /// The bot came back mid-operation.
    Resuming(ResumeNotice),
    /// A step interrupted by a restart was not finished.
    StepStopped(Box<StepStopped>),
    ApprovalTakenBack {
        user: UserId,
    },
    ApprovalTooLate {
        user: UserId,
        step: usize,
    },
    /// A request refused, with why.
    Refused {
        refusal: Refusal,
    },
    /// Something failed on the bot's side; details are in its log.
    InternalError {
        op: Option<OpId>,
    },
    /// A command a restart cut short.
    CommandCutShort {
        text: String,
    },
    Help,
    /// A command that goes on to do work: its first answer.
    Working {
        text: String,
    },
    Status(Box<StatusNotice>),
    History(HistoryNotice),
    /// The after-gates' readings during a step's bake (posted, then updated).
    Bake(Box<BakeNotice>),
    /// An after-gate blocked: the operation turns back.
    GateTripped {
        op: OpId,
        step: usize,
        checks: Vec<GateCheck>,
        /// The way back is taken without an approval (`on_gate_failure:
        /// rollback`).
        on_its_own: bool,
    },
    /// A time-limited shift's weights go back soon: `extend` or `keep`.
    HoldReminder {
        op: OpId,
        until: DateTime<Utc>,
        back_to: Weights,
    },
    /// The journal's signing key was replaced (the old one lost): a new
    /// signed chain starts, anchored on `old_head`.
    Rekeyed {
        new_key: String,
        old_head: String,
        reason: String,
    },
    /// An environment was frozen: new operations wait, but break-glass.
    Frozen {
        env: EnvId,
        by: UserId,
        reason: String,
        break_glass: Vec<String>,
    },
    Unfrozen {
        env: EnvId,
        by: UserId,
        since: DateTime<Utc>,
    },
    /// A drill's end: its times, and how it compares with earlier drills.
    DrillScorecard(Box<Scorecard>),
    /// The chart of an environment's drills, a file for the scorecard's
    /// thread (see [`Destination::Upload`]).
    DrillChart(Box<DrillChart>),
    /// `drills`: an environment's past drills.
    Drills(DrillsNotice),
    /// The scheduled readiness check: an environment's result changed, or
    /// the weekly all-clear.
    Readiness(Box<ReadinessNotice>),
    /// Written by a release that journaled text, not facts.
    Legacy {
        text: String,
    },
}

/// The drills a chart shows: the drill just ended and the completed ones
/// of its environment before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillChart {
    pub op: OpId,
    pub env: EnvId,
    pub drills: Vec<DrillTimings>,
}

/// `drills`: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillsNotice {
    pub env: EnvId,
    /// Running now, if a drill is.
    pub running: Option<DrillLine>,
    pub finished: Vec<DrillLine>,
}

/// One drill in `drills`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillLine {
    pub op: OpId,
    pub started_at: DateTime<Utc>,
    pub requester: UserId,
    /// The command as typed, without `/failover`.
    pub command: String,
    /// `None` while it runs.
    pub ended: Option<DrillEnd>,
    /// From start to end (of its last step, when completed).
    pub total_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanNotice {
    pub header: OperationHeader,
    pub step: usize,
    pub shown: ShownPlan,
    pub status: PlanStatus,
    /// The plan is the way back after these after-gate readings tripped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tripped: Option<Tripped>,
    /// The plan is a time-limited shift's return, `extend` or `keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldPlan>,
}

/// What a plan does to a time-limited shift that holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "hold", rename_all = "snake_case")]
pub enum HoldPlan {
    /// Time is up: the weights go back. `by_hand`: they were changed by
    /// hand meanwhile, so the return needs an approval.
    Return { by_hand: bool },
    /// `extend`: the weights hold until `to` instead of `from`.
    Extend {
        by: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// `keep`: the weights stay for good; the operation ends.
    Keep { by: UserId, until: DateTime<Utc> },
}

impl HoldPlan {
    /// What the step being planned does to the hold, if it is about one.
    pub fn of(op: &OperationState) -> Option<HoldPlan> {
        let hold = op.hold.as_ref()?;
        if let Some(ret) = hold.returning {
            return Some(HoldPlan::Return {
                by_hand: ret.by_hand,
            });
        }
        let ask = hold.change.as_ref()?;
        Some(match ask.change {
            HoldChange::Extend { by } => HoldPlan::Extend {
                by: ask.by.clone(),
                from: hold.until,
                to: hold.until + by.chrono(),
            },
            HoldChange::Keep => HoldPlan::Keep {
                by: ask.by.clone(),
                until: hold.until,
            },
        })
    }
}

/// How a bake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BakeState {
    Holding,
    Passed,
    Tripped,
}

impl BakeState {
    pub fn label(self) -> &'static str {
        match self {
            BakeState::Holding => "holding",
            BakeState::Passed => "passed",
            BakeState::Tripped => "tripped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BakeNotice {
    pub op: OpId,
    pub step: usize,
    pub total: usize,
    pub until: DateTime<Utc>,
    pub checks: Vec<GateCheck>,
    pub state: BakeState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub op: OpId,
    pub env: EnvId,
    pub step: usize,
    pub total: usize,
    pub plan: Plan,
    pub results: Vec<ClusterResult>,
    pub outcome: StepOutcome,
    /// Time from the step's start to its result, in microseconds.
    pub micros: u64,
    /// The step was a time-limited shift's return, `extend` or `keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldPlan>,
    /// The last step of a time-limited shift: the weights hold this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds_for: Option<TimeLimit>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedNotice {
    pub op: OpId,
    /// The step it ended at, and how many it had.
    pub step: usize,
    pub total: usize,
    pub approvals: Vec<(usize, UserId)>,
    pub outcome: OperationOutcome,
    /// A time-limited shift ended while its weights held (by `abort`,
    /// `keep`, or a return that did not happen): they stay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub while_holding: bool,
    /// The first 16 hex digits of the hash of the record that ended the
    /// operation: the channel anchors the journal (`audit verify
    /// --expect-head`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
}

/// How many hex digits of a record's hash the channel shows.
pub const ANCHOR_DIGITS: usize = 16;

impl FinishedNotice {
    pub fn of(op: &OperationState, outcome: &OperationOutcome) -> Self {
        let returned = op.hold.as_ref().and_then(|h| h.returning).is_some()
            && *outcome == OperationOutcome::Completed;
        FinishedNotice {
            op: op.header.id,
            // A time-limited shift's return, `extend` or `keep` counts
            // as after its last step.
            step: op.step.min(op.total_steps()),
            total: op.total_steps(),
            approvals: approvals(&op.approvals),
            outcome: outcome.clone(),
            while_holding: op.hold.is_some() && !returned,
            anchor: None,
        }
    }

    /// With the hash of the record that ended the operation.
    pub fn anchored(mut self, hash: &str) -> Self {
        self.anchor = Some(hash.chars().take(ANCHOR_DIGITS).collect());
        self
    }
}

fn approvals(list: &[StepApproval]) -> Vec<(usize, UserId)> {
    list.iter().map(|a| (a.step, a.by.clone())).collect()
}

/// What the bot does on coming back to an operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "doing", rename_all = "snake_case")]
pub enum Resumption {
    /// A plan was being posted when it stopped: a copy may show, and is void.
    RepostingPlan,
    PlanningNextStep,
    AwaitingApproval {
        until: DateTime<Utc>,
    },
    ApplyingApprovedStep,
    FinishingInterruptedStep,
    /// Watching the after-gates after a step, until `until`.
    Baking {
        until: DateTime<Utc>,
    },
    /// A time-limited shift holds its weights until `until`.
    Holding {
        until: DateTime<Utc>,
    },
    Closing,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeNotice {
    pub op: OpId,
    pub step: usize,
    pub total: usize,
    pub doing: Resumption,
}

impl ResumeNotice {
    pub fn of(op: &OperationState) -> Self {
        let doing = match &op.phase {
            Phase::Proposing if op.posting_plan => Resumption::RepostingPlan,
            Phase::Proposing => Resumption::PlanningNextStep,
            Phase::AwaitingApproval(shown) => Resumption::AwaitingApproval {
                until: shown.approval.expires_at,
            },
            Phase::Approved(_) => Resumption::ApplyingApprovedStep,
            Phase::Applying(_) => Resumption::FinishingInterruptedStep,
            Phase::Baking { until } => Resumption::Baking { until: *until },
            Phase::Holding => Resumption::Holding {
                until: op.hold.as_ref().map_or(op.header.started_at, |h| h.until),
            },
            Phase::Finishing(_) => Resumption::Closing,
        };
        ResumeNotice {
            op: op.header.id,
            // A time-limited shift's return, `extend` or `keep` counts
            // as after its last step.
            step: op.step.min(op.total_steps()),
            total: op.total_steps(),
            doing,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStopped {
    pub env: EnvId,
    pub step: usize,
    pub total: usize,
    pub plan: Plan,
    pub refusal: Refusal,
    /// Clusters the bot put back to their weight before the step: its own
    /// half-written step, undone.
    #[serde(default)]
    pub put_back: Vec<ClusterId>,
    /// Every cluster's weight as read when it stopped; `None`: unreadable.
    pub now: Option<Weights>,
}

/// One operation in `status` or `history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationLine {
    pub op: OpId,
    pub requester: UserId,
    /// The command as typed, without `/failover`.
    pub command: String,
    pub step: usize,
    pub total: usize,
    pub approvals: Vec<(usize, UserId)>,
    /// `None` while running.
    pub ended: Option<Ended>,
    /// While running: what it waits for.
    pub phase: Option<PhaseName>,
    /// Why, as the requester said it.
    #[serde(default)]
    pub reason: Option<String>,
    /// A time-limited shift's weights go back then (while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub outcome: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    Planning,
    AwaitingApproval,
    Applying,
    Baking,
    Holding,
    Finishing,
}

impl OperationLine {
    pub fn running(op: &OperationState) -> Self {
        let phase = match &op.phase {
            Phase::AwaitingApproval(_) => PhaseName::AwaitingApproval,
            Phase::Approved(_) | Phase::Applying(_) => PhaseName::Applying,
            Phase::Proposing => PhaseName::Planning,
            Phase::Baking { .. } => PhaseName::Baking,
            Phase::Holding => PhaseName::Holding,
            Phase::Finishing(_) => PhaseName::Finishing,
        };
        OperationLine {
            op: op.header.id,
            requester: op.header.requester.clone(),
            command: op.header.typed().to_owned(),
            // A time-limited shift's return, `extend` or `keep` counts
            // as after its last step.
            step: op.step.min(op.total_steps()),
            total: op.total_steps(),
            approvals: approvals(&op.approvals),
            ended: None,
            phase: Some(phase),
            reason: op.header.reason.clone(),
            returns_at: op.hold.as_ref().map(|h| h.until),
        }
    }

    pub fn finished(
        header: &OperationHeader,
        approvals_of: &[StepApproval],
        outcome: &OperationOutcome,
        at: DateTime<Utc>,
    ) -> Self {
        OperationLine {
            op: header.id,
            requester: header.requester.clone(),
            command: header.typed().to_owned(),
            step: header.kind.total_steps(),
            total: header.kind.total_steps(),
            approvals: approvals(approvals_of),
            ended: Some(Ended {
                outcome: outcome.word().to_owned(),
                at,
            }),
            phase: None,
            reason: header.reason.clone(),
            returns_at: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusNotice {
    pub env: EnvId,
    pub snapshot: Snapshot,
    /// How far what serves traffic carries the weights; `None`: unknown.
    pub observed: Option<Vec<Convergence>>,
    pub running: Option<OperationLine>,
    #[serde(default)]
    pub frozen: Option<Freeze>,
}

/// What the scheduled readiness check found about one environment, and why
/// it says so now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessNotice {
    pub report: Report,
    pub occasion: Occasion,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryNotice {
    pub env: EnvId,
    pub running: Option<OperationLine>,
    /// Newest first.
    pub finished: Vec<OperationLine>,
}

impl Notice {
    pub fn kind(&self) -> MessageKind {
        match self {
            Notice::Plan(_) => MessageKind::Plan,
            Notice::StepResult(_) => MessageKind::StepResult,
            Notice::Superseded { .. } => MessageKind::Superseded,
            Notice::Finished(_) => MessageKind::Finished,
            Notice::Resuming(_) => MessageKind::Resuming,
            Notice::StepStopped(_) => MessageKind::StepStopped,
            Notice::ApprovalTakenBack { .. } => MessageKind::ApprovalTakenBack,
            Notice::ApprovalTooLate { .. } => MessageKind::ApprovalTooLate,
            Notice::Refused { .. } => MessageKind::Refused,
            Notice::InternalError { .. } => MessageKind::InternalError,
            Notice::CommandCutShort { .. } => MessageKind::CommandCutShort,
            Notice::Help => MessageKind::Help,
            Notice::Working { .. } => MessageKind::Working,
            Notice::Status(_) => MessageKind::Status,
            Notice::History(_) => MessageKind::History,
            Notice::Bake(_) => MessageKind::Bake,
            Notice::GateTripped { .. } => MessageKind::GateTripped,
            Notice::HoldReminder { .. } => MessageKind::HoldReminder,
            Notice::Rekeyed { .. } => MessageKind::Rekeyed,
            Notice::Frozen { .. } => MessageKind::Frozen,
            Notice::Unfrozen { .. } => MessageKind::Unfrozen,
            Notice::DrillScorecard(_) => MessageKind::DrillScorecard,
            Notice::DrillChart(_) => MessageKind::DrillChart,
            Notice::Drills(_) => MessageKind::Drills,
            Notice::Readiness(r) => match r.occasion {
                Occasion::Changed => MessageKind::Readiness,
                Occasion::AllClear => MessageKind::AllClear,
            },
            Notice::Legacy { .. } => MessageKind::Legacy,
        }
    }

    /// The facts a machine reading the message needs (tests, Slack message
    /// metadata): which operation and step, and how it stands.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = Vec::new();
        let mut add = |key: &'static str, value: String| facts.push((key, value));
        match self {
            Notice::Plan(p) => {
                add("op", p.header.id.to_string());
                add("step", p.step.to_string());
                add("total", p.header.kind.total_steps().to_string());
                add("status", p.status.label().to_owned());
                add("plan", p.shown.plan.hash.to_string());
                add("requester", p.header.requester.to_string());
                add("after", weights_fact(&p.shown.plan.after));
                let votes: Vec<&str> = p
                    .shown
                    .approval
                    .votes
                    .iter()
                    .map(|v| v.by.as_str())
                    .collect();
                add(
                    "approvals",
                    format!("{}/{}", votes.len(), p.shown.approval.required),
                );
                add("approved_by", votes.join(","));
                add("break_glass", (!p.shown.warnings.is_empty()).to_string());
                add("checks", checks_fact(&p.shown.checks));
                add("way_back", p.tripped.is_some().to_string());
                if p.header.drill {
                    add("drill", "true".to_owned());
                }
                if let Some(hold) = &p.hold {
                    add("hold", tag_of(hold, "hold"));
                }
                if let Some(limit) = &p.header.time_limit {
                    add("time_limit", limit.to_string());
                }
                if let Some(by) = status_by(&p.status) {
                    add("by", by.to_string());
                }
            }
            Notice::StepResult(r) => {
                add("op", r.op.to_string());
                add("step", r.step.to_string());
                add("outcome", r.outcome.label().to_owned());
                let verified = matches!(&r.outcome, StepOutcome::Applied { unverified, .. } if unverified.is_empty());
                add("verified", verified.to_string());
                if let StepOutcome::Applied {
                    unverified,
                    dry_run,
                } = &r.outcome
                {
                    add("unverified", unverified.join(" "));
                    let names: Vec<&str> = dry_run.iter().map(ClusterId::as_str).collect();
                    add("dry_run", names.join(" "));
                }
                let clusters: Vec<String> = r
                    .results
                    .iter()
                    .map(|c| format!("{}={}", c.cluster, cluster_outcome(&c.outcome)))
                    .collect();
                add("clusters", clusters.join(" "));
                if let Some(errors) = outcome_errors(&r.outcome) {
                    add("errors", errors);
                }
            }
            Notice::Superseded { plan, .. } => {
                add("op", plan.scope.operation.to_string());
                add("step", plan.scope.step.to_string());
            }
            Notice::Finished(f) => {
                add("op", f.op.to_string());
                if let Some(anchor) = &f.anchor {
                    add("anchor", anchor.clone());
                }
                add("step", f.step.to_string());
                add("outcome", f.outcome.word().to_owned());
                if let OperationOutcome::Failed { cause } = &f.outcome {
                    add("cause", tag_of(cause, "cause"));
                    if let StopCause::Refused { refusal } | StopCause::ReturnRefused { refusal } =
                        cause
                    {
                        add("refusal", refusal_name(refusal));
                    }
                    if let Some(errors) = cause_errors(cause) {
                        add("errors", errors);
                    }
                }
            }
            Notice::Resuming(r) => {
                add("op", r.op.to_string());
                add("step", r.step.to_string());
                add("doing", tag_of(&r.doing, "doing"));
            }
            Notice::StepStopped(s) => {
                add("op", s.plan.scope.operation.to_string());
                add("step", s.step.to_string());
                add("refusal", refusal_name(&s.refusal));
                let names: Vec<&str> = s.put_back.iter().map(ClusterId::as_str).collect();
                add("put_back", names.join(" "));
                // Absent when the weights could not be read.
                if let Some(now) = &s.now {
                    add("now", weights_fact(now));
                }
            }
            Notice::ApprovalTakenBack { user } | Notice::ApprovalTooLate { user, .. } => {
                add("user", user.to_string());
            }
            Notice::Refused { refusal } => {
                add("refusal", refusal_name(refusal));
                match refusal {
                    Refusal::GateFailed { cluster, failure } => {
                        add("cluster", cluster.to_string());
                        add("gate", tag_of(failure, "gate"));
                        match failure {
                            GateFailure::Unhealthy { failure } => {
                                add("probe", tag_of(failure, "probe"))
                            }
                            GateFailure::IdentityMismatch { found, context, .. } => {
                                add("found", found.clone());
                                add("context", context.clone());
                            }
                            GateFailure::IdentityUnknown { context, .. } => {
                                add("context", context.clone())
                            }
                        }
                    }
                    Refusal::Unavailable { error, .. } => add("error", tag_of(error, "error")),
                    _ => {}
                }
            }
            Notice::InternalError { op: Some(op) } => add("op", op.to_string()),
            Notice::Status(s) => {
                add("env", s.env.to_string());
                add("weights", weights_fact(&s.snapshot.weights()));
                let running = s.running.as_ref().map(|r| r.op.to_string());
                add("running", running.unwrap_or_else(|| "none".into()));
                add("frozen", s.frozen.is_some().to_string());
                let drift: Vec<String> = s
                    .observed
                    .iter()
                    .flatten()
                    .flat_map(|c| {
                        c.stragglers
                            .iter()
                            .map(move |x| format!("{}:{x}", c.cluster))
                    })
                    .collect();
                add("drift", drift.join(", "));
            }
            Notice::History(h) => {
                add("env", h.env.to_string());
                let ops: Vec<String> = h
                    .running
                    .iter()
                    .chain(&h.finished)
                    .map(|line| {
                        let outcome = line
                            .ended
                            .as_ref()
                            .map_or("running", |e| e.outcome.as_str());
                        format!("{}:{outcome}", line.op)
                    })
                    .collect();
                add("ops", ops.join(" "));
            }
            Notice::Bake(b) => {
                add("op", b.op.to_string());
                add("step", b.step.to_string());
                add("state", b.state.label().to_owned());
                add("checks", checks_fact(&b.checks));
            }
            Notice::GateTripped {
                op,
                step,
                checks,
                on_its_own,
            } => {
                add("op", op.to_string());
                add("step", step.to_string());
                add("checks", checks_fact(checks));
                add("on_its_own", on_its_own.to_string());
            }
            Notice::Rekeyed {
                new_key, old_head, ..
            } => {
                add("new_key", new_key.clone());
                add("old_head", old_head.clone());
            }
            Notice::HoldReminder { op, until, back_to } => {
                add("op", op.to_string());
                add("until", until.to_rfc3339());
                add("back_to", weights_fact(back_to));
            }
            Notice::Frozen { env, by, .. } | Notice::Unfrozen { env, by, .. } => {
                add("env", env.to_string());
                add("user", by.to_string());
            }
            Notice::DrillScorecard(card) => {
                add("op", card.op.to_string());
                add("env", card.env.to_string());
                add("total_ms", card.total_ms.to_string());
                add("ended", card.ended.word().to_owned());
                add("steps", steps_fact(&card.steps));
                if let Some(earlier) = &card.earlier {
                    add("earlier", earlier.drills.to_string());
                    add("last_ms", earlier.last.total_ms.to_string());
                    add("best_ms", earlier.best.total_ms.to_string());
                    add("median_ms", earlier.median_ms.to_string());
                }
            }
            Notice::DrillChart(chart) => {
                add("op", chart.op.to_string());
                add("env", chart.env.to_string());
                add("drills", chart.drills.len().to_string());
            }
            Notice::Drills(list) => {
                add("env", list.env.to_string());
                let ops: Vec<String> = list.finished.iter().map(|d| d.op.to_string()).collect();
                add("drills", ops.join(","));
            }
            Notice::Readiness(r) => {
                add("env", r.report.env.to_string());
                add("worst", r.report.worst().to_string());
                add("problems", r.report.count(Severity::Problem).to_string());
                add("warnings", r.report.count(Severity::Warning).to_string());
                let found: Vec<String> = r
                    .report
                    .not_ok()
                    .iter()
                    .map(|f| format!("{}@{}={}", f.check.as_str(), f.subject, f.severity))
                    .collect();
                add("findings", found.join(" "));
            }
            Notice::InternalError { op: None }
            | Notice::CommandCutShort { .. }
            | Notice::Help
            | Notice::Working { .. }
            | Notice::Legacy { .. } => {}
        }
        facts
    }
}

/// Gate readings as one fact: `error-rate@k8s-green=fail …`.
fn checks_fact(checks: &[GateCheck]) -> String {
    checks
        .iter()
        .map(|c| format!("{}@{}={}", c.gate, c.cluster, tag_of(&c.result, "result")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A drill's steps as one fact, in milliseconds: `waiting+applying+converging`
/// per step, `,` between steps (`120000+1500+45250,61000+900+30001`).
fn steps_fact(steps: &[crate::drill::StepTimes]) -> String {
    steps
        .iter()
        .map(|s| format!("{}+{}+{}", s.waiting_ms, s.applying_ms, s.converging_ms))
        .collect::<Vec<_>>()
        .join(",")
}

/// Weights as one fact: `k8s-blue=50 k8s-green=50`.
fn weights_fact(weights: &Weights) -> String {
    weights
        .iter()
        .map(|(c, w)| format!("{c}={w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The user a plan's status names: who is applying, rejected, withdrew or
/// aborted it.
fn status_by(status: &PlanStatus) -> Option<&UserId> {
    match status {
        PlanStatus::Applying { by }
        | PlanStatus::Rejected { by }
        | PlanStatus::Withdrawn { by }
        | PlanStatus::Aborted { by } => Some(by),
        _ => None,
    }
}

/// What failed behind a step whose writes did not all land, as the API
/// said it (`cluster: reason`, `; ` between them).
fn outcome_errors(outcome: &StepOutcome) -> Option<String> {
    match outcome {
        StepOutcome::Restored { failure } | StepOutcome::Incomplete { failure } => {
            Some(failure_errors(failure))
        }
        _ => None,
    }
}

/// What failed behind an operation that stopped, as the API said it.
fn cause_errors(cause: &StopCause) -> Option<String> {
    match cause {
        StopCause::WritesFailed { failure } => Some(failure_errors(failure)),
        StopCause::Refused { refusal } => refusal_errors(refusal),
        _ => None,
    }
}

fn failure_errors(failure: &WriteFailure) -> String {
    match failure {
        WriteFailure::Errors(errors) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        WriteFailure::Legacy(text) => text.clone(),
    }
}

/// The backend's error behind a refusal, if a backend call refused it.
fn refusal_errors(refusal: &Refusal) -> Option<String> {
    match refusal {
        Refusal::Unavailable { error, .. } => Some(error.to_string()),
        _ => None,
    }
}

fn cluster_outcome(outcome: &crate::operation::ClusterOutcome) -> String {
    tag_of(outcome, "result")
}

/// The serde tag of a value, as journaled.
fn tag_of(value: &impl Serialize, tag: &str) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.get(tag)?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The refusal's name as journaled (`busy`, `gate`, `self_approval` …):
/// the innermost tag, which is the most specific.
pub fn refusal_name(refusal: &Refusal) -> String {
    let value = serde_json::to_value(refusal).unwrap_or_default();
    ["plan", "approval", "steps", "command", "refusal"]
        .iter()
        .filter_map(|tag| value.get(tag)?.as_str().map(str::to_owned))
        .next()
        .unwrap_or_default()
}

/// Where a notice goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Destination {
    /// A new message in `channel`, or in the thread under `thread`.
    Post {
        channel: String,
        thread: Option<MessageRef>,
    },
    /// Replaces a message the bot posted earlier.
    Update { at: MessageRef },
    /// A file shared in the thread under `thread` (the drill chart).
    Upload { thread: MessageRef },
}
