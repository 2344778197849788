//! The fold of journal records into state: the running operation of each
//! environment, the plans shown (so a reaction finds its plan), recent
//! history, and the Slack deliveries already acted on. Pure: no I/O. The
//! engine folds each record in as it is made durable, and a restart replays
//! the journal through the same function, so the state after a restart is
//! the state before it, by construction.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Entry, Record};
use crate::approval::Vote;
use crate::approval::{Approval, ApprovalState};
use crate::command::hold::HoldChange;
use crate::drill::{DrillClock, DrillEnd, DrillTimings};
use crate::ids::{EnvId, MessageRef, OpId, UserId};
use crate::notice::{Destination, Notice};
use crate::operation::{
    Freeze, GateWarning, Hold, HoldAsk, OperationHeader, OperationOutcome, OperationState, Phase,
    Return, ShownPlan, StepApproval, StepOutcome, StopCause, Tripped,
};
use crate::plan::PlanHash;
use crate::readiness::LastPost;

/// Which step's plan a message showed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMessage {
    pub env: EnvId,
    pub op: OpId,
    pub step: usize,
    pub plan: PlanHash,
}

/// A finished operation, for `history` and `rollback`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    pub header: OperationHeader,
    pub outcome: OperationOutcome,
    pub approvals: Vec<StepApproval>,
    pub finished_at: DateTime<Utc>,
    pub thread: Option<MessageRef>,
    /// A drill's times, from its records (see [`DrillClock`]).
    pub drill: Option<DrillTimings>,
}

impl Finished {
    /// How a drill ended, for its scorecard and `drills`.
    pub fn drill_end(&self) -> DrillEnd {
        drill_end(&self.outcome)
    }
}

/// A drill's end, from its operation's outcome.
pub fn drill_end(outcome: &OperationOutcome) -> DrillEnd {
    match outcome {
        OperationOutcome::Completed => DrillEnd::Completed,
        OperationOutcome::Rejected { .. } => DrillEnd::Rejected,
        OperationOutcome::Expired => DrillEnd::Expired,
        OperationOutcome::Withdrawn { .. } => DrillEnd::Withdrawn,
        OperationOutcome::Aborted { .. } => DrillEnd::Aborted,
        OperationOutcome::Failed { .. } => DrillEnd::Failed,
    }
}

/// A command journaled but not yet answered: while the bot runs, one being
/// handled; after a restart, one the crash cut short.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnansweredCommand {
    pub user: UserId,
    pub channel: String,
    pub text: String,
}

/// A message journaled but not yet delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsaid {
    pub to: Destination,
    pub notice: Notice,
}

/// How many Slack delivery ids are remembered. Slack retries a delivery
/// within minutes; ten thousand ids cover days of commands and reactions.
pub const EVENT_WINDOW: usize = 10_000;

