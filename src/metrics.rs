//! Prometheus metrics, served at `/metrics`.
//!
//! Step and approval counts are taken by the engine from journal records as
//! they are made durable, so the numbers count exactly what the audit trail
//! holds. Backend request times come from the [`MeteredBackend`] wrapper,
//! Slack events from the intake, gate evaluations from the gates'
//! evaluator. The `leader` and `ready` gauges are what the alerts in
//! `manifests/monitoring/` watch.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::backend::{
    BackendError, Convergence, GateFailure, Removal, RoutingBackend, Snapshot, Written,
};
use crate::config::gates::DeploymentRef;
use crate::config::{ClusterConfig, EnvironmentConfig};
use crate::plan::Weights;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabel {
    env: String,
    gate: String,
    result: String,
}

/// Step results an alert watches: created at 0 on start, so that the first
/// one is an increase Prometheus can see (a series that appears at 1 has no
/// earlier sample to rise from).
const ALERTED_STEP_RESULTS: [&str; 1] = ["incomplete"];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn step_buckets() -> Histogram {
    // 10 ms … ~5.5 min: a step includes waiting for DNS.
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

fn request_buckets() -> Histogram {
    // 1 ms … ~16 s: one API call.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct Metrics {
    registry: Mutex<Registry>,
    steps: Family<ResultLabel, Counter>,
    step_seconds: Histogram,
    approvals: Family<ResultLabel, Counter>,
    slack_events: Family<EventLabel, Counter>,
    backend_seconds: HistogramFamily<BackendLabel>,
    leader: Gauge,
    ready: Gauge,
    gate_evaluations: Family<GateLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self {
            registry: Mutex::new(Registry::with_prefix("failover_bot")),
            steps: Family::default(),
            step_seconds: step_buckets(),
            approvals: Family::default(),
            slack_events: Family::default(),
            backend_seconds: Family::new_with_constructor(request_buckets),
            leader: Gauge::default(),
            ready: Gauge::default(),
            gate_evaluations: Family::default(),
        };
        metrics.register();
        for result in ALERTED_STEP_RESULTS {
            let _created = metrics.steps.get_or_create(&ResultLabel {
                result: result.into(),
            });
        }
        metrics
    }

    fn register(&self) {
        let mut registry = self.lock();
        registry.register("steps", "Steps by result", self.steps.clone());
        registry.register(
            "step_duration_seconds",
            "Time from a step's start to its result, verification included",
            self.step_seconds.clone(),
        );
        registry.register(
            "approvals",
            "Approval decisions by result",
            self.approvals.clone(),
        );
        registry.register(
            "slack_events",
            "Slack deliveries by type",
            self.slack_events.clone(),
        );
        registry.register(
            "backend_request_duration_seconds",
            "Backend calls by backend and cluster",
            self.backend_seconds.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            self.leader.clone(),
        );
        registry.register(
            "ready",
            "1 while this replica is ready: it leads and has resumed the journal",
            self.ready.clone(),
        );
        registry.register(
            "gate_evaluations",
            "Gate evaluations by environment, gate and result (pass, fail, no_data, error)",
            self.gate_evaluations.clone(),
        );
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Creates gate `gate`'s series at 0 for every result, so that its
    /// first error is an increase the `FailoverBotGateErrors` alert sees.
    /// Call once per configured gate at start.
    pub fn declare_gate(&self, env: &str, gate: &str, results: &[&str]) {
        for result in results {
            let _created = self.gate_evaluations.get_or_create(&GateLabel {
                env: env.into(),
                gate: gate.into(),
                result: (*result).into(),
            });
        }
    }

    /// Counts one evaluation of gate `gate` in `env` with `result`.
    pub fn gate_evaluated(&self, env: &str, gate: &str, result: &str) {
        self.gate_evaluations
            .get_or_create(&GateLabel {
                env: env.into(),
                gate: gate.into(),
                result: result.into(),
            })
            .inc();
    }

    /// A step ended with `result` (`applied`, `restored`, …) after `millis`.
    pub fn step_finished(&self, result: &str, millis: u64) {
        self.steps
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        self.step_seconds.observe(millis as f64 / 1000.0);
    }

    /// An approval was decided (`approved`, `rejected`, `expired`, …).
    pub fn approval_decided(&self, result: &str) {
        self.approvals
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts one delivery from Slack (`slash_command`, `reaction_added`…).
    pub fn slack_event(&self, kind: &str) {
        self.slack_events
            .get_or_create(&EventLabel {
                r#type: kind.into(),
            })
            .inc();
    }

    fn backend_call(&self, backend: &str, cluster: &str, started: Instant) {
        self.backend_seconds
            .get_or_create(&BackendLabel {
                backend: backend.into(),
                cluster: cluster.into(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.lock());
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Times every call of the backend it wraps. Calls about one cluster are
/// labelled with it; calls about a whole environment with `*`.
pub struct MeteredBackend {
    inner: Arc<dyn RoutingBackend>,
    name: String,
    metrics: Arc<Metrics>,
}

impl MeteredBackend {
    pub fn new(inner: Arc<dyn RoutingBackend>, name: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            name: name.into(),
            metrics,
        }
    }

    fn done(&self, cluster: &str, started: Instant) {
        self.metrics.backend_call(&self.name, cluster, started);
    }
}

/// The label of calls about a whole environment (all its clusters).
fn env_label(_env: &EnvironmentConfig) -> String {
    "*".into()
}

#[async_trait]
impl RoutingBackend for MeteredBackend {
    async fn read(&self, env: &EnvironmentConfig) -> Result<Snapshot, BackendError> {
        let started = Instant::now();
        let result = self.inner.read(env).await;
        self.done(&env_label(env), started);
        result
    }

    async fn check_identity(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        let started = Instant::now();
        let result = self.inner.check_identity(cluster).await;
        self.done(&cluster.name, started);
        result
    }

    async fn missing_permissions(&self, cluster: &ClusterConfig) -> Option<Vec<String>> {
        self.inner.missing_permissions(cluster).await
    }
    async fn check_health(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        let started = Instant::now();
        let result = self.inner.check_health(cluster).await;
        self.done(&cluster.name, started);
        result
    }

    async fn set_weight(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
        version: Option<&str>,
    ) -> Result<Written, BackendError> {
        let started = Instant::now();
        let result = self.inner.set_weight(cluster, weight, version).await;
        self.done(&cluster.name, started);
        result
    }

    async fn create(&self, cluster: &ClusterConfig) -> Result<Written, BackendError> {
        let started = Instant::now();
        let result = self.inner.create(cluster).await;
        self.done(&cluster.name, started);
        result
    }

    async fn create_at(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
    ) -> Result<Written, BackendError> {
        let started = Instant::now();
        let result = self.inner.create_at(cluster, weight).await;
        self.done(&cluster.name, started);
        result
    }

    fn removal(&self) -> Removal {
        self.inner.removal()
    }

    async fn ready_replicas(
        &self,
        cluster: &ClusterConfig,
        deployment: &DeploymentRef,
    ) -> Result<Option<u32>, BackendError> {
        let started = Instant::now();
        let result = self.inner.ready_replicas(cluster, deployment).await;
        self.done(&cluster.name, started);
        result
    }

    async fn delete(
        &self,
        cluster: &ClusterConfig,
        version: Option<&str>,
    ) -> Result<Written, BackendError> {
        let started = Instant::now();
        let result = self.inner.delete(cluster, version).await;
        self.done(&cluster.name, started);
        result
    }

    async fn verify(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        let started = Instant::now();
        let result = self.inner.verify(env, expected).await;
        self.done(&env_label(env), started);
        result
    }

    async fn observe(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        let started = Instant::now();
        let result = self.inner.observe(env, expected).await;
        self.done(&env_label(env), started);
        result
    }

    async fn write_all(
        &self,
        env: &EnvironmentConfig,
        before: &Weights,
        after: &Weights,
    ) -> Option<Result<Written, BackendError>> {
        let started = Instant::now();
        let result = self.inner.write_all(env, before, after).await;
        if result.is_some() {
            self.done(&env_label(env), started);
        }
        result
    }
}
