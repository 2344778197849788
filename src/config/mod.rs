//! The YAML config file (shape fixed by `design.md`) and its validation.
//!
//! Loading has two stages: serde turns YAML into these types (unknown keys and
//! unknown modes are errors, reported with the key path and the line), then
//! [`Config::validate`] checks what types cannot express and reports *every*
//! problem at once, each with its key path — a broken config during an
//! incident should cost one edit, not five.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod doctor;
pub mod gates;

use crate::ids::{ClusterId, EnvId};
use crate::plan::{validate_steps, Weights};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub slack: SlackConfig,
    pub approval: ApprovalConfig,
    #[serde(default)]
    pub routing: RoutingConfig,
    pub environments: BTreeMap<EnvId, EnvironmentConfig>,
    /// The readiness doctor (`failover-bot doctor`, and `serve`'s scheduled
    /// check when `doctor.every` is set).
    #[serde(default)]
    pub doctor: doctor::DoctorConfig,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Channels where `/failover` is accepted; empty means any channel.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// Who may act and how approvals work: the defaults for every environment
/// (the top-level `approval:`), each key overridable per environment.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Slack user ids (`U…`, `W…`) or user-group ids (`S…`).
    pub approvers: Vec<String>,
    /// How many distinct approvers (none of them the requester) each plan
    /// needs.
    #[serde(default = "default_approvals_required")]
    pub approvals_required: u32,
    /// Who may start operations; anyone in the environment's channels when
    /// left out.
    #[serde(default)]
    pub requesters: Option<Vec<String>>,
    /// Who may use `shift!` (break-glass); the approvers when left out.
    #[serde(default)]
    pub break_glass: Option<Vec<String>>,
    /// Every weight change must say why (`… because INC-4711`).
    #[serde(default)]
    pub require_reason: bool,
    #[serde(default = "default_reaction")]
    pub reaction: String,
    #[serde(default = "default_reject_reaction")]
    pub reject_reaction: String,
    #[serde(default = "default_expiry", with = "humantime_serde")]
    pub expires_after: Duration,
}

/// An environment's own `approval:` keys; each one left out takes the
/// top-level value.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalOverride {
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    #[serde(default)]
    pub approvals_required: Option<u32>,
    #[serde(default)]
    pub requesters: Option<Vec<String>>,
    #[serde(default)]
    pub break_glass: Option<Vec<String>>,
    #[serde(default)]
    pub require_reason: Option<bool>,
    #[serde(default)]
    pub reaction: Option<String>,
    #[serde(default)]
    pub reject_reaction: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    pub expires_after: Option<Duration>,
}

impl ApprovalConfig {
    /// These defaults with an environment's own keys on top.
    pub fn with(&self, own: Option<&ApprovalOverride>) -> ApprovalConfig {
        let Some(own) = own else {
            return self.clone();
        };
        ApprovalConfig {
            approvers: own
                .approvers
                .clone()
                .unwrap_or_else(|| self.approvers.clone()),
            approvals_required: own.approvals_required.unwrap_or(self.approvals_required),
            requesters: own.requesters.clone().or_else(|| self.requesters.clone()),
            break_glass: own.break_glass.clone().or_else(|| self.break_glass.clone()),
            require_reason: own.require_reason.unwrap_or(self.require_reason),
            reaction: own
                .reaction
                .clone()
                .unwrap_or_else(|| self.reaction.clone()),
            reject_reaction: own
                .reject_reaction
                .clone()
                .unwrap_or_else(|| self.reject_reaction.clone()),
            expires_after: own.expires_after.unwrap_or(self.expires_after),
        }
    }