/// The newest delivery ids, in the order they arrived, bounded.
#[derive(Clone, Debug, Default)]
pub struct EventWindow {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl EventWindow {
    /// Remembers `id`; false if it was already there.
    pub fn insert(&mut self, id: &str) -> bool {
        if !self.seen.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > EVENT_WINDOW {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub active: BTreeMap<EnvId, OperationState>,
    pub finished: Vec<Finished>,
    pub messages: HashMap<MessageRef, PlanMessage>,
    pub events: EventWindow,
    /// By Slack delivery id (commands without one cannot be told apart).
    pub unanswered: BTreeMap<String, UnansweredCommand>,
    /// Messages journaled but not yet delivered, by their `Say` record's
    /// seq: after a restart, what the crash cut off.
    pub unsaid: BTreeMap<u64, Unsaid>,
    pub last_op: OpId,
    /// Environments frozen now.
    pub frozen: BTreeMap<EnvId, Freeze>,
    /// The stopwatch of each running drill, by operation.
    pub drill_clocks: BTreeMap<OpId, DrillClock>,
    /// What the scheduled readiness check last posted about each
    /// environment (from its `Say` records): a restart compares with it.
    pub readiness: BTreeMap<EnvId, LastPost>,
}

/// How many of the newest finished operations of each environment a
/// snapshot keeps for `history` and `rollback` (plus, always, each
/// environment's last weight change, which `rollback` undoes).
pub const HISTORY_KEPT: usize = 20;

/// How many of the newest drills of each environment a snapshot keeps on
/// top: what a drill's scorecard compares with and its chart shows.
pub const DRILLS_KEPT: usize = 30;

/// How many of the newest Slack delivery ids a snapshot keeps: Slack
/// retries a delivery within minutes, so a restart needs only recent ones.
pub const EVENTS_KEPT: usize = 2_000;

/// The ledger as a journal record ([`Entry::Snapshot`]): what start-up
/// needs to go on, bounded (older history stays in the journal for audit
/// and export, not in memory).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSnapshot {
    pub active: Vec<OperationState>,
    pub finished: Vec<Finished>,
    /// Plan messages of the operations kept.
    pub messages: Vec<(MessageRef, PlanMessage)>,
    /// Delivery ids, oldest first.
    pub events: Vec<String>,
    pub unanswered: BTreeMap<String, UnansweredCommand>,
    /// By their `Say` record's seq. (A list: a record's fields are read
    /// through serde's `flatten`, which cannot read numbers as map keys.)
    pub unsaid: Vec<(u64, Unsaid)>,
    pub last_op: OpId,
    pub frozen: BTreeMap<EnvId, Freeze>,
    /// The stopwatch of each running drill.
    #[serde(default)]
    pub drill_clocks: Vec<(OpId, DrillClock)>,
    /// What the scheduled readiness check last posted, by environment.
    #[serde(default)]
    pub readiness: BTreeMap<EnvId, LastPost>,
}

impl Ledger {
    /// The state as a snapshot keeping `history` finished operations per
    /// environment (and each environment's newest drills and last weight
    /// change).
    pub fn snapshot(&self, history: usize) -> LedgerSnapshot {
        let finished = self.kept_history(history);
        let kept_ops: HashSet<OpId> = finished
            .iter()
            .map(|f| f.header.id)
            .chain(self.active.values().map(|o| o.header.id))
            .collect();
        let mut messages: Vec<(MessageRef, PlanMessage)> = self
            .messages
            .iter()
            .filter(|(_, m)| kept_ops.contains(&m.op))
            .map(|(at, m)| (at.clone(), m.clone()))
            .collect();
        messages.sort_by_key(|(_, m)| (m.op, m.step));
        let skip = self.events.len().saturating_sub(EVENTS_KEPT);
        LedgerSnapshot {
            active: self.active.values().cloned().collect(),
            finished,
            messages,
            events: self.events.iter().skip(skip).map(str::to_owned).collect(),
            unanswered: self.unanswered.clone(),
            unsaid: self.unsaid.clone().into_iter().collect(),
            last_op: self.last_op,
            frozen: self.frozen.clone(),
            drill_clocks: self.drill_clocks.clone().into_iter().collect(),
            readiness: self.readiness.clone(),
        }
    }

    /// The newest `history` finished operations of each environment, its
    /// newest [`DRILLS_KEPT`] drills and its last weight change, oldest
    /// first.
    fn kept_history(&self, history: usize) -> Vec<Finished> {
        let mut recent: HashMap<&EnvId, usize> = HashMap::new();
        let mut drills: HashMap<&EnvId, usize> = HashMap::new();
        let mut change_kept: HashSet<&EnvId> = HashSet::new();
        let mut kept: Vec<&Finished> = Vec::new();
        for f in self.finished.iter().rev() {
            let env = &f.header.env;
            let changed = !f.approvals.is_empty();
            let is_recent = bump(&mut recent, env) <= history;
            let is_kept_drill = f.drill.is_some() && bump(&mut drills, env) <= DRILLS_KEPT;
            let is_last_change = changed && change_kept.insert(env);
            if is_recent || is_kept_drill || is_last_change {
                kept.push(f);
            }
        }
        kept.into_iter().rev().cloned().collect()
    }

