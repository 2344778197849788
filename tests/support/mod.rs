//! Test support: a chat that records what the channel saw, a backend
//! wrapper that injects failures and records every state it passes through,
//! and a harness that builds the real engine around them with a real journal
//! file and a frozen clock.

#![allow(dead_code)]

pub mod fake_slack;
pub mod fault_proxy;
pub mod kube_env;
pub mod moto;
pub mod prometheus;
pub mod serve_proc;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeZone;

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::backend::{
    BackendError, Convergence, GateFailure, RoutingBackend, Snapshot, Written,
};
use failover_bot::chat::{Chat, ChatError, Message, MessageRef, StaticGroups};
use failover_bot::clock::OffsetClock;
use failover_bot::config::{ClusterConfig, Config, EnvironmentConfig};
use failover_bot::operation::engine::{CommandRequest, Engine, EngineParts, Reaction};
use failover_bot::operation::journal::{Journal, JournalError, Record};
use failover_bot::plan::Weights;

/// One thing the bot did in chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Said {
    Post {
        at: MessageRef,
        thread: Option<MessageRef>,
        text: String,
    },
    Update {
        at: MessageRef,
        text: String,
    },
    Ephemeral {
        user: String,
        text: String,
    },
    React {
        at: MessageRef,
        name: String,
    },
}

impl Said {
    pub fn text(&self) -> &str {
        match self {
            Said::Post { text, .. } | Said::Update { text, .. } | Said::Ephemeral { text, .. } => {
                text
            }
            Said::React { name, .. } => name,
        }
    }
}

/// Message timestamps unique across every chat in the test process, as
/// Slack's are: a restarted engine must never reuse an old message's ts.
static NEXT_TS: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
pub struct RecordingChat {
    said: Mutex<Vec<Said>>,
}

impl RecordingChat {
    pub fn said(&self) -> Vec<Said> {
        self.said.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.said.lock().unwrap().clear();
    }

