//! Real Kubernetes API servers for integration tests: one etcd and `n`
//! kube-apiservers (1.20, from `scripts/test-env/provision`), each with its own
//! `--etcd-prefix`, so every API server is an isolated "cluster". Everything
//! listens on 127.0.0.1 only, on free ports, with state in one temp dir.
//!
//! Every cluster gets namespace `operators`, Lunar's `RoutingWeight` CRD
//! (`manifests/target/crd/crd-routingweight.yaml`, waited until
//! Established) and the ConfigMap `operators/cluster-identity` with
//! `data.clusterName`.
//!
//! Auth is a static token file: `admin-token` (group `system:masters`) and a
//! random token for user [`BOT_USER`] without groups and without any RBAC
//! grant, so RBAC tests start from "forbidden".
//!
//! Processes are SIGKILLed when the [`KubeEnv`] is dropped (also while a
//! panicking test unwinds); a small `sh` watchdog kills them and removes the
//! temp dir if the test binary itself dies without running `Drop`.

#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use failover_bot::backend::kube::crd::RoutingWeight;

/// A token user with no permissions unless a test grants some.
/// The bot authenticates as the ServiceAccount `operators/failover-bot`, the
/// subject that every manifests/target/*/rbac.yaml binds (a static token stands
/// in for the ServiceAccount's token).
pub const BOT_USER: &str = "system:serviceaccount:operators:failover-bot";
/// The admin token (user `admin`, group `system:masters`).
pub const ADMIN_TOKEN: &str = "admin-token";
/// Namespace created in every cluster.
pub const NAMESPACE: &str = "operators";
/// ConfigMap (in [`NAMESPACE`]) whose `data.clusterName` is the cluster's identity.
pub const IDENTITY_CONFIGMAP: &str = "cluster-identity";
/// Name of the RoutingWeight CRD.
pub const CRD_NAME: &str = "routingweights.routing.lunar.tech";

const START_ATTEMPTS: usize = 4;
const LOG_TAIL_LINES: usize = 30;

/// kube-apiserver flags beyond the per-cluster ones (as in scripts/test-env/smoke).
const APISERVER_FLAGS: &[&str] = &[
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    "--authorization-mode=RBAC",
    "--service-account-issuer=https://kubernetes.default.svc",
    "--service-cluster-ip-range=10.0.0.0/24",
    "--disable-admission-plugins=ServiceAccount",
    "--endpoint-reconciler-type=none",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeCluster {
    /// The cluster identity: `k8s-{label}.test.example.com`.
    pub name: String,
    /// `a`, `b`, ... `z`, then `c27`, `c28`, ...
    pub label: String,
    /// The kubeconfig context: `ctx-{label}`.
    pub context: String,
    /// `https://127.0.0.1:PORT`
    pub server: String,
}

/// The label of cluster `index`: `a`..`z`, then `c27`, `c28`, ... (1-based).
pub fn cluster_label(index: usize) -> String {
    if index < 26 {
        char::from(b'a' + index as u8).to_string()
    } else {
        format!("c{}", index + 1)
    }
}

/// Where the binaries are, their paths checked.
#[derive(Clone, Debug)]
struct KubeBin {
    etcd: PathBuf,
    apiserver: PathBuf,
    kubectl: PathBuf,
}

fn cache_env_file() -> PathBuf {
    let cache = if let Some(c) = std::env::var_os("FAILOVER_BOT_CACHE").filter(|c| !c.is_empty()) {
        PathBuf::from(c)
    } else if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|c| !c.is_empty()) {
        PathBuf::from(x).join("failover-bot")
    } else {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/failover-bot")
    };
    cache.join("test-env.sh")
}

