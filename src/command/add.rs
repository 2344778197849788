//! `/failover add CLUSTER [in ENV]`: creates a cluster's routing object at
//! weight 0, so later steps can give it traffic.

use serde::{Deserialize, Serialize};

use super::grammar::Args;
use super::{Command, CommandError, Missing, Request};
use crate::ids::ClusterId;
use crate::plan::{Change, PlanError, Target, Weights};

pub const USAGE: &str = "`/failover add CLUSTER [in ENV]`";
pub const SUMMARY: &str = "create a cluster's routing weight at 0";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Add {
    pub cluster: ClusterId,
}

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let name = args.name(Missing::Cluster)?;
    let options = args.options(&[])?;
    let scope = args.scope(options.env)?;
    let cluster = scope.cluster(name)?;
    Ok(Request {
        env: scope.env,
        command: Command::Add(Add { cluster }),
    })
}

/// The operation `add` starts, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddOp {
    pub cluster: ClusterId,
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
        })
    }
}

impl AddOp {
    pub fn step(&self, now: &Weights) -> Result<Target, PlanError> {
        let mut after = now.clone();
        after.set(self.cluster.clone(), 0);
        Ok(Target {
            change: Change::Create {
                cluster: self.cluster.clone(),
            },
            after,
        })
    }
}
