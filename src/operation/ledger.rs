//! The fold of journal records into state: the running operation of each
//! environment, the plans shown (so a reaction finds its plan), recent
//! history, and the Slack event ids already acted on. Pure: no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::journal::{Entry, Record};
use super::{
    OpId, OperationHeader, OperationOutcome, OperationState, Phase, ShownPlan, StepOutcome,
};
use crate::approval::{Approval, ApprovalState};
use crate::chat::MessageRef;
use crate::plan::PlanHash;

/// Which step's plan a message showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanMessage {
    pub env: String,
    pub op: OpId,
    pub step: usize,
    pub plan: PlanHash,
}

/// A finished operation, for `history` and `rollback`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub header: OperationHeader,
    pub outcome: OperationOutcome,
    pub approvals: Vec<(usize, String)>,
    pub finished_at: DateTime<Utc>,
    pub thread: Option<MessageRef>,
}

/// A command journaled but not yet answered: while the bot runs, one being
/// handled; after a restart, one the crash cut short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnansweredCommand {
    pub user: String,
    pub channel: String,
    pub text: String,
}

#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub active: BTreeMap<String, OperationState>,
    pub finished: Vec<Finished>,
    pub messages: HashMap<MessageRef, PlanMessage>,
    pub events: HashSet<String>,
    /// By Slack delivery id (commands without one cannot be told apart).
    pub unanswered: BTreeMap<String, UnansweredCommand>,
    /// Messages journaled but not yet delivered, by their `Say` record's
    /// seq: after a restart, what the crash cut off.
    pub unsaid: BTreeMap<u64, crate::chat::Said>,
    pub last_op: OpId,
}

impl Ledger {
    pub fn replay<'a>(records: impl IntoIterator<Item = &'a Record>) -> Ledger {
        let mut ledger = Ledger::default();
        for record in records {
            ledger.apply(record);
        }
        ledger
    }

    pub fn next_op_id(&self) -> OpId {
        self.last_op + 1
    }

    /// The operation a record is about, if it is running.
    fn op_mut(&mut self, op: OpId) -> Option<&mut OperationState> {
        self.active.values_mut().find(|o| o.header.id == op)
    }

    /// Folds one record in. Records that do not fit the state (for example a
    /// decision about an operation already finished) change nothing: replay
    /// must never fail on a journal the engine itself wrote.
    pub fn apply(&mut self, record: &Record) {
        match &record.entry {
            Entry::Command {
                user,
                channel,
                text,
                event,
                answered,
            } => {
                self.note_event(event);
                if let (Some(id), false) = (event, answered) {
                    let command = UnansweredCommand {
                        user: user.clone(),
                        channel: channel.clone(),
                        text: text.clone(),
                    };
                    self.unanswered.insert(id.clone(), command);
                }
            }
            Entry::Answered { event } => {
                self.unanswered.remove(event);
            }
            Entry::Say { said } => {
                self.unsaid.insert(record.seq, said.clone());
            }
            Entry::Delivered { say } => {
                self.unsaid.remove(say);
            }
            Entry::Started { header } => {
                if let Some(id) = &header.event {
                    self.unanswered.remove(id);
                }
                self.last_op = self.last_op.max(header.id);
                self.active.insert(
                    header.env.clone(),
                    OperationState {
                        header: header.clone(),
                        step: 1,
                        phase: Phase::Proposing,
                        approvals: Vec::new(),
                        last_shown: None,
                        posting_plan: false,
                    },
                );
            }
            Entry::Proposed {
                op,
                step,
                plan,
                message,
                expires_at,
                warnings,
                versions,
            } => {
                let Some(state) = self.op_mut(*op) else {
                    return;
                };
                let shown = ShownPlan {
                    approval: Approval::new(
                        plan.hash.clone(),
                        state.header.requester.clone(),
                        *expires_at,
                    ),
                    plan: plan.clone(),
                    message: message.clone(),
                    warnings: warnings.clone(),
                    versions: versions.clone(),
                };
                state.step = *step;
                state.posting_plan = false;
                state.last_shown = Some(shown.clone());
                state.phase = Phase::AwaitingApproval(shown);
                let env = state.header.env.clone();
                self.messages.insert(
                    message.clone(),
                    PlanMessage {
                        env,
                        op: *op,
                        step: *step,
                        plan: plan.hash.clone(),
                    },
                );
            }
            Entry::Decided {
                op, state, event, ..
            } => {
                self.note_event(event);
                if let Some(operation) = self.op_mut(*op) {
                    decide(operation, state);
                }
            }
            Entry::StepStarted { op, .. } => {
                if let Some(operation) = self.op_mut(*op) {
                    if let Phase::Approved(shown) = &operation.phase {
                        operation.phase = Phase::Applying(shown.clone());
                    }
                }
            }
            Entry::Changed { .. } => {}
            Entry::PlanPosting { op, step } => {
                if let Some(operation) = self.op_mut(*op) {
                    operation.step = *step;
                    operation.posting_plan = true;
                }
            }
            Entry::StepFinished { op, outcome, .. } => {
                if let Some(operation) = self.op_mut(*op) {
                    finish_step(operation, outcome);
                }
            }
            Entry::Finished { op, outcome } => {
                let Some(env) = self
                    .active
                    .iter()
                    .find(|(_, o)| o.header.id == *op)
                    .map(|(env, _)| env.clone())
                else {
                    return;
                };
                if let Some(state) = self.active.remove(&env) {
                    self.finished.push(Finished {
                        header: state.header,
                        outcome: outcome.clone(),
                        approvals: state.approvals,
                        finished_at: record.at,
                        thread: state.last_shown.map(|s| s.message),
                    });
                }
            }
        }
    }

    fn note_event(&mut self, event: &Option<String>) {
        if let Some(id) = event {
            self.events.insert(id.clone());
        }
    }

    /// Every plan message still awaiting approval, oldest first.
    pub fn pending_messages(&self) -> Vec<(DateTime<Utc>, MessageRef)> {
        let mut pending: Vec<(DateTime<Utc>, MessageRef)> = self
            .active
            .values()
            .filter_map(|o| match &o.phase {
                Phase::AwaitingApproval(s) => Some((s.approval.expires_at, s.message.clone())),
                _ => None,
            })
            .collect();
        pending.sort();
        pending
    }

    /// The most recent finished operation in `env` that had a step approved
    /// (and so may have moved weights): what `rollback` undoes. Rejected,
    /// expired and withdrawn operations changed nothing and are skipped.
    pub fn last_weight_change(&self, env: &str) -> Option<&Finished> {
        self.finished
            .iter()
            .rev()
            .find(|f| f.header.env == env && !f.approvals.is_empty())
    }
}

