//! Two replicas of the real `serve` binary on the Kubernetes journal; the
//! leader's traffic to its home API server (its Lease and its journal) goes
//! silent through a fault proxy in the middle of a failover, while Slack
//! and the clusters it fails over still answer it. It must stop acting on
//! its own before anyone else may lead — even on an approval that reaches
//! it in the silence — and exit; the other replica takes the Lease,
//! resumes and finishes. When the old leader's traffic returns nothing of
//! it lands. Every action happened once, and the chain verifies.

mod support;

use std::time::{Duration, Instant};

use support::fake_slack::{self, FakeSlack};
use support::fault_proxy::{Fault, FaultProxy, Upstream};
use support::replicas::{weight, JournalKind, Scene};
use support::serve_proc::{ServeProc, READY_WITHIN};

/// How long the cut-off leader may take to stop: its acting deadline
/// (15 s lease − 5 s margin after its last renewal began) plus a
/// renewal's timeout, with room for a loaded machine.
const STOPS_WITHIN: Duration = Duration::from_secs(30);

async fn exits_within(replica: &mut ServeProc, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if replica.try_exit().is_some() {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Records of `kind` in the journal.
fn count(records: &[serde_json::Value], kind: &str) -> usize {
    records.iter().filter(|r| r["type"] == kind).count()
}

/// Posts of kind `kind` Slack took.
fn posts_of(fake: &FakeSlack, kind: &str) -> usize {
    fake.posts().iter().filter(|p| p.is(kind, &[])).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_home_cluster_stops_and_the_other_finishes_once() {
    let scene = Scene::start(JournalKind::Kube).await;
    let Scene { env, fake, .. } = &scene;
    let (cert, key) = env.serving_cert(0);
    let home = Upstream::https(&env.clusters()[0].server, cert.clone(), cert, key);
    let proxy = FaultProxy::start(home).await;
    let servers = [
        proxy.url(),
        env.clusters()[1].server.clone(),
        env.clusters()[2].server.clone(),
    ];
    let home_via_proxy = env.kubeconfig_via(env.bot_token(), &servers);
    let shared = scene.shared();

    let mut first = shared.replica_via("replica-a", &home_via_proxy);
    first
        .expect_status(("/readyz", 200), READY_WITHIN, "the first replica leads")
        .await;
    let second = shared.replica("replica-b");
    second
        .expect_status(("/healthz", 200), Duration::from_secs(10), "b is alive")
        .await;
    let step2 = scene.first_of_two_steps(&first).await;
    let posts_before = fake.posts().len();

    proxy.set(Fault::Timeout);
    let silent_at = Instant::now();
    // An approval reaches the cut-off leader: it cannot journal it, so it
    // must not act on it.
    let approval =
        fake_slack::reaction_event("Ev2", "UBOB", "white_check_mark", "C1", &step2, true);
    let envelope = fake.next_envelope_id();
    let _ = first.deliver_event(fake, approval, &envelope, 0).await;

    let stopped = exits_within(&mut first, STOPS_WITHIN).await;
    let stopped = stopped.unwrap_or_else(|| panic!("a stops on its own; log:\n{}", first.log()));
    eprintln!(
        "a stopped {:?} after the silence began",
        stopped - silent_at
    );
    let log = first.log();
    assert!(
        log.contains("stopping so that only the new leader acts")
            || log.contains("stopping before acting on anything it could not record"),
        "a says why it stopped:\n{log}"
    );
    assert_eq!(
        [weight(env, 1).await, weight(env, 2).await],
        [Some(50), Some(50)],
        "a applied nothing after the silence began"
    );

    second
        .expect_status(("/readyz", 200), Duration::from_secs(40), "b takes over")
        .await;
    let took_over = Instant::now();
    assert!(stopped < took_over, "one leader at a time");
    eprintln!(
        "b ready {:?} after the silence began",
        took_over - silent_at
    );
    // a's traffic returns: a is gone, and nothing of it was waiting to land.
    proxy.clear();

    scene.last_step_through(&second, "Ev3", &step2).await;

    // Every action once: two steps started and finished, one closing.
    let records = scene.records();
    assert_eq!(count(&records, "step_started"), 2, "{records:#?}");
    assert_eq!(count(&records, "step_finished"), 2);
    assert_eq!(count(&records, "finished"), 1);
    assert_eq!(posts_of(fake, "finished"), 1, "{}", fake.dump());
    assert!(
        fake.posts().len() > posts_before,
        "b spoke in the channel after the takeover"
    );
    let (verified, report) = scene.audit();
    assert!(verified, "{report}");
    assert!(
        proxy.injected().timeouts > 0,
        "a's home calls were silenced"
    );
}
