//! Two or more replicas of the real `serve` binary with Lease leader
//! election in a home cluster (cluster 0), failing over clusters 1 and 2:
//! what tests/ha.rs and tests/ha_silence.rs share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::Api;

use failover_bot::backend::kube::crd::RoutingWeight;

use super::fake_slack::FakeSlack;
use super::kube_env::{routing_weight_yaml, KubeEnv, BOT_USER};
use super::serve_proc::ServeProc;

/// Lets the bot's user take the Lease in the home cluster (what
/// `manifests/` grants the bot's ServiceAccount there).
pub fn lease_rbac() -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: failover-bot
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: failover-bot-lease
  namespace: failover-bot
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: failover-bot-lease
  namespace: failover-bot
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: failover-bot-lease
subjects:
- kind: User
  name: {BOT_USER}
"#
    )
}

/// Clusters 1 and 2 are failed over; cluster 0 is home (the Lease only).
pub fn config(env: &KubeEnv) -> String {
    let c = env.clusters();
    format!(
        "slack:\n  channels: [C1]\napproval:\n  approvers: [UALICE, UBOB]\nrouting:\n  mode: routing-weight\n  verify_timeout: 1s\nenvironments:\n  dev:\n    channel: C1\n    clusters:\n      - {{name: {}, context: {}}}\n      - {{name: {}, context: {}}}\n",
        c[1].name, c[1].context, c[2].name, c[2].context
    )
}

/// What the replicas share: config, clusters, home cluster, journal, Slack.
pub struct Shared<'a> {
    pub config: &'a str,
    pub kubeconfig: &'a Path,
    pub home_context: &'a str,
    pub journal: &'a Path,
    pub fake: &'a FakeSlack,
}

impl Shared<'_> {
    /// One replica: `serve --leader-election`, logging JSON; started, not
    /// waited for (a follower is never ready).
    pub fn replica(&self, identity: &str) -> ServeProc {
        self.replica_via(identity, self.kubeconfig)
    }

    /// [`Shared::replica`] reaching the clusters through `kubeconfig` (one
    /// whose home cluster is behind a fault proxy, say).
    pub fn replica_via(&self, identity: &str, kubeconfig: &Path) -> ServeProc {
        ServeProc::options(self.config)
            .kubeconfig(kubeconfig)
            .leader(identity, self.home_context)
            .log_format("json")
            .journal_at(self.journal)
            .spawn(self.fake)
    }
}

/// UBOB approves plan message `ts` through `replica`.
pub async fn approve(fake: &FakeSlack, replica: &ServeProc, event_id: &str, ts: &str) {
    replica
        .reaction(fake, event_id, "UBOB", "white_check_mark", ts, true)
        .await;
}

pub async fn weight(env: &KubeEnv, index: usize) -> Option<u8> {
    let api: Api<RoutingWeight> = Api::namespaced(env.client(index).await, "operators");
    let rw = api.get_opt(&env.clusters()[index].name).await.ok()??;
    rw.spec.weight(super::kube_env::ANNOTATION_PREFIX)
}

pub async fn wait_weights(env: &KubeEnv, expected: [u8; 2]) -> [Option<u8>; 2] {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = [weight(env, 1).await, weight(env, 2).await];
        if now == expected.map(Some) || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ts of the `n`th (1-based) top-level plan message in C1.
pub async fn plan_ts(fake: &FakeSlack, n: usize) -> String {
    let found = fake
        .wait_until("a plan message", Duration::from_secs(20), |f| {
            f.plan_posts().len() >= n
        })
        .await;
    assert!(found, "plan message {n} posted:\n{}", fake.dump());
    fake.plan_posts()[n - 1].ts.clone()
}

/// Where the replicas keep their journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalKind {
    /// One file both replicas open (a ReadWriteMany volume in a cluster).
    File,
    /// `--journal kube`: JournalSegment objects in the home cluster.
    Kube,
}

/// Lets the bot's user keep its journal in the home cluster: the
/// JournalSegment CRD, and the verbs `manifests/home/rbac.yaml` grants.
pub fn journal_crd_and_rbac(env: &KubeEnv) {
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/home/crd-journalsegment.yaml"
    ))
    .unwrap();
    env.apply(0, &crd);
    let established = env.kubectl(
        0,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/journalsegments.failover-bot.github.io",
        ],
        None,
    );
    assert!(
        established.status.success(),
        "the JournalSegment CRD is Established"
    );
    env.apply(
        0,
        &format!(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: failover-bot-journal
  namespace: failover-bot
rules:
- apiGroups: [failover-bot.github.io]
  resources: [journalsegments]
  verbs: [get, list, create, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: failover-bot-journal
  namespace: failover-bot
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: failover-bot-journal
subjects:
- kind: User
  name: {BOT_USER}
"#
        ),
    );
}

