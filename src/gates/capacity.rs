//! The capacity gate: before a cluster's share of traffic rises, each listed
//! Deployment must have enough ready replicas there to take it.
//!
//! "Enough" is arithmetic on what the clusters report: the replicas ready in
//! the clusters that carry traffic now (`serving`) are what the traffic needs
//! today; a cluster whose new share is `w / W` needs `serving × w / W ×
//! headroom` of them, rounded up. Clusters at weight 0 do not count towards
//! `serving`: replicas that take no traffic say nothing about what traffic
//! needs. A serving cluster that cannot be read (often the very cluster being
//! failed away from) counts as 0 and is listed, so a failover away from a
//! dead cluster is not blocked by it.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::evaluate::clusters_for;
use crate::config::gates::{CapacityConfig, DeploymentRef, When};
use crate::config::ClusterConfig;
use crate::plan::Weights;

/// What a cluster said about one Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// `status.readyReplicas` (0 when absent).
    Ready(u32),
    /// No such Deployment in that cluster.
    Missing,
    /// The cluster could not be asked, or refused (the reason).
    Unreadable(String),
}

impl Readiness {
    /// Replicas that can serve: 0 unless [`Readiness::Ready`].
    pub fn ready(&self) -> u32 {
        match self {
            Readiness::Ready(n) => *n,
            Readiness::Missing | Readiness::Unreadable(_) => 0,
        }
    }
}

/// Readiness of each Deployment in each cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadyReplicas(BTreeMap<(DeploymentRef, String), Readiness>);

impl ReadyReplicas {
    pub fn insert(&mut self, deployment: DeploymentRef, cluster: &str, readiness: Readiness) {
        self.0.insert((deployment, cluster.to_owned()), readiness);
    }

    /// What was read; a pair never read is unreadable.
    pub fn get(&self, deployment: &DeploymentRef, cluster: &str) -> Readiness {
        self.0
            .get(&(deployment.clone(), cluster.to_owned()))
            .cloned()
            .unwrap_or_else(|| Readiness::Unreadable("not read".into()))
    }
}

/// A cluster's share of traffic: `weight / total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub weight: u32,
    pub total: u32,
}

impl Share {
    pub fn of(weights: &Weights, cluster: &str) -> Share {
        Share {
            weight: u32::from(weights.get(cluster).unwrap_or(0)),
            total: weights.total(),
        }
    }

    pub fn percent(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            f64::from(self.weight) * 100.0 / f64::from(self.total)
        }
    }
}

/// Replicas a cluster with `share` needs: ⌈serving × share × headroom⌉, in
/// integers (headroom to 1/1000) so that 10 × 50% × 1.2 is 6, not 7.
pub fn required_replicas(serving: u32, share: Share, headroom: f64) -> u32 {
    if share.total == 0 {
        return 0;
    }
    // Validated to 1..=10; the clamp only keeps the cast meaningful.
    let headroom_milli = (headroom.clamp(0.0, 1000.0) * 1000.0).round() as u64;
    let numerator = u64::from(serving) * u64::from(share.weight) * headroom_milli;
    let denominator = u64::from(share.total) * 1000;
    u32::try_from(numerator.div_ceil(denominator)).unwrap_or(u32::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityOutcome {
    Enough,
    TooFew,
    /// The target, or every serving cluster, could not be read.
    Unknown,
}

/// One Deployment in one cluster whose share rises.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityCheck {
    pub deployment: DeploymentRef,
    pub cluster: String,
    /// What the target cluster said.
    pub readiness: Readiness,
    /// Ready replicas in the clusters that carry traffic before the step.
    pub serving: u32,
    /// Serving clusters whose count could not be read (counted as 0).
    pub uncounted: Vec<String>,
    /// The target's share after the step.
    pub share: Share,
    pub headroom: f64,
    pub required: u32,
    pub outcome: CapacityOutcome,
}

/// A step, and what the clusters said, to check capacity for.
#[derive(Clone, Copy, Debug)]
pub struct CapacityPlan<'a> {
    pub config: &'a CapacityConfig,
    pub before: &'a Weights,
    pub after: &'a Weights,
    pub ready: &'a ReadyReplicas,
}

/// One check per listed Deployment and cluster whose share rises.
pub fn check_capacity(plan: CapacityPlan<'_>) -> Vec<CapacityCheck> {
    let targets = clusters_for(When::Before, plan.before, plan.after);
    let serving: Vec<&str> = plan
        .before
        .iter()
        .filter(|(_, weight)| *weight > 0)
        .map(|(cluster, _)| cluster.as_str())
        .collect();
    let mut checks = Vec::new();
    for deployment in &plan.config.deployments {
        for cluster in &targets {
            checks.push(check_one(plan, deployment, cluster, &serving));
        }
    }
    checks
}