    /// Who may use break-glass.
    pub fn break_glass(&self) -> &[String] {
        self.break_glass.as_deref().unwrap_or(&self.approvers)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingMode {
    /// Patch Lunar's `RoutingWeight` resources; their controller and
    /// external-dns carry the weight to Ingresses and Route53.
    #[default]
    RoutingWeight,
    /// Write the weight annotations on controlled Ingresses/Services directly.
    IngressAnnotations,
    /// Write Route53 weighted records directly.
    Route53,
}

impl fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoutingMode::RoutingWeight => "routing-weight",
            RoutingMode::IngressAnnotations => "ingress-annotations",
            RoutingMode::Route53 => "route53",
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    #[serde(default)]
    pub mode: RoutingMode,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "default_annotation_prefix")]
    pub annotation_prefix: String,
    /// Steps of `/failover to` in percent; read as `u32` so that 300 is
    /// reported by validation as out of range rather than as a YAML type error.
    #[serde(default = "default_steps")]
    pub default_steps: Vec<u32>,
    /// How long to wait, after a step, for Ingresses/Services (and DNS) to
    /// carry the new weights before reporting stragglers.
    #[serde(default = "default_verify_timeout", with = "humantime_serde")]
    pub verify_timeout: Duration,
    /// The bot's share of Route53's 5 API requests per second per account,
    /// which it shares with external-dns: its requests are spaced to this
    /// rate, a step's before any other.
    #[serde(default = "default_route53_requests_per_second")]
    pub route53_requests_per_second: f64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            mode: RoutingMode::default(),
            namespace: default_namespace(),
            annotation_prefix: default_annotation_prefix(),
            default_steps: default_steps(),
            verify_timeout: default_verify_timeout(),
            route53_requests_per_second: default_route53_requests_per_second(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// The channel that means this environment, so `in ENV` can be left out.
    #[serde(default)]
    pub channel: Option<String>,
    /// More channels that mean this environment. An environment that names
    /// channels (here or in `channel`) is acted on only from them.
    #[serde(default)]
    pub channels: Vec<String>,
    /// This environment's own approval policy keys (see [`ApprovalConfig`]).
    #[serde(default)]
    pub approval: Option<ApprovalOverride>,
    pub clusters: Vec<ClusterConfig>,
    #[serde(default)]
    pub route53: Option<Route53Config>,
    /// Where this environment's gate queries go.
    #[serde(default)]
    pub prometheus: Option<gates::PrometheusConfig>,
    /// Named Prometheus queries that gate each step, before and after it.
    #[serde(default)]
    pub gates: Vec<gates::GateConfig>,
    /// Ready replicas a cluster needs before its share of traffic rises.
    #[serde(default)]
    pub capacity: Option<gates::CapacityConfig>,
    /// What a failing after-gate does: pause and ask for the rollback's
    /// approval (default), or roll back at once.
    #[serde(default)]
    pub on_gate_failure: gates::OnGateFailure,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's identity: its `cluster-identity` ConfigMap must say this.
    pub name: ClusterId,
    /// The kubeconfig context that reaches it.
    pub context: String,
    /// Optional health gate, fetched before traffic is raised on the cluster.
    #[serde(default)]
    pub health_url: Option<String>,
    /// Initial weight of the cluster in the in-memory backend (the sandbox);
    /// real backends read weights from the cluster and ignore this.
    #[serde(default)]
    pub weight: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route53Config {
    pub zone_id: String,
    pub records: Vec<String>,
    /// external-dns TXT-registry owner id of the bot's records: mode
    /// `route53` writes only records whose registry names it.
    #[serde(default = "default_owner_id")]
    pub owner_id: String,
    /// The site's external-dns `--txt-prefix` / `--txt-suffix` /
    /// `--txt-wildcard-replacement`, to find its registry records.
    #[serde(default)]
    pub txt_prefix: String,
    #[serde(default)]
    pub txt_suffix: String,
    #[serde(default)]
    pub txt_wildcard_replacement: String,
}

/// Route53's API limit per AWS account, requests per second: the bot's
/// share (`routing.route53_requests_per_second`) may not be more.
pub const ROUTE53_REQUESTS_PER_SECOND: f64 = 5.0;

/// The bot's default share of [`ROUTE53_REQUESTS_PER_SECOND`]: 2 leaves 3
/// for external-dns (whose sync of a zone is a burst of paginated list
/// calls, every minute by default) and the rest of the account, while a
/// step (a read per record name, one change batch, a few `GetChange`
/// polls, a verifying read per name) still takes seconds, not minutes.
pub const DEFAULT_ROUTE53_REQUESTS_PER_SECOND: f64 = 2.0;

/// The owner id of the bot's Route53 records unless `route53.owner_id` says.
pub const DEFAULT_ROUTE53_OWNER_ID: &str = "failover-bot";

fn default_owner_id() -> String {
    DEFAULT_ROUTE53_OWNER_ID.into()
}

impl Route53Config {
    /// What is wrong with the registry keys, by key (external-dns's own
    /// rules: an owner id, prefix and suffix not both).
    fn registry_problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        let owner = self.owner_id.trim();
        if owner.is_empty() || owner.contains([',', '=', '"', ' ']) {
            problems.push((
                "owner_id",
                "must be a non-empty id without `,`, `=`, `\"` or spaces",
            ));
        }
        if !self.txt_prefix.is_empty() && !self.txt_suffix.is_empty() {
            problems.push((
                "txt_suffix",
                "external-dns takes txt_prefix or txt_suffix, not both",
            ));
        }
        problems
    }
}

