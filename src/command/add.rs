//! `/failover add CLUSTER [weight N] [in ENV]`: creates a cluster's routing
//! object, at weight 0 (later steps give it traffic) or at the weight
//! given, as the seed's `add_routing_weight` task did.

use serde::{Deserialize, Serialize};

use super::grammar::{Args, Keyword};
use super::{Command, CommandError, Missing, Request};
use crate::ids::ClusterId;
use crate::plan::{Change, PlanError, Target, Weights};

pub const USAGE: &str = "`/failover add CLUSTER [weight N] [in ENV]`";
pub const SUMMARY: &str = "create a cluster's routing weight (at 0 unless a weight is given)";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Add {
    pub cluster: ClusterId,
    pub weight: u8,
}

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let name = args.name(Missing::Cluster)?;
    let options = args.options(&[Keyword::Weight, Keyword::Because])?;
    let scope = args.scope(options.env)?;
    let cluster = scope.cluster(name)?;
    let weight = options.weight.unwrap_or(0);
    Ok(Request {
        env: scope.env,
        reason: options.reason,
        command: Command::Add(Add { cluster, weight }),
    })
}

/// The operation `add` starts, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddOp {
    pub cluster: ClusterId,
    /// Its first weight (0 in journals from before `weight N`).
    #[serde(default)]
    pub weight: u8,
}

impl Add {
    pub fn operation(&self, now: &Weights) -> Result<AddOp, CommandError> {
        if now.contains(&self.cluster) {
            return Err(PlanError::AlreadyRouted {
                cluster: self.cluster.clone(),
            }
            .into());
        }
        Ok(AddOp {
            cluster: self.cluster.clone(),
            weight: self.weight,
        })
    }
}

impl AddOp {
    pub fn step(&self, now: &Weights) -> Result<Target, PlanError> {
        let mut after = now.clone();
        after.set(self.cluster.clone(), self.weight);
        Ok(Target {
            change: Change::Create {
                cluster: self.cluster.clone(),
            },
            after,
        })
    }
}
