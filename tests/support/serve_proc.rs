//! The real `failover-bot serve` process against the wire-level fake Slack,
//! over Socket Mode or the signed Events API over HTTP: started, SIGKILLed
//! and restarted on the same journal, with its log kept for failure messages.

#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fake_slack::{self, FakeSlack};

/// The Events API signing secret the bot is given in HTTP mode.
pub const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// How long any one wait on the bot may take.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a start may take to be ready (connected, or 200 on /readyz):
/// it meets Slack (auth.test) and every cluster first, which on a loaded
/// 2-core CI machine running three API servers per test can take seconds.
const READY_WITHIN: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Socket,
    Http,
}

/// Where the bot's clusters are.
#[derive(Clone, Debug)]
pub enum Clusters {
    /// `--in-memory`: seeded from the config's `weight` keys.
    InMemory,
    /// Real clusters, reached through this kubeconfig (`$KUBECONFIG`).
    Kubeconfig(PathBuf),
}

/// The `serve` process; SIGKILLed on drop. Its config, journal and log live
/// in a temp dir that outlives restarts.
pub struct ServeProc {
    child: Option<Child>,
    transport: Transport,
    clusters: Clusters,
    /// The Web API the bot is pointed at: the fake Slack's own, or a proxy
    /// in front of it.
    api_url: String,
    port: u16,
    dir: tempfile::TempDir,
    starts: usize,
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
    /// Writes `config` (YAML) and starts `serve` on a new journal; returns
    /// once it is ready for events (connected, or answering 200 on
    /// /readyz: Slack's routes answer 503 until then).
    pub async fn start(
        fake: &FakeSlack,
        transport: Transport,
        config: &str,
        clusters: Clusters,
    ) -> ServeProc {
        let mut bot = ServeProc::new(transport, config, clusters, fake.api_url());
        bot.spawn(fake).await;
        bot
    }

    /// [`ServeProc::start`] over the Events API, with the Web API reached
    /// at `api_url` (a proxy in front of the fake Slack) instead.
    pub async fn start_behind(
        fake: &FakeSlack,
        api_url: &str,
        config: &str,
        clusters: Clusters,
    ) -> ServeProc {
        let mut bot = ServeProc::new(Transport::Http, config, clusters, api_url.to_owned());
        bot.spawn(fake).await;
        bot
    }

    fn new(transport: Transport, config: &str, clusters: Clusters, api_url: String) -> ServeProc {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        ServeProc {
            child: None,
            transport,
            clusters,
            api_url,
            port: free_port(),
            dir,
            starts: 0,
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
        self.spawn(fake).await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.path().join("journal.jsonl")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bot.log")
    }

    /// Everything every run of the process wrote to stderr.
    pub fn log(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(self.log_path()).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn spawn(&mut self, fake: &FakeSlack) {
        let connections_before = fake.socket_connections();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_failover-bot"));
        command
            .arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .arg("--journal")
            .arg(self.journal())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("SLACK_BOT_TOKEN", "xoxb-test-bot-token")
            .env("SLACK_API_URL", &self.api_url)
            .env("RUST_LOG", "info")
            .env_remove("SLACK_APP_TOKEN")
            .env_remove("SLACK_SIGNING_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        match &self.clusters {
            Clusters::InMemory => command.arg("--in-memory"),
            Clusters::Kubeconfig(path) => command.env("KUBECONFIG", path),
        };
        match self.transport {
            Transport::Socket => command.env("SLACK_APP_TOKEN", "xapp-test-app-token"),
            Transport::Http => command.env("SLACK_SIGNING_SECRET", SECRET),
        };
        self.child = Some(command.spawn().expect("failover-bot serve starts"));
        self.starts += 1;
        self.wait_ready(fake, connections_before).await;
    }

    async fn wait_ready(&self, fake: &FakeSlack, connections_before: usize) {
        let ready = match self.transport {
            Transport::Socket => {
                fake.wait_connected(connections_before + 1, READY_WITHIN)
                    .await
            }
            Transport::Http => self.wait_readyz().await,
        };
        assert!(ready, "bot did not become ready; log:\n{}", self.log());
    }

    /// Waits for 200 on /readyz: only then are Slack's routes served.
    /// (/healthz answers as soon as the process listens, which is before
    /// it has met Slack and the clusters: on a busy machine, seconds.)
    async fn wait_readyz(&self) -> bool {
        let url = self.url("/readyz");
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
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
            std::fs::read_to_string(self.journal())
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("\"proposed\"") && l.contains(ts))
        };
        let deadline = Instant::now() + WAIT;
        while !recorded() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(recorded(), "plan {ts} recorded; log:\n{}", self.log());
    }

    /// Types `/failover TEXT` as `user` in C1; returns the immediate
    /// (ephemeral) reply.
    pub async fn slash(&self, fake: &FakeSlack, user: &str, text: &str, trigger: &str) -> String {
        match self.transport {
            Transport::Socket => {
                let id = fake
                    .send_envelope(
                        "slash_commands",
                        fake_slack::slash_command(user, "C1", text, trigger),
                        true,
                    )
                    .await;
                let ack = fake
                    .wait_ack(&id, WAIT)
                    .await
                    .unwrap_or_else(|| panic!("slash command acknowledged; log:\n{}", self.log()));
                ack["payload"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }
            Transport::Http => {
                let body = fake_slack::slash_command_form(user, "C1", text, trigger);
                let response = signed_post(&self.url("/slack/commands"), &body, now()).await;
                assert_eq!(response.status(), 200);
                let json: Value = response.json().await.unwrap();
                json["text"].as_str().unwrap_or_default().to_owned()
            }
        }
    }

    /// Delivers a reaction event (added or removed) on message `ts` in C1;
    /// returns once the bot acknowledged it.
    pub async fn reaction(
        &self,
        fake: &FakeSlack,
        event_id: &str,
        user: &str,
        name: &str,
        ts: &str,
        added: bool,
    ) {
        let event = fake_slack::reaction_event(event_id, user, name, "C1", ts, added);
        match self.transport {
            Transport::Socket => {
                let id = fake.send_envelope("events_api", event, false).await;
                assert!(
                    fake.wait_ack(&id, WAIT).await.is_some(),
                    "event acknowledged; log:\n{}",
                    self.log()
                );
            }
            Transport::Http => {
                let response =
                    signed_post(&self.url("/slack/events"), &event.to_string(), now()).await;
                assert_eq!(response.status(), 200);
            }
        }
    }
}

/// Unix seconds, as Slack stamps requests.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// POSTs `body` signed with [`SECRET`] as of `timestamp`.
pub async fn signed_post(url: &str, body: &str, timestamp: i64) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("X-Slack-Request-Timestamp", timestamp.to_string())
        .header(
            "X-Slack-Signature",
            fake_slack::sign(SECRET, timestamp, body),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}
