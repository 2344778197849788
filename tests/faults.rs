//! Faults between the bot and every peer, injected by a proxy
//! (`support::fault_proxy`) in front of the real peer: kube-apiservers,
//! moto as Route53, and the fake Slack's Web API. For each fault the step
//! must end honestly: either it completed everywhere (the fault was
//! transient and retried within bounds) or every cluster is back at its
//! weight from before the step (or nothing was written) — and the channel
//! says which, naming what failed. The real state after the step is read
//! around the proxy and compared with what the channel says.
//!
//! A Slack outage during a step must not stop the step; what the bot said
//! meanwhile reaches the thread when Slack is back, in order, once.
//!
//! Every test prints one `faults injected:` line per peer and kind.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_route53::types::{ChangeAction, ResourceRecordSet};
use kube::api::{Api, PostParams};

use failover_bot::backend::dns::{cluster_zones, Route53Mode};
use failover_bot::backend::kube::crd::RoutingWeight;
use failover_bot::backend::kube::KubeBackend;
use failover_bot::backend::route53::Route53;
use failover_bot::chat::{Message, MessageKind};
use failover_bot::config::Config;
use support::chat::is;
use support::fake_slack::{FakeSlack, Posted};
use support::fault_proxy::{Fault, FaultProxy, Rule, Upstream};
use support::kube_env::{routing_weight_yaml, KubeEnv, ADMIN_TOKEN, ANNOTATION_PREFIX};
use support::moto::{change_record_sets, Moto};
use support::serve_proc::ServeProc;
use support::{Said, TestBot as Bot};

/// The weights every case starts from (clusters a, b, c) and the target of
/// `shift 50 to c`: c is raised first, then a is lowered.
const BEFORE: [u8; 3] = [100, 0, 0];
const AFTER: [u8; 3] = [50, 0, 50];
const SHIFT: &str = "shift 50 to c";
/// However a peer fails, a step ends within this: the clients' own
/// timeouts are 15 s (kube read) and 20 s (a Route53 operation), and
/// retries must be bounded too.
const STEP_BOUND: Duration = Duration::from_secs(40);

/// How a step ended, by what the channel says and what the peers hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// Applied and verified everywhere: the peers hold the plan's weights.
    Completed,
    /// Failed after writing; every cluster was put back to its weight from
    /// before the step.
    Restored,
    /// Refused before any write: nothing changed.
    Refused,
}

impl Ended {
    /// The weights the peers must hold after a step that ended like this.
    fn weights(self) -> [u8; 3] {
        match self {
            Ended::Completed => AFTER,
            Ended::Restored | Ended::Refused => BEFORE,
        }
    }
}

/// One fault, the outcome it must lead to, and what the channel must name
/// when the step did not complete (in the `errors` fact of the message
/// that says how it ended: what failed, as the API said it).
struct Case {
    name: &'static str,
    rule: Rule,
    expect: Ended,
    names: String,
    /// What the report must say caused the failure, if anything particular.
    cause: Option<&'static str>,
}

fn case(name: &'static str, rule: Rule, expect: Ended, names: &str) -> Case {
    Case {
        name,
        rule,
        expect,
        names: names.to_owned(),
        cause: None,
    }
}

impl Case {
    /// The channel must name the cause (case-insensitive), not only the cluster.
    fn saying(mut self, cause: &'static str) -> Case {
        self.cause = Some(cause);
        self
    }
}

/// The step result the bot posted, and what it claims: a result in the
/// thread, or (refused before any write) the plan marked refused and the
/// operation's closing message saying it stopped. Anything else — a step
/// left half-done, or no result at all — fails the test.
fn ended(bot: &Bot) -> (Ended, Message) {
    let said = bot.said();
    let messages: Vec<Message> = bot
        .chat
        .said()
        .iter()
        .filter_map(Said::message)
        .cloned()
        .collect();
    let find = |kind, facts: &[(&str, &str)]| messages.iter().find(|m| is(m, kind, facts));
    let result = find(MessageKind::StepResult, &[("step", "1")])
        .or_else(|| {
            find(
                MessageKind::Finished,
                &[("step", "1"), ("outcome", "failed")],
            )
        })
        .unwrap_or_else(|| panic!("no step result in the channel:\n{said}"))
        .clone();
    let applied = [("outcome", "applied"), ("verified", "true")];
    let claim = if is(&result, MessageKind::StepResult, &applied) {
        Ended::Completed
    } else if is(&result, MessageKind::StepResult, &[("outcome", "restored")]) {
        Ended::Restored
    } else if is(&result, MessageKind::Finished, &[("cause", "refused")])
        && find(MessageKind::Plan, &[("status", "refused")]).is_some()
    {
        Ended::Refused
    } else {
        panic!("the step result claims neither completion nor a full restore:\n{said}");
    };
    (claim, result)
}

