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
use crate::notice::{Destination, FinishedNotice, HoldPlan, Notice, PlanNotice, StepReport};
use crate::operation::{
    plan_aimed, Aim, GateWarning, OperationHeader, OperationOutcome, OperationState, Phase,
    PlanStatus, Refusal, ShownPlan, StepOutcome, StopCause,
};
use crate::plan::{Plan, Weights};
use chrono::{DateTime, Utc};

use super::gates::Checked;
use crate::drill::scorecard;
use crate::journal::ledger::drill_end;
use crate::notice::DrillChart;

/// The chart shows at most this many drills, the newest: enough to see a
/// trend, few enough that each bar is readable.
const CHART_DRILLS: usize = 30;

/// A step's plan that passed the invariants and the gates.
pub(super) struct Prepared {
    pub plan: Plan,
    /// What the gates found (break-glass warnings, readings, capacity).
    pub checked: Checked,
    /// The routing objects' versions the plan was made from.
    pub versions: BTreeMap<ClusterId, String>,
    /// What the plan aims at; an `extend` or `keep` moves no weight and
    /// is shown for approval all the same.
    pub aim: Aim,
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
        self.prepare_plan(header, step, snapshot, Aim::Forward)
            .await
    }

    /// [`Engine::prepare`], or the plan of the way back to the weights
    /// before the operation (an after-gate tripped, a time-limited shift's
    /// time is up: through the same gates), or of an `extend` or `keep`
    /// (no weight moves, so no gate).
    pub(super) async fn prepare_plan(
        &self,
        header: &OperationHeader,
        step: usize,
        snapshot: &Snapshot,
        aim: Aim,
    ) -> Result<Prepared, Refusal> {
        let plan = plan_aimed(header, step, &snapshot.weights(), aim)?;
        let checked = match aim {
            Aim::Stay => Checked::default(),
            _ => self.gates(&plan, header.kind.force()).await?,
        };
        let versions = snapshot
            .clusters
            .iter()
            .filter_map(|(c, s)| Some((c.clone(), s.version.clone()?)))
            .collect();
        Ok(Prepared {
            plan,
            checked,
            versions,
            aim,
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
            Phase::AwaitingApproval(shown) => return self.lapse_hold_change(op, &shown).await,
            Phase::Baking { until } => return self.bake(op, until).await,
            Phase::Holding => return self.hold(op).await,
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
        let prepared = match self.read(&op.header.env).await {
            Ok(snapshot) => {
                self.prepare_plan(&op.header, op.step, &snapshot, op.aim())
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        match prepared {
            Ok(prepared) => self.propose(&op.header, op.step, prepared).await,
            Err(refusal) => {
                let returning = op.hold.as_ref().is_some_and(|h| h.returning.is_some());
                let cause = match returning {
                    true => StopCause::ReturnRefused { refusal },
                    false => StopCause::Refused { refusal },
                };
                self.finish(op, OperationOutcome::Failed { cause }).await
            }
        }
    }

    /// An approved step: re-check the weights (a plan is only valid for the
    /// weights it was made from) and the gates, then apply.
    async fn start_step(&self, op: &OperationState, shown: &ShownPlan) -> Result<(), EngineError> {
        if let Err(refusal) = self.require_trusted_journal() {
            return self.refuse_step(op, refusal).await;
        }
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
        self.status_reads.weights_changed();
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
            hold: HoldPlan::of(op),
            holds_for: op
                .header
                .time_limit
                .filter(|_| op.hold.is_none() && op.step == op.total_steps()),
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
        // The way back, a return, `extend` or `keep` ends (or holds) the
        // operation: there is no next step to hold back.
        if !verified || op.tripped.is_some() || op.hold.is_some() {
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
        // A return that did not happen is said in the channel itself, not
        // only in a thread people may have muted hours ago.
        let loud = matches!(
            &outcome,
            OperationOutcome::Failed {
                cause: StopCause::ReturnRefused { .. }
            }
        );
        let to = Destination::Post {
            channel: op.header.channel.clone(),
            thread: op.thread().cloned().filter(|_| !loud),
        };
        let summary = FinishedNotice::of(op, &outcome);
        // The drill's times end where its `Finished` record is stamped.
        let at = self.now();
        let scored = self.drill_scored(op, &outcome, at);
        let finished = Entry::Finished {
            op: op.header.id,
            outcome,
        };
        // The last word in the thread quotes the hash of the record that
        // ends the operation: the channel anchors the journal's chain.
        self.record_and_say_quoting_at(at, finished, move |hash| {
            said.push((to, Notice::Finished(summary.anchored(hash))));
            said.extend(scored);
            said
        })
        .await
    }

    /// A drill's end in its thread: the scorecard, and for a completed
    /// drill the chart of the environment's drills; nothing for an
    /// operation that is not a drill.
    fn drill_scored(
        &self,
        op: &OperationState,
        outcome: &OperationOutcome,
        at: DateTime<Utc>,
    ) -> Vec<(Destination, Notice)> {
        let (timings, earlier) = self.with_ledger(|l| {
            let timings = l.drill_timings(op, outcome, at);
            (timings, l.completed_drills(&op.header.env))
        });
        let Some(timings) = timings else {
            return Vec::new();
        };
        let mut card = match scorecard(&timings, &earlier) {
            Ok(card) => card,
            Err(error) => {
                // Rejected in the very instant it was posted: nothing timed.
                tracing::warn!(%error, "drill not scored");
                return Vec::new();
            }
        };
        card.ended = drill_end(outcome);
        let thread = op.thread().cloned();
        let post = Destination::Post {
            channel: op.header.channel.clone(),
            thread: thread.clone(),
        };
        let mut said = vec![(post, Notice::DrillScorecard(Box::new(card)))];
        if let (Some(thread), OperationOutcome::Completed) = (thread, outcome) {
            let mut drills = earlier;
            drills.push(timings);
            let shown = drills.len().saturating_sub(CHART_DRILLS);
            let chart = DrillChart {
                op: op.header.id,
                env: op.header.env.clone(),
                drills: drills.split_off(shown),
            };
            said.push((
                Destination::Upload { thread },
                Notice::DrillChart(Box::new(chart)),
            ));
        }
        said
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
            hold: HoldPlan::of(op),
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
