//! Crash safety of the real process: `failover-bot serve` runs a 3-step
//! failover against three real kube-apiservers and the wire-level fake
//! Slack, is SIGKILLed at a seeded random point, restarted on the same
//! journal, and driven to the end. Every run checks that:
//! 1. no cluster ever held a weight outside the before/after values of the
//!    plan's steps (every RoutingWeight change is watched, not sampled);
//! 2. the environment was never all zero;
//! 3. `failover-bot audit verify` accepts the journal, after the kill and
//!    at the end;
//! 4. the channel was told what happened: a restart in the middle of an
//!    operation is announced, every applied step's result and the
//!    operation's end are posted once, and no plan message is left
//!    claiming to await approval or to be applying;
//! 5. the operation completed at the last step's weights (a plan pending
//!    before the kill was approved on the same message after it), or was
//!    reported stopped with every cluster's real weight.
//!
//! Seeds: `FAILOVER_BOT_CRASH_SEEDS` (`1..50`, inclusive, or `7,9,13`, or
//! both mixed); by default a small fixed set that hits different phases.
//! `scripts/crash-harness` runs many seeds and prints a summary.
//!
//! All three API servers share one etcd, so every resourceVersion is one
//! global revision: sorting the watched changes by it gives the exact order
//! in which the clusters passed through their states.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::Client;

use failover_bot::backend::kube::crd::{self, RoutingWeight};
use failover_bot::chat::{Said, RESENT_NOTE};
use failover_bot::operation::journal::{Entry, Record};
use failover_bot::operation::ledger::Ledger;
use failover_bot::operation::{OperationOutcome, Phase};
use failover_bot::plan::{self, Percent, Weights};
use support::fake_slack::{FakeSlack, Posted};
use support::kube_env::{
    controlled_ingress_yaml, KubeEnv, ANNOTATION_PREFIX, IDENTITY_CONFIGMAP, NAMESPACE,
};
use support::serve_proc::{Clusters, ServeProc, Transport};

const ENV: &str = "dev";
const INITIAL: [u8; 3] = [60, 40, 0];
const STEPS: [u32; 3] = [10, 50, 100];
const COMMAND: &str = "to c steps 10,50,100";
const REQUESTER: &str = "alice";
const APPROVER: &str = "bob";
/// How long the Lunar controller stand-in takes to carry a RoutingWeight to
/// the Ingress: what the bot's verification waits for.
const LUNAR_DELAY: Duration = Duration::from_millis(100);
/// Generous: a run takes a few seconds; a stalled one must not hang CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const RECORD_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(5);
/// Chosen (from `scripts/crash-harness` runs) to hit different phases.
const DEFAULT_SEEDS: &[u64] = &[1, 2, 3, 4, 5, 6];

// ------------------------------------------------------------ randomness

/// SplitMix64: tiny, seedable, and good enough to pick kill points.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A delay in `[0, max)`, in microseconds.
    fn delay(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros().max(1) as u64))
    }
}

/// `FAILOVER_BOT_CRASH_SEEDS`: `A..B` (inclusive) and single seeds, comma-separated.
fn seeds() -> Vec<u64> {
    let Ok(spec) = std::env::var("FAILOVER_BOT_CRASH_SEEDS") else {
        return DEFAULT_SEEDS.to_vec();
    };
    let bad = |part: &str| -> ! {
        panic!(
            "FAILOVER_BOT_CRASH_SEEDS: `{part}` is not a seed or A..B (e.g. `1..50` or `7,9,13`)"
        )
    };
    let number = |text: &str, part: &str| text.trim().parse::<u64>().unwrap_or_else(|_| bad(part));
    let mut seeds = Vec::new();
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once("..") {
            Some((from, to)) => seeds.extend(number(from, part)..=number(to, part)),
            None => seeds.push(number(part, part)),
        }
    }
    assert!(!seeds.is_empty(), "FAILOVER_BOT_CRASH_SEEDS names no seed");
    seeds
}

// ------------------------------------------------------------ kill points

/// A journal record the kill can wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Started,
    Proposed,
    StepStarted,
    Changed,
    StepFinished,
    Finished,
}

/// What the kill is timed from.
#[derive(Clone, Copy, Debug)]
enum Anchor {
    /// The slash command was acknowledged.
    CommandSent,
    /// Step N's approval was acknowledged.
    ApprovalSent(usize),
    /// The first record of this kind for step N is in the journal.
    Record(Kind, usize),
}

#[derive(Clone, Copy, Debug)]
struct KillPoint {
    /// The phase aimed at; where the kill really landed is read from the
    /// journal afterwards.
    aim: &'static str,
    anchor: Anchor,
    delay: Duration,
    /// While the bot is down mid-step, someone else sets a cluster to a
    /// weight no plan has: the bot must stop and report every weight.
    meddle: bool,
}

