//! Driving an operation forward from its phase: plan and show a step, check
//! and apply an approved one, finish. Resuming after a restart is the same
//! loop, so a crash at any point continues from the last durable record.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::future::join_all;
use tracing::Instrument;

use super::{Engine, EngineError, Outcome};
use crate::approval::ApprovalState;
use crate::backend::Snapshot;
use crate::chat::Said;
use crate::config::EnvironmentConfig;
use crate::messages::{self, PlanStatus, UserError};
use crate::operation::apply::{apply, Applied};
use crate::operation::journal::Entry;
use crate::operation::{
    OperationHeader, OperationKind, OperationOutcome, OperationState, Phase, ShownPlan, StepOutcome,
};
use crate::plan::{self, Change, Plan, PlanScope, Weights};

/// A step's plan that passed the invariants and the gates.
pub(super) struct Prepared {
    pub plan: Plan,
    /// Health-gate failures pushed through with break-glass.
    pub warnings: Vec<String>,
    /// The routing objects' versions the plan was made from.
    pub versions: BTreeMap<String, String>,
}

impl Prepared {
    /// The same plan under its operation's real id (allocated at start).
    pub fn rescoped(self, op: u64) -> Result<Prepared, UserError> {
        let scope = PlanScope {
            operation: op,
            ..self.plan.scope
        };
        Ok(Prepared {
            plan: Plan::new(scope, self.plan.change, self.plan.before, self.plan.after)?,
            warnings: self.warnings,
            versions: self.versions,
        })
    }
}

impl Engine {
    pub(super) fn environment(&self, env: &str) -> Result<&EnvironmentConfig, UserError> {
        self.config
            .environment(env)
            .ok_or_else(|| UserError::Invalid(format!("no environment {env} in the config")))
    }

