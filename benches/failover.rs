//! Issue target: a 3-step failover (`to c steps 10,50,100`) across 3 real
//! kube-apiservers, mode `routing-weight` with Route53 verification on moto,
//! approvals given the moment each plan is posted: the bot's own time vs a
//! shell baseline doing the same steps the way Lunar's scripted tasks did
//! (`benches/baseline-failover.sh`: kubectl per cluster, aws CLI for
//! Route53) — target ≥ 10× faster.
//!
//! Both run on the same API servers and the same moto, started once. The
//! bench plays external-dns (RoutingWeight weights → Route53) and keeps its
//! time out of both figures: for the bot it writes a step's weights to
//! Route53 before approving the step, so verification passes at its first
//! look; for the shell it runs as the script's `$EXTERNAL_DNS` hook, which the
//! script times and reports for subtraction.
//!
//! Needs `scripts/test-env/provision` (API servers, kubectl, moto) and the
//! aws CLI venv `scripts/bench` creates. Does nothing unless run with
//! `--bench`, because `cargo test --all-targets` runs benches as tests.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_route53::types::{ChangeAction, ResourceRecord, ResourceRecordSet, RrType};
use kube::Api;
use serde_json::json;

use failover_bot::backend::dns::{cluster_zones, DnsVerified};
use failover_bot::backend::kube::crd::RoutingWeight;
use failover_bot::backend::kube::KubeBackend;
use failover_bot::backend::route53::Route53;
use failover_bot::backend::RoutingBackend;
use failover_bot::config::Config;
use support::kube_env::{routing_weight_yaml, KubeEnv, ANNOTATION_PREFIX as PREFIX};
use support::moto::{self, Moto};
use support::TestBot;

/// Measured rounds per side (after one warm-up round each).
const ROUNDS: usize = 7;
const COMMAND: &str = "to c steps 10,50,100";
/// The weights of clusters a, b, c before the failover and after each step.
const START: [u8; 3] = [100, 0, 0];
const STEPS: [[u8; 3]; 3] = [[90, 0, 10], [50, 0, 50], [0, 0, 100]];
const RECORDS: [&str; 2] = ["api.dev.example.com.", "www.dev.example.com."];
const HOWTO_AWS: &str = "run scripts/bench (it installs the aws CLI into \
                         ~/.cache/failover-bot/awscli-venv) or set FAILOVER_BOT_AWS_CLI";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    // Check the tools before spending seconds on servers.
    let tools = Tools::find();
    let scene = Scene::start().await;

    let backend = scene.bot_backend().await;
    bot_round(&scene, &backend).await; // warm connections and caches
    let mut bot = Vec::new();
    for _ in 0..ROUNDS {
        scene.reset().await;
        bot.push(bot_round(&scene, &backend).await);
    }

    let baseline = Baseline::prepare(&scene, &tools);
    scene.reset().await;
    baseline.round(&scene); // warm kubectl's discovery cache, as a user's would be
    let mut shell = Vec::new();
    for _ in 0..ROUNDS {
        scene.reset().await;
        shell.push(baseline.round(&scene));
        assert_eq!(
            scene.weights().await,
            STEPS[2].map(Some),
            "after the script"
        );
    }
    report(bot, shell);
}

fn report(bot: Vec<BotRound>, shell: Vec<Duration>) {
    let total = median(bot.iter().map(|r| r.total).collect());
    let command = median(bot.iter().map(|r| r.command).collect());
    let steps: Vec<String> = (0..STEPS.len())
        .map(|i| format!("{:.1?}", median(bot.iter().map(|r| r.steps[i]).collect())))
        .collect();
    let shell = median(shell);
    println!(
        "failover: `{COMMAND}`, 3 real API servers, routing-weight + Route53 verification on moto, instant approvals, median of {ROUNDS} rounds"
    );
    println!(
        "  bot:   {total:>9.1?} command → operation complete (command {command:.1?}; approvals → step verified {})",
        steps.join(", ")
    );
    println!("  shell: {shell:>9.1?} benches/baseline-failover.sh (6 kubectl + 1 aws per step)");
    let ratio = shell.as_secs_f64() / total.as_secs_f64();
    println!(
        "  ratio: {ratio:.1}× faster (target ≥ 10×: {})",
        if ratio >= 10.0 { "met" } else { "NOT met" }
    );
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// kubectl and the aws CLI for the shell baseline.
struct Tools {
    kube_bin: PathBuf,
    aws_bin: PathBuf,
}

impl Tools {
    fn find() -> Tools {
        let kube_bin = std::env::var_os("FAILOVER_BOT_KUBE_BIN")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .expect("FAILOVER_BOT_KUBE_BIN is not set: run `eval \"$(scripts/test-env/provision)\"` or scripts/bench");
        let aws = std::env::var_os("FAILOVER_BOT_AWS_CLI")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(default_aws_cli);
        assert!(
            aws.is_file(),
            "no aws CLI at {}: {HOWTO_AWS}",
            aws.display()
        );
        assert!(
            kube_bin.join("kubectl").is_file(),
            "no kubectl in {}: run scripts/test-env/provision",
            kube_bin.display()
        );
        Tools {
            kube_bin,
            aws_bin: aws.parent().unwrap_or(Path::new(".")).to_owned(),
        }
    }

    /// kubectl and aws first on PATH, so the script finds exactly these.
    fn path(&self) -> std::ffi::OsString {
        let rest = std::env::var_os("PATH").unwrap_or_default();
        let dirs = [self.kube_bin.clone(), self.aws_bin.clone()]
            .into_iter()
            .chain(std::env::split_paths(&rest));
        std::env::join_paths(dirs).expect("PATH entries")
    }
}

fn default_aws_cli() -> PathBuf {
    let cache = std::env::var_os("FAILOVER_BOT_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect(HOWTO_AWS)).join(".cache")
                });
            base.join("failover-bot")
        });
    cache.join("awscli-venv/bin/aws")
}

