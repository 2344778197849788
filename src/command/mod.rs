//! `/failover …` commands, one file per verb, in the spirit of mini-redis's
//! `cmd/` folder: each verb's file holds its grammar (what follows the
//! verb), its usage line, the resolution of the names it takes, and — for a
//! verb that changes weights — the operation it starts and the weights each
//! of that operation's steps aims at.
//!
//! [`understand`] reads a command once, with nothing but the text, the
//! channel and the config, so a mistake is answered at once and privately,
//! and what was understood travels with the work: it is never parsed again.

mod error;
mod grammar;
mod names;

pub mod abort;
pub mod add;
pub mod drill;
pub mod freeze;
pub mod help;
pub mod history;
pub mod hold;
pub mod remove;
pub mod rollback;
pub mod set;
pub mod shift;
pub mod status;
pub mod to;

use serde::{Deserialize, Serialize};

pub use error::{CommandError, Missing};
pub use names::cluster_labels;

use crate::config::Config;
use crate::ids::{EnvId, OpId};
use crate::plan::Weights;
use grammar::Args;

/// The verbs, in the order `help` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    Help,
    Status,
    Shift,
    Set,
    To,
    Abort,
    Rollback,
    Add,
    Remove,
    History,
    Freeze,
    Unfreeze,
    Extend,
    Keep,
    Drill,
    Drills,
}

impl Verb {
    pub const ALL: [Verb; 16] = [
        Verb::Help,
        Verb::Status,
        Verb::Shift,
        Verb::Set,
        Verb::To,
        Verb::Abort,
        Verb::Rollback,
        Verb::Add,
        Verb::Remove,
        Verb::History,
        Verb::Freeze,
        Verb::Unfreeze,
        Verb::Extend,
        Verb::Keep,
        Verb::Drill,
        Verb::Drills,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Verb::Help => "help",
            Verb::Status => "status",
            Verb::Shift => "shift",
            Verb::Set => "set",
            Verb::To => "to",
            Verb::Abort => "abort",
            Verb::Rollback => "rollback",
            Verb::Add => "add",
            Verb::Remove => "remove",
            Verb::History => "history",
            Verb::Freeze => "freeze",
            Verb::Unfreeze => "unfreeze",
            Verb::Extend => "extend",
            Verb::Keep => "keep",
            Verb::Drill => "drill",
            Verb::Drills => "drills",
        }
    }

    /// The verb's usage line, from its file.
    pub fn usage(self) -> &'static str {
        match self {
            Verb::Help => help::USAGE,
            Verb::Status => status::USAGE,
            Verb::Shift => shift::USAGE,
            Verb::Set => set::USAGE,
            Verb::To => to::USAGE,
            Verb::Abort => abort::USAGE,
            Verb::Rollback => rollback::USAGE,
            Verb::Add => add::USAGE,
            Verb::Remove => remove::USAGE,
            Verb::History => history::USAGE,
            Verb::Freeze => freeze::USAGE,
            Verb::Unfreeze => freeze::UNFREEZE_USAGE,
            Verb::Extend => hold::EXTEND_USAGE,
            Verb::Keep => hold::KEEP_USAGE,
            Verb::Drill => drill::USAGE,
            Verb::Drills => drill::LIST_USAGE,
        }
    }

    /// What the verb does, in one line of `help`.
    pub fn summary(self) -> &'static str {
        match self {
            Verb::Help => help::SUMMARY,
            Verb::Status => status::SUMMARY,
            Verb::Shift => shift::SUMMARY,
            Verb::Set => set::SUMMARY,
            Verb::To => to::SUMMARY,
            Verb::Abort => abort::SUMMARY,
            Verb::Rollback => rollback::SUMMARY,
            Verb::Add => add::SUMMARY,
            Verb::Remove => remove::SUMMARY,
            Verb::History => history::SUMMARY,
            Verb::Freeze => freeze::SUMMARY,
            Verb::Unfreeze => freeze::UNFREEZE_SUMMARY,
            Verb::Extend => hold::EXTEND_SUMMARY,
            Verb::Keep => hold::KEEP_SUMMARY,
            Verb::Drill => drill::SUMMARY,
            Verb::Drills => drill::LIST_SUMMARY,
        }
    }

    fn from_word(word: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.word() == word)
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// A command with its names resolved: what it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Status,
    History,
    Abort,
    Rollback,
    Shift(shift::Shift),
    Set(set::Set),
    To(to::To),
    /// `to`, as a drill: timed, scored, maybe `and back`.
    Drill(drill::Drill),
    /// The environment's past drills.
    Drills,
    Add(add::Add),
    Remove(remove::Remove),
    Freeze(freeze::Freeze),
    Unfreeze,
    /// `extend` or `keep`: a change to a time-limited shift that holds.
    Hold(hold::HoldChange),
}

