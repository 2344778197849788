//! Carrying a [`Plan`] out on the clusters.
//!
//! Writes go in two phases: every cluster whose weight rises first, then
//! every cluster whose weight falls. So the environment passes only through
//! states with at least as much weight as before or after — never all zero.
//! Within a phase the clusters are written concurrently.
//!
//! If any write fails, every cluster that no longer holds its weight from
//! before the plan is put back (again raising before lowering), and the
//! result says exactly which state each cluster is in.

use std::collections::BTreeMap;

use futures::future::join_all;

use crate::backend::{BackendError, RoutingBackend, Snapshot, Written};
use crate::config::EnvironmentConfig;
use crate::ids::ClusterId;
use crate::operation::{ClusterOutcome, ClusterResult, WriteFailure};
use crate::plan::{Change, Plan};

/// The result of applying a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub results: Vec<ClusterResult>,
    pub failure: Option<ApplyFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyFailure {
    pub errors: Vec<BackendError>,
    /// Every changed cluster is back at its weight from before the plan.
    pub restored: bool,
}

impl ApplyFailure {
    pub fn only_conflicts(&self) -> bool {
        self.errors.iter().all(BackendError::is_conflict)
    }

    /// What failed, as journaled.
    pub fn failure(&self) -> WriteFailure {
        WriteFailure::Errors(self.errors.clone())
    }
}

impl Applied {
    pub fn dry_run_clusters(&self) -> Vec<ClusterId> {
        self.results
            .iter()
            .filter(|r| r.outcome == ClusterOutcome::DryRun)
            .map(|r| r.cluster.clone())
            .collect()
    }
}

/// One write: a cluster from one weight (or none) to another.
#[derive(Clone, Debug)]
struct Move {
    cluster: ClusterId,
    from: Option<u8>,
    to: Option<u8>,
    version: Option<String>,
}

impl Move {
    fn raises(&self) -> bool {
        self.to.unwrap_or(0) > self.from.unwrap_or(0) || (self.from.is_none() && self.to.is_some())
    }
}

/// Applies `plan`, starting from `current` (normally the snapshot read right
/// before; after a crash, whatever the clusters hold, which may already be
/// partly the plan's target).
pub async fn apply(
    backend: &dyn RoutingBackend,
    env: &EnvironmentConfig,
    plan: &Plan,
    current: &Snapshot,
) -> Applied {
    if plan.change == Change::SetWeights {
        if let Some(result) = backend.write_all(env, &plan.before, &plan.after).await {
            return applied_atomically(plan, current, result);
        }
    }
    let mut held: BTreeMap<ClusterId, Option<u8>> = plan
        .changed_clusters()
        .map(|c| (c.clone(), current.weight(c)))
        .collect();
    let mut results: BTreeMap<ClusterId, ClusterResult> = BTreeMap::new();
    let moves: Vec<Move> = held
        .iter()
        .map(|(cluster, from)| Move {
            cluster: cluster.clone(),
            from: *from,
            to: plan.after.get(cluster),
            version: current.version(cluster).map(str::to_owned),
        })
        .collect();
    for (cluster, from) in &held {
        if *from == plan.after.get(cluster) {
            results.insert(
                cluster.clone(),
                result_of(cluster, *from, *from, ClusterOutcome::Unchanged),
            );
        }
    }
    let pending: Vec<Move> = moves.into_iter().filter(|m| m.from != m.to).collect();
    let (raises, lowers): (Vec<Move>, Vec<Move>) = pending.into_iter().partition(Move::raises);

    let mut errors = Vec::new();
    for phase in [raises, lowers] {
        for (mv, outcome) in run_phase(backend, env, &plan.change, &phase).await {
            match outcome {
                Ok(written) => {
                    held.insert(mv.cluster.clone(), mv.to);
                    let outcome = match written {
                        Written::Applied => ClusterOutcome::Applied,
                        Written::DryRun => ClusterOutcome::DryRun,
                    };
                    results.insert(
                        mv.cluster.clone(),
                        result_of(&mv.cluster, mv.from, mv.to, outcome),
                    );
                }
                Err(error) => {
                    let outcome = ClusterOutcome::Failed {
                        error: error.clone(),
                    };
                    results.insert(
                        mv.cluster.clone(),
                        result_of(&mv.cluster, mv.from, mv.to, outcome),
                    );
                    errors.push(error);
                }
            }
        }
        if !errors.is_empty() {
            break;
        }
    }
    if errors.is_empty() {
        return Applied {
            results: results.into_values().collect(),
            failure: None,
        };
    }
    let restored = restore(backend, env, plan, &held, &mut results).await;
    Applied {
        results: results.into_values().collect(),
        failure: Some(ApplyFailure { errors, restored }),
    }
}