fn find_binaries() -> KubeBin {
    const HOWTO: &str = "run `eval \"$(scripts/test-env/provision)\"` (or use `./scripts/test`) \
                         to build/cache etcd, kube-apiserver and kubectl";
    let (dir, source) = match std::env::var("FAILOVER_BOT_KUBE_BIN") {
        Ok(d) if !d.is_empty() => (PathBuf::from(d), "$FAILOVER_BOT_KUBE_BIN".to_owned()),
        _ => {
            let env_file = cache_env_file();
            if !env_file.is_file() {
                panic!(
                    "kube_env: FAILOVER_BOT_KUBE_BIN is not set and {} does not exist: {HOWTO}",
                    env_file.display()
                );
            }
            // The file holds `export NAME=%q-quoted value` lines: let a shell unquote them.
            let out = Command::new("bash")
                .args([
                    "-c",
                    ". \"$1\" >/dev/null 2>&1; printf %s \"${FAILOVER_BOT_KUBE_BIN:-}\"",
                    "kube_env",
                ])
                .arg(&env_file)
                .env_remove("FAILOVER_BOT_KUBE_BIN")
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "kube_env: cannot run bash to read {}: {e}",
                        env_file.display()
                    )
                });
            let dir = String::from_utf8_lossy(&out.stdout).into_owned();
            if dir.is_empty() {
                panic!(
                    "kube_env: {} does not export FAILOVER_BOT_KUBE_BIN: {HOWTO}",
                    env_file.display()
                );
            }
            (PathBuf::from(dir), env_file.display().to_string())
        }
    };
    let bin = KubeBin {
        etcd: dir.join("etcd"),
        apiserver: dir.join("kube-apiserver"),
        kubectl: dir.join("kubectl"),
    };
    for p in [&bin.etcd, &bin.apiserver, &bin.kubectl] {
        if !is_executable(p) {
            panic!(
                "kube_env: {} (from {source}) is missing or not executable: {HOWTO}",
                p.display()
            );
        }
    }
    bin
}