    /// The ledger a snapshot holds.
    pub fn from_snapshot(snapshot: &LedgerSnapshot) -> Ledger {
        let mut events = EventWindow::default();
        for id in &snapshot.events {
            events.insert(id);
        }
        Ledger {
            active: snapshot
                .active
                .iter()
                .map(|o| (o.header.env.clone(), o.clone()))
                .collect(),
            finished: snapshot.finished.clone(),
            messages: snapshot.messages.iter().cloned().collect(),
            events,
            unanswered: snapshot.unanswered.clone(),
            unsaid: snapshot.unsaid.iter().cloned().collect(),
            last_op: snapshot.last_op,
            frozen: snapshot.frozen.clone(),
            drill_clocks: snapshot.drill_clocks.iter().cloned().collect(),
            readiness: snapshot.readiness.clone(),
        }
    }

    /// Every record folded in, snapshots passed over: the whole history
    /// (for `audit verify`), where start-up keeps only recent history.
    pub fn replay_history<'a>(records: impl IntoIterator<Item = &'a Record>) -> Ledger {
        Ledger::replay(
            records
                .into_iter()
                .filter(|r| !matches!(r.entry, Entry::Snapshot { .. })),
        )
    }

    pub fn replay<'a>(records: impl IntoIterator<Item = &'a Record>) -> Ledger {
        let mut ledger = Ledger::default();
        for record in records {
            ledger.apply(record);
        }
        ledger
    }

    /// The operation a record is about, if it is running.
    fn op_mut(&mut self, op: OpId) -> Option<&mut OperationState> {
        self.active.values_mut().find(|o| o.header.id == op)
    }

