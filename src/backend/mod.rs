//! Where weights live. One trait, [`RoutingBackend`], for the in-memory
//! clusters of the sandbox and tests ([`memory`]) and the real modes
//! (`routing-weight`, `ingress-annotations`, `route53`) that talk to
//! Kubernetes and Route53.
//!
//! The engine never assumes a write worked: every method can fail per
//! cluster, and the engine restores what it changed when one does.

pub mod dns;
pub mod health;
pub mod kube;
pub mod memory;
pub mod route53;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::gates::DeploymentRef;
use crate::config::{ClusterConfig, EnvironmentConfig};
use crate::ids::ClusterId;
use crate::plan::Weights;

/// Every configured cluster's routing state in one environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub clusters: BTreeMap<ClusterId, ClusterState>,
}

/// One cluster's routing object, if it has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// `None`: the cluster has no routing object (not routed).
    pub weight: Option<u8>,
    /// Opaque version for optimistic concurrency (a resourceVersion).
    pub version: Option<String>,
}

impl Snapshot {
    /// Weights of the clusters that are routed.
    pub fn weights(&self) -> Weights {
        self.clusters
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.weight?)))
            .collect()
    }

    pub fn version(&self, cluster: &str) -> Option<&str> {
        self.clusters.get(cluster)?.version.as_deref()
    }

    /// A cluster's weight, `None` when it has no routing object.
    pub fn weight(&self, cluster: &str) -> Option<u8> {
        self.clusters.get(cluster)?.weight
    }
}

/// How far one cluster has carried the weight to what serves traffic
/// (Ingresses, Services, DNS records).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Convergence {
    pub cluster: ClusterId,
    pub converged: usize,
    pub total: usize,
    /// Objects that do not carry the weight yet.
    pub stragglers: Vec<String>,
}

impl Convergence {
    pub fn is_complete(&self) -> bool {
        self.converged == self.total
    }
}

/// Why a health probe says a cluster is not fit for more traffic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "probe", rename_all = "snake_case")]
pub enum HealthFailure {
    #[error("{url} answered {status} ({tries} tries)")]
    Status {
        url: String,
        status: u16,
        tries: u32,
    },
    #[error("{url} did not answer within {seconds} s ({tries} tries)")]
    Timeout {
        url: String,
        seconds: u64,
        tries: u32,
    },
    #[error("{url} is unreachable ({tries} tries)")]
    Unreachable { url: String, tries: u32 },
    /// A Route53 health check on the cluster's records is not healthy.
    #[error("{detail}")]
    Route53 { detail: String },
    /// What a stand-in for a real probe reports (in-memory clusters).
    #[error("{reason}")]
    Other { reason: String },
}

/// Why a cluster may not receive traffic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "gate", rename_all = "snake_case")]
pub enum GateFailure {
    #[error("context {context} answers as `{found}`, not `{expected}`")]
    IdentityMismatch {
        context: String,
        expected: String,
        found: String,
    },
    #[error("cannot verify identity through context {context}: {reason}")]
    IdentityUnknown { context: String, reason: String },
    #[error("health check failed: {failure}")]
    Unhealthy { failure: HealthFailure },
}

impl GateFailure {
    /// Only health failures can be overridden (break-glass); a cluster whose
    /// identity is wrong or unknown never gets traffic.
    pub fn is_health(&self) -> bool {
        matches!(self, GateFailure::Unhealthy { .. })
    }
}

/// A backend call that failed. `cluster` names the cluster (or `Route53`);
/// `reason` is what the API said, shortened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum BackendError {
    #[error("{cluster}: changed by someone else since it was read")]
    Conflict { cluster: String },
    #[error("{cluster}: has no routing object")]
    NotFound { cluster: String },
    #[error("{cluster}: {reason}")]
    Failed { cluster: String, reason: String },
    /// Part of a multi-part write landed and could not be put back.
    #[error("{cluster}: {reason}")]
    Partial { cluster: String, reason: String },
    /// More than one routing object names the cluster (RoutingWeights with
    /// the same `spec.clusterName`): Lunar's cluster-routing controller
    /// stops annotating in that state, so the bot touches none of them.
    #[error(
        "{cluster}: more than one RoutingWeight names it in spec.clusterName ({}); \
         Lunar's cluster-routing controller stops on this too: delete all but one",
        objects.join(", ")
    )]
    Duplicate {
        cluster: String,
        objects: Vec<String>,
    },
    /// `add` of a cluster that already has a routing object, under any name.
    #[error("{cluster}: already has a routing object ({object})")]
    Exists { cluster: String, object: String },
    /// Mode `route53`: external-dns's registry gives records to another
    /// owner; refused before any write.
    #[error("Route53: {0}")]
    NotOwned(route53::NotOwned),
}