    /// Reads the environment's weights; a cluster that cannot be read is
    /// the user's to know about, not an internal error.
    pub(super) async fn read(&self, env: &str) -> Result<Snapshot, UserError> {
        let environment = self.environment(env)?;
        self.backend
            .read(environment)
            .await
            .map_err(|e| UserError::Unavailable {
                env: env.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Computes step `step` of an operation from the current weights and
    /// runs the gates on it.
    pub(super) async fn prepare(
        &self,
        header: &OperationHeader,
        step: usize,
        snapshot: &Snapshot,
    ) -> Result<Prepared, UserError> {
        let before = snapshot.weights();
        let (change, after) = target_of(&header.kind, step, &before)?;
        let scope = PlanScope {
            env: header.env.clone(),
            operation: header.id,
            step,
        };
        let plan = Plan::new(scope, change, before, after)?;
        let warnings = self.gates(&header.env, &plan, header.kind.force()).await?;
        let versions = snapshot
            .clusters
            .iter()
            .filter_map(|(c, s)| Some((c.clone(), s.version.clone()?)))
            .collect();
        Ok(Prepared {
            plan,
            warnings,
            versions,
        })
    }

    /// Identity of every cluster the plan touches, and health of every
    /// cluster it raises. Identity failures always refuse; health failures
    /// refuse unless `force` (break-glass), in which case they are returned
    /// as warnings to show on the plan.
    async fn gates(&self, env: &str, plan: &Plan, force: bool) -> Result<Vec<String>, UserError> {
        let environment = self.environment(env)?;
        let touched: Vec<_> = plan
            .changed_clusters()
            .filter_map(|c| environment.cluster(c))
            .collect();
        let raised: Vec<_> = plan
            .raised_clusters()
            .filter_map(|c| environment.cluster(c))
            .collect();
        let identity = join_all(touched.iter().map(|c| self.backend.check_identity(c)));
        let health = join_all(raised.iter().map(|c| self.backend.check_health(c)));
        let (identity, health) = futures::join!(identity, health);
        let failures = touched
            .iter()
            .zip(identity)
            .chain(raised.iter().zip(health))
            .filter_map(|(c, r)| r.err().map(|e| (c.name.clone(), e)));
        let mut warnings = Vec::new();
        for (cluster, failure) in failures {
            if force && failure.is_health() {
                warnings.push(format!("{cluster}: {failure}"));
            } else {
                return Err(UserError::GateFailed {
                    cluster,
                    reason: failure.to_string(),
                    can_force: failure.is_health(),
                });
            }
        }
        Ok(warnings)
    }

    /// Shows a step's plan and records it as awaiting approval. A plan that
    /// changes nothing is recorded as skipped instead.
    pub(super) async fn propose(
        &self,
        header: &OperationHeader,
        step: usize,
        prepared: Prepared,
    ) -> Result<(), EngineError> {
        if prepared.plan.is_noop() {
            self.record(Entry::StepFinished {
                op: header.id,
                step,
                outcome: StepOutcome::Skipped,
                millis: 0,
            })?;
            return Ok(());
        }
        let expires_at = self.now()
            + chrono::Duration::from_std(self.config.approval.expires_after)
                .unwrap_or(chrono::Duration::minutes(15));
        let approval = crate::approval::Approval::new(
            prepared.plan.hash.clone(),
            header.requester.clone(),
            expires_at,
        );
        let mut shown = ShownPlan {
            plan: prepared.plan,
            message: crate::chat::MessageRef {
                channel: header.channel.clone(),
                ts: String::new(),
            },
            approval,
            warnings: prepared.warnings,
            versions: prepared.versions,
        };
        let text = messages::plan(&self.plan_view(header, step, &shown, PlanStatus::Pending));
        self.record(Entry::PlanPosting {
            op: header.id,
            step,
        })?;
        shown.message = self.chat.post(&header.channel, None, &text).await?;
        let message = shown.message.clone();
        // Journaled before the hints are added: an approver may react the
        // moment the message appears, and a reaction on a message the
        // ledger does not know is ignored (and Slack never redelivers an
        // event the bot acknowledged). Known, it waits for the env lock.
        self.record(Entry::Proposed {
            op: header.id,
            step,
            plan: shown.plan,
            message: shown.message,
            expires_at,
            warnings: shown.warnings,
            versions: shown.versions,
        })?;
        self.add_reaction_hints(&message).await;
        Ok(())
    }

    /// The approve/reject reactions on a plan, so approvers need only click.
    async fn add_reaction_hints(&self, message: &crate::chat::MessageRef) {
        for reaction in [
            &self.config.approval.reaction,
            &self.config.approval.reject_reaction,
        ] {
            if let Err(error) = self.chat.react(message, reaction).await {
                tracing::warn!(%error, "could not add the reaction hint");
            }
        }
    }

    pub(super) fn plan_view<'a>(
        &'a self,
        header: &'a OperationHeader,
        step: usize,
        shown: &'a ShownPlan,
        status: PlanStatus,
    ) -> messages::PlanView<'a> {
        messages::PlanView {
            header,
            step,
            shown,
            status,
            config: &self.config,
        }
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
            Ok(snapshot) => self.prepare(&op.header, op.step, &snapshot).await,
            Err(e) => Err(e),
        };
        match prepared {
            Ok(prepared) => self.propose(&op.header, op.step, prepared).await,
            Err(refusal) => {
                let reason = refusal.to_string();
                self.finish(op, OperationOutcome::Failed { reason }).await
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
        let moved = moved_objects(shown, &snapshot);
        if snapshot.weights() != shown.plan.before || !moved.is_empty() {
            return self.supersede(op, shown, &snapshot.weights(), &moved).await;
        }
        if let Err(refusal) = self
            .gates(&op.header.env, &shown.plan, op.header.kind.force())
            .await
        {
            return self.refuse_step(op, refusal).await;
        }
        self.record(Entry::StepStarted {
            op: op.header.id,
            step: op.step,
            plan: shown.plan.hash.clone(),
        })?;
        self.run_step(op, shown, snapshot).await
    }

    /// A step was being applied when the bot stopped. Writes may or may not
    /// have happened, so the clusters are read: if each holds its before or
    /// after weight the step is finished (or restored, if that fails); if
    /// they cannot be read, or hold something else, the bot stops and says so.
    async fn finish_interrupted_step(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
    ) -> Result<(), EngineError> {
        let snapshot = match self.read(&op.header.env).await {
            Ok(snapshot) => snapshot,
            Err(problem) => return self.stop_interrupted_step(op, shown, &problem, None).await,
        };
        match check_between(&shown.plan, &snapshot) {
            Ok(()) => self.run_step(op, shown, snapshot).await,
            Err(problem) => {
                let now = snapshot.weights();
                self.stop_interrupted_step(op, shown, &problem, Some(&now))
                    .await
            }
        }
    }

    /// Ends an interrupted step without touching a cluster, and says where
    /// every cluster's weight stands.
    async fn stop_interrupted_step(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        problem: &UserError,
        now: Option<&crate::plan::Weights>,
    ) -> Result<(), EngineError> {
        let reason = messages::interrupted_step_unknown(problem);
        let report =
            messages::interrupted_step_stopped(&self.config, op, &shown.plan, &reason, now);
        let said = vec![
            in_thread(op, shown, report),
            self.plan_update(op, shown, PlanStatus::Failed),
        ];
        let finished = Entry::StepFinished {
            op: op.header.id,
            step: op.step,
            outcome: StepOutcome::Incomplete { reason },
            millis: 0,
        };
        self.record_and_say(finished, said).await
    }

    async fn refuse_step(
        &self,
        op: &OperationState,
        refusal: UserError,
    ) -> Result<(), EngineError> {
        let reason = refusal.to_string();
        let said = op
            .last_shown
            .iter()
            .map(|shown| self.plan_update(op, shown, PlanStatus::Refused))
            .collect();
        let finished = Entry::StepFinished {
            op: op.header.id,
            step: op.step,
            outcome: StepOutcome::Refused { reason },
            millis: 0,
        };
        self.record_and_say(finished, said).await
    }

    /// The weights moved since the plan was shown: the approval does not
    /// carry over. The old plan is marked superseded and a new one is shown.
    async fn supersede(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        now_weights: &Weights,
        moved: &[String],
    ) -> Result<(), EngineError> {
        let decided = Entry::Decided {
            op: op.header.id,
            step: op.step,
            plan: shown.plan.hash.clone(),
            state: ApprovalState::Superseded { at: self.now() },
            event: None,
        };
        let note = messages::superseded(&shown.plan, now_weights, moved);
        let said = vec![
            self.plan_update(op, shown, PlanStatus::Superseded),
            in_thread(op, shown, note),
        ];
        self.record_and_say(decided, said).await
    }

    /// Applies the step (or, after a restart, finishes it from wherever the
    /// clusters are), verifies, and records the outcome.
    async fn run_step(
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
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(outcome = outcome.label(), millis, "step finished");
        let report = messages::StepReport {
            header: &op.header,
            step: op.step,
            total: op.total_steps(),
            plan: &shown.plan,
            applied: &applied,
            outcome: &outcome,
            elapsed: started.elapsed(),
            config: &self.config,
        };
        let result = in_thread(op, shown, messages::step_result(&report));
        let status = match outcome {
            StepOutcome::Applied { .. } | StepOutcome::Skipped => PlanStatus::Applied,
            StepOutcome::Conflict => PlanStatus::Superseded,
            _ => PlanStatus::Failed,
        };
        let plan = self.plan_update(op, shown, status);
        let finished = Entry::StepFinished {
            op: op.header.id,
            step: op.step,
            outcome,
            millis,
        };
        self.record_and_say(finished, vec![result, plan]).await
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
                        .map(|c| c.cluster)
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
                reason: f.describe(),
            },
            Some(f) => StepOutcome::Incomplete {
                reason: f.describe(),
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
            said.push(Said::Post {
                channel: op.header.channel.clone(),
                thread: shown.map(|s| s.message.clone()),
                message: messages::finished(op, &outcome),
            });
        }
        let finished = Entry::Finished {
            op: op.header.id,
            outcome,
        };
        self.record_and_say(finished, said).await
    }

    pub(super) async fn update_plan(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        status: PlanStatus,
    ) {
        let text =
            messages::plan(&self.plan_view(&op.header, shown.plan.scope.step, shown, status));
        self.update(&shown.message, text).await;
    }

    /// The plan message set to `status`, to say with the record that
    /// changed it.
    pub(super) fn plan_update(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        status: PlanStatus,
    ) -> Said {
        let view = self.plan_view(&op.header, shown.plan.scope.step, shown, status);
        Said::Update {
            at: shown.message.clone(),
            message: messages::plan(&view),
        }
    }

    pub(super) async fn resume_env(&self, env: &str) -> Outcome {
        let Some(_guard) = self.lock_env(env).await else {
            return Ok(());
        };
        let Some(op) = self.active_operation(env) else {
            return Ok(());
        };
        let note = messages::resuming(&op);
        let thread = op.last_shown.as_ref().map(|s| s.message.clone());
        self.say(&op.header.channel, thread.as_ref(), note).await;
        self.drive(env).await
    }

    pub(super) async fn expire(&self, env: &str) -> Outcome {
        let Some(_guard) = self.lock_env(env).await else {
            return Ok(());
        };
        let Some(op) = self.active_operation(env) else {
            return Ok(());
        };
        let Phase::AwaitingApproval(shown) = &op.phase else {
            return Ok(());
        };
        let mut approval = shown.approval.clone();
        if approval.expire_if_due(self.now()) {
            self.record(Entry::Decided {
                op: op.header.id,
                step: op.step,
                plan: shown.plan.hash.clone(),
                state: approval.state,
                event: None,
            })?;
            self.drive(env).await?;
        }
        Ok(())
    }
}

/// The target weights of step `step` of an operation, from `current`.
fn target_of(
    kind: &OperationKind,
    step: usize,
    current: &Weights,
) -> Result<(Change, Weights), UserError> {
    Ok(match kind {
        OperationKind::Shift {
            percent, target, ..
        } => (Change::SetWeights, plan::shift(current, target, *percent)?),
        OperationKind::Failover { target, steps } => {
            let percent = steps
                .get(step.saturating_sub(1))
                .ok_or_else(|| UserError::Invalid(format!("no step {step}")))?;
            (Change::SetWeights, plan::shift(current, target, *percent)?)
        }
        OperationKind::Rollback { to, .. } => (
            Change::SetWeights,
            current
                .clusters()
                .map(|c| (c.to_owned(), to.get(c).unwrap_or(0)))
                .collect(),
        ),
        OperationKind::Add { cluster } => {
            let mut after = current.clone();
            after.set(cluster.clone(), 0);
            (
                Change::Create {
                    cluster: cluster.clone(),
                },
                after,
            )
        }
        OperationKind::Remove { cluster } => {
            let mut after = current.clone();
            after.remove(cluster);
            (
                Change::Delete {
                    cluster: cluster.clone(),
                },
                after,
            )
        }
    })
}

/// Routing objects whose version moved since the plan was made (someone
/// else wrote them, even if the weights look the same).
fn moved_objects(shown: &ShownPlan, snapshot: &Snapshot) -> Vec<String> {
    shown
        .versions
        .iter()
        .filter(|(cluster, version)| snapshot.version(cluster) != Some(version.as_str()))
        .map(|(cluster, _)| cluster.clone())
        .collect()
}

/// A step being finished after a restart must start from weights that are,
/// cluster by cluster, either the plan's before or after. Anything else
/// means someone else changed the cluster meanwhile: stop rather than guess.
fn check_between(plan: &Plan, snapshot: &Snapshot) -> Result<(), UserError> {
    for cluster in plan.changed_clusters() {
        let now = snapshot.clusters.get(cluster).and_then(|s| s.weight);
        if now != plan.before.get(cluster) && now != plan.after.get(cluster) {
            return Err(UserError::UnexpectedWeight {
                cluster: cluster.to_owned(),
                found: now,
                before: plan.before.get(cluster),
                after: plan.after.get(cluster),
            });
        }
    }
    Ok(())
}

/// A reply in the thread of the plan message `shown`.
pub(super) fn in_thread(
    op: &OperationState,
    shown: &ShownPlan,
    message: crate::chat::Message,
) -> Said {
    Said::Post {
        channel: op.header.channel.clone(),
        thread: Some(shown.message.clone()),
        message,
    }
}