impl Command {
    /// `for 2h` on `shift` or `to`: how long the new weights hold.
    pub fn time_limit(&self) -> Option<hold::TimeLimit> {
        match self {
            Command::Shift(shift) => shift.time_limit,
            Command::To(to) => to.time_limit,
            _ => None,
        }
    }

    pub fn verb(&self) -> Verb {
        match self {
            Command::Status => Verb::Status,
            Command::History => Verb::History,
            Command::Abort => Verb::Abort,
            Command::Rollback => Verb::Rollback,
            Command::Shift(_) => Verb::Shift,
            Command::Set(_) => Verb::Set,
            Command::To(_) => Verb::To,
            Command::Drill(_) => Verb::Drill,
            Command::Drills => Verb::Drills,
            Command::Add(_) => Verb::Add,
            Command::Remove(_) => Verb::Remove,
            Command::Freeze(_) => Verb::Freeze,
            Command::Unfreeze => Verb::Unfreeze,
            Command::Hold(hold::HoldChange::Extend { .. }) => Verb::Extend,
            Command::Hold(hold::HoldChange::Keep) => Verb::Keep,
        }
    }
}

/// A command about one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub env: EnvId,
    pub command: Command,
    /// `… because REASON`: why, for the plan, the journal and `history`.
    pub reason: Option<String>,
}

/// What a command means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Understood {
    Help,
    Request(Request),
}

/// What starting an operation may depend on besides the command.
#[derive(Clone, Copy, Debug)]
pub struct Situation<'a> {
    pub env: &'a EnvId,
    /// The weights now.
    pub now: &'a Weights,
    /// The newest finished operation that changed weights, and the weights
    /// before it (what `rollback` returns to).
    pub last_change: Option<(OpId, &'a Weights)>,
}