fn check_one(
    plan: CapacityPlan<'_>,
    deployment: &DeploymentRef,
    cluster: &str,
    serving_clusters: &[&str],
) -> CapacityCheck {
    let mut serving = 0u32;
    let mut uncounted = Vec::new();
    for serving_cluster in serving_clusters {
        match plan.ready.get(deployment, serving_cluster) {
            Readiness::Unreadable(_) => uncounted.push((*serving_cluster).to_owned()),
            readiness => serving = serving.saturating_add(readiness.ready()),
        }
    }
    let share = Share::of(plan.after, cluster);
    let required = required_replicas(serving, share, plan.config.headroom);
    let readiness = plan.ready.get(deployment, cluster);
    let nothing_counted = !serving_clusters.is_empty() && uncounted.len() == serving_clusters.len();
    let outcome = match readiness {
        Readiness::Unreadable(_) => CapacityOutcome::Unknown,
        // Listed but absent where traffic is going: never enough, even if
        // nothing serves it today (then the list is wrong, which is worth
        // hearing before the step).
        Readiness::Missing => CapacityOutcome::TooFew,
        _ if nothing_counted => CapacityOutcome::Unknown,
        Readiness::Ready(n) if n >= required => CapacityOutcome::Enough,
        Readiness::Ready(_) => CapacityOutcome::TooFew,
    };
    CapacityCheck {
        deployment: deployment.clone(),
        cluster: cluster.to_owned(),
        readiness,
        serving,
        uncounted,
        share,
        headroom: plan.config.headroom,
        required,
        outcome,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("cluster {cluster} (context {context}): {reason}")]
    Connect {
        cluster: String,
        context: String,
        reason: String,
    },
}

/// Reads ready replicas of a Deployment in a cluster.
#[async_trait]
pub trait ReplicaReader: Send + Sync {
    async fn readiness(&self, cluster: &str, deployment: &DeploymentRef) -> Readiness;
}

/// Every Deployment in every cluster, concurrently.
pub async fn read_ready(
    reader: &dyn ReplicaReader,
    clusters: &[String],
    deployments: &[DeploymentRef],
) -> ReadyReplicas {
    let pairs: Vec<(&DeploymentRef, &String)> = deployments
        .iter()
        .flat_map(|d| clusters.iter().map(move |c| (d, c)))
        .collect();
    let answers = join_all(pairs.iter().map(|(d, c)| reader.readiness(c, d))).await;
    let mut ready = ReadyReplicas::default();
    for ((deployment, cluster), readiness) in pairs.into_iter().zip(answers) {
        ready.insert(deployment.clone(), cluster, readiness);
    }
    ready
}

/// The clusters a capacity check needs read: every cluster in either weights.
pub fn clusters_to_read(before: &Weights, after: &Weights) -> Vec<String> {
    let all: BTreeSet<&str> = before
        .clusters()
        .chain(after.clusters())
        .map(|c| c.as_str())
        .collect();
    all.into_iter().map(str::to_owned).collect()
}

/// Reads Deployments through the clusters' kube clients.
#[derive(Clone)]
pub struct KubeReplicaReader {
    clients: BTreeMap<String, kube::Client>,
}

impl KubeReplicaReader {
    /// From clients by cluster name.
    pub fn new(clients: BTreeMap<String, kube::Client>) -> Self {
        Self { clients }
    }

    /// A client per cluster from `$KUBECONFIG`, with the routing backend's
    /// timeouts and retries.
    pub async fn connect(clusters: &[ClusterConfig]) -> Result<Self, CapacityError> {
        let mut clients = BTreeMap::new();
        for cluster in clusters {
            let client = crate::backend::kube::client_for_context(&cluster.context)
                .await
                .map_err(|reason| CapacityError::Connect {
                    cluster: cluster.name.to_string(),
                    context: cluster.context.clone(),
                    reason,
                })?;
            clients.insert(cluster.name.to_string(), client);
        }
        Ok(Self { clients })
    }
}

#[async_trait]
impl ReplicaReader for KubeReplicaReader {
    async fn readiness(&self, cluster: &str, deployment: &DeploymentRef) -> Readiness {
        let Some(client) = self.clients.get(cluster) else {
            return Readiness::Unreadable("no client for this cluster".into());
        };
        let api: Api<Deployment> = Api::namespaced(client.clone(), &deployment.namespace);
        match api.get_opt(&deployment.name).await {
            Ok(Some(found)) => {
                let ready = found.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                Readiness::Ready(u32::try_from(ready).unwrap_or(0))
            }
            Ok(None) => Readiness::Missing,
            Err(error) => Readiness::Unreadable(describe(&error)),
        }
    }
}