impl KillPoint {
    fn pick(rng: &mut SplitMix64) -> KillPoint {
        let step = 1 + rng.below(3) as usize;
        let ms = Duration::from_millis;
        // The ranges cover each phase as measured on a 2-core machine:
        // read and gates ~30 ms, a plan post ~10 ms, writes ~10 ms,
        // verification about LUNAR_DELAY; a step's result goes out within
        // a millisecond of its record, the next plan within ~30 ms.
        let (aim, anchor, max) = match rng.below(9) {
            0 => ("before the operation", Anchor::CommandSent, ms(40)),
            1 => ("before the plan", Anchor::Record(Kind::Started, 0), ms(15)),
            2 => ("pending", Anchor::Record(Kind::Proposed, step), ms(300)),
            3 => ("after approval", Anchor::ApprovalSent(step), ms(8)),
            4 => ("writes", Anchor::Record(Kind::StepStarted, step), ms(12)),
            5 => ("verification", Anchor::Record(Kind::Changed, step), ms(120)),
            6 => (
                "step result",
                Anchor::Record(Kind::StepFinished, step),
                ms(2),
            ),
            7 => (
                "between steps",
                Anchor::Record(Kind::StepFinished, step),
                ms(30),
            ),
            _ => ("after finish", Anchor::Record(Kind::Finished, 0), ms(3)),
        };
        let delay = rng.delay(max);
        let mid_step = matches!(aim, "writes" | "verification");
        KillPoint {
            aim,
            anchor,
            delay,
            meddle: mid_step && rng.below(2) == 0,
        }
    }

    /// Steps approved before the kill is armed (nothing is sent after).
    fn approvals_first(&self) -> usize {
        match self.anchor {
            Anchor::CommandSent | Anchor::Record(Kind::Started, _) => 0,
            Anchor::ApprovalSent(step) => step,
            Anchor::Record(Kind::Proposed, step) => step - 1,
            Anchor::Record(Kind::Finished, _) => STEPS.len(),
            Anchor::Record(_, step) => step,
        }
    }

    fn describe(&self) -> String {
        let anchor = match self.anchor {
            Anchor::CommandSent => "command sent".to_owned(),
            Anchor::ApprovalSent(step) => format!("approval {step} sent"),
            Anchor::Record(kind @ (Kind::Started | Kind::Finished), _) => format!("{kind:?}"),
            Anchor::Record(kind, step) => format!("{kind:?}({step})"),
        };
        let meddle = if self.meddle { ", meddle" } else { "" };
        format!(
            "{anchor} + {:.1} ms{meddle}",
            self.delay.as_secs_f64() * 1e3
        )
    }
}

// ------------------------------------------------------------ journal

/// The journal's complete records (a torn last line is left out).
fn records(journal: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Looks for a record in a growing journal, parsing only when it grew.
struct JournalWatch {
    path: PathBuf,
    length: Option<u64>,
}

impl JournalWatch {
    fn new(path: PathBuf) -> Self {
        Self { path, length: None }
    }

    fn find(&mut self, kind: Kind, step: usize) -> Option<Record> {
        let length = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if self.length == Some(length) {
            return None;
        }
        self.length = Some(length);
        records(&self.path).into_iter().find(|r| is(r, kind, step))
    }
}

fn is(record: &Record, kind: Kind, step: usize) -> bool {
    match (&record.entry, kind) {
        (Entry::Proposed { step: s, .. }, Kind::Proposed)
        | (Entry::StepStarted { step: s, .. }, Kind::StepStarted)
        | (Entry::Changed { step: s, .. }, Kind::Changed)
        | (Entry::StepFinished { step: s, .. }, Kind::StepFinished) => *s == step,
        (Entry::Started { .. }, Kind::Started) | (Entry::Finished { .. }, Kind::Finished) => true,
        _ => false,
    }
}

fn kind_name(entry: &Entry) -> &'static str {
    match entry {
        Entry::Command { .. } => "command",
        Entry::Answered { .. } => "answered",
        Entry::PlanPosting { .. } => "plan_posting",
        Entry::Say { .. } => "say",
        Entry::Delivered { .. } => "delivered",
        Entry::Started { .. } => "started",
        Entry::Proposed { .. } => "proposed",
        Entry::Decided { .. } => "decided",
        Entry::StepStarted { .. } => "step_started",
        Entry::Changed { .. } => "changed",
        Entry::StepFinished { .. } => "step_finished",
        Entry::Finished { .. } => "finished",
    }
}

