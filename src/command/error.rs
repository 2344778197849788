//! What can be wrong with a command: a mistake in what was typed, a name
//! that matches nothing, or a request the current weights make pointless.
//! Each answer says what was wrong and how to say it right.

use serde::{Deserialize, Serialize};

use super::Verb;
use crate::ids::{ClusterId, EnvId};
use crate::plan::{PlanError, StepsError};

/// What a verb was missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    Percent,
    Cluster,
    Environment,
    StepList,
    Reason,
    Duration,
    Weights,
    Weight,
    Back,
}

impl Missing {
    fn words(self) -> &'static str {
        match self {
            Missing::Percent => "a percentage",
            Missing::Cluster => "a cluster",
            Missing::Environment => "an environment",
            Missing::StepList => "a step list",
            Missing::Reason => "a reason",
            Missing::Duration => "a duration",
            Missing::Weights => "weights, e.g. blue=100 green=0",
            Missing::Weight => "a weight 0–255",
            Missing::Back => "`back` after `and`",
        }
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.words())
    }
}

fn list(items: &[impl AsRef<str>]) -> String {
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

fn channel_links(ids: &[String]) -> String {
    ids.iter()
        .map(|c| format!("<#{c}>"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" — did you mean `{s}`?"),
        None => String::new(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum CommandError {
    #[error("unknown command `{word}`{}{}", did_you_mean(.suggestion), if .suggestion.is_some() { " Try `/failover help`." } else { ". Try `/failover help`." })]
    UnknownCommand {
        word: String,
        suggestion: Option<String>,
    },
    #[error("`{verb}` needs {what}: {}", .verb.usage())]
    MissingArgument { verb: Verb, what: Missing },
    #[error("percent must be 0–100, got `{given}`: {}", Verb::Shift.usage())]
    BadPercent { given: String },
    #[error("bad step list `{given}`: {problem}")]
    BadSteps { given: String, problem: StepsError },
    #[error("unexpected `{word}` — {}", .verb.usage())]
    UnexpectedWord { verb: Verb, word: String },
    #[error("`{option}` given twice — {}", .verb.usage())]
    RepeatedOption { verb: Verb, option: String },
    #[error("failover commands are only taken in {}.", channel_links(.allowed))]
    ChannelNotAllowed { allowed: Vec<String> },
    #[error("{env} is acted on only from {}; send it there.", channel_links(.channels))]
    WrongChannel { env: EnvId, channels: Vec<String> },
    #[error("failovers are not requested in direct messages: use the failover channel, where the team sees them.")]
    DirectMessage,
    #[error("no environment `{given}`{} Environments: {}.", match .suggestion { Some(s) => format!(" — did you mean `{s}`?"), None => String::new() }, list(.known))]
    UnknownEnvironment {
        given: String,
        suggestion: Option<String>,
        known: Vec<EnvId>,
    },
    #[error("which environment? Add `in {}` (environments: {}).", .known.first().map_or("ENV", EnvId::as_str), list(.known))]
    WhichEnvironment { known: Vec<EnvId> },
    #[error("no cluster matches `{given}`{} Clusters in {env}: {}.", match .suggestion { Some(s) => format!(" — did you mean `{s}`?"), None => ";".to_owned() }, list(.known))]
    UnknownCluster {
        given: String,
        env: EnvId,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    #[error("`{given}` matches more than one cluster in {env}: {}. Type more of the name.", list(.matches))]
    AmbiguousCluster {
        given: String,
        env: EnvId,
        matches: Vec<String>,
    },
    #[error(
        "bad duration `{given}`: say how long, from a minute up, e.g. `2h`, `90m` or `1h30m`."
    )]
    BadDuration { given: String },
    #[error("`{given}` is too long: a time-limited shift holds 72h at most, extensions included (as AWS caps zonal shifts).")]
    TooLong { given: String },
    #[error("bad weight `{given}`: weights are whole numbers 0–255, e.g. `blue=100`")]
    BadWeight { given: String },
    #[error("{cluster} is named twice; give each cluster one weight.")]
    RepeatedCluster { cluster: ClusterId },
    #[error("{cluster} already has every step's share of traffic; nothing to do.")]
    AlreadyAtTarget { cluster: ClusterId },
    #[error("a drill says where it goes: `drill to {given}`? {}", Verb::Drill.usage())]
    DrillWithoutTo { given: String },
    #[error("`and` in a drill is followed by `back` (`… and back`), not `{given}`: {}", Verb::Drill.usage())]
    AndWhat { given: String },
    #[error("nothing to roll back in {env}: no earlier operation.")]
    NothingToRollBack { env: EnvId },
    #[error(transparent)]
    Plan(#[from] PlanError),
}
