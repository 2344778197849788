//! A command's work, from its journal record to its first answer. For a
//! command that changes weights, that is an operation: checked, planned
//! and gated, journaled as started, and its first step's plan posted for
//! approval.

use super::step::Prepared;
use super::{CommandRequest, Engine, EngineError, Outcome};
use crate::chat::ChatError;
use crate::command::{Command, Request, Situation};
use crate::config::ApprovalConfig;
use crate::ids::MessageRef;
use crate::journal::Entry;
use crate::notice::{FinishedNotice, HoldPlan, Notice, PlanNotice};
use crate::operation::{
    Aim, OperationHeader, OperationKind, OperationOutcome, OperationState, PlanStatus, Refusal,
    ShownPlan, StopCause,
};

impl Engine {
    /// Journals the command, then does what it asks.
    pub(super) async fn carry_out(&self, request: &CommandRequest, work: &Request) -> Outcome {
        self.record(Entry::Command {
            user: request.user.clone(),
            channel: request.channel.clone(),
            text: request.text.clone(),
            event: request.event_id.clone(),
            answered: false,
        })?;
        let env = &work.env;
        match &work.command {
            Command::Status => self.status(request, env).await,
            Command::History => self.history(request, env).await,
            Command::Drills => self.drills(request, env).await,
            Command::Abort => self.abort(request, env).await,
            Command::Freeze(freeze) => self.freeze(request, env, Some(&freeze.reason)).await,
            Command::Unfreeze => self.freeze(request, env, None).await,
            Command::Hold(change) => self.change_hold(request, env, *change).await,
            _ => self.start(request, work).await,
        }
    }

    /// Starts an operation: the environment must be free and someone else
    /// able to approve; the first step is planned and gated before anything
    /// is recorded, so a refusal is a plain answer, not an operation.
    async fn start(&self, request: &CommandRequest, work: &Request) -> Outcome {
        let env = &work.env;
        let Some(_guard) = self.lock_env(env).await else {
            return Err(Refusal::NoSuchEnvironment { env: env.clone() }.into());
        };
        if let Some(op) = self.active_operation(env) {
            return Err(Refusal::Busy {
                env: env.clone(),
                op: op.header.id,
                requester: op.header.requester.clone(),
                step: op.step,
                total: op.total_steps(),
            }
            .into());
        }
        self.require_trusted_journal()?;
        let policy = self.config.approval_for(env);
        let during_freeze = self.may_start(request, work, &policy).await?;
        require_another_approver(&policy, request)?;
        let snapshot = self.read(env).await?;
        let now = snapshot.weights();
        let last_change = self.with_ledger(|l| {
            l.last_weight_change(env)
                .map(|f| (f.header.id, f.header.start.clone()))
        });
        let situation = Situation {
            env,
            now: &now,
            last_change: last_change.as_ref().map(|(id, w)| (*id, w)),
        };
        let Some(kind) = OperationKind::start(&work.command, &situation) else {
            return Ok(());
        };
        let kind = kind?;
        let reservation = self.store.reserve_op_id();
        let header = OperationHeader {
            id: reservation.id,
            env: env.clone(),
            channel: request.channel.clone(),
            requester: request.user.clone(),
            kind,
            command: request.text.clone(),
            start: now,
            started_at: self.now(),
            event: request.event_id.clone(),
            reason: work.reason.clone(),
            during_freeze,
            time_limit: work.command.time_limit(),
            drill: matches!(work.command, Command::Drill(_)),
        };
        let first = self.prepare(&header, 1, &snapshot).await?;
        if first.plan.is_noop() {
            return Err(Refusal::NoChange { env: env.clone() }.into());
        }
        self.record(Entry::Started {
            header: header.clone(),
        })?;
        drop(reservation);
        self.propose(&header, 1, first).await?;
        Ok(())
    }

