//! A real Prometheus for integration tests (Debian's `prometheus` package,
//! cached by `scripts/test-env/provision`), scraping an [`Exporter`] that the
//! test controls: set a series' value, and a second or two later queries
//! see it — so a test can make an error rate rise after a step.
//!
//! Prometheus listens on 127.0.0.1 on a free port, scrapes every second,
//! keeps its TSDB in a temp dir, and is SIGKILLed when the [`Prometheus`] is
//! dropped; a small `sh` watchdog kills it if the test binary dies without
//! running `Drop`. The binaries come from `$FAILOVER_BOT_PROMETHEUS_BIN` (a
//! folder with `prometheus` and `promtool`), or else from the provision
//! script's cache file. Missing binaries are a panic saying how to get them:
//! these tests never skip.
//!
//! Start-up takes ~6 s: Prometheus applies its first scrape targets only
//! after its 5 s discovery tick. [`Prometheus::start`] returns once the
//! exporter has been scraped.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const HOWTO: &str = "run `eval \"$(scripts/test-env/provision)\"` (or `./scripts/test`) \
                     to install Debian's prometheus package and cache prometheus + promtool";
const START_ATTEMPTS: usize = 3;
/// Ready, and the exporter scraped once (~6 s on an idle machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Prometheus::wait_for`] waits for a query to show a value.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ----------------------------------------------------------------- binaries

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FAILOVER_BOT_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("prometheus: HOME is not set"))
            .join(".cache"),
    };
    base.join("failover-bot")
}

/// The folder holding `prometheus` and `promtool`.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("FAILOVER_BOT_PROMETHEUS_BIN").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => dir_from_env_file(),
        };
        for b in ["prometheus", "promtool"] {
            if !dir.join(b).is_file() {
                panic!(
                    "prometheus: {} does not exist: {HOWTO}",
                    dir.join(b).display()
                );
            }
        }
        dir
    })
}

fn dir_from_env_file() -> PathBuf {
    let env_file = cache_dir().join("test-env.sh");
    if !env_file.is_file() {
        panic!(
            "prometheus: FAILOVER_BOT_PROMETHEUS_BIN is not set and {} does not exist: {HOWTO}",
            env_file.display()
        );
    }
    // `export NAME=%q-quoted value` lines: let bash unquote them.
    let out = Command::new("bash")
        .args([
            "-c",
            "source \"$1\" >/dev/null 2>&1; printf '%s' \"${FAILOVER_BOT_PROMETHEUS_BIN:-}\"",
            "prometheus-env",
        ])
        .arg(&env_file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "prometheus: cannot run bash to read {}: {e}",
                env_file.display()
            )
        });
    let value = String::from_utf8_lossy(&out.stdout).into_owned();
    if value.is_empty() {
        panic!(
            "prometheus: {} does not export FAILOVER_BOT_PROMETHEUS_BIN (written by an older \
             provision script): {HOWTO}",
            env_file.display()
        );
    }
    PathBuf::from(value)
}

/// Path of `promtool`.
pub fn promtool() -> PathBuf {
    bin_dir().join("promtool")
}

// ----------------------------------------------------------------- exporter

