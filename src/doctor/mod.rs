//! The readiness doctor: would a failover go through right now, and has
//! anyone practised one lately? For every environment and each of its
//! clusters it asks what the engine's gates ask before a step (identity,
//! health, Prometheus gates), what the bot may do there
//! (SelfSubjectAccessReviews), whether DNS is the bot's to write and
//! serves what is set, who holds the Lease, and how old the last drill is.
//!
//! Everything is read through the same parts the engine uses (the
//! [`RoutingBackend`], the gate [`Evaluator`], the Route53 checks of
//! `failover-bot check`), so the doctor sees what a step would see. The
//! findings are plain facts ([`crate::readiness`]); `failover-bot doctor`
//! prints them, and [`schedule`] has `serve` post them when they change.

mod drills;
mod home;
pub mod schedule;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::backend::route53::Route53;
use crate::backend::RoutingBackend;
use crate::clock::Clock;
use crate::config::gates::GateConfig;
use crate::config::{ClusterConfig, Config, EnvironmentConfig, RoutingMode};
use crate::gates::{Evaluator, GateResult, Outcome, PrometheusClient};
use crate::ids::EnvId;
use crate::journal::ledger::Finished;
use crate::readiness::{Check, Finding, Report, Severity};

pub use drills::{is_drill, last_drill};
pub use home::Home;

/// The name of the report about the bot's own Lease and journal.
pub const HOME: &str = "home";

/// What the doctor is built from.
pub struct DoctorParts {
    pub config: Arc<Config>,
    /// The backend of the config's mode, as the engine gets it.
    pub backend: Arc<dyn RoutingBackend>,
    /// For the registry check of mode `route53` and the records check of
    /// environments with a `route53` section.
    pub route53: Option<Arc<Route53>>,
    /// The bot's home cluster, when its Lease and journal are to be checked.
    pub home: Option<Home>,
    pub clock: Arc<dyn Clock>,
}

pub struct Doctor {
    config: Arc<Config>,
    backend: Arc<dyn RoutingBackend>,
    route53: Option<Arc<Route53>>,
    home: Option<Home>,
    clock: Arc<dyn Clock>,
    /// One per environment with a `prometheus` section; why it could not
    /// be made (a token variable unset, say) otherwise.
    evaluators: BTreeMap<EnvId, Result<Evaluator, String>>,
}

impl Doctor {
    pub fn new(parts: DoctorParts) -> Doctor {
        let evaluators = parts
            .config
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
        Doctor {
            config: parts.config,
            backend: parts.backend,
            route53: parts.route53,
            home: parts.home,
            clock: parts.clock,
            evaluators,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Everything about `env`; `finished` holds its finished operations
    /// (from the journal), for the age of its last drill (`None`: no
    /// journal to read them from).
    pub async fn examine(&self, env: &EnvId, finished: Option<&[Finished]>) -> Report {
        let mut findings = Vec::new();
        if let Some(environment) = self.config.environment(env) {
            let clusters = environment
                .clusters
                .iter()
                .map(|c| self.examine_cluster(env, environment, c));
            findings.extend(join_all(clusters).await.into_iter().flatten());
            findings.extend(self.drift(environment).await);
            findings.extend(self.dns(environment).await);
        }
        findings.push(self.drill_age(env, finished));
        Report {
            env: env.clone(),
            findings,
        }
    }

    /// The bot's own Lease and journal in its home cluster; `None` when no
    /// home cluster was given.
    pub async fn examine_home(&self) -> Option<Report> {
        let home = self.home.as_ref()?;
        Some(Report {
            env: EnvId::from(HOME),
            findings: home.examine(self.clock.now()).await,
        })
    }

    async fn examine_cluster(
        &self,
        env: &str,
        environment: &EnvironmentConfig,
        cluster: &ClusterConfig,
    ) -> Vec<Finding> {
        let mut findings = vec![self.identity(cluster).await, self.health(cluster).await];
        findings.extend(self.permissions(cluster).await);
        findings.extend(self.gates(env, environment, cluster).await);
        findings
    }

    async fn identity(&self, cluster: &ClusterConfig) -> Finding {
        let subject = cluster.name.as_str();
        match self.backend.check_identity(cluster).await {
            Ok(()) => Finding::ok(
                Check::Identity,
                subject,
                format!("context {} answers as {subject}", cluster.context),
            ),
            Err(e) => Finding::new(Severity::Problem, Check::Identity, subject, e.to_string()),
        }
    }

    async fn health(&self, cluster: &ClusterConfig) -> Finding {
        let subject = cluster.name.as_str();
        match self.backend.check_health(cluster).await {
            Ok(()) => Finding::ok(Check::Health, subject, "the health gate passes"),
            // A step raising this cluster's traffic would be refused.
            Err(e) => Finding::new(Severity::Problem, Check::Health, subject, e.to_string()),
        }
    }

    async fn permissions(&self, cluster: &ClusterConfig) -> Option<Finding> {
        let missing = self.backend.missing_permissions(cluster).await?;
        let subject = cluster.name.as_str();
        Some(if missing.is_empty() {
            Finding::ok(
                Check::Permissions,
                subject,
                format!("allowed everything mode {} needs", self.config.routing.mode),
            )
        } else {
            Finding::new(
                Severity::Problem,
                Check::Permissions,
                subject,
                format!(
                    "not allowed to {} (see manifests/target/MODE/rbac.yaml)",
                    missing.join(", ")
                ),
            )
        })
    }

    /// Every Prometheus gate of the environment, read now for this cluster.
    async fn gates(
        &self,
        env: &str,
        environment: &EnvironmentConfig,
        cluster: &ClusterConfig,
    ) -> Vec<Finding> {
        if environment.gates.is_empty() {
            return Vec::new();
        }
        let evaluator = match self.evaluators.get(env) {
            Some(Ok(evaluator)) => evaluator,
            Some(Err(why)) => return vec![no_prometheus(cluster, why)],
            None => return vec![no_prometheus(cluster, "no prometheus section")],
        };
        let results = environment
            .gates
            .iter()
            .map(|gate| evaluator.evaluate(env, gate, &cluster.name));
        join_all(results)
            .await
            .iter()
            .zip(&environment.gates)
            .map(|(result, gate)| gate_finding(gate, result))
            .collect()
    }

    /// Weights as set against weights as served, read the way `status`
    /// reads them.
    async fn drift(&self, environment: &EnvironmentConfig) -> Vec<Finding> {
        let snapshot = match self.backend.read(environment).await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                let detail = format!("cannot be read: {e}");
                return vec![Finding::new(
                    Severity::Problem,
                    Check::Weight,
                    "weights",
                    detail,
                )];
            }
        };
        let set = snapshot.weights();
        let observed = match self.backend.observe(environment, &set).await {
            Ok(observed) => observed,
            Err(e) => {
                return vec![Finding::new(
                    Severity::Warning,
                    Check::Drift,
                    "weights",
                    format!("cannot read what serves traffic: {e}"),
                )]
            }
        };
        observed
            .iter()
            .map(|c| {
                let weight = set.get(&c.cluster).map_or("none".into(), |w| w.to_string());
                if c.is_complete() {
                    Finding::ok(
                        Check::Drift,
                        c.cluster.as_str(),
                        format!("weight {weight} set and served ({} objects)", c.total),
                    )
                } else {
                    // Possibly a step converging right now; a warning, not
                    // a problem, since the next step waits for it anyway.
                    Finding::new(
                        Severity::Warning,
                        Check::Drift,
                        c.cluster.as_str(),
                        format!(
                            "weight {weight} set, not served by {}",
                            c.stragglers.join(", ")
                        ),
                    )
                }
            })
            .collect()
    }

