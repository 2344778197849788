//! Issue target: the Events API over HTTP on loopback, 10,000 signed slash
//! commands; acknowledgement latency p50/p99 (target p99 < 5 ms) and the
//! bot's RSS under that load. Runs the release `serve` binary against the
//! fake Slack; each command is `history`, so every one also does real work
//! (journal fsync + an ephemeral post) in the background.
//!
//! Run: `cargo bench --bench http_ack` (part of `scripts/bench`).

#[path = "../tests/support/fake_slack.rs"]
mod fake_slack;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-signing-secret";
const REQUESTS: usize = 10_000;

const CONFIG: &str = r#"
approval:
  approvers: [UALICE, UBOB]
environments:
  dev:
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    // `cargo test --all-targets` runs benches as tests; do the real thing
    // only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let fake = fake_slack::FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["serve", "--in-memory", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&config)
        .arg("--journal")
        .arg(dir.path().join("journal.jsonl"))
        .env("SLACK_BOT_TOKEN", "xoxb-bench")
        .env("SLACK_SIGNING_SECRET", SECRET)
        .env("SLACK_API_URL", fake.api_url())
        .env_remove("SLACK_APP_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..500 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let idle = rss_kib(child.id(), "VmRSS:").unwrap_or(0);
    let mut latencies = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let body = fake_slack::slash_command_form("UALICE", "C1", "history", &format!("bench-{i}"));
        let ts = chrono::Utc::now().timestamp();
        let request = client
            .post(format!("{base}/slack/commands"))
            .header("X-Slack-Request-Timestamp", ts.to_string())
            .header("X-Slack-Signature", fake_slack::sign(SECRET, ts, &body))
            .body(body);
        let started = Instant::now();
        let response = request.send().await.expect("ack");
        let status = response.status();
        let _ = response.bytes().await;
        latencies.push(started.elapsed());
        assert!(status.is_success(), "request {i}: {status}");
    }
    let loaded = rss_kib(child.id(), "VmRSS:").unwrap_or(0);
    let peak = rss_kib(child.id(), "VmHWM:").unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    latencies.sort();
    println!(
        "http_ack: {REQUESTS} signed slash commands on loopback: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    println!("http_ack: bot RSS idle {idle} KiB, after load {loaded} KiB, peak {peak} KiB");
}
