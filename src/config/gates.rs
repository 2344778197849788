//! The gates part of an environment's config: where Prometheus is, the named
//! queries that gate each step, and the optional capacity gate.
//!
//! ```yaml
//! environments:
//!   prod:
//!     prometheus:
//!       url: http://prometheus.monitoring:9090
//!       timeout: 5s                      # per query; default 5s, at most 60s
//!       headers: {X-Scope-OrgID: prod}   # optional, not secret (Mimir/Cortex tenant)
//!       bearer_token_env: PROM_TOKEN     # optional: the token comes from this variable
//!     gates:
//!       - name: error-rate
//!         query: sum(rate(http_errors_total{cluster="{cluster}"}[2m])) / sum(rate(http_requests_total{cluster="{cluster}"}[2m]))
//!         when: after                    # before | after
//!         pass_if: {below: 0.01}         # below | at_most | above | at_least
//!         bake: 10m                      # after-gates only: how long it must hold
//!         on_no_data: pause              # pause (default) | pass
//!         advisory: false                # true: report, never block
//!     capacity:
//!       headroom: 1.2
//!       deployments:
//!         - {namespace: payments, name: api}
//! ```
//!
//! Validation reports every problem with its key path, like
//! [`crate::config::Config::validate`]; [`validate_environment`] is the one
//! entry point.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::promql as query;

/// Longest per-query timeout: a gate is asked while a person waits for a plan.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest bake: an operation held longer than a day is not one operation.
pub const MAX_BAKE: Duration = Duration::from_secs(24 * 3600);
const MAX_HEADROOM: f64 = 10.0;
const MAX_GATE_NAME: usize = 63;

/// Where the gates' queries go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL of a Prometheus-compatible API (`/api/v1/query` is appended),
    /// e.g. `http://prometheus.monitoring:9090` or `https://mimir/prometheus`.
    pub url: String,
    /// How long one query may take, connection included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra request headers, e.g. a tenant id. Not for secrets: the config
    /// is not a secret store; see `bearer_token_env`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Name of an environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// When a gate is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// For each cluster whose share of traffic rises: when the plan is made
    /// and again just before it is applied.
    Before,
    /// For each cluster that carries traffic after the step, for the bake.
    After,
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            When::Before => "before",
            When::After => "after",
        })
    }
}

/// What an empty answer (or one of only NaN) means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNoData {
    /// No data pauses the operation: a metric that stopped being reported
    /// must not look like a healthy one.
    #[default]
    Pause,
    /// No data counts as a pass (e.g. a before-gate on traffic metrics of a
    /// cluster at weight 0, which has no traffic yet).
    Pass,
}

impl fmt::Display for OnNoData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnNoData::Pause => "pause",
            OnNoData::Pass => "pass",
        })
    }
}

/// The comparison a value must meet for the gate to pass, written in words
/// (`{below: 0.01}`) because `>` opens a block scalar in YAML.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassIf {
    /// value < threshold
    Below(f64),
    /// value <= threshold
    AtMost(f64),
    /// value > threshold
    Above(f64),
    /// value >= threshold
    AtLeast(f64),
}

impl PassIf {
    pub fn threshold(self) -> f64 {
        match self {
            PassIf::Below(t) | PassIf::AtMost(t) | PassIf::Above(t) | PassIf::AtLeast(t) => t,
        }
    }

    /// The PromQL-style operator: `<`, `<=`, `>`, `>=`.
    pub fn operator(self) -> &'static str {
        match self {
            PassIf::Below(_) => "<",
            PassIf::AtMost(_) => "<=",
            PassIf::Above(_) => ">",
            PassIf::AtLeast(_) => ">=",
        }
    }

    /// Whether `value` passes. NaN never does (every comparison with it is
    /// false); evaluation treats an all-NaN answer as no data before this.
    pub fn passes(self, value: f64) -> bool {
        match self {
            PassIf::Below(t) => value < t,
            PassIf::AtMost(t) => value <= t,
            PassIf::Above(t) => value > t,
            PassIf::AtLeast(t) => value >= t,
        }
    }
}

impl fmt::Display for PassIf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.operator(), self.threshold())
    }
}

/// One named query that gates steps.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    pub name: String,
    /// PromQL; `{cluster}` and `{env}` inside quoted strings are replaced by
    /// the cluster's and environment's names, escaped (see [`query`]).
    pub query: String,
    pub when: When,
    pub pass_if: PassIf,
    /// After-gates: how long the gate must keep passing after a step before
    /// the next step's plan is posted.
    #[serde(default, with = "humantime_serde")]
    pub bake: Option<Duration>,
    #[serde(default)]
    pub on_no_data: OnNoData,
    /// Report the gate's value but never block on it: for trying a query.
    #[serde(default)]
    pub advisory: bool,
}

