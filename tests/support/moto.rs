//! A real `moto_server` (the Route53 stand-in) for integration tests, from
//! `scripts/test-env/provision`, listening on 127.0.0.1 on a free port.
//!
//! The binary comes from `$FAILOVER_BOT_MOTO_SERVER`, or else from the
//! provision script's cache file
//! (`${FAILOVER_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/failover-bot}/test-env.sh`).
//! Its moto version must be the one `scripts/test-env/provision` pins
//! (`MOTO_VERSION`). Anything missing or stale is a panic telling you to run
//! the provision script: these tests never skip.
//!
//! The server is SIGKILLed when the [`Moto`] is dropped; a small `sh`
//! watchdog kills it if the test binary dies without running `Drop`.
//!
//! moto quirks worth knowing (5.2.x): changes are INSYNC at once; it ignores
//! `StartRecordIdentifier` (a listing restarts at the first set of the
//! name/type); DELETE by set identifier deletes every record with that
//! identifier; it accepts weights above 255; it enforces the
//! 1,000-ResourceRecord rule (UPSERT counted twice) but not the 1,000-change
//! or 32,000-character rules.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const HOWTO: &str =
    "run `eval \"$(scripts/test-env/provision)\"` (or `scripts/test-env/provision`) \
                     to install the pinned moto_server";
const START_ATTEMPTS: usize = 4;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Moto {
    port: u16,
    child: Mutex<Option<Child>>,
    watchdog: Mutex<Option<Child>>,
    dir: Option<tempfile::TempDir>,
}

struct MotoBin {
    server: PathBuf,
    version: String,
}

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FAILOVER_BOT_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("moto: HOME is not set")).join(".cache")
        }
    };
    base.join("failover-bot")
}

/// `MOTO_VERSION="x.y.z"` from scripts/test-env/provision.
fn pinned_version() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-env/provision");
    let text = std::fs::read_to_string(&script)
        .unwrap_or_else(|e| panic!("moto: cannot read {}: {e}", script.display()));
    text.lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("MOTO_VERSION=")?;
            let value = rest.split_whitespace().next()?;
            Some(value.trim_matches(|c| c == '"' || c == '\'').to_owned())
        })
        .unwrap_or_else(|| panic!("moto: no MOTO_VERSION= line in {}", script.display()))
}

fn find_server() -> PathBuf {
    if let Some(p) = std::env::var_os("FAILOVER_BOT_MOTO_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let env_file = cache_dir().join("test-env.sh");
    if !env_file.is_file() {
        panic!(
            "moto: FAILOVER_BOT_MOTO_SERVER is not set and {} does not exist: {HOWTO}",
            env_file.display()
        );
    }
    // `export NAME=%q-quoted value` lines: let bash unquote them.
    let out = Command::new("bash")
        .args([
            "-c",
            "source \"$1\" >/dev/null 2>&1; printf '%s' \"${FAILOVER_BOT_MOTO_SERVER:-}\"",
            "moto-env",
        ])
        .arg(&env_file)
        .output()
        .unwrap_or_else(|e| panic!("moto: cannot run bash to read {}: {e}", env_file.display()));
    let value = String::from_utf8_lossy(&out.stdout).into_owned();
    if value.is_empty() {
        panic!(
            "moto: {} does not export FAILOVER_BOT_MOTO_SERVER: {HOWTO}",
            env_file.display()
        );
    }
    PathBuf::from(value)
}

fn installed_version(server: &Path) -> String {
    let bin = server.parent().unwrap_or(Path::new("."));
    let python = bin.join("python");
    if python.is_file() {
        let out = Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('moto'))",
            ])
            .stdin(Stdio::null())
            .output();
        if let Ok(out) = out {
            let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !v.is_empty() {
                return v;
            }
        }
    }
    // The provision script's stamp, in the venv beside bin/.
    let stamp = bin.join("..").join(".failover-bot-moto-version");
    std::fs::read_to_string(&stamp)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| {
            panic!(
                "moto: cannot tell which moto {} is (no working {} and no {}): {HOWTO}",
                server.display(),
                python.display(),
                stamp.display()
            )
        })
}

