//! `/failover freeze [in ENV] REASON` and `/failover unfreeze [in ENV]`
//! (approvers only): while an environment is frozen, new operations are
//! refused with the reason and who froze it, except break-glass (`shift!`)
//! by its break-glass users. What already runs goes on; `abort` still works.

use super::grammar::{Args, Keyword};
use super::{Command, CommandError, Missing, Request};

pub const USAGE: &str =
    "`/failover freeze [in ENV] REASON`, e.g. `/failover freeze in prod quarter-end close`";
pub const SUMMARY: &str = "refuse new operations (but break-glass) until unfrozen; approvers only";
pub const UNFREEZE_USAGE: &str = "`/failover unfreeze [in ENV]`";
pub const UNFREEZE_SUMMARY: &str = "lift a freeze; approvers only";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freeze {
    pub reason: String,
}

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let env = match args.take(Keyword::In) {
        true => Some(args.name(Missing::Environment)?),
        false => None,
    };
    // `freeze because …` reads as well as `freeze …`.
    args.take(Keyword::Because);
    let reason = args.rest(Missing::Reason)?;
    let scope = args.scope(env)?;
    Ok(Request {
        env: scope.env,
        command: Command::Freeze(Freeze { reason }),
        reason: None,
    })
}

pub(super) fn parse_unfreeze(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let options = args.options(&[])?;
    let scope = args.scope(options.env)?;
    Ok(Request {
        env: scope.env,
        command: Command::Unfreeze,
        reason: None,
    })
}