    /// Top-level posts (plans, status).
    pub fn posts(&self) -> Vec<(MessageRef, String)> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Post {
                    at,
                    thread: None,
                    text,
                } => Some((at, text)),
                _ => None,
            })
            .collect()
    }

    /// Posts that showed a plan awaiting approval.
    pub fn plans(&self) -> Vec<(MessageRef, String)> {
        self.posts()
            .into_iter()
            .filter(|(_, t)| t.contains("awaiting approval"))
            .collect()
    }

    pub fn thread(&self, at: &MessageRef) -> Vec<String> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Post {
                    thread: Some(t),
                    text,
                    ..
                } if &t == at => Some(text),
                _ => None,
            })
            .collect()
    }

    pub fn updates(&self, at: &MessageRef) -> Vec<String> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Update { at: a, text } if &a == at => Some(text),
                _ => None,
            })
            .collect()
    }

    pub fn ephemerals(&self, user: &str) -> Vec<String> {
        self.said()
            .into_iter()
            .filter_map(|s| match s {
                Said::Ephemeral { user: u, text } if u == user => Some(text),
                _ => None,
            })
            .collect()
    }

    pub fn all_text(&self) -> String {
        self.said()
            .iter()
            .map(Said::text)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[async_trait]
impl Chat for RecordingChat {
    async fn post(
        &self,
        channel: &str,
        thread: Option<&MessageRef>,
        message: &Message,
    ) -> Result<MessageRef, ChatError> {
        let at = MessageRef {
            channel: channel.to_owned(),
            ts: format!("{}.000100", NEXT_TS.fetch_add(1, Ordering::SeqCst)),
        };
        self.said.lock().unwrap().push(Said::Post {
            at: at.clone(),
            thread: thread.cloned(),
            text: message.text.clone(),
        });
        Ok(at)
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        self.said.lock().unwrap().push(Said::Update {
            at: at.clone(),
            text: message.text.clone(),
        });
        Ok(())
    }

    async fn post_ephemeral(
        &self,
        _channel: &str,
        user: &str,
        message: &Message,
    ) -> Result<(), ChatError> {
        self.said.lock().unwrap().push(Said::Ephemeral {
            user: user.to_owned(),
            text: message.text.clone(),
        });
        Ok(())
    }

    async fn react(&self, at: &MessageRef, reaction: &str) -> Result<(), ChatError> {
        self.said.lock().unwrap().push(Said::React {
            at: at.clone(),
            name: reaction.to_owned(),
        });
        Ok(())
    }
}

/// A point in time the backend passed through: the journal's line count
/// then, and every routed cluster's weight.
#[derive(Clone, Debug)]
pub struct Observed {
    pub journal_lines: usize,
    pub weights: Weights,
}

/// Wraps the in-memory backend: fails writes on chosen clusters, lets
/// someone else edit a weight right before our write (a conflict), and
/// records the weights before and after every write.
pub struct FaultyBackend {
    pub inner: Arc<MemoryBackend>,
    fail_writes: Mutex<HashSet<String>>,
    fail_restores_too: Mutex<bool>,
    edit_before_write: Mutex<Option<(String, u8)>>,
    journal: Mutex<Option<PathBuf>>,
    pub trail: Mutex<Vec<Observed>>,
    writes: AtomicU64,
}

impl FaultyBackend {
    pub fn new(inner: Arc<MemoryBackend>) -> Self {
        Self {
            inner,
            fail_writes: Mutex::default(),
            fail_restores_too: Mutex::new(false),
            edit_before_write: Mutex::default(),
            journal: Mutex::default(),
            trail: Mutex::default(),
            writes: AtomicU64::new(0),
        }
    }

    /// Every write to `cluster` fails from now on (restores too, if
    /// `restores_too`; otherwise only the first write of a step fails).
    pub fn fail_writes_to(&self, cluster: &str, restores_too: bool) {
        self.fail_writes.lock().unwrap().insert(cluster.to_owned());
        *self.fail_restores_too.lock().unwrap() = restores_too;
    }

    pub fn heal(&self) {
        self.fail_writes.lock().unwrap().clear();
    }

    /// Right before our next write, someone else sets `cluster` to `weight`.
    pub fn edit_before_next_write(&self, cluster: &str, weight: u8) {
        *self.edit_before_write.lock().unwrap() = Some((cluster.to_owned(), weight));
    }

    /// Count journal lines at every observation.
    pub fn watch_journal(&self, path: &Path) {
        *self.journal.lock().unwrap() = Some(path.to_owned());
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn observe(&self) {
        let lines = self
            .journal
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map_or(0, |t| t.lines().count());
        self.trail.lock().unwrap().push(Observed {
            journal_lines: lines,
            weights: self.inner.weights(),
        });
    }

    fn before_write(&self, cluster: &str) -> Result<(), BackendError> {
        if let Some((name, weight)) = self.edit_before_write.lock().unwrap().take() {
            self.inner.edit_weight(&name, Some(weight));
        }
        let mut failing = self.fail_writes.lock().unwrap();
        if failing.contains(cluster) {
            if !*self.fail_restores_too.lock().unwrap() {
                failing.remove(cluster);
            }
            return Err(BackendError::Failed {
                cluster: cluster.to_owned(),
                reason: "injected failure".into(),
            });
        }
        self.observe();
        Ok(())
    }

    fn after_write<T>(&self, result: Result<T, BackendError>) -> Result<T, BackendError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.observe();
        result
    }
}

#[async_trait]
impl RoutingBackend for FaultyBackend {
    async fn read(&self, env: &EnvironmentConfig) -> Result<Snapshot, BackendError> {
        self.inner.read(env).await
    }
    async fn check_identity(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        self.inner.check_identity(cluster).await
    }
    async fn check_health(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        self.inner.check_health(cluster).await
    }
    async fn set_weight(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        self.before_write(&cluster.name)?;
        let r = self
            .inner
            .set_weight(cluster, weight, expected_version)
            .await;
        self.after_write(r)
    }
    async fn create(&self, cluster: &ClusterConfig) -> Result<Written, BackendError> {
        self.before_write(&cluster.name)?;
        let r = self.inner.create(cluster).await;
        self.after_write(r)
    }
    async fn delete(
        &self,
        cluster: &ClusterConfig,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        self.before_write(&cluster.name)?;
        let r = self.inner.delete(cluster, expected_version).await;
        self.after_write(r)
    }
    async fn verify(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        self.inner.verify(env, expected).await
    }
    async fn observe(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        self.inner.observe(env, expected).await
    }
}

pub const CONFIG: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [alice, bob, S0SRE]
  expires_after: 15m
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

pub const THREE_CLUSTERS: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [alice, bob]
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-a.dev.example.com, context: a, weight: 100}
      - {name: k8s-b.dev.example.com, context: b, weight: 0}
      - {name: k8s-c.dev.example.com, context: c, weight: 0}
      - {name: k8s-d.dev.example.com, context: d}