/// A tiny HTTP server serving the Prometheus text format: whatever series the
/// test has set, on every path. Runs on its own thread, so it answers while
/// the test blocks or its runtime's clock is paused.
pub struct Exporter {
    addr: SocketAddr,
    state: Arc<ExporterState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct ExporterState {
    /// `name{labels}` → value.
    series: Mutex<BTreeMap<String, f64>>,
    scrapes: AtomicU64,
    stop: AtomicBool,
}

impl Exporter {
    pub fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("exporter: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("exporter: local addr");
        let state = Arc::new(ExporterState::default());
        let serving = state.clone();
        let thread = std::thread::Builder::new()
            .name("test-exporter".into())
            .spawn(move || serve_exporter(&listener, &serving))
            .expect("exporter: spawn thread");
        Exporter {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// `host:port`, as a scrape target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Sets (or adds) the series `metric{labels}`.
    pub fn set(&self, metric: &str, labels: &[(&str, &str)], value: f64) {
        lock(&self.state.series).insert(series_key(metric, labels), value);
    }

    /// Sets `metric{cluster="CLUSTER"}`.
    pub fn set_for_cluster(&self, metric: &str, cluster: &str, value: f64) {
        self.set(metric, &[("cluster", cluster)], value);
    }

    /// Stops serving the series: its next scrape marks it stale, and
    /// queries return no data for it.
    pub fn remove(&self, metric: &str, labels: &[(&str, &str)]) {
        lock(&self.state.series).remove(&series_key(metric, labels));
    }

    /// How many times it has been scraped.
    pub fn scrapes(&self) -> u64 {
        self.state.scrapes.load(Ordering::SeqCst)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn series_key(metric: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    format!("{metric}{{{}}}", labels.join(","))
}

/// The text format's label value escapes: backslash, quote, newline.
fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_series(series: &BTreeMap<String, f64>) -> String {
    series
        .iter()
        .map(|(key, value)| format!("{key} {}\n", format_value(*value)))
        .collect()
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

fn serve_exporter(listener: &TcpListener, state: &ExporterState) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if read_request_head(&mut stream).is_err() {
            continue;
        }
        let body = render_series(&lock(&state.series));
        state.scrapes.fetch_add(1, Ordering::SeqCst);
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

fn read_request_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

// --------------------------------------------------------------- prometheus

pub struct Prometheus {
    port: u16,
    child: Mutex<Option<Child>>,
    watchdog: Mutex<Option<Child>>,
    dir: Option<tempfile::TempDir>,
}

impl Prometheus {
    /// Starts a Prometheus that scrapes `exporter` every second (job
    /// `exporter`), and waits until it has.
    pub async fn start(exporter: &Exporter) -> Prometheus {
        let target = exporter.target();
        let prometheus = tokio::task::spawn_blocking(move || Prometheus::start_blocking(&target))
            .await
            .expect("prometheus: start task panicked");
        prometheus
            .wait_for("up{job=\"exporter\"}", |v| v == [1.0])
            .await;
        prometheus
    }

    fn start_blocking(target: &str) -> Prometheus {
        let bin = bin_dir().join("prometheus");
        let dir = tempfile::Builder::new()
            .prefix("failover-bot-prometheus-")
            .tempdir()
            .expect("prometheus: create temp dir");
        let mut prometheus = Prometheus {
            port: 0,
            child: Mutex::new(None),
            watchdog: Mutex::new(None),
            dir: Some(dir),
        };
        let dir = prometheus.dir().to_owned();
        *lock(&prometheus.watchdog) = Some(start_watchdog(&dir));
        std::fs::write(dir.join("prometheus.yml"), scrape_config(target))
            .expect("prometheus: write config");
        let log = dir.join("prometheus.log");
        let mut failures = Vec::new();
        for attempt in 0..START_ATTEMPTS {
            let port = free_port();
            let mut child = spawn_prometheus(&bin, &dir, port, attempt);
            std::fs::write(dir.join("pid"), child.id().to_string()).expect("prometheus: write pid");
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    prometheus.port = port;
                    *lock(&prometheus.child) = Some(child);
                    return prometheus;
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("port {port}: {why}"));
                }
            }
        }
        panic!(
            "prometheus: {} did not start: {}\n--- {} ---\n{}",
            bin.display(),
            failures.join("; "),
            log.display(),
            log_tail(&log, 30)
        );
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("prometheus: temp dir").path()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs Prometheus (it is "down"); its port stays closed.
    pub fn kill(&self) {
        if let Some(mut child) = lock(&self.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls `query` until `accept` takes its values (sorted), or panics
    /// after [`WAIT_TIMEOUT`] with what it saw last.
    pub async fn wait_for(&self, query: &str, accept: impl Fn(&[f64]) -> bool) -> Vec<f64> {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let mut last;
        loop {
            match self.values(query).await {
                Ok(values) if accept(&values) => return values,
                Ok(values) => last = format!("{values:?}"),
                Err(error) => last = error,
            }
            if Instant::now() > deadline {
                panic!(
                    "prometheus: `{query}` did not reach the expected values in {WAIT_TIMEOUT:?}; \
                     last: {last}\n--- log ---\n{}",
                    log_tail(&self.dir().join("prometheus.log"), 20)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The values of an instant query, sorted (NaN last).
    pub async fn values(&self, query: &str) -> Result<Vec<f64>, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let answer: serde_json::Value = client
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let result = answer["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("not a vector: {answer}"))?;
        let mut values: Vec<f64> = result
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse().ok())
            .collect();
        values.sort_by(f64::total_cmp);
        Ok(values)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        for m in [&self.child, &self.watchdog] {
            if let Some(mut c) = lock(m).take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

fn scrape_config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// If the test process dies without `Drop`, kill Prometheus and clean up.
fn start_watchdog(dir: &Path) -> Child {
    Command::new("sh")
        .args([
            "-c",
            "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; \
             [ -f \"$2/pid\" ] && kill -KILL $(cat \"$2/pid\") 2>/dev/null; \
             rm -rf \"$2\"",
            "prometheus-watchdog",
        ])
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus: start watchdog sh")
}

fn spawn_prometheus(bin: &Path, dir: &Path, port: u16, attempt: usize) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("prometheus.log"))
        .expect("prometheus: open log");
    let err = log.try_clone().expect("prometheus: clone log handle");
    Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join(format!("tsdb-{attempt}")).display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=1h")
        .arg("--log.level=warn")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus: cannot start {}: {e}: {HOWTO}", bin.display()))
}

fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if http_status(port, "/-/ready") == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("prometheus: bind 127.0.0.1:0")
        .port()
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
