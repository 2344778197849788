//! The engine: takes commands and reactions, runs operations, talks to the
//! chat and the backend through their traits. The same engine runs in the
//! sandbox, in the tests and in production.
//!
//! - [`start`]: a command's work, from its journal record to the plan of an
//!   operation's first step;
//! - [`step`]: moving an operation on — plan, gate, apply, verify, finish;
//! - [`reactions`]: votes on plans, by reaction or button; [`answers`]: status, history, abort;
//!   [`status_reads`]: one read for a burst of `status` commands;
//! - [`resume`]: what a restart finds unfinished, and expiry;
//! - [`store`]: the journal and the ledger behind one lock; [`outbox`]:
//!   what the bot says, delivered in order through Slack outages.
//!
//! Concurrency: each environment has its own async lock, held for the whole
//! handling of an event that concerns it, so one environment's events are
//! handled one at a time, in arrival order, while other environments proceed.
//! The journal and the ledger sit behind one short-lived lock: a record is
//! made durable and folded in one step, and nothing else happens under it.

mod answers;
mod apply;
mod bake;
mod gates;
mod hold;
mod outbox;
mod policy;
mod reactions;
mod readiness;
mod resume;
mod signals;
mod start;
mod status_reads;
mod step;
mod store;
pub use store::SNAPSHOT_EVERY;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

pub use apply::{apply, Applied, ApplyFailure};

use crate::approval::ApprovalError;
use crate::backend::{Convergence, RoutingBackend, Snapshot};
use crate::chat::{Chat, ChatError, Click, GroupResolver, Message, MessageRef};
use crate::clock::Clock;
use crate::command::{self, CommandError, Request};
use crate::config::Config;
use crate::ids::{EnvId, OpId, UserId};
use crate::journal::ledger::{EventWindow, Finished, Ledger};
use crate::journal::sign::SignatureProblem;
use crate::journal::{Entry, Journal, JournalError, Record};
use crate::messages;
use crate::metrics::Metrics;
use crate::notice::{Destination, Notice};
use crate::operation::{OperationState, Refusal};
use crate::plan::PlanError;
use outbox::{Outbox, Outgoing};
use store::Store;

/// A `/failover` command as it arrives from chat.
#[derive(Clone, Debug)]
pub struct CommandRequest {
    pub user: UserId,
    pub channel: String,
    pub text: String,
    /// The transport's delivery id (Slack `event_id`, envelope or trigger
    /// id): a repeated id is ignored.
    pub event_id: Option<String>,
}

/// A reaction added to or removed from a message.
#[derive(Clone, Debug)]
pub struct Reaction {
    pub user: UserId,
    pub name: String,
    pub message: MessageRef,
    pub added: bool,
    pub event_id: Option<String>,
}

/// A command read once, with what it means: it travels with the work and
/// is never read again.
#[derive(Clone, Debug)]
pub struct Understood {
    pub request: CommandRequest,
    pub meaning: Result<command::Understood, CommandError>,
}

impl Understood {
    /// The request, when the command asks for work (anything but help or a
    /// mistake).
    pub fn work(&self) -> Option<&Request> {
        match &self.meaning {
            Ok(command::Understood::Request(request)) => Some(request),
            _ => None,
        }
    }

    /// What to answer at once: help, the mistake, or that the work is on
    /// its way. Transports put it in Slack's acknowledgement.
    pub fn first_answer(&self) -> Notice {
        match &self.meaning {
            Ok(command::Understood::Help) => Notice::Help,
            Ok(command::Understood::Request(_)) => Notice::Working {
                text: self.request.text.clone(),
            },
            Err(mistake) => Notice::Refused {
                refusal: mistake.clone().into(),
            },
        }
    }
}

/// Everything the engine is built from.
pub struct EngineParts {
    pub config: Arc<Config>,
    pub backend: Arc<dyn RoutingBackend>,
    pub chat: Arc<dyn Chat>,
    pub groups: Arc<dyn GroupResolver>,
    pub clock: Arc<dyn Clock>,
    pub journal: Journal,
    /// Records already in the journal (from [`Journal::open`]).
    pub records: Vec<Record>,
    /// The bot's own user id: its own reactions are hints, not votes.
    pub bot_user: UserId,
}

/// Internal failures: logged in full, answered with a short apology.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Chat(#[from] ChatError),
}

/// Why handling an event stopped: the user's doing, or ours.
#[derive(Debug)]
enum Failure {
    Refused(Refusal),
    Internal(EngineError),
}