/// Approves the pending step and waits for it to end, within `STEP_BOUND`.
async fn run_step(bot: &Bot, case: &Case) -> Duration {
    let started = Instant::now();
    let ended = tokio::time::timeout(STEP_BOUND, bot.approve("bob")).await;
    assert!(
        ended.is_ok(),
        "{}: the step did not end within {STEP_BOUND:?}: retries must be bounded; chat:\n{}",
        case.name,
        bot.said()
    );
    started.elapsed()
}

/// The step's outcome must be the expected one, the peers must hold what
/// the channel says, and a step that did not complete must name what failed.
fn check(case: &Case, bot: &Bot, real: &[u8; 3], took: Duration, injected: u64) {
    let (claim, result) = ended(bot);
    eprintln!(
        "fault {:?}: {injected} injected; step ended after {took:.1?}: {}",
        case.name,
        result.headline()
    );
    assert!(injected > 0, "{}: the fault was never hit", case.name);
    assert_eq!(
        *real,
        claim.weights(),
        "{}: the peers hold what the channel says: {result:?}",
        case.name
    );
    let errors = result.fact("errors").unwrap_or_default();
    if claim != Ended::Completed {
        assert!(
            errors.contains(&case.names),
            "{}: the channel names {}: {result:?}",
            case.name,
            case.names
        );
    }
    if let Some(cause) = case.cause {
        assert!(
            errors.to_lowercase().contains(cause),
            "{}: the channel says why ({cause}): {result:?}",
            case.name
        );
    }
    assert_eq!(claim, case.expect, "{}: {}", case.name, bot.said());
}

/// Faults injected per peer and kind, for the summary line.
#[derive(Default)]
struct Tally(BTreeMap<String, u64>);

impl Tally {
    fn add(&mut self, proxy: &FaultProxy) {
        for (kind, n) in proxy.injected().by_kind() {
            *self.0.entry(kind).or_default() += n;
        }
    }

    fn summary(&self, peer: &str) -> String {
        let kinds: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}×{n}")).collect();
        format!(
            "faults injected: {peer}: {} (total {})",
            kinds.join(" "),
            self.0.values().sum::<u64>()
        )
    }
}

// ---------------------------------------------------------------- Kubernetes

/// A TLS-terminating proxy in front of every cluster's API server, and a
/// kubeconfig (admin token) that reaches the clusters through them.
async fn kube_proxies(env: &KubeEnv) -> (Vec<FaultProxy>, PathBuf) {
    let mut proxies = Vec::new();
    for (i, cluster) in env.clusters().iter().enumerate() {
        let (cert, key) = env.serving_cert(i);
        let upstream = Upstream::https(&cluster.server, cert.clone(), cert, key);
        proxies.push(FaultProxy::start(upstream).await);
    }
    let servers: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    let kubeconfig = env.kubeconfig_via(ADMIN_TOKEN, &servers);
    (proxies, kubeconfig)
}

/// Puts the RoutingWeights at `weights` (directly, not through a proxy).
async fn set_weights(env: &KubeEnv, weights: [u8; 3]) {
    for (i, cluster) in env.clusters().iter().enumerate() {
        let api: Api<RoutingWeight> = Api::namespaced(env.client(i).await, "operators");
        match api.get_opt(&cluster.name).await.unwrap() {
            Some(mut rw) => {
                rw.spec.set_weight(ANNOTATION_PREFIX, weights[i]);
                api.replace(&cluster.name, &PostParams::default(), &rw)
                    .await
                    .unwrap();
            }
            None => env.apply(i, &routing_weight_yaml(&cluster.name, weights[i])),
        }
    }
}

/// The RoutingWeights' weights, read directly (not through a proxy).
async fn real_weights(env: &KubeEnv) -> [u8; 3] {
    let mut out = [0; 3];
    for (i, cluster) in env.clusters().iter().enumerate() {
        let api: Api<RoutingWeight> = Api::namespaced(env.client(i).await, "operators");
        let rw = api.get(&cluster.name).await.unwrap();
        out[i] = rw
            .spec
            .weight(ANNOTATION_PREFIX)
            .expect("every RoutingWeight has a weight");
    }
    out
}

