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
