//! The journal: an append-only list of records, one JSON line each, each
//! made durable before the engine acts on it. It is both the audit trail
//! and the state the bot restarts from ([`ledger`] folds it).
//!
//! Records hold facts — which weights moved, which gate failed where, what
//! the bot said as a [`Notice`] — never rendered text, so rewording a
//! message changes no saved record.
//!
//! # Format versions
//!
//! Every record names its format version (`"v"`); a line without one was
//! written by a release before versions (format 1). A record is always read
//! as its own version and brought up to the current shapes in memory
//! ([`v1`]); the line itself is never rewritten, so the hash chain of an old
//! journal still verifies. New kinds of records get a new version.
//!
//! # The hash chain
//!
//! Every record carries the SHA-256 of the line before it (`prev`), so an
//! edited or deleted line breaks the chain and [`verify_chain`] finds it.

pub mod file;
pub mod ledger;
pub mod scan;
pub mod sign;
pub mod sink;
pub mod v1;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::approval::ApprovalState;
use crate::command::hold::HoldChange;
use crate::ids::{ClusterId, EnvId, MessageRef, OpId, UserId};
use crate::notice::{Destination, Notice};
use crate::operation::{
    CapacityCheck, ClusterResult, GateCheck, GateWarning, OperationHeader, OperationOutcome,
    StepOutcome,
};
use crate::plan::{Plan, PlanHash};

pub use file::{Journal, JournalError};

