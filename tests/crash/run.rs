//! One run: start the bot, drive the failover to the kill point, SIGKILL
//! it, look at what it left, restart it, drive the operation to its end,
//! then check.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use failover_bot::journal::ledger::Ledger;
use failover_bot::journal::{Entry, Record};
use failover_bot::operation::{OperationOutcome, Phase};

use crate::checks::check_run;
use crate::journal::{audit_verifies, journal_summary, records, JournalWatch, Kind};
use crate::kill::{landed, Anchor, KillPoint, Landed};
use crate::observer::Observer;
use crate::report::RunReport;
use crate::seeds::SplitMix64;
use crate::support::fake_slack::FakeSlack;
use crate::support::serve_proc::{ServeProc, Transport};
use crate::world::World;
use crate::{APPROVER, COMMAND, ENV, REQUESTER};

/// Generous: a run takes a few seconds; a stalled one must not hang CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const RECORD_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(5);

/// The bot and the fake Slack of one run, and what the test sent them.
pub struct Run {
    seed: u64,
    pub fake: FakeSlack,
    pub bot: ServeProc,
    sent: usize,
    pub violations: Vec<String>,
}

impl Run {
    fn event_id(&mut self) -> String {
        self.sent += 1;
        format!("Ev-{}-{}", self.seed, self.sent)
    }

    async fn command(&mut self) {
        let trigger = self.event_id();
        let reply = self
            .bot
            .slash(&self.fake, REQUESTER, COMMAND, &trigger)
            .await;
        if !reply.contains("Working on") {
            self.violations
                .push(format!("the command was answered with: {reply}"));
        }
    }

    async fn approve(&mut self, ts: &str) {
        let event = self.event_id();
        self.bot
            .reaction(&self.fake, &event, APPROVER, "white_check_mark", ts, true)
            .await;
    }

    pub fn records(&self) -> Vec<Record> {
        records(&self.bot.journal_path())
    }

    /// Polls the journal for the first `kind` record of `step`.
    async fn wait_record(&mut self, kind: Kind, step: usize) -> Option<Record> {
        let deadline = Instant::now() + RECORD_TIMEOUT;
        let mut journal = JournalWatch::new(self.bot.journal_path());
        while Instant::now() < deadline {
            if let Some(record) = journal.find(kind, step) {
                return Some(record);
            }
            tokio::time::sleep(POLL).await;
        }
        self.missing(kind, step);
        None
    }

    fn missing(&mut self, kind: Kind, step: usize) {
        self.violations.push(format!(
            "no {kind:?} record for step {step} within {RECORD_TIMEOUT:?}"
        ));
    }

    /// The plan message of `step`, once it is journaled.
    async fn wait_plan(&mut self, step: usize) -> Option<String> {
        match self.wait_record(Kind::Proposed, step).await?.entry {
            Entry::Proposed { message, .. } => Some(message.ts),
            _ => None,
        }
    }

    /// Drives the operation up to the kill point, then SIGKILLs the bot.
    async fn crash(&mut self, kill: &KillPoint) {
        self.command().await;
        for step in 1..=kill.approvals_first() {
            let Some(ts) = self.wait_plan(step).await else {
                break;
            };
            self.approve(&ts).await;
        }
        // Sub-millisecond windows matter here (a record is followed by its
        // chat message within a millisecond), and tokio's timer has 1 ms
        // resolution: watch and sleep on this thread instead.
        tokio::task::block_in_place(|| {
            if let Anchor::Record(kind, step) = kill.anchor {
                self.watch_for_record(kind, step);
            }
            std::thread::sleep(kill.delay);
            self.bot.kill();
        });
    }

