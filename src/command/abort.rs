//! `/failover abort [in ENV]`: ends the running operation where it stands;
//! no weight changes. A plan awaiting approval is withdrawn.

use super::grammar::Args;
use super::{Command, CommandError, Request};

pub const USAGE: &str = "`/failover abort [in ENV]`";
pub const SUMMARY: &str = "stop the running operation; no weight changes";

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let options = args.options(&[])?;
    let scope = args.scope(options.env)?;
    Ok(Request {
        env: scope.env,
        reason: None,
        command: Command::Abort,
    })
}
