//! The Ingresses and Services that carry a cluster's weight: those annotated
//! `routing.lunar.tech/controlled: "true"` (Lunar's convention). Annotations
//! cannot be selected server-side, so they are listed and filtered here.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, WatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::crd::{set_identifier_key, weight_key};
use super::describe;
use crate::backend::{BackendError, Convergence};

pub const CONTROLLED: &str = "routing.lunar.tech/controlled";

/// One controlled object and the weight it carries.
#[derive(Clone, Debug)]
pub struct Object {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub weight: Option<u8>,
}

/// The list's resourceVersions, to watch from.
#[derive(Clone, Debug, Default)]
pub struct Versions {
    ingresses: String,
    services: String,
}

pub struct Objects {
    items: Vec<Object>,
    versions: Versions,
}

impl Objects {
    /// The weight most controlled objects carry (ties: the lowest); `None`
    /// when none carries one (the cluster is not routed).
    pub fn common_weight(&self) -> Option<u8> {
        let mut counts: BTreeMap<u8, usize> = BTreeMap::new();
        for w in self.items.iter().filter_map(|o| o.weight) {
            *counts.entry(w).or_default() += 1;
        }
        let most = counts.values().copied().max()?;
        counts.into_iter().find(|(_, n)| *n == most).map(|(w, _)| w)
    }

    pub fn convergence(&self, cluster: &str, weight: u8) -> Convergence {
        let stragglers: Vec<String> = self
            .items
            .iter()
            .filter(|o| o.weight != Some(weight))
            .map(|o| {
                let has = o
                    .weight
                    .map_or_else(|| "none".to_owned(), |w| w.to_string());
                format!("{} {}/{} (weight {has})", o.kind, o.namespace, o.name)
            })
            .collect();
        Convergence {
            cluster: cluster.into(),
            converged: self.items.len() - stragglers.len(),
            total: self.items.len(),
            stragglers,
        }
    }

    pub fn versions(&self) -> Versions {
        self.versions.clone()
    }
}

pub struct Controlled {
    client: Client,
    weight_key: String,
    identifier_key: String,
}

fn is_controlled(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(CONTROLLED))
        .is_some_and(|v| v == "true")
}

impl Controlled {
    pub fn new(client: Client, prefix: &str) -> Self {
        Self {
            client,
            weight_key: weight_key(prefix),
            identifier_key: set_identifier_key(prefix),
        }
    }

    pub async fn list(&self, cluster: &str) -> Result<Objects, BackendError> {
        let (ingresses, iv) = self.list_kind::<Ingress>(cluster, "Ingress").await?;
        let (services, sv) = self.list_kind::<Service>(cluster, "Service").await?;
        Ok(Objects {
            items: ingresses.into_iter().chain(services).collect(),
            versions: Versions {
                ingresses: iv,
                services: sv,
            },
        })
    }

    async fn list_kind<K>(
        &self,
        cluster: &str,
        kind: &'static str,
    ) -> Result<(Vec<Object>, String), BackendError>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| super::failed(cluster, format!("listing {kind}s: {}", describe(&e))))?;
        let version = list.metadata.resource_version.clone().unwrap_or_default();
        let items = list
            .items
            .iter()
            .map(Resource::meta)
            .filter(|m| is_controlled(m))
            .map(|m| Object {
                kind,
                namespace: m.namespace.clone().unwrap_or_default(),
                name: m.name.clone().unwrap_or_default(),
                weight: m
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(&self.weight_key))
                    .and_then(|v| v.trim().parse().ok()),
            })
            .collect();
        Ok((items, version))
    }

    /// Writes the weight and set-identifier annotations on every controlled
    /// object, always both in one patch: external-dns makes a set identifier
    /// without a weight (or the reverse) a record Route53 refuses beside the
    /// other clusters' weighted ones. Nothing here removes them.
    pub async fn annotate(&self, cluster: &str, weight: u8) -> Result<(), BackendError> {
        let objects = self.list(cluster).await?;
        let annotations =
            json!({ &self.weight_key: weight.to_string(), &self.identifier_key: cluster });
        let patch = json!({ "metadata": { "annotations": annotations } });
        for object in &objects.items {
            let result = match object.kind {
                "Ingress" => {
                    let api: Api<Ingress> = Api::namespaced(self.client.clone(), &object.namespace);
                    api.patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                }
                _ => {
                    let api: Api<Service> = Api::namespaced(self.client.clone(), &object.namespace);
                    api.patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                }
            };
            result.map_err(|e| {
                super::failed(
                    cluster,
                    format!(
                        "{} {}/{}: {}",
                        object.kind,
                        object.namespace,
                        object.name,
                        describe(&e)
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// Returns when an Ingress or Service changes after `versions`, or when
    /// `within` has passed.
    pub async fn wait_for_change(&self, versions: &Versions, within: Duration) {
        let seconds = u32::try_from(within.as_secs().clamp(1, 290)).unwrap_or(290);
        let params = WatchParams::default().timeout(seconds);
        let ingresses: Api<Ingress> = Api::all(self.client.clone());
        let services: Api<Service> = Api::all(self.client.clone());
        let first_ingress = async {
            if let Ok(stream) = ingresses.watch(&params, &versions.ingresses).await {
                let _ = stream.boxed().try_next().await;
            }
        };
        let first_service = async {
            if let Ok(stream) = services.watch(&params, &versions.services).await {
                let _ = stream.boxed().try_next().await;
            }
        };
        let _ = tokio::time::timeout(within, async {
            tokio::select! {
                _ = first_ingress => {}
                _ = first_service => {}
            }
        })
        .await;
    }
}