    /// Shows a step's plan and records it as awaiting approval. A plan that
    /// changes nothing is recorded as skipped instead.
    pub(super) async fn propose(
        &self,
        header: &OperationHeader,
        step: usize,
        prepared: Prepared,
    ) -> Result<(), EngineError> {
        if prepared.plan.is_noop() && prepared.aim != Aim::Stay {
            return self.skip_step(header, step);
        }
        let policy = self.config.approval_for(&header.env);
        let expires_at = self.now()
            + chrono::Duration::from_std(policy.expires_after)
                .unwrap_or(chrono::Duration::minutes(15));
        let op = self.active_operation(&header.env);
        let asker = op
            .as_ref()
            .map_or(&header.requester, OperationState::asker)
            .clone();
        let approval =
            crate::approval::Approval::new(prepared.plan.hash.clone(), asker, expires_at)
                .requiring(policy.approvals_required);
        let mut shown = ShownPlan {
            plan: prepared.plan,
            message: MessageRef {
                channel: header.channel.clone(),
                ts: String::new(),
            },
            approval,
            warnings: prepared.checked.warnings,
            versions: prepared.versions,
            checks: prepared.checked.checks,
            capacity: prepared.checked.capacity,
        };
        let notice = Notice::Plan(Box::new(PlanNotice {
            header: header.clone(),
            step,
            shown: shown.clone(),
            status: PlanStatus::Pending,
            tripped: op.as_ref().and_then(|o| o.tripped.clone()),
            hold: op.as_ref().and_then(HoldPlan::of),
        }));
        let text = crate::messages::render(&notice, &self.config);
        self.record(Entry::PlanPosting {
            op: header.id,
            step,
        })?;
        shown.message = match self.chat.post(&header.channel, None, &text).await {
            Ok(message) => message,
            Err(error) => return self.plan_not_posted(header, step, error).await,
        };
        let message = shown.message.clone();
        // Journaled before the hints are added: an approver may react the
        // moment the message appears, and a reaction on a message the
        // ledger does not know is ignored (and Slack never redelivers an
        // event the bot acknowledged). Known, it waits for the env lock.
        let hash = shown.plan.hash.clone();
        self.record(Entry::Proposed {
            op: header.id,
            step,
            plan: shown.plan,
            message: shown.message,
            expires_at,
            warnings: shown.warnings,
            versions: shown.versions,
            approvals_required: policy.approvals_required,
            checks: shown.checks,
            capacity: shown.capacity,
        })?;
        self.approve_way_back(header, step, &hash)?;
        self.add_reaction_hints(&message, &policy).await;
        Ok(())
    }

    /// Slack would not take a step's plan (a 5xx, or a channel the bot is
    /// not in): nobody can approve what nobody sees, so the operation ends
    /// and the environment is free again. The requester is told privately
    /// (which may fail too, for the same channel; then only the log knows).
    async fn plan_not_posted(
        &self,
        header: &OperationHeader,
        step: usize,
        error: ChatError,
    ) -> Result<(), EngineError> {
        tracing::error!(%error, op = header.id, step, "Slack did not take a plan; ending the operation");
        let outcome = OperationOutcome::Failed {
            cause: StopCause::PlanNotPosted {
                step,
                reason: error.reason.clone(),
            },
        };
        let summary = match self.active_operation(&header.env) {
            Some(op) => FinishedNotice::of(&op, &outcome),
            None => FinishedNotice {
                op: header.id,
                step,
                total: header.kind.total_steps(),
                approvals: Vec::new(),
                outcome: outcome.clone(),
                while_holding: false,
                anchor: None,
            },
        };
        self.record(Entry::Finished {
            op: header.id,
            outcome,
        })?;
        let notice = Notice::Finished(summary);
        let message = crate::messages::render(&notice, &self.config);
        if let Err(error) = self
            .chat
            .post_ephemeral(&header.channel, &header.requester, &message)
            .await
        {
            tracing::error!(%error, user = %header.requester, "could not tell the requester either");
        }
        Ok(())
    }

    /// The approve/reject reactions on a plan, so approvers need only click.
    async fn add_reaction_hints(&self, message: &MessageRef, policy: &ApprovalConfig) {
        for reaction in [&policy.reaction, &policy.reject_reaction] {
            if let Err(error) = self.chat.react(message, reaction).await {
                tracing::warn!(%error, "could not add the reaction hint");
            }
        }
    }
}

/// Refuses to start an operation nobody could approve.
fn require_another_approver(
    policy: &ApprovalConfig,
    request: &CommandRequest,
) -> Result<(), Refusal> {
    if policy.approvers.iter().any(|a| request.user != *a) {
        Ok(())
    } else {
        Err(Refusal::NoOtherApprover)
    }
}