/// The API servers, moto and a zone with a weighted A record and its TXT
/// twin per cluster and record name.
struct Scene {
    env: KubeEnv,
    moto: Moto,
    admin: Route53,
    zone: String,
    names: Vec<String>,
}

impl Scene {
    async fn start() -> Scene {
        let env = KubeEnv::start(3).await;
        let moto = Moto::start().await;
        let admin = Route53::for_endpoint(&moto.endpoint()).await;
        let zone = support::moto::create_zone(admin.client(), "dev.example.com.").await;
        let names = env.clusters().iter().map(|c| c.name.clone()).collect();
        let scene = Scene {
            env,
            moto,
            admin,
            zone,
            names,
        };
        scene.reset().await;
        scene
    }

    fn config(&self) -> Config {
        let routing = "  mode: routing-weight\n  verify_timeout: 3s\n";
        let dns = format!(
            "    route53:\n      zone_id: {}\n      records: [{}]\n",
            self.zone,
            RECORDS.join(", ")
        );
        Config::from_yaml(&self.env.config_yaml(routing, &dns)).expect("bench config")
    }

    /// What `failover-bot serve` builds for this config: the Kubernetes
    /// backend wrapped in Route53 verification.
    async fn bot_backend(&self) -> Arc<dyn RoutingBackend> {
        let config = self.config();
        let kube: Arc<dyn RoutingBackend> = Arc::new(
            KubeBackend::connect(&config, Some(self.env.kubeconfig()))
                .await
                .expect("clients for every context"),
        );
        let route53 = Arc::new(Route53::for_endpoint(&self.moto.endpoint()).await);
        Arc::new(DnsVerified::new(
            kube,
            route53,
            Duration::from_secs(3),
            cluster_zones(&config),
        ))
    }

    /// Every cluster's RoutingWeight weight, read back through the API.
    async fn weights(&self) -> Vec<Option<u8>> {
        let mut weights = Vec::new();
        for i in 0..self.names.len() {
            let api: Api<RoutingWeight> = Api::namespaced(self.env.client(i).await, "operators");
            let rw = api.get(&self.names[i]).await.expect("RoutingWeight");
            weights.push(rw.spec.weight(PREFIX));
        }
        weights
    }

    /// Back to the weights before the failover, in the clusters and in Route53.
    async fn reset(&self) {
        for (i, name) in self.names.iter().enumerate() {
            self.env.apply(i, &routing_weight_yaml(name, START[i]));
        }
        self.external_dns(&START).await;
    }

    fn record_sets(&self, weights: &[u8; 3]) -> Vec<ResourceRecordSet> {
        let mut sets = Vec::new();
        for record in RECORDS {
            for (i, (name, weight)) in self.names.iter().zip(weights).enumerate() {
                let a = format!("10.0.0.{}", i + 1);
                let txt = "\"heritage=external-dns,external-dns/owner=default\"".to_owned();
                sets.push(weighted(record, RrType::A, name, *weight, &a));
                sets.push(weighted(record, RrType::Txt, name, *weight, &txt));
            }
        }
        sets
    }

    /// external-dns's work: Route53 serves `weights`.
    async fn external_dns(&self, weights: &[u8; 3]) {
        let sets = self.record_sets(weights);
        moto::change_record_sets(&self.admin, &self.zone, ChangeAction::Upsert, sets).await;
    }
}

