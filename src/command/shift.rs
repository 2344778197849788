//! `/failover shift N [to CLUSTER] [in ENV]`: one step in which CLUSTER gets
//! N% of the traffic and the other clusters share the rest in proportion to
//! their weights. `shift!` is the break-glass form: a failing health gate
//! is shown on the plan instead of refusing it.

use serde::{Deserialize, Serialize};

use super::grammar::{Args, Keyword};
use super::{Command, CommandError, Request};
use crate::ids::ClusterId;
use crate::plan::{self, Percent, PlanError, Target, Weights};

pub const USAGE: &str =
    "`/failover shift PERCENT [to CLUSTER] [in ENV]`, e.g. `/failover shift 50 to green`";
pub const SUMMARY: &str = "one step: CLUSTER gets PERCENT, the rest keep their proportions (without `to`: the cluster with the smaller share)";

/// `shift` as asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shift {
    pub percent: Percent,
    /// Without `to`, the cluster with the smallest weight when it starts.
    pub to: Option<ClusterId>,
    /// `shift!`: push through a failing health gate (break-glass).
    pub force: bool,
}

pub(super) fn parse(args: &mut Args<'_>, force: bool) -> Result<Request, CommandError> {
    let percent = args.percent()?;
    let options = args.options(&[Keyword::To, Keyword::Because])?;
    let scope = args.scope(options.env)?;
    let to = options.to.map(|name| scope.cluster(name)).transpose()?;
    Ok(Request {
        env: scope.env,
        reason: options.reason,
        command: Command::Shift(Shift { percent, to, force }),
    })
}

/// The operation `shift` starts, as journaled: its target is fixed when it
/// starts, so a restart never picks another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftOp {
    pub percent: Percent,
    pub target: ClusterId,
    /// Break-glass: health-gate failures are shown, not enforced.
    #[serde(default)]
    pub force: bool,
}

impl Shift {
    /// The operation, given the weights now.
    pub fn operation(&self, now: &Weights) -> Result<ShiftOp, CommandError> {
        let target = match &self.to {
            Some(target) => target.clone(),
            None => plan::default_shift_target(now)?,
        };
        if !now.contains(&target) {
            return Err(PlanError::ClusterNotRouted { cluster: target }.into());
        }
        Ok(ShiftOp {
            percent: self.percent,
            target,
            force: self.force,
        })
    }
}

impl ShiftOp {
    /// The one step: the target gets its percentage of the weights now.
    pub fn step(&self, now: &Weights) -> Result<Target, PlanError> {
        Ok(Target::weights(plan::shift(
            now,
            &self.target,
            self.percent,
        )?))
    }
}
