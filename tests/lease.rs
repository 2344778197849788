//! Leader election with deadlines against a real API server (kube_env),
//! with the fault proxy in front of the leader: a home API server that goes
//! silent makes the leader stop acting before another replica can take the
//! Lease. (On the code before issue 13 this failed: with its API server
//! silent the leader never stepped down, and the other replica took the
//! Lease 15 s later: two leaders.)

mod support;

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::time::Instant;

use failover_bot::journal::{Entry, Journal, JournalError};
use failover_bot::leader::{LeaderElection, LeaseTiming};
use support::fault_proxy::{Fault, FaultProxy, Upstream};
use support::kube_env::{KubeEnv, ADMIN_TOKEN};

const NAMESPACE: &str = "failover-bot";

/// Short, so the test takes seconds: act until 1.5 s after a renewal
/// starts; another replica may take over 2 s after it last saw a change.
const TIMING: LeaseTiming = LeaseTiming {
    duration: Duration::from_secs(2),
    margin: Duration::from_millis(500),
    retry_every: Duration::from_millis(250),
    call_timeout: Duration::from_millis(400),
};

fn election(env: &KubeEnv, identity: &str) -> LeaderElection {
    LeaderElection {
        lease_name: "failover-bot".into(),
        namespace: NAMESPACE.into(),
        identity: identity.into(),
        context: env.clusters()[0].context.clone(),
        tls: failover_bot::backend::kube::tls::TlsVerification::Required,
        timing: TIMING,
    }
}

/// A client that reaches cluster 0 through `proxy`.
async fn client_via(env: &KubeEnv, proxy: &FaultProxy) -> kube::Client {
    let path = env.kubeconfig_via(ADMIN_TOKEN, &[proxy.url()]);
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let options = KubeConfigOptions {
        context: Some(env.clusters()[0].context.clone()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn a_silent_home_api_server_stops_the_leader_before_another_replica_can_take_the_lease() {
    let env = KubeEnv::start(1).await;
    env.apply(
        0,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"),
    );
    let (cert, key) = env.serving_cert(0);
    let upstream = Upstream::https(&env.clusters()[0].server, cert.clone(), cert, key);
    let proxy = FaultProxy::start(upstream).await;

    let mut a = election(&env, "a")
        .campaign_on(client_via(&env, &proxy).await)
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), a.acquired())
        .await
        .expect("a leads");
    let mut b = election(&env, "b")
        .campaign_on(env.client(0).await)
        .unwrap();
    let b_deadline = b.deadline();
    let b_leads = tokio::spawn(async move {
        b.acquired().await;
        (Instant::now(), b)
    });

    // While its API server answers, a renews and b waits, for longer than
    // the Lease lasts.
    tokio::time::sleep(TIMING.duration * 2).await;
    assert!(a.deadline().check().is_ok(), "a still leads");
    assert!(b_deadline.acting_until().is_none(), "b waits");
    // a's journal, as serve guards it: it records while a leads.
    let mut journal = Journal::in_memory().guarded(Box::new(a.deadline()));
    journal
        .append(chrono::Utc::now(), unfreeze())
        .expect("a records while it leads");

    proxy.set(Fault::Timeout);
    let silent_at = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), a.lost())
        .await
        .expect("a stops acting while its API server is silent");
    let a_stopped_at = Instant::now();
    let deadline = a.deadline().latest().expect("a's last deadline");
    assert!(a.deadline().check().is_err(), "a refuses to act after it");
    let refused = journal.append(chrono::Utc::now(), unfreeze());
    assert!(
        matches!(refused, Err(JournalError::NotActing { .. })),
        "a records nothing more, so it acts on nothing more: {refused:?}"
    );
    // At most one renewal already on its way when the silence began landed.
    let bound = TIMING.acting_time() + TIMING.call_timeout;
    assert!(
        deadline - silent_at <= bound,
        "deadline {:?} after the silence began",
        deadline - silent_at
    );

    let (b_led_at, _b) = tokio::time::timeout(Duration::from_secs(15), b_leads)
        .await
        .expect("b takes the lease")
        .unwrap();
    eprintln!(
        "after the silence began: a's deadline {:?}, a stopped {:?}, b took the Lease {:?}",
        deadline - silent_at,
        a_stopped_at - silent_at,
        b_led_at - silent_at
    );
    // a's last renewal started at deadline − (duration − margin); b saw
    // its record no earlier and waited a whole duration after that.
    assert!(
        b_led_at >= deadline + TIMING.margin,
        "b took over {:?} after a's deadline",
        b_led_at.saturating_duration_since(deadline)
    );
    assert!(a_stopped_at < b_led_at, "one leader at a time");
    assert!(proxy.injected().timeouts > 0, "a's calls were silenced");
}

/// Any record will do: the guard is asked before any is made.
fn unfreeze() -> Entry {
    Entry::Unfrozen {
        env: "dev".into(),
        by: "UALICE".into(),
    }
}
