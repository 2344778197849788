//! Who may do what in an environment, by its approval policy (the config's
//! `approval:` defaults with the environment's own keys on top): who may
//! start operations, use break-glass, freeze, abort and roll back. Lists
//! name users or user groups; a group's members are asked of Slack.

use super::{CommandRequest, Engine, EngineError, Failure};
use crate::command::{Command, Request};
use crate::config::ApprovalConfig;
use crate::ids::{OpId, UserId};
use crate::operation::{Freeze, Refusal};

impl Engine {
    /// Whether `user` is in `list`, directly or through a user group.
    pub(super) async fn is_member(
        &self,
        user: &UserId,
        list: &[String],
    ) -> Result<bool, EngineError> {
        if list.iter().any(|entry| user == entry) {
            return Ok(true);
        }
        for entry in list {
            if let Some(members) = self.groups.members(entry).await? {
                if members.iter().any(|m| user == m) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Checks that `request` may start the operation `work` asks for; the
    /// freeze it breaks, if it is break-glass during one.
    pub(super) async fn may_start(
        &self,
        request: &CommandRequest,
        work: &Request,
        policy: &ApprovalConfig,
    ) -> Result<Option<Freeze>, Failure> {
        let env = &work.env;
        let user = &request.user;
        if let Some(allowed) = &policy.requesters {
            if !self.is_member(user, allowed).await? {
                return Err(Refusal::NotRequester {
                    user: user.clone(),
                    env: env.clone(),
                    allowed: allowed.clone(),
                }
                .into());
            }
        }
        let force = matches!(&work.command, Command::Shift(shift) if shift.force);
        let may_break_glass = force && self.is_member(user, policy.break_glass()).await?;
        if force && !may_break_glass {
            return Err(Refusal::NotBreakGlass {
                env: env.clone(),
                allowed: policy.break_glass().to_vec(),
            }
            .into());
        }
        if policy.require_reason && work.reason.is_none() {
            return Err(Refusal::ReasonRequired { env: env.clone() }.into());
        }
        if let Command::Rollback = &work.command {
            if let Some(refusal) = self.may_roll_back(user, env, policy).await? {
                return Err(refusal.into());
            }
        }
        let frozen = self.with_ledger(|l| l.frozen.get(env.as_str()).cloned());
        match frozen {
            Some(freeze) if !may_break_glass => Err(Refusal::Frozen {
                env: env.clone(),
                freeze,
                break_glass: policy.break_glass().to_vec(),
            }
            .into()),
            frozen => Ok(frozen),
        }
    }

    /// `rollback` is for whoever asked for the operation it undoes, or an
    /// approver.
    async fn may_roll_back(
        &self,
        user: &UserId,
        env: &str,
        policy: &ApprovalConfig,
    ) -> Result<Option<Refusal>, EngineError> {
        let last = self.with_ledger(|l| {
            l.last_weight_change(env)
                .map(|f| (f.header.id, f.header.requester.clone()))
        });
        let Some((op, requester)) = last else {
            return Ok(None);
        };
        self.may_act_on(user, op, &requester, "roll back", policy)
            .await
    }

    /// Whoever asked for operation `op`, or an approver, may `action` it.
    pub(super) async fn may_act_on(
        &self,
        user: &UserId,
        op: OpId,
        requester: &UserId,
        action: &str,
        policy: &ApprovalConfig,
    ) -> Result<Option<Refusal>, EngineError> {
        if user == requester || self.is_member(user, &policy.approvers).await? {
            return Ok(None);
        }
        Ok(Some(Refusal::NotYours {
            op,
            requester: requester.clone(),
            action: action.to_owned(),
            approvers: policy.approvers.clone(),
        }))
    }
}
