//! Moving an operation on from its phase: plan and show a step, check and
//! apply an approved one, verify, finish. Resuming after a restart is the
//! same loop, so a crash at any point continues from the last durable record.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::Instrument;

use super::apply::{apply, Applied};
use super::{Engine, EngineError, Outcome};
use crate::approval::ApprovalState;
use crate::backend::Snapshot;
use crate::config::EnvironmentConfig;
use crate::ids::ClusterId;
use crate::journal::Entry;
use crate::notice::{Destination, FinishedNotice, Notice, PlanNotice, StepReport};
use crate::operation::{
    plan_step, GateWarning, OperationHeader, OperationOutcome, OperationState, Phase, PlanStatus,
    Refusal, ShownPlan, StepOutcome, StopCause,
};
use crate::plan::{Plan, Weights};
use chrono::{DateTime, Utc};

use super::gates::Checked;

/// A step's plan that passed the invariants and the gates.
pub(super) struct Prepared {
    pub plan: Plan,
    /// What the gates found (break-glass warnings, readings, capacity).
    pub checked: Checked,
    /// The routing objects' versions the plan was made from.
    pub versions: BTreeMap<ClusterId, String>,
}

impl Engine {
    pub(super) fn environment(&self, env: &str) -> Result<&EnvironmentConfig, Refusal> {
        self.config
            .environment(env)
            .ok_or_else(|| Refusal::NoSuchEnvironment { env: env.into() })
    }

    /// Reads the environment's weights; a cluster that cannot be read is
    /// the user's to know about, not an internal error.
    pub(super) async fn read(&self, env: &str) -> Result<Snapshot, Refusal> {
        let environment = self.environment(env)?;
        self.backend
            .read(environment)
            .await
            .map_err(|error| Refusal::Unavailable {
                env: env.into(),
                error,
            })
    }

    /// Plans step `step` of an operation from the weights in `snapshot` and
    /// runs the gates on it.
    pub(super) async fn prepare(
        &self,
        header: &OperationHeader,
        step: usize,
        snapshot: &Snapshot,
    ) -> Result<Prepared, Refusal> {
        self.prepare_plan(header, step, snapshot, false).await
    }

    /// [`Engine::prepare`], or, when an after-gate `tripped`, the plan of the
    /// way back to the weights before the operation.
    pub(super) async fn prepare_plan(
        &self,
        header: &OperationHeader,
        step: usize,
        snapshot: &Snapshot,
        tripped: bool,
    ) -> Result<Prepared, Refusal> {
        let plan = plan_step(header, step, &snapshot.weights(), tripped)?;
        let checked = self.gates(&plan, header.kind.force()).await?;
        let versions = snapshot
            .clusters
            .iter()
            .filter_map(|(c, s)| Some((c.clone(), s.version.clone()?)))
            .collect();
        Ok(Prepared {
            plan,
            checked,
            versions,
        })
    }

    /// Records a step whose plan changes nothing as done.
    pub(super) fn skip_step(
        &self,
        header: &OperationHeader,
        step: usize,
    ) -> Result<(), EngineError> {
        self.record(Entry::StepFinished {
            op: header.id,
            step,
            outcome: StepOutcome::Skipped,
            millis: 0,
            bake_until: None,
        })?;
        Ok(())
    }

    /// Moves the operation in `env` forward until it waits for someone or
    /// ends. The caller holds the environment's lock.
    pub(super) async fn drive(&self, env: &str) -> Outcome {
        loop {
            let Some(op) = self.active_operation(env) else {
                return Ok(());
            };
            // Every log line of this move (backend calls included) carries
            // the operation and step it belongs to.
            let span = tracing::info_span!("operation", env, op = op.header.id, step = op.step);
            let more = self.advance(&op).instrument(span).await?;
            if !more {
                return Ok(());
            }
        }
    }

