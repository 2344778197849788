//! `/failover to CLUSTER [in ENV] [steps 10,50,100]`: a whole failover, one
//! approved step per entry, each moving CLUSTER to that share of traffic.

use serde::{Deserialize, Serialize};

use super::grammar::{Args, Keyword};
use super::hold::TimeLimit;
use super::{Command, CommandError, Missing, Request};
use crate::ids::ClusterId;
use crate::plan::{self, Percent, PlanError, Target, Weights};

pub const USAGE: &str = "`/failover to CLUSTER [in ENV] [steps 10,50,100] [for DURATION]`";
pub const SUMMARY: &str = "a whole failover, one approved step per entry";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct To {
    pub cluster: ClusterId,
    /// The steps given, or the config's `routing.default_steps`.
    pub steps: Vec<Percent>,
    /// `for 4h`: the weights go back after that long.
    pub time_limit: Option<TimeLimit>,
}

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let name = args.name(Missing::Cluster)?;
    let options = args.options(&[Keyword::Steps, Keyword::For, Keyword::Because])?;
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
        command: Command::To(To {
            cluster,
            steps,
            time_limit: options.time_limit,
        }),
    })
}

/// The operation `to` starts, as journaled (`kind: failover`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverOp {
    pub target: ClusterId,
    /// Only the steps that move traffic forward from where it started.
    pub steps: Vec<Percent>,
    /// A drill's `and back`: after `steps`, the target's shares on the
    /// way back (the others' weights in proportion to theirs before the
    /// drill), then one last step to the weights from before it. `None`:
    /// no way back (every `to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back: Option<Vec<Percent>>,
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
            back: None,
        })
    }
}

impl FailoverOp {
    /// The same failover, and back from `now` (the weights before it) in
    /// the same steps reversed: 10 → 50 → 100, then 50 → 10 → as before.
    pub fn and_back(self, now: &Weights) -> FailoverOp {
        let share = now.share_percent(&self.target);
        let back = self
            .steps
            .iter()
            .rev()
            .skip(1)
            .copied()
            .filter(|p| f64::from(p.get()) > share + 1e-9)
            .collect();
        FailoverOp {
            back: Some(back),
            ..self
        }
    }

    pub fn total_steps(&self) -> usize {
        let back = self.back.as_ref().map_or(0, |b| b.len() + 1);
        self.steps.len() + back
    }

    /// How many steps go forward (the rest, if any, go back).
    pub fn forward_steps(&self) -> usize {
        self.steps.len()
    }

    /// Step `step` (1-based): the target gets that step's share; on the
    /// way back, its share on the way back, and last the weights `start`
    /// from before the operation.
    pub fn step(&self, step: usize, now: &Weights, start: &Weights) -> Result<Target, PlanError> {
        let index = step.saturating_sub(1);
        if let Some(percent) = self.steps.get(index) {
            return Ok(Target::weights(plan::shift(now, &self.target, *percent)?));
        }
        let Some(back) = &self.back else {
            return Ok(Target::weights(plan::shift(
                now,
                &self.target,
                Percent::MAX,
            )?));
        };
        let towards = match back.get(index - self.steps.len()) {
            Some(percent) => plan::shift(start, &self.target, *percent)?,
            None => start.clone(),
        };
        // Over the clusters routed now: one routed since the drill began
        // keeps none of the traffic it never had.
        let after = now
            .clusters()
            .map(|c| (c.clone(), towards.get(c).unwrap_or(0)))
            .collect();
        Ok(Target::weights(after))
    }
}
