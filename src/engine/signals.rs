//! Gates on real signals: each environment's Prometheus gates, before a
//! step (for the clusters whose share of traffic rises) and after it (for
//! the clusters that carry traffic, through the bake), and the capacity
//! gate (ready replicas against the traffic a cluster is about to take).
//! Readings become facts ([`GateCheck`], [`CapacityCheck`]) that the plan,
//! the journal and the thread show.

use std::collections::BTreeMap;

use futures::future::join_all;

use super::Engine;
use crate::config::gates::{CapacityConfig, When};
use crate::config::{Config, EnvironmentConfig};
use crate::gates::capacity::{
    check_capacity, CapacityOutcome, CapacityPlan, Readiness, ReadyReplicas,
};
use crate::gates::{clusters_for, gates_at, Evaluator, GateResult, Outcome, PrometheusClient};
use crate::ids::EnvId;
use crate::operation::{CapacityCheck, CheckResult, GateCheck, Reading};
use crate::plan::{Plan, Weights};

/// One evaluator per environment with a `prometheus` section; the reason
/// it could not be made (a token variable unset, say) otherwise.
pub(super) struct Signals {
    evaluators: BTreeMap<EnvId, Result<Evaluator, String>>,
}

impl Signals {
    pub fn new(config: &Config) -> Signals {
        let evaluators = config
            .environments
            .iter()
            .filter_map(|(env, e)| {
                let prometheus = e.prometheus.as_ref()?;
                let evaluator = PrometheusClient::new(prometheus)
                    .map(Evaluator::new)
                    .map_err(|e| e.to_string());
                Some((env.clone(), evaluator))
            })
            .collect();
        Signals { evaluators }
    }
}

impl Engine {
    /// The before-gates of every cluster whose share `plan` raises.
    pub(super) async fn before_checks(&self, plan: &Plan) -> Vec<GateCheck> {
        let clusters = clusters_for(When::Before, &plan.before, &plan.after);
        self.checks(&plan.scope.env, When::Before, &clusters).await
    }

    /// The after-gates of every cluster that carries traffic under `weights`.
    pub(super) async fn after_checks(&self, env: &EnvId, weights: &Weights) -> Vec<GateCheck> {
        let clusters: Vec<String> = weights
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(c, _)| c.to_string())
            .collect();
        self.checks(env, When::After, &clusters).await
    }

    /// Whether the environment has after-gates, and the longest bake.
    pub(super) fn bake_of(&self, env: &str) -> Option<std::time::Duration> {
        let environment = self.config.environment(env)?;
        let mut after = gates_at(&environment.gates, When::After).peekable();
        after.peek()?;
        Some(after.filter_map(|g| g.bake).max().unwrap_or_default())
    }

    async fn checks(&self, env: &EnvId, when: When, clusters: &[String]) -> Vec<GateCheck> {
        let Some(environment) = self.config.environment(env) else {
            return Vec::new();
        };
        let gates: Vec<_> = gates_at(&environment.gates, when).collect();
        if gates.is_empty() || clusters.is_empty() {
            return Vec::new();
        }
        let results = match self.signals.evaluators.get(env) {
            Some(Ok(evaluator)) => evaluator.evaluate_all(env, gates, clusters).await,
            Some(Err(reason)) => return unevaluated(&gates, clusters, when, reason),
            None => return unevaluated(&gates, clusters, when, "no prometheus section"),
        };
        for result in &results {
            self.metrics
                .gate_evaluated(env, &result.gate, result.outcome.label());
        }
        results.iter().map(check_of).collect()
    }

    /// The capacity gate for every cluster whose share `plan` raises.
    pub(super) async fn capacity_checks(&self, plan: &Plan) -> Vec<CapacityCheck> {
        let Some(environment) = self.config.environment(&plan.scope.env) else {
            return Vec::new();
        };
        let Some(capacity) = &environment.capacity else {
            return Vec::new();
        };
        let ready = self.ready_replicas(environment, capacity, plan).await;
        let plan = CapacityPlan {
            config: capacity,
            before: &plan.before,
            after: &plan.after,
            ready: &ready,
        };
        check_capacity(plan).iter().map(capacity_of).collect()
    }

    /// What the clusters of either side of `plan` say of each Deployment.
    async fn ready_replicas(
        &self,
        environment: &EnvironmentConfig,
        capacity: &CapacityConfig,
        plan: &Plan,
    ) -> ReadyReplicas {
        let wanted: Vec<_> = capacity
            .deployments
            .iter()
            .flat_map(|d| {
                plan.before
                    .clusters()
                    .chain(plan.after.clusters())
                    .filter_map(|c| environment.cluster(c))
                    .map(move |c| (d, c))
            })
            .collect();
        let reads = join_all(
            wanted
                .iter()
                .map(|(d, c)| self.backend.ready_replicas(c, d)),
        )
        .await;
        let mut ready = ReadyReplicas::default();
        for ((deployment, cluster), read) in wanted.into_iter().zip(reads) {
            let readiness = match read {
                Ok(Some(n)) => Readiness::Ready(n),
                Ok(None) => Readiness::Missing,
                Err(e) => Readiness::Unreadable(e.to_string()),
            };
            ready.insert(deployment.clone(), &cluster.name, readiness);
        }
        ready
    }
}

/// What to show for gates that could not be asked at all.
fn unevaluated(
    gates: &[&crate::config::gates::GateConfig],
    clusters: &[String],
    when: When,
    reason: &str,
) -> Vec<GateCheck> {
    gates
        .iter()
        .flat_map(|gate| {
            clusters.iter().map(move |cluster| GateCheck {
                gate: gate.name.clone(),
                cluster: cluster.as_str().into(),
                when,
                query: gate.query.clone(),
                operator: gate.pass_if.operator().to_owned(),
                threshold: Reading(gate.pass_if.threshold()),
                readings: Vec::new(),
                result: CheckResult::Error {
                    message: reason.to_owned(),
                },
                advisory: gate.advisory,
            })
        })
        .collect()
}

fn check_of(result: &GateResult) -> GateCheck {
    let outcome = match &result.outcome {
        Outcome::Pass => CheckResult::Pass,
        Outcome::Fail => CheckResult::Fail,
        Outcome::NoData => CheckResult::NoData {
            passes: result.passed(),
        },
        Outcome::Error(error) => CheckResult::Error {
            message: error.to_string(),
        },
    };
    GateCheck {
        gate: result.gate.clone(),
        cluster: result.cluster.as_str().into(),
        when: result.when,
        query: result.query.clone(),
        operator: result.pass_if.operator().to_owned(),
        threshold: Reading(result.pass_if.threshold()),
        readings: result
            .samples
            .iter()
            .map(|s| Reading(s.sample.value))
            .collect(),
        result: outcome,
        advisory: result.advisory,
    }
}

fn capacity_of(check: &crate::gates::capacity::CapacityCheck) -> CapacityCheck {
    let (ready, unreadable) = match &check.readiness {
        Readiness::Ready(n) => (Some(*n), None),
        Readiness::Missing => (None, None),
        Readiness::Unreadable(why) => (None, Some(why.clone())),
    };
    CapacityCheck {
        deployment: check.deployment.to_string(),
        cluster: check.cluster.as_str().into(),
        ready,
        unreadable,
        serving: check.serving,
        share_percent: Reading(check.share.percent()),
        headroom: Reading(check.headroom),
        required: check.required,
        enough: match check.outcome {
            CapacityOutcome::Enough => Some(true),
            CapacityOutcome::TooFew => Some(false),
            CapacityOutcome::Unknown => None,
        },
    }
}
