//! Two replicas of the real `serve` binary with Lease leader election on a
//! real API server (the bot's home cluster), failing over two other real
//! clusters, sharing one journal: JournalSegment objects in the home cluster
//! (`--journal kube`, what the production manifests run), or one file (a
//! ReadWriteMany volume). Checks that only the leader talks to Slack and is
//! ready, and that when the leader is SIGKILLed between two steps the other
//! replica takes the Lease, resumes from the journal and finishes the
//! failover on the same plan message. Also: health, readiness, metrics and
//! JSON logs with operation/step ids.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::Api;
use serde_json::Value;

use failover_bot::backend::kube::crd::RoutingWeight;
use support::fake_slack::FakeSlack;
use support::kube_env::{routing_weight_yaml, KubeEnv, BOT_USER};
use support::serve_proc::{ServeProc, READY_WITHIN};

/// Lets the bot's user take the Lease in the home cluster (what
/// `manifests/` grants the bot's ServiceAccount there).
fn lease_rbac() -> String {
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
fn config(env: &KubeEnv) -> String {
    let c = env.clusters();
    format!(
        "slack:\n  channels: [C1]\napproval:\n  approvers: [UALICE, UBOB]\nrouting:\n  mode: routing-weight\n  verify_timeout: 1s\nenvironments:\n  dev:\n    channel: C1\n    clusters:\n      - {{name: {}, context: {}}}\n      - {{name: {}, context: {}}}\n",
        c[1].name, c[1].context, c[2].name, c[2].context
    )
}

/// What the replicas share: config, clusters, home cluster, journal, Slack.
struct Shared<'a> {
    config: &'a str,
    kubeconfig: &'a Path,
    home_context: &'a str,
    journal: &'a Path,
    fake: &'a FakeSlack,
}

impl Shared<'_> {
    /// One replica: `serve --leader-election`, logging JSON; started, not
    /// waited for (a follower is never ready).
    fn replica(&self, identity: &str) -> ServeProc {
        ServeProc::options(self.config)
            .kubeconfig(self.kubeconfig)
            .leader(identity, self.home_context)
            .log_format("json")
            .journal_at(self.journal)
            .spawn(self.fake)
    }
}

/// UBOB approves plan message `ts` through `replica`.
async fn approve(fake: &FakeSlack, replica: &ServeProc, event_id: &str, ts: &str) {
    replica
        .reaction(fake, event_id, "UBOB", "white_check_mark", ts, true)
        .await;
}

async fn weight(env: &KubeEnv, index: usize) -> Option<u8> {
    let api: Api<RoutingWeight> = Api::namespaced(env.client(index).await, "operators");
    let rw = api.get_opt(&env.clusters()[index].name).await.ok()??;
    rw.spec.weight(support::kube_env::ANNOTATION_PREFIX)
}

