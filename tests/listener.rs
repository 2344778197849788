//! The HTTP listener of `serve` (Events API mode) under hostile traffic
//! (issue 14 item 4), against the real binary: header and body read
//! timeouts, the Slack signature headers checked before the body is read,
//! a body cap, and memory that stays bounded under many slow connections.
//! The connection cap is tested on the listener itself, with a cap of two.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::fake_slack::{self, FakeSlack};
use support::serve_proc::{now, ServeProc as Bot, SECRET};

const CONFIG: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [UALICE, UBOB]
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

/// The listener's header read timeout (`listener::HEADER_READ_TIMEOUT`).
const HEADER_TIMEOUT: Duration = failover_bot::listener::HEADER_READ_TIMEOUT;
/// Scheduling slack on a loaded 2-core machine, on top of a timeout.
const SLACK: Duration = Duration::from_millis(1500);
const TWO_MB: usize = 2 * 1024 * 1024;

async fn start() -> (FakeSlack, Bot) {
    let fake = FakeSlack::start().await;
    let bot = Bot::options(CONFIG).start(&fake).await;
    (fake, bot)
}

/// A request head, `extra` headers included, for a body of `length`
/// bytes (chunked when `None`).
fn head(path: &str, extra: &[(&str, String)], length: Option<usize>) -> String {
    let mut text = format!("POST {path} HTTP/1.1\r\nHost: bot\r\n");
    text.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    for (name, value) in extra {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    match length {
        Some(n) => text.push_str(&format!("Content-Length: {n}\r\n\r\n")),
        None => text.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    text
}

/// Signature headers that look right (fresh timestamp, well-formed `v0=`
/// signature) but sign nothing: what an attacker without the secret sends.
fn plausible_signature() -> Vec<(&'static str, String)> {
    vec![
        ("X-Slack-Request-Timestamp", now().to_string()),
        ("X-Slack-Signature", format!("v0={}", "ab".repeat(32))),
    ]
}

/// The status code of the first answer on `stream`, if one comes within
/// `within`; `None` when the connection closes or nothing comes.
async fn status_within(stream: &mut TcpStream, within: Duration) -> Option<u16> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    while !got.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&got);
    line.split_whitespace().nth(1)?.parse().ok()
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[tokio::test]
async fn headers_trickled_one_byte_a_second_are_cut_off_within_the_header_timeout() {
    let (_fake, bot) = start().await;
    let mut stream = TcpStream::connect(("127.0.0.1", bot.port())).await.unwrap();
    let started = Instant::now();
    let give_up = HEADER_TIMEOUT + SLACK + Duration::from_secs(3);
    let request = head("/slack/commands", &plausible_signature(), Some(10));
    let mut bytes = request.bytes();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut buf = [0u8; 256];
    let cut_off = loop {
        tokio::select! {
            _ = tick.tick() => {
                let Some(byte) = bytes.next() else { break None };
                if stream.write_all(&[byte]).await.is_err() {
                    break Some(started.elapsed());
                }
            }
            read = stream.read(&mut buf) => match read {
                // Closed (with or without a 408): cut off.
                Ok(_) | Err(_) => break Some(started.elapsed()),
            },
        }
        if started.elapsed() > give_up {
            break None;
        }
    };
    let cut_off = cut_off.unwrap_or_else(|| {
        panic!(
            "a connection trickling its headers was still open after {give_up:?}; log:\n{}",
            bot.log()
        )
    });
    assert!(
        cut_off <= HEADER_TIMEOUT + SLACK,
        "cut off after {cut_off:?}, header timeout {HEADER_TIMEOUT:?}"
    );
}

/// Sends `head` and the first 16 KiB of a `total`-byte body, then waits up
/// to a second for an answer without sending more: the status, and how
/// long it took from the first byte.
async fn answer_before_the_body(bot: &Bot, head: &str) -> (Option<u16>, Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", bot.port())).await.unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'a'; 16 * 1024]).await.unwrap();
    let status = status_within(&mut stream, Duration::from_secs(1)).await;
    (status, started.elapsed())
}

#[tokio::test]
async fn an_unsigned_2mb_post_is_refused_within_a_second_without_being_read() {
    let (_fake, bot) = start().await;
    let unsigned = head("/slack/commands", &[], Some(TWO_MB));
    let (status, took) = answer_before_the_body(&bot, &unsigned).await;
    // The client has sent 16 KiB of 2 MB: an answer now was made without
    // the body.
    assert_eq!(
        status,
        Some(401),
        "answer to an unsigned 2 MB POST with 16 KiB of it sent, after {took:?}; log:\n{}",
        bot.log()
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn a_stale_or_missing_timestamp_is_refused_before_the_body() {
    let (_fake, bot) = start().await;
    let body = fake_slack::slash_command_form("UALICE", "C1", "shift 50", "trig-stale");
    let stale = now() - 301;
    let cases = [
        (
            "stale, correctly signed",
            vec![
                ("X-Slack-Request-Timestamp", stale.to_string()),
                ("X-Slack-Signature", fake_slack::sign(SECRET, stale, &body)),
            ],
        ),
        (
            "no timestamp",
            vec![("X-Slack-Signature", fake_slack::sign(SECRET, now(), &body))],
        ),
        (
            "a timestamp that is not a number",
            vec![
                ("X-Slack-Request-Timestamp", "soon".to_owned()),
                ("X-Slack-Signature", fake_slack::sign(SECRET, now(), &body)),
            ],
        ),
    ];
    for (case, headers) in cases {
        let request = head("/slack/commands", &headers, Some(TWO_MB));
        let (status, took) = answer_before_the_body(&bot, &request).await;
        assert_eq!(status, Some(401), "{case}: after {took:?}");
    }
    assert!(bot.journal_json().is_empty(), "{:?}", bot.journal_json());
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_unread() {
    let (_fake, bot) = start().await;
    let cap = failover_bot::slack::http::MAX_BODY_BYTES;
    // Declared too long: refused from the header alone.
    let declared = head("/slack/events", &plausible_signature(), Some(cap + 1));
    let (status, took) = answer_before_the_body(&bot, &declared).await;
    assert_eq!(status, Some(413), "declared over the cap, after {took:?}");
    // Chunked: refused once the cap is passed, the rest unread.
    let mut stream = TcpStream::connect(("127.0.0.1", bot.port())).await.unwrap();
    let chunked = head("/slack/events", &plausible_signature(), None);
    stream.write_all(chunked.as_bytes()).await.unwrap();
    let chunk = vec![b'a'; 16 * 1024];
    for _ in 0..cap / chunk.len() + 2 {
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        stream.write_all(&framed).await.unwrap();
    }
    let status = status_within(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(status, Some(413), "a chunked body past the cap");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_cut_off() {
    let (_fake, bot) = start().await;
    let mut stream = TcpStream::connect(("127.0.0.1", bot.port())).await.unwrap();
    let started = Instant::now();
    let request = head("/slack/commands", &plausible_signature(), Some(100));
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(b"token=").await.unwrap();
    let timeout = failover_bot::slack::http::BODY_READ_TIMEOUT;
    let status = status_within(&mut stream, timeout + SLACK).await;
    assert_eq!(status, Some(408), "after {:?}", started.elapsed());
}

/// One forged or stale delivery of a valid-looking command or event.
fn forged(i: usize) -> (&'static str, String, Vec<(&'static str, String)>) {
    let (path, body) = if i.is_multiple_of(2) {
        let text = "shift 50";
        let trigger = format!("trig-forged-{i}");
        let form = fake_slack::slash_command_form("UALICE", "C1", text, &trigger);
        ("/slack/commands", form)
    } else {
        let event = fake_slack::reaction_event(
            &format!("Ev{i}"),
            "UBOB",
            "white_check_mark",
            "C1",
            "1700000000.000100",
            true,
        );
        ("/slack/events", event.to_string())
    };
    let t = now();
    let signed = |ts: i64| fake_slack::sign(SECRET, ts, &body);
    let headers = match i % 7 {
        0 => vec![],
        1 => vec![
            (
                "X-Slack-Request-Timestamp",
                (t - 301 - i as i64).to_string(),
            ),
            ("X-Slack-Signature", signed(t - 301 - i as i64)),
        ],
        2 => vec![
            ("X-Slack-Request-Timestamp", (t + 400).to_string()),
            ("X-Slack-Signature", signed(t + 400)),
        ],
        3 => vec![
            ("X-Slack-Request-Timestamp", t.to_string()),
            (
                "X-Slack-Signature",
                fake_slack::sign("not-the-secret", t, &body),
            ),
        ],
        4 => vec![
            ("X-Slack-Request-Timestamp", t.to_string()),
            ("X-Slack-Signature", format!("v0={}", "0".repeat(64))),
        ],
        5 => vec![
            ("X-Slack-Request-Timestamp", t.to_string()),
            ("X-Slack-Signature", "v0=not-hex".to_owned()),
        ],
        _ => vec![
            ("X-Slack-Request-Timestamp", t.to_string()),
            ("X-Slack-Signature", fake_slack::sign(SECRET, t, "tampered")),
        ],
    };
    (path, body, headers)
}

#[tokio::test]
async fn a_thousand_forged_or_stale_requests_reach_nothing() {
    let (fake, bot) = start().await;
    let calls_before = fake.calls().len();
    let http = reqwest::Client::new();
    let answers: Vec<u16> = stream::iter(0..1000)
        .map(|i| {
            let (path, body, headers) = forged(i);
            let mut request = http.post(bot.url(path)).body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            async move { request.send().await.map(|r| r.status().as_u16()) }
        })
        .buffer_unordered(16)
        .map(|answer| answer.expect("the bot answers"))
        .collect()
        .await;
    let not_401: Vec<&u16> = answers.iter().filter(|s| **s != 401).collect();
    assert!(not_401.is_empty(), "answers other than 401: {not_401:?}");
    // Nothing was journaled and Slack heard nothing...
    assert!(bot.journal_json().is_empty(), "{:?}", bot.journal_json());
    assert_eq!(fake.calls().len(), calls_before, "{}", fake.dump());
    // ...where one signed command is journaled at once: the probe sees.
    let reply = bot
        .slash(&fake, "UALICE", "status", "trig-the-real-one")
        .await;
    assert!(reply.contains("Working on"), "{reply}");
    let deadline = Instant::now() + support::serve_proc::WAIT;
    while bot.journal_json().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!bot.journal_json().is_empty(), "log:\n{}", bot.log());
}

/// A slow client: connects and sends nothing, trickles its head, or
/// streams a body it never finishes (1.9 MB of a declared 2 MB, or
/// chunked), with signature headers that look right. Holds its connection
/// until `hold` ends.
async fn slow_client(port: u16, kind: usize, hold: Arc<tokio::sync::Notify>) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let work = async {
        match kind % 4 {
            0 => std::future::pending::<()>().await,
            1 => {
                for byte in head("/slack/commands", &plausible_signature(), Some(10)).bytes() {
                    if stream.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            2 => {
                let request = head("/slack/commands", &plausible_signature(), Some(TWO_MB));
                let _ = stream.write_all(request.as_bytes()).await;
                let chunk = vec![b'a'; 64 * 1024];
                for _ in 0..30 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            }
            _ => {
                let request = head("/slack/events", &plausible_signature(), None);
                let _ = stream.write_all(request.as_bytes()).await;
                let chunk = [b"10000\r\n".to_vec(), vec![b'a'; 0x10000], b"\r\n".to_vec()].concat();
                for _ in 0..30 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = work => {}
        () = hold.notified() => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slow_connections_keep_rss_low_and_a_signed_command_is_acknowledged() {
    let (_fake, bot) = start().await;
    let pid = bot.pid().expect("the bot runs");
    let idle_kb = proc_status_kb(pid, "VmRSS:");
    let hold = Arc::new(tokio::sync::Notify::new());
    let clients: Vec<_> = (0..200)
        .map(|kind| tokio::spawn(slow_client(bot.port(), kind, hold.clone())))
        .collect();
    // Let the bodies stream (and, where they are read, pile up).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let command = fake_slack::slash_command_form("UALICE", "C1", "help", "trig-help");
    let acked = bot.post_signed("/slack/commands", &command, 0).await;
    let peak_kb = proc_status_kb(pid, "VmHWM:");
    hold.notify_waiters();
    for client in clients {
        client.abort();
    }
    assert_eq!(acked.status, 200, "log:\n{}", bot.log());
    assert!(
        acked.elapsed < Duration::from_secs(3),
        "the signed command took {:?}",
        acked.elapsed
    );
    println!(
        "RSS idle {} MB, peak {} MB under 200 slow connections; ack {:?}",
        idle_kb / 1024,
        peak_kb / 1024,
        acked.elapsed
    );
    assert!(
        peak_kb < 64 * 1024,
        "peak RSS {peak_kb} kB (idle {idle_kb} kB) under 200 slow connections"
    );
}

// ----------------------------------------------------- the connection cap

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    use failover_bot::listener::{self, Limits};
    let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
    };
    let server = listener::serve(tcp, router, limits);
    let first = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
        .await
        .unwrap();
    let while_full = status_within(&mut third, Duration::from_millis(500)).await;
    assert_eq!(while_full, None, "served beyond the cap of two");
    drop(first);
    let after = status_within(&mut third, Duration::from_secs(2)).await;
    assert_eq!(after, Some(200), "served once a slot was free");
    server.abort();
}
