//! Route53's API limit (5 requests per second per AWS account, shared with
//! external-dns), against moto behind the fault proxy (issue 14, item 4):
//!
//! - the bot's Route53 requests share one rate budget in which a step's go
//!   first, so reads queued behind a step do not hold up its change batch;
//! - `status` is single-flight per environment with a short cache, so 50
//!   concurrent `status` commands during a step make one round of reads,
//!   and the step, under a proxy that throttles past 5 requests per second
//!   as Route53 does, is applied, not throttled into a restore.
//!
//! Counts and order of requests, not wall-clock times, are asserted.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::types::{ChangeAction, ResourceRecordSet};
use futures::future::join_all;

use failover_bot::backend::dns::{cluster_zones, Route53Mode};
use failover_bot::backend::kube::KubeBackend;
use failover_bot::backend::route53::Route53;
use failover_bot::chat::MessageKind;
use failover_bot::config::Config;
use support::fault_proxy::{Fault, FaultProxy, Rule, Upstream};
use support::kube_env::KubeEnv;
use support::moto::{change_record_sets, Moto};
use support::TestBot as Bot;

const RECORDS: [&str; 2] = ["api.dev.example.com.", "www.dev.example.com."];
/// Route53's limit per account, requests per second.
const ACCOUNT_LIMIT: u32 = 5;
/// The bot's share: the default of `routing.route53_requests_per_second`.
const SHARE: f64 = 2.0;
const BURST: usize = 50;
const WAIT: Duration = Duration::from_secs(30);

/// Route53's answer past its rate limit.
const THROTTLING: &str = "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
     <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
     <RequestId>test</RequestId></ErrorResponse>";

fn weighted_sets(clusters: &[String], weights: &[u8]) -> Vec<ResourceRecordSet> {
    support::moto::owned_weighted_sets(&RECORDS, clusters, weights)
}

/// Moto behind a proxy that throttles as Route53 does, a zone whose
/// records are at `weights`, and the scene-setting client (direct to moto).
struct Scene {
    _moto: Moto,
    proxy: FaultProxy,
    admin: Route53,
    zone: String,
}

impl Scene {
    async fn start(clusters: &[String], weights: &[u8]) -> Scene {
        let moto = Moto::start().await;
        let proxy = FaultProxy::start(Upstream::http(&moto.endpoint())).await;
        proxy.set(
            Rule::new(Fault::OverRate {
                per_second: ACCOUNT_LIMIT,
                code: 400,
            })
            .body("text/xml", THROTTLING),
        );
        let admin = Route53::for_endpoint(&moto.endpoint()).await;
        let zone = support::moto::create_zone(admin.client(), "dev.example.com.").await;
        let scene = Scene {
            _moto: moto,
            proxy,
            admin,
            zone,
        };
        scene.set_weights(clusters, weights).await;
        scene
    }

    async fn set_weights(&self, clusters: &[String], weights: &[u8]) {
        let sets = weighted_sets(clusters, weights);
        change_record_sets(&self.admin, &self.zone, ChangeAction::Upsert, sets).await;
    }

    /// The bot's client, through the proxy, spaced to `rate`.
    async fn bot_client(&self, rate: f64) -> Arc<Route53> {
        Arc::new(
            Route53::for_endpoint(&self.proxy.url())
                .await
                .with_requests_per_second(rate),
        )
    }

    /// Every record's weights, read from moto directly.
    async fn weights(&self, clusters: &[String]) -> Vec<Vec<u8>> {
        let names = RECORDS.map(String::from);
        let observed = self.admin.observe(&self.zone, &names).await.unwrap();
        observed
            .iter()
            .map(|(_, w)| {
                clusters
                    .iter()
                    .map(|c| w.get(c.as_str()).copied().unwrap_or(u8::MAX))
                    .collect()
            })
            .collect()
    }

