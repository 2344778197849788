//! What a restart finds unfinished — messages a crash cut off, commands it
//! cut short, operations in any phase — and the expiry of approvals, which
//! is time passing rather than anyone acting.

use super::apply::apply;
use super::outbox::Outgoing;
use super::step::in_thread;
use super::{Engine, EngineError, Outcome};
use crate::backend::Snapshot;
use crate::ids::{ClusterId, EnvId};
use crate::journal::ledger::UnansweredCommand;
use crate::journal::Entry;
use crate::messages;
use crate::notice::{Destination, Notice, ResumeNotice, StepStopped};
use crate::operation::{
    ClusterOutcome, OperationState, Phase, PlanStatus, Refusal, ShownPlan, StepOutcome,
};
use crate::plan::{Change, Plan, Weights};

impl Engine {
    /// Continues every operation a previous run left unfinished: pending
    /// approvals stay pending (and keep their deadline), approved steps run,
    /// a step that was being applied is finished or restored.
    pub async fn resume(&self) {
        self.resend_unsaid().await;
        self.answer_cut_short_commands().await;
        let envs: Vec<EnvId> = self.with_ledger(|l| l.active.keys().cloned().collect());
        for env in envs {
            let outcome = self.resume_env(&env).await;
            self.log_failure(outcome, &env);
        }
    }

    /// What the last run journaled to say but Slack had not taken when it
    /// stopped, in the order it was said.
    async fn resend_unsaid(&self) {
        let unsaid = self.with_ledger(|l| l.unsaid.clone());
        for (id, unsaid) in unsaid {
            self.outbox
                .send(Outgoing {
                    id: Some(id),
                    to: unsaid.to,
                    notice: unsaid.notice,
                    resent: true,
                })
                .await;
        }
    }

    /// Commands a restart cut short between their acknowledgement and their
    /// answer: Slack will not deliver them again, so their authors are told
    /// (privately, as the answer would have been) to send them again.
    async fn answer_cut_short_commands(&self) {
        let unanswered: Vec<(String, UnansweredCommand)> =
            self.with_ledger(|l| l.unanswered.clone().into_iter().collect());
        for (event, command) in unanswered {
            let notice = Notice::CommandCutShort { text: command.text };
            let note = messages::render(&notice, &self.config);
            if let Err(error) = self
                .chat
                .post_ephemeral(&command.channel, &command.user, &note)
                .await
            {
                tracing::error!(%error, user = %command.user, "could not tell a user their command was cut short");
            }
            self.mark_answered(event);
        }
    }

    async fn resume_env(&self, env: &EnvId) -> Outcome {
        let Some(_guard) = self.lock_env(env).await else {
            return Ok(());
        };
        let Some(op) = self.active_operation(env) else {
            return Ok(());
        };
        let to = Destination::Post {
            channel: op.header.channel.clone(),
            thread: op.thread().cloned(),
        };
        self.say(to, Notice::Resuming(ResumeNotice::of(&op))).await;
        self.drive(env).await
    }

    /// A step was being applied when the bot stopped. Writes may or may not
    /// have happened, so the clusters are read: if each holds its before or
    /// after weight the step is finished (or restored, if that fails); if
    /// they cannot be read, or hold something else, the bot stops and says so.
    pub(super) async fn finish_interrupted_step(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
    ) -> Result<(), EngineError> {
        let stop = |refusal, now, put_back| Stop {
            refusal,
            now,
            put_back,
        };
        let snapshot = match self.read(&op.header.env).await {
            Ok(snapshot) => snapshot,
            Err(refusal) => {
                let stopped = stop(refusal, None, Vec::new());
                return self.stop_interrupted_step(op, shown, stopped).await;
            }
        };
        if let Err(refusal) = check_between(&shown.plan, &snapshot) {
            let stopped = stop(refusal, Some(snapshot.weights()), Vec::new());
            return self.stop_interrupted_step(op, shown, stopped).await;
        }
        if let Err(refusal) = self.may_finish(op, shown).await {
            let put_back = self.put_back(op, shown, &snapshot).await?;
            let now = match put_back.is_empty() {
                true => Some(snapshot.weights()),
                false => self.read(&op.header.env).await.ok().map(|s| s.weights()),
            };
            let stopped = stop(refusal, now, put_back);
            return self.stop_interrupted_step(op, shown, stopped).await;
        }
        self.run_step(op, shown, snapshot).await
    }

