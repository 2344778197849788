//! The grammar: `VERB [ARG] [to CLUSTER] [in ENV] [steps LIST]`, options in
//! any order after the verb's own argument. Every mistake is answered with
//! what was wrong and the usage line of the verb.

use super::{Command, VERBS};
use crate::messages::UserError;
use crate::plan::Percent;

/// Parses the text of a `/failover` command. A leading `/failover` is
/// accepted and ignored, so the sandbox and Slack can share this.
pub fn parse(text: &str) -> Result<Command, UserError> {
    let mut words = Words::new(text);
    if words
        .peek()
        .is_some_and(|w| w.eq_ignore_ascii_case("/failover"))
    {
        words.next();
    }
    let Some(verb) = words.next() else {
        return Ok(Command::Help);
    };
    let verb_lower = verb.to_ascii_lowercase();
    let (verb_name, force) = match verb_lower.strip_suffix('!') {
        Some("shift") => ("shift", true),
        _ => (verb_lower.as_str(), false),
    };
    let command = match verb_name {
        "help" => {
            // `help shift` is fine: the help text covers every verb.
            return Ok(Command::Help);
        }
        "status" => Command::Status {
            env: options(&mut words, "status", &[])?.env,
        },
        "history" => Command::History {
            env: options(&mut words, "history", &[])?.env,
        },
        "abort" => Command::Abort {
            env: options(&mut words, "abort", &[])?.env,
        },
        "rollback" => Command::Rollback {
            env: options(&mut words, "rollback", &[])?.env,
        },
        "shift" => {
            let percent = percent_argument(&mut words)?;
            let opts = options(&mut words, "shift", &[Keyword::To])?;
            Command::Shift {
                percent,
                to: opts.to,
                env: opts.env,
                force,
            }
        }
        "to" => {
            let cluster = cluster_argument(&mut words, "to")?;
            let opts = options(&mut words, "to", &[Keyword::Steps])?;
            Command::To {
                cluster,
                env: opts.env,
                steps: opts.steps,
            }
        }
        "add" => {
            let cluster = cluster_argument(&mut words, "add")?;
            Command::Add {
                cluster,
                env: options(&mut words, "add", &[])?.env,
            }
        }
        "remove" => {
            let cluster = cluster_argument(&mut words, "remove")?;
            Command::Remove {
                cluster,
                env: options(&mut words, "remove", &[])?.env,
            }
        }
        _ => {
            return Err(UserError::UnknownCommand {
                word: verb.to_owned(),
                suggestion: did_you_mean(&verb_lower, VERBS),
            })
        }
    };
    Ok(command)
}

/// Suggests the closest known word when it is close enough to be a typo.
pub fn did_you_mean(given: &str, known: &[&str]) -> Option<String> {
    let given = given.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&given, k), *k))
        .filter(|(distance, k)| *distance <= 2 && *distance < k.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.to_owned())
}

struct Words<'a> {
    inner: std::iter::Peekable<std::str::SplitWhitespace<'a>>,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            inner: text.split_whitespace().peekable(),
        }
    }
    fn next(&mut self) -> Option<&'a str> {
        self.inner.next()
    }
    fn peek(&mut self) -> Option<&'a str> {
        self.inner.peek().copied()
    }
}

fn percent_argument(words: &mut Words<'_>) -> Result<Percent, UserError> {
    let Some(word) = words.next() else {
        return Err(UserError::MissingArgument {
            verb: "shift",
            what: "a percentage",
        });
    };
    parse_percent(word).ok_or_else(|| UserError::BadPercent {
        given: word.to_owned(),
    })
}

fn parse_percent(word: &str) -> Option<Percent> {
    let digits = word.strip_suffix('%').unwrap_or(word);
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Percent::new(digits.parse().ok()?)
}

