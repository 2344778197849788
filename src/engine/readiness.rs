//! The scheduled readiness check's voice: an environment hears about its
//! result only when it changed since the last post, or in the weekly
//! all-clear. The last post is the journal's `Say` record of it, folded
//! into the ledger, so a restart compares with it too and does not post
//! the same result again.

use super::Engine;
use crate::journal::ledger::Finished;
use crate::notice::{Destination, Notice, ReadinessNotice};
use crate::readiness::{occasion, Occasion, Report};

impl Engine {
    /// Posts `report` to its environment's doctor channel if it is worth
    /// saying now; returns why it posted, `None` when it stayed quiet.
    pub async fn report_readiness(&self, report: Report) -> Option<Occasion> {
        let now = self.clock.now();
        let last = self.with_ledger(|l| l.readiness.get(&report.env).cloned());
        let occasion = occasion(last.as_ref(), &report, now)?;
        let Some(channel) = self.config.doctor_channel(&report.env) else {
            // Config validation requires a channel when `doctor.every` is
            // set; a report without one is logged, not lost in silence.
            tracing::warn!(env = %report.env, "no channel for the readiness check's post");
            return None;
        };
        let to = Destination::Post {
            channel: channel.to_owned(),
            thread: None,
        };
        let notice = ReadinessNotice { report, occasion };
        self.say(to, Notice::Readiness(Box::new(notice))).await;
        Some(occasion)
    }

    /// Finished operations, from the ledger, without copying the rest.
    pub fn finished_in(&self, env: &str) -> Vec<Finished> {
        self.with_ledger(|l| {
            l.finished
                .iter()
                .filter(|f| f.header.env == env)
                .cloned()
                .collect()
        })
    }
}