/// Puts every cluster that does not hold its `before` weight back.
async fn restore(
    backend: &dyn RoutingBackend,
    env: &EnvironmentConfig,
    plan: &Plan,
    held: &BTreeMap<ClusterId, Option<u8>>,
    results: &mut BTreeMap<ClusterId, ClusterResult>,
) -> bool {
    let moves: Vec<Move> = held
        .iter()
        .filter(|(cluster, weight)| **weight != plan.before.get(cluster))
        .map(|(cluster, weight)| Move {
            cluster: cluster.clone(),
            from: *weight,
            to: plan.before.get(cluster),
            // We just wrote these ourselves; put them back unconditionally.
            version: None,
        })
        .collect();
    let (raises, lowers): (Vec<Move>, Vec<Move>) = moves.into_iter().partition(Move::raises);
    let undo = undo_change(&plan.change);
    let mut all_restored = true;
    for phase in [raises, lowers] {
        for (mv, outcome) in run_phase(backend, env, &undo, &phase).await {
            let before_step = mv.to;
            let during_step = mv.from;
            let entry = results.entry(mv.cluster.clone()).or_insert_with(|| {
                result_of(
                    &mv.cluster,
                    before_step,
                    during_step,
                    ClusterOutcome::Applied,
                )
            });
            entry.outcome = match outcome {
                Ok(_) => ClusterOutcome::Restored,
                Err(error) => {
                    all_restored = false;
                    ClusterOutcome::RestoreFailed { error }
                }
            };
        }
    }
    all_restored
}

/// The result of a write of all clusters at once: every changed cluster,
/// or (after the backend put back what landed) none of them.
fn applied_atomically(
    plan: &Plan,
    current: &Snapshot,
    result: Result<Written, BackendError>,
) -> Applied {
    let outcome = match &result {
        Ok(Written::Applied) => ClusterOutcome::Applied,
        Ok(Written::DryRun) => ClusterOutcome::DryRun,
        Err(error @ BackendError::Partial { .. }) => ClusterOutcome::RestoreFailed {
            error: error.clone(),
        },
        Err(error) => ClusterOutcome::Failed {
            error: error.clone(),
        },
    };
    let results = plan
        .changed_clusters()
        .map(|c| result_of(c, current.weight(c), plan.after.get(c), outcome.clone()))
        .collect();
    Applied {
        results,
        failure: result.err().map(|e| ApplyFailure {
            restored: !matches!(e, BackendError::Partial { .. }),
            errors: vec![e],
        }),
    }
}

fn undo_change(change: &Change) -> Change {
    match change {
        Change::SetWeights => Change::SetWeights,
        Change::Create { cluster } => Change::Delete {
            cluster: cluster.clone(),
        },
        Change::Delete { cluster } => Change::Create {
            cluster: cluster.clone(),
        },
    }
}

async fn run_phase<'m>(
    backend: &dyn RoutingBackend,
    env: &EnvironmentConfig,
    change: &Change,
    moves: &'m [Move],
) -> Vec<(&'m Move, Result<Written, BackendError>)> {
    let writes = moves.iter().map(|mv| async move {
        let outcome = write(backend, env, change, mv).await;
        (mv, outcome)
    });
    join_all(writes).await
}

async fn write(
    backend: &dyn RoutingBackend,
    env: &EnvironmentConfig,
    change: &Change,
    mv: &Move,
) -> Result<Written, BackendError> {
    let Some(cluster) = env.cluster(&mv.cluster) else {
        return Err(BackendError::Failed {
            cluster: mv.cluster.to_string(),
            reason: "not in the config".into(),
        });
    };
    let version = mv.version.as_deref();
    match (change, mv.from, mv.to) {
        (Change::Create { .. }, None, Some(0)) => backend.create(cluster).await,
        (Change::Create { .. }, None, Some(weight)) => {
            // Restoring a deleted object that had weight: create, then set.
            backend.create(cluster).await?;
            backend.set_weight(cluster, weight, None).await
        }
        (Change::Delete { .. }, Some(_), None) => backend.delete(cluster, version).await,
        (_, _, Some(weight)) => backend.set_weight(cluster, weight, version).await,
        (_, _, None) => Err(BackendError::Failed {
            cluster: mv.cluster.to_string(),
            reason: "a weight change cannot remove a routing object".into(),
        }),
    }
}

fn result_of(
    cluster: &ClusterId,
    from: Option<u8>,
    to: Option<u8>,
    outcome: ClusterOutcome,
) -> ClusterResult {
    ClusterResult {
        cluster: cluster.clone(),
        from,
        to,
        outcome,
    }
}
