//! `/failover to CLUSTER [in ENV] [steps 10,50,100]`: a whole failover, one
//! approved step per entry, each moving CLUSTER to that share of traffic.

use serde::{Deserialize, Serialize};

use super::grammar::{Args, Keyword};
use super::{Command, CommandError, Missing, Request};
use crate::ids::ClusterId;
use crate::plan::{self, Percent, PlanError, Target, Weights};

pub const USAGE: &str = "`/failover to CLUSTER [in ENV] [steps 10,50,100]`";
pub const SUMMARY: &str = "a whole failover, one approved step per entry";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct To {
    pub cluster: ClusterId,
    /// The steps given, or the config's `routing.default_steps`.
    pub steps: Vec<Percent>,
}

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let name = args.name(Missing::Cluster)?;
    let options = args.options(&[Keyword::Steps, Keyword::Because])?;
    let scope = args.scope(options.env)?;
    let cluster = scope.cluster(name)?;
    let steps = match options.steps {
        Some(steps) => steps,
        // Validated when the config was loaded.
        None => args.default_steps(),
    };
    Ok(Request {
        env: scope.env,
        reason: options.reason,
        command: Command::To(To { cluster, steps }),
    })
}

/// The operation `to` starts, as journaled (`kind: failover`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverOp {
    pub target: ClusterId,
    /// Only the steps that move traffic forward from where it started.
    pub steps: Vec<Percent>,
}

impl To {
    /// The operation, given the weights now: steps at or below the share
    /// the target already has would move traffic backwards, and a failover
    /// only moves forward, so they are dropped.
    pub fn operation(&self, now: &Weights) -> Result<FailoverOp, CommandError> {
        if !now.contains(&self.cluster) {
            return Err(PlanError::ClusterNotRouted {
                cluster: self.cluster.clone(),
            }
            .into());
        }
        let share = now.share_percent(&self.cluster);
        let steps: Vec<Percent> = self
            .steps
            .iter()
            .copied()
            .filter(|p| f64::from(p.get()) > share + 1e-9)
            .collect();
        if steps.is_empty() {
            return Err(CommandError::AlreadyAtTarget {
                cluster: self.cluster.clone(),
            });
        }
        Ok(FailoverOp {
            target: self.cluster.clone(),
            steps,
        })
    }
}

impl FailoverOp {
    pub fn total_steps(&self) -> usize {
        self.steps.len()
    }

    /// Step `step` (1-based): the target gets that step's share.
    pub fn step(&self, step: usize, now: &Weights) -> Result<Target, PlanError> {
        let percent = self
            .steps
            .get(step.saturating_sub(1))
            .copied()
            .unwrap_or(Percent::MAX);
        Ok(Target::weights(plan::shift(now, &self.target, percent)?))
    }
}