fn weighted(name: &str, kind: RrType, set_id: &str, weight: u8, value: &str) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(name)
        .r#type(kind)
        .set_identifier(set_id)
        .weight(i64::from(weight))
        .ttl(60)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap()
}

struct BotRound {
    total: Duration,
    command: Duration,
    steps: Vec<Duration>,
}

/// One failover through the real engine, with a fresh journal (a new
/// operation #1) on the shared backend: only the engine's calls are timed.
async fn bot_round(scene: &Scene, backend: &Arc<dyn RoutingBackend>) -> BotRound {
    let bot = TestBot::new(scene.config(), backend.clone());
    let started = Instant::now();
    bot.cmd("alice", COMMAND).await;
    let command = started.elapsed();
    let mut steps = Vec::new();
    for (i, weights) in STEPS.iter().enumerate() {
        scene.external_dns(weights).await;
        let started = Instant::now();
        bot.approve("bob").await;
        steps.push(started.elapsed());
        let done = format!("Step {}/{} applied and verified", i + 1, STEPS.len());
        assert!(bot.said().contains(&done), "{}", bot.said());
    }
    assert!(
        bot.said().contains("Operation #1 complete"),
        "{}",
        bot.said()
    );
    assert_eq!(scene.weights().await, STEPS[2].map(Some));
    BotRound {
        total: command + steps.iter().sum::<Duration>(),
        command,
        steps,
    }
}

/// benches/baseline-failover.sh with its inputs: a temp dir holding the
/// external-dns hook and one Route53 change batch per step.
struct Baseline {
    dir: tempfile::TempDir,
    path: std::ffi::OsString,
}

impl Baseline {
    fn prepare(scene: &Scene, tools: &Tools) -> Baseline {
        let dir = tempfile::tempdir().unwrap();
        for (i, weights) in STEPS.iter().enumerate() {
            let batch = change_batch_json(&scene.names, weights);
            std::fs::write(dir.path().join(format!("step-{}.json", i + 1)), batch).unwrap();
        }
        let hook = format!(
            "#!/bin/sh\n# external-dns, played by the bench: step N's weights into Route53.\nexec aws route53 change-resource-record-sets --hosted-zone-id {} --endpoint-url {} --change-batch \"file://{}/step-$1.json\" >/dev/null\n",
            scene.zone,
            scene.moto.endpoint(),
            dir.path().display()
        );
        let hook_path = dir.path().join("external-dns.sh");
        std::fs::write(&hook_path, hook).unwrap();
        let status = Command::new("chmod")
            .arg("+x")
            .arg(&hook_path)
            .status()
            .unwrap();
        assert!(status.success());
        Baseline {
            dir,
            path: tools.path(),
        }
    }

    /// One run of the script: its wall time minus the hook's.
    fn round(&self, scene: &Scene) -> Duration {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/baseline-failover.sh");
        let clusters: Vec<String> = scene
            .env
            .clusters()
            .iter()
            .map(|c| format!("{}={}", c.context, c.name))
            .collect();
        let steps = STEPS.map(|w| w.map(|x| x.to_string()).join(","));
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(&script)
            .args(&steps)
            .env("PATH", &self.path)
            .env("KUBECONFIG", scene.env.kubeconfig())
            .env("KUBE_CACHE_DIR", self.dir.path().join("kube-cache"))
            .env("CLUSTERS", clusters.join(" "))
            .env("ZONE_ID", &scene.zone)
            .env("ROUTE53_ENDPOINT", scene.moto.endpoint())
            .env("EXTERNAL_DNS", self.dir.path().join("external-dns.sh"))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("bash runs");
        let wall = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "baseline failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let hook_us: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("external_dns_us="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no external_dns_us= line in:\n{stdout}"));
        wall.saturating_sub(Duration::from_micros(hook_us))
    }
}

/// A Route53 change batch (aws CLI JSON) of UPSERTs setting `weights` on
/// every record set, as external-dns would.
fn change_batch_json(names: &[String], weights: &[u8; 3]) -> String {
    let mut changes = Vec::new();
    for record in RECORDS {
        for (i, (name, weight)) in names.iter().zip(weights).enumerate() {
            for (kind, value) in [
                ("A", format!("10.0.0.{}", i + 1)),
                (
                    "TXT",
                    "\"heritage=external-dns,external-dns/owner=default\"".to_owned(),
                ),
            ] {
                changes.push(json!({
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": record, "Type": kind, "SetIdentifier": name,
                        "Weight": weight, "TTL": 60,
                        "ResourceRecords": [{ "Value": value }],
                    },
                }));
            }
        }
    }
    json!({ "Changes": changes }).to_string()
}
