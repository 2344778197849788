//! `/failover set blue=100 green=100 [in ENV]`: raw weights (0–255) for
//! several clusters in one step, as the seed's `adjust_routing_weight` task
//! set them. Clusters not named keep their weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::grammar::{Args, Keyword};
use super::{Command, CommandError, Missing, Request};
use crate::ids::ClusterId;
use crate::plan::{PlanError, Target, Weights};

pub const USAGE: &str =
    "`/failover set CLUSTER=WEIGHT… [in ENV]`, e.g. `/failover set blue=100 green=100`";
pub const SUMMARY: &str =
    "one step that sets raw weights (0–255) of the clusters named; the others keep theirs";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub weights: BTreeMap<ClusterId, u8>,
}

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let pairs = args.assignments()?;
    if pairs.is_empty() {
        return Err(CommandError::MissingArgument {
            verb: args.verb,
            what: Missing::Weights,
        });
    }
    let options = args.options(&[Keyword::Because])?;
    let scope = args.scope(options.env)?;
    let mut weights = BTreeMap::new();
    for (name, value) in pairs {
        let weight = parse_weight(value).ok_or_else(|| CommandError::BadWeight {
            given: format!("{name}={value}"),
        })?;
        let cluster = scope.cluster(name)?;
        if weights.insert(cluster.clone(), weight).is_some() {
            return Err(CommandError::RepeatedCluster { cluster });
        }
    }
    Ok(Request {
        env: scope.env,
        reason: options.reason,
        command: Command::Set(Set { weights }),
    })
}

fn parse_weight(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 3 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The operation `set` starts, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetOp {
    pub weights: BTreeMap<ClusterId, u8>,
}

impl Set {
    pub fn operation(&self, now: &Weights) -> Result<SetOp, CommandError> {
        if let Some(cluster) = self.weights.keys().find(|c| !now.contains(c)) {
            return Err(PlanError::ClusterNotRouted {
                cluster: cluster.clone(),
            }
            .into());
        }
        Ok(SetOp {
            weights: self.weights.clone(),
        })
    }
}

impl SetOp {
    pub fn step(&self, now: &Weights) -> Result<Target, PlanError> {
        let mut after = now.clone();
        for (cluster, weight) in &self.weights {
            if !now.contains(cluster) {
                return Err(PlanError::ClusterNotRouted {
                    cluster: cluster.clone(),
                });
            }
            after.set(cluster.clone(), *weight);
        }
        Ok(Target::weights(after))
    }
}
