//! Votes on plans — approve, reject, take an approval back — from
//! reactions on plan messages. The rules are the approval's own
//! ([`crate::approval`]); who is an approver is the environment's policy.

use super::step::in_thread;
use super::{Engine, EngineError, Outcome, Reaction};
use crate::approval::{Actor, ApprovalState};
use crate::ids::{EnvId, MessageRef, UserId};
use crate::journal::ledger::PlanMessage;
use crate::journal::Entry;
use crate::notice::{Destination, Notice};
use crate::operation::{OperationState, Phase, PlanStatus, Refusal, ShownPlan};

enum Vote {
    Approve,
    Reject,
}

impl Engine {
    pub(super) async fn reaction(&self, reaction: &Reaction) -> Outcome {
        let Some(target) = self.plan_message(&reaction.message).await else {
            // Not a plan message: reactions elsewhere are none of our business.
            return Ok(());
        };
        let policy = self.config.approval_for(&target.env);
        let vote = if reaction.name == policy.reaction {
            Vote::Approve
        } else if reaction.name == policy.reject_reaction {
            Vote::Reject
        } else {
            return Ok(());
        };
        let Some(_guard) = self.lock_env(&target.env).await else {
            return Ok(());
        };
        let op = self
            .active_operation(&target.env)
            .filter(|op| op.header.id == target.op);
        let shown = op.as_ref().and_then(|op| match &op.phase {
            Phase::AwaitingApproval(s) | Phase::Approved(s) if s.message == reaction.message => {
                Some(s.clone())
            }
            _ => None,
        });
        let (Some(op), Some(shown)) = (op, shown) else {
            if reaction.added {
                return Err(Refusal::PlanClosed { op: target.op }.into());
            }
            if matches!(vote, Vote::Approve) && self.approved_step(&target, &reaction.user) {
                // Removing ✅ cannot undo a step that ran; say so rather than
                // let the approver believe it did.
                let note = Notice::ApprovalTooLate {
                    user: reaction.user.clone(),
                    step: target.step,
                };
                let to = Destination::Post {
                    channel: reaction.message.channel.clone(),
                    thread: Some(reaction.message.clone()),
                };
                self.say(to, note).await;
            }
            return Ok(());
        };
        match (vote, reaction.added) {
            (Vote::Approve, true) => self.approve(&op, &shown, reaction).await,
            (Vote::Reject, true) => self.reject(&op, &shown, reaction).await,
            (Vote::Approve, false) => self.unapprove(&op, &shown, reaction).await,
            (Vote::Reject, false) => Ok(()),
        }
    }

    /// The plan a message shows, if it shows one. Slack hands the message's
    /// ts to the poster and to approvers at the same moment, so a reaction
    /// may beat the bot's own `Proposed` record; while a plan is being posted
    /// in the channel, wait for that posting (it holds its environment's
    /// lock until the record is down) and look again.
    async fn plan_message(&self, message: &MessageRef) -> Option<PlanMessage> {
        let lookup = || self.with_ledger(|l| l.messages.get(message).cloned());
        if let Some(known) = lookup() {
            return Some(known);
        }
        let posting: Vec<EnvId> = self.with_ledger(|l| {
            l.active
                .iter()
                .filter(|(_, op)| op.posting_plan && op.header.channel == message.channel)
                .map(|(env, _)| env.clone())
                .collect()
        });
        for env in posting {
            drop(self.lock_env(&env).await);
            if let Some(known) = lookup() {
                return Some(known);
            }
        }
        None
    }

    /// Whether `user` approved the step a plan message showed.
    fn approved_step(&self, target: &PlanMessage, user: &UserId) -> bool {
        self.with_ledger(|l| {
            let approvals = l
                .active
                .values()
                .find(|o| o.header.id == target.op)
                .map(|o| &o.approvals)
                .or_else(|| {
                    l.finished
                        .iter()
                        .find(|f| f.header.id == target.op)
                        .map(|f| &f.approvals)
                });
            approvals.is_some_and(|a| a.iter().any(|a| a.step == target.step && a.by == *user))
        })
    }

