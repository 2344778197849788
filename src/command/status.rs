//! `/failover status [in ENV]`: every cluster's weight, as set and as
//! carried by what serves traffic (Ingresses, Services, Route53). Changes
//! nothing; the answer is posted in the channel.

use super::grammar::Args;
use super::{Command, CommandError, Request};

pub const USAGE: &str = "`/failover status [in ENV]`";
pub const SUMMARY: &str = "show weights per cluster, as set and as observed";

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let options = args.options(&[])?;
    let scope = args.scope(options.env)?;
    Ok(Request {
        env: scope.env,
        reason: None,
        command: Command::Status,
    })
}
