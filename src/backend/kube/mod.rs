//! Kubernetes: one client per configured cluster (from its kubeconfig
//! context, or in-cluster config for the context `in-cluster`), with short,
//! explicit timeouts — a chat bot must answer, not hang.
//!
//! Modes:
//! - `routing-weight`: the cluster's `RoutingWeight` — the one in the
//!   configured namespace whose `spec.clusterName` is the cluster, as Lunar's
//!   controller finds it (the object's name is free; two for one cluster is
//!   refused) — is read and replaced with the resourceVersion seen when
//!   planning (a conflict re-plans). Lunar's controller carries it to
//!   the controlled Ingresses/Services; [`verify`](RoutingBackend::verify)
//!   watches them until they do.
//! - `ingress-annotations`: the bot writes the same annotations onto every
//!   Ingress and Service annotated `routing.lunar.tech/controlled: "true"`,
//!   always both together; `remove` keeps them at weight 0.
//!
//! Before any write the cluster's `cluster-identity` ConfigMap must name the
//! cluster the config expects.

pub mod crd;
mod objects;
mod retry;
pub mod tls;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use self::crd::{RoutingWeight, RoutingWeightSpec};
use self::objects::Controlled;
use self::tls::TlsVerification;
use super::health::HealthProbe;
use super::{
    BackendError, ClusterState, Convergence, GateFailure, Removal, RoutingBackend, Snapshot,
    Written,
};
use crate::config::gates::DeploymentRef;
use crate::config::{ClusterConfig, Config, EnvironmentConfig, RoutingMode};
use crate::plan::Weights;

/// The context name that means "the cluster the bot runs in".
pub const IN_CLUSTER: &str = "in-cluster";
pub const IDENTITY_CONFIGMAP: &str = "cluster-identity";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub struct KubeSettings {
    pub mode: RoutingMode,
    pub namespace: String,
    pub prefix: String,
    pub verify_timeout: Duration,
}

impl KubeSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            mode: config.routing.mode,
            namespace: config.routing.namespace.clone(),
            prefix: config.routing.annotation_prefix.clone(),
            verify_timeout: config.routing.verify_timeout,
        }
    }
}

pub struct KubeBackend {
    settings: KubeSettings,
    clients: BTreeMap<String, Client>,
    health: HealthProbe,
}

fn failed(cluster: &str, reason: impl std::fmt::Display) -> BackendError {
    BackendError::Failed {
        cluster: cluster.to_owned(),
        reason: reason.to_string(),
    }
}

/// A short description of a kube error for the channel.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => with_causes(other).chars().take(200).collect(),
    }
}

/// An error and its sources, outermost first: a transport error's own text
/// ("client error (SendRequest)") says nothing; its cause ("connection
/// reset", "timed out") is what the engineer in the channel needs.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        // Wrappers often repeat their source's text; say each thing once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

impl KubeBackend {
    /// A client for every configured cluster. `kubeconfig`: a path, or
    /// `None` for `$KUBECONFIG` / `~/.kube/config`. A context that skips
    /// TLS verification is refused ([`tls`]).
    pub async fn connect(
        config: &Config,
        kubeconfig: Option<&Path>,
    ) -> Result<KubeBackend, String> {
        Self::connect_with(config, kubeconfig, TlsVerification::Required).await
    }

    /// [`KubeBackend::connect`], with `tls` saying whether a context may
    /// skip verifying the cluster's certificate.
    pub async fn connect_with(
        config: &Config,
        kubeconfig: Option<&Path>,
        tls: TlsVerification,
    ) -> Result<KubeBackend, String> {
        let needs_file = config
            .environments
            .values()
            .flat_map(|e| &e.clusters)
            .any(|c| c.context != IN_CLUSTER);
        let file = if needs_file {
            let read = match kubeconfig {
                Some(path) => Kubeconfig::read_from(path),
                None => Kubeconfig::read(),
            };
            Some(read.map_err(|e| format!("cannot read the kubeconfig: {e}"))?)
        } else {
            None
        };
        let mut clients = BTreeMap::new();
        for cluster in config.environments.values().flat_map(|e| &e.clusters) {
            let client = client_for(&cluster.context, file.as_ref(), tls)
                .await
                .map_err(|e| {
                    format!(
                        "cluster {} (context {}): {e}",
                        cluster.name, cluster.context
                    )
                })?;
            clients.insert(cluster.name.to_string(), client);
        }
        Ok(KubeBackend {
            settings: KubeSettings::from_config(config),
            clients,
            health: HealthProbe::new(),
        })
    }