/// PUT of a RoutingWeight: the bot's write of one cluster's weight.
fn kube_write(fault: Fault) -> Rule {
    Rule::new(fault).only("PUT", "/routingweights/")
}

/// Faults on cluster a's write, which comes after c was raised: a failed
/// write must put c back.
fn kube_cases(a: &str) -> Vec<Case> {
    let status = |code, retry_after| Fault::Status { code, retry_after };
    vec![
        // kube's client retries 429 (after Retry-After) and 503 itself.
        case(
            "one 429 with Retry-After: 1",
            kube_write(status(429, Some(1))).times(1),
            Ended::Completed,
            a,
        ),
        case(
            "two 503s",
            kube_write(status(503, None)).times(2),
            Ended::Completed,
            a,
        ),
        // A 500 may or may not have been acted on: not retried.
        case(
            "one 500",
            kube_write(status(500, None)).times(1),
            Ended::Restored,
            a,
        ),
        case(
            "a reset connection",
            kube_write(Fault::Reset).times(1),
            Ended::Restored,
            a,
        )
        .saying("connection reset"),
        case(
            "no answer (the client's 15 s read timeout)",
            kube_write(Fault::Timeout).times(1),
            Ended::Restored,
            a,
        )
        .saying("timed out"),
        case(
            "a slow answer (2 s)",
            kube_write(Fault::Slow(Duration::from_secs(2))),
            Ended::Completed,
            a,
        ),
        // A cluster that keeps answering 503: retrying must stop within
        // the bound, and the step is put back. (Last: it is the slowest.)
        case(
            "503 on every attempt",
            kube_write(status(503, None)),
            Ended::Restored,
            a,
        )
        .saying("503"),
    ]
}

/// Routing-weight mode, three clusters, faults on cluster a's RoutingWeight
/// write (the second phase of `shift 50 to c`, after c was raised): every
/// step either completes on every cluster or is put back everywhere, and
/// the thread says which, naming cluster a when it failed.
#[tokio::test]
async fn kube_write_faults_complete_everywhere_or_are_put_back_and_said_so() {
    let env = KubeEnv::start(3).await;
    let (proxies, kubeconfig) = kube_proxies(&env).await;
    let routing = "  mode: routing-weight\n  verify_timeout: 2s\n";
    let config = Config::from_yaml(&env.config_yaml(routing, "")).unwrap();

    for case in kube_cases(&env.clusters()[0].name) {
        set_weights(&env, BEFORE).await;
        let backend = KubeBackend::connect(&config, Some(&kubeconfig))
            .await
            .expect("clients through the proxies");
        let bot = Bot::new(config.clone(), Arc::new(backend));
        bot.cmd("alice", SHIFT).await;
        let injected_before = proxies[0].faults_injected();
        proxies[0].set(case.rule.clone());
        let took = run_step(&bot, &case).await;
        proxies[0].clear();
        let injected = proxies[0].faults_injected() - injected_before;
        check(&case, &bot, &real_weights(&env).await, took, injected);
    }
    let mut tally = Tally::default();
    for proxy in &proxies {
        tally.add(proxy);
    }
    eprintln!("{}", tally.summary("kubernetes"));
}

// ------------------------------------------------------------------- Route53

const RECORDS: [&str; 2] = ["api.dev.example.com.", "www.dev.example.com."];

fn weighted_sets(clusters: &[String], weights: [u8; 3]) -> Vec<ResourceRecordSet> {
    support::moto::owned_weighted_sets(&RECORDS, clusters, &weights)
}

async fn new_zone(admin: &Route53) -> String {
    support::moto::create_zone(admin.client(), "dev.example.com.").await
}

/// Every record's weights, read directly from moto; they must agree
/// across records (a step moves them all in one batch).
async fn real_records(admin: &Route53, zone: &str, clusters: &[String]) -> [u8; 3] {
    let names = RECORDS.map(String::from);
    let observed = admin.observe(zone, &names).await.unwrap();
    let per_record: Vec<[u8; 3]> = observed
        .iter()
        .map(|(_, w)| [0, 1, 2].map(|i| w.get(&clusters[i]).copied().unwrap_or(u8::MAX)))
        .collect();
    assert!(
        per_record.windows(2).all(|p| p[0] == p[1]),
        "every record carries the same weights: {observed:?}"
    );
    per_record[0]
}