    /// Folds one record in. Records that do not fit the state (a decision
    /// about another step or plan, or about an operation already finished)
    /// change nothing: replay must never fail on a journal, and a record
    /// must not decide for a plan it does not name.
    pub fn apply(&mut self, record: &Record) {
        match &record.entry {
            Entry::Command {
                user,
                channel,
                text,
                event,
                answered,
            } => {
                self.note_event(event);
                if let (Some(id), false) = (event, answered) {
                    let command = UnansweredCommand {
                        user: user.clone(),
                        channel: channel.clone(),
                        text: text.clone(),
                    };
                    self.unanswered.insert(id.clone(), command);
                }
            }
            Entry::Answered { event } => {
                self.unanswered.remove(event);
            }
            Entry::Say { to, notice } => {
                if let Notice::Readiness(said) = notice {
                    let last = LastPost {
                        at: record.at,
                        signature: said.report.signature(),
                    };
                    self.readiness.insert(said.report.env.clone(), last);
                }
                let unsaid = Unsaid {
                    to: to.clone(),
                    notice: notice.clone(),
                };
                self.unsaid.insert(record.seq, unsaid);
            }
            Entry::Delivered { say } => {
                self.unsaid.remove(say);
            }
            Entry::Started { header } => self.start(header),
            Entry::PlanPosting { op, step } => {
                if let Some(operation) = self.op_mut(*op) {
                    operation.step = *step;
                    operation.posting_plan = true;
                }
            }
            Entry::Proposed {
                op,
                step,
                plan,
                message,
                expires_at,
                warnings,
                versions,
                approvals_required,
                checks,
                capacity,
            } => {
                let Some(state) = self.op_mut(*op) else {
                    return;
                };
                let asker = state.asker().clone();
                let shown = ShownPlan {
                    approval: Approval::new(plan.hash.clone(), asker, *expires_at)
                        .requiring(*approvals_required),
                    plan: plan.clone(),
                    message: message.clone(),
                    warnings: warnings.clone(),
                    versions: versions.clone(),
                    checks: checks.clone(),
                    capacity: capacity.clone(),
                };
                state.step = *step;
                state.posting_plan = false;
                state.last_shown = Some(shown.clone());
                state.phase = Phase::AwaitingApproval(shown);
                let env = state.header.env.clone();
                self.messages.insert(
                    message.clone(),
                    PlanMessage {
                        env,
                        op: *op,
                        step: *step,
                        plan: plan.hash.clone(),
                    },
                );
            }
            Entry::Decided {
                op,
                step,
                plan,
                state,
                event,
            } => {
                self.note_event(event);
                if let Some(operation) = self.op_mut(*op) {
                    let shows = operation.step == *step
                        && operation.shown().is_some_and(|s| s.plan.hash == *plan);
                    decide(operation, *step, plan, state);
                    if let (true, ApprovalState::Approved { .. }) = (shows, state) {
                        self.time_drill(*op, |clock| clock.approved(record.at));
                    }
                }
            }
            Entry::Voted {
                op,
                step,
                plan,
                by,
                event,
            } => {
                self.note_event(event);
                if let Some(operation) = self.op_mut(*op) {
                    vote(operation, *step, plan, by, record.at);
                }
            }
            Entry::Unvoted {
                op,
                step,
                plan,
                by,
                event,
            } => {
                self.note_event(event);
                if let Some(operation) = self.op_mut(*op) {
                    unvote(operation, *step, plan, by);
                }
            }
            Entry::Frozen { env, by, reason } => {
                let freeze = Freeze {
                    by: by.clone(),
                    reason: reason.clone(),
                    since: record.at,
                };
                self.frozen.insert(env.clone(), freeze);
            }
            Entry::Unfrozen { env, .. } => {
                self.frozen.remove(env);
            }
            Entry::StepStarted {
                op,
                step,
                plan,
                warnings,
            } => {
                if let Some(operation) = self.op_mut(*op) {
                    start_step(operation, *step, plan, warnings, record.at);
                }
            }
            Entry::Changed { op, .. } => self.time_drill(*op, |clock| clock.written(record.at)),
            Entry::StepFinished {
                op,
                outcome,
                bake_until,
                ..
            } => {
                if let Some(operation) = self.op_mut(*op) {
                    finish_step(operation, outcome, *bake_until, record.at);
                    self.time_drill(*op, |clock| match outcome {
                        StepOutcome::Skipped | StepOutcome::Conflict => clock.step_again(),
                        _ => clock.step_done(record.at),
                    });
                }
            }
            Entry::BakeShown { op, message, .. } => {
                if let Some(operation) = self.op_mut(*op) {
                    operation.bake_message = Some(message.clone());
                }
            }
            Entry::Baked { op, step, .. } => {
                if let Some(operation) = self.op_mut(*op) {
                    if operation.step == *step && matches!(operation.phase, Phase::Baking { .. }) {
                        operation.bake_message = None;
                        operation.phase = next_step(operation, record.at);
                    }
                }
            }
            Entry::Tripped { op, step, checks } => {
                if let Some(operation) = self.op_mut(*op) {
                    if operation.step != *step || !matches!(operation.phase, Phase::Baking { .. }) {
                        return;
                    }
                    operation.bake_message = None;
                    operation.tripped = Some(Tripped {
                        step: *step,
                        checks: checks.clone(),
                    });
                    operation.phase = Phase::Proposing;
                }
            }
            Entry::Reminded { op, .. } => {
                if let Some(hold) = self.op_mut(*op).and_then(|o| o.hold.as_mut()) {
                    hold.reminded = true;
                }
            }
            Entry::ReturnDue { op, by_hand } => {
                if let Some(operation) = self.op_mut(*op) {
                    begin_return(operation, *by_hand);
                }
            }
            Entry::HoldAsked { op, change, by } => {
                if let Some(operation) = self.op_mut(*op) {
                    ask_hold_change(operation, change, by);
                }
            }
            Entry::Finished { op, outcome } => self.finish(*op, outcome, record.at),
            // Signatures are checked on the lines, before any replay.
            Entry::Checkpoint { .. } | Entry::KeyRotated { .. } | Entry::Rekeyed { .. } => {}
            Entry::Snapshot { state } => *self = Ledger::from_snapshot(state),
        }
    }

    /// Moves the stopwatch of drill `op`, if `op` is a running drill.
    fn time_drill(&mut self, op: OpId, mark: impl FnOnce(&mut DrillClock)) {
        if let Some(clock) = self.drill_clocks.get_mut(&op) {
            mark(clock);
        }
    }

    fn start(&mut self, header: &OperationHeader) {
        if let Some(id) = &header.event {
            self.unanswered.remove(id);
        }
        if header.drill {
            self.drill_clocks
                .insert(header.id, DrillClock::start(header.started_at));
        }
        self.last_op = self.last_op.max(header.id);
        self.active.insert(
            header.env.clone(),
            OperationState {
                header: header.clone(),
                step: 1,
                phase: Phase::Proposing,
                approvals: Vec::new(),
                last_shown: None,
                posting_plan: false,
                step_started_at: None,
                bake_message: None,
                tripped: None,
                hold: None,
            },
        );
    }

