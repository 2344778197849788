//! Evaluating gates: one query per gate and cluster, and a typed result of
//! each — the values, what they were compared with, and pass, fail, no data
//! or an error. Facts only: what a person reads is made of them elsewhere.

use std::sync::Arc;

use futures::future::join_all;

use super::prometheus::{PrometheusClient, QueryError, Sample};
use crate::config::gates::{GateConfig, OnNoData, PassIf, When};
use crate::metrics::Metrics;
use crate::plan::Weights;
use crate::promql::{self as query, QueryContext, TemplateError};

/// How one evaluation came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every value met `pass_if`.
    Pass,
    /// At least one value did not.
    Fail,
    /// The answer was empty, or held only NaN (e.g. 0/0: no traffic).
    NoData,
    /// The query could not be evaluated; never counts as a pass.
    Error(EvaluationError),
}

/// Every [`Outcome::label`]: the gate counter's series are created with
/// these at start ([`Metrics::declare_gate`]).
pub const OUTCOME_LABELS: [&str; 4] = ["pass", "fail", "no_data", "error"];

impl Outcome {
    /// The `result` label of the gate-evaluation counter.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::NoData => "no_data",
            Outcome::Error(_) => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvaluationError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// One value of the answer and whether it met `pass_if`.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedSample {
    pub sample: Sample,
    pub passed: bool,
}

/// One gate evaluated for one cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct GateResult {
    pub gate: String,
    pub env: String,
    pub cluster: String,
    pub when: When,
    pub pass_if: PassIf,
    pub on_no_data: OnNoData,
    pub advisory: bool,
    /// The query as sent (placeholders replaced); the template if replacing
    /// failed.
    pub query: String,
    /// Every value returned, in Prometheus's order.
    pub samples: Vec<CheckedSample>,
    pub outcome: Outcome,
}

impl GateResult {
    /// Whether the step may go ahead on this result: a pass, or no data
    /// where the gate says `on_no_data: pass`. An error never passes.
    pub fn passed(&self) -> bool {
        match self.outcome {
            Outcome::Pass => true,
            Outcome::NoData => self.on_no_data == OnNoData::Pass,
            Outcome::Fail | Outcome::Error(_) => false,
        }
    }

    /// Whether this result stops the operation: it did not pass and the
    /// gate is not advisory.
    pub fn blocks(&self) -> bool {
        !self.passed() && !self.advisory
    }

    /// The values that did not meet `pass_if`.
    pub fn failing(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(|s| !s.passed).map(|s| &s.sample)
    }
}

/// Evaluates gates against one Prometheus, counting each evaluation.
#[derive(Clone)]
pub struct Evaluator {
    client: PrometheusClient,
    metrics: Option<Arc<Metrics>>,
}

impl Evaluator {
    pub fn new(client: PrometheusClient) -> Self {
        Self {
            client,
            metrics: None,
        }
    }

    /// Counts every evaluation in `failover_bot_gate_evaluations_total`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One gate for one cluster of `env`.
    pub async fn evaluate(&self, env: &str, gate: &GateConfig, cluster: &str) -> GateResult {
        let context = QueryContext { env, cluster };
        let (query, answer) = match query::render(&gate.query, context) {
            Ok(query) => {
                let answer = self.client.query(&query).await.map_err(Into::into);
                (query, answer)
            }
            Err(error) => (gate.query.clone(), Err(error.into())),
        };
        let (samples, outcome) = judge(gate.pass_if, answer);
        let result = GateResult {
            gate: gate.name.clone(),
            env: env.to_owned(),
            cluster: cluster.to_owned(),
            when: gate.when,
            pass_if: gate.pass_if,
            on_no_data: gate.on_no_data,
            advisory: gate.advisory,
            query,
            samples,
            outcome,
        };
        if let Some(metrics) = &self.metrics {
            metrics.gate_evaluated(env, &gate.name, result.outcome.label());
        }
        result
    }

    /// Every gate for every cluster, concurrently; results ordered by gate,
    /// then cluster, as given.
    pub async fn evaluate_all<'g>(
        &self,
        env: &str,
        gates: impl IntoIterator<Item = &'g GateConfig>,
        clusters: &[String],
    ) -> Vec<GateResult> {
        let pairs: Vec<(&GateConfig, &String)> = gates
            .into_iter()
            .flat_map(|gate| clusters.iter().map(move |cluster| (gate, cluster)))
            .collect();
        join_all(
            pairs
                .into_iter()
                .map(|(gate, cluster)| self.evaluate(env, gate, cluster)),
        )
        .await
    }
}

/// The answer held against `pass_if`.
fn judge(
    pass_if: PassIf,
    answer: Result<super::prometheus::QueryValue, EvaluationError>,
) -> (Vec<CheckedSample>, Outcome) {
    let samples = match answer {
        Ok(value) => value.into_samples(),
        Err(error) => return (Vec::new(), Outcome::Error(error)),
    };
    let checked: Vec<CheckedSample> = samples
        .into_iter()
        .map(|sample| CheckedSample {
            passed: pass_if.passes(sample.value),
            sample,
        })
        .collect();
    // NaN is how PromQL says 0/0; a series of only NaN carries no reading.
    let readings = checked.iter().filter(|s| !s.sample.value.is_nan());
    let outcome = match readings.clone().count() {
        0 => Outcome::NoData,
        _ if readings.clone().all(|s| s.passed) => Outcome::Pass,
        _ => Outcome::Fail,
    };
    (checked, outcome)
}

