//! The bake: after a step, the environment's after-gates must keep holding
//! for the longest `bake` before the next step's plan is posted. The
//! readings are shown in one message in the thread, updated as they come.
//! A blocking reading (a failing gate, or no data where the gate says
//! `on_no_data: pause`) trips the operation: the channel is told which gate,
//! its value and its query, and the way back to the weights before the
//! operation is planned — approved as usual, or, where the environment sets
//! `on_gate_failure: rollback`, taken at once.
//!
//! Time passing moves a bake on: [`Engine::tick`] drives every baking
//! operation, at most every `bake / 20` (1–30 s apart).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::step::in_thread;
use super::{Engine, EngineError, Outcome};
use crate::approval::ApprovalState;
use crate::config::gates::OnGateFailure;
use crate::ids::{EnvId, OpId};
use crate::journal::Entry;
use crate::notice::{BakeNotice, BakeState, Destination, Notice};
use crate::operation::{GateCheck, OperationHeader, OperationState, Phase};

const FASTEST: Duration = Duration::from_secs(1);
const SLOWEST: Duration = Duration::from_secs(30);

impl Engine {
    /// Moves on what time moves: approvals past their deadline expire, and
    /// baking operations read their gates. Call it every second (serve) or
    /// before each input (the sandbox).
    pub async fn tick(&self) {
        self.expire_due().await;
        let baking: Vec<EnvId> = self.with_ledger(|l| {
            l.active
                .iter()
                .filter(|(_, op)| matches!(op.phase, Phase::Baking { .. }))
                .map(|(env, _)| env.clone())
                .collect()
        });
        for env in baking {
            let outcome = self.drive_locked(&env).await;
            self.log_failure(outcome, &env);
        }
    }

    /// [`Engine::drive`] under the environment's lock.
    async fn drive_locked(&self, env: &EnvId) -> Outcome {
        let Some(_guard) = self.lock_env(env).await else {
            return Ok(());
        };
        self.drive(env).await
    }

    /// One look at a baking operation; `true` when it moved on (baked or
    /// tripped), `false` while it still bakes.
    pub(super) async fn bake(
        &self,
        op: &OperationState,
        until: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        let now = self.now();
        if now < until && !self.bake_reading_due(op) {
            return Ok(false);
        }
        let env = &op.header.env;
        // The clusters that carry traffic: as read now, else as planned.
        let weights = match self.read(env).await {
            Ok(snapshot) => snapshot.weights(),
            Err(_) => op
                .last_shown
                .as_ref()
                .map(|s| s.plan.after.clone())
                .unwrap_or_default(),
        };
        let checks = self.after_checks(env, &weights).await;
        self.note_bake_reading(op.header.id, now);
        let state = if checks.iter().any(GateCheck::blocks) {
            BakeState::Tripped
        } else if now >= until {
            BakeState::Passed
        } else {
            BakeState::Holding
        };
        self.show_bake(op, until, &checks, state).await?;
        match state {
            BakeState::Holding => Ok(false),
            BakeState::Passed => {
                self.record(Entry::Baked {
                    op: op.header.id,
                    step: op.step,
                    checks,
                })?;
                Ok(true)
            }
            BakeState::Tripped => {
                self.trip(op, checks).await?;
                Ok(true)
            }
        }
    }

    /// Whether the gates are due another reading: `bake / 20` apart, 1–30 s.
    fn bake_reading_due(&self, op: &OperationState) -> bool {
        let last = self.lock_bake_readings().get(&op.header.id).copied();
        let Some(last) = last else {
            return true;
        };
        let bake = self.bake_of(&op.header.env).unwrap_or_default();
        let every = (bake / 20).clamp(FASTEST, SLOWEST);
        (self.now() - last).to_std().unwrap_or_default() >= every
    }

    fn note_bake_reading(&self, op: OpId, at: DateTime<Utc>) {
        self.lock_bake_readings().insert(op, at);
    }

    fn lock_bake_readings(&self) -> std::sync::MutexGuard<'_, HashMap<OpId, DateTime<Utc>>> {
        self.bake_readings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts the bake's message the first time, then updates it.
    async fn show_bake(
        &self,
        op: &OperationState,
        until: DateTime<Utc>,
        checks: &[GateCheck],
        state: BakeState,
    ) -> Result<(), EngineError> {
        let notice = Notice::Bake(Box::new(BakeNotice {
            op: op.header.id,
            step: op.step,
            total: op.total_steps(),
            until,
            checks: checks.to_vec(),
            state,
        }));
        if let Some(at) = &op.bake_message {
            self.say(Destination::Update { at: at.clone() }, notice)
                .await;
            return Ok(());
        }
        let Some(shown) = &op.last_shown else {
            return Ok(());
        };
        let message = crate::messages::render(&notice, &self.config);
        match self
            .chat
            .post(&op.header.channel, Some(&shown.message), &message)
            .await
        {
            Ok(at) => {
                self.record(Entry::BakeShown {
                    op: op.header.id,
                    step: op.step,
                    message: at,
                })?;
            }
            // The bake goes on without its message; the journal has it.
            Err(error) => tracing::warn!(%error, "could not post the bake's readings"),
        }
        Ok(())
    }

    /// An after-gate blocked: the operation turns back.
    async fn trip(&self, op: &OperationState, checks: Vec<GateCheck>) -> Result<(), EngineError> {
        let Some(shown) = &op.last_shown else {
            return Ok(());
        };
        let on_its_own = self.rolls_back_on_its_own(&op.header);
        let note = Notice::GateTripped {
            op: op.header.id,
            step: op.step,
            checks: checks.clone(),
            on_its_own,
        };
        let tripped = Entry::Tripped {
            op: op.header.id,
            step: op.step,
            checks,
        };
        self.record_and_say(tripped, vec![in_thread(op, shown, note)])
            .await
    }

    /// Whether the way back after a tripped gate needs no approval: the
    /// environment says `on_gate_failure: rollback`.
    pub(super) fn rolls_back_on_its_own(&self, header: &OperationHeader) -> bool {
        self.config
            .environment(&header.env)
            .is_some_and(|e| e.on_gate_failure == OnGateFailure::Rollback)
    }

    /// The way back's plan, shown: approved at once when the environment
    /// rolls back on its own (its gates passed when it was planned, so no
    /// traffic goes to a cluster whose own gates fail).
    pub(super) fn approve_way_back(
        &self,
        header: &OperationHeader,
        step: usize,
        plan: &crate::plan::PlanHash,
    ) -> Result<(), EngineError> {
        let tripped = self
            .active_operation(&header.env)
            .is_some_and(|o| o.tripped.is_some());
        if !tripped || !self.rolls_back_on_its_own(header) {
            return Ok(());
        }
        self.record(Entry::Decided {
            op: header.id,
            step,
            plan: plan.clone(),
            state: ApprovalState::Approved {
                by: self.bot_user.clone(),
                at: self.now(),
            },
            event: None,
        })?;
        Ok(())
    }
}