    /// Waits until the proxy has seen more than `count` requests.
    async fn requests_above(&self, count: u64) {
        tokio::time::timeout(WAIT, async {
            while self.proxy.requests() <= count {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the step reached Route53");
    }
}

fn config(env: &KubeEnv, zone: &str) -> Config {
    let routing =
        format!("  mode: route53\n  verify_timeout: 10s\n  route53_requests_per_second: {SHARE}\n");
    let dns = format!(
        "    route53:\n      zone_id: {zone}\n      records: [{}]\n",
        RECORDS.join(", ")
    );
    Config::from_yaml(&env.config_yaml(&routing, &dns)).unwrap()
}

/// The engine in mode `route53` on `route53`; identities from the real
/// API servers.
async fn bot(env: &KubeEnv, config: &Config, route53: Arc<Route53>) -> Bot {
    let kube = Arc::new(
        KubeBackend::connect(config, Some(env.kubeconfig()))
            .await
            .unwrap(),
    );
    let backend = Route53Mode::new(
        kube,
        route53,
        config.routing.verify_timeout,
        cluster_zones(config),
    );
    Bot::new(config.clone(), Arc::new(backend))
}

/// Requests one `status` alone makes, read from the proxy's counter
/// (a fresh engine: nothing cached).
async fn one_status_round(env: &KubeEnv, config: &Config, scene: &Scene) -> u64 {
    let bot = bot(env, config, scene.bot_client(SHARE).await).await;
    let before = scene.proxy.requests();
    bot.cmd("alice", "status").await;
    scene.proxy.requests() - before
}

#[tokio::test]
async fn reads_queued_behind_a_step_do_not_hold_up_its_change_batch() {
    const READS: usize = 20;
    let env = KubeEnv::start(2).await;
    let clusters: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    let scene = Scene::start(&clusters, &[100, 0]).await;
    // 10 per second (above the config's bound and the proxy's, which is
    // lifted here, to keep the test short): the 20 reads take 2 s to go out.
    scene.proxy.clear();
    let route53 = scene.bot_client(10.0).await;
    let target = support::weights(&[(&clusters[0], 50), (&clusters[1], 50)]);

    let reads_done = Arc::new(AtomicUsize::new(0));
    let reads: Vec<_> = (0..READS)
        .map(|_| {
            let (route53, zone, done) = (route53.clone(), scene.zone.clone(), reads_done.clone());
            let first = vec![RECORDS[0].to_owned()];
            tokio::spawn(async move {
                route53.observe(&zone, &first).await.expect("a read");
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // The first read has gone; the others wait for their turns. The step
    // runs in a task of its own, like the reads, so that no task is
    // favoured by the runtime (the test's own task is polled first).
    scene.requests_above(0).await;
    let step = {
        let (route53, zone, done) = (route53.clone(), scene.zone.clone(), reads_done.clone());
        let names = RECORDS.map(String::from);
        tokio::spawn(async move {
            let written = route53.write_weights(&zone, &names, &target).await;
            (written, done.load(Ordering::SeqCst))
        })
    };
    let (written, reads_before_the_step_was_done) = step.await.unwrap();
    for read in reads {
        read.await.unwrap();
    }

    eprintln!("{reads_before_the_step_was_done} of {READS} queued reads went before the step's write was done");
    let written = written.expect("the step's write");
    assert_eq!(written.batches, 1, "{written:?}");
    // The step's requests (a read per name, its batch, a `GetChange`):
    // before each, at most one read that took a turn while the step was
    // not waiting; and the read that had gone already.
    assert!(
        reads_before_the_step_was_done <= 1 + 4,
        "{reads_before_the_step_was_done} of {READS} queued reads went before the step's write was done"
    );
    assert_eq!(reads_done.load(Ordering::SeqCst), READS);
    assert_eq!(scene.weights(&clusters).await, vec![vec![50, 50]; 2]);
}

#[tokio::test]
async fn fifty_status_commands_during_a_step_make_one_round_of_reads_and_the_step_applies() {
    let env = KubeEnv::start(2).await;
    let clusters: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    let scene = Scene::start(&clusters, &[100, 0]).await;
    let config = config(&env, &scene.zone);
    let c2 = clusters[1].clone();

    let round = one_status_round(&env, &config, &scene).await;
    assert!(round > 0, "a status reads Route53");

    // The same step alone, for its count of requests; then back.
    let bot = bot(&env, &config, scene.bot_client(SHARE).await).await;
    bot.cmd("alice", &format!("shift 50 to {c2}")).await;
    let before = scene.proxy.requests();
    bot.approve("bob").await;
    let step_alone = scene.proxy.requests() - before;
    assert!(bot.last_step_verified(), "{}", bot.said());
    scene.set_weights(&clusters, &[100, 0]).await;

    // The step again, with 50 `status` commands once it is under way.
    bot.cmd("alice", &format!("shift 50 to {c2}")).await;
    let statuses_before = bot.chat.of_kind(MessageKind::Status).len();
    let before = scene.proxy.requests();
    let burst = async {
        scene.requests_above(before).await;
        join_all((0..BURST).map(|_| bot.cmd("carol", "status"))).await;
    };
    tokio::join!(bot.approve("bob"), burst);
    let during = scene.proxy.requests() - before;
    eprintln!(
        "requests: the step alone {step_alone}, one status {round}, the step with {BURST} statuses {during}"
    );

    assert_eq!(
        bot.chat.of_kind(MessageKind::Status).len() - statuses_before,
        BURST,
        "every status answered"
    );
    assert_eq!(
        during,
        step_alone + round,
        "the step ({step_alone} requests) and one round of status reads ({round}), not {BURST}"
    );
    assert!(bot.last_step_verified(), "{}", bot.said());
    assert_eq!(scene.weights(&clusters).await, vec![vec![50, 50]; 2]);
    assert_eq!(
        scene.proxy.injected().total(),
        0,
        "nothing throttled: {}",
        scene.proxy.injected()
    );
}