async fn wait_weights(env: &KubeEnv, expected: [u8; 2]) -> [Option<u8>; 2] {
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
async fn plan_ts(fake: &FakeSlack, n: usize) -> String {
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
enum JournalKind {
    /// One file both replicas open (a ReadWriteMany volume in a cluster).
    File,
    /// `--journal kube`: JournalSegment objects in the home cluster.
    Kube,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_the_failover_the_killed_leader_started() {
    a_new_leader_resumes_the_failover(JournalKind::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_the_failover_from_the_journal_in_the_home_cluster() {
    a_new_leader_resumes_the_failover(JournalKind::Kube).await;
}

/// Lets the bot's user keep its journal in the home cluster: the
/// JournalSegment CRD, and the verbs `manifests/home/rbac.yaml` grants.
fn journal_crd_and_rbac(env: &KubeEnv) {
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
fn journal_file(env: &KubeEnv, kind: JournalKind, at: &Path, dir: &Path) -> PathBuf {
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

async fn a_new_leader_resumes_the_failover(kind: JournalKind) {
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
    let shared = Shared {
        config: &config,
        kubeconfig: &kubeconfig,
        home_context: &env.clusters()[0].context,
        journal: &journal,
        fake: &fake,
    };

    let first = shared.replica("replica-a");
    first
        .expect_status(("/readyz", 200), READY_WITHIN, "the first replica leads")
        .await;
    let second = shared.replica("replica-b");
    second
        .expect_status(
            ("/healthz", 200),
            Duration::from_secs(10),
            "the follower is alive",
        )
        .await;
    assert_eq!(
        second.status("/readyz").await,
        Some(503),
        "the follower is not ready"
    );
    assert_gauges(&first, "1").await;
    assert_gauges(&second, "0").await;
    let status = ("UALICE", "C1", "status", "trig-follower");
    let refused = second.deliver_command(&fake, status, "", 0).await;
    assert_eq!(
        refused.map(|r| r.status),
        Some(503),
        "the follower takes no Slack traffic"
    );
    assert_eq!(
        fake.calls_to("auth.test").len(),
        1,
        "only the leader talks to Slack"
    );

    // Step 1 of 2 through the leader.
    let name_b = env.clusters()[2].name.clone();
    first
        .slash(
            &fake,
            "UALICE",
            &format!("to {name_b} steps 50,100"),
            "trig-1",
        )
        .await;
    let step1 = plan_ts(&fake, 1).await;
    approve(&fake, &first, "Ev1", &step1).await;
    assert_eq!(wait_weights(&env, [50, 50]).await, [Some(50), Some(50)]);
    let step2 = plan_ts(&fake, 2).await;
    // The plan is journaled before the bot adds its reaction hints: only a
    // journaled plan awaits approval after a restart (a copy posted but
    // not journaled is void, and the new leader posts it again — the crash
    // tests cover that window).
    let journaled = fake
        .wait_until("step 2's reaction hints", Duration::from_secs(20), |f| {
            f.reactions_added().iter().any(|(_, ts, _)| *ts == step2)
        })
        .await;
    assert!(journaled, "step 2's plan journaled:\n{}", fake.dump());

    // The leader dies with step 2 awaiting approval.
    drop(first);
    let took_over = Instant::now();
    second
        .expect_status(
            ("/readyz", 200),
            Duration::from_secs(40),
            "the follower takes over",
        )
        .await;
    eprintln!("handover took {:?}", took_over.elapsed());
    assert_gauges(&second, "1").await;

    // The pending plan from the old leader is approved through the new one.
    approve(&fake, &second, "Ev2", &step2).await;
    assert_eq!(
        wait_weights(&env, [0, 100]).await,
        [Some(0), Some(100)],
        "step 2 applied by the new leader; its log:\n{}\nSlack:\n{}",
        second.log(),
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

    let audit = Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["audit", "verify"])
        .arg(journal_file(&env, kind, &journal, dir.path()))
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );

    let metrics = reqwest::get(second.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "failover_bot_steps_total{result=\"applied\"} 1",
        "failover_bot_approvals_total{result=\"approved\"} 1",
        "failover_bot_slack_events_total{type=\"reaction_added\"} 1",
        "failover_bot_step_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    assert!(
        metrics.contains("failover_bot_backend_request_duration_seconds_count{backend=\"routing-weight\",cluster="),
        "{metrics}"
    );
    assert_json_logs_name_the_operation(&second.log());
}

/// `failover_bot_leader` and `failover_bot_ready` (what the leader alerts
/// in manifests/monitoring watch) both have `value` on this replica.
async fn assert_gauges(replica: &ServeProc, value: &str) {
    let metrics = reqwest::get(replica.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for gauge in ["failover_bot_leader", "failover_bot_ready"] {
        let line = format!("{gauge} {value}");
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

/// Every log line is a JSON object, and the step's lines carry the
/// operation and step ids of their span.
fn assert_json_logs_name_the_operation(log: &str) {
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let step = lines
        .iter()
        .find(|l| l["fields"]["message"] == "step finished")
        .unwrap_or_else(|| panic!("a 'step finished' line in:\n{log}"));
    assert_eq!(step["span"]["op"], 1, "{step}");
    assert_eq!(step["span"]["step"], 2, "{step}");
    assert_eq!(step["fields"]["outcome"], "applied", "{step}");
}

#[tokio::test]
async fn a_lease_in_a_cluster_the_bot_fails_over_is_refused() {
    let fake = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = "slack:\n  channels: [C1]\napproval:\n  approvers: [UALICE, UBOB]\nenvironments:\n  dev:\n    channel: C1\n    clusters:\n      - {name: blue, context: ctx-blue}\n      - {name: green, context: ctx-green}\n";
    let kubeconfig = dir.path().join("no-kubeconfig");
    let journal = dir.path().join("journal.jsonl");
    let shared = Shared {
        config,
        kubeconfig: &kubeconfig,
        home_context: "ctx-green",
        journal: &journal,
        fake: &fake,
    };
    let mut replica = shared.replica("replica-x");
    let status = replica.wait_exit();
    assert!(!status.success());
    let log = replica.log();
    assert!(
        log.contains("--lease-context ctx-green is cluster green, which the bot fails over: keep the Lease in the bot's home cluster"),
        "{log}"
    );
    assert!(fake.calls().is_empty(), "nothing reached Slack");
}