/// The gates of `gates` evaluated at `when`.
pub fn gates_at(gates: &[GateConfig], when: When) -> impl Iterator<Item = &GateConfig> {
    gates.iter().filter(move |g| g.when == when)
}

/// The clusters a step's gates are evaluated for: before-gates for each
/// cluster whose share of traffic rises, after-gates for each cluster that
/// carries traffic after the step.
pub fn clusters_for(when: When, before: &Weights, after: &Weights) -> Vec<String> {
    match when {
        When::Before => after
            .iter()
            .filter(|(cluster, weight)| share_rises(before, after, cluster, *weight))
            .map(|(cluster, _)| cluster.to_string())
            .collect(),
        When::After => after
            .iter()
            .filter(|(_, weight)| *weight > 0)
            .map(|(cluster, _)| cluster.to_string())
            .collect(),
    }
}

/// after/after_total > before/before_total, in integers.
fn share_rises(before: &Weights, after: &Weights, cluster: &str, weight_after: u8) -> bool {
    let was = u64::from(before.get(cluster).unwrap_or(0));
    let now = u64::from(weight_after);
    let (total_before, total_after) = (u64::from(before.total()), u64::from(after.total()));
    if total_before == 0 {
        return now > 0;
    }
    now * total_before > was * total_after
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gates::prometheus::QueryValue;

    fn weights(pairs: &[(&str, u8)]) -> Weights {
        let mut w = Weights::new();
        for (c, v) in pairs {
            w.set(*c, *v);
        }
        w
    }

    fn vector(values: &[f64]) -> Result<QueryValue, EvaluationError> {
        Ok(QueryValue::Vector(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample {
                    labels: BTreeMap::from([("pod".to_owned(), i.to_string())]),
                    value: *v,
                })
                .collect(),
        ))
    }

    #[test]
    fn every_value_must_pass() {
        let below = PassIf::Below(1.0);
        assert_eq!(judge(below, vector(&[0.1, 0.2])).1, Outcome::Pass);
        let (samples, outcome) = judge(below, vector(&[0.1, 2.0]));
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(
            samples.iter().map(|s| s.passed).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn empty_or_only_nan_is_no_data_and_nan_beside_values_is_ignored() {
        let below = PassIf::Below(1.0);
        assert_eq!(judge(below, vector(&[])).1, Outcome::NoData);
        assert_eq!(judge(below, vector(&[f64::NAN])).1, Outcome::NoData);
        assert_eq!(judge(below, vector(&[f64::NAN, 0.5])).1, Outcome::Pass);
        assert_eq!(
            judge(below, Ok(QueryValue::Scalar(f64::NAN))).1,
            Outcome::NoData
        );
    }

    fn result(outcome: Outcome, on_no_data: OnNoData, advisory: bool) -> GateResult {
        GateResult {
            gate: "g".into(),
            env: "prod".into(),
            cluster: "a".into(),
            when: When::After,
            pass_if: PassIf::Below(1.0),
            on_no_data,
            advisory,
            query: "q".into(),
            samples: vec![],
            outcome,
        }
    }

    #[test]
    fn every_outcome_label_is_declared() {
        let error = Outcome::Error(EvaluationError::Template(TemplateError::Unterminated));
        for outcome in [Outcome::Pass, Outcome::Fail, Outcome::NoData, error] {
            assert!(OUTCOME_LABELS.contains(&outcome.label()), "{outcome:?}");
        }
    }

    #[test]
    fn what_blocks() {
        use OnNoData::{Pass, Pause};
        let error = Outcome::Error(EvaluationError::Query(QueryError::Malformed {
            reason: "x".into(),
        }));
        assert!(!result(Outcome::Pass, Pause, false).blocks());
        assert!(result(Outcome::Fail, Pass, false).blocks());
        assert!(result(Outcome::NoData, Pause, false).blocks());
        assert!(!result(Outcome::NoData, Pass, false).blocks());
        assert!(
            result(error.clone(), Pass, false).blocks(),
            "an error never passes"
        );
        assert!(!result(error.clone(), Pass, false).passed());
        assert!(!result(Outcome::Fail, Pause, true).blocks(), "advisory");
        assert!(!result(error, Pause, true).blocks(), "advisory");
    }

    #[test]
    fn before_gates_for_clusters_whose_share_rises() {
        let before = weights(&[("blue", 100), ("green", 0), ("grey", 0)]);
        let after = weights(&[("blue", 50), ("green", 50), ("grey", 0)]);
        assert_eq!(clusters_for(When::Before, &before, &after), ["green"]);
        assert_eq!(
            clusters_for(When::After, &before, &after),
            ["blue", "green"]
        );
        // Same weight, smaller total: blue's share rises though its weight does not.
        let before = weights(&[("blue", 100), ("green", 100)]);
        let after = weights(&[("blue", 100), ("green", 50)]);
        assert_eq!(clusters_for(When::Before, &before, &after), ["blue"]);
        // A new environment (all 0 before): everyone with traffic rises.
        let before = weights(&[("blue", 0)]);
        let after = weights(&[("blue", 10)]);
        assert_eq!(clusters_for(When::Before, &before, &after), ["blue"]);
    }
}
