//! The real engine, built for a test or a bench. Every engine setup goes
//! through [`Builder`], so a change to [`EngineParts`] is made here once.
//! On top of it: [`Harness`] (the engine on a [`FaultyBackend`] with a
//! frozen clock and a journal file, restartable as after a crash) and
//! [`TestBot`] (the engine on any backend, for the Kubernetes and DNS tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::backend::RoutingBackend;
use failover_bot::chat::{
    ButtonChoice, Chat, Click, Message, MessageKind, MessageRef, StaticGroups,
};
use failover_bot::clock::{Clock, OffsetClock, SystemClock};
use failover_bot::config::Config;
use failover_bot::engine::{CommandRequest, Engine, EngineParts, Reaction};
use failover_bot::journal::sign::{start_signing, Signer, Tail};
use failover_bot::journal::{Entry, Journal, JournalError, Record};
use failover_bot::plan::Weights;

use super::backend::FaultyBackend;
use super::chat::RecordingChat;

/// The bot's own Slack user id in every engine a test builds.
const BOT_USER: &str = "UBOT";

/// Where an engine keeps its journal.
#[derive(Clone, Debug)]
enum JournalAt {
    /// Nothing durable: as a crashed process's memory.
    Memory,
    /// A file, opened as a starting process opens it: its records resume.
    File(PathBuf),
}

/// An engine's parts, each with a default: the config's clusters in
/// memory, a chat that records (and nobody reads), no user groups, the
/// wall clock and an in-memory journal. Cloning shares the parts, so one
/// builder can build the engine again after a simulated crash.
#[derive(Clone)]
pub struct Builder {
    config: Arc<Config>,
    backend: Option<Arc<dyn RoutingBackend>>,
    chat: Arc<dyn Chat>,
    groups: BTreeMap<String, Vec<String>>,
    clock: Arc<dyn Clock>,
    journal: JournalAt,
    /// Signs the journal, as `serve --signing-key` does.
    signer: Option<Signer>,
    /// Records between ledger snapshots, if not the default.
    snapshot_every: Option<usize>,
}

impl Builder {
    pub fn new(config: impl Into<Arc<Config>>) -> Builder {
        Builder {
            config: config.into(),
            backend: None,
            chat: Arc::new(RecordingChat::default()),
            groups: BTreeMap::new(),
            clock: Arc::new(SystemClock),
            journal: JournalAt::Memory,
            signer: None,
            snapshot_every: None,
        }
    }

    /// Snapshots the ledger every `records` records.
    pub fn snapshot_every(mut self, records: usize) -> Builder {
        self.snapshot_every = Some(records);
        self
    }

    /// Signs every record with `signer` (a file journal's existing records
    /// are checked first, as `serve` does).
    pub fn signing_key(mut self, signer: Signer) -> Builder {
        self.signer = Some(signer);
        self
    }

    pub fn config(mut self, config: Arc<Config>) -> Builder {
        self.config = config;
        self
    }

    pub fn backend(mut self, backend: Arc<dyn RoutingBackend>) -> Builder {
        self.backend = Some(backend);
        self
    }

    pub fn chat(mut self, chat: Arc<dyn Chat>) -> Builder {
        self.chat = chat;
        self
    }