impl From<Refusal> for Failure {
    fn from(e: Refusal) -> Self {
        Failure::Refused(e)
    }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Self {
        Failure::Refused(e.into())
    }
}

impl From<PlanError> for Failure {
    fn from(e: PlanError) -> Self {
        Failure::Refused(e.into())
    }
}

impl From<ApprovalError> for Failure {
    fn from(e: ApprovalError) -> Self {
        Failure::Refused(e.into())
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Internal(e)
    }
}

impl From<JournalError> for Failure {
    fn from(e: JournalError) -> Self {
        Failure::Internal(e.into())
    }
}

impl From<ChatError> for Failure {
    fn from(e: ChatError) -> Self {
        Failure::Internal(e.into())
    }
}

type Outcome = Result<(), Failure>;

/// What `status` reads: the weights as set and, if readable, as served.
type StatusReading = (Snapshot, Option<Vec<Convergence>>);

pub struct Engine {
    /// Set when the journal's signatures did not verify at start.
    untrusted: Mutex<Option<SignatureProblem>>,
    config: Arc<Config>,
    backend: Arc<dyn RoutingBackend>,
    chat: Arc<dyn Chat>,
    /// What the bot says about operations, kept in order through outages.
    outbox: Arc<Outbox>,
    groups: Arc<dyn GroupResolver>,
    clock: Arc<dyn Clock>,
    bot_user: UserId,
    store: Store,
    metrics: Arc<Metrics>,
    env_locks: BTreeMap<EnvId, tokio::sync::Mutex<()>>,
    /// Delivery ids seen, journaled or not (a duplicate may arrive while
    /// the first is still being handled).
    events: Mutex<EventWindow>,
    /// The environments' Prometheus gates.
    signals: signals::Signals,
    /// When each baking operation's gates were last read.
    bake_readings: Mutex<std::collections::HashMap<OpId, DateTime<Utc>>>,
    /// `status` readings, shared by bursts of commands.
    status_reads: status_reads::StatusReads<Result<StatusReading, Refusal>>,
}

impl Engine {
    /// Builds the engine and replays the journal's records into its state.
    /// Call [`Engine::resume`] next to finish what a previous run left.
    pub fn new(parts: EngineParts) -> Engine {
        let ledger = Ledger::replay(&parts.records);
        let events = ledger.events.clone();
        let env_locks = parts
            .config
            .environments
            .keys()
            .map(|env| (env.clone(), tokio::sync::Mutex::new(())))
            .collect();
        let metrics = Arc::new(Metrics::new());
        let since_snapshot = parts
            .records
            .iter()
            .rev()
            .take_while(|r| !matches!(r.entry, Entry::Snapshot { .. }))
            .count();
        let store = Store::new(parts.journal, ledger, metrics.clone(), since_snapshot);
        let signals = signals::Signals::new(&parts.config);
        Engine {
            outbox: Outbox::new(
                parts.chat.clone(),
                store.clone(),
                parts.clock.clone(),
                parts.config.clone(),
            ),
            config: parts.config,
            backend: parts.backend,
            chat: parts.chat,
            groups: parts.groups,
            clock: parts.clock,
            bot_user: parts.bot_user,
            store,
            env_locks,
            events: Mutex::new(events),
            signals,
            bake_readings: Mutex::default(),
            status_reads: status_reads::StatusReads::new(status_reads::FRESH_FOR),
            metrics,
            untrusted: Mutex::default(),
        }
    }

    /// The journal's signatures do not hold (`problem` names the line):
    /// the bot still answers `status` and `history`, but changes no weight
    /// until an operator has looked (a crash loop would help nobody in an
    /// incident).
    pub fn distrust_journal(&self, problem: SignatureProblem) {
        tracing::error!(%problem, "journal signatures do not verify: refusing weight changes");
        *self.untrusted.lock().unwrap_or_else(|e| e.into_inner()) = Some(problem);
    }