/// What a failing gate does to a running operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnGateFailure {
    /// Pause, and post the rollback plan for the usual approvals.
    #[default]
    Pause,
    /// Roll back without waiting for an approval.
    Rollback,
}

/// The capacity gate: listed Deployments must have enough ready replicas in
/// a cluster before its share of traffic rises.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    pub deployments: Vec<DeploymentRef>,
    /// The target must have this many times its new share of the serving
    /// replicas (1.2: 20% spare). At least 1.
    #[serde(default = "default_headroom")]
    pub headroom: f64,
}

fn default_headroom() -> f64 {
    1.0
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for DeploymentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An environment's gates sections, borrowed for validation.
#[derive(Clone, Copy, Debug, Default)]
pub struct GatesSection<'a> {
    pub prometheus: Option<&'a PrometheusConfig>,
    pub gates: &'a [GateConfig],
    pub capacity: Option<&'a CapacityConfig>,
}

/// Everything wrong with an environment's gates; `env_key` is the
/// environment's key path (`environments.prod`).
pub fn validate_environment(env_key: &str, section: GatesSection<'_>) -> Vec<ConfigProblem> {
    let mut problems = Problems::default();
    if let Some(prometheus) = section.prometheus {
        validate_prometheus(&format!("{env_key}.prometheus"), prometheus, &mut problems);
    } else if !section.gates.is_empty() {
        problems.add(
            format!("{env_key}.prometheus"),
            "gates need a prometheus section with the url to query",
        );
    }
    validate_gates(&format!("{env_key}.gates"), section.gates, &mut problems);
    if let Some(capacity) = section.capacity {
        validate_capacity(&format!("{env_key}.capacity"), capacity, &mut problems);
    }
    problems.0
}

fn validate_prometheus(key: &str, config: &PrometheusConfig, p: &mut Problems) {
    if let Err(message) = check_base_url(&config.url) {
        p.add(format!("{key}.url"), message);
    }
    if config.timeout.is_zero() {
        p.add(format!("{key}.timeout"), "must be longer than 0, e.g. 5s");
    } else if config.timeout > MAX_TIMEOUT {
        p.add(
            format!("{key}.timeout"),
            "at most 60s: gates are asked while someone waits for the plan",
        );
    }
    for (name, value) in &config.headers {
        if let Err(message) = check_header(name, value) {
            p.add(format!("{key}.headers.{name}"), message);
        }
    }
    if let Some(var) = &config.bearer_token_env {
        if !is_env_var_name(var) {
            p.add(
                format!("{key}.bearer_token_env"),
                format!("`{var}` is not an environment variable name (letters, digits, `_`)"),
            );
        }
    }
}

fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("no credentials in the URL: use bearer_token_env".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "`{url}` has a query or fragment; give the base URL, /api/v1/query is appended"
        ));
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    let parsed = reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not an HTTP header name"))?;
    if parsed == reqwest::header::AUTHORIZATION {
        return Err("no credentials in the config: use bearer_token_env".into());
    }
    reqwest::header::HeaderValue::from_str(value)
        .map(|_| ())
        .map_err(|_| "not a valid header value (printable ASCII only)".into())
}

fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_gates(key: &str, gates: &[GateConfig], p: &mut Problems) {
    let mut names = BTreeSet::new();
    for (i, gate) in gates.iter().enumerate() {
        let gkey = format!("{key}[{i}]");
        if let Err(message) = check_gate_name(&gate.name) {
            p.add(format!("{gkey}.name"), message);
        } else if !names.insert(gate.name.as_str()) {
            p.add(
                format!("{gkey}.name"),
                format!("duplicate gate name {}", gate.name),
            );
        }
        if gate.query.trim().is_empty() {
            p.add(format!("{gkey}.query"), "must not be empty");
        } else if let Err(error) = query::check(&gate.query) {
            p.add(format!("{gkey}.query"), error.to_string());
        }
        if !gate.pass_if.threshold().is_finite() {
            p.add(
                format!("{gkey}.pass_if"),
                "the threshold must be a finite number",
            );
        }
        if let Some(message) = bake_problem(gate) {
            p.add(format!("{gkey}.bake"), message);
        }
    }
}

