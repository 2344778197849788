//! `/failover rollback [in ENV]`: one step back to the weights from before
//! the newest operation that changed weights.

use serde::{Deserialize, Serialize};

use super::grammar::{Args, Keyword};
use super::{Command, CommandError, Request, Situation};
use crate::ids::OpId;
use crate::plan::{PlanError, Target, Weights};

pub const USAGE: &str = "`/failover rollback [in ENV]`";
pub const SUMMARY: &str = "one step back to the weights from before the last operation";

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let options = args.options(&[Keyword::Because])?;
    let scope = args.scope(options.env)?;
    Ok(Request {
        env: scope.env,
        reason: options.reason,
        command: Command::Rollback,
    })
}

/// The operation `rollback` starts, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackOp {
    /// The operation rolled back.
    pub of: OpId,
    /// Its weights before it started.
    pub to: Weights,
}

/// The operation, from the newest weight change.
pub fn operation(situation: &Situation<'_>) -> Result<RollbackOp, CommandError> {
    let (of, before) = situation
        .last_change
        .ok_or_else(|| CommandError::NothingToRollBack {
            env: situation.env.clone(),
        })?;
    Ok(RollbackOp {
        of,
        to: before.clone(),
    })
}

impl RollbackOp {
    /// Every routed cluster back to its weight then (0 if it had none).
    pub fn step(&self, now: &Weights) -> Result<Target, PlanError> {
        let after = now
            .clusters()
            .map(|c| (c.clone(), self.to.get(c).unwrap_or(0)))
            .collect();
        Ok(Target::weights(after))
    }
}