    fn client(&self, cluster: &str) -> Result<&Client, BackendError> {
        self.clients
            .get(cluster)
            .ok_or_else(|| failed(cluster, "no client for this cluster"))
    }

    fn weights_api(&self, cluster: &str) -> Result<Api<RoutingWeight>, BackendError> {
        Ok(Api::namespaced(
            self.client(cluster)?.clone(),
            &self.settings.namespace,
        ))
    }

    fn controlled(&self, cluster: &str) -> Result<Controlled, BackendError> {
        Ok(Controlled::new(
            self.client(cluster)?.clone(),
            &self.settings.prefix,
        ))
    }

    /// The cluster's RoutingWeight, found as Lunar's cluster-routing
    /// controller finds it: by `spec.clusterName` among those in the
    /// namespace (the object's name is free). More than one is refused,
    /// naming them: the controller stops annotating in that state.
    async fn find_routing_weight(
        &self,
        cluster: &str,
    ) -> Result<Option<RoutingWeight>, BackendError> {
        let listed = self
            .weights_api(cluster)?
            .list(&ListParams::default())
            .await
            .map_err(|e| failed(cluster, describe(&e)))?;
        let mut mine: Vec<RoutingWeight> = listed
            .items
            .into_iter()
            .filter(|rw| rw.spec.cluster_name == cluster)
            .collect();
        if mine.len() > 1 {
            let mut objects: Vec<String> = mine
                .iter()
                .map(|rw| rw.metadata.name.clone().unwrap_or_default())
                .collect();
            objects.sort();
            return Err(BackendError::Duplicate {
                cluster: cluster.to_owned(),
                objects,
            });
        }
        Ok(mine.pop())
    }

    async fn read_cluster(&self, cluster: &ClusterConfig) -> Result<ClusterState, BackendError> {
        let name = &cluster.name;
        match self.settings.mode {
            RoutingMode::RoutingWeight => {
                let Some(rw) = self.find_routing_weight(name).await? else {
                    return Ok(ClusterState {
                        weight: None,
                        version: None,
                    });
                };
                let weight = rw.spec.weight(&self.settings.prefix).ok_or_else(|| {
                    failed(
                        name,
                        "its RoutingWeight has no valid weight annotation (0–255)",
                    )
                })?;
                Ok(ClusterState {
                    weight: Some(weight),
                    version: rw.metadata.resource_version,
                })
            }
            RoutingMode::IngressAnnotations => {
                let objects = self.controlled(name)?.list(name).await?;
                Ok(ClusterState {
                    weight: objects.common_weight(),
                    version: None,
                })
            }
            RoutingMode::Route53 => Err(failed(name, "the route53 mode is not built yet")),
        }
    }

    async fn replace_weight(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        let name = &cluster.name;
        let api = self.weights_api(name)?;
        let Some(mut rw) = self.find_routing_weight(name).await? else {
            return Err(BackendError::NotFound {
                cluster: name.to_string(),
            });
        };
        let object = rw.metadata.name.clone().unwrap_or_default();
        if let Some(expected) = expected_version {
            if rw.metadata.resource_version.as_deref() != Some(expected) {
                return Err(BackendError::Conflict {
                    cluster: name.to_string(),
                });
            }
        }
        rw.spec.set_weight(&self.settings.prefix, weight);
        match api.replace(&object, &PostParams::default(), &rw).await {
            Ok(saved) if saved.spec.dry_run => Ok(Written::DryRun),
            Ok(_) => Ok(Written::Applied),
            Err(e) if is_conflict(&e) => Err(BackendError::Conflict {
                cluster: name.to_string(),
            }),
            Err(e) => Err(failed(name, describe(&e))),
        }
    }

    /// One pass over the cluster's controlled objects: how many carry `weight`.
    async fn convergence(
        &self,
        cluster: &str,
        weight: u8,
    ) -> Result<(Convergence, objects::Versions), BackendError> {
        let objects = self.controlled(cluster)?.list(cluster).await?;
        Ok((objects.convergence(cluster, weight), objects.versions()))
    }