    /// One move of the operation; `false` when it now waits or has ended.
    async fn advance(&self, op: &OperationState) -> Result<bool, EngineError> {
        match op.phase.clone() {
            Phase::AwaitingApproval(_) => return Ok(false),
            Phase::Baking { until } => return self.bake(op, until).await,
            Phase::Proposing => self.propose_next(op).await?,
            Phase::Approved(shown) => self.start_step(op, &shown).await?,
            Phase::Applying(shown) => self.finish_interrupted_step(op, &shown).await?,
            Phase::Finishing(outcome) => {
                self.finish(op, outcome).await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn propose_next(&self, op: &OperationState) -> Result<(), EngineError> {
        let tripped = op.tripped.is_some();
        let prepared = match self.read(&op.header.env).await {
            Ok(snapshot) => {
                self.prepare_plan(&op.header, op.step, &snapshot, tripped)
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        match prepared {
            Ok(prepared) => self.propose(&op.header, op.step, prepared).await,
            Err(refusal) => {
                let cause = StopCause::Refused { refusal };
                self.finish(op, OperationOutcome::Failed { cause }).await
            }
        }
    }

    /// An approved step: re-check the weights (a plan is only valid for the
    /// weights it was made from) and the gates, then apply.
    async fn start_step(&self, op: &OperationState, shown: &ShownPlan) -> Result<(), EngineError> {
        let snapshot = match self.read(&op.header.env).await {
            Ok(snapshot) => snapshot,
            Err(refusal) => return self.refuse_step(op, refusal).await,
        };
        let moved = shown.moved_objects(&snapshot);
        if snapshot.weights() != shown.plan.before || !moved.is_empty() {
            return self.supersede(op, shown, snapshot.weights(), moved).await;
        }
        let warnings = match self.gates(&shown.plan, op.header.kind.force()).await {
            Ok(checked) => checked.warnings,
            Err(refusal) => return self.refuse_step(op, refusal).await,
        };
        // Break-glass failures found now, not when the plan was shown, go
        // on the plan and into the journal with the step.
        let new_warnings: Vec<GateWarning> = warnings
            .into_iter()
            .filter(|w| !shown.warnings.contains(w))
            .collect();
        let started = Entry::StepStarted {
            op: op.header.id,
            step: op.step,
            plan: shown.plan.hash.clone(),
            warnings: new_warnings.clone(),
        };
        let mut shown = shown.clone();
        if new_warnings.is_empty() {
            self.record(started)?;
        } else {
            shown.warnings.extend(new_warnings);
            let by = op_approver(&shown);
            let update = self.plan_update(op, &shown, PlanStatus::Applying { by });
            self.record_and_say(started, vec![update]).await?;
        }
        self.run_step(op, &shown, snapshot).await
    }

    pub(super) async fn refuse_step(
        &self,
        op: &OperationState,
        refusal: Refusal,
    ) -> Result<(), EngineError> {
        let said = op
            .last_shown
            .iter()
            .map(|shown| self.plan_update(op, shown, PlanStatus::Refused))
            .collect();
        let finished = Entry::StepFinished {
            op: op.header.id,
            step: op.step,
            outcome: StepOutcome::Refused { refusal },
            millis: 0,
            bake_until: None,
        };
        self.record_and_say(finished, said).await
    }

    /// The weights moved since the plan was shown: the approval does not
    /// carry over. The old plan is marked superseded and a new one is shown.
    async fn supersede(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        now: Weights,
        moved: Vec<ClusterId>,
    ) -> Result<(), EngineError> {
        let decided = Entry::Decided {
            op: op.header.id,
            step: op.step,
            plan: shown.plan.hash.clone(),
            state: ApprovalState::Superseded { at: self.now() },
            event: None,
        };
        let note = Notice::Superseded {
            plan: Box::new(shown.plan.clone()),
            now,
            moved,
        };
        let said = vec![
            self.plan_update(op, shown, PlanStatus::Superseded),
            in_thread(op, shown, note),
        ];
        self.record_and_say(decided, said).await
    }

    /// Applies the step (or, after a restart, finishes it from wherever the
    /// clusters are), verifies, and records the outcome.
    pub(super) async fn run_step(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        snapshot: Snapshot,
    ) -> Result<(), EngineError> {
        let started = Instant::now();
        let environment = match self.environment(&op.header.env) {
            Ok(e) => e,
            Err(refusal) => return self.refuse_step(op, refusal).await,
        };
        let applied = apply(self.backend.as_ref(), environment, &shown.plan, &snapshot).await;
        self.record(Entry::Changed {
            op: op.header.id,
            step: op.step,
            results: applied.results.clone(),
        })?;
        let outcome = self.outcome_of(environment, &shown.plan, &applied).await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tracing::info!(
            outcome = outcome.label(),
            millis = micros / 1000,
            "step finished"
        );
        let status = match outcome {
            StepOutcome::Applied { .. } | StepOutcome::Skipped => PlanStatus::Applied,
            StepOutcome::Conflict => PlanStatus::Superseded,
            _ => PlanStatus::Failed,
        };
        let report = Notice::StepResult(Box::new(StepReport {
            op: op.header.id,
            env: op.header.env.clone(),
            step: op.step,
            total: op.total_steps(),
            plan: shown.plan.clone(),
            results: applied.results,
            outcome: outcome.clone(),
            micros,
        }));
        let said = vec![
            in_thread(op, shown, report),
            self.plan_update(op, shown, status),
        ];
        let bake_until = self.bake_until(op, &outcome);
        let finished = Entry::StepFinished {
            op: op.header.id,
            step: op.step,
            outcome,
            millis: micros / 1000,
            bake_until,
        };
        self.record_and_say(finished, said).await
    }

    /// Until when a step that did what it should is baked: when the
    /// environment has after-gates, and the step was not the way back.
    fn bake_until(&self, op: &OperationState, outcome: &StepOutcome) -> Option<DateTime<Utc>> {
        let verified =
            matches!(outcome, StepOutcome::Applied { unverified, .. } if unverified.is_empty());
        if !verified || op.tripped.is_some() {
            return None;
        }
        let bake = self.bake_of(&op.header.env)?;
        Some(self.now() + chrono::Duration::from_std(bake).unwrap_or_default())
    }

    async fn outcome_of(
        &self,
        environment: &EnvironmentConfig,
        plan: &Plan,
        applied: &Applied,
    ) -> StepOutcome {
        match &applied.failure {
            None => {
                let dry_run = applied.dry_run_clusters();
                let unverified = match self.backend.verify(environment, &plan.after).await {
                    Ok(report) => report
                        .into_iter()
                        .filter(|c| !c.is_complete() && !dry_run.contains(&c.cluster))
                        .map(|c| c.cluster.to_string())
                        .collect(),
                    Err(error) => vec![error.to_string()],
                };
                StepOutcome::Applied {
                    unverified,
                    dry_run,
                }
            }
            Some(f) if f.restored && f.only_conflicts() => StepOutcome::Conflict,
            Some(f) if f.restored => StepOutcome::Restored {
                failure: f.failure(),
            },
            Some(f) => StepOutcome::Incomplete {
                failure: f.failure(),
            },
        }
    }

    /// Records the end of an operation and tells the channel.
    pub(super) async fn finish(
        &self,
        op: &OperationState,
        outcome: OperationOutcome,
    ) -> Result<(), EngineError> {
        let mut said = Vec::new();
        let status = match &outcome {
            OperationOutcome::Completed | OperationOutcome::Failed { .. } => None,
            OperationOutcome::Rejected { by } => Some(PlanStatus::Rejected { by: by.clone() }),
            OperationOutcome::Expired => Some(PlanStatus::Expired),
            OperationOutcome::Withdrawn { by } => Some(PlanStatus::Withdrawn { by: by.clone() }),
            OperationOutcome::Aborted { by } => Some(PlanStatus::Aborted { by: by.clone() }),
        };
        let shown = op.last_shown.as_ref();
        if let (Some(status), Some(shown)) = (status, shown) {
            // Only a plan that never ran is marked with how it ended; an
            // applied or superseded one keeps the status it already shows.
            let never_ran = matches!(
                shown.approval.state,
                ApprovalState::Pending
                    | ApprovalState::Rejected { .. }
                    | ApprovalState::Expired { .. }
                    | ApprovalState::Withdrawn { .. }
            );
            if never_ran {
                said.push(self.plan_update(op, shown, status));
            }
        }
        // A one-step operation's step result already says it completed.
        let said_already = outcome == OperationOutcome::Completed && op.total_steps() == 1;
        if !said_already {
            let to = Destination::Post {
                channel: op.header.channel.clone(),
                thread: op.thread().cloned(),
            };
            said.push((to, Notice::Finished(FinishedNotice::of(op, &outcome))));
        }
        let finished = Entry::Finished {
            op: op.header.id,
            outcome,
        };
        self.record_and_say(finished, said).await
    }

    /// Sets the plan message to `status` now (not journaled with a record).
    pub(super) async fn update_plan_message(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        status: PlanStatus,
    ) {
        let (to, notice) = self.plan_update(op, shown, status);
        self.say(to, notice).await;
    }

    /// The update that sets the plan message to `status`, to say with the
    /// record that changed it.
    pub(super) fn plan_update(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        status: PlanStatus,
    ) -> (Destination, Notice) {
        let notice = Notice::Plan(Box::new(PlanNotice {
            header: op.header.clone(),
            step: shown.plan.scope.step,
            shown: shown.clone(),
            status,
            tripped: op.tripped.clone(),
        }));
        let to = Destination::Update {
            at: shown.message.clone(),
        };
        (to, notice)
    }
}

/// Who approved the plan `shown` (the requester if nobody did, which only a
/// plan that needs no approval would show).
fn op_approver(shown: &ShownPlan) -> crate::ids::UserId {
    match &shown.approval.state {
        ApprovalState::Approved { by, .. } => by.clone(),
        _ => shown.approval.requester.clone(),
    }
}

/// A reply in the thread of the plan message `shown`.
pub(super) fn in_thread(
    op: &OperationState,
    shown: &ShownPlan,
    notice: Notice,
) -> (Destination, Notice) {
    let to = Destination::Post {
        channel: op.header.channel.clone(),
        thread: Some(shown.message.clone()),
    };
    (to, notice)
}