    fn finish(&mut self, op: OpId, outcome: &OperationOutcome, at: DateTime<Utc>) {
        let Some(env) = self
            .active
            .iter()
            .find(|(_, o)| o.header.id == op)
            .map(|(env, _)| env.clone())
        else {
            return;
        };
        if let Some(state) = self.active.remove(&env) {
            let drill = self.drill_clocks.remove(&op).map(|clock| DrillTimings {
                op,
                env: env.clone(),
                started_at: state.header.started_at,
                steps: clock.close(at, *outcome == OperationOutcome::Completed),
            });
            self.finished.push(Finished {
                header: state.header,
                outcome: outcome.clone(),
                approvals: state.approvals,
                finished_at: at,
                thread: state.last_shown.map(|s| s.message),
                drill,
            });
        }
    }

    fn note_event(&mut self, event: &Option<String>) {
        if let Some(id) = event {
            self.events.insert(id);
        }
    }

    /// The drill `op`'s times if it ended at `at` with `outcome`: what
    /// the fold of its `Finished` record will keep, for its scorecard.
    pub fn drill_timings(
        &self,
        op: &OperationState,
        outcome: &OperationOutcome,
        at: DateTime<Utc>,
    ) -> Option<DrillTimings> {
        let clock = self.drill_clocks.get(&op.header.id)?;
        Some(DrillTimings {
            op: op.header.id,
            env: op.header.env.clone(),
            started_at: op.header.started_at,
            steps: clock.close(at, *outcome == OperationOutcome::Completed),
        })
    }

    /// The finished drills of `env`, oldest first.
    pub fn drills_in<'a>(
        &'a self,
        env: &'a str,
    ) -> impl DoubleEndedIterator<Item = &'a Finished> + 'a {
        self.finished
            .iter()
            .filter(move |f| f.header.env == env && f.drill.is_some())
    }

    /// The times of `env`'s completed drills, oldest first: what a new
    /// drill is compared with and the chart shows.
    pub fn completed_drills(&self, env: &str) -> Vec<DrillTimings> {
        self.drills_in(env)
            .filter(|f| f.drill_end().is_completed())
            .filter_map(|f| f.drill.clone())
            .collect()
    }

    /// Every plan message still awaiting approval, oldest first.
    pub fn pending_messages(&self) -> Vec<(DateTime<Utc>, MessageRef)> {
        let mut pending: Vec<(DateTime<Utc>, MessageRef)> = self
            .active
            .values()
            .filter_map(|o| match &o.phase {
                Phase::AwaitingApproval(s) => Some((s.approval.expires_at, s.message.clone())),
                _ => None,
            })
            .collect();
        pending.sort();
        pending
    }

    /// The most recent finished operation in `env` that had a step approved
    /// (and so may have moved weights): what `rollback` undoes. Rejected,
    /// expired and withdrawn operations changed nothing and are skipped.
    pub fn last_weight_change(&self, env: &str) -> Option<&Finished> {
        self.finished
            .iter()
            .rev()
            .find(|f| f.header.env == env && !f.approvals.is_empty())
    }
}

/// Counts one more for `env`; the count so far, this one included.
fn bump<'a>(counts: &mut HashMap<&'a EnvId, usize>, env: &'a EnvId) -> usize {
    let count = counts.entry(env).or_default();
    *count += 1;
    *count
}

/// The plan the operation shows for `step`, if it is `plan` and awaits (or
/// has) its approval: what a vote may change.
fn votable<'a>(
    operation: &'a mut OperationState,
    step: usize,
    plan: &PlanHash,
) -> Option<&'a mut ShownPlan> {
    if operation.step != step {
        return None;
    }
    match &mut operation.phase {
        Phase::AwaitingApproval(s) | Phase::Approved(s) if s.plan.hash == *plan => Some(s),
        _ => None,
    }
}

