//! DNS on top of the cluster backends.
//!
//! - [`DnsVerified`] wraps any backend: when an environment has a `route53`
//!   section, verification also waits until Route53 serves the planned
//!   weights (in `routing-weight` mode that proves external-dns caught up),
//!   and `status` shows what Route53 serves next to what is set.
//! - [`Route53Mode`] is the `route53` mode: weights live in Route53 itself,
//!   written in one atomic change batch per step; cluster identity is still
//!   checked through Kubernetes before any write.

use std::sync::Arc;

use async_trait::async_trait;

use super::kube::KubeBackend;
use super::route53::{RecordReport, Registry, Route53, Route53Error};
use super::{
    BackendError, ClusterState, Convergence, GateFailure, HealthFailure, Removal, RoutingBackend,
    Snapshot, Written,
};
use crate::config::gates::DeploymentRef;
use crate::config::{ClusterConfig, EnvironmentConfig};
use crate::plan::Weights;

/// Route53's verdict folded into per-cluster convergence: one "object" per
/// record name, a straggler per record that does not serve the weight yet.
fn per_cluster(expected: &Weights, reports: &[RecordReport]) -> Vec<Convergence> {
    expected
        .clusters()
        .map(|cluster| {
            let stragglers: Vec<String> = reports
                .iter()
                .filter(|r| {
                    r.stragglers
                        .iter()
                        .any(|s| s.starts_with(&format!("{cluster}:")))
                })
                .map(|r| format!("Route53 {}", r.record))
                .collect();
            Convergence {
                cluster: cluster.clone(),
                converged: reports.len() - stragglers.len(),
                total: reports.len(),
                stragglers,
            }
        })
        .collect()
}

/// Adds one cluster's Route53 convergence to its Kubernetes convergence.
fn merge(mut inner: Vec<Convergence>, dns: Vec<Convergence>) -> Vec<Convergence> {
    for extra in dns {
        match inner.iter_mut().find(|c| c.cluster == extra.cluster) {
            Some(c) => {
                c.converged += extra.converged;
                c.total += extra.total;
                c.stragglers.extend(extra.stragglers);
            }
            None => inner.push(extra),
        }
    }
    inner
}

/// How far Route53 serves `expected`, per cluster: now (`wait: None`) or
/// after waiting up to `wait` for it to catch up.
async fn route53_convergence(
    route53: &Route53,
    dns: &crate::config::Route53Config,
    expected: &Weights,
    wait: Option<std::time::Duration>,
) -> Result<Vec<Convergence>, BackendError> {
    let reports = match wait {
        Some(timeout) => {
            route53
                .wait_until(&dns.zone_id, &dns.records, expected, timeout)
                .await
        }
        None => route53.check(&dns.zone_id, &dns.records, expected).await,
    }
    .map_err(dns_error)?;
    Ok(per_cluster(expected, &reports))
}

/// Which Route53 zone and records each cluster's traffic goes through.
pub type ClusterZones =
    std::collections::BTreeMap<crate::ids::ClusterId, crate::config::Route53Config>;

pub fn cluster_zones(config: &crate::config::Config) -> ClusterZones {
    config
        .environments
        .values()
        .filter_map(|env| Some((env, env.route53.clone()?)))
        .flat_map(|(env, dns)| {
            env.clusters
                .iter()
                .map(move |c| (c.name.clone(), dns.clone()))
        })
        .collect()
}

/// The health gate from Route53's own health checks on the cluster's
/// records, when its environment has a `route53` section.
async fn route53_health(
    route53: &Route53,
    zones: &ClusterZones,
    cluster: &ClusterConfig,
) -> Result<(), GateFailure> {
    match zones.get(&cluster.name) {
        Some(dns) => route53
            .cluster_health(&dns.zone_id, &dns.records, &cluster.name)
            .await
            .map_err(|detail| GateFailure::Unhealthy {
                failure: HealthFailure::Route53 { detail },
            }),
        None => Ok(()),
    }
}

fn dns_error(error: impl std::fmt::Display) -> BackendError {
    BackendError::Failed {
        cluster: "Route53".into(),
        reason: error.to_string(),
    }
}

pub struct DnsVerified {
    inner: Arc<dyn RoutingBackend>,
    route53: Arc<Route53>,
    timeout: std::time::Duration,
    zones: ClusterZones,
}

impl DnsVerified {
    pub fn new(
        inner: Arc<dyn RoutingBackend>,
        route53: Arc<Route53>,
        timeout: std::time::Duration,
        zones: ClusterZones,
    ) -> Self {
        Self {
            inner,
            route53,
            timeout,
            zones,
        }
    }
}

