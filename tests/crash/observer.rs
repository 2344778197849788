//! Every state the three RoutingWeights pass through, as watches deliver
//! them, for the whole run, bot down or not.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;

use failover_bot::backend::kube::crd::RoutingWeight;

use crate::support::kube_env::ANNOTATION_PREFIX;
use crate::world::{revision, wait_until, World};

/// One RoutingWeight state, as a watch delivered it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub revision: u64,
    pub cluster: usize,
    pub weight: Option<u8>,
}

/// Watches the three RoutingWeights for the whole run, bot down or not.
pub struct Observer {
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Observer {
    /// Returns once every watch has listed its RoutingWeight.
    pub async fn start(world: &World) -> Observer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (listed, ready) = tokio::sync::oneshot::channel();
            tasks.push(tokio::spawn(watch_weights(
                world.weights_api(i),
                i,
                seen.clone(),
                listed,
            )));
            ready.await.expect("the watch lists its RoutingWeight");
        }
        Observer { seen, tasks }
    }

    pub fn seen(&self) -> Vec<Seen> {
        let mut seen = self.seen.lock().unwrap().clone();
        seen.sort_by_key(|s| s.revision);
        seen
    }

    /// Until the watches caught up with `versions` (one per cluster).
    pub async fn catch_up(&self, versions: &[u64]) -> bool {
        wait_until(Duration::from_secs(10), || async {
            let seen = self.seen();
            (0..3).all(|i| {
                seen.iter()
                    .any(|s| s.cluster == i && s.revision >= versions[i])
            })
        })
        .await
    }
}

async fn watch_weights(
    api: Api<RoutingWeight>,
    cluster: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
    listed: tokio::sync::oneshot::Sender<()>,
) {
    let mut listed = Some(listed);
    let mut changes = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
    while let Some(event) = changes.next().await {
        let (rw, weight) = match event {
            Ok(watcher::Event::Apply(rw)) | Ok(watcher::Event::InitApply(rw)) => {
                let weight = rw.spec.weight(ANNOTATION_PREFIX);
                (rw, weight)
            }
            Ok(watcher::Event::Delete(rw)) => (rw, None),
            Ok(watcher::Event::InitDone) => {
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
                continue;
            }
            _ => continue,
        };
        seen.lock().unwrap().push(Seen {
            revision: revision(&rw),
            cluster,
            weight,
        });
    }
}