fn check_gate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    let simple = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !simple || name.len() > MAX_GATE_NAME {
        return Err(format!(
            "`{name}`: gate names use letters, digits, `-`, `_` and `.`, at most {MAX_GATE_NAME}"
        ));
    }
    Ok(())
}

fn bake_problem(gate: &GateConfig) -> Option<String> {
    let bake = gate.bake?;
    if gate.when == When::Before {
        return Some("only after-gates bake; remove it or set `when: after`".into());
    }
    if bake.is_zero() {
        return Some("must be longer than 0; leave it out for no bake".into());
    }
    (bake > MAX_BAKE).then(|| "at most 24h".into())
}

fn validate_capacity(key: &str, config: &CapacityConfig, p: &mut Problems) {
    if config.deployments.is_empty() {
        p.add(
            format!("{key}.deployments"),
            "list at least one Deployment (namespace and name)",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, deployment) in config.deployments.iter().enumerate() {
        let dkey = format!("{key}.deployments[{i}]");
        if !is_dns_label(&deployment.namespace) {
            p.add(
                format!("{dkey}.namespace"),
                format!("`{}` is not a namespace name", deployment.namespace),
            );
        }
        if !is_dns_subdomain(&deployment.name) {
            p.add(
                format!("{dkey}.name"),
                format!("`{}` is not a Deployment name", deployment.name),
            );
        } else if !seen.insert(deployment) {
            p.add(dkey, format!("duplicate Deployment {deployment}"));
        }
    }
    let headroom = config.headroom;
    if !headroom.is_finite() || !(1.0..=MAX_HEADROOM).contains(&headroom) {
        p.add(
            format!("{key}.headroom"),
            format!("{headroom} is out of range: 1 (no spare) to {MAX_HEADROOM}"),
        );
    }
}

/// RFC 1123 label: what Kubernetes accepts as a namespace name.
fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// RFC 1123 subdomain: what Kubernetes accepts as a Deployment name.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the environment section these types will live in.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Env {
        #[serde(default)]
        prometheus: Option<PrometheusConfig>,
        #[serde(default)]
        gates: Vec<GateConfig>,
        #[serde(default)]
        capacity: Option<CapacityConfig>,
        #[serde(default)]
        on_gate_failure: OnGateFailure,
    }

    fn parse(yaml: &str) -> Env {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    fn problems(env: &Env) -> Vec<ConfigProblem> {
        validate_environment(
            "environments.prod",
            GatesSection {
                prometheus: env.prometheus.as_ref(),
                gates: &env.gates,
                capacity: env.capacity.as_ref(),
            },
        )
    }

    fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    const GOOD: &str = r#"
prometheus:
  url: http://prometheus.monitoring:9090
  headers: {X-Scope-OrgID: prod}
  bearer_token_env: PROM_TOKEN
gates:
  - name: error-rate
    query: 'sum(rate(errors{cluster="{cluster}", env="{env}"}[2m]))'
    when: after
    pass_if: {below: 0.01}
    bake: 10m
  - name: latency.p99
    query: 'max(p99{cluster=~"{cluster}"})'
    when: before
    pass_if: {at_most: 0.5}
    on_no_data: pass
    advisory: true
capacity:
  headroom: 1.2
  deployments:
    - {namespace: payments, name: api}
on_gate_failure: rollback
"#;

    #[test]
    fn a_full_section_parses_with_its_defaults_and_is_valid() {
        let env = parse(GOOD);
        assert_eq!(problems(&env), vec![]);
        let prometheus = env.prometheus.as_ref().unwrap();
        assert_eq!(prometheus.timeout, Duration::from_secs(5));
        assert_eq!(prometheus.bearer_token_env.as_deref(), Some("PROM_TOKEN"));
        let [after, before] = &env.gates[..] else {
            panic!("two gates")
        };
        assert_eq!(after.when, When::After);
        assert_eq!(after.pass_if, PassIf::Below(0.01));
        assert_eq!(after.bake, Some(Duration::from_secs(600)));
        assert_eq!(after.on_no_data, OnNoData::Pause, "pause is the default");
        assert!(!after.advisory);
        assert_eq!(before.pass_if, PassIf::AtMost(0.5));
        assert_eq!(before.on_no_data, OnNoData::Pass);
        assert!(before.advisory);
        assert_eq!(env.capacity.as_ref().unwrap().headroom, 1.2);
        assert_eq!(env.on_gate_failure, OnGateFailure::Rollback);
    }

    #[test]
    fn defaults_of_capacity_and_on_gate_failure() {
        let env = parse("capacity:\n  deployments: [{namespace: a, name: b}]\n");
        assert_eq!(env.capacity.unwrap().headroom, 1.0);
        assert_eq!(env.on_gate_failure, OnGateFailure::Pause);
    }

    #[test]
    fn unknown_keys_and_comparisons_are_refused_by_serde() {
        let typo = GOOD.replace("on_no_data: pass", "on_nodata: pass");
        assert!(serde_saphyr::from_str::<Env>(&typo).is_err());
        let symbol = GOOD.replace("{below: 0.01}", "'< 0.01'");
        assert!(serde_saphyr::from_str::<Env>(&symbol).is_err());
        let when = GOOD.replace("when: after", "when: during");
        assert!(serde_saphyr::from_str::<Env>(&when).is_err());
    }

    #[test]
    fn gates_without_prometheus_are_a_problem() {
        let env =
            parse("gates:\n  - {name: up, query: 'up', when: after, pass_if: {at_least: 1}}\n");
        assert_eq!(keys(&problems(&env)), vec!["environments.prod.prometheus"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let env = parse(
            r#"
prometheus:
  url: http://user:pw@prometheus:9090/?x=1
  timeout: 2m
  headers: {Authorization: Bearer x, "bad header": v}
  bearer_token_env: 1TOKEN
gates:
  - name: dup
    query: 'errors{cluster={cluster}}'
    when: before
    pass_if: {below: .nan}
    bake: 5m
  - name: dup
    query: ''
    when: after
    pass_if: {above: 1}
    bake: 0s
  - name: 'has space'
    query: 'up{cluster="{clsuter}"}'
    when: after
    pass_if: {above: 1}
    bake: 25h
capacity:
  headroom: 0.5
  deployments:
    - {namespace: Payments, name: api}
    - {namespace: payments, name: api_}
    - {namespace: a, name: b}
    - {namespace: a, name: b}
"#,
        );
        let found = problems(&env);
        let expected = [
            "environments.prod.prometheus.url",
            "environments.prod.prometheus.timeout",
            "environments.prod.prometheus.headers.Authorization",
            "environments.prod.prometheus.headers.bad header",
            "environments.prod.prometheus.bearer_token_env",
            "environments.prod.gates[0].query",
            "environments.prod.gates[0].pass_if",
            "environments.prod.gates[0].bake",
            "environments.prod.gates[1].name",
            "environments.prod.gates[1].query",
            "environments.prod.gates[1].bake",
            "environments.prod.gates[2].name",
            "environments.prod.gates[2].query",
            "environments.prod.gates[2].bake",
            "environments.prod.capacity.deployments[0].namespace",
            "environments.prod.capacity.deployments[1].name",
            "environments.prod.capacity.deployments[3]",
            "environments.prod.capacity.headroom",
        ];
        assert_eq!(keys(&found), expected, "{found:#?}");
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        let text = text.join("\n");
        assert!(text.contains("duplicate gate name dup"), "{text}");
        assert!(text.contains("{clsuter}"), "{text}");
        assert!(text.contains("only after-gates bake"), "{text}");
        assert!(text.contains("use bearer_token_env"), "{text}");
    }

    #[test]
    fn a_url_with_a_path_prefix_is_a_base_url() {
        assert!(check_base_url("https://mimir.example.com/prometheus").is_ok());
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("not a url").is_err());
    }

    #[test]
    fn pass_if_compares_as_named() {
        assert!(PassIf::Below(1.0).passes(0.5) && !PassIf::Below(1.0).passes(1.0));
        assert!(PassIf::AtMost(1.0).passes(1.0) && !PassIf::AtMost(1.0).passes(1.5));
        assert!(PassIf::Above(1.0).passes(1.5) && !PassIf::Above(1.0).passes(1.0));
        assert!(PassIf::AtLeast(1.0).passes(1.0) && !PassIf::AtLeast(1.0).passes(0.5));
        assert!(!PassIf::AtMost(1.0).passes(f64::NAN));
        assert!(PassIf::Below(1.0).passes(f64::NEG_INFINITY));
        assert_eq!(PassIf::AtLeast(0.99).to_string(), ">= 0.99");
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_label("payments-1"));
        assert!(!is_dns_label("-a") && !is_dns_label("") && !is_dns_label("A"));
        assert!(is_dns_subdomain("api.v2"));
        assert!(!is_dns_subdomain("api..v2"));
    }
}