    async fn converge(
        &self,
        cluster: &str,
        weight: u8,
        timeout: Duration,
    ) -> Result<Convergence, BackendError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (report, versions) = self.convergence(cluster, weight).await?;
            let now = Instant::now();
            if report.is_complete() || now >= deadline {
                return Ok(report);
            }
            // Wait for the next change to an Ingress or Service (a watch,
            // not a polling loop), then look again.
            self.controlled(cluster)?
                .wait_for_change(&versions, deadline - now)
                .await;
        }
    }

    /// `failover-bot check`: everything that must hold for one cluster.
    pub async fn check_cluster(&self, cluster: &ClusterConfig) -> ClusterCheck {
        let identity = self
            .check_identity(cluster)
            .await
            .map_err(|e| e.to_string());
        let state = self.read_cluster(cluster).await.map_err(|e| e.to_string());
        let missing = match self.client(&cluster.name) {
            Ok(client) => self.denied_permissions(client).await,
            Err(e) => vec![e.to_string()],
        };
        ClusterCheck {
            identity,
            weight: state.map(|s| s.weight),
            missing_permissions: missing,
        }
    }

    /// What the bot needs in each mode that this client may not do.
    async fn denied_permissions(&self, client: &Client) -> Vec<String> {
        let ns = self.settings.namespace.as_str();
        let mut needed = vec![Permission::named(
            "get",
            "",
            "configmaps",
            ns,
            IDENTITY_CONFIGMAP,
        )];
        let (watch_verbs, weights): (&[&str], bool) = match self.settings.mode {
            RoutingMode::RoutingWeight => (&["list", "watch"], true),
            RoutingMode::IngressAnnotations => (&["list", "watch", "patch"], false),
            RoutingMode::Route53 => (&[], false),
        };
        if weights {
            // `list`, not `get`: the RoutingWeight is found by clusterName.
            for verb in ["list", "create", "update", "delete"] {
                needed.push(Permission::in_namespace(
                    verb,
                    "routing.lunar.tech",
                    "routingweights",
                    ns,
                ));
            }
        }
        for verb in watch_verbs {
            needed.push(Permission::cluster_wide(
                verb,
                "networking.k8s.io",
                "ingresses",
            ));
            needed.push(Permission::cluster_wide(verb, "", "services"));
        }
        let reviews = needed.into_iter().map(|p| async move {
            let allowed = can_i(client, &p).await;
            (!allowed).then(|| p.to_string())
        });
        join_all(reviews).await.into_iter().flatten().collect()
    }
}

/// What the bot does in its home cluster that `client` may not: the Lease
/// named `lease` (leader election) and, with `journal`, the journal's
/// JournalSegments, all in `namespace` (as manifests/home/rbac.yaml grants).
pub async fn missing_home_permissions(
    client: &Client,
    namespace: &str,
    lease: Option<&str>,
    journal: bool,
) -> Vec<String> {
    let mut needed = Vec::new();
    if let Some(lease) = lease {
        for verb in ["get", "patch"] {
            needed.push(Permission::named(
                verb,
                "coordination.k8s.io",
                "leases",
                namespace,
                lease,
            ));
        }
        needed.push(Permission::in_namespace(
            "create",
            "coordination.k8s.io",
            "leases",
            namespace,
        ));
    }
    if journal {
        for verb in ["get", "list", "create", "patch", "delete"] {
            needed.push(Permission::in_namespace(
                verb,
                "failover-bot.github.io",
                "journalsegments",
                namespace,
            ));
        }
    }
    let reviews = needed.into_iter().map(|p| async move {
        let allowed = can_i(client, &p).await;
        (!allowed).then(|| p.to_string())
    });
    join_all(reviews).await.into_iter().flatten().collect()
}

/// One thing the bot must be allowed to do (a SelfSubjectAccessReview).
struct Permission<'a> {
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
}

impl<'a> Permission<'a> {
    fn cluster_wide(verb: &'a str, group: &'a str, resource: &'a str) -> Self {
        Self {
            verb,
            group,
            resource,
            namespace: None,
            name: None,
        }
    }
    fn in_namespace(verb: &'a str, group: &'a str, resource: &'a str, namespace: &'a str) -> Self {
        Self {
            namespace: Some(namespace),
            ..Self::cluster_wide(verb, group, resource)
        }
    }
    fn named(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> Self {
        Self {
            name: Some(name),
            ..Self::in_namespace(verb, group, resource, namespace)
        }
    }
}

impl std::fmt::Display for Permission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(name) = self.name {
            write!(f, " {name}")?;
        }
        match self.namespace {
            Some(ns) => write!(f, " in {ns}"),
            None => f.write_str(" cluster-wide"),
        }
    }
}

