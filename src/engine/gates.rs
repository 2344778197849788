//! The gates a plan passes before it is shown and again before it is
//! applied: every cluster it touches must answer with its configured
//! identity; every cluster whose share of traffic it raises must be
//! healthy, pass the environment's before-gates (Prometheus) and have the
//! capacity for its new share. Identity never yields; the other gates yield
//! only to break-glass (`shift!`), and are then carried on the plan as
//! warnings. An advisory gate's failing reading is shown, never blocks.

use futures::future::join_all;

use super::Engine;
use crate::operation::{CapacityCheck, GateCheck, GateWarning, Refusal};
use crate::plan::Plan;

/// What the gates found for a plan that may go ahead.
#[derive(Clone, Debug, Default)]
pub(super) struct Checked {
    /// Failures pushed through with break-glass, and advisory failures.
    pub warnings: Vec<GateWarning>,
    /// Every before-gate reading, to show on the plan.
    pub checks: Vec<GateCheck>,
    pub capacity: Vec<CapacityCheck>,
}

impl Engine {
    /// What the gates found, or the first refusal.
    pub(super) async fn gates(&self, plan: &Plan, force: bool) -> Result<Checked, Refusal> {
        let mut checked = Checked {
            warnings: self.cluster_gates(plan, force).await?,
            ..Checked::default()
        };
        let (checks, capacity) =
            futures::join!(self.before_checks(plan), self.capacity_checks(plan));
        for check in checks.iter().filter(|c| !c.passed()) {
            if check.blocks() && !force {
                return Err(Refusal::MetricGate {
                    check: Box::new(check.clone()),
                });
            }
            checked.warnings.push(GateWarning::Metric {
                check: check.clone(),
            });
        }
        for check in capacity.iter().filter(|c| c.blocks()) {
            if !force {
                return Err(Refusal::Capacity {
                    check: check.clone(),
                });
            }
            checked.warnings.push(GateWarning::Capacity {
                capacity: check.clone(),
            });
        }
        checked.checks = checks;
        checked.capacity = capacity;
        Ok(checked)
    }

    /// Identity of every cluster the plan touches, and health of every
    /// cluster whose share it raises.
    async fn cluster_gates(&self, plan: &Plan, force: bool) -> Result<Vec<GateWarning>, Refusal> {
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
