//! Time-limited shifts, once their steps are done: the weights hold until
//! the deadline, the thread is reminded ten minutes before, and then the
//! weights go back through the same gates as any step. The approval of the
//! shift covers that return, unless the weights were changed by hand
//! meanwhile: then the return is planned from where they are and needs an
//! approval. A return a gate refuses does not move anything, and the
//! channel (not only the thread) is told.
//!
//! `extend` and `keep` are plans of their own, shown for an approval as a
//! step is; they move no weight, so no gate runs for them.
//!
//! Everything here is driven by [`Engine::tick`] and the journal: the
//! deadline is the time of the last step's record plus the limit, so a
//! restart finds it where it was.

use chrono::Duration;

use super::step::in_thread;
use super::{CommandRequest, Engine, EngineError, Outcome};
use crate::approval::ApprovalState;
use crate::command::hold::{HoldChange, LONGEST};
use crate::ids::EnvId;
use crate::journal::Entry;
use crate::notice::Notice;
use crate::operation::{OperationState, Phase, PlanStatus, Refusal, ShownPlan};

/// How long before the return the thread is reminded.
pub const REMINDER: Duration = Duration::minutes(10);

impl Engine {
    /// One look at a holding shift; `true` when its time is up and the
    /// return is to be planned.
    pub(super) async fn hold(&self, op: &OperationState) -> Result<bool, EngineError> {
        let Some(hold) = &op.hold else {
            return Ok(false);
        };
        let now = self.now();
        if now >= hold.until {
            // Read to tell a return the shift's approval covers from one
            // after a change by hand; unreadable, the return's own read
            // refuses it and says why.
            let by_hand = match self.read(&op.header.env).await {
                Ok(snapshot) => snapshot.weights() != hold.left,
                Err(_) => false,
            };
            self.record(Entry::ReturnDue {
                op: op.header.id,
                by_hand,
            })?;
            return Ok(true);
        }
        if !hold.reminded && now + REMINDER >= hold.until {
            self.remind(op).await?;
        }
        Ok(false)
    }

    /// An `extend` or `keep` still awaiting approval when time is up lapses:
    /// the weights go back as the approved shift said. `true` when it did.
    pub(super) async fn lapse_hold_change(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
    ) -> Result<bool, EngineError> {
        let due = op
            .hold
            .as_ref()
            .is_some_and(|h| h.changing() && self.now() >= h.until);
        if !due {
            return Ok(false);
        }
        let lapsed = Entry::Decided {
            op: op.header.id,
            step: op.step,
            plan: shown.plan.hash.clone(),
            state: ApprovalState::Expired { at: self.now() },
            event: None,
        };
        let update = self.plan_update(op, shown, PlanStatus::Expired);
        self.record_and_say(lapsed, vec![update]).await?;
        Ok(true)
    }

    /// Tells the thread when the weights go back, and how to keep them.
    async fn remind(&self, op: &OperationState) -> Result<(), EngineError> {
        let (Some(hold), Some(shown)) = (&op.hold, &op.last_shown) else {
            return Ok(());
        };
        let note = Notice::HoldReminder {
            op: op.header.id,
            until: hold.until,
            back_to: op.header.start.clone(),
        };
        let reminded = Entry::Reminded {
            op: op.header.id,
            until: hold.until,
        };
        self.record_and_say(reminded, vec![in_thread(op, shown, note)])
            .await
    }

    /// `extend DURATION` or `keep`: asked of a holding shift by its
    /// requester or an approver, then planned and shown for an approval.
    pub(super) async fn change_hold(
        &self,
        request: &CommandRequest,
        env: &EnvId,
        change: HoldChange,
    ) -> Outcome {
        let Some(_guard) = self.lock_env(env).await else {
            return Err(Refusal::NoSuchEnvironment { env: env.clone() }.into());
        };
        let op = self.active_operation(env);
        let Some((op, hold)) = op.and_then(|o| {
            let hold = o.hold.clone().filter(|_| o.phase == Phase::Holding)?;
            Some((o, hold))
        }) else {
            return Err(Refusal::NotHolding { env: env.clone() }.into());
        };
        let policy = self.config.approval_for(env);
        let action = match change {
            HoldChange::Extend { .. } => "extend",
            HoldChange::Keep => "keep",
        };
        if let Some(refusal) = self
            .may_act_on(
                &request.user,
                op.header.id,
                &op.header.requester,
                action,
                &policy,
            )
            .await?
        {
            return Err(refusal.into());
        }
        if let HoldChange::Extend { by } = change {
            let latest = hold.since + Duration::from_std(LONGEST).unwrap_or(Duration::MAX);
            if hold.until + by.chrono() > latest {
                return Err(Refusal::HoldTooLong {
                    env: env.clone(),
                    latest,
                }
                .into());
            }
        }
        self.record(Entry::HoldAsked {
            op: op.header.id,
            change,
            by: request.user.clone(),
        })?;
        self.drive(env).await
    }
}
