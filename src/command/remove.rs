//! `/failover remove CLUSTER [in ENV]`: deletes a cluster's routing object;
//! only at weight 0, so removing never moves traffic.

use serde::{Deserialize, Serialize};

use super::grammar::{Args, Keyword};
use super::{Command, CommandError, Missing, Request};
use crate::ids::ClusterId;
use crate::plan::{Change, PlanError, Target, Weights};

pub const USAGE: &str = "`/failover remove CLUSTER [in ENV]`";
pub const SUMMARY: &str = "delete a cluster's routing weight (only at weight 0)";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remove {
    pub cluster: ClusterId,
}

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let name = args.name(Missing::Cluster)?;
    let options = args.options(&[Keyword::Because])?;
    let scope = args.scope(options.env)?;
    let cluster = scope.cluster(name)?;
    Ok(Request {
        env: scope.env,
        reason: options.reason,
        command: Command::Remove(Remove { cluster }),
    })
}

/// The operation `remove` starts, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveOp {
    pub cluster: ClusterId,
}

impl Remove {
    pub fn operation(&self, now: &Weights) -> Result<RemoveOp, CommandError> {
        if !now.contains(&self.cluster) {
            return Err(PlanError::ClusterNotRouted {
                cluster: self.cluster.clone(),
            }
            .into());
        }
        Ok(RemoveOp {
            cluster: self.cluster.clone(),
        })
    }
}

impl RemoveOp {
    pub fn step(&self, now: &Weights) -> Result<Target, PlanError> {
        let mut after = now.clone();
        after.remove(&self.cluster);
        Ok(Target {
            change: Change::Delete {
                cluster: self.cluster.clone(),
            },
            after,
        })
    }
}