fn rrset(method: &str, fault: Fault) -> Rule {
    Rule::new(fault).only(method, "/rrset")
}

/// A `GetChange` answer for a change Route53 has not propagated yet.
const GET_CHANGE_PENDING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<GetChangeResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>PENDING</Status><SubmittedAt>2026-12-06T10:00:00.000Z</SubmittedAt></ChangeInfo></GetChangeResponse>"#;

fn get_change(fault: Fault) -> Rule {
    Rule::new(fault).only("GET", "/change/")
}

/// Faults on each Route53 call of a step. Throttling (400 `Throttling`,
/// retried by the bot with backoff) is tested in tests/route53.rs.
fn route53_cases() -> Vec<Case> {
    let change = "ChangeResourceRecordSets";
    vec![
        // The SDK makes 3 attempts; a 500 on each fails the batch, which
        // changed nothing; the records are written back all the same.
        case(
            "500 on every attempt of the change batch",
            rrset("POST", Fault::status(500)).times(3),
            Ended::Restored,
            change,
        )
        .saying("http 500"),
        // One 5xx is retried by the SDK.
        case(
            "one 503 on the change batch",
            rrset("POST", Fault::status(503)).times(1),
            Ended::Completed,
            change,
        ),
        // Route53 throttles with 400 `Throttling`; a bare 429 is no code the
        // SDK or the bot retries: the batch fails having changed nothing.
        case(
            "one 429 with Retry-After: 1 on the change batch",
            rrset(
                "POST",
                Fault::Status {
                    code: 429,
                    retry_after: Some(1),
                },
            )
            .times(1),
            Ended::Restored,
            change,
        )
        .saying("http 429"),
        case(
            "a reset connection on the change batch",
            rrset("POST", Fault::Reset).times(1),
            Ended::Completed,
            change,
        ),
        case(
            "a slow change batch (2 s)",
            rrset("POST", Fault::Slow(Duration::from_secs(2))),
            Ended::Completed,
            change,
        ),
        // The batch landed (Route53 took it: it is atomic and will apply)
        // but cannot be confirmed: the step stands and the records are
        // verified; writing them back would undo a change that happened.
        case(
            "500 on every attempt of GetChange",
            get_change(Fault::status(500)).times(3),
            Ended::Completed,
            "GetChange",
        ),
        // Route53 says PENDING past the bot's INSYNC wait: the same.
        case(
            "GetChange says PENDING until the INSYNC wait runs out",
            get_change(Fault::status(200)).body("text/xml", GET_CHANGE_PENDING),
            Ended::Completed,
            "GetChange",
        ),
        // The SDK gives up on an attempt after 8 s and tries again.
        case(
            "no answer to GetChange (8 s attempt timeout)",
            get_change(Fault::Timeout).times(1),
            Ended::Completed,
            "GetChange",
        ),
        // The weights cannot be re-read before writing: nothing is written.
        case(
            "500 on every ListResourceRecordSets",
            rrset("GET", Fault::status(500)),
            Ended::Refused,
            "ListResourceRecordSets",
        )
        .saying("http 500"),
    ]
}

/// Route53 mode with moto behind the proxy (the clusters' identities come
/// from real API servers, directly): each fault on ChangeResourceRecordSets,
/// GetChange or ListResourceRecordSets ends with the records either all at
/// the plan's weights or all back where they were, as the channel says.
#[tokio::test]
async fn route53_faults_complete_or_write_the_records_back_and_say_so() {
    let env = KubeEnv::start(3).await;
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(Upstream::http(&moto.endpoint())).await;
    let admin = Route53::for_endpoint(&moto.endpoint()).await;
    let clusters: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    let zone = new_zone(&admin).await;
    let routing = "  mode: route53\n  verify_timeout: 3s\n";
    let dns = format!(
        "    route53:\n      zone_id: {zone}\n      records: [{}]\n",
        RECORDS.join(", ")
    );
    let config = Config::from_yaml(&env.config_yaml(routing, &dns)).unwrap();
    let kube = Arc::new(
        KubeBackend::connect(&config, Some(env.kubeconfig()))
            .await
            .unwrap(),
    );

    for case in route53_cases() {
        let scene = weighted_sets(&clusters, BEFORE);
        change_record_sets(&admin, &zone, ChangeAction::Upsert, scene).await;
        // A short INSYNC wait, so that a change stuck PENDING ends it.
        let route53 = Arc::new(
            Route53::for_endpoint(&proxy.url())
                .await
                .with_insync_timeout(Duration::from_secs(2)),
        );
        let backend = Route53Mode::new(
            kube.clone(),
            route53,
            Duration::from_secs(3),
            cluster_zones(&config),
        );
        let bot = Bot::new(config.clone(), Arc::new(backend));
        bot.cmd("alice", SHIFT).await;
        let injected_before = proxy.faults_injected();
        proxy.set(case.rule.clone());
        let took = run_step(&bot, &case).await;
        proxy.clear();
        let injected = proxy.faults_injected() - injected_before;
        let real = real_records(&admin, &zone, &clusters).await;
        check(&case, &bot, &real, took, injected);
    }
    let mut tally = Tally::default();
    tally.add(&proxy);
    eprintln!("{}", tally.summary("route53"));
}