fn moto_bin() -> &'static MotoBin {
    static BIN: OnceLock<MotoBin> = OnceLock::new();
    BIN.get_or_init(|| {
        let server = find_server();
        if !server.is_file() {
            panic!("moto: {} does not exist: {HOWTO}", server.display());
        }
        let pinned = pinned_version();
        let version = installed_version(&server);
        if version != pinned {
            panic!(
                "moto: {} is moto {version}, but scripts/test-env/provision pins {pinned}: {HOWTO}",
                server.display()
            );
        }
        MotoBin { server, version }
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill_child(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("moto: bind 127.0.0.1:0")
        .port()
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One HTTP/1.1 request on a fresh connection; returns the status code.
fn http(port: u16, method: &str, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))
}

impl Moto {
    /// Starts a fresh moto_server (empty state) and waits until it answers.
    pub async fn start() -> Moto {
        tokio::task::spawn_blocking(Moto::start_blocking)
            .await
            .expect("moto: start task panicked")
    }

    fn start_blocking() -> Moto {
        let bin = moto_bin();
        let dir = tempfile::Builder::new()
            .prefix("failover-bot-moto-")
            .tempdir()
            .expect("moto: create temp dir");
        let mut moto = Moto {
            port: 0,
            child: Mutex::new(None),
            watchdog: Mutex::new(None),
            dir: Some(dir),
        };
        let dir = moto.dir().to_owned();
        // Watchdog: if the test process dies without Drop, kill moto.
        let watchdog = Command::new("sh")
            .args([
                "-c",
                "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; \
                 [ -f \"$2/pid\" ] && kill -KILL $(cat \"$2/pid\") 2>/dev/null; \
                 rm -rf \"$2\"",
                "moto-watchdog",
            ])
            .arg(std::process::id().to_string())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto: start watchdog sh");
        *lock(&moto.watchdog) = Some(watchdog);

        let log = dir.join("moto.log");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("moto: open log");
            let err = out.try_clone().expect("moto: clone log handle");
            let mut child = Command::new(&bin.server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("moto: cannot start {}: {e}: {HOWTO}", bin.server.display())
                });
            std::fs::write(dir.join("pid"), child.id().to_string()).expect("moto: write pid");
            let deadline = Instant::now() + READY_TIMEOUT;
            let ready = loop {
                if let Ok(Some(status)) = child.try_wait() {
                    break Err(format!("exited with {status}"));
                }
                if matches!(
                    http(port, "GET", "/moto-api/", Duration::from_secs(2)),
                    Ok(200)
                ) {
                    break Ok(());
                }
                if Instant::now() > deadline {
                    break Err(format!("not answering after {READY_TIMEOUT:?}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            match ready {
                Ok(()) => {
                    moto.port = port;
                    *lock(&moto.child) = Some(child);
                    return moto;
                }
                Err(why) => {
                    kill_child(&mut child);
                    failures.push(format!("port {port}: {why}"));
                }
            }
        }
        panic!(
            "moto: moto_server {} ({}) did not start: {}\n--- {} ---\n{}",
            bin.server.display(),
            bin.version,
            failures.join("; "),
            log.display(),
            log_tail(&log, 30)
        );
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("moto: temp dir").path()
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forgets every zone and record (`POST /moto-api/reset`).
    pub async fn reset(&self) {
        let port = self.port;
        let status = tokio::task::spawn_blocking(move || {
            http(port, "POST", "/moto-api/reset", Duration::from_secs(10))
        })
        .await
        .expect("moto: reset task panicked")
        .unwrap_or_else(|e| panic!("moto: reset failed: {e}"));
        assert_eq!(status, 200, "moto: reset answered HTTP {status}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        for m in [&self.child, &self.watchdog] {
            if let Some(mut c) = lock(m).take() {
                kill_child(&mut c);
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

static ZONES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Creates the hosted zone `name` and returns its id without the
/// `/hostedzone/` prefix. Every call gets a fresh caller reference, so one
/// moto can hold many zones of the same name.
pub async fn create_zone(client: &aws_sdk_route53::Client, name: &str) -> String {
    let reference = format!(
        "failover-bot-test-{}-{}",
        std::process::id(),
        ZONES.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let created = client
        .create_hosted_zone()
        .name(name)
        .caller_reference(reference)
        .send()
        .await
        .expect("create hosted zone");
    let id = created.hosted_zone().expect("hosted zone").id();
    id.trim_start_matches("/hostedzone/").to_owned()
}

/// Sends `sets` with `action` through `admin`'s client, 400 per batch (well
/// within moto's limits): how tests and benches set the scene.
pub async fn change_record_sets(
    admin: &failover_bot::backend::route53::Route53,
    zone: &str,
    action: aws_sdk_route53::types::ChangeAction,
    sets: Vec<aws_sdk_route53::types::ResourceRecordSet>,
) {
    use aws_sdk_route53::types::{Change, ChangeBatch};
    for chunk in sets.chunks(400) {
        let changes = chunk
            .iter()
            .map(|s| {
                Change::builder()
                    .action(action.clone())
                    .resource_record_set(s.clone())
                    .build()
                    .unwrap()
            })
            .collect();
        admin
            .client()
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(
                ChangeBatch::builder()
                    .set_changes(Some(changes))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("scene-setting change batch");
    }
}

/// A weighted A record and its external-dns TXT twin (owned by the bot,
/// owner id `failover-bot`) per cluster and name in `records`, cluster `i`
/// at `weights[i]`.
pub fn owned_weighted_sets(
    records: &[&str],
    clusters: &[String],
    weights: &[u8],
) -> Vec<aws_sdk_route53::types::ResourceRecordSet> {
    use aws_sdk_route53::types::{ResourceRecord, ResourceRecordSet, RrType};
    let mut sets = Vec::new();
    for record in records {
        for (i, cluster) in clusters.iter().enumerate() {
            for (kind, value) in [
                (RrType::A, format!("10.0.0.{}", i + 1)),
                (
                    RrType::Txt,
                    "\"heritage=external-dns,external-dns/owner=failover-bot\"".to_owned(),
                ),
            ] {
                sets.push(
                    ResourceRecordSet::builder()
                        .name(*record)
                        .r#type(kind)
                        .set_identifier(cluster)
                        .weight(i64::from(weights[i]))
                        .ttl(60)
                        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
                        .build()
                        .unwrap(),
                );
            }
        }
    }
    sets
}
