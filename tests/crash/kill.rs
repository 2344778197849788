//! Where to kill the bot (a phase aimed at, timed from an anchor), and
//! where the kill really landed, read from the journal, the channel and
//! the clusters afterwards.

use std::time::Duration;

use failover_bot::ids::ClusterId;
use failover_bot::journal::ledger::Ledger;
use failover_bot::journal::Record;
use failover_bot::operation::Phase;
use failover_bot::plan::Weights;

use crate::journal::{is, records_of, Kind};
use crate::seeds::SplitMix64;
use crate::support::fake_slack::FakeSlack;
use crate::{ENV, STEPS};

/// What the kill is timed from.
#[derive(Clone, Copy, Debug)]
pub enum Anchor {
    /// The slash command was acknowledged.
    CommandSent,
    /// Step N's approval was acknowledged.
    ApprovalSent(usize),
    /// The first record of this kind for step N is in the journal.
    Record(Kind, usize),
}

#[derive(Clone, Copy, Debug)]
pub struct KillPoint {
    /// The phase aimed at; where the kill really landed is read from the
    /// journal afterwards.
    pub aim: &'static str,
    pub anchor: Anchor,
    pub delay: Duration,
    /// While the bot is down mid-step, someone else sets a cluster to a
    /// weight no plan has: the bot must stop and report every weight.
    pub meddle: bool,
}

impl KillPoint {
    pub fn pick(rng: &mut SplitMix64) -> KillPoint {
        let step = 1 + rng.below(3) as usize;
        let ms = Duration::from_millis;
        // The ranges cover each phase as measured on a 2-core machine:
        // read and gates ~30 ms, a plan post ~10 ms, writes ~10 ms,
        // verification about world::LUNAR_DELAY; a step's result goes out within
        // a millisecond of its record, the next plan within ~30 ms.
        let (aim, anchor, max) = match rng.below(9) {
            0 => ("before the operation", Anchor::CommandSent, ms(40)),
            1 => ("before the plan", Anchor::Record(Kind::Started, 0), ms(15)),
            2 => ("pending", Anchor::Record(Kind::Proposed, step), ms(300)),
            3 => ("after approval", Anchor::ApprovalSent(step), ms(8)),
            4 => ("writes", Anchor::Record(Kind::StepStarted, step), ms(12)),
            5 => ("verification", Anchor::Record(Kind::Changed, step), ms(120)),
            6 => (
                "step result",
                Anchor::Record(Kind::StepFinished, step),
                ms(2),
            ),
            7 => (
                "between steps",
                Anchor::Record(Kind::StepFinished, step),
                ms(30),
            ),
            _ => ("after finish", Anchor::Record(Kind::Finished, 0), ms(3)),
        };
        let delay = rng.delay(max);
        let mid_step = matches!(aim, "writes" | "verification");
        KillPoint {
            aim,
            anchor,
            delay,
            meddle: mid_step && rng.below(2) == 0,
        }
    }

    /// Steps approved before the kill is armed (nothing is sent after).
    pub fn approvals_first(&self) -> usize {
        match self.anchor {
            Anchor::CommandSent | Anchor::Record(Kind::Started, _) => 0,
            Anchor::ApprovalSent(step) => step,
            Anchor::Record(Kind::Proposed, step) => step - 1,
            Anchor::Record(Kind::Finished, _) => STEPS.len(),
            Anchor::Record(_, step) => step,
        }
    }

    pub fn describe(&self) -> String {
        let anchor = match self.anchor {
            Anchor::CommandSent => "command sent".to_owned(),
            Anchor::ApprovalSent(step) => format!("approval {step} sent"),
            Anchor::Record(kind @ (Kind::Started | Kind::Finished), _) => format!("{kind:?}"),
            Anchor::Record(kind, step) => format!("{kind:?}({step})"),
        };
        let meddle = if self.meddle { ", meddle" } else { "" };
        format!(
            "{anchor} + {:.1} ms{meddle}",
            self.delay.as_secs_f64() * 1e3
        )
    }
}

/// Where the kill landed: a phase, and the details.
pub struct Landed {
    pub phase: &'static str,
    pub detail: String,
}

/// Where the kill landed, from the journal, the channel and the clusters.
pub fn landed(records: &[Record], fake: &FakeSlack, now: &Weights) -> Landed {
    let at = |phase: &'static str, detail: String| Landed { phase, detail };
    let ledger = Ledger::replay(records);
    let Some(op) = ledger.active.get(ENV) else {
        return match (ledger.finished.is_empty(), records.is_empty()) {
            (false, _) => at("finished", String::new()),
            (true, false) => at("command journaled, no operation", String::new()),
            (true, true) => at("nothing journaled", String::new()),
        };
    };
    let step = op.step;
    match &op.phase {
        Phase::Proposing => {
            let posted = fake.plan_posts().len() > records_of(records, "proposed");
            let detail = format!("step {step}{}", if posted { ", plan posted" } else { "" });
            match (step, posted) {
                (1, false) => at("planning step 1", detail),
                (_, true) => at("plan posted, not journaled", detail),
                _ => at("between steps", detail),
            }
        }
        Phase::AwaitingApproval(_) => at("pending approval", format!("step {step}")),
        Phase::Approved(_) => at("approved, not started", format!("step {step}")),
        Phase::Applying(shown) => {
            let since_start = records
                .iter()
                .rev()
                .take_while(|r| !is(r, Kind::StepStarted, step));
            if since_start.into_iter().any(|r| is(r, Kind::Changed, step)) {
                return at("verifying", format!("step {step}"));
            }
            let moved: Vec<&ClusterId> = shown.plan.changed_clusters().collect();
            let written = moved
                .iter()
                .filter(|c| now.get(c) == shown.plan.after.get(c))
                .count();
            at(
                "writing",
                format!("step {step}, {written}/{} written", moved.len()),
            )
        }
        Phase::Baking { .. } => at("baking", format!("after step {step}")),
        Phase::Finishing(_) => at("closing", format!("after step {step}")),
    }
}
