//! The engine: takes commands and reactions, runs operations, talks to the
//! chat and the backend through their traits. The same engine runs in the
//! sandbox, in the tests and in production.
//!
//! Concurrency: each environment has its own async lock, held for the whole
//! handling of an event that concerns it, so one environment's events are
//! handled one at a time, in arrival order, while other environments proceed.
//! The journal and the ledger sit behind one short-lived lock: a record is
//! made durable and folded in one step, and nothing else happens under it.

mod commands;
mod drive;
mod outbox;
mod reactions;
mod records;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::journal::{Entry, Journal, JournalError, Record};
use super::ledger::{Finished, Ledger, UnansweredCommand};
use super::OperationState;
use crate::backend::RoutingBackend;
use crate::chat::Said;
use crate::chat::{Chat, ChatError, GroupResolver, Message, MessageRef};
use crate::clock::Clock;
use crate::command::{self, Command, Request};
use crate::config::Config;
use crate::messages::{self, UserError};
use crate::metrics::Metrics;
use outbox::{Outbox, Outgoing};
use records::Records;

/// A `/failover` command as it arrives from chat.
#[derive(Clone, Debug)]
pub struct CommandRequest {
    pub user: String,
    pub channel: String,
    pub text: String,
    /// The transport's delivery id (Slack `event_id`, envelope or trigger
    /// id): a repeated id is ignored.
    pub event_id: Option<String>,
}

/// A reaction added to or removed from a message.
#[derive(Clone, Debug)]
pub struct Reaction {
    pub user: String,
    pub name: String,
    pub message: MessageRef,
    pub added: bool,
    pub event_id: Option<String>,
}

/// What a command means, known without any I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Understood {
    Help,
    Request(Request),
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
    pub bot_user: String,
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
    User(UserError),
    Internal(EngineError),
}

impl From<UserError> for Failure {
    fn from(e: UserError) -> Self {
        Failure::User(e)
    }
}

impl<E: Into<EngineError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Internal(e.into())
    }
}

type Outcome = Result<(), Failure>;