    /// User groups and their members, as Slack's `usergroups.users.list`
    /// would answer.
    pub fn groups(mut self, groups: &[(&str, &[&str])]) -> Builder {
        self.groups = groups
            .iter()
            .map(|(group, members)| {
                let members = members.iter().map(|m| (*m).to_owned()).collect();
                ((*group).to_owned(), members)
            })
            .collect();
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Builder {
        self.clock = clock;
        self
    }

    /// The journal file at `path`, new or left by an earlier engine.
    pub fn journal_file(mut self, path: &Path) -> Builder {
        self.journal = JournalAt::File(path.to_owned());
        self
    }

    pub fn memory_journal(mut self) -> Builder {
        self.journal = JournalAt::Memory;
        self
    }

    pub fn build(self) -> Engine {
        let (mut journal, records) = match &self.journal {
            JournalAt::Memory => (Journal::in_memory(), Vec::new()),
            JournalAt::File(path) => reopen_journal(path),
        };
        let distrust = match (&self.journal, self.signer.clone()) {
            (JournalAt::File(path), Some(signer)) => {
                let tail = Tail::read_since_snapshot(path).expect("journal reads");
                start_signing(&mut journal, &tail, signer, self.clock.now()).expect("journal signs")
            }
            _ => None,
        };
        let engine = self.build_on(journal, records);
        if let Some(problem) = distrust {
            engine.distrust_journal(problem);
        }
        engine
    }

    /// The engine on a journal opened elsewhere (a store's), which holds
    /// `records`.
    pub fn build_on(self, journal: Journal, records: Vec<Record>) -> Engine {
        let backend = self
            .backend
            .unwrap_or_else(|| Arc::new(MemoryBackend::from_config(&self.config)));
        let engine = Engine::new(EngineParts {
            config: self.config,
            backend,
            chat: self.chat,
            groups: Arc::new(StaticGroups(self.groups)),
            clock: self.clock,
            journal,
            records,
            bot_user: BOT_USER.into(),
        });
        if let Some(records) = self.snapshot_every {
            engine.snapshot_every(records);
        }
        engine
    }
}

/// How long a journal that a dropped engine let go of may still read as
/// locked: see [`reopen_journal`].
const INHERITED_LOCK_WITHIN: Duration = Duration::from_secs(2);

/// Opens the journal file at `path`, as a process starting after a crash
/// does. `Locked` is tried again for a moment, because the lock may not be
/// ours to wait out: another test in this binary may be spawning a process
/// (`failover-bot audit verify`, say) just then, and between its fork and
/// its exec the child holds a copy of every descriptor of this process,
/// this journal's (with its flock) included. That lasts microseconds, or
/// milliseconds on a loaded machine. A journal still locked after
/// [`INHERITED_LOCK_WITHIN`] is one an engine never let go of, and fails.
pub fn reopen_journal(path: &Path) -> (Journal, Vec<Record>) {
    let deadline = std::time::Instant::now() + INHERITED_LOCK_WITHIN;
    loop {
        match Journal::open(path) {
            Err(JournalError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            opened => return opened.expect("journal opens"),
        }
    }
}

/// `/failover TEXT` as `user` types it in channel C1.
fn typed_in_c1(user: &str, text: &str, event_id: Option<String>) -> CommandRequest {
    typed_in("C1", user, text, event_id)
}

fn typed_in(channel: &str, user: &str, text: &str, event_id: Option<String>) -> CommandRequest {
    CommandRequest {
        user: user.into(),
        channel: channel.into(),
        text: text.into(),
        event_id,
    }
}

pub fn start_time() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .unwrap()
}

/// The engine on a [`FaultyBackend`] over in-memory clusters, with a
/// recording chat, a clock frozen at [`start_time`], user group `S0SRE`
/// (member `dave`) and a real journal file.
pub struct Harness {
    pub config: Arc<Config>,
    pub memory: Arc<MemoryBackend>,
    pub backend: Arc<FaultyBackend>,
    pub chat: Arc<RecordingChat>,
    pub clock: Arc<OffsetClock>,
    pub engine: Engine,
    pub journal_path: PathBuf,
    /// Every part but the journal: what a restart builds on again.
    parts: Builder,
    _dir: Option<tempfile::TempDir>,
    events: AtomicU64,
}

impl Harness {
    pub fn new(config: &str) -> Harness {
        let config = Config::from_yaml(config).expect("test config is valid");
        let memory = Arc::new(MemoryBackend::from_config(&config));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        Harness::assemble(Arc::new(config), memory, path, Some(dir))
    }

    /// An engine over an existing journal file and backend: a restart.
    pub fn assemble(
        config: Arc<Config>,
        memory: Arc<MemoryBackend>,
        journal_path: PathBuf,
        dir: Option<tempfile::TempDir>,
    ) -> Harness {
        let backend = Arc::new(FaultyBackend::over(memory.clone()));
        backend.watch_journal(&journal_path);
        let chat = Arc::new(RecordingChat::default());
        let clock = Arc::new(OffsetClock::frozen_at(start_time()));
        let parts = Builder::new(config.clone())
            .backend(backend.clone())
            .chat(chat.clone())
            .clock(clock.clone())
            .groups(&[("S0SRE", &["dave"])]);
        let engine = parts.clone().journal_file(&journal_path).build();
        Harness {
            config,
            memory,
            backend,
            chat,
            clock,
            engine,
            journal_path,
            parts,
            _dir: dir,
            events: AtomicU64::new(0),
        }
    }

    /// Snapshots the ledger every `records` records, now and after restarts.
    pub fn snapshot_every(&mut self, records: usize) {
        self.parts = self.parts.clone().snapshot_every(records);
        self.engine.snapshot_every(records);
    }

    /// A restart of a bot that signs its journal with `signer` from now on.
    pub async fn restart_signing(&mut self, signer: Signer) {
        self.crash();
        self.parts = self.parts.clone().signing_key(signer);
        self.start_again().await;
    }

    /// Throws the engine away and builds a new one from the journal file,
    /// as after a crash: the clusters and the chat stay as they are.
    pub async fn restart(&mut self) {
        self.crash();
        self.start_again().await;
    }

    /// A restart after a process that made `entry` durable and died before
    /// doing anything about it.
    pub async fn restart_after(&mut self, entry: Entry) {
        self.crash();
        let (mut journal, _) = reopen_journal(&self.journal_path);
        journal
            .append(self.clock.now(), entry)
            .expect("journal appends");
        drop(journal);
        self.start_again().await;
    }

    /// A crashed process lets go of its journal (and the journal's lock)
    /// before the next one opens it: the old engine goes first.
    fn crash(&mut self) {
        self.engine = self.parts.clone().memory_journal().build();
    }

    async fn start_again(&mut self) {
        self.engine = self.parts.clone().journal_file(&self.journal_path).build();
        self.engine.resume().await;
    }

    /// A delivery id no other test process used: a journal written by
    /// another run (a fixture) keeps the ids it saw, and the bot ignores a
    /// delivery it has seen.
    fn event(&self) -> String {
        let n = self.events.fetch_add(1, Ordering::SeqCst);
        format!("Ev{}.{n}", std::process::id())
    }

