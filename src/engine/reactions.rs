//! Votes on plans — approve, reject, take an approval back — from
//! reactions on plan messages and clicks on their buttons. Both are the
//! same [`Ballot`] from here on, so a click obeys exactly a reaction's
//! rules. The rules are the approval's own ([`crate::approval`]); who is
//! an approver is the environment's policy.

use super::step::in_thread;
use super::{Engine, EngineError, Outcome, Reaction};
use crate::approval::{Actor, ApprovalState, PlanClaim};
use crate::chat::{ButtonChoice, Click};
use crate::ids::{EnvId, MessageRef, UserId};
use crate::journal::ledger::PlanMessage;
use crate::journal::Entry;
use crate::notice::{Destination, Notice};
use crate::operation::{OperationState, Phase, PlanStatus, Refusal, ShownPlan};
use crate::plan::PlanHash;

enum Vote {
    Approve,
    Reject,
}

/// One vote on a plan message, whichever way it came.
struct Ballot<'a> {
    user: &'a UserId,
    message: &'a MessageRef,
    vote: Vote,
    /// False when a reaction was taken off.
    added: bool,
    event_id: Option<String>,
    /// The plan a button named; a reaction names the plan its message shows.
    claim: Option<PlanClaim>,
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
        let ballot = Ballot {
            user: &reaction.user,
            message: &reaction.message,
            vote,
            added: reaction.added,
            event_id: reaction.event_id.clone(),
            claim: None,
        };
        self.cast(&target, ballot).await
    }

    /// A click on a plan's Approve or Reject button: a reaction's ballot,
    /// bound to the plan the button names.
    pub(super) async fn click(&self, click: &Click) -> Outcome {
        let Some(claim) = PlanClaim::parse(&click.value) else {
            return Err(Refusal::UnknownButton.into());
        };
        let Some(target) = self.plan_message(&click.message).await else {
            return Err(Refusal::UnknownButton.into());
        };
        if (claim.op, claim.step) != (target.op, target.step) {
            return Err(Refusal::UnknownButton.into());
        }
        let vote = match click.choice {
            ButtonChoice::Approve => Vote::Approve,
            ButtonChoice::Reject => Vote::Reject,
        };
        let ballot = Ballot {
            user: &click.user,
            message: &click.message,
            vote,
            added: true,
            event_id: click.delivery_id.clone(),
            claim: Some(claim),
        };
        self.cast(&target, ballot).await
    }

    /// Counts a ballot on the plan message `target`, under its
    /// environment's lock: the one place a vote meets the approval's rules,
    /// whether it came as a reaction or a click.
    async fn cast(&self, target: &PlanMessage, ballot: Ballot<'_>) -> Outcome {
        let Some(_guard) = self.lock_env(&target.env).await else {
            return Ok(());
        };
        let op = self
            .active_operation(&target.env)
            .filter(|op| op.header.id == target.op);
        let shown = op.as_ref().and_then(|op| match &op.phase {
            Phase::AwaitingApproval(s) | Phase::Approved(s) if s.message == *ballot.message => {
                Some(s.clone())
            }
            _ => None,
        });
        let (Some(op), Some(shown)) = (op, shown) else {
            if ballot.added {
                return Err(Refusal::PlanClosed { op: target.op }.into());
            }
            if matches!(ballot.vote, Vote::Approve) && self.approved_step(target, ballot.user) {
                // Removing ✅ cannot undo a step that ran; say so rather than
                // let the approver believe it did.
                let note = Notice::ApprovalTooLate {
                    user: ballot.user.clone(),
                    step: target.step,
                };
                let to = Destination::Post {
                    channel: ballot.message.channel.clone(),
                    thread: Some(ballot.message.clone()),
                };
                self.say(to, note).await;
            }
            return Ok(());
        };
        match (&ballot.vote, ballot.added) {
            (Vote::Approve, true) => self.approve(&op, &shown, &ballot).await,
            (Vote::Reject, true) => self.reject(&op, &shown, &ballot).await,
            (Vote::Approve, false) => self.unapprove(&op, &shown, &ballot).await,
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
        ballot: &Ballot<'_>,
    ) -> Outcome {
        let actor = Actor {
            user: ballot.user,
            is_approver: self.may_approve(ballot.user, &op.header.env).await?,
        };
        let mut approval = shown.approval.clone();
        let decided = approval.approve(&actor, ballot.plan(shown), self.now());
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
                by: ballot.user.clone(),
                event: ballot.event_id.clone(),
            };
            let mut counted = shown.clone();
            counted.approval = approval;
            let update = self.plan_update(op, &counted, PlanStatus::Pending);
            return Ok(self.record_and_say(voted, vec![update]).await?);
        }
        self.record_decision(op, shown, approval.state.clone(), ballot.event_id.clone())?;
        let mut approved = shown.clone();
        approved.approval = approval;
        self.update_plan_message(
            op,
            &approved,
            PlanStatus::Applying {
                by: ballot.user.clone(),
            },
        )
        .await;
        self.drive(&op.header.env).await
    }

    async fn reject(&self, op: &OperationState, shown: &ShownPlan, ballot: &Ballot<'_>) -> Outcome {
        let actor = Actor {
            user: ballot.user,
            is_approver: self.may_approve(ballot.user, &op.header.env).await?,
        };
        let mut approval = shown.approval.clone();
        approval.reject(&actor, ballot.plan(shown), self.now())?;
        self.record_decision(op, shown, approval.state, ballot.event_id.clone())?;
        self.drive(&op.header.env).await
    }

    /// The approver removed their reaction. Before the step started this
    /// takes the approval back; after, it changes nothing and says so.
    async fn unapprove(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        ballot: &Ballot<'_>,
    ) -> Outcome {
        let mut approval = shown.approval.clone();
        if approval.unapprove(ballot.user).is_err() {
            return Ok(());
        }
        let unvoted = Entry::Unvoted {
            op: op.header.id,
            step: op.step,
            plan: shown.plan.hash.clone(),
            by: ballot.user.clone(),
            event: ballot.event_id.clone(),
        };
        let note = Notice::ApprovalTakenBack {
            user: ballot.user.clone(),
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

impl Ballot<'_> {
    /// The plan this vote is for: the one its button named, else the one
    /// its message shows.
    fn plan<'s>(&'s self, shown: &'s ShownPlan) -> &'s PlanHash {
        self.claim.as_ref().map_or(&shown.plan.hash, |c| &c.plan)
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