#[async_trait]
impl RoutingBackend for DnsVerified {
    async fn read(&self, env: &EnvironmentConfig) -> Result<Snapshot, BackendError> {
        self.inner.read(env).await
    }
    async fn check_identity(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        self.inner.check_identity(cluster).await
    }
    async fn missing_permissions(&self, cluster: &ClusterConfig) -> Option<Vec<String>> {
        self.inner.missing_permissions(cluster).await
    }
    async fn check_health(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        self.inner.check_health(cluster).await?;
        route53_health(&self.route53, &self.zones, cluster).await
    }
    async fn set_weight(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        self.inner
            .set_weight(cluster, weight, expected_version)
            .await
    }
    async fn create(&self, cluster: &ClusterConfig) -> Result<Written, BackendError> {
        self.inner.create(cluster).await
    }
    async fn create_at(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
    ) -> Result<Written, BackendError> {
        self.inner.create_at(cluster, weight).await
    }
    fn removal(&self) -> Removal {
        self.inner.removal()
    }
    async fn ready_replicas(
        &self,
        cluster: &ClusterConfig,
        deployment: &DeploymentRef,
    ) -> Result<Option<u32>, BackendError> {
        self.inner.ready_replicas(cluster, deployment).await
    }
    async fn delete(
        &self,
        cluster: &ClusterConfig,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        self.inner.delete(cluster, expected_version).await
    }
    async fn write_all(
        &self,
        env: &EnvironmentConfig,
        before: &Weights,
        after: &Weights,
    ) -> Option<Result<Written, BackendError>> {
        self.inner.write_all(env, before, after).await
    }

    async fn verify(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        let inner = self.inner.verify(env, expected).await?;
        let Some(dns) = &env.route53 else {
            return Ok(inner);
        };
        let dns = route53_convergence(&self.route53, dns, expected, Some(self.timeout)).await?;
        Ok(merge(inner, dns))
    }

    async fn observe(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        let inner = self.inner.observe(env, expected).await?;
        let Some(dns) = &env.route53 else {
            return Ok(inner);
        };
        let dns = route53_convergence(&self.route53, dns, expected, None).await?;
        Ok(merge(inner, dns))
    }
}

/// Mode `route53`: the weighted records are the routing objects.
pub struct Route53Mode {
    identity: Arc<KubeBackend>,
    route53: Arc<Route53>,
    timeout: std::time::Duration,
    zones: ClusterZones,
}

impl Route53Mode {
    pub fn new(
        identity: Arc<KubeBackend>,
        route53: Arc<Route53>,
        timeout: std::time::Duration,
        zones: ClusterZones,
    ) -> Self {
        Self {
            identity,
            route53,
            timeout,
            zones,
        }
    }

    fn refuse(cluster: &str, what: &str) -> BackendError {
        BackendError::Failed {
            cluster: cluster.to_owned(),
            reason: format!(
                "in mode route53 the bot never {what} records; do it with your DNS tooling"
            ),
        }
    }
}

fn zone(env: &EnvironmentConfig) -> Result<&crate::config::Route53Config, BackendError> {
    env.route53
        .as_ref()
        .ok_or_else(|| dns_error("mode route53 needs a route53 section in every environment"))
}