/// The cached kubectl (for commands that need no API server, such as
/// `kubectl kustomize`); panics with how to get it, like [`KubeEnv::start`].
pub fn kubectl_binary() -> PathBuf {
    find_binaries().kubectl
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Free, distinct loopback ports (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Last `n` lines of a log file.
fn log_tail(path: &Path, n: usize) -> String {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// The log says "address already in use" after byte `from` (this attempt's part).
fn port_clash(log: &Path, from: u64) -> bool {
    std::fs::read(log)
        .map(|b| {
            String::from_utf8_lossy(b.get(from as usize..).unwrap_or_default())
                .contains("address already in use")
        })
        .unwrap_or(false)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut words = Vec::new();
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.write_u32(std::process::id());
        h.write_u64(i);
        words.push(format!("{:016x}", h.finish()));
    }
    words.concat()
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes.
pub async fn wait_for<F: Fn() -> Fut, Fut: Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    f: F,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("kube_env: timed out after {timeout:?} waiting for {what}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One kubeconfig (YAML) for the given clusters, all with the same bearer token.
fn kubeconfig_yaml(entries: &[(&KubeCluster, &str)], token: &str) -> String {
    // Every value is a plain scalar (DNS names, URLs, base64, tokens), but quote
    // them anyway so a token with YAML-special characters cannot break the file.
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut y = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for (c, ca) in entries {
        y += &format!(
            "- name: {}\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n",
            q(&c.name),
            q(&c.server),
            q(ca)
        );
    }
    y += &format!(
        "users:\n- name: user\n  user:\n    token: {}\ncontexts:\n",
        q(token)
    );
    for (c, _) in entries {
        y += &format!(
            "- name: {}\n  context:\n    cluster: {}\n    user: user\n",
            q(&c.context),
            q(&c.name)
        );
    }
    if let Some((c, _)) = entries.first() {
        y += &format!("current-context: {}\n", q(&c.context));
    }
    y
}

async fn client_from_yaml(yaml: &str, context: &str, timeout: Option<Duration>) -> kube::Client {
    let kc = Kubeconfig::from_yaml(yaml).expect("kube_env: generated kubeconfig does not parse");
    let mut config = kube::Config::from_custom_kubeconfig(
        kc,
        &KubeConfigOptions {
            context: Some(context.to_owned()),
            ..Default::default()
        },
    )
    .await
    .expect("kube_env: kube::Config from generated kubeconfig");
    if let Some(t) = timeout {
        config.connect_timeout = Some(t);
        config.read_timeout = Some(t);
        config.write_timeout = Some(t);
    }
    kube::Client::try_from(config).expect("kube_env: kube::Client")
}

/// `GET /readyz` answered `ok`.
async fn readyz(client: &kube::Client) -> bool {
    let Ok(req) = kube::core::Request::new("").get("readyz", &Default::default()) else {
        return false;
    };
    matches!(client.request_text(req).await, Ok(body) if body.trim() == "ok")
}

/// etcd's `/health` says `"health":"true"` (plain HTTP/1.0 over std TCP).
fn etcd_healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// The child processes and the temp dir; `Drop` kills and removes them.
struct Procs {
    etcd: Mutex<Option<Child>>,
    apiservers: Vec<Mutex<Option<Child>>>,
    watchdog: Mutex<Option<Child>>,
    dir: Option<tempfile::TempDir>,
}

impl Procs {
    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// Records a pid for the watchdog (used only if the test binary dies without `Drop`).
    fn register(&self, pid: u32) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("pids"))
            .expect("kube_env: write pids file");
        writeln!(f, "{pid}").expect("kube_env: write pids file");
    }

    fn all_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let mut add = |m: &Mutex<Option<Child>>| {
            if let Some(c) = lock(m).as_ref() {
                pids.push(c.id());
            }
        };
        add(&self.etcd);
        self.apiservers.iter().for_each(&mut add);
        add(&self.watchdog);
        pids
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill_child(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

impl Drop for Procs {
    fn drop(&mut self) {
        for m in self.apiservers.iter().chain([&self.etcd, &self.watchdog]) {
            if let Some(mut c) = lock(m).take() {
                kill_child(&mut c);
            }
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                eprintln!("kube_env: cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// Spawns `cmd` with stdin closed and stdout+stderr appended to `log`.
fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("kube_env: open {}: {e}", log.display()));
    let err = out.try_clone().expect("clone log file handle");
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("kube_env: cannot start {cmd:?}: {e}"))
}

pub struct KubeEnv {
    clusters: Vec<KubeCluster>,
    kubeconfig: PathBuf,
    bot_token: String,
    bin: KubeBin,
    etcd_url: String,
    /// `certificate-authority-data` of each cluster.
    ca_data: Vec<String>,
    started_in: Duration,
    procs: Procs,
}

impl KubeEnv {
    /// One etcd and `n` kube-apiservers (each with its own `--etcd-prefix` and
    /// `--cert-dir`, one tokens file), started in parallel and awaited until
    /// `/readyz`; then, in each cluster, namespace `operators`, the
    /// RoutingWeight CRD (Established) and ConfigMap `operators/cluster-identity`.
    /// Panics (never skips) if the binaries are missing or anything fails.
    pub async fn start(n: usize) -> KubeEnv {
        assert!(n >= 1, "kube_env: start(n) needs n >= 1");
        let t0 = Instant::now();
        let bin = find_binaries();
        let tmp = tempfile::Builder::new()
            .prefix("failover-bot-kube-env.")
            .tempdir()
            .expect("kube_env: create temp dir");
        let procs = Procs {
            etcd: Mutex::new(None),
            apiservers: (0..n).map(|_| Mutex::new(None)).collect(),
            watchdog: Mutex::new(None),
            dir: Some(tmp),
        };
        let dir = procs.dir().to_owned();

        // Watchdog: if this test process dies without running Drop (SIGKILL,
        // abort), kill every registered pid and remove the temp dir.
        let watchdog = Command::new("sh")
            .args([
                "-c",
                "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; \
                 [ -f \"$2/pids\" ] && kill -KILL $(cat \"$2/pids\") 2>/dev/null; \
                 rm -rf \"$2\"",
                "kube-env-watchdog",
            ])
            .arg(std::process::id().to_string())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kube_env: start watchdog sh");
        *lock(&procs.watchdog) = Some(watchdog);

        // Auth material shared by all API servers.
        let bot_token = format!("bot-token-{}", random_hex());
        std::fs::write(
            dir.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},admin,admin,system:masters\n{bot_token},{BOT_USER},failover-bot-uid\n"
            ),
        )
        .expect("kube_env: write tokens.csv");
        let keygen = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(dir.join("sa.key"))
            .output()
            .expect("kube_env: run openssl (needed for the service-account key)");
        assert!(
            keygen.status.success(),
            "kube_env: openssl genpkey failed: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
        let pubout = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(dir.join("sa.key"))
            .arg("-out")
            .arg(dir.join("sa.pub"))
            .output()
            .expect("kube_env: run openssl pkey");
        assert!(
            pubout.status.success(),
            "kube_env: openssl pkey -pubout failed: {}",
            String::from_utf8_lossy(&pubout.stderr)
        );

        let etcd_port = start_etcd(&bin, &procs, &dir).await;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");

        // All API servers at once.
        let ports = free_ports(n);
        let started: Vec<(KubeCluster, String)> = futures::future::join_all(
            (0..n).map(|i| start_apiserver(&bin, &procs, &dir, &etcd_url, i, ports[i], n)),
        )
        .await;
        let (clusters, ca_data): (Vec<KubeCluster>, Vec<String>) = started.into_iter().unzip();
        let ready_in = t0.elapsed();

        let entries: Vec<(&KubeCluster, &str)> = clusters
            .iter()
            .zip(ca_data.iter().map(String::as_str))
            .collect();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&entries, ADMIN_TOKEN))
            .expect("kube_env: write kubeconfig");

        let crd_yaml_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/target/crd/crd-routingweight.yaml");
        let crd_yaml = std::fs::read_to_string(&crd_yaml_path)
            .unwrap_or_else(|e| panic!("kube_env: read {}: {e}", crd_yaml_path.display()));
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&crd_yaml)
            .unwrap_or_else(|e| panic!("kube_env: parse {}: {e}", crd_yaml_path.display()));

        let mut env = KubeEnv {
            clusters,
            kubeconfig,
            bot_token,
            bin,
            etcd_url,
            ca_data,
            started_in: Duration::ZERO,
            procs,
        };
        futures::future::join_all((0..n).map(|i| env.bootstrap(i, &crd))).await;
        env.started_in = t0.elapsed();
        if std::env::var_os("KUBE_ENV_VERBOSE").is_some() {
            eprintln!(
                "kube_env: {n} API server(s) ready after {ready_in:.1?}, bootstrapped after {:.1?} ({})",
                env.started_in,
                env.dir().display()
            );
        }
        env
    }

    /// Namespace, CRD (Established) and identity ConfigMap in cluster `index`.
    async fn bootstrap(&self, index: usize, crd: &CustomResourceDefinition) {
        let cluster = &self.clusters[index];
        let client = self.client(index).await;
        let ctx = |what: &str| format!("kube_env: {} ({}): {what}", cluster.label, cluster.server);

        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": NAMESPACE }
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| self.fail(index, &ctx(&format!("create namespace: {e}"))));

        let crds = Api::<CustomResourceDefinition>::all(client.clone());
        crds.create(&PostParams::default(), crd)
            .await
            .unwrap_or_else(|e| self.fail(index, &ctx(&format!("create CRD: {e}"))));

        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": { "name": IDENTITY_CONFIGMAP, "namespace": NAMESPACE },
            "data": { "clusterName": cluster.name },
        }))
        .unwrap();
        Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_or_else(|e| self.fail(index, &ctx(&format!("create identity ConfigMap: {e}"))));

        let established = wait_for("CRD Established", Duration::from_secs(60), || async {
            let Ok(c) = crds.get(CRD_NAME).await else {
                return false;
            };
            c.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
        .await;
        if !established {
            self.fail(index, &ctx("CRD not Established after 60s"));
        }
    }

    fn fail(&self, index: usize, msg: &str) -> ! {
        panic!(
            "{msg}\n---- last {LOG_TAIL_LINES} lines of {} ----\n{}",
            self.apiserver_log(index).display(),
            log_tail(&self.apiserver_log(index), LOG_TAIL_LINES)
        )
    }

    pub fn clusters(&self) -> &[KubeCluster] {
        &self.clusters
    }

    /// Kubeconfig with one context per cluster (`ctx-a`, ...), admin token.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The same contexts, servers and CAs with another bearer token
    /// (written to the temp dir; one file per token).
    pub fn kubeconfig_for(&self, token: &str) -> PathBuf {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        token.hash(&mut h);
        let path = self.dir().join(format!("kubeconfig-{:016x}", h.finish()));
        std::fs::write(&path, self.kubeconfig_yaml_for(token)).expect("kube_env: write kubeconfig");
        path
    }

    fn kubeconfig_yaml_for(&self, token: &str) -> String {
        let entries: Vec<(&KubeCluster, &str)> = self
            .clusters
            .iter()
            .zip(self.ca_data.iter().map(String::as_str))
            .collect();
        kubeconfig_yaml(&entries, token)
    }

    /// Token of [`BOT_USER`] (no groups, no RBAC grants by default).
    pub fn bot_token(&self) -> &str {
        &self.bot_token
    }

    /// Admin client for cluster `index`, built from the kubeconfig context.
    pub async fn client(&self, index: usize) -> kube::Client {
        self.client_for(index, ADMIN_TOKEN).await
    }

    /// Client for cluster `index` with another bearer token (e.g. [`Self::bot_token`]).
    pub async fn client_for(&self, index: usize, token: &str) -> kube::Client {
        client_from_yaml(
            &self.kubeconfig_yaml_for(token),
            &self.clusters[index].context,
            None,
        )
        .await
    }

    /// Admin client whose connect/read/write timeouts are all `timeout`.
    pub async fn client_with_timeout(&self, index: usize, timeout: Duration) -> kube::Client {
        client_from_yaml(
            &self.kubeconfig_yaml_for(ADMIN_TOKEN),
            &self.clusters[index].context,
            Some(timeout),
        )
        .await
    }

    /// Real kubectl against cluster `index` (admin), `--request-timeout=20s`.
    pub fn kubectl(&self, index: usize, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_with(&self.kubeconfig, index, args, stdin)
    }

    /// Real kubectl against cluster `index` with the given kubeconfig
    /// (e.g. from [`Self::kubeconfig_for`]).
    pub fn kubectl_with(
        &self,
        kubeconfig: &Path,
        index: usize,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        let mut cmd = Command::new(&self.bin.kubectl);
        cmd.env_remove("KUBECONFIG")
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--context={}", self.clusters[index].context))
            .arg(format!(
                "--cache-dir={}",
                self.dir().join("kube-cache").display()
            ))
            .arg("--request-timeout=20s")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("kube_env: cannot run {}: {e}", self.bin.kubectl.display()));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            // Write from a thread so a kubectl that answers before reading all of
            // stdin cannot deadlock us on a full pipe.
            let input = input.to_owned();
            let writer = std::thread::spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            });
            let out = child
                .wait_with_output()
                .expect("kube_env: wait for kubectl");
            let _ = writer.join();
            out
        } else {
            child
                .wait_with_output()
                .expect("kube_env: wait for kubectl")
        }
    }

    /// `kubectl apply -f -` (admin); panics with kubectl's stderr on failure.
    pub fn apply(&self, index: usize, yaml: &str) {
        let out = self.kubectl(index, &["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kube_env: kubectl apply on cluster {} failed ({}):\n{}\n--- input ---\n{yaml}",
            self.clusters[index].label,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILLs cluster `index`'s kube-apiserver (the cluster "dies"); the
    /// other clusters and etcd keep running.
    pub fn kill_apiserver(&self, index: usize) {
        if let Some(mut c) = lock(&self.procs.apiservers[index]).take() {
            kill_child(&mut c);
        }
    }

    /// Overwrites `operators/cluster-identity` `data.clusterName` in cluster `index`.
    pub fn set_identity(&self, index: usize, cluster_name: &str) {
        let patch = serde_json::json!({ "data": { "clusterName": cluster_name } }).to_string();
        let out = self.kubectl(
            index,
            &[
                "-n",
                NAMESPACE,
                "patch",
                "configmap",
                IDENTITY_CONFIGMAP,
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        );
        assert!(
            out.status.success(),
            "kube_env: set_identity on cluster {} failed: {}",
            self.clusters[index].label,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The temp dir holding logs, certs, etcd data and kubeconfigs.
    pub fn dir(&self) -> &Path {
        self.procs.dir()
    }

    /// Log (stdout+stderr) of cluster `index`'s kube-apiserver.
    pub fn apiserver_log(&self, index: usize) -> PathBuf {
        self.dir()
            .join(format!("apiserver-{}.log", self.clusters[index].label))
    }

    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// Wall time `start` took (processes + bootstrap).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// PIDs of every live child (etcd, API servers, watchdog).
    pub fn pids(&self) -> Vec<u32> {
        self.procs.all_pids()
    }

    /// PID of cluster `index`'s kube-apiserver, if it runs.
    pub fn apiserver_pid(&self, index: usize) -> Option<u32> {
        lock(&self.procs.apiservers[index]).as_ref().map(Child::id)
    }

    /// Resident set size (kB) of cluster `index`'s kube-apiserver.
    pub fn apiserver_rss_kb(&self, index: usize) -> Option<u64> {
        self.apiserver_pid(index).and_then(rss_kb)
    }

    /// Resident set size (kB) of etcd.
    pub fn etcd_rss_kb(&self) -> Option<u64> {
        lock(&self.procs.etcd)
            .as_ref()
            .map(Child::id)
            .and_then(rss_kb)
    }
}

/// VmRSS of a process, in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn start_etcd(bin: &KubeBin, procs: &Procs, dir: &Path) -> u16 {
    let log = dir.join("etcd.log");
    for attempt in 1..=START_ATTEMPTS {
        let ports = free_ports(2);
        let (client, peer) = (ports[0], ports[1]);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_from = file_len(&log);
        let child = spawn_logged(
            Command::new(&bin.etcd)
                .arg("--name=kube-env")
                .arg(format!("--data-dir={}", dir.join("etcd-data").display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=kube-env={peer_url}")),
            &log,
        );
        procs.register(child.id());
        *lock(&procs.etcd) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let exited = lock(&procs.etcd)
                .as_mut()
                .map(|c| c.try_wait().ok().flatten().is_some())
                .unwrap_or(true);
            if exited {
                if port_clash(&log, log_from) && attempt < START_ATTEMPTS {
                    eprintln!("kube_env: etcd port clash, retrying (attempt {attempt})");
                    let _ = std::fs::remove_dir_all(dir.join("etcd-data"));
                    break;
                }
                panic!(
                    "kube_env: etcd exited early\n---- last {LOG_TAIL_LINES} lines of {} ----\n{}",
                    log.display(),
                    log_tail(&log, LOG_TAIL_LINES)
                );
            }
            if etcd_healthy(client) {
                return client;
            }
            if Instant::now() >= deadline {
                panic!(
                    "kube_env: etcd not healthy after 30s\n---- last {LOG_TAIL_LINES} lines of {} ----\n{}",
                    log.display(),
                    log_tail(&log, LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    unreachable!("the last attempt panics")
}

/// Extra kube-apiserver flags from `$KUBE_ENV_APISERVER_ARGS` (whitespace-separated),
/// for experiments such as `--enable-priority-and-fairness=false`.
fn extra_apiserver_args() -> Vec<String> {
    std::env::var("KUBE_ENV_APISERVER_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Starts cluster `index`'s kube-apiserver and waits for `/readyz`; returns
/// the cluster and its `certificate-authority-data`.
async fn start_apiserver(
    bin: &KubeBin,
    procs: &Procs,
    dir: &Path,
    etcd_url: &str,
    index: usize,
    first_port: u16,
    n: usize,
) -> (KubeCluster, String) {
    let label = cluster_label(index);
    let cert_dir = dir.join(format!("certs-{label}"));
    std::fs::create_dir_all(&cert_dir).expect("kube_env: create cert dir");
    let log = dir.join(format!("apiserver-{label}.log"));
    // On 2 cores one API server needs ~4 s; many at once share the CPU.
    let timeout = Duration::from_secs(90 + 8 * n as u64);
    let fail = |msg: String| -> ! {
        panic!(
            "kube_env: kube-apiserver {label}: {msg}\n---- last {LOG_TAIL_LINES} lines of {} ----\n{}",
            log.display(),
            log_tail(&log, LOG_TAIL_LINES)
        )
    };
    let mut port = first_port;
    for attempt in 1..=START_ATTEMPTS {
        if attempt > 1 {
            port = free_ports(1)[0];
        }
        let log_from = file_len(&log);
        let child = spawn_logged(
            Command::new(&bin.apiserver)
                .arg(format!("--etcd-servers={etcd_url}"))
                .arg(format!("--etcd-prefix=/kube-env/{label}"))
                .arg(format!("--secure-port={port}"))
                .arg(format!("--cert-dir={}", cert_dir.display()))
                .arg(format!(
                    "--token-auth-file={}",
                    dir.join("tokens.csv").display()
                ))
                .arg(format!(
                    "--service-account-key-file={}",
                    dir.join("sa.pub").display()
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    dir.join("sa.key").display()
                ))
                .args(APISERVER_FLAGS)
                .args(extra_apiserver_args()),
            &log,
        );
        procs.register(child.id());
        *lock(&procs.apiservers[index]) = Some(child);
        let exited = || {
            lock(&procs.apiservers[index])
                .as_mut()
                .map(|c| c.try_wait().ok().flatten().is_some())
                .unwrap_or(true)
        };
        let deadline = Instant::now() + timeout;
        let cluster = KubeCluster {
            name: format!("k8s-{label}.test.example.com"),
            label: label.clone(),
            context: format!("ctx-{label}"),
            server: format!("https://127.0.0.1:{port}"),
        };
        // The serving cert is written (cert first, then key) before serving.
        let crt = cert_dir.join("apiserver.crt");
        let mut client = None;
        let mut ca = String::new();
        loop {
            if exited() {
                if port_clash(&log, log_from) && attempt < START_ATTEMPTS {
                    eprintln!("kube_env: kube-apiserver {label}: port clash on {port}, retrying");
                    break;
                }
                fail(format!("exited early (attempt {attempt}, port {port})"));
            }
            if client.is_none() && cert_dir.join("apiserver.key").exists() {
                let pem = std::fs::read(&crt)
                    .unwrap_or_else(|e| fail(format!("read {}: {e}", crt.display())));
                ca = base64(&pem);
                let yaml = kubeconfig_yaml(&[(&cluster, &ca)], ADMIN_TOKEN);
                client = Some(
                    client_from_yaml(&yaml, &cluster.context, Some(Duration::from_secs(5))).await,
                );
            }
            if let Some(c) = &client {
                if readyz(c).await {
                    return (cluster, ca);
                }
            }
            if Instant::now() >= deadline {
                fail(format!("not ready after {timeout:?} (port {port})"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unreachable!("the last attempt panics")
}

/// The annotation prefix Lunar uses (and the config's default).
pub const ANNOTATION_PREFIX: &str = "external-dns.alpha.kubernetes.io/";

/// A RoutingWeight as Lunar publishes them, for `apply`.
pub fn routing_weight_yaml(cluster: &str, weight: u8) -> String {
    let p = ANNOTATION_PREFIX;
    format!(
        "apiVersion: routing.lunar.tech/v1alpha1\nkind: RoutingWeight\nmetadata:\n  name: {cluster}\n  namespace: operators\nspec:\n  clusterName: {cluster}\n  dryRun: false\n  annotations:\n  - key: {p}aws-weight\n    value: \"{weight}\"\n  - key: {p}set-identifier\n    value: {cluster}\n"
    )
}

/// What Lunar's cluster-routing controller writes onto every controlled
/// Ingress and Service: a merge patch with the RoutingWeight's annotations,
/// copied verbatim.
pub fn copied_annotations_patch(rw: &RoutingWeight) -> serde_json::Value {
    let annotations: serde_json::Map<String, serde_json::Value> = rw
        .spec
        .annotations
        .iter()
        .map(|a| (a.key.clone(), a.value.clone().into()))
        .collect();
    serde_json::json!({"metadata": {"annotations": annotations}})
}

/// Namespace `web` and the Ingress `web/api`, controlled (annotated
/// `routing.lunar.tech/controlled: "true"`, plus `extra_annotations`, YAML
/// lines indented by four spaces), for `apply`.
pub fn controlled_ingress_yaml(extra_annotations: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: web
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: api
  namespace: web
  annotations:
    routing.lunar.tech/controlled: "true"{extra_annotations}
spec:
  defaultBackend:
    service:
      name: api
      port:
        number: 80
"#
    )
}

/// [`controlled_ingress_yaml`] and the Service `web/api` it routes to,
/// controlled the same way.
pub fn controlled_objects_yaml(extra_annotations: &str) -> String {
    format!(
        r#"{}---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: web
  annotations:
    routing.lunar.tech/controlled: "true"{extra_annotations}
spec:
  ports:
  - port: 80
"#,
        controlled_ingress_yaml(extra_annotations)
    )
}

impl KubeEnv {
    /// A bot config with one environment `dev` holding every cluster of this
    /// environment; `routing` and `extra_env` are spliced in as YAML lines.
    pub fn config_yaml(&self, routing: &str, extra_env: &str) -> String {
        let clusters: String = self
            .clusters()
            .iter()
            .map(|c| format!("      - {{name: {}, context: {}}}\n", c.name, c.context))
            .collect();
        format!(
            "slack:\n  channels: [C1]\napproval:\n  approvers: [alice, bob]\nrouting:\n{routing}environments:\n  dev:\n    channel: C1\n    clusters:\n{clusters}{extra_env}"
        )
    }
}

impl KubeEnv {
    /// The PEM certificate chain and key cluster `index`'s API server
    /// serves with (self-signed by its own CA, which is also in the chain:
    /// the kubeconfig's `certificate-authority-data`). A TLS proxy that
    /// serves these passes the bot's CA and SAN checks on 127.0.0.1.
    pub fn serving_cert(&self, index: usize) -> (Vec<u8>, Vec<u8>) {
        let dir = self
            .dir()
            .join(format!("certs-{}", self.clusters[index].label));
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .unwrap_or_else(|e| panic!("kube_env: read {}/{name}: {e}", dir.display()))
        };
        (read("apiserver.crt"), read("apiserver.key"))
    }

    /// A kubeconfig like [`Self::kubeconfig_for`], but cluster `i`'s
    /// `server:` is `servers[i]` (e.g. a proxy in front of it).
    pub fn kubeconfig_via(&self, token: &str, servers: &[String]) -> PathBuf {
        assert_eq!(servers.len(), self.clusters.len(), "one server per cluster");
        let moved: Vec<KubeCluster> = self
            .clusters
            .iter()
            .zip(servers)
            .map(|(c, server)| KubeCluster {
                server: server.clone(),
                ..c.clone()
            })
            .collect();
        let entries: Vec<(&KubeCluster, &str)> = moved
            .iter()
            .zip(self.ca_data.iter().map(String::as_str))
            .collect();
        let path = self.dir().join(format!(
            "kubeconfig-via-{}",
            servers
                .iter()
                .map(|s| s.rsplit(':').next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("-")
        ));
        std::fs::write(&path, kubeconfig_yaml(&entries, token))
            .expect("kube_env: write kubeconfig");
        path
    }
}
