//! The real `failover-bot serve` process against the wire-level fake Slack:
//! the one harness for every test and bench that runs the binary. Options
//! ([`ServeOptions`]) say what differs between them: the transport, the
//! clusters (in memory, or real ones through a kubeconfig), the Web API
//! URL (a proxy in front of the fake Slack), the secrets, the log level and
//! format, leader election, a journal shared between replicas, extra
//! environment. The process is started, SIGKILLed (on drop too), restarted
//! on the same journal or stopped with SIGTERM; its stdout and stderr go to
//! one log file that outlives restarts, for failure messages. How Slack's
//! deliveries reach it is in [`deliver`].

#![allow(dead_code)]

mod deliver;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fake_slack::FakeSlack;

#[allow(unused_imports)] // not every test delivers by hand
pub use deliver::{now, Acked};

/// The Events API signing secret the bot is given by default.
pub const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// How long any one wait on the bot may take.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a start may take to be ready (connected, or 200 on /readyz):
/// it meets Slack (auth.test) and every cluster first, which on a loaded
/// 2-core CI machine running three API servers per test can take seconds.
pub const READY_WITHIN: Duration = Duration::from_secs(30);
/// How often readiness and journal waits look.
const POLL: Duration = Duration::from_millis(20);
/// The namespace of the leader Lease (the CLI's default, given explicitly
/// so that a `POD_NAMESPACE` in the test's environment cannot move it).
const LEASE_NAMESPACE: &str = "failover-bot";

/// How Slack reaches the bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Socket,
    Http,
}

/// Where the bot's clusters are.
#[derive(Clone, Debug)]
enum Clusters {
    /// `--in-memory`: seeded from the config's `weight` keys.
    InMemory,
    /// Real clusters, reached through this kubeconfig (`$KUBECONFIG`).
    Kubeconfig(PathBuf),
}

/// The Slack secrets in the process's environment.
#[derive(Clone, Debug)]
pub struct Secrets {
    pub bot_token: String,
    /// Given in Socket Mode only (it wins over HTTP when present).
    pub app_token: String,
    pub signing_secret: String,
    /// Give the signing secret in Socket Mode too, where nothing needs it:
    /// one more secret in the environment that must not leak.
    pub signing_secret_in_socket_mode: bool,
}

impl Default for Secrets {
    fn default() -> Secrets {
        Secrets {
            bot_token: "xoxb-test-bot-token".to_owned(),
            app_token: "xapp-test-app-token".to_owned(),
            signing_secret: SECRET.to_owned(),
            signing_secret_in_socket_mode: false,
        }
    }
}

/// `--leader-election`: act only while holding the Lease in the home
/// cluster (a context of the kubeconfig).
#[derive(Clone, Debug)]
struct Leader {
    identity: String,
    lease_context: String,
}

/// What the process is started with. By default: the Events API over
/// HTTP, clusters in memory, the fake Slack's own Web API, the default
/// [`Secrets`], `RUST_LOG=info`, text logs, no leader election, and a
/// journal of its own.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    config: String,
    transport: Transport,
    clusters: Clusters,
    api_url: Option<String>,
    secrets: Secrets,
    rust_log: String,
    log_format: Option<String>,
    leader: Option<Leader>,
    journal: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl ServeOptions {
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Real clusters, through this kubeconfig, instead of `--in-memory`.
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.clusters = Clusters::Kubeconfig(path.into());
        self
    }

    /// The Web API at `url` (a proxy in front of the fake Slack).
    pub fn slack_api_url(mut self, url: &str) -> Self {
        self.api_url = Some(url.to_owned());
        self
    }

    pub fn secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = filter.to_owned();
        self
    }

    /// `--log-format FORMAT` (`text` or `json`).
    pub fn log_format(mut self, format: &str) -> Self {
        self.log_format = Some(format.to_owned());
        self
    }

    /// `--leader-election` as replica `identity`, with the Lease in the
    /// kubeconfig's context `lease_context`.
    pub fn leader(mut self, identity: &str, lease_context: &str) -> Self {
        self.leader = Some(Leader {
            identity: identity.to_owned(),
            lease_context: lease_context.to_owned(),
        });
        self
    }

    /// The journal at `path` (one replicas share) instead of its own.
    pub fn journal_at(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the process and returns once it is ready for events
    /// (connected, or answering 200 on /readyz: Slack's routes answer 503
    /// until then). Panics with its log if it is not within
    /// [`READY_WITHIN`].
    pub async fn start(self, fake: &FakeSlack) -> ServeProc {
        let mut bot = ServeProc::new(self, fake);
        bot.spawn_ready(fake).await;
        bot
    }

    /// Starts the process and returns at once: for a replica that may
    /// never be ready, a start that must fail, or a bench timing the start.
    pub fn spawn(self, fake: &FakeSlack) -> ServeProc {
        let mut bot = ServeProc::new(self, fake);
        bot.spawn();
        bot
    }
}

