//! `/failover history [in ENV]`: recent operations with their requester and
//! approvers, from the journal; only its author sees the answer.

use super::grammar::Args;
use super::{Command, CommandError, Request};

pub const USAGE: &str = "`/failover history [in ENV]`";
pub const SUMMARY: &str = "recent operations";

/// How many finished operations `history` lists.
pub const SHOWN: usize = 10;

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let options = args.options(&[])?;
    let scope = args.scope(options.env)?;
    Ok(Request {
        env: scope.env,
        reason: None,
        command: Command::History,
    })
}
