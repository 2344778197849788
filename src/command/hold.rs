//! Time-limited shifts. `… for 2h` on `shift` and `to` holds the new
//! weights for that long, then puts them back: the approval of the shift
//! covers that return. Ten minutes before, the thread is reminded of
//! `/failover extend DURATION [in ENV]` (hold longer) and
//! `/failover keep [in ENV]` (keep the weights, end the operation); each is
//! a plan of its own that needs an approval, as a weight change does.
//!
//! AWS caps its zonal shifts at 72 hours; so does the bot, counted from
//! when the weights began to hold, extensions included.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::grammar::Args;
use super::{Command, CommandError, Missing, Request};

pub const EXTEND_USAGE: &str = "`/failover extend DURATION [in ENV]`, e.g. `/failover extend 1h`";
pub const EXTEND_SUMMARY: &str =
    "hold a time-limited shift's weights longer (needs an approval; 72 h at most in all)";
pub const KEEP_USAGE: &str = "`/failover keep [in ENV]`";
pub const KEEP_SUMMARY: &str =
    "keep a time-limited shift's weights for good and end it (needs an approval)";

/// The longest a time-limited shift holds, extensions included.
pub const LONGEST: Duration = Duration::from_secs(72 * 3600);

/// The shortest hold that makes sense: one minute.
const SHORTEST: Duration = Duration::from_secs(60);

/// How long a time-limited shift holds its weights before they go back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeLimit {
    #[serde(with = "humantime_serde")]
    pub lasts: Duration,
}

impl TimeLimit {
    /// `2h`, `90m`, `1h30m`: one minute to 72 hours.
    pub fn parse(word: &str) -> Result<TimeLimit, CommandError> {
        let lasts = humantime::parse_duration(word).map_err(|_| CommandError::BadDuration {
            given: word.to_owned(),
        })?;
        if lasts < SHORTEST {
            return Err(CommandError::BadDuration {
                given: word.to_owned(),
            });
        }
        if lasts > LONGEST {
            return Err(CommandError::TooLong {
                given: word.to_owned(),
            });
        }
        Ok(TimeLimit { lasts })
    }

    pub fn chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.lasts).unwrap_or(chrono::Duration::MAX)
    }
}

/// As people write it: `2h`, `90m` → `1h30m`, `72h` (not `3days`).
impl std::fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let minutes = self.lasts.as_secs() / 60;
        match (minutes / 60, minutes % 60) {
            (0, m) => write!(f, "{m}m"),
            (h, 0) => write!(f, "{h}h"),
            (h, m) => write!(f, "{h}h{m}m"),
        }
    }
}

/// A change to a holding shift, asked for with `extend` or `keep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum HoldChange {
    /// Hold this much longer.
    Extend { by: TimeLimit },
    /// Keep the weights for good; the operation ends.
    Keep,
}

pub(super) fn parse_extend(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let word = args.name(Missing::Duration)?;
    let by = TimeLimit::parse(word)?;
    let options = args.options(&[])?;
    let scope = args.scope(options.env)?;
    Ok(Request {
        env: scope.env,
        reason: None,
        command: Command::Hold(HoldChange::Extend { by }),
    })
}

pub(super) fn parse_keep(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let options = args.options(&[])?;
    let scope = args.scope(options.env)?;
    Ok(Request {
        env: scope.env,
        reason: None,
        command: Command::Hold(HoldChange::Keep),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_a_minute_to_72_hours() {
        assert_eq!(TimeLimit::parse("2h").unwrap().lasts.as_secs(), 7200);
        assert_eq!(TimeLimit::parse("1h30m").unwrap().lasts.as_secs(), 5400);
        assert_eq!(TimeLimit::parse("72h").unwrap().lasts, LONGEST);
        assert!(matches!(
            TimeLimit::parse("73h"),
            Err(CommandError::TooLong { .. })
        ));
        for bad in ["soon", "2", "-1h", "30s", "0m"] {
            assert!(
                matches!(TimeLimit::parse(bad), Err(CommandError::BadDuration { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_time_limit_reads_as_people_write_it() {
        for (given, shown) in [
            ("2h", "2h"),
            ("90m", "1h30m"),
            ("72h", "72h"),
            ("3days", "72h"),
        ] {
            assert_eq!(TimeLimit::parse(given).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn a_time_limit_is_journaled_as_people_write_it() {
        let limit = TimeLimit::parse("2h").unwrap();
        let json = serde_json::to_string(&limit).unwrap();
        assert_eq!(json, r#"{"lasts":"2h"}"#);
        assert_eq!(serde_json::from_str::<TimeLimit>(&json).unwrap(), limit);
    }
}