fn default_approvals_required() -> u32 {
    1
}
fn default_reaction() -> String {
    "white_check_mark".into()
}
fn default_reject_reaction() -> String {
    "x".into()
}
fn default_expiry() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_namespace() -> String {
    "operators".into()
}
fn default_annotation_prefix() -> String {
    "external-dns.alpha.kubernetes.io/".into()
}
fn default_verify_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_route53_requests_per_second() -> f64 {
    DEFAULT_ROUTE53_REQUESTS_PER_SECOND
}
fn default_steps() -> Vec<u32> {
    vec![10, 50, 100]
}

/// One thing wrong with a config file, with the key it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a config could not be used: every problem found, or why it was not read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config is not valid YAML for failover-bot: {0}")]
    Syntax(String),
    #[error("config is invalid:\n{}", list(.0))]
    Invalid(Vec<ConfigProblem>),
}

/// A YAML error as the person who wrote the config reads it: what is wrong
/// and where (line and column), but never the text of the line. A secret
/// pasted into the file by mistake (`token: xoxb-…`) must not reach the log
/// `serve` prints this to, so neither the source snippet nor a quoted
/// scalar value is repeated.
fn syntax_message(error: &serde_saphyr::Error) -> String {
    let options = serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    };
    without_quoted_scalars(&error.render_with_options(options))
}

/// serde names an unexpected value as `string "…"` (Debug-escaped) or
/// ``character `…` ``: keep the kind, drop the value.
fn without_quoted_scalars(message: &str) -> String {
    const MARKERS: [(&str, char); 2] = [("string \"", '"'), ("character `", '`')];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((at, marker, close)) = MARKERS
        .iter()
        .filter_map(|&(marker, close)| rest.find(marker).map(|at| (at, marker, close)))
        .min_by_key(|&(at, ..)| at)
    {
        let value_start = at + marker.len();
        out.push_str(&rest[..value_start - 1]);
        out.push_str("(value not shown)");
        rest = &rest[value_start..];
        rest = &rest[closing_quote(rest, close).map_or(rest.len(), |i| i + 1)..];
    }
    out.push_str(rest);
    out
}

/// The byte index of the first `close` not escaped by a backslash.
fn closing_quote(text: &str, close: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == close => return Some(i),
            _ => {}
        }
    }
    None
}

fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_yaml(&text)
    }

    /// Parses and validates a config document.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let mut failed_path = None;
        let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                failed_path = Some(e.path().to_string());
                e.into_inner()
            })
        });
        let config: Config = parsed.map_err(|e| {
            let at = failed_path
                .filter(|p| p != ".")
                .map(|p| format!("{p}: "))
                .unwrap_or_default();
            ConfigError::Syntax(format!("{at}{}", syntax_message(&e)))
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Everything wrong with this config; empty when it is usable.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        self.validate_approval(&mut problems);
        self.validate_routing(&mut problems);
        self.validate_environments(&mut problems);
        self.validate_doctor(&mut problems);
        problems.0
    }

    fn validate_approval(&self, p: &mut Problems) {
        validate_policy("approval", &self.approval, p);
        for (env, environment) in &self.environments {
            let Some(own) = &environment.approval else {
                continue;
            };
            // The merged policy, with problems named by the environment's
            // own keys only: the defaults were checked above.
            let mut found = Problems::default();
            let prefix = format!("environments.{env}.approval");
            validate_policy(&prefix, &self.approval.with(Some(own)), &mut found);
            for problem in found.0 {
                let key = problem.key[prefix.len() + 1..]
                    .split('[')
                    .next()
                    .unwrap_or("");
                if own.sets(key) {
                    p.0.push(problem);
                }
            }
        }
    }

    fn validate_routing(&self, p: &mut Problems) {
        let routing = &self.routing;
        if routing.namespace.trim().is_empty() {
            p.add("routing.namespace", "must not be empty");
        }
        if !routing.annotation_prefix.ends_with('/') {
            p.add(
                "routing.annotation_prefix",
                format!(
                    "`{}` must end with `/`, e.g. external-dns.alpha.kubernetes.io/",
                    routing.annotation_prefix
                ),
            );
        }
        if let Err(problem) = validate_steps(&routing.default_steps) {
            p.add("routing.default_steps", problem.to_string());
        }
        let rate = routing.route53_requests_per_second;
        if !(rate > 0.0 && rate <= ROUTE53_REQUESTS_PER_SECOND) {
            p.add(
                "routing.route53_requests_per_second",
                format!("{rate} is not in (0, {ROUTE53_REQUESTS_PER_SECOND}]: Route53 allows 5 requests per second per account, shared with external-dns"),
            );
        }
    }

    fn validate_environments(&self, p: &mut Problems) {
        if self.environments.is_empty() {
            p.add("environments", "no environments: define at least one");
        }
        let mut channel_owner: BTreeMap<&str, &EnvId> = BTreeMap::new();
        for (env, environment) in &self.environments {
            let key = format!("environments.{env}");
            if !is_simple_name(env) {
                p.add(
                    &key,
                    "environment names use lowercase letters, digits and `-`",
                );
            }
            for (field, channel) in environment.channel_keys() {
                if let Some(other) = channel_owner.insert(channel, env) {
                    if other != env {
                        p.add(
                            format!("{key}.{field}"),
                            format!("channel {channel} already means environment {other}"),
                        );
                    }
                }
                if !self.slack.channels.is_empty()
                    && !self.slack.channels.iter().any(|c| c == channel)
                {
                    p.add(
                        format!("{key}.{field}"),
                        format!("{channel} is not in slack.channels, so commands there would be refused"),
                    );
                }
            }
            validate_clusters(&key, &environment.clusters, p);
            let section = gates::GatesSection {
                prometheus: environment.prometheus.as_ref(),
                gates: &environment.gates,
                capacity: environment.capacity.as_ref(),
            };
            p.0.extend(gates::validate_environment(&key, section));
            if self.routing.mode == RoutingMode::Route53 && environment.route53.is_none() {
                p.add(
                    format!("{key}.route53"),
                    "mode route53 writes the weighted records, so every environment needs a route53 section",
                );
            }
            if let Some(route53) = &environment.route53 {
                if route53.zone_id.trim().is_empty() {
                    p.add(format!("{key}.route53.zone_id"), "must not be empty");
                }
                if route53.records.is_empty() {
                    p.add(
                        format!("{key}.route53.records"),
                        "list at least one record name",
                    );
                }
                for (field, problem) in route53.registry_problems() {
                    p.add(format!("{key}.route53.{field}"), problem);
                }
            }
        }
    }

    pub fn environment(&self, name: &str) -> Option<&EnvironmentConfig> {
        self.environments.get(name)
    }

    /// The approval policy of `env`: the defaults with its own keys on top.
    pub fn approval_for(&self, env: &str) -> ApprovalConfig {
        self.approval
            .with(self.environment(env).and_then(|e| e.approval.as_ref()))
    }

    pub fn environment_names(&self) -> Vec<EnvId> {
        self.environments.keys().cloned().collect()
    }
}

