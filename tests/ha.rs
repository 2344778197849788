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

use std::time::{Duration, Instant};

use serde_json::Value;

use support::fake_slack::FakeSlack;
use support::replicas::{JournalKind, Scene, Shared};
use support::serve_proc::{ServeProc, READY_WITHIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_the_failover_the_killed_leader_started() {
    a_new_leader_resumes_the_failover(JournalKind::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_the_failover_from_the_journal_in_the_home_cluster() {
    a_new_leader_resumes_the_failover(JournalKind::Kube).await;
}

async fn a_new_leader_resumes_the_failover(kind: JournalKind) {
    let scene = Scene::start(kind).await;
    let fake = &scene.fake;
    let shared = scene.shared();

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
    let refused = second.deliver_command(fake, status, "", 0).await;
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
    let step2 = scene.first_of_two_steps(&first).await;

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
    scene.last_step_through(&second, "Ev2", &step2).await;

    let (verified, report) = scene.audit();
    assert!(verified, "{report}");

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