/// The journal as a file `audit verify` reads: the file itself, or the
/// store's lines exported by `failover-bot journal export`.
pub fn journal_file(env: &KubeEnv, kind: JournalKind, at: &Path, dir: &Path) -> PathBuf {
    if kind == JournalKind::File {
        return at.to_owned();
    }
    let export = dir.join("export.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["journal", "export", "--namespace", "failover-bot"])
        .args(["--context", &env.clusters()[0].context])
        .arg("--output")
        .arg(&export)
        .env("KUBECONFIG", env.kubeconfig())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "journal export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    export
}

/// Three real clusters — home (cluster 0, the Lease and a kube journal)
/// and clusters 1 and 2 at weights 100 and 0 with the bot's RBAC — the
/// fake Slack, and where the replicas keep their journal.
pub struct Scene {
    pub env: KubeEnv,
    pub fake: FakeSlack,
    pub dir: tempfile::TempDir,
    pub kind: JournalKind,
    pub journal: PathBuf,
    pub config: String,
    /// The bot's kubeconfig, every cluster reached directly.
    pub kubeconfig: PathBuf,
}

impl Scene {
    pub async fn start(kind: JournalKind) -> Scene {
        let env = KubeEnv::start(3).await;
        env.apply(0, &lease_rbac());
        if kind == JournalKind::Kube {
            journal_crd_and_rbac(&env);
        }
        let rbac = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/target/routing-weight/rbac.yaml"
        ))
        .unwrap();
        env.apply(1, &rbac);
        env.apply(2, &rbac);
        env.apply(1, &routing_weight_yaml(&env.clusters()[1].name, 100));
        env.apply(2, &routing_weight_yaml(&env.clusters()[2].name, 0));
        let fake = FakeSlack::start().await;
        let dir = tempfile::tempdir().unwrap();
        let journal = match kind {
            JournalKind::File => dir.path().join("journal.jsonl"),
            JournalKind::Kube => PathBuf::from("kube"),
        };
        let config = config(&env);
        let kubeconfig = env.kubeconfig_for(env.bot_token());
        Scene {
            env,
            fake,
            dir,
            kind,
            journal,
            config,
            kubeconfig,
        }
    }

    pub fn shared(&self) -> Shared<'_> {
        Shared {
            config: &self.config,
            kubeconfig: &self.kubeconfig,
            home_context: &self.env.clusters()[0].context,
            journal: &self.journal,
            fake: &self.fake,
        }
    }

    /// `/failover to CLUSTER-2 steps 50,100` through `leader`: step 1
    /// approved and applied (50/50), step 2's plan posted and journaled,
    /// awaiting approval. Returns step 2's plan message ts.
    pub async fn first_of_two_steps(&self, leader: &ServeProc) -> String {
        let name_b = self.env.clusters()[2].name.clone();
        leader
            .slash(
                &self.fake,
                "UALICE",
                &format!("to {name_b} steps 50,100"),
                "trig-1",
            )
            .await;
        let step1 = plan_ts(&self.fake, 1).await;
        approve(&self.fake, leader, "Ev1", &step1).await;
        assert_eq!(
            wait_weights(&self.env, [50, 50]).await,
            [Some(50), Some(50)],
            "step 1 applied; leader log:\n{}",
            leader.log()
        );
        let step2 = plan_ts(&self.fake, 2).await;
        // The plan is journaled before the bot adds its reaction hints:
        // only a journaled plan awaits approval after a restart (a copy
        // posted but not journaled is void, and a new leader posts it
        // again — the crash tests cover that window).
        let journaled = self
            .fake
            .wait_until("step 2's reaction hints", Duration::from_secs(20), |f| {
                f.reactions_added().iter().any(|(_, ts, _)| *ts == step2)
            })
            .await;
        assert!(journaled, "step 2's plan journaled:\n{}", self.fake.dump());
        step2
    }

    /// Step 2 (plan `step2`) approved through `leader`: it applies (0/100)
    /// and the channel hears the operation completed.
    pub async fn last_step_through(&self, leader: &ServeProc, event_id: &str, step2: &str) {
        let fake = &self.fake;
        approve(fake, leader, event_id, step2).await;
        assert_eq!(
            wait_weights(&self.env, [0, 100]).await,
            [Some(0), Some(100)],
            "step 2 applied by {event_id}'s leader; its log:\n{}\nSlack:\n{}",
            leader.log(),
            fake.dump()
        );
        let finished = fake
            .wait_until("the closing message", Duration::from_secs(20), |f| {
                f.posts()
                    .iter()
                    .any(|p| p.is("finished", &[("op", "1"), ("outcome", "completed")]))
            })
            .await;
        assert!(finished, "the channel hears it finished:\n{}", fake.dump());
    }

    /// `failover-bot audit verify` on the replicas' journal: its exit and
    /// what it printed.
    pub fn audit(&self) -> (bool, String) {
        let file = journal_file(&self.env, self.kind, &self.journal, self.dir.path());
        let audit = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
            .args(["audit", "verify"])
            .arg(file)
            .output()
            .unwrap();
        (
            audit.status.success(),
            String::from_utf8_lossy(&audit.stdout).into_owned(),
        )
    }

    /// The replicas' journal's records as JSON.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let file = journal_file(&self.env, self.kind, &self.journal, self.dir.path());
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
