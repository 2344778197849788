//! The clusters every run uses: three real API servers on one etcd, with a
//! stand-in for Lunar's cluster-routing controller that carries each
//! RoutingWeight to the Ingress, slowly.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::Client;

use failover_bot::backend::kube::crd::{self, RoutingWeight};
use failover_bot::ids::ClusterId;
use failover_bot::plan::{self, Percent, Weights};

use crate::support::kube_env::{
    controlled_ingress_yaml, copied_annotations_patch, routing_weight_yaml, KubeEnv,
    ANNOTATION_PREFIX, IDENTITY_CONFIGMAP, NAMESPACE,
};
use crate::{INITIAL, STEPS};

/// How long the Lunar controller stand-in takes to carry a RoutingWeight to
/// the Ingress: what the bot's verification waits for.
const LUNAR_DELAY: Duration = Duration::from_millis(100);

/// The clusters every run uses: started once (5–7 s), reset between runs.
pub struct World {
    pub env: KubeEnv,
    clients: Vec<Client>,
    pub names: Vec<ClusterId>,
    pub config: String,
    /// Weights before the operation and after each of its steps.
    pub targets: Vec<Weights>,
    _lunar: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for task in &self._lunar {
            task.abort();
        }
    }
}

fn weights_of(names: &[ClusterId], values: &[u8]) -> Weights {
    names.iter().cloned().zip(values.iter().copied()).collect()
}

/// The weights before the failover and after each step, as the plans'
/// arithmetic gives them from the initial weights.
fn step_targets(names: &[ClusterId]) -> Vec<Weights> {
    let mut targets = vec![weights_of(names, &INITIAL)];
    for percent in STEPS {
        let from = targets.last().expect("initial weights").clone();
        let percent = Percent::new(percent).expect("a valid percent");
        targets.push(plan::shift(&from, &names[2], percent).expect("a valid step"));
    }
    targets
}

impl World {
    pub async fn start() -> Arc<World> {
        let env = KubeEnv::start(3).await;
        let mut clients = Vec::new();
        for i in 0..3 {
            clients.push(env.client(i).await);
        }
        let names: Vec<ClusterId> = env
            .clusters()
            .iter()
            .map(|c| ClusterId::from(c.name.as_str()))
            .collect();
        for (i, name) in names.iter().enumerate() {
            env.apply(i, &routing_weight_yaml(name, INITIAL[i]));
            env.apply(i, &controlled_ingress_yaml(""));
        }
        let lunar = clients
            .iter()
            .zip(&names)
            .map(|(c, n)| tokio::spawn(lunar_controller(c.clone(), n.to_string())))
            .collect();
        let routing = "  mode: routing-weight\n  verify_timeout: 5s\n";
        Arc::new(World {
            config: env.config_yaml(routing, ""),
            targets: step_targets(&names),
            env,
            clients,
            names,
            _lunar: lunar,
        })
    }

    pub fn weights_api(&self, i: usize) -> Api<RoutingWeight> {
        Api::namespaced(self.clients[i].clone(), NAMESPACE)
    }

    /// Back to the initial weights and the right identities, and wait until
    /// the Ingresses carry them (so no run sees the last one's leftovers).
    pub async fn reset(&self) {
        for (i, initial) in INITIAL.iter().enumerate() {
            let annotations = serde_json::json!([
                {"key": crd::weight_key(ANNOTATION_PREFIX), "value": initial.to_string()},
                {"key": crd::set_identifier_key(ANNOTATION_PREFIX), "value": self.names[i]},
            ]);
            let patch = serde_json::json!({"spec": {"annotations": annotations, "dryRun": false}});
            self.weights_api(i)
                .patch(
                    &self.names[i],
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .expect("reset the RoutingWeight");
            let identity = serde_json::json!({"data": {"clusterName": self.names[i]}});
            Api::<ConfigMap>::namespaced(self.clients[i].clone(), NAMESPACE)
                .patch(
                    IDENTITY_CONFIGMAP,
                    &PatchParams::default(),
                    &Patch::Merge(&identity),
                )
                .await
                .expect("reset the identity ConfigMap");
        }
        for i in 0..3 {
            let carried = wait_until(Duration::from_secs(10), || self.ingress_weight(i)).await;
            assert!(
                carried,
                "the Ingress of cluster {i} never carried the reset"
            );
        }
    }

    async fn ingress_weight(&self, i: usize) -> bool {
        let ingresses: Api<Ingress> = Api::namespaced(self.clients[i].clone(), "web");
        let Ok(ingress) = ingresses.get("api").await else {
            return false;
        };
        let key = crd::weight_key(ANNOTATION_PREFIX);
        let annotations = ingress.metadata.annotations.unwrap_or_default();
        annotations.get(&key) == Some(&INITIAL[i].to_string())
    }

    /// Someone else sets cluster `i`'s weight; returns the change's revision.
    pub async fn set_weight(&self, i: usize, weight: u8) -> u64 {
        let mut rw = self
            .weights_api(i)
            .get(&self.names[i])
            .await
            .expect("read a RoutingWeight");
        rw.spec.set_weight(ANNOTATION_PREFIX, weight);
        let written = self
            .weights_api(i)
            .replace(&self.names[i], &Default::default(), &rw)
            .await
            .expect("someone else's change");
        revision(&written)
    }

    /// Every cluster's weight and resourceVersion, read now.
    pub async fn read(&self) -> (Weights, Vec<u64>) {
        let mut weights = Weights::new();
        let mut versions = Vec::new();
        for i in 0..3 {
            let rw = self
                .weights_api(i)
                .get(&self.names[i])
                .await
                .expect("read a RoutingWeight");
            if let Some(w) = rw.spec.weight(ANNOTATION_PREFIX) {
                weights.set(self.names[i].clone(), w);
            }
            versions.push(revision(&rw));
        }
        (weights, versions)
    }
}

pub fn revision(rw: &RoutingWeight) -> u64 {
    rw.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub async fn wait_until<F, Fut>(timeout: Duration, f: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// What Lunar's controller does, slowly: on every change of the cluster's
/// RoutingWeight, wait [`LUNAR_DELAY`], then copy its current annotations
/// onto the controlled Ingress. Event-driven, so idle runs cost nothing.
async fn lunar_controller(client: Client, identity: String) {
    let weights: Api<RoutingWeight> = Api::namespaced(client.clone(), NAMESPACE);
    let ingresses: Api<Ingress> = Api::namespaced(client, "web");
    let mut changes = std::pin::pin!(watcher::watcher(
        weights.clone(),
        watcher::Config::default()
    ));
    while let Some(event) = changes.next().await {
        let changed = matches!(
            event,
            Ok(watcher::Event::Apply(_)) | Ok(watcher::Event::InitApply(_))
        );
        if !changed {
            continue;
        }
        tokio::time::sleep(LUNAR_DELAY).await;
        let Ok(rw) = weights.get(&identity).await else {
            continue;
        };
        if rw.spec.cluster_name != identity || rw.spec.dry_run {
            continue;
        }
        let patch = copied_annotations_patch(&rw);
        let _ = ingresses
            .patch("api", &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
}