// --------------------------------------------------------------------- Slack

const WAIT: Duration = Duration::from_secs(20);
/// The outbox retries with pauses of 1, 2, 4, ... s, capped at 30 s: after
/// an outage of a few seconds, the next try comes within this.
const BACK_WITHIN: Duration = Duration::from_secs(45);

/// The chat calls Slack took since call number `from`, each as its method,
/// its message's kind and the facts that say how it stands (step, status,
/// outcome): the same sequence with and without an outage means the same
/// messages in the same order.
fn delivered_since(fake: &FakeSlack, from: usize) -> Vec<String> {
    fake.calls()
        .into_iter()
        .skip(from)
        .filter(|c| c.ok == Some(true))
        .filter(|c| c.method == "chat.postMessage" || c.method == "chat.update")
        .map(|c| {
            let metadata = &c.params["metadata"];
            let kind = metadata["event_type"].as_str().unwrap_or("(no kind)");
            let facts = &metadata["event_payload"];
            let stands: Vec<&str> = ["step", "status", "outcome"]
                .iter()
                .filter_map(|key| facts[*key].as_str())
                .collect();
            format!("{} {kind} {}", c.method, stands.join(" "))
        })
        .collect()
}

/// What one two-step operation's last step left in Slack.
struct LastStep {
    /// Shapes of the chat calls Slack took from the approval on.
    delivered: Vec<String>,
    /// The last plan's thread.
    thread: Vec<Posted>,
}

/// `/failover to TARGET steps 50,100`; step 1 is approved and applied with
/// Slack up; step 2 is approved, and `during_step_2` runs right after the
/// bot acknowledged that approval. Returns once step 2's closing message
/// and the plan's "applied" status reached Slack.
async fn two_steps(
    fake: &FakeSlack,
    serve: &ServeProc,
    target: &str,
    during_step_2: impl std::future::Future<Output = ()>,
) -> LastStep {
    let op = fake.plan_posts().len() / 2 + 1;
    let reply = serve
        .slash(
            fake,
            "alice",
            &format!("to {target} steps 50,100"),
            &format!("trig-{op}"),
        )
        .await;
    assert!(reply.contains("Working on"), "{reply}"); // the acknowledgement: text only
    serve
        .wait_for(fake, "plan 1 posted", WAIT, |f| {
            f.plan_posts().len() == 2 * op - 1
        })
        .await;
    let first = fake.plan_posts()[2 * op - 2].ts.clone();
    serve.wait_proposed(&first).await;
    approve(fake, serve, &format!("Ev-{op}-1"), &first).await;
    let applied = [("step", "1"), ("outcome", "applied"), ("verified", "true")];
    serve
        .wait_for(fake, "step 1 applied, plan 2 posted", WAIT, |f| {
            f.plan_posts().len() == 2 * op && f.thread_has(&first, "step_result", &applied)
        })
        .await;
    let second = fake.plan_posts()[2 * op - 1].ts.clone();
    serve.wait_proposed(&second).await;
    let from = fake.calls().len();
    approve(fake, serve, &format!("Ev-{op}-2"), &second).await;
    during_step_2.await;
    let op_id = op.to_string();
    let closing = [("op", op_id.as_str()), ("outcome", "completed")];
    serve
        .wait_for(fake, "step 2's results in the thread", BACK_WITHIN, |f| {
            f.thread_has(&second, "finished", &closing)
                && f.last_update(&second)
                    .is_some_and(|u| u.is("plan", &[("status", "applied"), ("approved_by", "bob")]))
        })
        .await;
    // Let anything still queued arrive (it must not: it would be a repeat).
    tokio::time::sleep(Duration::from_millis(500)).await;
    LastStep {
        delivered: delivered_since(fake, from),
        thread: fake.thread(&second),
    }
}

