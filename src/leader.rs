//! Leader election: of the bot's replicas, only the holder of a Lease in its
//! home cluster opens the journal, talks to Slack and changes weights.
//!
//! The Lease lives in the cluster the bot runs in, never in one it fails
//! over: the outage that makes you fail a cluster over must not also take
//! away the bot's lock (or its journal) in the middle of the failover.
//!
//! The lease itself is `kube-lease-manager`'s (server-side apply, so two
//! replicas cannot both take it). On top of it the bot adds its own fencing:
//! if renewing has failed for longer than the lease's duration minus its
//! grace, another replica may already hold it, so this one steps down, and
//! `serve` exits rather than act without the lock.

use std::time::{Duration, Instant};

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a lease holds without renewal, and how early the holder renews.
const LEASE_SECONDS: u64 = 15;
const GRACE_SECONDS: u64 = 5;
/// A call to the lease manager that has not returned after this long is
/// renewing quietly (it returns only on a change or an error).
const QUIET: Duration = Duration::from_secs(2);
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Who campaigns for which lease, where.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub namespace: String,
    /// This replica's name (the pod name in Kubernetes).
    pub identity: String,
    /// The kubeconfig context of the home cluster, or `in-cluster`.
    pub context: String,
    /// Whether that context may skip TLS verification.
    pub tls: crate::backend::kube::tls::TlsVerification,
}

/// A running campaign: tells when this replica leads and when it stops.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    task: JoinHandle<()>,
    manager: std::sync::Arc<LeaseManager>,
}

impl LeaderElection {
    /// Refuses a Lease in a cluster the bot fails over (see the module doc).
    pub fn check_home(&self, config: &crate::config::Config) -> Result<(), String> {
        let target = config
            .environments
            .values()
            .flat_map(|env| &env.clusters)
            .find(|cluster| cluster.context == self.context);
        match target {
            Some(cluster) => Err(format!(
                "--lease-context {} is cluster {}, which the bot fails over: keep the Lease in the bot's home cluster",
                self.context, cluster.name
            )),
            None => Ok(()),
        }
    }

    /// Starts campaigning; returns at once.
    pub async fn campaign(&self) -> Result<Leadership, String> {
        let client = crate::backend::kube::client_for_context(&self.context, self.tls).await?;
        let manager = LeaseManagerBuilder::new(client, &self.lease_name)
            .with_namespace(&self.namespace)
            .with_identity(&self.identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(GRACE_SECONDS)
            .with_field_manager(format!("failover-bot/{}", self.identity))
            .build()
            .await
            .map_err(|e| {
                format!(
                    "cannot use Lease {}/{} (context {}): {e}",
                    self.namespace, self.lease_name, self.context
                )
            })?;
        let manager = std::sync::Arc::new(manager);
        let (tell, leading) = watch::channel(false);
        let task = tokio::spawn(hold(manager.clone(), tell));
        Ok(Leadership {
            leading,
            task,
            manager,
        })
    }
}

impl Leadership {
    /// Waits until this replica holds the lease.
    pub async fn acquired(&mut self) {
        let _ = self.leading.wait_for(|leading| *leading).await;
    }

    /// Waits until this replica no longer holds the lease (or cannot be
    /// sure it does).
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|leading| !*leading).await;
    }

    /// Gives the lease up, so another replica takes over at once instead of
    /// after it expires.
    pub async fn release(self) {
        self.task.abort();
        if let Err(error) = self.manager.release().await {
            tracing::warn!(%error, "could not release the lease");
        }
    }
}

/// Keeps the lease (or waits for it) and reports every change; reports
/// `false` when renewal has failed for too long to be sure of holding it.
async fn hold(manager: std::sync::Arc<LeaseManager>, tell: watch::Sender<bool>) {
    let unsure_after = Duration::from_secs(LEASE_SECONDS - GRACE_SECONDS);
    let mut failing_since: Option<Instant> = None;
    loop {
        match tokio::time::timeout(QUIET, manager.changed()).await {
            Err(_quiet) => failing_since = None,
            Ok(Ok(leading)) => {
                failing_since = None;
                tracing::info!(leading, "leadership changed");
                tell.send_replace(leading);
            }
            Ok(Err(error)) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                tracing::warn!(%error, "cannot renew or read the lease");
                if since.elapsed() >= unsure_after && *tell.borrow() {
                    tracing::error!("lease not renewed in time: stepping down");
                    tell.send_replace(false);
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}