    /// Whether `user` may decide on plans in `env`: an approver there,
    /// directly or through a user group.
    async fn may_approve(&self, user: &UserId, env: &str) -> Result<bool, EngineError> {
        let policy = self.config.approval_for(env);
        self.is_member(user, &policy.approvers).await
    }

    async fn approve(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        reaction: &Reaction,
    ) -> Outcome {
        let actor = Actor {
            user: &reaction.user,
            is_approver: self.may_approve(&reaction.user, &op.header.env).await?,
        };
        let mut approval = shown.approval.clone();
        let decided = approval.approve(&actor, &shown.plan.hash, self.now());
        if let Err(refusal) = decided {
            // Trying to approve a plan past its deadline expires it now.
            if matches!(approval.state, ApprovalState::Expired { .. }) {
                self.record_decision(op, shown, approval.state, None)?;
                self.drive(&op.header.env).await?;
            }
            return Err(refusal.into());
        }
        if approval.state == ApprovalState::Pending {
            // One of several approvals: counted, shown, not yet decided.
            let voted = Entry::Voted {
                op: op.header.id,
                step: op.step,
                plan: shown.plan.hash.clone(),
                by: reaction.user.clone(),
                event: reaction.event_id.clone(),
            };
            let mut counted = shown.clone();
            counted.approval = approval;
            let update = self.plan_update(op, &counted, PlanStatus::Pending);
            return Ok(self.record_and_say(voted, vec![update]).await?);
        }
        self.record_decision(op, shown, approval.state.clone(), reaction.event_id.clone())?;
        let mut approved = shown.clone();
        approved.approval = approval;
        self.update_plan_message(
            op,
            &approved,
            PlanStatus::Applying {
                by: reaction.user.clone(),
            },
        )
        .await;
        self.drive(&op.header.env).await
    }

    async fn reject(&self, op: &OperationState, shown: &ShownPlan, reaction: &Reaction) -> Outcome {
        let actor = Actor {
            user: &reaction.user,
            is_approver: self.may_approve(&reaction.user, &op.header.env).await?,
        };
        let mut approval = shown.approval.clone();
        approval.reject(&actor, self.now())?;
        self.record_decision(op, shown, approval.state, reaction.event_id.clone())?;
        self.drive(&op.header.env).await
    }

    /// The approver removed their reaction. Before the step started this
    /// takes the approval back; after, it changes nothing and says so.
    async fn unapprove(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        reaction: &Reaction,
    ) -> Outcome {
        let mut approval = shown.approval.clone();
        if approval.unapprove(&reaction.user).is_err() {
            return Ok(());
        }
        let unvoted = Entry::Unvoted {
            op: op.header.id,
            step: op.step,
            plan: shown.plan.hash.clone(),
            by: reaction.user.clone(),
            event: reaction.event_id.clone(),
        };
        let note = Notice::ApprovalTakenBack {
            user: reaction.user.clone(),
        };
        let mut pending = shown.clone();
        pending.approval = approval;
        let said = vec![
            self.plan_update(op, &pending, PlanStatus::Pending),
            in_thread(op, shown, note),
        ];
        self.record_and_say(unvoted, said).await?;
        Ok(())
    }

    fn record_decision(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        state: ApprovalState,
        event: Option<String>,
    ) -> Result<(), EngineError> {
        self.record(decision(op, shown, state, event))?;
        Ok(())
    }
}

/// The journal record of a decision on the plan `shown`.
fn decision(
    op: &OperationState,
    shown: &ShownPlan,
    state: ApprovalState,
    event: Option<String>,
) -> Entry {
    Entry::Decided {
        op: op.header.id,
        step: op.step,
        plan: shown.plan.hash.clone(),
        state,
        event,
    }
}