/// The `serve` process; SIGKILLed on drop. Its config, journal and log live
/// in a temp dir that outlives restarts.
pub struct ServeProc {
    child: Option<Child>,
    options: ServeOptions,
    /// The Web API the bot is pointed at.
    api_url: String,
    port: u16,
    dir: tempfile::TempDir,
    /// When the newest process was spawned.
    spawned_at: Instant,
    http: reqwest::Client,
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServeProc {
    /// The options for `serve` with `config` (YAML); see [`ServeOptions`].
    pub fn options(config: &str) -> ServeOptions {
        ServeOptions {
            config: config.to_owned(),
            transport: Transport::Http,
            clusters: Clusters::InMemory,
            api_url: None,
            secrets: Secrets::default(),
            rust_log: "info".to_owned(),
            log_format: None,
            leader: None,
            journal: None,
            env: Vec::new(),
        }
    }

    fn new(options: ServeOptions, fake: &FakeSlack) -> ServeProc {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), &options.config).unwrap();
        ServeProc {
            child: None,
            api_url: options.api_url.clone().unwrap_or_else(|| fake.api_url()),
            options,
            port: free_port(),
            dir,
            spawned_at: Instant::now(),
            http: reqwest::Client::new(),
        }
    }

    /// SIGKILLs the process (no shutdown path runs) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `serve` again on the same config, journal and port (after
    /// [`ServeProc::kill`]); returns once it is ready, which is after it
    /// resumed what the journal left.
    pub async fn restart(&mut self, fake: &FakeSlack) {
        self.kill();
        self.spawn_ready(fake).await;
    }

    /// Asks the process to shut down (SIGTERM, as Kubernetes does) and
    /// waits up to 10 s for it, then kills it: either way its log is
    /// complete afterwards, shutdown lines included.
    pub async fn terminate(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        for _ in 0..200 {
            if self.try_exit().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// The exit status, if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Blocks until the process exits (for one that must stop by itself).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the process was started");
        child.wait().expect("the process is reaped")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// When the newest process was spawned.
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    pub fn transport(&self) -> Transport {
        self.options.transport
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn journal_path(&self) -> PathBuf {
        match &self.options.journal {
            Some(shared) => shared.clone(),
            None => self.dir.path().join("journal.jsonl"),
        }
    }

    /// The journal's records, as JSON.
    pub fn journal_json(&self) -> Vec<Value> {
        std::fs::read_to_string(self.journal_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bot.log")
    }

    /// Everything every run of the process printed, stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    async fn spawn_ready(&mut self, fake: &FakeSlack) {
        let connections_before = fake.socket_connections();
        self.spawn();
        let ready = match self.transport() {
            Transport::Socket => {
                fake.wait_connected(connections_before + 1, READY_WITHIN)
                    .await
            }
            // Only then are Slack's routes served. (/healthz answers as
            // soon as the process listens, which is before it has met
            // Slack and the clusters: on a busy machine, seconds.)
            Transport::Http => self.wait_status("/readyz", 200, READY_WITHIN).await,
        };
        assert!(ready, "bot did not become ready; log:\n{}", self.log());
    }

    fn spawn(&mut self) {
        let mut command = self.command();
        self.spawned_at = Instant::now();
        self.child = Some(command.spawn().expect("failover-bot serve starts"));
    }

    fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let stdout = log.try_clone().expect("log file handle");
        let options = &self.options;
        let mut command = Command::new(env!("CARGO_BIN_EXE_failover-bot"));
        command
            .arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .arg("--journal")
            .arg(self.journal_path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("SLACK_BOT_TOKEN", &options.secrets.bot_token)
            .env("SLACK_API_URL", &self.api_url)
            .env("RUST_LOG", &options.rust_log)
            .env_remove("SLACK_APP_TOKEN")
            .env_remove("SLACK_SIGNING_SECRET")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        self.add_transport(&mut command);
        match &options.clusters {
            Clusters::InMemory => command.arg("--in-memory"),
            Clusters::Kubeconfig(path) => command.env("KUBECONFIG", path),
        };
        if let Some(format) = &options.log_format {
            command.args(["--log-format", format]);
        }
        if let Some(leader) = &options.leader {
            command
                .arg("--leader-election")
                .args(["--lease-context", &leader.lease_context])
                .args(["--lease-namespace", LEASE_NAMESPACE])
                .args(["--identity", &leader.identity]);
        }
        command
    }

    fn add_transport(&self, command: &mut Command) {
        let secrets = &self.options.secrets;
        let socket = self.transport() == Transport::Socket;
        if socket {
            command.env("SLACK_APP_TOKEN", &secrets.app_token);
        }
        if !socket || secrets.signing_secret_in_socket_mode {
            command.env("SLACK_SIGNING_SECRET", &secrets.signing_secret);
        }
    }

    /// The status `GET path` answers with; `None` while nothing listens.
    pub async fn status(&self, path: &str) -> Option<u16> {
        let answer = self.http.get(self.url(path)).send().await.ok()?;
        Some(answer.status().as_u16())
    }

    /// Waits (up to `within`) until `GET path` answers `status`.
    pub async fn wait_status(&self, path: &str, status: u16, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.status(path).await == Some(status) {
                return true;
            }
            tokio::time::sleep(POLL).await;
        }
        false
    }

    /// Waits (up to `within`) until `GET path` answers `status`; fails
    /// saying `what` did not happen, with the log.
    pub async fn expect_status(&self, (path, status): (&str, u16), within: Duration, what: &str) {
        let answered = self.wait_status(path, status, within).await;
        assert!(answered, "{what}; log:\n{}", self.log());
    }

    /// Waits (up to `within`) until what Slack saw satisfies `done`; fails
    /// with everything Slack saw and this bot's log.
    pub async fn wait_for(
        &self,
        fake: &FakeSlack,
        what: &str,
        within: Duration,
        done: impl Fn(&FakeSlack) -> bool,
    ) {
        assert!(
            fake.wait_until(what, within, done).await,
            "{what}; Slack saw:\n{}\nbot log:\n{}",
            fake.dump(),
            self.log()
        );
    }

    /// Waits until the journal records the plan posted as `ts`: a
    /// reaction that arrives before that may find no plan message yet.
    pub async fn wait_proposed(&self, ts: &str) {
        let recorded = || {
            std::fs::read_to_string(self.journal_path())
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("\"proposed\"") && l.contains(ts))
        };
        let deadline = Instant::now() + WAIT;
        while !recorded() && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        assert!(recorded(), "plan {ts} recorded; log:\n{}", self.log());
    }
}