/// What `check` found for one cluster.
#[derive(Debug)]
pub struct ClusterCheck {
    pub identity: Result<(), String>,
    pub weight: Result<Option<u8>, String>,
    pub missing_permissions: Vec<String>,
}

impl ClusterCheck {
    pub fn is_ok(&self) -> bool {
        self.identity.is_ok() && self.weight.is_ok() && self.missing_permissions.is_empty()
    }
}

async fn can_i(client: &Client, permission: &Permission<'_>) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(permission.verb.to_owned()),
                group: Some(permission.group.to_owned()),
                resource: Some(permission.resource.to_owned()),
                namespace: permission.namespace.map(str::to_owned),
                name: permission.name.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(answer) => answer.status.is_some_and(|s| s.allowed),
        Err(_) => false,
    }
}

/// A client for one context of `$KUBECONFIG` (or the in-cluster config for
/// `in-cluster`), with the same timeouts and TLS rule as the clusters'
/// clients.
pub async fn client_for_context(context: &str, tls: TlsVerification) -> Result<Client, String> {
    if context == IN_CLUSTER {
        return client_for(context, None, tls).await;
    }
    let file = Kubeconfig::read().map_err(|e| format!("cannot read the kubeconfig: {e}"))?;
    client_for(context, Some(&file), tls).await
}

async fn client_for(
    context: &str,
    file: Option<&Kubeconfig>,
    tls: TlsVerification,
) -> Result<Client, String> {
    let mut config = if context == IN_CLUSTER {
        kube::Config::incluster().map_err(|e| format!("no in-cluster config: {e}"))?
    } else {
        let file = file.ok_or("no kubeconfig")?;
        let options = KubeConfigOptions {
            context: Some(context.to_owned()),
            ..Default::default()
        };
        kube::Config::from_custom_kubeconfig(file.clone(), &options)
            .await
            .map_err(|e| format!("kubeconfig context: {e}"))?
    };
    tls::check(context, &config, tls).map_err(|e| e.to_string())?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(READ_TIMEOUT);
    // kube's default retry is unbounded for a chat bot (see `retry`); the
    // bounded one needs a cloneable service, which the buffer makes.
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot build a client: {e}"))?;
    Ok(builder
        .with_layer(&tower::buffer::BufferLayer::new(retry::QUEUE))
        .with_layer(&tower::retry::RetryLayer::new(retry::BoundedRetry::new()))
        .build())
}

#[async_trait]
impl RoutingBackend for KubeBackend {
    async fn ready_replicas(
        &self,
        cluster: &ClusterConfig,
        deployment: &DeploymentRef,
    ) -> Result<Option<u32>, BackendError> {
        let name = &cluster.name;
        let api: Api<Deployment> =
            Api::namespaced(self.client(name)?.clone(), &deployment.namespace);
        let found = api
            .get_opt(&deployment.name)
            .await
            .map_err(|e| failed(name, describe(&e)))?;
        Ok(found.map(|d| {
            let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            u32::try_from(ready).unwrap_or(0)
        }))
    }

    async fn read(&self, env: &EnvironmentConfig) -> Result<Snapshot, BackendError> {
        let reads = join_all(env.clusters.iter().map(|c| self.read_cluster(c))).await;
        let mut snapshot = Snapshot::default();
        for (cluster, state) in env.clusters.iter().zip(reads) {
            snapshot.clusters.insert(cluster.name.clone(), state?);
        }
        Ok(snapshot)
    }

