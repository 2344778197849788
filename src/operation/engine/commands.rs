//! The slash commands: starting operations, abort, status, history.

use super::{CommandRequest, Engine, Outcome, Understood};
use crate::approval::ApprovalState;
use crate::backend::Snapshot;
use crate::command::{Action, Request};
use crate::messages::{self, StatusView, UserError};
use crate::operation::journal::Entry;
use crate::operation::{OperationHeader, OperationKind, OperationOutcome, Phase};
use crate::plan;

impl Engine {
    pub(super) async fn command(&self, request: &CommandRequest) -> Outcome {
        self.record(Entry::Command {
            user: request.user.clone(),
            channel: request.channel.clone(),
            text: request.text.clone(),
            event: request.event_id.clone(),
            answered: false,
        })?;
        let understood = self.understand(request)?;
        let Understood::Request(resolved) = understood else {
            let help = messages::help(&self.config);
            self.chat
                .post_ephemeral(&request.channel, &request.user, &help)
                .await?;
            return Ok(());
        };
        match &resolved.action {
            Action::Status => self.status(request, &resolved.env).await,
            Action::History => self.history(request, &resolved.env).await,
            Action::Abort => self.abort(request, &resolved.env).await,
            _ => self.start(request, &resolved).await,
        }
    }

    /// Starts a weight-changing operation: checks the environment is free,
    /// plans the first step (with gates) and shows it for approval.
    async fn start(&self, request: &CommandRequest, resolved: &Request) -> Outcome {
        let env = resolved.env.as_str();
        let Some(_guard) = self.lock_env(env).await else {
            return Err(UserError::Invalid(format!("no environment {env}")).into());
        };
        if let Some(op) = self.active_operation(env) {
            return Err(messages::busy(&op).into());
        }
        self.require_another_approver(&request.user)?;
        let snapshot = self.read(env).await?;
        let kind = self.kind_for(env, &resolved.action, &snapshot)?;
        let draft = OperationHeader {
            id: 0,
            env: env.to_owned(),
            channel: request.channel.clone(),
            requester: request.user.clone(),
            kind,
            command: request.text.clone(),
            start: snapshot.weights(),
            started_at: self.now(),
            event: request.event_id.clone(),
        };
        // Plan and gate before anything is recorded: a refusal here is a
        // plain answer to the requester, not an operation.
        let first = self.prepare(&draft, 1, &snapshot).await?;
        if first.plan.is_noop() {
            return Err(UserError::NoChange {
                env: env.to_owned(),
            }
            .into());
        }
        let header = self.start_operation(draft)?;
        let first = first.rescoped(header.id)?;
        self.propose(&header, 1, first).await?;
        Ok(())
    }

    /// Records `Started`, allocating the id under the journal lock so two
    /// environments starting at once never share an id.
    fn start_operation(
        &self,
        mut header: OperationHeader,
    ) -> Result<OperationHeader, super::EngineError> {
        let mut store = self.store.lock();
        header.id = store.ledger.next_op_id();
        let record = store.journal.append(
            self.now(),
            Entry::Started {
                header: header.clone(),
            },
        )?;
        store.ledger.apply(&record);
        Ok(header)
    }

    /// Refuses to start an operation nobody could approve.
    fn require_another_approver(&self, requester: &str) -> Result<(), UserError> {
        let approvers = &self.config.approval.approvers;
        if approvers.iter().any(|a| a != requester) {
            Ok(())
        } else {
            Err(UserError::NoOtherApprover)
        }
    }