    /// Like [`Run::wait_record`], polling every 100 µs on this thread.
    fn watch_for_record(&mut self, kind: Kind, step: usize) {
        let deadline = Instant::now() + RECORD_TIMEOUT;
        let mut journal = JournalWatch::new(self.bot.journal_path());
        while Instant::now() < deadline {
            if journal.find(kind, step).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        self.missing(kind, step);
    }

    /// After the restart: approves whatever awaits approval (retyping the
    /// command if it was lost) until the operation has finished.
    async fn finish(&mut self, pending_before: Option<&str>) -> Option<OperationOutcome> {
        let deadline = Instant::now() + RUN_TIMEOUT;
        let mut approved = BTreeSet::new();
        let mut retyped = false;
        while Instant::now() < deadline {
            let ledger = Ledger::replay(&self.records());
            if let Some(done) = ledger.finished.last() {
                return Some(done.outcome.clone());
            }
            match ledger.active.get(ENV).map(|op| &op.phase) {
                None if !retyped => {
                    // Slack does not redeliver an acknowledged command: the
                    // requester types it again.
                    retyped = true;
                    self.command().await;
                }
                Some(Phase::AwaitingApproval(shown)) if !approved.contains(&shown.message.ts) => {
                    let ts = shown.message.ts.clone();
                    if let Some(before) = pending_before.filter(|_| approved.is_empty()) {
                        if before != ts {
                            self.violations.push(format!(
                                "the plan pending before the kill ({before}) was replaced by {ts}"
                            ));
                        }
                    }
                    approved.insert(ts.clone());
                    self.approve(&ts).await;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.violations.push(format!(
            "the operation did not finish within {RUN_TIMEOUT:?}"
        ));
        None
    }
}

/// What the journal, the channel and the clusters said right after the kill.
pub struct AtKill {
    pub landed: Landed,
    pub active: bool,
    /// A command was journaled but not answered.
    pub cut_short: bool,
    /// The plan message awaiting approval, if one was.
    pub pending: Option<String>,
    /// Posts the fake Slack had received.
    pub posts: usize,
    /// The revision of someone else's change made while the bot was down.
    pub foreign: Option<u64>,
    pub notes: Vec<String>,
}

/// A weight no plan of the failover has.
const FOREIGN_WEIGHT: u8 = 7;

pub async fn run(seed: u64, world: Arc<World>) -> RunReport {
    let started = Instant::now();
    let mut rng = SplitMix64(seed);
    let transport = if rng.below(2) == 0 {
        Transport::Http
    } else {
        Transport::Socket
    };
    let kill = KillPoint::pick(&mut rng);
    world.reset().await;
    let observer = Observer::start(&world).await;
    let fake = FakeSlack::start().await;
    let bot = ServeProc::options(&world.config)
        .transport(transport)
        .kubeconfig(world.env.kubeconfig())
        .start(&fake)
        .await;
    let mut run = Run {
        seed,
        fake,
        bot,
        sent: 0,
        violations: Vec::new(),
    };

    run.crash(&kill).await;
    let at_kill = look_after_kill(&mut run, &world, &kill).await;
    run.bot.restart(&run.fake).await;
    let outcome = run.finish(at_kill.pending.as_deref()).await;
    let violations = check_run(&mut run, &world, &observer, &at_kill, outcome.as_ref()).await;
    RunReport {
        seed,
        transport,
        aim: kill.aim,
        kill: kill.describe(),
        landed: at_kill.landed,
        outcome: outcome.map_or_else(|| "unfinished".to_owned(), |o| o.word().to_owned()),
        took: started.elapsed(),
        journal: journal_summary(&run.records()),
        violations,
        notes: at_kill.notes,
    }
}

/// Reads where the kill landed, checks the journal, and meddles if the
/// kill point says so.
async fn look_after_kill(run: &mut Run, world: &World, kill: &KillPoint) -> AtKill {
    let records = run.records();
    let (weights, _) = world.read().await;
    let landed = landed(&records, &run.fake, &weights);
    if let Err(e) = audit_verifies(&run.bot.journal_path()) {
        run.violations.push(format!("after the kill: {e}"));
    }
    let ledger = Ledger::replay(&records);
    let active = ledger.active.contains_key(ENV);
    let notes = Vec::new();
    // Slack does not redeliver an acknowledged command: one the kill cut
    // short must be answered by the restarted bot.
    let cut_short = !ledger.unanswered.is_empty();
    let pending = match ledger.active.get(ENV).map(|op| &op.phase) {
        Some(Phase::AwaitingApproval(shown)) => Some(shown.message.ts.clone()),
        _ => None,
    };
    let mid_step = matches!(landed.phase, "writing" | "verifying");
    let foreign = match kill.meddle && mid_step {
        true => Some(world.set_weight(1, FOREIGN_WEIGHT).await),
        false => None,
    };
    AtKill {
        landed,
        active,
        cut_short,
        pending,
        posts: run.fake.posts().len(),
        foreign,
        notes,
    }
}