/// The problems of one approval policy, keyed under `prefix`.
fn validate_policy(prefix: &str, approval: &ApprovalConfig, p: &mut Problems) {
    let key = |name: &str| format!("{prefix}.{name}");
    if approval.approvers.is_empty() {
        p.add(
            key("approvers"),
            "no approvers: list at least one Slack user or user-group id",
        );
    }
    for (name, list) in [
        ("approvers", Some(&approval.approvers)),
        ("requesters", approval.requesters.as_ref()),
        ("break_glass", approval.break_glass.as_ref()),
    ] {
        for (i, id) in list.into_iter().flatten().enumerate() {
            if id.trim().is_empty() {
                p.add(format!("{prefix}.{name}[{i}]"), "empty user id");
            }
        }
    }
    if approval.requesters.as_ref().is_some_and(Vec::is_empty) {
        p.add(
            key("requesters"),
            "empty: nobody could start an operation; leave the key out to let anyone in the channel",
        );
    }
    let required = approval.approvals_required;
    if !(1..=10).contains(&required) {
        p.add(key("approvals_required"), "must be 1–10");
    } else {
        let users_only = !approval
            .approvers
            .iter()
            .any(|a| crate::chat::is_user_group(a));
        if users_only && approval.approvers.len() < required as usize {
            p.add(
                key("approvals_required"),
                format!(
                    "{required} approvals needed but only {} approvers listed",
                    approval.approvers.len()
                ),
            );
        }
    }
    for (name, reaction) in [
        ("reaction", &approval.reaction),
        ("reject_reaction", &approval.reject_reaction),
    ] {
        if reaction.is_empty() || reaction.contains(':') || reaction.contains(' ') {
            p.add(
                key(name),
                format!("`{reaction}` is not a reaction name; write it without colons, e.g. white_check_mark"),
            );
        }
    }
    if approval.reaction == approval.reject_reaction {
        p.add(
            key("reject_reaction"),
            "must differ from the approve reaction",
        );
    }
    if approval.expires_after.is_zero() {
        p.add(key("expires_after"), "must be longer than 0, e.g. 15m");
    } else if approval.expires_after > Duration::from_secs(24 * 3600) {
        p.add(
            key("expires_after"),
            "at most 24h: an approval is for the situation it was given in",
        );
    }
}

impl ApprovalOverride {
    /// Whether this environment sets the key `name` itself.
    fn sets(&self, name: &str) -> bool {
        match name {
            "approvers" => self.approvers.is_some(),
            "approvals_required" => self.approvals_required.is_some(),
            "requesters" => self.requesters.is_some(),
            "break_glass" => self.break_glass.is_some(),
            "require_reason" => self.require_reason.is_some(),
            "reaction" => self.reaction.is_some(),
            "reject_reaction" => self.reject_reaction.is_some(),
            "expires_after" => self.expires_after.is_some(),
            _ => false,
        }
    }
}

fn validate_clusters(key: &str, clusters: &[ClusterConfig], p: &mut Problems) {
    if clusters.is_empty() {
        p.add(format!("{key}.clusters"), "no clusters: list at least one");
    }
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (i, cluster) in clusters.iter().enumerate() {
        let ckey = format!("{key}.clusters[{i}]");
        if cluster.name.trim().is_empty() {
            p.add(format!("{ckey}.name"), "must not be empty");
        } else if !names.insert(cluster.name.as_str()) {
            p.add(
                format!("{ckey}.name"),
                format!("duplicate cluster name {}", cluster.name),
            );
        }
        if cluster.context.trim().is_empty() {
            p.add(format!("{ckey}.context"), "must not be empty");
        }
        if let Some(url) = &cluster.health_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                p.add(
                    format!("{ckey}.health_url"),
                    format!("`{url}` is not an http(s) URL"),
                );
            }
        }
        if let Some(weight) = cluster.weight {
            if weight > 255 {
                p.add(
                    format!("{ckey}.weight"),
                    format!("{weight} is out of range: weights are 0–255"),
                );
            }
        }
    }
    let weights: Vec<u32> = clusters.iter().filter_map(|c| c.weight).collect();
    if !weights.is_empty() && weights.iter().all(|w| *w == 0) {
        p.add(
            format!("{key}.clusters"),
            "every weight is 0, which Route53 treats as an even split; give one cluster traffic",
        );
    }
}

fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
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

impl EnvironmentConfig {
    /// The channels this environment is bound to (`channel` and
    /// `channels`); empty when it names none.
    pub fn bound_channels(&self) -> Vec<&str> {
        let mut channels: Vec<&str> = self.channel_keys().into_iter().map(|(_, c)| c).collect();
        channels.dedup();
        channels
    }

