//! Issue targets, on the release `serve --in-memory` binary against the fake
//! Slack:
//! - start-to-ready (target < 200 ms): process spawn → first 200 from
//!   `/readyz`, over 20 fresh processes (median and max);
//! - idle RSS (target < 30 MB): VmRSS once ready and then idle for 1 s;
//! - the Events API over HTTP on loopback, 10,000 signed slash commands:
//!   acknowledgement latency p50/p99 (target p99 < 5 ms) and RSS under that
//!   load. Each command is `history`, so every one also does real work
//!   (journal fsync + an ephemeral post) in the background.
//!
//! Run: `cargo bench --bench http_ack` (part of `scripts/bench`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::fake_slack::{self, FakeSlack};
use support::serve_proc::ServeProc;

const REQUESTS: usize = 10_000;
/// Fresh processes timed from spawn to ready.
const STARTS: usize = 20;
/// How often start-to-ready polls `/readyz`: its resolution.
const POLL: Duration = Duration::from_millis(1);
const READY_TIMEOUT: Duration = Duration::from_secs(10);

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

/// `serve --in-memory` over HTTP, logging only warnings (what a quiet
/// production replica does); returns at once.
fn spawn_serve(fake: &FakeSlack) -> ServeProc {
    ServeProc::options(CONFIG).rust_log("warn").spawn(fake)
}

/// The status code of `GET /readyz`, on a fresh connection (no client
/// pool, so every poll costs the same); `None` while nothing listens.
async fn readyz(port: u16) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request =
        format!("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let answer = String::from_utf8_lossy(&answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Time from the spawn until `/readyz` first answers 200.
async fn wait_ready(bot: &mut ServeProc) -> Duration {
    loop {
        if readyz(bot.port()).await == Some(200) {
            return bot.spawned_at().elapsed();
        }
        if let Some(status) = bot.try_exit() {
            panic!("serve exited with {status} before it was ready");
        }
        assert!(
            bot.spawned_at().elapsed() < READY_TIMEOUT,
            "serve not ready after {READY_TIMEOUT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Spawn → ready for `STARTS` fresh processes, each on a new journal.
async fn start_to_ready(fake: &FakeSlack) -> Vec<Duration> {
    let mut times = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let mut bot = spawn_serve(fake);
        times.push(wait_ready(&mut bot).await);
    }
    times
}

async fn run() {
    let fake = FakeSlack::start().await;
    let mut starts = start_to_ready(&fake).await;
    starts.sort();

    let mut bot = spawn_serve(&fake);
    wait_ready(&mut bot).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = bot.pid().expect("serve runs");
    let idle = rss_kib(pid, "VmRSS:").unwrap_or(0);

    let mut latencies = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let body = fake_slack::slash_command_form("UALICE", "C1", "history", &format!("bench-{i}"));
        let acked = bot.post_signed("/slack/commands", &body, 0).await;
        latencies.push(acked.elapsed);
        assert!(
            (200..300).contains(&acked.status),
            "request {i}: {}",
            acked.status
        );
    }
    let loaded = rss_kib(pid, "VmRSS:").unwrap_or(0);
    let peak = rss_kib(pid, "VmHWM:").unwrap_or(0);
    drop(bot);
    latencies.sort();
    println!(
        "http_ack: start-to-ready (spawn → first 200 from /readyz, {STARTS} processes, polled every {POLL:?}): median {:.1?}, min {:.1?}, max {:.1?} (target < 200 ms)",
        percentile(&starts, 0.5),
        starts[0],
        starts[starts.len() - 1]
    );
    println!(
        "http_ack: idle RSS (ready + 1 s idle) {idle} KiB = {:.1} MB (target < 30 MB)",
        idle as f64 * 1024.0 / 1e6
    );
    println!(
        "http_ack: {REQUESTS} signed slash commands on loopback: p50 {:?}, p90 {:?}, p99 {:?}, max {:?} (target p99 < 5 ms)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    println!("http_ack: bot RSS after load {loaded} KiB, peak {peak} KiB");
}