/// The last delivery ids seen, bounded: Slack retries within minutes, so a
/// window of recent ids is enough on top of the journal's ids.
struct EventWindow {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

const EVENT_WINDOW: usize = 10_000;

impl EventWindow {
    fn insert(&mut self, id: &str) -> bool {
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
}

pub struct Engine {
    config: Arc<Config>,
    backend: Arc<dyn RoutingBackend>,
    chat: Arc<dyn Chat>,
    /// What the bot says about operations, kept in order through outages.
    outbox: Arc<Outbox>,
    groups: Arc<dyn GroupResolver>,
    clock: Arc<dyn Clock>,
    bot_user: String,
    store: Records,
    metrics: Arc<Metrics>,
    env_locks: BTreeMap<String, tokio::sync::Mutex<()>>,
    events: Mutex<EventWindow>,
}

impl Engine {
    /// Builds the engine and replays the journal's records into its state.
    /// Call [`Engine::resume`] next to finish what a previous run left.
    pub fn new(parts: EngineParts) -> Engine {
        let ledger = Ledger::replay(&parts.records);
        let mut window = EventWindow {
            seen: HashSet::new(),
            order: VecDeque::new(),
        };
        for id in &ledger.events {
            window.insert(id);
        }
        let env_locks = parts
            .config
            .environments
            .keys()
            .map(|env| (env.clone(), tokio::sync::Mutex::new(())))
            .collect();
        let store = Records::new(parts.journal, ledger);
        Engine {
            config: parts.config,
            backend: parts.backend,
            outbox: Outbox::new(parts.chat.clone(), store.clone(), parts.clock.clone()),
            chat: parts.chat,
            groups: parts.groups,
            clock: parts.clock,
            bot_user: parts.bot_user,
            store,
            env_locks,
            events: Mutex::new(window),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Counts into `metrics` (shared with the backend wrapper and `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Parses and resolves a command: no I/O, so transports can answer a
    /// mistake before acknowledging.
    pub fn understand(&self, request: &CommandRequest) -> Result<Understood, UserError> {
        match command::parse(&request.text)? {
            Command::Help => Ok(Understood::Help),
            parsed => Ok(Understood::Request(command::resolve(
                &self.config,
                &request.channel,
                &parsed,
            )?)),
        }
    }

    /// What to answer a command with straight away, with no I/O: help, or
    /// the mistake in it. `None` means the command goes to
    /// [`Engine::handle_command`], which answers in the channel. Transports
    /// use this to reply within Slack's 3 seconds, and then call
    /// [`Engine::log_command`] so the journal still has the command.
    pub fn quick_reply(&self, request: &CommandRequest) -> Option<Message> {
        match self.understand(request) {
            Ok(Understood::Help) => Some(messages::help(&self.config)),
            Ok(Understood::Request(_)) => None,
            Err(error) => Some(messages::user_error(&error)),
        }
    }

    /// Journals a command that was answered by [`Engine::quick_reply`].
    pub async fn log_command(&self, request: CommandRequest) {
        if !self.first_delivery(request.event_id.as_deref()) {
            return;
        }
        let entry = Entry::Command {
            user: request.user,
            channel: request.channel,
            text: request.text,
            event: request.event_id,
            answered: true,
        };
        if let Err(error) = self.record(entry) {
            tracing::error!(%error, "could not journal a command");
        }
    }

    /// Handles one `/failover` command to the end (including any step an
    /// approval-free path runs). Errors are answered in chat, never returned.
    pub async fn handle_command(&self, request: CommandRequest) {
        if !self.first_delivery(request.event_id.as_deref()) {
            return;
        }
        let outcome = self.command(&request).await;
        self.answer_failure(outcome, &request.channel, &request.user, None)
            .await;
        if let Some(event) = request.event_id {
            self.mark_answered(event);
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

    /// Commands a restart cut short between their acknowledgement and their
    /// answer: Slack will not deliver them again, so their authors are told
    /// (privately, as the answer would have been) to send them again.
    async fn answer_cut_short_commands(&self) {
        let unanswered: Vec<(String, UnansweredCommand)> =
            self.with_ledger(|l| l.unanswered.clone().into_iter().collect());
        for (event, command) in unanswered {
            let note = messages::command_cut_short(&command.text);
            if let Err(error) = self
                .chat
                .post_ephemeral(&command.channel, &command.user, &note)
                .await
            {
                tracing::error!(%error, user = %command.user, "could not tell a user their command was cut short");
            }
            self.mark_answered(event);
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

    /// Expires every approval whose deadline has passed. Call it
    /// periodically (production) or before each input (sandbox).
    pub async fn expire_due(&self) {
        let now = self.clock.now();
        let due: Vec<String> = self.with_ledger(|l| {
            l.active
                .iter()
                .filter(|(_, op)| match &op.phase {
                    super::Phase::AwaitingApproval(s) => s.approval.is_due(now),
                    _ => false,
                })
                .map(|(env, _)| env.clone())
                .collect()
        });
        for env in due {
            let outcome = self.expire(&env).await;
            self.log_failure(outcome, &env);
        }
    }

    /// Continues every operation a previous run left unfinished: pending
    /// approvals stay pending (and keep their deadline), approved steps run,
    /// a step that was being applied is finished or restored.
    pub async fn resume(&self) {
        self.resend_unsaid().await;
        self.answer_cut_short_commands().await;
        let envs: Vec<String> = self.with_ledger(|l| l.active.keys().cloned().collect());
        for env in envs {
            let outcome = self.resume_env(&env).await;
            self.log_failure(outcome, &env);
        }
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
        let record = self.store.append(self.clock.now(), entry)?;
        self.metrics.observe_record(&record);
        Ok(record)
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn first_delivery(&self, event_id: Option<&str>) -> bool {
        match event_id {
            None => true,
            Some(id) => self
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id),
        }
    }

    async fn lock_env(&self, env: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        Some(self.env_locks.get(env)?.lock().await)
    }

    /// User errors go back to the user (in the thread when about a plan
    /// message, else privately); internal errors go to the log, and the user
    /// gets a short apology.
    async fn answer_failure(
        &self,
        outcome: Outcome,
        channel: &str,
        user: &str,
        thread: Option<&MessageRef>,
    ) {
        let message = match outcome {
            Ok(()) => return,
            Err(Failure::User(error)) => messages::user_error(&error),
            Err(Failure::Internal(error)) => {
                tracing::error!(%error, channel, user, "internal error");
                messages::internal_error(self.op_in_channel(channel))
            }
        };
        match thread {
            Some(at) => self.say(channel, Some(at), message).await,
            None => {
                // Only its author sees an ephemeral answer, and only now:
                // queuing it for later would help nobody.
                if let Err(error) = self.chat.post_ephemeral(channel, user, &message).await {
                    tracing::error!(%error, channel, user, "could not answer in chat");
                }
            }
        }
    }

    fn log_failure(&self, outcome: Outcome, env: &str) {
        match outcome {
            Ok(()) => {}
            Err(Failure::User(error)) => tracing::warn!(env, %error, "refused"),
            Err(Failure::Internal(error)) => tracing::error!(env, %error, "internal error"),
        }
    }

    fn op_in_channel(&self, channel: &str) -> Option<u64> {
        self.with_ledger(|l| {
            l.active
                .values()
                .find(|o| o.header.channel == channel)
                .map(|o| o.header.id)
        })
    }

    /// Posts in a channel or thread through the outbox: a Slack outage
    /// delays the message, never the operation (the journal is the record,
    /// and a step must not be left half-done waiting for chat).
    async fn say(&self, channel: &str, thread: Option<&MessageRef>, message: Message) {
        self.say_durably(Said::Post {
            channel: channel.to_owned(),
            thread: thread.cloned(),
            message,
        })
        .await;
    }

    async fn update(&self, at: &MessageRef, message: Message) {
        self.say_durably(Said::Update {
            at: at.clone(),
            message,
        })
        .await;
    }

    /// Records `entry` and what the channel must hear about it in one
    /// journal write, then sends that: a crash cannot keep a change of
    /// state and lose its announcement (a restart sends what is unsaid).
    async fn record_and_say(&self, entry: Entry, said: Vec<Said>) -> Result<(), EngineError> {
        let mut entries = vec![entry];
        entries.extend(said.into_iter().map(|said| Entry::Say { said }));
        let records = self.store.append_batch(self.clock.now(), entries)?;
        for record in &records {
            self.metrics.observe_record(record);
        }
        for record in records {
            if let Entry::Say { said } = record.entry {
                let id = Some(record.seq);
                self.outbox.send(Outgoing { id, said }).await;
            }
        }
        Ok(())
    }

    /// Journals `said` before it goes out, so that a crash between a
    /// step's record and its announcement cannot lose the announcement:
    /// the next start sends it (see [`Engine::resend_unsaid`]).
    async fn say_durably(&self, said: Said) {
        let id = match self.record(Entry::Say { said: said.clone() }) {
            Ok(record) => Some(record.seq),
            Err(error) => {
                // Still worth saying: the channel hears it, only a crash
                // before Slack takes it would lose it.
                tracing::error!(%error, "could not journal a message; sending it anyway");
                None
            }
        };
        self.outbox.send(Outgoing { id, said }).await;
    }

    /// What the last run journaled to say but Slack had not taken when it
    /// stopped, in the order it was said.
    async fn resend_unsaid(&self) {
        let unsaid = self.with_ledger(|l| l.unsaid.clone());
        for (id, said) in unsaid {
            let said = said.resent();
            self.outbox.send(Outgoing { id: Some(id), said }).await;
        }
    }

    /// Messages waiting for Slack to come back.
    pub fn messages_waiting(&self) -> usize {
        self.outbox.waiting()
    }
}
