//! `/failover drill to CLUSTER [in ENV] [steps 10,50,100] [and back]`: a
//! practice failover. It runs exactly as `to` does — the same approvals,
//! gates and steps — marked as a drill, so that its end is scored (how
//! long each step waited, applied and converged) and compared with the
//! environment's earlier drills. `and back` returns to the weights from
//! before the drill as further steps of the same drill, each approved.
//!
//! `/failover drills [in ENV]`: the environment's past drills.

use super::grammar::{Args, Keyword};
use super::to::{FailoverOp, To};
use super::{Command, CommandError, Missing, Request};
use crate::plan::Weights;

pub const USAGE: &str = "`/failover drill to CLUSTER [in ENV] [steps 10,50,100] [and back]`";
pub const SUMMARY: &str =
    "a practice failover (approved like `to`), timed and scored at its end; `and back` returns in steps";
pub const LIST_USAGE: &str = "`/failover drills [in ENV]`";
pub const LIST_SUMMARY: &str = "past drills: when, who, how they ended, how long they took";

/// How many drills `drills` lists, newest first.
pub const LISTED: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drill {
    /// Where the drill goes, as `to` would.
    pub to: To,
    /// `and back`: then back to the weights from before the drill.
    pub back: bool,
}

pub(super) fn parse(args: &mut Args<'_>) -> Result<Request, CommandError> {
    if !args.take(Keyword::To) {
        return Err(match args.next_word() {
            None => CommandError::MissingArgument {
                verb: args.verb,
                what: Missing::Cluster,
            },
            Some(word) => CommandError::DrillWithoutTo {
                given: word.to_owned(),
            },
        });
    }
    let name = args.name(Missing::Cluster)?;
    let options = args.options(&[Keyword::Steps, Keyword::And, Keyword::Because])?;
    let scope = args.scope(options.env)?;
    let cluster = scope.cluster(name)?;
    let steps = options.steps.unwrap_or_else(|| args.default_steps());
    Ok(Request {
        env: scope.env,
        reason: options.reason,
        command: Command::Drill(Drill {
            to: To {
                cluster,
                steps,
                time_limit: None,
            },
            back: options.back,
        }),
    })
}

pub(super) fn parse_list(args: &mut Args<'_>) -> Result<Request, CommandError> {
    let options = args.options(&[])?;
    let scope = args.scope(options.env)?;
    Ok(Request {
        env: scope.env,
        reason: None,
        command: Command::Drills,
    })
}

impl Drill {
    /// The operation: `to`'s, with the way back when asked for.
    pub fn operation(&self, now: &Weights) -> Result<FailoverOp, CommandError> {
        let forward = self.to.operation(now)?;
        Ok(match self.back {
            true => forward.and_back(now),
            false => forward,
        })
    }
}