    pub async fn cmd(&self, user: &str, text: &str) {
        let typed = typed_in_c1(user, text, Some(self.event()));
        self.engine.handle_command(typed).await;
    }

    /// `user` types `text` in `channel`.
    pub async fn cmd_in(&self, channel: &str, user: &str, text: &str) {
        let typed = typed_in(channel, user, text, Some(self.event()));
        self.engine.handle_command(typed).await;
    }

    /// A restart with another config (YAML), on the same journal, clusters
    /// and chat: an operator changed the config.
    pub async fn reconfigure(&mut self, config: &str) {
        let config = Arc::new(Config::from_yaml(config).expect("test config is valid"));
        self.crash();
        self.parts = self.parts.clone().config(config.clone());
        self.config = config;
        self.start_again().await;
    }

    pub fn newest_pending(&self) -> Option<MessageRef> {
        self.engine.pending_plan_messages().pop()
    }

    /// `user` reacts with `name` on the newest plan awaiting approval.
    pub async fn react(&self, user: &str, name: &str) {
        let at = self.newest_pending().expect("a plan awaits approval");
        self.react_on(&at, user, name, true).await;
    }

    pub async fn react_on(&self, at: &MessageRef, user: &str, name: &str, added: bool) {
        self.engine
            .handle_reaction(Reaction {
                user: user.into(),
                name: name.into(),
                message: at.clone(),
                added,
                event_id: Some(self.event()),
            })
            .await;
    }

    pub async fn approve(&self, user: &str) {
        self.react(user, "white_check_mark").await;
    }

    /// `user` clicks `choice` on the newest plan awaiting approval, with
    /// the value its message shows now; returns the click's delivery id.
    pub async fn click(&self, user: &str, choice: ButtonChoice) -> String {
        let at = self.newest_pending().expect("a plan awaits approval");
        let value = self.button_value(&at).expect("the plan shows buttons");
        let delivery = format!("click:{}", self.event());
        self.click_with(&at, user, choice, &value, &delivery).await;
        delivery
    }

    /// The value of the buttons message `at` shows now, if it shows any.
    pub fn button_value(&self, at: &MessageRef) -> Option<String> {
        Some(self.chat.shown(at)?.buttons?.value)
    }

    /// A click as a transport delivers it, every part chosen: a stale or
    /// forged value, a repeated delivery id.
    pub async fn click_with(
        &self,
        at: &MessageRef,
        user: &str,
        choice: ButtonChoice,
        value: &str,
        delivery: &str,
    ) {
        self.engine
            .handle_click(Click {
                user: user.into(),
                message: at.clone(),
                choice,
                value: value.to_owned(),
                delivery_id: Some(delivery.to_owned()),
            })
            .await;
    }

    pub fn weights(&self) -> Weights {
        self.memory.weights()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn journal_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.journal_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The real engine on any backend, with a recording chat and a journal
/// file: what the Kubernetes and DNS tests drive.
pub struct TestBot {
    pub engine: Engine,
    pub chat: Arc<RecordingChat>,
    _dir: tempfile::TempDir,
}

impl TestBot {
    pub fn new(config: Config, backend: Arc<dyn RoutingBackend>) -> TestBot {
        let dir = tempfile::tempdir().unwrap();
        let chat = Arc::new(RecordingChat::default());
        let engine = Builder::new(config)
            .backend(backend)
            .chat(chat.clone())
            .journal_file(&dir.path().join("journal.jsonl"))
            .build();
        TestBot {
            engine,
            chat,
            _dir: dir,
        }
    }

    pub async fn cmd(&self, user: &str, text: &str) {
        self.engine
            .handle_command(typed_in_c1(user, text, None))
            .await;
    }

    /// `user` approves the newest plan awaiting approval.
    pub async fn approve(&self, user: &str) {
        let message = self
            .engine
            .pending_plan_messages()
            .pop()
            .unwrap_or_else(|| panic!("a plan awaits approval; chat:\n{}", self.said()));
        self.engine
            .handle_reaction(Reaction {
                user: user.into(),
                name: "white_check_mark".into(),
                message,
                added: true,
                event_id: None,
            })
            .await;
    }

    pub fn said(&self) -> String {
        self.chat.all_text()
    }

    /// Every step result the channel saw, oldest first.
    pub fn step_results(&self) -> Vec<Message> {
        self.chat.of_kind(MessageKind::StepResult)
    }

    /// Whether the newest step was applied and verified (Kubernetes and DNS
    /// carry its weights).
    pub fn last_step_verified(&self) -> bool {
        self.step_results()
            .last()
            .is_some_and(|m| m.fact("verified") == Some("true"))
    }

    /// The refusals `user` got, by name (`gate_failed`, `busy`…).
    pub fn refusals_to(&self, user: &str) -> Vec<String> {
        self.chat
            .ephemerals(user)
            .iter()
            .filter(|m| m.kind == MessageKind::Refused)
            .filter_map(|m| m.fact("refusal").map(str::to_owned))
            .collect()
    }
}