    /// An interrupted step is finished only if it began less than an
    /// approval's lifetime ago and its gates pass now: while the bot was
    /// down, people may have put weights back by hand because the target
    /// went sick, and the approval was for the situation it was given in.
    async fn may_finish(&self, op: &OperationState, shown: &ShownPlan) -> Result<(), Refusal> {
        let lifetime = self.config.approval.expires_after;
        if let Some(started_at) = op.step_started_at {
            let age = (self.now() - started_at).to_std().unwrap_or_default();
            if age > lifetime {
                return Err(Refusal::StepTooOld {
                    started_at,
                    lifetime_secs: lifetime.as_secs(),
                });
            }
        }
        self.gates(&shown.plan, op.header.kind.force()).await?;
        Ok(())
    }

    /// Puts back what the bot itself wrote of a step it will not finish:
    /// every cluster holding the plan's new weight goes back to its weight
    /// before the step. Only for weight changes, and only through clusters
    /// whose identity still checks out; otherwise nothing is written.
    async fn put_back(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        snapshot: &Snapshot,
    ) -> Result<Vec<ClusterId>, EngineError> {
        let plan = &shown.plan;
        let now = snapshot.weights();
        if plan.change != Change::SetWeights || now == plan.before {
            return Ok(Vec::new());
        }
        let Ok(back) = Plan::new(
            plan.scope.clone(),
            Change::SetWeights,
            now,
            plan.before.clone(),
        ) else {
            return Ok(Vec::new());
        };
        // Identity must hold; health does not matter to undoing.
        let (Ok(_), Ok(environment)) = (
            self.gates(&back, true).await,
            self.environment(&op.header.env),
        ) else {
            return Ok(Vec::new());
        };
        let applied = apply(self.backend.as_ref(), environment, &back, snapshot).await;
        self.record(Entry::Changed {
            op: op.header.id,
            step: op.step,
            results: applied.results.clone(),
        })?;
        Ok(applied
            .results
            .into_iter()
            .filter(|r| r.outcome == ClusterOutcome::Applied)
            .map(|r| r.cluster)
            .collect())
    }

    /// Ends an interrupted step without finishing it, and says why and where
    /// every cluster's weight stands; the operation then needs a new
    /// approval to go on.
    async fn stop_interrupted_step(
        &self,
        op: &OperationState,
        shown: &ShownPlan,
        stop: Stop,
    ) -> Result<(), EngineError> {
        let refusal = stop.refusal;
        let report = Notice::StepStopped(Box::new(StepStopped {
            env: op.header.env.clone(),
            step: op.step,
            total: op.total_steps(),
            plan: shown.plan.clone(),
            refusal: refusal.clone(),
            put_back: stop.put_back,
            now: stop.now,
        }));
        let said = vec![
            in_thread(op, shown, report),
            self.plan_update(op, shown, PlanStatus::Failed),
        ];
        let finished = Entry::StepFinished {
            op: op.header.id,
            step: op.step,
            outcome: StepOutcome::Interrupted { refusal },
            millis: 0,
            bake_until: None,
        };
        self.record_and_say(finished, said).await
    }

    /// Expires every approval whose deadline has passed. Call it
    /// periodically (production) or before each input (sandbox).
    pub(super) async fn expire_due(&self) {
        let now = self.clock.now();
        let due: Vec<EnvId> = self.with_ledger(|l| {
            l.active
                .iter()
                .filter(|(_, op)| match &op.phase {
                    Phase::AwaitingApproval(s) => s.approval.is_due(now),
                    _ => false,
                })
                .map(|(env, _)| env.clone())
                .collect()
        });
        for env in due {
            let outcome = self.expire(&env).await;
            self.log_failure(outcome, &env);
        }
    }

    async fn expire(&self, env: &EnvId) -> Outcome {
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

/// Why an interrupted step stopped, and where that left the clusters.
struct Stop {
    refusal: Refusal,
    now: Option<Weights>,
    put_back: Vec<ClusterId>,
}

/// A step being finished after a restart must start from weights that are,
/// cluster by cluster, either the plan's before or after. Anything else
/// means someone else changed the cluster meanwhile: stop rather than guess.
fn check_between(plan: &Plan, snapshot: &Snapshot) -> Result<(), Refusal> {
    for cluster in plan.changed_clusters() {
        let now = snapshot.weight(cluster);
        if now != plan.before.get(cluster) && now != plan.after.get(cluster) {
            return Err(Refusal::UnexpectedWeight {
                cluster: cluster.clone(),
                found: now,
                before: plan.before.get(cluster),
                after: plan.after.get(cluster),
            });
        }
    }
    Ok(())
}
