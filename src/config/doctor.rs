//! The `doctor:` section: how often `serve` checks each environment's
//! readiness, how old the last drill may be, and where the results go.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, Problems};

/// A check more often than this would mostly load the API servers and
/// Prometheus with questions whose answers change slowly.
pub const MIN_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorConfig {
    /// `serve` checks every environment this often; no scheduled check
    /// when left out (`failover-bot doctor` still works).
    #[serde(default, with = "humantime_serde::option")]
    pub every: Option<Duration>,
    /// A drill older than this (or none at all) is a warning.
    #[serde(default = "default_drill_max_age", with = "humantime_serde")]
    pub drill_max_age: Duration,
    /// Where the scheduled check posts; each environment's own channel
    /// (`channel`, else the first of `channels`) when left out.
    #[serde(default)]
    pub channel: Option<String>,
}

impl Default for DoctorConfig {
    fn default() -> Self {
        DoctorConfig {
            every: None,
            drill_max_age: default_drill_max_age(),
            channel: None,
        }
    }
}

fn default_drill_max_age() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

impl Config {
    /// Where the scheduled check posts about `env`: `doctor.channel`, else
    /// the environment's own channel.
    pub fn doctor_channel(&self, env: &str) -> Option<&str> {
        if let Some(channel) = &self.doctor.channel {
            return Some(channel);
        }
        self.environment(env)?.bound_channels().first().copied()
    }

    pub(super) fn validate_doctor(&self, p: &mut Problems) {
        let doctor = &self.doctor;
        if let Some(every) = doctor.every {
            if every < MIN_EVERY {
                p.add(
                    "doctor.every",
                    "at least 1m: each check asks every cluster and Prometheus",
                );
            }
            for (env, _) in self
                .environments
                .iter()
                .filter(|(env, _)| self.doctor_channel(env).is_none())
            {
                p.add(
                    "doctor.channel",
                    format!("environments.{env} names no channel for the scheduled check's posts: set doctor.channel or the environment's channel"),
                );
            }
        }
        if doctor.drill_max_age.is_zero() {
            p.add("doctor.drill_max_age", "must be longer than 0, e.g. 30d");
        }
        if let Some(channel) = &doctor.channel {
            if channel.trim().is_empty() {
                p.add("doctor.channel", "must not be empty");
            } else if !self.slack.channels.is_empty()
                && !self.slack.channels.iter().any(|c| c == channel)
            {
                p.add(
                    "doctor.channel",
                    format!("{channel} is not in slack.channels, where the bot is meant to talk"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn config(doctor: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(&format!(
            "slack:\n  channels: [C1, C2]\napproval:\n  approvers: [bob]\n{doctor}environments:\n  dev:\n    channel: C1\n    clusters:\n      - {{name: a, context: a}}\n  prod:\n    clusters:\n      - {{name: b, context: b}}\n"
        ))
    }

    fn problems(doctor: &str) -> Vec<String> {
        match config(doctor) {
            Err(ConfigError::Invalid(problems)) => problems.iter().map(|p| p.to_string()).collect(),
            Err(other) => vec![other.to_string()],
            Ok(_) => Vec::new(),
        }
    }

    #[test]
    fn defaults_check_nothing_on_a_schedule_and_want_a_drill_a_month() {
        let config = config("").unwrap();
        assert_eq!(config.doctor, DoctorConfig::default());
        assert_eq!(config.doctor.every, None);
        assert_eq!(
            config.doctor.drill_max_age,
            Duration::from_secs(30 * 86_400)
        );
    }

    #[test]
    fn durations_read_as_humantime() {
        let config = config("doctor:\n  every: 1h\n  drill_max_age: 14d\n  channel: C2\n").unwrap();
        assert_eq!(config.doctor.every, Some(Duration::from_secs(3600)));
        assert_eq!(
            config.doctor.drill_max_age,
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(config.doctor_channel("prod"), Some("C2"));
    }

    #[test]
    fn a_schedule_needs_a_channel_for_every_environment() {
        assert_eq!(
            problems("doctor:\n  every: 1h\n"),
            ["doctor.channel: environments.prod names no channel for the scheduled check's posts: set doctor.channel or the environment's channel"]
        );
        assert!(
            problems("doctor:\n  drill_max_age: 7d\n").is_empty(),
            "no schedule, no post"
        );
    }

    #[test]
    fn bad_values_are_named_by_key() {
        assert_eq!(
            problems("doctor:\n  every: 10s\n  drill_max_age: 0s\n  channel: C9\n"),
            [
                "doctor.every: at least 1m: each check asks every cluster and Prometheus",
                "doctor.drill_max_age: must be longer than 0, e.g. 30d",
                "doctor.channel: C9 is not in slack.channels, where the bot is meant to talk",
            ]
        );
        let syntax = problems("doctor:\n  every: hourly\n");
        assert!(syntax[0].contains("doctor.every"), "{syntax:?}");
        let unknown = problems("doctor:\n  evry: 1h\n");
        assert!(unknown[0].contains("evry"), "{unknown:?}");
    }
}
