//! The grammar every verb shares: `VERB [ARG] [OPTION VALUE]…`, options in
//! any order after the verb's own argument. A verb's file says which
//! arguments and options it takes; this file reads them and says what was
//! wrong with them, with the verb's usage line.

use super::hold::TimeLimit;
use super::names::Scope;
use super::{CommandError, Missing, Verb};
use crate::config::Config;
use crate::plan::{validate_steps, Percent, StepsError};

/// The words of a command after its verb, with what resolving names needs.
pub(super) struct Args<'a> {
    words: std::iter::Peekable<std::str::SplitWhitespace<'a>>,
    pub verb: Verb,
    config: &'a Config,
    channel: &'a str,
}

/// Words that start an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keyword {
    In,
    To,
    Steps,
    Weight,
    Because,
    For,
    /// `and back`, on a drill.
    And,
}

impl Keyword {
    fn from_word(word: &str) -> Option<Keyword> {
        match word.to_ascii_lowercase().as_str() {
            "in" => Some(Keyword::In),
            "to" => Some(Keyword::To),
            "steps" => Some(Keyword::Steps),
            "weight" => Some(Keyword::Weight),
            "because" => Some(Keyword::Because),
            "for" => Some(Keyword::For),
            "and" => Some(Keyword::And),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Keyword::In => "in",
            Keyword::To => "to",
            Keyword::Steps => "steps",
            Keyword::Weight => "weight",
            Keyword::Because => "because",
            Keyword::For => "for",
            Keyword::And => "and",
        }
    }
}

/// The options a verb was given.
#[derive(Default)]
pub(super) struct Options<'a> {
    pub env: Option<&'a str>,
    pub to: Option<&'a str>,
    pub steps: Option<Vec<Percent>>,
    pub weight: Option<u8>,
    /// `because REASON…`: the rest of the command.
    pub reason: Option<String>,
    /// `for 2h`: a time-limited shift.
    pub time_limit: Option<TimeLimit>,
    /// `and back`: a drill returns to where it started.
    pub back: bool,
}

impl<'a> Args<'a> {
    pub fn new(
        words: std::iter::Peekable<std::str::SplitWhitespace<'a>>,
        verb: Verb,
        config: &'a Config,
        channel: &'a str,
    ) -> Self {
        Self {
            words,
            verb,
            config,
            channel,
        }
    }

    fn missing(&self, what: Missing) -> CommandError {
        CommandError::MissingArgument {
            verb: self.verb,
            what,
        }
    }

    /// A required percentage (`50` or `50%`).
    pub fn percent(&mut self) -> Result<Percent, CommandError> {
        let word = self.words.next().ok_or(self.missing(Missing::Percent))?;
        parse_percent(word).ok_or_else(|| CommandError::BadPercent {
            given: word.to_owned(),
        })
    }