    async fn check_identity(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        let unknown = |reason: String| GateFailure::IdentityUnknown {
            context: cluster.context.clone(),
            reason,
        };
        let client = self
            .client(&cluster.name)
            .map_err(|e| unknown(e.to_string()))?;
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.settings.namespace);
        let map = api
            .get_opt(IDENTITY_CONFIGMAP)
            .await
            .map_err(|e| unknown(describe(&e)))?
            .ok_or_else(|| {
                unknown(format!(
                    "no ConfigMap {IDENTITY_CONFIGMAP} in namespace {}",
                    self.settings.namespace
                ))
            })?;
        let found = map
            .data
            .as_ref()
            .and_then(|d| d.get("clusterName"))
            .cloned()
            .unwrap_or_default();
        if cluster.name == found {
            Ok(())
        } else {
            Err(GateFailure::IdentityMismatch {
                context: cluster.context.clone(),
                expected: cluster.name.to_string(),
                found,
            })
        }
    }

    async fn missing_permissions(&self, cluster: &ClusterConfig) -> Option<Vec<String>> {
        Some(match self.client(&cluster.name) {
            Ok(client) => self.denied_permissions(client).await,
            Err(e) => vec![e.to_string()],
        })
    }
    async fn check_health(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        match &cluster.health_url {
            Some(url) => self.health.check(url).await,
            None => Ok(()),
        }
    }

    async fn set_weight(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        match self.settings.mode {
            RoutingMode::RoutingWeight => {
                self.replace_weight(cluster, weight, expected_version).await
            }
            RoutingMode::IngressAnnotations => {
                self.controlled(&cluster.name)?
                    .annotate(&cluster.name, weight)
                    .await?;
                Ok(Written::Applied)
            }
            RoutingMode::Route53 => Err(failed(&cluster.name, "the route53 mode is not built yet")),
        }
    }

    async fn create(&self, cluster: &ClusterConfig) -> Result<Written, BackendError> {
        self.create_at(cluster, 0).await
    }

    /// One write at the initial weight: the new object never passes
    /// through another weight.
    async fn create_at(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
    ) -> Result<Written, BackendError> {
        let name = &cluster.name;
        match self.settings.mode {
            RoutingMode::RoutingWeight => {
                // One under any name is the cluster's: a second one would
                // stop Lunar's controller.
                if let Some(existing) = self.find_routing_weight(name).await? {
                    return Err(BackendError::Exists {
                        cluster: name.to_string(),
                        object: existing.metadata.name.unwrap_or_default(),
                    });
                }
                let mut spec = RoutingWeightSpec::new_at_zero(name, &self.settings.prefix);
                spec.set_weight(&self.settings.prefix, weight);
                let mut rw = RoutingWeight::new(name, spec);
                rw.metadata.namespace = Some(self.settings.namespace.clone());
                self.weights_api(name)?
                    .create(&PostParams::default(), &rw)
                    .await
                    .map_err(|e| failed(name, describe(&e)))?;
                Ok(Written::Applied)
            }
            RoutingMode::IngressAnnotations => {
                self.controlled(name)?.annotate(name, weight).await?;
                Ok(Written::Applied)
            }
            RoutingMode::Route53 => Err(failed(name, "the route53 mode is not built yet")),
        }
    }

    fn removal(&self) -> Removal {
        match self.settings.mode {
            RoutingMode::IngressAnnotations => Removal::KeptAtZero,
            RoutingMode::RoutingWeight | RoutingMode::Route53 => Removal::Deleted,
        }
    }

    async fn delete(
        &self,
        cluster: &ClusterConfig,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        let name = &cluster.name;
        match self.settings.mode {
            RoutingMode::RoutingWeight => {
                let params = DeleteParams {
                    preconditions: expected_version.map(|v| Preconditions {
                        resource_version: Some(v.to_owned()),
                        uid: None,
                    }),
                    ..Default::default()
                };
                let Some(rw) = self.find_routing_weight(name).await? else {
                    return Err(BackendError::NotFound {
                        cluster: name.to_string(),
                    });
                };
                let object = rw.metadata.name.unwrap_or_default();
                match self.weights_api(name)?.delete(&object, &params).await {
                    Ok(_) => Ok(Written::Applied),
                    Err(e) if is_conflict(&e) => Err(BackendError::Conflict {
                        cluster: name.to_string(),
                    }),
                    Err(e) => Err(failed(name, describe(&e))),
                }
            }
            RoutingMode::IngressAnnotations => {
                // Kept at 0, never stripped: see `Removal::KeptAtZero`.
                self.controlled(name)?.annotate(name, 0).await?;
                Ok(Written::Applied)
            }
            RoutingMode::Route53 => Err(failed(name, "the route53 mode is not built yet")),
        }
    }

    async fn verify(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        let timeout = self.settings.verify_timeout;
        let checks = expected
            .iter()
            .filter(|(c, _)| env.cluster(c).is_some())
            .map(|(cluster, weight)| self.converge(cluster, weight, timeout));
        join_all(checks).await.into_iter().collect()
    }

    async fn observe(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        let checks = expected
            .iter()
            .filter(|(c, _)| env.cluster(c).is_some())
            .map(|(cluster, weight)| async move { Ok(self.convergence(cluster, weight).await?.0) });
        join_all(checks).await.into_iter().collect()
    }
}
