//! In-memory clusters: the sandbox's backend, and the tests' stand-in for
//! real clusters when the subject is the engine. The knobs (identity, health,
//! edits by someone else) simulate what real clusters do.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    BackendError, ClusterState, Convergence, GateFailure, HealthFailure, RoutingBackend, Snapshot,
    Written,
};
use crate::config::gates::DeploymentRef;
use crate::config::{ClusterConfig, Config, EnvironmentConfig};
use crate::ids::ClusterId;
use crate::plan::Weights;

#[derive(Clone, Debug)]
struct MemCluster {
    /// Ready replicas by Deployment (`namespace/name`), for the capacity
    /// gate; a Deployment not listed does not exist.
    ready: BTreeMap<String, u32>,
    weight: Option<u8>,
    version: u64,
    identity: String,
    unhealthy: Option<String>,
}

/// Clusters keyed by name (cluster names are identities, so they are unique
/// across environments in any real setup).
#[derive(Debug, Default)]
pub struct MemoryBackend {
    clusters: Mutex<BTreeMap<ClusterId, MemCluster>>,
}

impl MemoryBackend {
    /// Every configured cluster, with the config's `weight` (no routing
    /// object when it has none), answering with its configured identity.
    pub fn from_config(config: &Config) -> Self {
        let backend = Self::default();
        for env in config.environments.values() {
            for cluster in &env.clusters {
                let weight = cluster.weight.and_then(|w| u8::try_from(w).ok());
                backend.insert(&cluster.name, weight);
            }
        }
        backend
    }

    pub fn insert(&self, name: &str, weight: Option<u8>) {
        self.lock().insert(
            name.into(),
            MemCluster {
                ready: BTreeMap::new(),
                weight,
                version: 1,
                identity: name.to_owned(),
                unhealthy: None,
            },
        );
    }

    /// Current weights of the named clusters that are routed.
    pub fn weights(&self) -> Weights {
        self.lock()
            .iter()
            .filter_map(|(name, c)| Some((name.clone(), c.weight?)))
            .collect()
    }

    pub fn weight(&self, name: &str) -> Option<u8> {
        self.lock().get(name).and_then(|c| c.weight)
    }

    /// Someone else changes a weight (bumps the version like Kubernetes).
    pub fn edit_weight(&self, name: &str, weight: Option<u8>) {
        self.with(name, |c| {
            c.weight = weight;
            c.version += 1;
        });
    }

    /// Makes the cluster answer as `identity` (a wrong kubeconfig context).
    pub fn set_identity(&self, name: &str, identity: &str) {
        self.with(name, |c| c.identity = identity.to_owned());
    }

    /// The cluster's Deployment `deployment` (`namespace/name`) has `ready`
    /// ready replicas.
    pub fn set_ready(&self, name: &str, deployment: &str, ready: u32) {
        self.with(name, |c| {
            c.ready.insert(deployment.to_owned(), ready);
        });
    }

    /// `Some(reason)` makes the health gate fail.
    pub fn set_unhealthy(&self, name: &str, reason: Option<&str>) {
        self.with(name, |c| c.unhealthy = reason.map(str::to_owned));
    }

    fn with(&self, name: &str, f: impl FnOnce(&mut MemCluster)) {
        if let Some(c) = self.lock().get_mut(name) {
            f(c);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ClusterId, MemCluster>> {
        // A panic elsewhere must not wedge the sandbox: the map stays usable.
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn existing<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut MemCluster) -> Result<R, BackendError>,
    ) -> Result<R, BackendError> {
        let mut clusters = self.lock();
        match clusters.get_mut(name) {
            Some(c) => f(c),
            None => Err(BackendError::Failed {
                cluster: name.to_owned(),
                reason: "no such cluster in memory".into(),
            }),
        }
    }
}

fn check_version(name: &str, c: &MemCluster, expected: Option<&str>) -> Result<(), BackendError> {
    match expected {
        Some(v) if v != c.version.to_string() => Err(BackendError::Conflict {
            cluster: name.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[async_trait]
impl RoutingBackend for MemoryBackend {
    async fn ready_replicas(
        &self,
        cluster: &ClusterConfig,
        deployment: &DeploymentRef,
    ) -> Result<Option<u32>, BackendError> {
        self.existing(&cluster.name, |c| {
            Ok(c.ready.get(&deployment.to_string()).copied())
        })
    }

    async fn read(&self, env: &EnvironmentConfig) -> Result<Snapshot, BackendError> {
        let mut snapshot = Snapshot::default();
        for cluster in &env.clusters {
            let state = self.existing(&cluster.name, |c| {
                Ok(ClusterState {
                    weight: c.weight,
                    version: Some(c.version.to_string()),
                })
            })?;
            snapshot.clusters.insert(cluster.name.clone(), state);
        }
        Ok(snapshot)
    }

    async fn check_identity(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        let clusters = self.lock();
        match clusters.get(&cluster.name) {
            Some(c) if c.identity != cluster.name => Err(GateFailure::IdentityMismatch {
                context: cluster.context.clone(),
                expected: cluster.name.to_string(),
                found: c.identity.clone(),
            }),
            Some(_) => Ok(()),
            None => Err(GateFailure::IdentityUnknown {
                context: cluster.context.clone(),
                reason: "no such cluster in memory".into(),
            }),
        }
    }

    async fn check_health(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        match self
            .lock()
            .get(&cluster.name)
            .and_then(|c| c.unhealthy.clone())
        {
            Some(reason) => Err(GateFailure::Unhealthy {
                failure: HealthFailure::Other { reason },
            }),
            None => Ok(()),
        }
    }

    async fn set_weight(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        let name = &cluster.name;
        self.existing(name, |c| {
            check_version(name, c, expected_version)?;
            if c.weight.is_none() {
                return Err(BackendError::NotFound {
                    cluster: name.to_string(),
                });
            }
            c.weight = Some(weight);
            c.version += 1;
            Ok(Written::Applied)
        })
    }

    async fn create(&self, cluster: &ClusterConfig) -> Result<Written, BackendError> {
        self.create_at(cluster, 0).await
    }

    async fn create_at(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
    ) -> Result<Written, BackendError> {
        let name = &cluster.name;
        self.existing(name, |c| {
            if c.weight.is_some() {
                return Err(BackendError::Exists {
                    cluster: name.to_string(),
                    object: "in memory".into(),
                });
            }
            c.weight = Some(weight);
            c.version += 1;
            Ok(Written::Applied)
        })
    }

    async fn delete(
        &self,
        cluster: &ClusterConfig,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        let name = &cluster.name;
        self.existing(name, |c| {
            check_version(name, c, expected_version)?;
            c.weight = None;
            c.version += 1;
            Ok(Written::Applied)
        })
    }

    async fn verify(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        self.observe(env, expected).await
    }

    async fn observe(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        // In memory the weight *is* what serves traffic: one object each.
        let clusters = self.lock();
        Ok(env
            .clusters
            .iter()
            .filter(|c| expected.contains(&c.name))
            .map(|c| {
                let actual = clusters.get(&c.name).and_then(|m| m.weight);
                let converged = actual == expected.get(&c.name);
                Convergence {
                    cluster: c.name.clone(),
                    converged: usize::from(converged),
                    total: 1,
                    stragglers: if converged {
                        vec![]
                    } else {
                        vec![format!("weight {actual:?}")]
                    },
                }
            })
            .collect())
    }
}