fn cluster_argument(words: &mut Words<'_>, verb: &'static str) -> Result<String, UserError> {
    match words.next() {
        Some(word) if Keyword::from_word(word).is_none() => Ok(word.to_owned()),
        _ => Err(UserError::MissingArgument {
            verb,
            what: "a cluster",
        }),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Keyword {
    In,
    To,
    Steps,
}

impl Keyword {
    fn from_word(word: &str) -> Option<Keyword> {
        match word.to_ascii_lowercase().as_str() {
            "in" => Some(Keyword::In),
            "to" => Some(Keyword::To),
            "steps" => Some(Keyword::Steps),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Keyword::In => "in",
            Keyword::To => "to",
            Keyword::Steps => "steps",
        }
    }
}

#[derive(Default)]
struct Options {
    env: Option<String>,
    to: Option<String>,
    steps: Option<Vec<Percent>>,
}

/// Reads `in ENV` (always allowed) and the verb's `extra` options until the
/// end; anything else is an error naming the word.
fn options(
    words: &mut Words<'_>,
    verb: &'static str,
    extra: &[Keyword],
) -> Result<Options, UserError> {
    let mut opts = Options::default();
    while let Some(word) = words.next() {
        let keyword = Keyword::from_word(word)
            .filter(|k| *k == Keyword::In || extra.contains(k))
            .ok_or_else(|| UserError::UnexpectedWord {
                verb,
                word: word.to_owned(),
            })?;
        let repeated = match keyword {
            Keyword::In => opts.env.is_some(),
            Keyword::To => opts.to.is_some(),
            Keyword::Steps => opts.steps.is_some(),
        };
        if repeated {
            return Err(UserError::RepeatedOption {
                verb,
                option: keyword.name(),
            });
        }
        match keyword {
            Keyword::In => opts.env = Some(option_value(words, verb, "an environment")?),
            Keyword::To => opts.to = Some(option_value(words, verb, "a cluster")?),
            Keyword::Steps => opts.steps = Some(steps_value(words)?),
        }
    }
    Ok(opts)
}

fn option_value(
    words: &mut Words<'_>,
    verb: &'static str,
    what: &'static str,
) -> Result<String, UserError> {
    match words.next() {
        Some(word) if Keyword::from_word(word).is_none() => Ok(word.to_owned()),
        _ => Err(UserError::MissingArgument { verb, what }),
    }
}

/// `steps 10,50,100`; spaces after commas are tolerated (`10, 50, 100`).
fn steps_value(words: &mut Words<'_>) -> Result<Vec<Percent>, UserError> {
    let mut list = String::new();
    while let Some(word) = words.peek() {
        let continues_list = list.is_empty() || list.ends_with(',') || word.starts_with(',');
        if Keyword::from_word(word).is_some() || !continues_list {
            break;
        }
        list.push_str(word);
        words.next();
    }
    if list.is_empty() {
        return Err(UserError::MissingArgument {
            verb: "to",
            what: "a step list",
        });
    }
    let mut numbers = Vec::new();
    for item in list.split(',') {
        let value = item
            .trim_end_matches('%')
            .parse::<u32>()
            .ok()
            .filter(|_| !item.is_empty() && item.len() <= 4);
        match value {
            Some(v) => numbers.push(v),
            None => {
                return Err(UserError::BadSteps {
                    given: list.clone(),
                    reason: format!("`{item}` is not a percentage"),
                })
            }
        }
    }
    crate::config::validate_steps(&numbers).map_err(|reason| UserError::BadSteps {
        given: list,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(v: u32) -> Percent {
        Percent::new(v).unwrap()
    }

    #[test]
    fn parses_every_verb() {
        assert_eq!(parse("").unwrap(), Command::Help);
        assert_eq!(parse("help").unwrap(), Command::Help);
        assert_eq!(
            parse("/failover shift 50").unwrap(),
            Command::Shift {
                percent: pct(50),
                to: None,
                env: None,
                force: false
            }
        );
        assert_eq!(
            parse("shift 25% in prod to green").unwrap(),
            Command::Shift {
                percent: pct(25),
                to: Some("green".into()),
                env: Some("prod".into()),
                force: false
            }
        );
        assert_eq!(
            parse("to green steps 10, 50,100 in dev").unwrap(),
            Command::To {
                cluster: "green".into(),
                env: Some("dev".into()),
                steps: Some(vec![pct(10), pct(50), pct(100)])
            }
        );
        assert_eq!(
            parse("STATUS in dev").unwrap(),
            Command::Status {
                env: Some("dev".into())
            }
        );
        assert_eq!(parse("abort").unwrap(), Command::Abort { env: None });
        assert_eq!(parse("rollback").unwrap(), Command::Rollback { env: None });
        assert_eq!(parse("history").unwrap(), Command::History { env: None });
        assert_eq!(
            parse("add green").unwrap(),
            Command::Add {
                cluster: "green".into(),
                env: None
            }
        );
        assert_eq!(
            parse("remove green in dev").unwrap(),
            Command::Remove {
                cluster: "green".into(),
                env: Some("dev".into())
            }
        );
        assert!(matches!(
            parse("shift! 50 to green").unwrap(),
            Command::Shift { force: true, .. }
        ));
    }

    #[test]
    fn typo_gets_a_suggestion() {
        let err = parse("shfit 50").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown command `shfit` — did you mean `shift`? Try `/failover help`."
        );
    }

    #[test]
    fn percent_out_of_range() {
        for bad in ["150", "-5", "fifty", "50.5", "1000"] {
            let err = parse(&format!("shift {bad}")).unwrap_err();
            assert!(
                err.to_string().contains("percent must be 0–100"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn misplaced_and_repeated_options() {
        assert!(matches!(
            parse("status to green"),
            Err(UserError::UnexpectedWord { .. })
        ));
        assert!(matches!(
            parse("shift 50 in dev in prod"),
            Err(UserError::RepeatedOption { option: "in", .. })
        ));
        assert!(matches!(
            parse("shift 50 to"),
            Err(UserError::MissingArgument { .. })
        ));
        assert!(matches!(
            parse("to in dev"),
            Err(UserError::MissingArgument { .. })
        ));
        assert!(matches!(
            parse("to green steps 50,10,100"),
            Err(UserError::BadSteps { .. })
        ));
        assert!(matches!(
            parse("to green steps 10,x"),
            Err(UserError::BadSteps { .. })
        ));
    }
}