#[async_trait]
impl RoutingBackend for Route53Mode {
    /// A cluster's weight is its weighted set's weight on the first record
    /// name (the others are verified to match after every step).
    async fn read(&self, env: &EnvironmentConfig) -> Result<Snapshot, BackendError> {
        let dns = zone(env)?;
        // Only the first name is read: the weight comes from it alone.
        let first_name = dns.records.get(..1).unwrap_or_default();
        let observed = self
            .route53
            .observe(&dns.zone_id, first_name)
            .await
            .map_err(dns_error)?;
        let first = observed
            .into_iter()
            .next()
            .map(|(_, w)| w)
            .unwrap_or_default();
        let mut snapshot = Snapshot::default();
        for cluster in &env.clusters {
            snapshot.clusters.insert(
                cluster.name.clone(),
                ClusterState {
                    weight: first.get(cluster.name.as_str()).copied(),
                    version: None,
                },
            );
        }
        Ok(snapshot)
    }
    async fn ready_replicas(
        &self,
        cluster: &ClusterConfig,
        deployment: &DeploymentRef,
    ) -> Result<Option<u32>, BackendError> {
        self.identity.ready_replicas(cluster, deployment).await
    }
    async fn check_identity(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        self.identity.check_identity(cluster).await
    }
    async fn missing_permissions(&self, cluster: &ClusterConfig) -> Option<Vec<String>> {
        self.identity.missing_permissions(cluster).await
    }
    async fn check_health(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        self.identity.check_health(cluster).await?;
        route53_health(&self.route53, &self.zones, cluster).await
    }
    async fn set_weight(
        &self,
        cluster: &ClusterConfig,
        _weight: u8,
        _expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        // Only reached when a batch is not possible; a cluster-by-cluster
        // write would break the one-atomic-batch-per-step guarantee.
        Err(Self::refuse(&cluster.name, "writes single"))
    }
    async fn create(&self, cluster: &ClusterConfig) -> Result<Written, BackendError> {
        Err(Self::refuse(&cluster.name, "creates"))
    }
    async fn delete(
        &self,
        cluster: &ClusterConfig,
        _: Option<&str>,
    ) -> Result<Written, BackendError> {
        Err(Self::refuse(&cluster.name, "deletes"))
    }
    /// One batch per zone when the step fits (several when it does not).
    /// If a batch fails, earlier batches of the step may have landed: every
    /// record is written back to `before`; only if that fails too is the
    /// step reported as partial.
    async fn write_all(
        &self,
        env: &EnvironmentConfig,
        before: &Weights,
        after: &Weights,
    ) -> Option<Result<Written, BackendError>> {
        let dns = match zone(env) {
            Ok(dns) => dns,
            Err(e) => return Some(Err(e)),
        };
        let registry = Registry::from(dns);
        let written = self
            .route53
            .write_weights_as(&registry, &dns.zone_id, &dns.records, after)
            .await;
        let error = match written {
            Ok(_) => return Some(Ok(Written::Applied)),
            // Every batch landed; verification reads what the records hold.
            Err(Route53Error::Pending(detail)) => {
                tracing::warn!(%detail, "Route53 took the step's changes but has not confirmed them INSYNC; verifying the records");
                return Some(Ok(Written::Applied));
            }
            // Refused before any write: nothing to put back.
            Err(Route53Error::NotOwned(not_owned)) => {
                return Some(Err(BackendError::NotOwned(not_owned)))
            }
            Err(error @ Route53Error::Invalid(_)) => return Some(Err(dns_error(error))),
            Err(error) => error,
        };
        let restored = self
            .route53
            .write_weights_as(&registry, &dns.zone_id, &dns.records, before)
            .await;
        Some(Err(match restored {
            Ok(_) | Err(Route53Error::Pending(_)) => {
                dns_error(format!("{error}; every record was put back"))
            }
            Err(restore) => BackendError::Partial {
                cluster: "Route53".into(),
                reason: format!("{error}; putting the records back failed too: {restore}"),
            },
        }))
    }

    async fn verify(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        route53_convergence(&self.route53, zone(env)?, expected, Some(self.timeout)).await
    }
    async fn observe(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        route53_convergence(&self.route53, zone(env)?, expected, None).await
    }
}

/// `failover-bot check` in mode `route53`: every configured cluster's
/// weighted records are the bot's by external-dns's registry.
pub async fn check_ownership(
    route53: &Route53,
    env: &EnvironmentConfig,
    dns: &crate::config::Route53Config,
) -> Vec<String> {
    let clusters: Vec<String> = env.clusters.iter().map(|c| c.name.to_string()).collect();
    let registry = Registry::from(dns);
    match route53
        .foreign_records(&registry, &dns.zone_id, &dns.records, &clusters)
        .await
    {
        Err(e) => vec![format!(
            "cannot read the registry records from Route53: {e}"
        )],
        Ok(foreign) if foreign.is_empty() => Vec::new(),
        Ok(foreign) => vec![super::route53::NotOwned {
            owner_id: registry.owner_id,
            records: foreign,
        }
        .to_string()],
    }
}

/// `failover-bot check`: the zone answers and every record has one weighted
/// set per configured cluster. Returns the problems found.
pub async fn check_records(
    route53: &Route53,
    env: &EnvironmentConfig,
    dns: &crate::config::Route53Config,
) -> Vec<String> {
    match route53.observe(&dns.zone_id, &dns.records).await {
        Err(e) => vec![format!("cannot read the zone from Route53: {e}")],
        Ok(observed) => observed
            .iter()
            .flat_map(|(record, sets)| {
                env.clusters
                    .iter()
                    .filter(|c| !sets.contains_key(c.name.as_str()))
                    .map(move |c| format!("{record} has no weighted set for {}", c.name))
            })
            .collect(),
    }
}
