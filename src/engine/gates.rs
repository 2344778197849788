//! The gates a plan passes before it is shown and again before it is
//! applied: every cluster it touches must answer with its configured
//! identity, and every cluster it raises must be healthy. Identity never
//! yields; a failing health gate yields only to break-glass (`shift!`),
//! and is then carried on the plan as a warning.

use futures::future::join_all;

use super::Engine;
use crate::operation::{GateWarning, Refusal};
use crate::plan::Plan;

impl Engine {
    /// The warnings break-glass pushed through, or the first refusal.
    pub(super) async fn gates(
        &self,
        plan: &Plan,
        force: bool,
    ) -> Result<Vec<GateWarning>, Refusal> {
        let environment = self.environment(&plan.scope.env)?;
        let touched: Vec<_> = plan
            .changed_clusters()
            .filter_map(|c| environment.cluster(c))
            .collect();
        let raised: Vec<_> = plan
            .raised_clusters()
            .filter_map(|c| environment.cluster(c))
            .collect();
        let identity = join_all(touched.iter().map(|c| self.backend.check_identity(c)));
        let health = join_all(raised.iter().map(|c| self.backend.check_health(c)));
        let (identity, health) = futures::join!(identity, health);
        let failures = touched
            .iter()
            .zip(identity)
            .chain(raised.iter().zip(health))
            .filter_map(|(c, r)| r.err().map(|e| (c.name.clone(), e)));
        let mut warnings = Vec::new();
        for (cluster, failure) in failures {
            if force && failure.is_health() {
                warnings.push(GateWarning::Failed { cluster, failure });
            } else {
                return Err(Refusal::GateFailed { cluster, failure });
            }
        }
        Ok(warnings)
    }
}