impl BackendError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, BackendError::Conflict { .. })
    }
}

/// What [`RoutingBackend::delete`] leaves behind in a mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The routing object is gone.
    Deleted,
    /// The objects keep the set identifier at weight 0 (mode
    /// `ingress-annotations`): deleting both annotations would make
    /// external-dns want a plain record beside the other clusters' weighted
    /// ones, which Route53 refuses on every sync.
    KeptAtZero,
}

/// The outcome of a successful write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Applied,
    /// The routing object is in dry-run mode: accepted, but nothing serves it.
    DryRun,
}

#[async_trait]
pub trait RoutingBackend: Send + Sync {
    /// Reads every configured cluster's routing state.
    async fn read(&self, env: &EnvironmentConfig) -> Result<Snapshot, BackendError>;

    /// The cluster answers as the cluster the config names.
    async fn check_identity(&self, cluster: &ClusterConfig) -> Result<(), GateFailure>;

    /// The cluster's health gate passes.
    async fn check_health(&self, cluster: &ClusterConfig) -> Result<(), GateFailure>;

    /// What the bot needs in the cluster that its credentials may not do
    /// (SelfSubjectAccessReviews), as `verb resource …` lines. `None`: this
    /// backend has no permissions to ask about (in-memory clusters).
    async fn missing_permissions(&self, _cluster: &ClusterConfig) -> Option<Vec<String>> {
        None
    }

    /// Sets a routed cluster's weight; with `expected_version`, fails with
    /// [`BackendError::Conflict`] if the object changed since it was read.
    async fn set_weight(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError>;

    /// Creates the cluster's routing object at weight 0.
    async fn create(&self, cluster: &ClusterConfig) -> Result<Written, BackendError>;

    /// Creates the cluster's routing object at `weight` (`/failover add
    /// CLUSTER weight N`). Backends that can create at a weight in one write
    /// override this; the default creates at 0, then sets the weight.
    async fn create_at(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
    ) -> Result<Written, BackendError> {
        let created = self.create(cluster).await?;
        if weight == 0 {
            return Ok(created);
        }
        self.set_weight(cluster, weight, None).await
    }

    /// What [`delete`](Self::delete) leaves behind in this backend's mode,
    /// for the answer to `/failover remove`.
    fn removal(&self) -> Removal {
        Removal::Deleted
    }

    /// Deletes the cluster's routing object.
    async fn delete(
        &self,
        cluster: &ClusterConfig,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError>;

    /// Waits (bounded) until what serves traffic carries `expected`, and says
    /// how far each cluster got.
    async fn verify(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError>;

    /// How far each cluster carries `expected` right now, without waiting
    /// (for `status`).
    async fn observe(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError>;

    /// Sets every cluster's weight from `before` to `after` in as few
    /// atomic calls as the backend can (Route53 change batches). `None`:
    /// write cluster by cluster. On failure the backend puts back what
    /// landed; [`BackendError::Partial`] means it could not.
    async fn write_all(
        &self,
        _env: &EnvironmentConfig,
        _before: &Weights,
        _after: &Weights,
    ) -> Option<Result<Written, BackendError>> {
        None
    }

    /// Ready replicas of `deployment` in `cluster` (`status.readyReplicas`)
    /// for the capacity gate; `Ok(None)` when it has no such Deployment.
    async fn ready_replicas(
        &self,
        cluster: &ClusterConfig,
        _deployment: &DeploymentRef,
    ) -> Result<Option<u32>, BackendError> {
        Err(BackendError::Failed {
            cluster: cluster.name.to_string(),
            reason: "this backend cannot read Deployments".into(),
        })
    }
}