/// One of several approvals: counted, not yet deciding.
fn vote(
    operation: &mut OperationState,
    step: usize,
    plan: &PlanHash,
    by: &UserId,
    at: DateTime<Utc>,
) {
    let Some(shown) = votable(operation, step, plan) else {
        return;
    };
    if shown.approval.has_vote_of(by) {
        return;
    }
    shown.approval.votes.push(Vote { by: by.clone(), at });
    let shown = shown.clone();
    operation.last_shown = Some(shown);
    note_approval(operation, step, by);
}

/// `by` approved step `step` (once in the record, however many plans of
/// the step they approved: a plan made again after the weights moved
/// needs approving again, by the same person or another).
fn note_approval(operation: &mut OperationState, step: usize, by: &UserId) {
    let known = operation
        .approvals
        .iter()
        .any(|a| a.step == step && a.by == *by);
    if !known {
        operation.approvals.push(StepApproval {
            step,
            by: by.clone(),
        });
    }
}

/// An approver takes their vote back: the plan awaits approval again.
fn unvote(operation: &mut OperationState, step: usize, plan: &PlanHash, by: &UserId) {
    let Some(shown) = votable(operation, step, plan) else {
        return;
    };
    if shown.approval.unapprove(by).is_err() {
        return;
    }
    let shown = shown.clone();
    operation.last_shown = Some(shown.clone());
    operation.phase = Phase::AwaitingApproval(shown);
    operation
        .approvals
        .retain(|a| !(a.step == step && a.by == *by));
}

/// A decision about the plan `plan` of step `step`; ignored unless that is
/// the plan the operation shows now.
fn decide(operation: &mut OperationState, step: usize, plan: &PlanHash, state: &ApprovalState) {
    let shown = match &operation.phase {
        Phase::AwaitingApproval(s) | Phase::Approved(s) => s.clone(),
        _ => return,
    };
    if operation.step != step || shown.plan.hash != *plan {
        tracing::warn!(
            op = operation.header.id,
            step,
            %plan,
            "a decision names a plan the operation does not show; ignored"
        );
        return;
    }
    let mut updated = shown;
    updated.approval.state = state.clone();
    if let ApprovalState::Approved { by, at } = state {
        if !updated.approval.has_vote_of(by) {
            updated.approval.votes.push(Vote {
                by: by.clone(),
                at: *at,
            });
        }
    }
    if *state == ApprovalState::Pending {
        // Format 1's "approval taken back": the only vote there was.
        updated.approval.votes.clear();
    }
    operation.last_shown = Some(updated.clone());
    if let Some(hold) = operation.hold.as_mut().filter(|h| h.changing()) {
        // An `extend` or `keep` that is not approved leaves the shift
        // holding as it was; the operation goes on.
        if let ApprovalState::Rejected { .. }
        | ApprovalState::Expired { .. }
        | ApprovalState::Withdrawn { .. } = state
        {
            hold.change = None;
            operation.phase = Phase::Holding;
            return;
        }
    }
    operation.phase = match state {
        ApprovalState::Pending => Phase::AwaitingApproval(updated),
        ApprovalState::Approved { by, .. } => {
            note_approval(operation, step, by);
            Phase::Approved(updated)
        }
        ApprovalState::Superseded { .. } => Phase::Proposing,
        ApprovalState::Rejected { by, .. } => {
            Phase::Finishing(OperationOutcome::Rejected { by: by.clone() })
        }
        ApprovalState::Expired { .. } => Phase::Finishing(OperationOutcome::Expired),
        // `abort` records its own outcome right after; this is the fallback
        // for a crash in between.
        ApprovalState::Withdrawn { by, .. } => {
            Phase::Finishing(OperationOutcome::Withdrawn { by: by.clone() })
        }
    };
    if matches!(state, ApprovalState::Pending) {
        // An approval taken back is no longer an approval of record.
        let current = operation.step;
        operation.approvals.retain(|a| a.step != current);
    }
}

/// An approved step's writes begin, with any warnings found just before.
fn start_step(
    operation: &mut OperationState,
    step: usize,
    plan: &PlanHash,
    warnings: &[GateWarning],
    at: DateTime<Utc>,
) {
    let Phase::Approved(shown) = &operation.phase else {
        return;
    };
    if operation.step != step || shown.plan.hash != *plan {
        return;
    }
    let mut shown = shown.clone();
    for warning in warnings {
        if !shown.warnings.contains(warning) {
            shown.warnings.push(warning.clone());
        }
    }
    operation.last_shown = Some(shown.clone());
    operation.phase = Phase::Applying(shown);
    operation.step_started_at = Some(at);
}