/// A kube error in a few words: the API's message and code, or the
/// innermost transport error.
fn describe(error: &kube::Error) -> String {
    if let kube::Error::Api(status) = error {
        return format!("{} ({})", status.message, status.code);
    }
    let mut inner: &dyn std::error::Error = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string().chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, u8)]) -> Weights {
        pairs.iter().copied().collect()
    }

    fn api() -> DeploymentRef {
        DeploymentRef {
            namespace: "payments".into(),
            name: "api".into(),
        }
    }

    fn config(headroom: f64) -> CapacityConfig {
        CapacityConfig {
            deployments: vec![api()],
            headroom,
        }
    }

    fn ready(pairs: &[(&str, Readiness)]) -> ReadyReplicas {
        let mut ready = ReadyReplicas::default();
        for (cluster, readiness) in pairs {
            ready.insert(api(), cluster, readiness.clone());
        }
        ready
    }

    #[test]
    fn required_is_exact_in_integers() {
        let half = Share {
            weight: 50,
            total: 100,
        };
        assert_eq!(
            required_replicas(10, half, 1.2),
            6,
            "not 6.000000000000001 → 7"
        );
        assert_eq!(required_replicas(10, half, 1.0), 5);
        assert_eq!(required_replicas(9, half, 1.0), 5, "4.5 rounds up");
        let tenth = Share {
            weight: 10,
            total: 100,
        };
        assert_eq!(required_replicas(10, tenth, 1.0), 1);
        assert_eq!(required_replicas(0, tenth, 2.0), 0);
        let none = Share {
            weight: 0,
            total: 0,
        };
        assert_eq!(required_replicas(10, none, 1.0), 0);
    }

    #[test]
    fn a_target_with_too_few_ready_replicas_is_refused_with_the_numbers() {
        let before = weights(&[("blue", 100), ("green", 0)]);
        let after = weights(&[("blue", 50), ("green", 50)]);
        let ready = ready(&[
            ("blue", Readiness::Ready(10)),
            ("green", Readiness::Ready(5)),
        ]);
        let config = config(1.2);
        let checks = check_capacity(CapacityPlan {
            config: &config,
            before: &before,
            after: &after,
            ready: &ready,
        });
        assert_eq!(checks.len(), 1, "only green's share rises");
        let check = &checks[0];
        assert_eq!(check.cluster, "green");
        assert_eq!(check.serving, 10);
        assert_eq!(check.required, 6);
        assert_eq!(check.share.percent(), 50.0);
        assert_eq!(check.readiness, Readiness::Ready(5));
        assert_eq!(check.outcome, CapacityOutcome::TooFew);
    }

    #[test]
    fn idle_replicas_do_not_count_as_demand_and_a_missing_deployment_has_none() {
        let before = weights(&[("blue", 100), ("green", 0)]);
        let after = weights(&[("blue", 0), ("green", 100)]);
        let config = config(1.0);
        let check = |ready: &ReadyReplicas| {
            check_capacity(CapacityPlan {
                config: &config,
                before: &before,
                after: &after,
                ready,
            })
            .remove(0)
        };
        let both = ready(&[
            ("blue", Readiness::Ready(4)),
            ("green", Readiness::Ready(4)),
        ]);
        assert_eq!(
            check(&both).serving,
            4,
            "green's idle replicas are not demand"
        );
        assert_eq!(check(&both).outcome, CapacityOutcome::Enough);
        let missing = ready(&[("blue", Readiness::Ready(4)), ("green", Readiness::Missing)]);
        assert_eq!(check(&missing).outcome, CapacityOutcome::TooFew);
        let nowhere = ready(&[("blue", Readiness::Missing), ("green", Readiness::Missing)]);
        assert_eq!(check(&nowhere).required, 0);
        assert_eq!(check(&nowhere).outcome, CapacityOutcome::TooFew);
    }

    #[test]
    fn an_unreadable_serving_cluster_is_listed_and_an_unreadable_target_is_unknown() {
        let before = weights(&[("blue", 50), ("red", 50), ("green", 0)]);
        let after = weights(&[("blue", 0), ("red", 50), ("green", 50)]);
        let config = config(1.0);
        let run = |ready: &ReadyReplicas| {
            check_capacity(CapacityPlan {
                config: &config,
                before: &before,
                after: &after,
                ready,
            })
        };
        let blue_down = ready(&[
            ("blue", Readiness::Unreadable("connection refused".into())),
            ("red", Readiness::Ready(6)),
            ("green", Readiness::Ready(3)),
        ]);
        let checks = run(&blue_down);
        let green = checks.iter().find(|c| c.cluster == "green").unwrap();
        assert_eq!(green.uncounted, ["blue"]);
        assert_eq!((green.serving, green.required), (6, 3));
        assert_eq!(green.outcome, CapacityOutcome::Enough);
        let green_down = ready(&[
            ("blue", Readiness::Ready(6)),
            ("red", Readiness::Ready(6)),
            ("green", Readiness::Unreadable("timeout".into())),
        ]);
        let checks = run(&green_down);
        let green = checks.iter().find(|c| c.cluster == "green").unwrap();
        assert_eq!(green.outcome, CapacityOutcome::Unknown);
        let all_down = ready(&[("green", Readiness::Ready(6))]);
        let checks = run(&all_down);
        let green = checks.iter().find(|c| c.cluster == "green").unwrap();
        assert_eq!(green.outcome, CapacityOutcome::Unknown, "no basis at all");
    }
}