/// bob approves plan message `ts`; returns once the bot acknowledged.
async fn approve(fake: &FakeSlack, serve: &ServeProc, event_id: &str, ts: &str) {
    serve
        .reaction(fake, event_id, "bob", "white_check_mark", ts, true)
        .await;
}

/// Polls the clusters (directly) until they hold `weights`.
async fn wait_for_weights(env: &KubeEnv, weights: [u8; 3], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if real_weights(env).await == weights {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The real `serve` with the fake Slack's Web API behind the proxy and real
/// clusters: Slack goes away (connections refused, then 503s) right after
/// step 2 is approved. The step still completes on the clusters during the
/// outage; once Slack is back, the step's messages appear in the thread in
/// the same order as in an operation without an outage, each once.
#[tokio::test]
async fn a_slack_outage_during_a_step_delays_its_messages_not_the_step() {
    let fake = FakeSlack::start().await;
    let slack = FaultProxy::start(Upstream::http(&fake.base_url())).await;
    let env = KubeEnv::start(3).await;
    let (kube, kubeconfig) = kube_proxies(&env).await;
    set_weights(&env, BEFORE).await;
    let routing = "  mode: routing-weight\n  verify_timeout: 2s\n";
    let config = env.config_yaml(routing, "");
    let api_url = format!("{}/api", slack.url());
    let serve = ServeProc::options(&config)
        .kubeconfig(kubeconfig)
        .slack_api_url(&api_url)
        .start(&fake)
        .await;

    // Without an outage: a → c in two steps.
    let calm = two_steps(&fake, &serve, "c", async {}).await;
    assert_eq!(real_weights(&env).await, [0, 0, 100]);

    // With one: c → a, and Slack goes away once step 2 is approved. Cluster
    // a's write in step 2 (raised first; step 1's write is let through) is
    // slowed so the outage surely begins before the step's results.
    kube[0].set(
        kube_write(Fault::Slow(Duration::from_secs(1)))
            .skip(1)
            .times(1),
    );
    let cleared = std::sync::Mutex::new(None::<Instant>);
    let outage = async {
        let began = Instant::now();
        slack.set(Fault::Refuse);
        assert!(
            wait_for_weights(&env, [100, 0, 0], WAIT).await,
            "the step completed on the clusters while Slack was down; log:\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        slack.set(Fault::status(503));
        // Until the bot has met a 503 too (its retry pauses grow from 1 s).
        let met_503 = || slack.injected().status.get(&503).is_some_and(|n| *n > 0);
        let deadline = Instant::now() + BACK_WITHIN;
        while !met_503() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            met_503(),
            "the bot retried during the outage; log:\n{}",
            serve.log()
        );
        let second = fake.plan_posts()[3].ts.clone();
        assert!(
            fake.thread(&second).is_empty(),
            "nothing reached the thread during the outage"
        );
        slack.clear();
        *cleared.lock().unwrap() = Some(Instant::now());
        eprintln!("slack outage: {:.1?}", began.elapsed());
    };
    let stormy = two_steps(&fake, &serve, "a", outage).await;
    let cleared = cleared.lock().unwrap().expect("the outage ended");
    eprintln!(
        "step 2's messages all in Slack {:.1?} after it came back",
        cleared.elapsed()
    );
    assert_eq!(real_weights(&env).await, [100, 0, 0]);

    eprintln!(
        "calm:   {:?}\nstormy: {:?}",
        calm.delivered, stormy.delivered
    );
    assert_eq!(
        stormy.delivered, calm.delivered,
        "the same messages in the same order, each once"
    );
    let thread: Vec<String> = stormy.thread.iter().map(Posted::summary).collect();
    assert_eq!(thread.len(), 2, "{thread:?}");
    let applied = [("step", "2"), ("outcome", "applied"), ("verified", "true")];
    assert!(stormy.thread[0].is("step_result", &applied), "{thread:?}");
    let closing = [("op", "2"), ("outcome", "completed")];
    assert!(stormy.thread[1].is("finished", &closing), "{thread:?}");
    let injected = slack.injected();
    eprintln!(
        "faults injected: slack: {injected} ({} connections closed by the refusal)",
        injected.connections_closed
    );
    let mut tally = Tally::default();
    for proxy in &kube {
        tally.add(proxy);
    }
    eprintln!("{}", tally.summary("kubernetes (slack test)"));
}