/// Where an operation goes after a step that did what it should (at
/// `at`): the next step, the hold of a time-limited shift, or the end.
/// After the way back from a tripped gate, the end.
fn next_step(operation: &mut OperationState, at: DateTime<Utc>) -> Phase {
    if let Some(tripped) = &operation.tripped {
        return Phase::Finishing(OperationOutcome::Failed {
            cause: StopCause::GateTripped {
                step: tripped.step,
                checks: tripped.checks.clone(),
            },
        });
    }
    if let Some(hold) = operation.hold.as_mut() {
        return after_hold_step(hold);
    }
    if operation.step < operation.total_steps() {
        operation.step += 1;
        return Phase::Proposing;
    }
    match operation.header.time_limit {
        Some(limit) => {
            let left = operation
                .last_shown
                .as_ref()
                .map(|s| s.plan.after.clone())
                .unwrap_or_default();
            operation.hold = Some(Hold {
                until: at + limit.chrono(),
                since: at,
                left,
                reminded: false,
                returning: None,
                change: None,
            });
            Phase::Holding
        }
        None => Phase::Finishing(OperationOutcome::Completed),
    }
}

/// After a step of a holding shift: the return or `keep` ends it; an
/// `extend` holds on, longer.
fn after_hold_step(hold: &mut Hold) -> Phase {
    if hold.returning.is_some() {
        return Phase::Finishing(OperationOutcome::Completed);
    }
    match hold.change.take().map(|ask| ask.change) {
        Some(HoldChange::Extend { by }) => {
            hold.until += by.chrono();
            hold.reminded = false;
            Phase::Holding
        }
        Some(HoldChange::Keep) => Phase::Finishing(OperationOutcome::Completed),
        None => Phase::Holding,
    }
}

/// A holding shift's time is up: its return is the next step.
fn begin_return(operation: &mut OperationState, by_hand: bool) {
    let Some(hold) = operation.hold.as_mut() else {
        return;
    };
    if operation.phase != Phase::Holding {
        return;
    }
    hold.returning = Some(Return { by_hand });
    operation.step += 1;
    operation.phase = Phase::Proposing;
}

/// `extend` or `keep` asked of a holding shift: its plan is the next step.
fn ask_hold_change(operation: &mut OperationState, change: &HoldChange, by: &UserId) {
    let Some(hold) = operation.hold.as_mut() else {
        return;
    };
    if operation.phase != Phase::Holding {
        return;
    }
    hold.change = Some(HoldAsk {
        change: *change,
        by: by.clone(),
    });
    operation.step += 1;
    operation.phase = Phase::Proposing;
}

fn finish_step(
    operation: &mut OperationState,
    outcome: &StepOutcome,
    bake_until: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) {
    operation.step_started_at = None;
    operation.phase = match outcome {
        StepOutcome::Applied { unverified, .. } if !unverified.is_empty() => {
            Phase::Finishing(OperationOutcome::Failed {
                cause: StopCause::Unverified {
                    step: operation.step,
                    clusters: unverified.clone(),
                },
            })
        }
        StepOutcome::Applied { .. } => match bake_until {
            Some(until) => Phase::Baking { until },
            None => next_step(operation, at),
        },
        StepOutcome::Skipped => next_step(operation, at),
        StepOutcome::Conflict => Phase::Proposing,
        StepOutcome::Restored { failure } | StepOutcome::Incomplete { failure } => {
            Phase::Finishing(OperationOutcome::Failed {
                cause: StopCause::WritesFailed {
                    failure: failure.clone(),
                },
            })
        }
        StepOutcome::Refused { refusal } | StepOutcome::Interrupted { refusal } => {
            let refusal = refusal.clone();
            let returning = operation
                .hold
                .as_ref()
                .is_some_and(|h| h.returning.is_some());
            let cause = match returning {
                true => StopCause::ReturnRefused { refusal },
                false => StopCause::Refused { refusal },
            };
            Phase::Finishing(OperationOutcome::Failed { cause })
        }
    };
}
