//! Why the bot will not do what was asked, as facts. A refusal is answered
//! to the person who asked (its `Display` is the answer) and, when it stops
//! a step, journaled as it is.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::ApprovalError;
use crate::backend::{BackendError, GateFailure};
use crate::command::CommandError;
use crate::ids::{ClusterId, EnvId, OpId, UserId};
use crate::operation::{CapacityCheck, Freeze, GateCheck};
use crate::plan::PlanError;

fn weight(w: &Option<u8>) -> String {
    w.map_or_else(|| "none".to_owned(), |w| w.to_string())
}

/// People as Slack shows them: users and user groups.
fn mentions(ids: &[String]) -> String {
    ids.iter()
        .map(|id| {
            if crate::chat::is_user_group(id) {
                format!("<!subteam^{id}>")
            } else {
                format!("<@{id}>")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn break_glass_hint(failure: &GateFailure) -> &'static str {
    if failure.is_health() {
        " If you must, `/failover shift! …` asks for a break-glass approval."
    } else {
        ""
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error("{env} already has those weights; nothing to do.")]
    NoChange { env: EnvId },
    #[error("nothing to abort: no operation is running in {env}.")]
    NothingToAbort { env: EnvId },
    #[error("journal line {line} does not verify ({problem}): no weight changes until an operator checks the journal (`failover-bot audit verify`). `status` and `history` still work.")]
    JournalUntrusted { line: usize, problem: String },
    #[error("no time-limited shift holds in {env}: `extend` and `keep` are for a shift started with `for DURATION`, once its steps are done.")]
    NotHolding { env: EnvId },
    #[error("a time-limited shift holds 72h at most, extensions included: {env}'s can hold until {} at the latest.", .latest.format("%Y-%m-%d %H:%M UTC"))]
    HoldTooLong {
        env: EnvId,
        latest: chrono::DateTime<chrono::Utc>,
    },
    #[error("{env} is busy: operation #{op} by <@{requester}>, step {step}/{total}. `/failover abort` ends it.")]
    Busy {
        env: EnvId,
        op: OpId,
        requester: UserId,
        step: usize,
        total: usize,
    },
    #[error("nobody but you may approve, and you cannot approve your own request; add approvers to the config.")]
    NoOtherApprover,
    #[error("cannot read the weights in {env}: {error}")]
    Unavailable { env: EnvId, error: BackendError },
    #[error("{cluster} may not get traffic: {failure}.{}", break_glass_hint(.failure))]
    GateFailed {
        cluster: ClusterId,
        failure: GateFailure,
    },
    #[error("{cluster} holds weight {}, neither the plan's before ({}) nor after ({}); someone else changed it", weight(.found), weight(.before), weight(.after))]
    UnexpectedWeight {
        cluster: ClusterId,
        found: Option<u8>,
        before: Option<u8>,
        after: Option<u8>,
    },
    #[error("this plan of operation #{op} is no longer awaiting approval.")]
    PlanClosed { op: OpId },
    #[error("that button is not on a plan the bot showed; use the buttons on the newest plan.")]
    UnknownButton,
    #[error("environment {env} is no longer in the config.")]
    NoSuchEnvironment { env: EnvId },
    #[error("<@{user}> may not start operations in {env}; ask {}.", mentions(.allowed))]
    NotRequester {
        user: UserId,
        env: EnvId,
        allowed: Vec<String>,
    },
    #[error("break-glass (`shift!`) in {env} is for {} only.", mentions(.allowed))]
    NotBreakGlass { env: EnvId, allowed: Vec<String> },
    #[error("{env} needs a reason for every change: end the command with `because …` (an incident id, say).")]
    ReasonRequired { env: EnvId },
    #[error("{env} is frozen by <@{}> since {}: {}. Only break-glass (`shift!`) by {} goes through; `/failover unfreeze` lifts it.", .freeze.by, .freeze.since.format("%H:%M UTC"), .freeze.reason, mentions(.break_glass))]
    Frozen {
        env: EnvId,
        freeze: Freeze,
        break_glass: Vec<String>,
    },
    #[error("{env} is already frozen by <@{}>: {}.", .freeze.by, .freeze.reason)]
    AlreadyFrozen { env: EnvId, freeze: Freeze },
    #[error("{} may not get more traffic: gate `{}` reads {} (must be {} {}) for `{}`. If you must, `/failover shift! …` asks for a break-glass approval.", .check.cluster, .check.gate, .check.values(), .check.operator, .check.threshold, .check.query)]
    MetricGate { check: Box<GateCheck> },
    #[error("{} may not get {}% of the traffic: {} has {} ready replicas there, needs {} ({} serving now, headroom {}). If you must, `/failover shift! …` asks for a break-glass approval.", .check.cluster, .check.share_percent, .check.deployment, .check.ready_text(), .check.required, .check.serving, .check.headroom)]
    Capacity { check: CapacityCheck },
    #[error("{env} is not frozen.")]
    NotFrozen { env: EnvId },
    #[error("only the approvers of {env} ({}) may freeze or unfreeze it.", mentions(.approvers))]
    MayNotFreeze { env: EnvId, approvers: Vec<String> },
    #[error("only <@{requester}>, who asked for operation #{op}, or an approver ({}) may {action} it.", mentions(.approvers))]
    NotYours {
        op: OpId,
        requester: UserId,
        action: String,
        approvers: Vec<String>,
    },
    #[error("the step began at {}, longer ago than an approval lasts ({}); finishing it needs a new approval", .started_at.format("%H:%M UTC"), humantime::format_duration(std::time::Duration::from_secs(*.lifetime_secs)))]
    StepTooOld {
        started_at: DateTime<Utc>,
        lifetime_secs: u64,
    },
    /// Written by a release before facts were journaled: the sentence.
    #[error("{text}")]
    Legacy { text: String },
}