    /// A required name (a cluster, usually) that is not an option keyword.
    pub fn name(&mut self, what: Missing) -> Result<&'a str, CommandError> {
        match self.words.next() {
            Some(word) if Keyword::from_word(word).is_none() => Ok(word),
            _ => Err(self.missing(what)),
        }
    }

    /// Reads `in ENV` (always allowed) and the verb's `extra` options until
    /// the end; anything else is an error naming the word.
    pub fn options(&mut self, extra: &[Keyword]) -> Result<Options<'a>, CommandError> {
        let mut opts = Options::default();
        while let Some(word) = self.words.next() {
            let keyword = Keyword::from_word(word)
                .filter(|k| *k == Keyword::In || extra.contains(k))
                .ok_or_else(|| CommandError::UnexpectedWord {
                    verb: self.verb,
                    word: word.to_owned(),
                })?;
            let repeated = match keyword {
                Keyword::In => opts.env.is_some(),
                Keyword::To => opts.to.is_some(),
                Keyword::Steps => opts.steps.is_some(),
                Keyword::Weight => opts.weight.is_some(),
                Keyword::Because => opts.reason.is_some(),
                Keyword::For => opts.time_limit.is_some(),
                Keyword::And => opts.back,
            };
            if repeated {
                return Err(CommandError::RepeatedOption {
                    verb: self.verb,
                    option: keyword.name().to_owned(),
                });
            }
            match keyword {
                Keyword::In => opts.env = Some(self.name(Missing::Environment)?),
                Keyword::To => opts.to = Some(self.name(Missing::Cluster)?),
                Keyword::Steps => opts.steps = Some(self.steps()?),
                Keyword::Weight => opts.weight = Some(self.weight()?),
                Keyword::Because => opts.reason = Some(self.rest(Missing::Reason)?),
                Keyword::For => {
                    let word = self.name(Missing::Duration)?;
                    opts.time_limit = Some(TimeLimit::parse(word)?);
                }
                Keyword::And => {
                    self.back()?;
                    opts.back = true;
                }
            }
        }
        Ok(opts)
    }

    /// The rest of the words, as one text (a reason); required.
    pub fn rest(&mut self, what: Missing) -> Result<String, CommandError> {
        let rest: Vec<&str> = self.words.by_ref().collect();
        if rest.is_empty() {
            return Err(self.missing(what));
        }
        Ok(rest.join(" "))
    }

    /// `back`, after `and`.
    fn back(&mut self) -> Result<(), CommandError> {
        match self.words.next() {
            Some(word) if word.eq_ignore_ascii_case("back") => Ok(()),
            Some(word) => Err(CommandError::AndWhat {
                given: word.to_owned(),
            }),
            None => Err(self.missing(Missing::Back)),
        }
    }

    /// The next word, taken.
    pub fn next_word(&mut self) -> Option<&'a str> {
        self.words.next()
    }

    /// Whether the next word is `keyword`; it is taken if so.
    pub fn take(&mut self, keyword: Keyword) -> bool {
        let next = self.words.peek().and_then(|w| Keyword::from_word(w));
        if next == Some(keyword) {
            self.words.next();
            return true;
        }
        false
    }

    /// `weight N`, a raw weight 0–255.
    fn weight(&mut self) -> Result<u8, CommandError> {
        let word = self.words.next().ok_or(self.missing(Missing::Weight))?;
        let digits = word.bytes().all(|b| b.is_ascii_digit()) && (1..=3).contains(&word.len());
        digits
            .then(|| word.parse().ok())
            .flatten()
            .ok_or_else(|| CommandError::BadWeight {
                given: word.to_owned(),
            })
    }

    /// `NAME=VALUE` words, up to the first word that is not one.
    pub fn assignments(&mut self) -> Result<Vec<(&'a str, &'a str)>, CommandError> {
        let mut pairs = Vec::new();
        while let Some((name, value)) = self.words.peek().and_then(|w| w.split_once('=')) {
            self.words.next();
            if name.is_empty() {
                return Err(CommandError::BadWeight {
                    given: format!("={value}"),
                });
            }
            pairs.push((name, value));
        }
        Ok(pairs)
    }

    /// `steps 10,50,100`; spaces after commas are tolerated (`10, 50, 100`).
    fn steps(&mut self) -> Result<Vec<Percent>, CommandError> {
        let mut list = String::new();
        while let Some(word) = self.words.peek() {
            let continues_list = list.is_empty() || list.ends_with(',') || word.starts_with(',');
            if Keyword::from_word(word).is_some() || !continues_list {
                break;
            }
            list.push_str(word);
            self.words.next();
        }
        if list.is_empty() {
            return Err(self.missing(Missing::StepList));
        }
        let bad = |problem| CommandError::BadSteps {
            given: list.clone(),
            problem,
        };
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
                    return Err(bad(StepsError::NotAPercentage {
                        item: item.to_owned(),
                    }))
                }
            }
        }
        validate_steps(&numbers).map_err(bad)
    }

    /// `routing.default_steps`, validated when the config was loaded.
    pub fn default_steps(&self) -> Vec<Percent> {
        validate_steps(&self.config.routing.default_steps).unwrap_or_else(|_| vec![Percent::MAX])
    }

    /// The environment the command is about (`in ENV`, the channel's, or
    /// the only one), from a channel the bot takes commands in.
    pub fn scope(&self, env: Option<&str>) -> Result<Scope<'a>, CommandError> {
        Scope::resolve(self.config, self.channel, env)
    }
}

fn parse_percent(word: &str) -> Option<Percent> {
    let digits = word.strip_suffix('%').unwrap_or(word);
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Percent::new(digits.parse().ok()?)
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
