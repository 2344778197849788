//! `/failover …` commands: the typed [`Command`] enum, its parser
//! ([`parse`]) and the resolution of environment and cluster names against the
//! config ([`resolve`]).
//!
//! Parsing needs nothing but the text, and resolution nothing but the config,
//! so both run before a slash command is acknowledged: a typo is answered at
//! once, privately, and never reaches the engine.

mod parse;
mod resolve;

pub use parse::parse;
pub use resolve::{cluster_labels, resolve, Action, Request};

use crate::plan::Percent;

/// A `/failover` command as typed, before names are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Status {
        env: Option<String>,
    },
    Shift {
        percent: Percent,
        to: Option<String>,
        env: Option<String>,
        /// `shift! …`: push through a failing health gate (break-glass).
        force: bool,
    },
    To {
        cluster: String,
        env: Option<String>,
        steps: Option<Vec<Percent>>,
    },
    Abort {
        env: Option<String>,
    },
    Rollback {
        env: Option<String>,
    },
    Add {
        cluster: String,
        env: Option<String>,
    },
    Remove {
        cluster: String,
        env: Option<String>,
    },
    History {
        env: Option<String>,
    },
}

/// The verbs, in the order `help` lists them; also the dictionary for
/// "did you mean".
pub const VERBS: &[&str] = &[
    "help", "status", "shift", "to", "abort", "rollback", "add", "remove", "history",
];

impl Command {
    /// The environment named with `in ENV`, if any.
    pub fn env(&self) -> Option<&str> {
        match self {
            Command::Help => None,
            Command::Status { env }
            | Command::Shift { env, .. }
            | Command::To { env, .. }
            | Command::Abort { env }
            | Command::Rollback { env }
            | Command::Add { env, .. }
            | Command::Remove { env, .. }
            | Command::History { env } => env.as_deref(),
        }
    }
}