    /// What the action becomes as an operation, given the current weights.
    fn kind_for(
        &self,
        env: &str,
        action: &Action,
        snapshot: &Snapshot,
    ) -> Result<OperationKind, UserError> {
        let current = snapshot.weights();
        let routed = |cluster: &str| {
            if current.contains(cluster) {
                Ok(())
            } else {
                Err(UserError::ClusterNotRouted {
                    cluster: cluster.to_owned(),
                })
            }
        };
        Ok(match action {
            Action::Shift { percent, to, force } => {
                let target = match to {
                    Some(target) => target.clone(),
                    None => plan::default_shift_target(&current)?,
                };
                routed(&target)?;
                OperationKind::Shift {
                    percent: *percent,
                    target,
                    force: *force,
                }
            }
            Action::To { cluster, steps } => {
                routed(cluster)?;
                // Steps at or below the share the target already has would
                // move traffic backwards; a failover only moves forward.
                let share = current.share_percent(cluster);
                let steps: Vec<_> = steps
                    .iter()
                    .copied()
                    .filter(|p| f64::from(p.get()) > share + 1e-9)
                    .collect();
                if steps.is_empty() {
                    return Err(UserError::AlreadyAtTarget {
                        cluster: cluster.clone(),
                    });
                }
                OperationKind::Failover {
                    target: cluster.clone(),
                    steps,
                }
            }
            Action::Rollback => {
                let last = self
                    .with_ledger(|l| l.last_weight_change(env).cloned())
                    .ok_or_else(|| UserError::NothingToRollBack {
                        env: env.to_owned(),
                    })?;
                OperationKind::Rollback {
                    of: last.header.id,
                    to: last.header.start,
                }
            }
            Action::Add { cluster } => {
                if current.contains(cluster) {
                    return Err(UserError::AlreadyRouted {
                        cluster: cluster.clone(),
                    });
                }
                OperationKind::Add {
                    cluster: cluster.clone(),
                }
            }
            Action::Remove { cluster } => {
                routed(cluster)?;
                OperationKind::Remove {
                    cluster: cluster.clone(),
                }
            }
            Action::Status | Action::History | Action::Abort => {
                return Err(UserError::Invalid("not an operation".into()))
            }
        })
    }

    /// `abort`: ends the running operation where it stands; no weight changes.
    async fn abort(&self, request: &CommandRequest, env: &str) -> Outcome {
        let Some(_guard) = self.lock_env(env).await else {
            return Ok(());
        };
        let Some(op) = self.active_operation(env) else {
            return Err(UserError::NothingToAbort {
                env: env.to_owned(),
            }
            .into());
        };
        if let Phase::AwaitingApproval(shown) | Phase::Approved(shown) = &op.phase {
            self.record(Entry::Decided {
                op: op.header.id,
                step: op.step,
                plan: shown.plan.hash.clone(),
                state: ApprovalState::Withdrawn {
                    by: request.user.clone(),
                    at: self.now(),
                },
                event: None,
            })?;
        }
        let op = self.active_operation(env).unwrap_or(op);
        self.finish(
            &op,
            OperationOutcome::Aborted {
                by: request.user.clone(),
            },
        )
        .await?;
        Ok(())
    }

    async fn status(&self, request: &CommandRequest, env: &str) -> Outcome {
        let snapshot = self.read(env).await?;
        let weights = snapshot.weights();
        let observed = match self.config.environment(env) {
            Some(environment) => self.backend.observe(environment, &weights).await.ok(),
            None => None,
        };
        let running = self.active_operation(env);
        let view = StatusView {
            env,
            config: &self.config,
            snapshot: &snapshot,
            observed: observed.as_deref(),
            running: running.as_ref(),
        };
        self.chat
            .post(&request.channel, None, &messages::status(&view))
            .await?;
        Ok(())
    }

    async fn history(&self, request: &CommandRequest, env: &str) -> Outcome {
        let (finished, running) = self.with_ledger(|l| {
            let finished: Vec<_> = l
                .finished
                .iter()
                .filter(|f| f.header.env == env)
                .rev()
                .take(10)
                .cloned()
                .collect();
            (finished, l.active.get(env).cloned())
        });
        let message = messages::history(env, &finished, running.as_ref());
        self.chat
            .post_ephemeral(&request.channel, &request.user, &message)
            .await?;
        Ok(())
    }
}