    /// Each named channel with the key that names it.
    fn channel_keys(&self) -> Vec<(String, &str)> {
        let first = self
            .channel
            .iter()
            .map(|c| ("channel".to_owned(), c.as_str()));
        let rest = self
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("channels[{i}]"), c.as_str()));
        first.chain(rest).collect()
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn cluster_names(&self) -> impl Iterator<Item = &ClusterId> {
        self.clusters.iter().map(|c| &c.name)
    }

    /// The initial weights of the in-memory backend: clusters with a
    /// `weight` key have a routing object, the others do not.
    pub fn initial_weights(&self) -> Weights {
        self.clusters
            .iter()
            .filter_map(|c| {
                let w = u8::try_from(c.weight?).ok()?;
                Some((c.name.clone(), w))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn syntax_errors_name_the_kind_of_a_bad_value_not_the_value() {
        assert_eq!(
            without_quoted_scalars(
                r#"invalid type: string "xoxb-1 \"q\" 2", expected a sequence at line 2"#
            ),
            "invalid type: string (value not shown), expected a sequence at line 2"
        );
        assert_eq!(
            without_quoted_scalars("invalid value: character `x`, expected a digit"),
            "invalid value: character (value not shown), expected a digit"
        );
        assert_eq!(without_quoted_scalars("no values here"), "no values here");
        assert_eq!(
            without_quoted_scalars("string \"unclosed"),
            "string (value not shown)"
        );
    }

    use super::*;

    const MINIMAL: &str = r#"
approval:
  approvers: [U01BOB]
environments:
  dev:
    clusters:
      - name: k8s-blue.dev.example.com
        context: blue
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.approval.reaction, "white_check_mark");
        assert_eq!(config.approval.reject_reaction, "x");
        assert_eq!(config.approval.expires_after, Duration::from_secs(900));
        assert_eq!(config.routing.mode, RoutingMode::RoutingWeight);
        assert_eq!(config.routing.default_steps, vec![10, 50, 100]);
    }

    #[test]
    fn the_route53_share_defaults_to_2_and_stays_within_the_account_limit() {
        let config = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.routing.route53_requests_per_second, 2.0);
        for (rate, ok) in [
            ("5", true),
            ("0.5", true),
            ("6", false),
            ("0", false),
            ("-1", false),
            (".nan", false),
        ] {
            let text = format!("{MINIMAL}routing:\n  route53_requests_per_second: {rate}\n");
            match Config::from_yaml(&text) {
                Ok(config) => assert!(
                    ok,
                    "{rate} accepted: {}",
                    config.routing.route53_requests_per_second
                ),
                Err(ConfigError::Invalid(problems)) => {
                    assert!(!ok, "{rate} refused: {problems:?}");
                    assert_eq!(problems[0].key, "routing.route53_requests_per_second");
                }
                Err(other) => panic!("{rate}: {other}"),
            }
        }
    }

    #[test]
    fn unknown_mode_names_the_key() {
        let text = format!("{MINIMAL}routing:\n  mode: magic\n");
        let err = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(err.contains("routing.mode"), "{err}");
        assert!(err.contains("magic"), "{err}");
    }

    #[test]
    fn unknown_key_is_reported() {
        let text = MINIMAL.replace("approvers:", "aprovers:");
        let err = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(err.contains("aprovers"), "{err}");
    }

    #[test]
    fn all_problems_are_reported_with_keys() {
        let text = r#"
approval:
  approvers: []
  expires_after: 0s
routing:
  default_steps: [50, 10]
environments:
  dev:
    clusters:
      - {name: a, context: a, weight: 300}
      - {name: a, context: ""}
"#;
        let Err(ConfigError::Invalid(problems)) = Config::from_yaml(text) else {
            panic!("expected validation problems");
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"approval.approvers"), "{keys:?}");
        assert!(keys.contains(&"approval.expires_after"), "{keys:?}");
        assert!(keys.contains(&"routing.default_steps"), "{keys:?}");
        assert!(
            keys.contains(&"environments.dev.clusters[0].weight"),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"environments.dev.clusters[1].name"),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"environments.dev.clusters[1].context"),
            "{keys:?}"
        );
    }

    #[test]
    fn steps_must_rise_and_end_at_100() {
        assert!(validate_steps(&[10, 50, 100]).is_ok());
        assert!(validate_steps(&[100]).is_ok());
        assert!(validate_steps(&[10, 50]).is_err());
        assert!(validate_steps(&[50, 50, 100]).is_err());
        assert!(validate_steps(&[0, 100]).is_err());
        assert!(validate_steps(&[]).is_err());
    }
}