/// Reads a `/failover` command sent from `channel`. A leading `/failover`
/// is accepted and ignored, so the sandbox and Slack can share this.
pub fn understand(config: &Config, channel: &str, text: &str) -> Result<Understood, CommandError> {
    let mut words = text.split_whitespace().peekable();
    if words
        .peek()
        .is_some_and(|w| w.eq_ignore_ascii_case("/failover"))
    {
        words.next();
    }
    let Some(word) = words.next() else {
        return Ok(Understood::Help);
    };
    let lower = word.to_ascii_lowercase();
    let (verb_word, force) = match lower.strip_suffix('!') {
        Some("shift") => ("shift", true),
        _ => (lower.as_str(), false),
    };
    let Some(verb) = Verb::from_word(verb_word) else {
        let known: Vec<&str> = Verb::ALL.iter().map(|v| v.word()).collect();
        return Err(CommandError::UnknownCommand {
            word: word.to_owned(),
            suggestion: grammar::did_you_mean(&lower, &known),
        });
    };
    let mut args = Args::new(words, verb, config, channel);
    let request = match verb {
        // `help shift` is fine: the help text covers every verb.
        Verb::Help => return Ok(Understood::Help),
        Verb::Status => status::parse(&mut args)?,
        Verb::History => history::parse(&mut args)?,
        Verb::Abort => abort::parse(&mut args)?,
        Verb::Rollback => rollback::parse(&mut args)?,
        Verb::Shift => shift::parse(&mut args, force)?,
        Verb::Set => set::parse(&mut args)?,
        Verb::To => to::parse(&mut args)?,
        Verb::Add => add::parse(&mut args)?,
        Verb::Remove => remove::parse(&mut args)?,
        Verb::Freeze => freeze::parse(&mut args)?,
        Verb::Unfreeze => freeze::parse_unfreeze(&mut args)?,
        Verb::Extend => hold::parse_extend(&mut args)?,
        Verb::Keep => hold::parse_keep(&mut args)?,
        Verb::Drill => drill::parse(&mut args)?,
        Verb::Drills => drill::parse_list(&mut args)?,
    };
    Ok(Understood::Request(request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ClusterId;
    use crate::plan::Percent;

    const CONFIG: &str = r#"
approval:
  approvers: [U1]
routing:
  default_steps: [20, 100]
environments:
  dev:
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue}
      - {name: k8s-green.dev.example.com, context: green}
"#;

    fn read(text: &str) -> Result<Understood, CommandError> {
        understand(&Config::from_yaml(CONFIG).unwrap(), "C1", text)
    }

    fn command(text: &str) -> Command {
        match read(text).unwrap() {
            Understood::Request(r) => r.command,
            Understood::Help => panic!("help"),
        }
    }

    fn pct(v: u32) -> Percent {
        Percent::new(v).unwrap()
    }

    const GREEN: &str = "k8s-green.dev.example.com";

    #[test]
    fn parses_every_verb() {
        assert_eq!(read("").unwrap(), Understood::Help);
        assert_eq!(read("help shift").unwrap(), Understood::Help);
        assert_eq!(
            command("/failover shift 50"),
            Command::Shift(shift::Shift {
                percent: pct(50),
                to: None,
                force: false,
                time_limit: None,
            })
        );
        assert_eq!(
            command("shift 25% in dev to green"),
            Command::Shift(shift::Shift {
                percent: pct(25),
                to: Some(GREEN.into()),
                force: false,
                time_limit: None,
            })
        );
        assert_eq!(
            command("to green steps 10, 50,100 in dev"),
            Command::To(to::To {
                cluster: GREEN.into(),
                steps: vec![pct(10), pct(50), pct(100)],
                time_limit: None,
            })
        );
        assert_eq!(
            command("to green"),
            Command::To(to::To {
                cluster: GREEN.into(),
                steps: vec![pct(20), pct(100)],
                time_limit: None,
            })
        );
        assert_eq!(command("STATUS in dev"), Command::Status);
        assert_eq!(command("abort"), Command::Abort);
        assert_eq!(command("rollback"), Command::Rollback);
        assert_eq!(command("history"), Command::History);
        assert_eq!(
            command("add green"),
            Command::Add(add::Add {
                cluster: GREEN.into(),
                weight: 0
            })
        );
        assert_eq!(
            command("add green weight 100 in dev"),
            Command::Add(add::Add {
                cluster: GREEN.into(),
                weight: 100
            })
        );
        assert_eq!(
            command("set blue=255 green=100"),
            Command::Set(set::Set {
                weights: [
                    ("k8s-blue.dev.example.com".into(), 255),
                    (GREEN.into(), 100)
                ]
                .into_iter()
                .collect()
            })
        );
        assert_eq!(
            command("remove green in dev"),
            Command::Remove(remove::Remove {
                cluster: GREEN.into()
            })
        );
        assert!(matches!(
            command("shift! 50 to green"),
            Command::Shift(shift::Shift { force: true, .. })
        ));
        assert_eq!(
            command("freeze in dev quarter-end close"),
            Command::Freeze(freeze::Freeze {
                reason: "quarter-end close".into()
            })
        );
        assert_eq!(command("unfreeze"), Command::Unfreeze);
        assert_eq!(
            command("shift 50 to green for 2h").time_limit(),
            Some(hold::TimeLimit::parse("2h").unwrap())
        );
        assert_eq!(
            command("to green for 4h steps 50,100 in dev").time_limit(),
            Some(hold::TimeLimit::parse("4h").unwrap())
        );
        assert_eq!(
            command("extend 1h in dev"),
            Command::Hold(hold::HoldChange::Extend {
                by: hold::TimeLimit::parse("1h").unwrap()
            })
        );
        assert_eq!(command("keep"), Command::Hold(hold::HoldChange::Keep));
    }

    #[test]
    fn a_drill_is_to_with_a_mark_and_maybe_the_way_back() {
        let to = |steps: Vec<Percent>| to::To {
            cluster: GREEN.into(),
            steps,
            time_limit: None,
        };
        assert_eq!(
            command("drill to green"),
            Command::Drill(drill::Drill {
                to: to(vec![pct(20), pct(100)]),
                back: false,
            })
        );
        assert_eq!(
            command("DRILL to green AND BACK in dev steps 50,100 because SOC 2 evidence"),
            Command::Drill(drill::Drill {
                to: to(vec![pct(50), pct(100)]),
                back: true,
            })
        );
        assert_eq!(command("drills"), Command::Drills);
        assert_eq!(command("drills in dev"), Command::Drills);
        assert_eq!(command("drill to green").verb(), Verb::Drill);
        assert_eq!(command("drill to green").time_limit(), None);
    }

    #[test]
    fn a_bad_drill_gets_a_specific_answer() {
        assert_eq!(
            read("drill green").unwrap_err(),
            CommandError::DrillWithoutTo {
                given: "green".into()
            }
        );
        assert!(matches!(
            read("drill"),
            Err(CommandError::MissingArgument {
                verb: Verb::Drill,
                what: Missing::Cluster
            })
        ));
        assert!(matches!(
            read("drill to"),
            Err(CommandError::MissingArgument {
                what: Missing::Cluster,
                ..
            })
        ));
        assert_eq!(
            read("drill to green and forth").unwrap_err(),
            CommandError::AndWhat {
                given: "forth".into()
            }
        );
        assert!(matches!(
            read("drill to green and"),
            Err(CommandError::MissingArgument {
                what: Missing::Back,
                ..
            })
        ));
        assert!(matches!(
            read("drill to green and back and back"),
            Err(CommandError::RepeatedOption { .. })
        ));
        assert!(matches!(
            read("drill to green for 2h"),
            Err(CommandError::UnexpectedWord {
                verb: Verb::Drill,
                ..
            })
        ));
        assert!(matches!(
            read("drill to purple"),
            Err(CommandError::UnknownCluster { .. })
        ));
        assert!(matches!(
            read("drills to green"),
            Err(CommandError::UnexpectedWord {
                verb: Verb::Drills,
                ..
            })
        ));
        assert!(matches!(
            read("to green and back"),
            Err(CommandError::UnexpectedWord { verb: Verb::To, .. })
        ));
        let message = read("drill to green and forth").unwrap_err().to_string();
        assert!(message.contains(drill::USAGE), "{message}");
    }

    #[test]
    fn a_drill_and_back_returns_through_its_steps_to_where_it_began() {
        let now: Weights = [
            (ClusterId::from("k8s-blue.dev.example.com"), 100u8),
            (ClusterId::from(GREEN), 0u8),
        ]
        .into_iter()
        .collect();
        let Command::Drill(drill) = command("drill to green steps 10,50,100 and back") else {
            panic!("not a drill");
        };
        let op = drill.operation(&now).unwrap();
        assert_eq!(op.back, Some(vec![pct(50), pct(10)]));
        assert_eq!(op.total_steps(), 6, "three there, three back");
        let green_at = |step: usize| {
            let after = op.step(step, &now, &now).unwrap().after;
            (after.get("k8s-blue.dev.example.com"), after.get(GREEN))
        };
        assert_eq!(green_at(3).1, Some(100));
        assert_eq!(green_at(4), (Some(50), Some(50)));
        assert_eq!(green_at(5).1.map(|g| g < 20), Some(true));
        assert_eq!(green_at(6), (Some(100), Some(0)), "exactly as before");
        let Command::Drill(one_way) = command("drill to green steps 10,50,100") else {
            panic!("not a drill");
        };
        assert_eq!(one_way.operation(&now).unwrap().total_steps(), 3);
    }

    #[test]
    fn time_limits_are_checked() {
        assert!(matches!(
            read("shift 50 for 100h"),
            Err(CommandError::TooLong { .. })
        ));
        assert!(matches!(
            read("shift 50 for ever"),
            Err(CommandError::BadDuration { .. })
        ));
        assert!(matches!(
            read("extend"),
            Err(CommandError::MissingArgument {
                what: Missing::Duration,
                ..
            })
        ));
        assert!(matches!(
            read("set blue=1 for 2h"),
            Err(CommandError::UnexpectedWord { .. })
        ));
    }

    #[test]
    fn a_reason_is_the_rest_of_the_command() {
        let Understood::Request(request) =
            read("shift 50 to green because INC-4711 db failover in dev").unwrap()
        else {
            panic!("not a request");
        };
        assert_eq!(
            request.reason.as_deref(),
            Some("INC-4711 db failover in dev"),
            "`because` takes everything after it"
        );
        assert!(matches!(
            read("shift 50 because"),
            Err(CommandError::MissingArgument {
                what: Missing::Reason,
                ..
            })
        ));
        assert!(matches!(
            read("freeze in dev"),
            Err(CommandError::MissingArgument {
                what: Missing::Reason,
                ..
            })
        ));
    }

    #[test]
    fn typo_gets_a_suggestion() {
        let err = read("shfit 50").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown command `shfit` — did you mean `shift`? Try `/failover help`."
        );
        let err = read("zzz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown command `zzz`. Try `/failover help`."
        );
    }

    #[test]
    fn percent_out_of_range() {
        for bad in ["150", "-5", "fifty", "50.5", "1000"] {
            let err = read(&format!("shift {bad}")).unwrap_err();
            assert!(
                matches!(&err, CommandError::BadPercent { given } if given == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn misplaced_and_repeated_options() {
        assert!(matches!(
            read("status to green"),
            Err(CommandError::UnexpectedWord { .. })
        ));
        assert!(matches!(
            read("shift 50 in dev in dev"),
            Err(CommandError::RepeatedOption { .. })
        ));
        assert!(matches!(
            read("shift 50 to"),
            Err(CommandError::MissingArgument {
                what: Missing::Cluster,
                ..
            })
        ));
        assert!(matches!(
            read("to in dev"),
            Err(CommandError::MissingArgument { .. })
        ));
        assert!(matches!(
            read("to green steps 50,10,100"),
            Err(CommandError::BadSteps { .. })
        ));
        assert!(matches!(
            read("to green steps 10,x"),
            Err(CommandError::BadSteps { .. })
        ));
        for bad in [
            "set blue=256",
            "set blue=-1",
            "set blue=x",
            "add green weight 300",
        ] {
            assert!(
                matches!(read(bad), Err(CommandError::BadWeight { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            read("set blue=1 bl=2"),
            Err(CommandError::RepeatedCluster { .. })
        ));
        assert!(matches!(
            read("set in dev"),
            Err(CommandError::MissingArgument {
                what: Missing::Weights,
                ..
            })
        ));
    }
}