/// The format this release writes.
pub const FORMAT_VERSION: u32 = 3;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The format version the record was written in.
    pub v: u32,
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// SHA-256 (hex) of the previous line; empty for the first record.
    pub prev: String,
    /// The record's Ed25519 signature, when the bot has a key: always the
    /// line's last field (see [`sign`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A command as received, valid or not.
    Command {
        user: UserId,
        channel: String,
        /// What was typed.
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
        /// Already answered when journaled (help or a mistake, answered in
        /// Slack's acknowledgement).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        answered: bool,
    },
    /// Something to say in the channel (its id is this record's `seq`);
    /// [`Entry::Delivered`] says it no longer needs sending.
    Say {
        to: Destination,
        notice: Notice,
    },
    /// Slack took the message of the `Say` record number `say`, or refused
    /// it for good: either way, a restart need not send it again.
    Delivered {
        say: u64,
    },
    /// The command delivered as `event` has had its answer (one that
    /// started an operation is answered by its `Started`). A command with
    /// neither was cut short by a restart: its author is told so.
    Answered {
        event: String,
    },
    Started {
        header: OperationHeader,
    },
    /// A step's plan is about to be posted (see
    /// [`crate::operation::OperationState::posting_plan`]).
    PlanPosting {
        op: OpId,
        step: usize,
    },
    /// A step's plan was shown in `message` and awaits approval.
    Proposed {
        op: OpId,
        step: usize,
        plan: Plan,
        message: MessageRef,
        expires_at: DateTime<Utc>,
        #[serde(default)]
        warnings: Vec<GateWarning>,
        #[serde(default)]
        versions: BTreeMap<ClusterId, String>,
        /// How many distinct approvers the plan needs (its environment's
        /// policy when it was shown).
        #[serde(default = "one", skip_serializing_if = "is_one")]
        approvals_required: u32,
        /// The before-gates' readings when the plan was made.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        checks: Vec<GateCheck>,
        /// The capacity gate's counts when the plan was made.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        capacity: Vec<CapacityCheck>,
    },
    /// An approver's vote that did not (yet) decide the plan: one of
    /// several required approvals.
    Voted {
        op: OpId,
        step: usize,
        plan: PlanHash,
        by: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// An approver took their vote back before the step started.
    Unvoted {
        op: OpId,
        step: usize,
        plan: PlanHash,
        by: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// New operations in `env` are refused until it is unfrozen, except
    /// break-glass by the environment's break-glass users.
    Frozen {
        env: EnvId,
        by: UserId,
        reason: String,
    },
    Unfrozen {
        env: EnvId,
        by: UserId,
    },
    /// The approval of a step changed state.
    Decided {
        op: OpId,
        step: usize,
        plan: PlanHash,
        state: ApprovalState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// An approved step's writes begin. `warnings`: gate failures found
    /// just before applying and pushed through with break-glass (the plan
    /// shows them from then on).
    StepStarted {
        op: OpId,
        step: usize,
        plan: PlanHash,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<GateWarning>,
    },
    /// Per-cluster results of the writes of a step (and of any restore).
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
        /// The after-gates must hold until then before the operation goes
        /// on (the longest `bake` of the environment's after-gates).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bake_until: Option<DateTime<Utc>>,
    },
    /// The bake's readings are shown in `message`, updated as they come.
    BakeShown {
        op: OpId,
        step: usize,
        message: MessageRef,
    },
    /// The after-gates held for the whole bake: the operation goes on.
    Baked {
        op: OpId,
        step: usize,
        checks: Vec<GateCheck>,
    },
    /// An after-gate blocked: the operation turns back, and the way back
    /// (a plan to the weights before it) is planned next.
    Tripped {
        op: OpId,
        step: usize,
        checks: Vec<GateCheck>,
    },
    /// The thread was reminded that a time-limited shift's weights go
    /// back at `until`.
    Reminded {
        op: OpId,
        until: DateTime<Utc>,
    },
    /// A time-limited shift's time is up: its return is planned next.
    /// `by_hand`: the weights are not the ones the shift left, so the
    /// return needs an approval.
    ReturnDue {
        op: OpId,
        by_hand: bool,
    },
    /// `extend` or `keep` was asked of a holding shift: its plan is shown
    /// next, for an approval.
    HoldAsked {
        op: OpId,
        change: HoldChange,
        by: UserId,
    },
    Finished {
        op: OpId,
        outcome: OperationOutcome,
    },
    /// The first record signed with `key` (hex): it covers, through the
    /// hash chain, every record before it, signed or not. `lines`: how
    /// many records came before.
    Checkpoint {
        key: String,
        lines: u64,
    },
    /// Signed by the key in force: from the next record on, `new_key`
    /// signs.
    KeyRotated {
        new_key: String,
    },
    /// The signing key was lost: a new signed chain under `new_key` (which
    /// signs this record), anchored on the line whose hash is `old_head`.
    Rekeyed {
        new_key: String,
        old_head: String,
        reason: String,
    },
    /// The ledger's state as of this record (format 3): start-up reads the
    /// journal from the latest one on instead of replaying all history.
    /// Replaying through it gives the state it holds, by definition.
    Snapshot {
        state: Box<ledger::LedgerSnapshot>,
    },
}

impl Entry {
    /// The record's type, as journaled.
    pub fn name(&self) -> &'static str {
        match self {
            Entry::Command { .. } => "command",
            Entry::Say { .. } => "say",
            Entry::Delivered { .. } => "delivered",
            Entry::Answered { .. } => "answered",
            Entry::Started { .. } => "started",
            Entry::PlanPosting { .. } => "plan_posting",
            Entry::Proposed { .. } => "proposed",
            Entry::Voted { .. } => "voted",
            Entry::Unvoted { .. } => "unvoted",
            Entry::Frozen { .. } => "frozen",
            Entry::Unfrozen { .. } => "unfrozen",
            Entry::Decided { .. } => "decided",
            Entry::StepStarted { .. } => "step_started",
            Entry::Changed { .. } => "changed",
            Entry::StepFinished { .. } => "step_finished",
            Entry::BakeShown { .. } => "bake_shown",
            Entry::Baked { .. } => "baked",
            Entry::Tripped { .. } => "tripped",
            Entry::Reminded { .. } => "reminded",
            Entry::ReturnDue { .. } => "return_due",
            Entry::HoldAsked { .. } => "hold_asked",
            Entry::Finished { .. } => "finished",
            Entry::Checkpoint { .. } => "checkpoint",
            Entry::KeyRotated { .. } => "key_rotated",
            Entry::Rekeyed { .. } => "rekeyed",
            Entry::Snapshot { .. } => "snapshot",
        }
    }
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Why a line is not a record this release can read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("format version {0} is newer than this release reads ({FORMAT_VERSION}); upgrade failover-bot")]
    TooNew(u64),
    #[error("not a version {version} record: {error}")]
    Shape {
        version: u64,
        error: serde_json::Error,
    },
}

/// Reads one journal line as the version it was written in.
pub fn parse_line(line: &str) -> Result<Record, LineError> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(LineError::NotJson)?;
    let version = value
        .get("v")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    let shape = |error| LineError::Shape { version, error };
    match version {
        1 => serde_json::from_value::<v1::Record>(value)
            .map(Record::from)
            .map_err(shape),
        // Format 3 adds record kinds (snapshots) to format 2's; the shared
        // kinds read the same.
        2 | 3 => serde_json::from_value(value).map_err(shape),
        newer => Err(LineError::TooNew(newer)),
    }
}

/// The line a record is written as.
pub fn to_line(record: &Record) -> Result<String, serde_json::Error> {
    serde_json::to_string(record)
}

pub fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// A break in the hash chain: the line whose `prev` does not match.
#[derive(Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub line: usize,
}

/// Checks that every line names the hash of the line before it.
pub fn verify_chain(lines: &[&str]) -> Result<(), ChainBreak> {
    let mut expected = String::new();
    for (i, line) in lines.iter().enumerate() {
        let prev = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("prev")?.as_str().map(str::to_owned));
        if prev.as_deref() != Some(expected.as_str()) {
            return Err(ChainBreak { line: i + 1 });
        }
        expected = line_hash(line);
    }
    Ok(())
}