"#;

pub struct Harness {
    pub config: Arc<Config>,
    pub memory: Arc<MemoryBackend>,
    pub backend: Arc<FaultyBackend>,
    pub chat: Arc<RecordingChat>,
    pub clock: Arc<OffsetClock>,
    pub engine: Engine,
    pub journal_path: PathBuf,
    _dir: Option<tempfile::TempDir>,
    events: AtomicU64,
}

pub fn start_time() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .unwrap()
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
        let backend = Arc::new(FaultyBackend::new(memory.clone()));
        backend.watch_journal(&journal_path);
        let chat = Arc::new(RecordingChat::default());
        let clock = Arc::new(OffsetClock::frozen_at(start_time()));
        let engine = build_engine(&config, &backend, &chat, &clock, &journal_path);
        Harness {
            config,
            memory,
            backend,
            chat,
            clock,
            engine,
            journal_path,
            _dir: dir,
            events: AtomicU64::new(0),
        }
    }

    /// Throws the engine away and builds a new one from the journal file,
    /// as after a crash: the clusters and the chat stay as they are.
    pub async fn restart(&mut self) {
        self.crash();
        self.start_again().await;
    }

    /// A restart after a process that made `entry` durable and died before
    /// doing anything about it.
    pub async fn restart_after(&mut self, entry: failover_bot::operation::journal::Entry) {
        self.crash();
        let (mut journal, _) = reopen_journal(&self.journal_path);
        journal
            .append(failover_bot::clock::Clock::now(&*self.clock), entry)
            .expect("journal appends");
        drop(journal);
        self.start_again().await;
    }

    /// A crashed process lets go of its journal (and the journal's lock)
    /// before the next one opens it: the old engine goes first.
    fn crash(&mut self) {
        self.engine = engine_on(
            &self.config,
            &self.backend,
            &self.chat,
            &self.clock,
            (Journal::in_memory(), Vec::new()),
        );
    }

    async fn start_again(&mut self) {
        self.engine = build_engine(
            &self.config,
            &self.backend,
            &self.chat,
            &self.clock,
            &self.journal_path,
        );
        self.engine.resume().await;
    }

    fn event(&self) -> String {
        format!("Ev{}", self.events.fetch_add(1, Ordering::SeqCst))
    }

    pub async fn cmd(&self, user: &str, text: &str) {
        self.engine
            .handle_command(CommandRequest {
                user: user.into(),
                channel: "C1".into(),
                text: text.into(),
                event_id: Some(self.event()),
            })
            .await;
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

fn build_engine(
    config: &Arc<Config>,
    backend: &Arc<FaultyBackend>,
    chat: &Arc<RecordingChat>,
    clock: &Arc<OffsetClock>,
    journal_path: &Path,
) -> Engine {
    engine_on(config, backend, chat, clock, reopen_journal(journal_path))
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

fn engine_on(
    config: &Arc<Config>,
    backend: &Arc<FaultyBackend>,
    chat: &Arc<RecordingChat>,
    clock: &Arc<OffsetClock>,
    (journal, records): (Journal, Vec<Record>),
) -> Engine {
    let groups: BTreeMap<String, Vec<String>> =
        [("S0SRE".to_owned(), vec!["dave".to_owned()])].into();
    Engine::new(EngineParts {
        config: config.clone(),
        backend: backend.clone(),
        chat: chat.clone(),
        groups: Arc::new(StaticGroups(groups)),
        clock: clock.clone(),
        journal,
        records,
        bot_user: "UBOT".into(),
    })
}

pub fn weights(pairs: &[(&str, u8)]) -> Weights {
    pairs.iter().copied().collect()
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
        let (journal, records) = Journal::open(&dir.path().join("journal.jsonl")).unwrap();
        let chat = Arc::new(RecordingChat::default());
        let engine = Engine::new(EngineParts {
            config: Arc::new(config),
            backend,
            chat: chat.clone(),
            groups: Arc::new(StaticGroups::default()),
            clock: Arc::new(OffsetClock::new()),
            journal,
            records,
            bot_user: "UBOT".into(),
        });
        TestBot {
            engine,
            chat,
            _dir: dir,
        }
    }

    pub async fn cmd(&self, user: &str, text: &str) {
        self.engine
            .handle_command(CommandRequest {
                user: user.into(),
                channel: "C1".into(),
                text: text.into(),
                event_id: None,
            })
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
}
