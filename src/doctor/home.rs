//! The bot's home cluster: who holds its Lease (and whether the holder
//! renews it), and whether the bot may do there what leader election and
//! the journal need.

use chrono::{DateTime, Utc};

use super::age;
use crate::backend::kube::missing_home_permissions;
use crate::leader::{read_lease, LeaseHolder};
use crate::readiness::{Check, Finding, Severity};

/// Where the bot's Lease (and journal) live.
#[derive(Clone)]
pub struct Home {
    pub client: kube::Client,
    /// Shown in findings (the kubeconfig context, or `in-cluster`).
    pub context: String,
    pub namespace: String,
    pub lease_name: String,
    /// The journal is kept there too (`serve --journal kube`).
    pub journal: bool,
}

impl Home {
    pub async fn examine(&self, now: DateTime<Utc>) -> Vec<Finding> {
        let (lease, permissions) = tokio::join!(self.lease(now), self.permissions());
        vec![lease, permissions]
    }

    fn subject(&self) -> String {
        format!(
            "Lease {}/{} (context {})",
            self.namespace, self.lease_name, self.context
        )
    }

    async fn lease(&self, now: DateTime<Utc>) -> Finding {
        let read = read_lease(self.client.clone(), &self.namespace, &self.lease_name).await;
        let (severity, detail) = match read {
            Err(e) => (Severity::Problem, format!("cannot be read: {e}")),
            Ok(None) => (
                Severity::Problem,
                "does not exist: no replica has campaigned for it".to_owned(),
            ),
            Ok(Some(lease)) => judge_lease(&lease, now),
        };
        Finding::new(severity, Check::Lease, self.subject(), detail)
    }

    async fn permissions(&self) -> Finding {
        let journal = self.journal;
        let missing = missing_home_permissions(
            &self.client,
            &self.namespace,
            Some(&self.lease_name),
            journal,
        )
        .await;
        let what = match journal {
            true => "the Lease and the journal need",
            false => "the Lease needs",
        };
        let subject = format!("namespace {} (context {})", self.namespace, self.context);
        if missing.is_empty() {
            Finding::ok(
                Check::HomePermissions,
                subject,
                format!("allowed everything {what}"),
            )
        } else {
            Finding::new(
                Severity::Problem,
                Check::HomePermissions,
                subject,
                format!(
                    "not allowed to {} (see manifests/home/rbac.yaml)",
                    missing.join(", ")
                ),
            )
        }
    }
}

/// Held and renewed within its duration: ok. Otherwise no replica acts
/// on Slack, and nobody could fail anything over from the channel.
fn judge_lease(lease: &LeaseHolder, now: DateTime<Utc>) -> (Severity, String) {
    let renewed = lease
        .renewed_at
        .map(|at| {
            format!(
                "renewed {} ago",
                age((now - at).to_std().unwrap_or_default())
            )
        })
        .unwrap_or_else(|| "never renewed".to_owned());
    match &lease.holder {
        None => (
            Severity::Problem,
            format!("held by nobody ({renewed}): no replica is acting"),
        ),
        Some(holder) if lease.is_renewed(now) => {
            (Severity::Ok, format!("held by {holder}, {renewed}"))
        }
        Some(holder) => (
            Severity::Problem,
            format!("held by {holder} but not renewed in time ({renewed}): that replica stopped"),
        ),
    }
}