    /// Refuses a weight change while the journal is not trusted.
    fn require_trusted_journal(&self) -> Result<(), Refusal> {
        let untrusted = self.untrusted.lock().unwrap_or_else(|e| e.into_inner());
        match &*untrusted {
            Some(problem) => Err(Refusal::JournalUntrusted {
                line: problem.line,
                problem: problem.problem.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Journals a snapshot of the ledger every `records` records instead
    /// of every [`SNAPSHOT_EVERY`].
    pub fn snapshot_every(&self, records: usize) {
        self.store.snapshot_every(records);
    }

    /// Counts into `metrics` (shared with the backend wrapper and `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.store.count_into(metrics.clone());
        for (env, environment) in &self.config.environments {
            for gate in &environment.gates {
                metrics.declare_gate(env, &gate.name, &crate::gates::evaluate::OUTCOME_LABELS);
            }
        }
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads a command once: no I/O, so a transport can answer at once.
    pub fn understand(&self, request: CommandRequest) -> Understood {
        let meaning = command::understand(&self.config, &request.channel, &request.text);
        Understood { request, meaning }
    }

    /// The message to answer a command with at once (see
    /// [`Understood::first_answer`]).
    pub fn first_answer(&self, understood: &Understood) -> Message {
        messages::render(&understood.first_answer(), &self.config)
    }

    /// Journals a command and does its work to the end (including any step
    /// an approval-free path runs). Help and mistakes were answered with
    /// [`Engine::first_answer`]; other answers go to the channel. Errors are
    /// answered in chat, never returned.
    pub async fn handle(&self, understood: Understood) {
        let request = &understood.request;
        if !self.first_delivery(request.event_id.as_deref()) {
            return;
        }
        let Some(work) = understood.work() else {
            self.log_answered(request);
            return;
        };
        let outcome = self.carry_out(request, work).await;
        self.answer_failure(outcome, &request.channel, &request.user, None)
            .await;
        if let Some(event) = &request.event_id {
            self.mark_answered(event.clone());
        }
    }

    /// [`Engine::handle`] for a chat without acknowledgements (the sandbox,
    /// tests): help and mistakes are answered privately first.
    pub async fn handle_command(&self, request: CommandRequest) {
        let understood = self.understand(request);
        if understood.work().is_none() && self.is_first(understood.request.event_id.as_deref()) {
            let answer = self.first_answer(&understood);
            let request = &understood.request;
            if let Err(error) = self
                .chat
                .post_ephemeral(&request.channel, &request.user, &answer)
                .await
            {
                tracing::error!(%error, "could not answer in chat");
            }
        }
        self.handle(understood).await;
    }

    /// Journals a command that was answered at once.
    fn log_answered(&self, request: &CommandRequest) {
        let entry = Entry::Command {
            user: request.user.clone(),
            channel: request.channel.clone(),
            text: request.text.clone(),
            event: request.event_id.clone(),
            answered: true,
        };
        if let Err(error) = self.record(entry) {
            tracing::error!(%error, "could not journal a command");
        }
    }

    /// Journals that a command has had its answer, unless its operation's
    /// `Started` already says so (one fsync saved on the common path).
    fn mark_answered(&self, event: String) {
        if !self.with_ledger(|l| l.unanswered.contains_key(&event)) {
            return;
        }
        if let Err(error) = self.record(Entry::Answered { event }) {
            tracing::error!(%error, "could not journal a command's answer");
        }
    }

    /// Handles a reaction on a plan message.
    pub async fn handle_reaction(&self, reaction: Reaction) {
        if reaction.user == self.bot_user || !self.first_delivery(reaction.event_id.as_deref()) {
            return;
        }
        let outcome = self.reaction(&reaction).await;
        self.answer_failure(
            outcome,
            &reaction.message.channel,
            &reaction.user,
            Some(&reaction.message),
        )
        .await;
    }

    /// Handles a click on a plan's Approve or Reject button: the same
    /// rules as a reaction; a refusal only the clicker sees.
    pub async fn handle_click(&self, click: Click) {
        if click.user == self.bot_user || !self.first_delivery(click.delivery_id.as_deref()) {
            return;
        }
        let outcome = self.click(&click).await;
        self.answer_failure(outcome, &click.message.channel, &click.user, None)
            .await;
    }

    /// Plan messages awaiting approval, oldest first.
    pub fn pending_plan_messages(&self) -> Vec<MessageRef> {
        self.with_ledger(|l| l.pending_messages().into_iter().map(|(_, m)| m).collect())
    }

    /// The running operation in `env`, if any.
    pub fn active_operation(&self, env: &str) -> Option<OperationState> {
        self.with_ledger(|l| l.active.get(env).cloned())
    }

    /// Finished operations, oldest first.
    pub fn finished_operations(&self) -> Vec<Finished> {
        self.with_ledger(|l| l.finished.clone())
    }

    fn with_ledger<R>(&self, f: impl FnOnce(&Ledger) -> R) -> R {
        self.store.with_ledger(f)
    }

    /// Makes `entry` durable, then folds it into the state.
    fn record(&self, entry: Entry) -> Result<Record, EngineError> {
        Ok(self.store.append(self.clock.now(), entry)?)
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Remembers a delivery id; false if it was seen before.
    fn first_delivery(&self, event_id: Option<&str>) -> bool {
        match event_id {
            None => true,
            Some(id) => self.lock_events().insert(id),
        }
    }

    /// Whether a delivery id is new, without remembering it.
    fn is_first(&self, event_id: Option<&str>) -> bool {
        event_id.is_none_or(|id| !self.lock_events().contains(id))
    }

    fn lock_events(&self) -> std::sync::MutexGuard<'_, EventWindow> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn lock_env(&self, env: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        Some(self.env_locks.get(env)?.lock().await)
    }

    /// Refusals go back to the user (in the thread when about a plan
    /// message, else privately); internal errors go to the log, and the
    /// user gets a short apology.
    async fn answer_failure(
        &self,
        outcome: Outcome,
        channel: &str,
        user: &UserId,
        thread: Option<&MessageRef>,
    ) {
        let notice = match outcome {
            Ok(()) => return,
            Err(Failure::Refused(refusal)) => Notice::Refused { refusal },
            Err(Failure::Internal(error)) => {
                tracing::error!(%error, channel, %user, "internal error");
                Notice::InternalError {
                    op: self.op_in_channel(channel),
                }
            }
        };
        match thread {
            Some(at) => {
                let to = Destination::Post {
                    channel: channel.to_owned(),
                    thread: Some(at.clone()),
                };
                self.say(to, notice).await;
            }
            None => {
                // Only its author sees an ephemeral answer, and only now:
                // queuing it for later would help nobody.
                let message = messages::render(&notice, &self.config);
                if let Err(error) = self.chat.post_ephemeral(channel, user, &message).await {
                    tracing::error!(%error, channel, %user, "could not answer in chat");
                }
            }
        }
    }

    fn log_failure(&self, outcome: Outcome, env: &str) {
        match outcome {
            Ok(()) => {}
            Err(Failure::Refused(refusal)) => tracing::warn!(env, %refusal, "refused"),
            Err(Failure::Internal(error)) => tracing::error!(env, %error, "internal error"),
        }
    }

    fn op_in_channel(&self, channel: &str) -> Option<OpId> {
        self.with_ledger(|l| {
            l.active
                .values()
                .find(|o| o.header.channel == channel)
                .map(|o| o.header.id)
        })
    }

    /// Says something through the outbox, journaled first: a Slack outage
    /// delays the message, never the operation (the journal is the record,
    /// and a step must not be left half-done waiting for chat), and a crash
    /// before Slack takes it leaves it for the next start to send.
    async fn say(&self, to: Destination, notice: Notice) {
        let id = match self.record(Entry::Say {
            to: to.clone(),
            notice: notice.clone(),
        }) {
            Ok(record) => Some(record.seq),
            Err(error) => {
                // Still worth saying: the channel hears it, only a crash
                // before Slack takes it would lose it.
                tracing::error!(%error, "could not journal a message; sending it anyway");
                None
            }
        };
        self.outbox
            .send(Outgoing {
                id,
                to,
                notice,
                resent: false,
            })
            .await;
    }

    /// Records `entry` and what the channel must hear about it in one
    /// journal write, then sends that: a crash cannot keep a change of
    /// state and lose its announcement (a restart sends what is unsaid).
    async fn record_and_say(
        &self,
        entry: Entry,
        said: Vec<(Destination, Notice)>,
    ) -> Result<(), EngineError> {
        self.record_and_say_quoting(entry, |_| said).await
    }

    /// [`Engine::record_and_say`], where what is said may quote the hash
    /// of `entry`'s line.
    async fn record_and_say_quoting(
        &self,
        entry: Entry,
        said: impl FnOnce(&str) -> Vec<(Destination, Notice)>,
    ) -> Result<(), EngineError> {
        self.record_and_say_quoting_at(self.clock.now(), entry, said)
            .await
    }

    /// [`Engine::record_and_say_quoting`], stamping `entry` with `at`.
    async fn record_and_say_quoting_at(
        &self,
        at: DateTime<Utc>,
        entry: Entry,
        said: impl FnOnce(&str) -> Vec<(Destination, Notice)>,
    ) -> Result<(), EngineError> {
        let records = self.store.append_quoting(at, entry, |hash| {
            said(hash)
                .into_iter()
                .map(|(to, notice)| Entry::Say { to, notice })
                .collect()
        })?;
        for record in records {
            if let Entry::Say { to, notice } = record.entry {
                let id = Some(record.seq);
                self.outbox
                    .send(Outgoing {
                        id,
                        to,
                        notice,
                        resent: false,
                    })
                    .await;
            }
        }
        Ok(())
    }
}