    /// Route53: every record has a set per cluster, and in mode `route53`
    /// the external-dns registry leaves the records to the bot.
    async fn dns(&self, environment: &EnvironmentConfig) -> Vec<Finding> {
        let (Some(route53), Some(dns)) = (&self.route53, &environment.route53) else {
            return Vec::new();
        };
        let zone = format!("zone {}", dns.zone_id);
        let records = crate::backend::dns::check_records(route53, environment, dns).await;
        let mut findings = vec![finding_of(
            Check::Records,
            &zone,
            records,
            "every record has a weighted set per cluster",
        )];
        if self.config.routing.mode == RoutingMode::Route53 {
            let owned = crate::backend::dns::check_ownership(route53, environment, dns).await;
            findings.push(finding_of(
                Check::Ownership,
                &zone,
                owned,
                &format!("the registry leaves every record to owner {}", dns.owner_id),
            ));
        }
        findings
    }

    fn drill_age(&self, env: &str, finished: Option<&[Finished]>) -> Finding {
        let Some(finished) = finished else {
            return drills::unknown_age();
        };
        drills::age_finding(
            last_drill(finished, env),
            self.clock.now(),
            self.config.doctor.drill_max_age,
        )
    }
}

/// Problems found by one of `check`'s Route53 checks, as one finding.
fn finding_of(check: Check, subject: &str, problems: Vec<String>, fine: &str) -> Finding {
    if problems.is_empty() {
        Finding::ok(check, subject, fine)
    } else {
        Finding::new(Severity::Problem, check, subject, problems.join("; "))
    }
}

fn no_prometheus(cluster: &ClusterConfig, why: &str) -> Finding {
    Finding::new(
        Severity::Problem,
        Check::Gate,
        cluster.name.as_str(),
        format!("the gates cannot be read: {why}"),
    )
}

/// A gate that cannot be read would stop every step: a problem. One that
/// reads but would block now is how things stand, not how they are set up:
/// a warning.
fn gate_finding(gate: &GateConfig, result: &GateResult) -> Finding {
    let subject = format!("{}@{}", gate.name, result.cluster);
    let values = || {
        result
            .failing()
            .map(|s| s.value.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &result.outcome {
        Outcome::Error(e) => Finding::new(
            Severity::Problem,
            Check::Gate,
            subject,
            format!("cannot be evaluated: {e}"),
        ),
        _ if result.passed() => Finding::ok(Check::Gate, subject, "passes"),
        Outcome::NoData => Finding::new(
            Severity::Warning,
            Check::Gate,
            subject,
            "no data: it would block a step now",
        ),
        _ if result.advisory => Finding::new(
            Severity::Warning,
            Check::Gate,
            subject,
            format!("advisory, fails now ({} {})", values(), gate.pass_if),
        ),
        _ => Finding::new(
            Severity::Warning,
            Check::Gate,
            subject,
            format!("would block a step now: {} not {}", values(), gate.pass_if),
        ),
    }
}

/// `duration` as people read an age: whole days past a day, else hours
/// and minutes, else seconds (humantime would say `1month 13h 26m 24s`).
pub fn age(duration: Duration) -> String {
    let secs = duration.as_secs();
    let plural = |n: u64, unit: &str| match n {
        1 => format!("1 {unit}"),
        n => format!("{n} {unit}s"),
    };
    match secs {
        s if s >= 86_400 => plural(s / 86_400, "day"),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