/// `failover-bot audit verify JOURNAL` exits 0.
fn audit_verifies(journal: &Path) -> Result<(), String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["audit", "verify"])
        .arg(journal)
        .output()
        .map_err(|e| format!("cannot run audit verify: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "audit verify exited {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

// ------------------------------------------------------------ the clusters

/// The clusters every run uses: started once (5–7 s), reset between runs.
struct World {
    env: KubeEnv,
    clients: Vec<Client>,
    names: Vec<String>,
    config: String,
    /// Weights before the operation and after each of its steps.
    targets: Vec<Weights>,
    _lunar: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for task in &self._lunar {
            task.abort();
        }
    }
}

fn weights_of(names: &[String], values: &[u8]) -> Weights {
    names.iter().cloned().zip(values.iter().copied()).collect()
}

/// The weights before the failover and after each step, as the plans'
/// arithmetic gives them from the initial weights.
fn step_targets(names: &[String]) -> Vec<Weights> {
    let mut targets = vec![weights_of(names, &INITIAL)];
    for percent in STEPS {
        let from = targets.last().expect("initial weights").clone();
        let percent = Percent::new(percent).expect("a valid percent");
        targets.push(plan::shift(&from, &names[2], percent).expect("a valid step"));
    }
    targets
}

impl World {
    async fn start() -> Arc<World> {
        let env = KubeEnv::start(3).await;
        let mut clients = Vec::new();
        for i in 0..3 {
            clients.push(env.client(i).await);
        }
        let names: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
        for (i, name) in names.iter().enumerate() {
            env.apply(i, &support::kube_env::routing_weight_yaml(name, INITIAL[i]));
            env.apply(i, &controlled_ingress_yaml(""));
        }
        let lunar = clients
            .iter()
            .zip(&names)
            .map(|(c, n)| tokio::spawn(lunar_controller(c.clone(), n.clone())))
            .collect();
        let routing = "  mode: routing-weight\n  verify_timeout: 5s\n";
        Arc::new(World {
            config: env.config_yaml(routing, ""),
            targets: step_targets(&names),
            env,
            clients,
            names,
            _lunar: lunar,
        })
    }

    fn weights_api(&self, i: usize) -> Api<RoutingWeight> {
        Api::namespaced(self.clients[i].clone(), NAMESPACE)
    }

    /// Back to the initial weights and the right identities, and wait until
    /// the Ingresses carry them (so no run sees the last one's leftovers).
    async fn reset(&self) {
        for (i, initial) in INITIAL.iter().enumerate() {
            let annotations = serde_json::json!([
                {"key": crd::weight_key(ANNOTATION_PREFIX), "value": initial.to_string()},
                {"key": crd::set_identifier_key(ANNOTATION_PREFIX), "value": self.names[i]},
            ]);
            let patch = serde_json::json!({"spec": {"annotations": annotations, "dryRun": false}});
            self.weights_api(i)
                .patch(
                    &self.names[i],
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .expect("reset the RoutingWeight");
            let identity = serde_json::json!({"data": {"clusterName": self.names[i]}});
            Api::<ConfigMap>::namespaced(self.clients[i].clone(), NAMESPACE)
                .patch(
                    IDENTITY_CONFIGMAP,
                    &PatchParams::default(),
                    &Patch::Merge(&identity),
                )
                .await
                .expect("reset the identity ConfigMap");
        }
        for i in 0..3 {
            let carried = wait_until(Duration::from_secs(10), || self.ingress_weight(i)).await;
            assert!(
                carried,
                "the Ingress of cluster {i} never carried the reset"
            );
        }
    }

    async fn ingress_weight(&self, i: usize) -> bool {
        let ingresses: Api<Ingress> = Api::namespaced(self.clients[i].clone(), "web");
        let Ok(ingress) = ingresses.get("api").await else {
            return false;
        };
        let key = crd::weight_key(ANNOTATION_PREFIX);
        let annotations = ingress.metadata.annotations.unwrap_or_default();
        annotations.get(&key) == Some(&INITIAL[i].to_string())
    }

    /// Someone else sets cluster `i`'s weight; returns the change's revision.
    async fn set_weight(&self, i: usize, weight: u8) -> u64 {
        let mut rw = self
            .weights_api(i)
            .get(&self.names[i])
            .await
            .expect("read a RoutingWeight");
        rw.spec.set_weight(ANNOTATION_PREFIX, weight);
        let written = self
            .weights_api(i)
            .replace(&self.names[i], &Default::default(), &rw)
            .await
            .expect("someone else's change");
        revision(&written)
    }

    /// Every cluster's weight and resourceVersion, read now.
    async fn read(&self) -> (Weights, Vec<u64>) {
        let mut weights = Weights::new();
        let mut versions = Vec::new();
        for i in 0..3 {
            let rw = self
                .weights_api(i)
                .get(&self.names[i])
                .await
                .expect("read a RoutingWeight");
            if let Some(w) = rw.spec.weight(ANNOTATION_PREFIX) {
                weights.set(self.names[i].clone(), w);
            }
            versions.push(revision(&rw));
        }
        (weights, versions)
    }
}

fn revision(rw: &RoutingWeight) -> u64 {
    rw.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn wait_until<F, Fut>(timeout: Duration, f: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// What Lunar's controller does, slowly: on every change of the cluster's
/// RoutingWeight, wait [`LUNAR_DELAY`], then copy its current annotations
/// onto the controlled Ingress. Event-driven, so idle runs cost nothing.
async fn lunar_controller(client: Client, identity: String) {
    let weights: Api<RoutingWeight> = Api::namespaced(client.clone(), NAMESPACE);
    let ingresses: Api<Ingress> = Api::namespaced(client, "web");
    let mut changes = std::pin::pin!(watcher::watcher(
        weights.clone(),
        watcher::Config::default()
    ));
    while let Some(event) = changes.next().await {
        let changed = matches!(
            event,
            Ok(watcher::Event::Apply(_)) | Ok(watcher::Event::InitApply(_))
        );
        if !changed {
            continue;
        }
        tokio::time::sleep(LUNAR_DELAY).await;
        let Ok(rw) = weights.get(&identity).await else {
            continue;
        };
        if rw.spec.cluster_name != identity || rw.spec.dry_run {
            continue;
        }
        let annotations: serde_json::Map<String, serde_json::Value> = rw
            .spec
            .annotations
            .iter()
            .map(|a| (a.key.clone(), a.value.clone().into()))
            .collect();
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        let _ = ingresses
            .patch("api", &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
}

// ------------------------------------------------------------ the observer

/// One RoutingWeight state, as a watch delivered it.
#[derive(Clone, Debug)]
struct Seen {
    revision: u64,
    cluster: usize,
    weight: Option<u8>,
}

/// Watches the three RoutingWeights for the whole run, bot down or not.
struct Observer {
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Observer {
    /// Returns once every watch has listed its RoutingWeight.
    async fn start(world: &World) -> Observer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (listed, ready) = tokio::sync::oneshot::channel();
            tasks.push(tokio::spawn(watch_weights(
                world.weights_api(i),
                i,
                seen.clone(),
                listed,
            )));
            ready.await.expect("the watch lists its RoutingWeight");
        }
        Observer { seen, tasks }
    }

    fn seen(&self) -> Vec<Seen> {
        let mut seen = self.seen.lock().unwrap().clone();
        seen.sort_by_key(|s| s.revision);
        seen
    }

    /// Until the watches caught up with `versions` (one per cluster).
    async fn catch_up(&self, versions: &[u64]) -> bool {
        wait_until(Duration::from_secs(10), || async {
            let seen = self.seen();
            (0..3).all(|i| {
                seen.iter()
                    .any(|s| s.cluster == i && s.revision >= versions[i])
            })
        })
        .await
    }
}

async fn watch_weights(
    api: Api<RoutingWeight>,
    cluster: usize,
    seen: Arc<Mutex<Vec<Seen>>>,
    listed: tokio::sync::oneshot::Sender<()>,
) {
    let mut listed = Some(listed);
    let mut changes = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
    while let Some(event) = changes.next().await {
        let (rw, weight) = match event {
            Ok(watcher::Event::Apply(rw)) | Ok(watcher::Event::InitApply(rw)) => {
                let weight = rw.spec.weight(ANNOTATION_PREFIX);
                (rw, weight)
            }
            Ok(watcher::Event::Delete(rw)) => (rw, None),
            Ok(watcher::Event::InitDone) => {
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
                continue;
            }
            _ => continue,
        };
        seen.lock().unwrap().push(Seen {
            revision: revision(&rw),
            cluster,
            weight,
        });
    }
}

// ------------------------------------------------------------ one run

/// What one run found.
struct RunReport {
    seed: u64,
    transport: Transport,
    aim: &'static str,
    kill: String,
    landed: Landed,
    outcome: String,
    took: Duration,
    violations: Vec<String>,
    /// Worth knowing, not asserted (see the report's notes).
    notes: Vec<String>,
    /// The journal, summarized, for failure messages.
    journal: String,
}

/// The bot and the fake Slack of one run, and what the test sent them.
struct Run {
    seed: u64,
    fake: FakeSlack,
    bot: ServeProc,
    sent: usize,
    violations: Vec<String>,
}

impl Run {
    fn event_id(&mut self) -> String {
        self.sent += 1;
        format!("Ev-{}-{}", self.seed, self.sent)
    }

    async fn command(&mut self) {
        let trigger = self.event_id();
        let reply = self
            .bot
            .slash(&self.fake, REQUESTER, COMMAND, &trigger)
            .await;
        if !reply.contains("Working on") {
            self.violations
                .push(format!("the command was answered with: {reply}"));
        }
    }

    async fn approve(&mut self, ts: &str) {
        let event = self.event_id();
        self.bot
            .reaction(&self.fake, &event, APPROVER, "white_check_mark", ts, true)
            .await;
    }

    fn records(&self) -> Vec<Record> {
        records(&self.bot.journal())
    }

    /// Polls the journal for the first `kind` record of `step`.
    async fn wait_record(&mut self, kind: Kind, step: usize) -> Option<Record> {
        let deadline = Instant::now() + RECORD_TIMEOUT;
        let mut journal = JournalWatch::new(self.bot.journal());
        while Instant::now() < deadline {
            if let Some(record) = journal.find(kind, step) {
                return Some(record);
            }
            tokio::time::sleep(POLL).await;
        }
        self.missing(kind, step);
        None
    }

    fn missing(&mut self, kind: Kind, step: usize) {
        self.violations.push(format!(
            "no {kind:?} record for step {step} within {RECORD_TIMEOUT:?}"
        ));
    }

    /// The plan message of `step`, once it is journaled.
    async fn wait_plan(&mut self, step: usize) -> Option<String> {
        match self.wait_record(Kind::Proposed, step).await?.entry {
            Entry::Proposed { message, .. } => Some(message.ts),
            _ => None,
        }
    }

    /// Drives the operation up to the kill point, then SIGKILLs the bot.
    async fn crash(&mut self, kill: &KillPoint) {
        self.command().await;
        for step in 1..=kill.approvals_first() {
            let Some(ts) = self.wait_plan(step).await else {
                break;
            };
            self.approve(&ts).await;
        }
        // Sub-millisecond windows matter here (a record is followed by its
        // chat message within a millisecond), and tokio's timer has 1 ms
        // resolution: watch and sleep on this thread instead.
        tokio::task::block_in_place(|| {
            if let Anchor::Record(kind, step) = kill.anchor {
                self.watch_for_record(kind, step);
            }
            std::thread::sleep(kill.delay);
            self.bot.kill();
        });
    }

    /// Like [`Run::wait_record`], polling every 100 µs on this thread.
    fn watch_for_record(&mut self, kind: Kind, step: usize) {
        let deadline = Instant::now() + RECORD_TIMEOUT;
        let mut journal = JournalWatch::new(self.bot.journal());
        while Instant::now() < deadline {
            if journal.find(kind, step).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        self.missing(kind, step);
    }

    /// After the restart: approves whatever awaits approval (retyping the
    /// command if it was lost) until the operation has finished.
    async fn finish(&mut self, pending_before: Option<&str>) -> Option<OperationOutcome> {
        let deadline = Instant::now() + RUN_TIMEOUT;
        let mut approved = BTreeSet::new();
        let mut retyped = false;
        while Instant::now() < deadline {
            let ledger = Ledger::replay(&self.records());
            if let Some(done) = ledger.finished.last() {
                return Some(done.outcome.clone());
            }
            match ledger.active.get(ENV).map(|op| &op.phase) {
                None if !retyped => {
                    // Slack does not redeliver an acknowledged command: the
                    // requester types it again.
                    retyped = true;
                    self.command().await;
                }
                Some(Phase::AwaitingApproval(shown)) if !approved.contains(&shown.message.ts) => {
                    let ts = shown.message.ts.clone();
                    if let Some(before) = pending_before.filter(|_| approved.is_empty()) {
                        if before != ts {
                            self.violations.push(format!(
                                "the plan pending before the kill ({before}) was replaced by {ts}"
                            ));
                        }
                    }
                    approved.insert(ts.clone());
                    self.approve(&ts).await;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.violations.push(format!(
            "the operation did not finish within {RUN_TIMEOUT:?}"
        ));
        None
    }
}

/// Where the kill landed: a phase, and the details.
struct Landed {
    phase: &'static str,
    detail: String,
}

/// Where the kill landed, from the journal, the channel and the clusters.
fn landed(records: &[Record], fake: &FakeSlack, now: &Weights) -> Landed {
    let at = |phase: &'static str, detail: String| Landed { phase, detail };
    let ledger = Ledger::replay(records);
    let Some(op) = ledger.active.get(ENV) else {
        return match (ledger.finished.is_empty(), records.is_empty()) {
            (false, _) => at("finished", String::new()),
            (true, false) => at("command journaled, no operation", String::new()),
            (true, true) => at("nothing journaled", String::new()),
        };
    };
    let step = op.step;
    match &op.phase {
        Phase::Proposing => {
            let posted = fake.plan_posts().len() > records_of(records, "proposed");
            let detail = format!("step {step}{}", if posted { ", plan posted" } else { "" });
            match (step, posted) {
                (1, false) => at("planning step 1", detail),
                (_, true) => at("plan posted, not journaled", detail),
                _ => at("between steps", detail),
            }
        }
        Phase::AwaitingApproval(_) => at("pending approval", format!("step {step}")),
        Phase::Approved(_) => at("approved, not started", format!("step {step}")),
        Phase::Applying(shown) => {
            let since_start = records
                .iter()
                .rev()
                .take_while(|r| !is(r, Kind::StepStarted, step));
            if since_start.into_iter().any(|r| is(r, Kind::Changed, step)) {
                return at("verifying", format!("step {step}"));
            }
            let moved: Vec<&str> = shown.plan.changed_clusters().collect();
            let written = moved
                .iter()
                .filter(|c| now.get(c) == shown.plan.after.get(c))
                .count();
            at(
                "writing",
                format!("step {step}, {written}/{} written", moved.len()),
            )
        }
        Phase::Finishing(_) => at("closing", format!("after step {step}")),
    }
}

fn records_of(records: &[Record], kind: &str) -> usize {
    records
        .iter()
        .filter(|r| kind_name(&r.entry) == kind)
        .count()
}

/// A message's text now: its last update, or as posted.
fn current_text(fake: &FakeSlack, post: &Posted) -> String {
    fake.last_update(&post.ts)
        .unwrap_or_else(|| post.text.clone())
}

/// The message that ends operation #1, however it ended.
fn is_closing(text: &str) -> bool {
    [
        "complete:",
        "stopped at",
        "rejected by",
        "expired:",
        "withdrawn by",
        "aborted by",
    ]
    .iter()
    .any(|end| text.contains(&format!("Operation #1 {end}")))
}

fn channel_posts(fake: &FakeSlack) -> Vec<String> {
    fake.posts()
        .into_iter()
        .filter(|p| p.ephemeral_user.is_none())
        .map(|p| p.text)
        .collect()
}

// ------------------------------------------------------------ the checks

/// Checks 1 and 2 over every state the watches saw, in revision order.
/// `foreign` is the revision of someone else's change, if a run made one:
/// it is exempt, and nothing may be written after it.
fn check_weights(
    world: &World,
    seen: &[Seen],
    records: &[Record],
    foreign: Option<u64>,
    violations: &mut Vec<String>,
) {
    let mut allowed: Vec<BTreeSet<u8>> = vec![BTreeSet::new(); 3];
    for record in records {
        if let Entry::Proposed { plan, .. } = &record.entry {
            if !world
                .targets
                .windows(2)
                .any(|w| w[0] == plan.before && w[1] == plan.after)
            {
                violations.push(format!(
                    "step {} was planned as {:?} → {:?}, not one of the failover's steps",
                    plan.scope.step, plan.before, plan.after
                ));
            }
            for (i, name) in world.names.iter().enumerate() {
                allowed[i].extend(plan.before.get(name));
                allowed[i].extend(plan.after.get(name));
            }
        }
    }
    let mut now: [Option<u8>; 3] = [None; 3];
    for s in seen {
        now[s.cluster] = s.weight;
        let name = &world.names[s.cluster];
        match foreign {
            Some(rv) if s.revision == rv => continue,
            Some(rv) if s.revision > rv => violations.push(format!(
                "{name} was written (to {:?}) after someone else's change, at revision {}",
                s.weight, s.revision
            )),
            _ => {}
        }
        let initial = Some(INITIAL[s.cluster]);
        if s.weight != initial && !s.weight.is_some_and(|w| allowed[s.cluster].contains(&w)) {
            violations.push(format!(
                "{name} held weight {:?} (revision {}), outside every plan's before/after {:?}",
                s.weight, s.revision, allowed[s.cluster]
            ));
        }
        if now.iter().all(|w| *w == Some(0)) {
            violations.push(format!("all clusters at 0 at revision {}", s.revision));
        }
    }
}

/// Check 4: what the channel was told.
fn check_channel(
    fake: &FakeSlack,
    at_kill: &AtKill,
    outcome: Option<&OperationOutcome>,
    violations: &mut Vec<String>,
) {
    let announced = posts_since(fake, at_kill.posts)
        .iter()
        .any(|t| t.contains("failover-bot restarted"));
    if at_kill.active && !announced {
        violations.push("the restart in the middle of the operation was not announced".into());
    }
    let told_requester = fake.posts().iter().skip(at_kill.posts).any(|p| {
        p.ephemeral_user.as_deref() == Some(REQUESTER)
            && p.text.contains("restarted while handling")
    });
    if at_kill.cut_short && !told_requester {
        violations.push("a command the kill cut short was never answered".into());
    }
    let said = channel_posts(fake);
    // Said once; a post the kill cut off is sent again after the restart,
    // marked, and may then show twice (Slack may have taken the first copy
    // just before the kill): at most one marked copy, at most one unmarked.
    let once = |needle: &str, violations: &mut Vec<String>| {
        let copies: Vec<&String> = said.iter().filter(|t| t.contains(needle)).collect();
        let resent = copies.iter().filter(|t| t.contains(RESENT_NOTE)).count();
        if copies.is_empty() || resent > 1 || copies.len() - resent > 1 {
            violations.push(format!(
                "`{needle}` posted {} times ({resent} marked as sent again), not once",
                copies.len()
            ));
        }
    };
    if let Some(OperationOutcome::Completed) = outcome {
        for step in 1..=STEPS.len() {
            once(
                &format!("Step {step}/{} applied and verified", STEPS.len()),
                violations,
            );
        }
        once("Operation #1 complete", violations);
    }
}

/// Check 4b: no plan message is left claiming to await approval or to be
/// applying. One the journal never names (Slack took the post, the kill
/// came before its record) cannot be found again: the restarted bot must
/// have said that such a copy is void.
fn check_plan_messages(
    fake: &FakeSlack,
    records: &[Record],
    at_kill: &AtKill,
    violations: &mut Vec<String>,
) {
    let journaled: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Proposed { message, .. } => Some(message.ts.as_str()),
            _ => None,
        })
        .collect();
    let voided = posts_since(fake, at_kill.posts)
        .iter()
        .any(|t| t.contains("it is void"));
    for plan in fake.plan_posts() {
        if !journaled.contains(plan.ts.as_str()) {
            if !voided {
                violations.push(format!(
                    "plan message {} is in no journal record, and nobody was told it is void",
                    plan.ts
                ));
            }
            continue;
        }
        let text = current_text(fake, &plan);
        if text.contains("awaiting approval") || text.contains("applying") {
            let first = text.lines().next().unwrap_or_default().to_owned();
            violations.push(format!("plan message {} still says: {first}", plan.ts));
        }
    }
}

/// Check 5: completed at the last step's weights, or reported stopped with
/// every cluster's real weight (in what was posted after the restart: the
/// plan messages show planned weights, not real ones).
fn check_outcome(
    world: &World,
    fake: &FakeSlack,
    at_kill: &AtKill,
    outcome: Option<&OperationOutcome>,
    now: &Weights,
    violations: &mut Vec<String>,
) {
    match outcome {
        None => {}
        Some(OperationOutcome::Completed) => {
            let last = world.targets.last().expect("step targets");
            if now != last {
                violations.push(format!(
                    "completed, but the clusters hold {now:?}, not {last:?}"
                ));
            }
        }
        Some(other) => {
            let report = posts_since(fake, at_kill.posts).join("\n");
            if !report.contains("Operation #1 stopped") {
                violations.push(format!("ended {} without saying it stopped", other.word()));
            }
            for (cluster, weight) in now.iter() {
                if !lists_weight(&report, cluster, weight) {
                    violations.push(format!(
                        "stopped ({}), but the report does not give {cluster}'s weight {weight}",
                        other.word()
                    ));
                }
            }
        }
    }
}

/// Some line names `cluster` and has `weight` as a word of its own.
fn lists_weight(text: &str, cluster: &str, weight: u8) -> bool {
    let weight = weight.to_string();
    text.lines().any(|line| {
        line.contains(cluster)
            && line
                .split(|c: char| !c.is_ascii_digit())
                .any(|number| number == weight)
    })
}

/// Channel and thread posts (not ephemeral ones) from post number `from` on.
fn posts_since(fake: &FakeSlack, from: usize) -> Vec<String> {
    fake.posts()
        .into_iter()
        .skip(from)
        .filter(|p| p.ephemeral_user.is_none())
        .map(|p| p.text)
        .collect()
}

/// What the journal, the channel and the clusters said right after the kill.
struct AtKill {
    landed: Landed,
    active: bool,
    /// A command was journaled but not answered.
    cut_short: bool,
    /// The plan message awaiting approval, if one was.
    pending: Option<String>,
    /// Posts the fake Slack had received.
    posts: usize,
    /// The revision of someone else's change made while the bot was down.
    foreign: Option<u64>,
    notes: Vec<String>,
}

/// A weight no plan of the failover has.
const FOREIGN_WEIGHT: u8 = 7;

async fn run(seed: u64, world: Arc<World>) -> RunReport {
    let started = Instant::now();
    let mut rng = SplitMix64(seed);
    let transport = if rng.below(2) == 0 {
        Transport::Http
    } else {
        Transport::Socket
    };
    let kill = KillPoint::pick(&mut rng);
    world.reset().await;
    let observer = Observer::start(&world).await;
    let fake = FakeSlack::start().await;
    let clusters = Clusters::Kubeconfig(world.env.kubeconfig().to_owned());
    let bot = ServeProc::start(&fake, transport, &world.config, clusters).await;
    let mut run = Run {
        seed,
        fake,
        bot,
        sent: 0,
        violations: Vec::new(),
    };

    run.crash(&kill).await;
    let at_kill = look_after_kill(&mut run, &world, &kill).await;
    run.bot.restart(&run.fake).await;
    let outcome = run.finish(at_kill.pending.as_deref()).await;
    let violations = check_run(&mut run, &world, &observer, &at_kill, outcome.as_ref()).await;
    RunReport {
        seed,
        transport,
        aim: kill.aim,
        kill: kill.describe(),
        landed: at_kill.landed,
        outcome: outcome.map_or_else(|| "unfinished".to_owned(), |o| o.word().to_owned()),
        took: started.elapsed(),
        journal: journal_summary(&run.records()),
        violations,
        notes: at_kill.notes,
    }
}

/// Reads where the kill landed, checks the journal, and meddles if the
/// kill point says so.
async fn look_after_kill(run: &mut Run, world: &World, kill: &KillPoint) -> AtKill {
    let records = run.records();
    let (weights, _) = world.read().await;
    let landed = landed(&records, &run.fake, &weights);
    if let Err(e) = audit_verifies(&run.bot.journal()) {
        run.violations.push(format!("after the kill: {e}"));
    }
    let ledger = Ledger::replay(&records);
    let active = ledger.active.contains_key(ENV);
    let notes = Vec::new();
    // Slack does not redeliver an acknowledged command: one the kill cut
    // short must be answered by the restarted bot.
    let cut_short = !ledger.unanswered.is_empty();
    let pending = match ledger.active.get(ENV).map(|op| &op.phase) {
        Some(Phase::AwaitingApproval(shown)) => Some(shown.message.ts.clone()),
        _ => None,
    };
    let mid_step = matches!(landed.phase, "writing" | "verifying");
    let foreign = match kill.meddle && mid_step {
        true => Some(world.set_weight(1, FOREIGN_WEIGHT).await),
        false => None,
    };
    AtKill {
        landed,
        active,
        cut_short,
        pending,
        posts: run.fake.posts().len(),
        foreign,
        notes,
    }
}

/// Every check of a finished run (the bot is killed at the end).
async fn check_run(
    run: &mut Run,
    world: &World,
    observer: &Observer,
    at_kill: &AtKill,
    outcome: Option<&OperationOutcome>,
) -> Vec<String> {
    // The end is journaled before it is said: give the closing message time.
    let closing = |f: &FakeSlack| channel_posts(f).iter().any(|t| is_closing(t));
    run.fake
        .wait_until("the closing message", Duration::from_secs(5), closing)
        .await;
    let (now, versions) = world.read().await;
    let mut violations = std::mem::take(&mut run.violations);
    if !observer.catch_up(&versions).await {
        violations.push("the watches never caught up with the clusters".into());
    }
    let records = run.records();
    check_weights(
        world,
        &observer.seen(),
        &records,
        at_kill.foreign,
        &mut violations,
    );
    check_channel(&run.fake, at_kill, outcome, &mut violations);
    check_plan_messages(&run.fake, &records, at_kill, &mut violations);
    check_outcome(world, &run.fake, at_kill, outcome, &now, &mut violations);
    if at_kill.foreign.is_some() && outcome.is_some_and(|o| *o == OperationOutcome::Completed) {
        violations.push("completed over someone else's change".into());
    }
    run.bot.kill();
    if let Err(e) = audit_verifies(&run.bot.journal()) {
        violations.push(format!("at the end: {e}"));
    }
    if run.bot.log().contains("panicked") {
        violations.push(format!("the bot panicked:\n{}", run.bot.log()));
    }
    violations
}

fn journal_summary(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| {
            let detail = match &r.entry {
                Entry::Decided { step, state, .. } => format!(" step {step} {}", state.label()),
                Entry::Proposed { step, message, .. } => format!(" step {step} ts {}", message.ts),
                Entry::StepStarted { step, .. } | Entry::Changed { step, .. } => {
                    format!(" step {step}")
                }
                Entry::StepFinished { step, outcome, .. } => format!(" step {step} {outcome:?}"),
                Entry::Finished { outcome, .. } => format!(" {outcome:?}"),
                Entry::Say { said } => format!(" {}", said_summary(said)),
                Entry::Delivered { say } => format!(" {say}"),
                _ => String::new(),
            };
            format!("    {} {}{detail}", r.seq, kind_name(&r.entry))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message in a few words: what it does, where, and its first words.
fn said_summary(said: &Said) -> String {
    let (what, at, text) = match said {
        Said::Post {
            thread, message, ..
        } => (
            "post in",
            thread.as_ref().map_or("channel", |t| t.ts.as_str()),
            &message.text,
        ),
        Said::Update { at, message } => ("update", at.ts.as_str(), &message.text),
    };
    let words: String = text.chars().take(50).collect();
    format!("{what} {at}: {words}")
}

/// The runtime's extra workers keep the fake Slack, the watches and the
/// Lunar stand-in going while the kill watch blocks one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_seeded_points_of_a_three_step_failover_then_restart_loses_nothing() {
    let seeds = seeds();
    let started = Instant::now();
    let world = World::start().await;
    eprintln!(
        "crash: {} seed(s); clusters up in {:.1?}; plan targets {:?}",
        seeds.len(),
        world.env.started_in(),
        world.targets
    );
    let mut reports = Vec::new();
    for &seed in &seeds {
        let report = match tokio::spawn(run(seed, world.clone())).await {
            Ok(report) => report,
            Err(e) => panicked(seed, e),
        };
        print_run(&report);
        reports.push(report);
    }
    print_summary(&reports, started.elapsed());
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| {
            let violations = r.violations.join("\n  ");
            format!(
                "seed {}:\n  {violations}\n  journal:\n{}",
                r.seed, r.journal
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} runs broke an invariant (reproduce one with FAILOVER_BOT_CRASH_SEEDS=SEED):\n{}",
        failed.len(),
        reports.len(),
        failed.join("\n")
    );
}

fn panicked(seed: u64, error: tokio::task::JoinError) -> RunReport {
    let reason = match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned()),
        Err(e) => e.to_string(),
    };
    RunReport {
        seed,
        transport: Transport::Http,
        aim: "?",
        kill: "?".into(),
        landed: Landed {
            phase: "?",
            detail: String::new(),
        },
        outcome: "panicked".into(),
        took: Duration::ZERO,
        violations: vec![format!("the run panicked: {reason}")],
        notes: Vec::new(),
        journal: String::new(),
    }
}

fn print_run(r: &RunReport) {
    let verdict = match r.violations.len() {
        0 => "ok".to_owned(),
        n => format!("FAILED ({n})"),
    };
    let landed = format!("{} {}", r.landed.phase, r.landed.detail);
    eprintln!(
        "crash: seed {:>3} {:<6} aim {:<20} kill at {:<26} landed: {:<46} → {:<9} {:>4.1} s  {verdict}",
        r.seed,
        format!("{:?}", r.transport),
        r.aim,
        r.kill,
        landed.trim(),
        r.outcome,
        r.took.as_secs_f64()
    );
    for note in &r.notes {
        eprintln!("crash:          note: {note}");
    }
}

/// The lines `scripts/crash-harness` shows: runs, seeds, phases hit, failures.
fn print_summary(reports: &[RunReport], took: Duration) {
    let mut phases: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut notes: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut broken: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in reports {
        phases.entry(r.landed.phase).or_default().push(r.seed);
        for note in &r.notes {
            notes.entry(note).or_default().push(r.seed);
        }
        let kinds: BTreeSet<String> = r.violations.iter().map(|v| kind_of(v)).collect();
        for kind in kinds {
            broken.entry(kind).or_default().push(r.seed);
        }
    }
    let list = |seeds: &[u64]| {
        seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let all: Vec<u64> = reports.iter().map(|r| r.seed).collect();
    let failed: Vec<u64> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| r.seed)
        .collect();
    eprintln!(
        "CRASH SUMMARY: runs {} in {:.1} s",
        reports.len(),
        took.as_secs_f64()
    );
    eprintln!("CRASH SUMMARY: seeds {}", list(&all));
    for (phase, seeds) in &phases {
        eprintln!(
            "CRASH SUMMARY: killed {phase:<32} {:>3}  (seeds {})",
            seeds.len(),
            list(seeds)
        );
    }
    for (note, seeds) in &notes {
        eprintln!(
            "CRASH SUMMARY: note {note}: {} (seeds {})",
            seeds.len(),
            list(seeds)
        );
    }
    for (violation, seeds) in &broken {
        eprintln!(
            "CRASH SUMMARY: broken {violation}: {} (seeds {})",
            seeds.len(),
            list(seeds)
        );
    }
    eprintln!(
        "CRASH SUMMARY: failures {} (seeds {})",
        failed.len(),
        list(&failed)
    );
}

/// A violation without its particulars (numbers, message ids), to group by.
fn kind_of(violation: &str) -> String {
    let first = violation.lines().next().unwrap_or_default();
    let words: Vec<&str> = first
        .split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .collect();
    words.join(" ")
}
