//! Gates on real signals: Prometheus queries evaluated before and after each
//! step, and the capacity gate (ready replicas against the traffic a cluster
//! is about to take).
//!
//! The environment's `prometheus`, `gates` and `capacity` sections are in
//! [`crate::config::gates`]; `{cluster}` / `{env}` go into a query through
//! [`crate::promql`].
//!
//! - [`prometheus`] — the instant-query client and its typed answers.
//! - [`evaluate`] — one [`GateResult`] per gate and cluster: the values,
//!   the comparison, pass / fail / no data / error; which clusters a step's
//!   gates are asked for.
//! - [`capacity`] — the capacity arithmetic and the Deployment reader.
//!
//! Everything here returns facts (values, thresholds, outcomes, errors as
//! enums); the texts people read are made from them by the engine's
//! messages, not here.

pub mod capacity;
pub mod evaluate;
pub mod prometheus;

pub use crate::config::gates::{
    validate_environment, CapacityConfig, DeploymentRef, GateConfig, GatesSection, OnGateFailure,
    OnNoData, PassIf, PrometheusConfig, When,
};
pub use evaluate::{clusters_for, gates_at, EvaluationError, Evaluator, GateResult, Outcome};
pub use prometheus::{PrometheusClient, QueryError, QueryValue, Sample};