fn decide(operation: &mut OperationState, state: &ApprovalState) {
    let shown = match &operation.phase {
        Phase::AwaitingApproval(s) | Phase::Approved(s) => s.clone(),
        _ => return,
    };
    let mut updated = shown;
    updated.approval.state = state.clone();
    operation.last_shown = Some(updated.clone());
    operation.phase = match state {
        ApprovalState::Pending => Phase::AwaitingApproval(updated),
        ApprovalState::Approved { by, .. } => {
            operation.approvals.push((operation.step, by.clone()));
            Phase::Approved(updated)
        }
        ApprovalState::Superseded { .. } => Phase::Proposing,
        ApprovalState::Rejected { by, .. } => {
            Phase::Finishing(OperationOutcome::Rejected { by: by.clone() })
        }
        ApprovalState::Expired { .. } => Phase::Finishing(OperationOutcome::Expired),
        // `abort` records its own outcome right after; this is the fallback
        // for a crash in between.
        ApprovalState::Withdrawn { by, .. } => {
            Phase::Finishing(OperationOutcome::Withdrawn { by: by.clone() })
        }
    };
    if matches!(state, ApprovalState::Pending) {
        // An approval taken back is no longer an approval of record.
        operation
            .approvals
            .retain(|(step, _)| *step != operation.step);
    }
}

fn finish_step(operation: &mut OperationState, outcome: &StepOutcome) {
    operation.phase = match outcome {
        StepOutcome::Applied { unverified, .. } if !unverified.is_empty() => {
            Phase::Finishing(OperationOutcome::Failed {
                reason: format!(
                    "step {} applied but not verified on {}",
                    operation.step,
                    unverified.join(", ")
                ),
            })
        }
        StepOutcome::Applied { .. } | StepOutcome::Skipped => {
            if operation.step < operation.total_steps() {
                operation.step += 1;
                Phase::Proposing
            } else {
                Phase::Finishing(OperationOutcome::Completed)
            }
        }
        StepOutcome::Conflict => Phase::Proposing,
        StepOutcome::Restored { reason }
        | StepOutcome::Incomplete { reason }
        | StepOutcome::Refused { reason } => Phase::Finishing(OperationOutcome::Failed {
            reason: reason.clone(),
        }),
    };
}
