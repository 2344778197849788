//! The commands that answer rather than plan: `status` (posted in the
//! channel), `history` and `drills` (to their author only), and `abort`,
//! which ends the running operation where it stands.

use super::{CommandRequest, Engine, Outcome, StatusReading};
use crate::command::drill::LISTED;
use crate::command::history::SHOWN;
use crate::ids::EnvId;
use crate::journal::ledger::Finished;
use crate::journal::Entry;
use crate::messages;
use crate::notice::{
    Destination, DrillLine, DrillsNotice, HistoryNotice, Notice, OperationLine, StatusNotice,
};
use crate::operation::{OperationOutcome, Phase, Refusal};

impl Engine {
    /// `abort`: a plan awaiting approval (or approved, not started) is
    /// withdrawn through the approval's own rules, then the operation ends;
    /// no weight changes.
    pub(super) async fn abort(&self, request: &CommandRequest, env: &EnvId) -> Outcome {
        let Some(_guard) = self.lock_env(env).await else {
            return Err(Refusal::NoSuchEnvironment { env: env.clone() }.into());
        };
        let Some(op) = self.active_operation(env) else {
            return Err(Refusal::NothingToAbort { env: env.clone() }.into());
        };
        let policy = self.config.approval_for(env);
        let requester = &op.header.requester;
        if let Some(refusal) = self
            .may_act_on(&request.user, op.header.id, requester, "abort", &policy)
            .await?
        {
            return Err(refusal.into());
        }
        if let Phase::AwaitingApproval(shown) | Phase::Approved(shown) = &op.phase {
            let mut approval = shown.approval.clone();
            approval.withdraw(&request.user, self.now())?;
            self.record(Entry::Decided {
                op: op.header.id,
                step: op.step,
                plan: shown.plan.hash.clone(),
                state: approval.state,
                event: None,
            })?;
        }
        let op = self.active_operation(env).unwrap_or(op);
        let by = request.user.clone();
        self.finish(&op, OperationOutcome::Aborted { by }).await?;
        Ok(())
    }

    /// `freeze` (with a reason) or `unfreeze` (without): approvers only; the
    /// channel is told either way.
    pub(super) async fn freeze(
        &self,
        request: &CommandRequest,
        env: &EnvId,
        reason: Option<&str>,
    ) -> Outcome {
        let Some(_guard) = self.lock_env(env).await else {
            return Err(Refusal::NoSuchEnvironment { env: env.clone() }.into());
        };
        let policy = self.config.approval_for(env);
        if !self.is_member(&request.user, &policy.approvers).await? {
            return Err(Refusal::MayNotFreeze {
                env: env.clone(),
                approvers: policy.approvers,
            }
            .into());
        }
        let frozen = self.with_ledger(|l| l.frozen.get(env.as_str()).cloned());
        let by = request.user.clone();
        let (entry, notice) = match (reason, frozen) {
            (Some(_), Some(freeze)) => {
                return Err(Refusal::AlreadyFrozen {
                    env: env.clone(),
                    freeze,
                }
                .into())
            }
            (None, None) => return Err(Refusal::NotFrozen { env: env.clone() }.into()),
            (Some(reason), None) => (
                Entry::Frozen {
                    env: env.clone(),
                    by: by.clone(),
                    reason: reason.to_owned(),
                },
                Notice::Frozen {
                    env: env.clone(),
                    by,
                    reason: reason.to_owned(),
                    break_glass: policy.break_glass().to_vec(),
                },
            ),
            (None, Some(freeze)) => (
                Entry::Unfrozen {
                    env: env.clone(),
                    by: by.clone(),
                },
                Notice::Unfrozen {
                    env: env.clone(),
                    by,
                    since: freeze.since,
                },
            ),
        };
        let to = Destination::Post {
            channel: request.channel.clone(),
            thread: None,
        };
        self.record_and_say(entry, vec![(to, notice)]).await?;
        Ok(())
    }

    /// `status`: the environment's reading (shared by a burst of
    /// commands, see [`super::status_reads`]) and the running operation.
    pub(super) async fn status(&self, request: &CommandRequest, env: &EnvId) -> Outcome {
        let (snapshot, observed) = self
            .status_reads
            .get(env, || self.read_for_status(env))
            .await?;
        let running = self
            .active_operation(env)
            .as_ref()
            .map(OperationLine::running);
        let frozen = self.with_ledger(|l| l.frozen.get(env.as_str()).cloned());
        let notice = Notice::Status(Box::new(StatusNotice {
            env: env.clone(),
            snapshot,
            observed,
            running,
            frozen,
        }));
        let message = messages::render(&notice, &self.config);
        self.chat.post(&request.channel, None, &message).await?;
        Ok(())
    }

    /// The weights as set and, when they can be read, as served.
    async fn read_for_status(&self, env: &EnvId) -> Result<StatusReading, Refusal> {
        let snapshot = self.read(env).await?;
        let observed = match self.config.environment(env) {
            Some(environment) => self
                .backend
                .observe(environment, &snapshot.weights())
                .await
                .ok(),
            None => None,
        };
        Ok((snapshot, observed))
    }

    pub(super) async fn history(&self, request: &CommandRequest, env: &EnvId) -> Outcome {
        let notice = self.with_ledger(|l| {
            let finished = l
                .finished
                .iter()
                .filter(|f| f.header.env == *env)
                .rev()
                .take(SHOWN)
                .map(|f| {
                    OperationLine::finished(&f.header, &f.approvals, &f.outcome, f.finished_at)
                })
                .collect();
            Notice::History(HistoryNotice {
                env: env.clone(),
                running: l.active.get(env).map(OperationLine::running),
                finished,
            })
        });
        let message = messages::render(&notice, &self.config);
        self.chat
            .post_ephemeral(&request.channel, &request.user, &message)
            .await?;
        Ok(())
    }

    /// `drills`: the environment's drills, from the journal, newest first.
    pub(super) async fn drills(&self, request: &CommandRequest, env: &EnvId) -> Outcome {
        let notice = self.with_ledger(|l| {
            let finished = l
                .drills_in(env)
                .rev()
                .take(LISTED)
                .map(drill_line)
                .collect();
            let running = l
                .active
                .get(env)
                .filter(|o| o.header.drill)
                .map(|o| DrillLine {
                    op: o.header.id,
                    started_at: o.header.started_at,
                    requester: o.header.requester.clone(),
                    command: o.header.typed().to_owned(),
                    ended: None,
                    total_ms: None,
                });
            Notice::Drills(DrillsNotice {
                env: env.clone(),
                running,
                finished,
            })
        });
        let message = messages::render(&notice, &self.config);
        self.chat
            .post_ephemeral(&request.channel, &request.user, &message)
            .await?;
        Ok(())
    }
}

fn drill_line(finished: &Finished) -> DrillLine {
    DrillLine {
        op: finished.header.id,
        started_at: finished.header.started_at,
        requester: finished.header.requester.clone(),
        command: finished.header.typed().to_owned(),
        ended: Some(finished.drill_end()),
        total_ms: finished
            .drill
            .as_ref()
            .and_then(|d| d.sums())
            .map(|(_, total)| total),
    }
}
