//! A drill to green and back on real API servers: the real `serve` binary,
//! two kube-apiservers (one etcd) holding RoutingWeights, and the fake
//! Slack on the wire. Two drills run, each `drill to b steps 50,100 and
//! back` with every step approved by a reaction; the time is the wall
//! clock's, so the figures are checked for what must hold whatever they
//! are: each scorecard's parts add up to its total, the second drill is
//! compared with the first (read back from the journal), and each drill's
//! chart reaches its thread once, as a PNG of the chart's size, through
//! Slack's external upload flow. A third drill whose upload Slack refuses
//! (`missing_scope`: the app not reinstalled) still gets its scorecard.
//! `drills` then lists all three.

mod support;

use std::time::Duration;

use kube::api::Api;

use failover_bot::backend::kube::crd::RoutingWeight;
use failover_bot::drill::chart::{HEIGHT, WIDTH};
use support::fake_slack::{FakeSlack, Fault, Posted};
use support::kube_env::{routing_weight_yaml, KubeEnv, ANNOTATION_PREFIX};
use support::serve_proc::{ServeProc, WAIT};

const DRILL: &str = "drill to b steps 50,100 and back";

async fn weights(env: &KubeEnv) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, cluster) in env.clusters().iter().enumerate() {
        let api: Api<RoutingWeight> = Api::namespaced(env.client(i).await, "operators");
        let rw = api.get(&cluster.name).await.unwrap();
        out.push(rw.spec.weight(ANNOTATION_PREFIX).expect("a weight"));
    }
    out
}

/// Runs one drill (number `n`, 1-based) to its end; returns its scorecard
/// and the thread it is in.
async fn drill(fake: &FakeSlack, serve: &ServeProc, n: usize) -> (Posted, String) {
    let before = fake.plan_posts().len();
    let reply = serve
        .slash(fake, "alice", DRILL, &format!("trig-{n}"))
        .await;
    assert!(reply.contains("Working on"), "{reply}");
    for step in 1..=4 {
        serve
            .wait_for(fake, &format!("drill {n}: plan {step} posted"), WAIT, |f| {
                f.plan_posts().len() == before + step
            })
            .await;
        let plan = fake.plan_posts()[before + step - 1].clone();
        assert!(
            plan.is("plan", &[("drill", "true"), ("total", "4")]),
            "{}",
            plan.summary()
        );
        serve.wait_proposed(&plan.ts).await;
        let event = format!("Ev-drill-{n}-{step}");
        serve
            .reaction(fake, &event, "bob", "white_check_mark", &plan.ts, true)
            .await;
    }
    let thread = fake.plan_posts()[before + 3].ts.clone();
    let op = n.to_string();
    serve
        .wait_for(fake, &format!("drill {n}: scorecard"), WAIT, |f| {
            f.thread_has(&thread, "drill_scorecard", &[("op", &op)])
        })
        .await;
    let card = fake
        .thread(&thread)
        .into_iter()
        .find(|p| p.is("drill_scorecard", &[]))
        .unwrap();
    (card, thread)
}

fn fact<'p>(post: &'p Posted, key: &str) -> &'p str {
    post.fact(key)
        .unwrap_or_else(|| panic!("no {key}: {}", post.summary()))
}

/// Each step's `waiting+applying+converging`, summed over the steps.
fn sum_of_parts(card: &Posted) -> u64 {
    fact(card, "steps")
        .split([',', '+'])
        .map(|n| n.parse::<u64>().expect("milliseconds"))
        .sum()
}

/// The chart files shared in `thread` so far: each must be whole.
async fn charts_in(fake: &FakeSlack, serve: &ServeProc, thread: &str) -> usize {
    serve
        .wait_for(fake, "the chart shared", WAIT, |f| {
            f.files()
                .iter()
                .any(|file| file.thread_ts.as_deref() == Some(thread))
        })
        .await;
    // Anything still on its way would be a second copy.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let files: Vec<_> = fake
        .files()
        .into_iter()
        .filter(|file| file.thread_ts.as_deref() == Some(thread))
        .collect();
    for file in &files {
        assert!(file.is_complete(), "{file:?}");
        assert_eq!(file.posts, 1, "the bytes went up once: {file:?}");
        assert_eq!(file.filename, "drills-dev.png");
        assert_eq!(file.content_type.as_deref(), Some("image/png"));
        assert_eq!(
            file.png_size,
            Some((WIDTH, HEIGHT)),
            "a PNG of the chart's size, {} bytes as declared",
            file.declared_length
        );
        assert_eq!(file.channel.as_deref(), Some("C1"));
    }
    files.len()
}

#[tokio::test]
async fn a_drill_to_green_and_back_on_real_clusters_is_scored_and_charted() {
    let fake = FakeSlack::start().await;
    let env = KubeEnv::start(2).await;
    for (i, cluster) in env.clusters().iter().enumerate() {
        let weight = if i == 0 { 100 } else { 0 };
        env.apply(i, &routing_weight_yaml(&cluster.name, weight));
    }
    let routing = "  mode: routing-weight\n  verify_timeout: 2s\n";
    let serve = ServeProc::options(&env.config_yaml(routing, ""))
        .kubeconfig(env.kubeconfig().to_owned())
        .start(&fake)
        .await;

    let (first, thread) = drill(&fake, &serve, 1).await;
    assert_eq!(weights(&env).await, [100, 0], "back where it began");
    let total: u64 = fact(&first, "total_ms").parse().unwrap();
    assert_eq!(sum_of_parts(&first), total, "{}", first.summary());
    assert_eq!(fact(&first, "steps").split(',').count(), 4);
    assert_eq!(fact(&first, "ended"), "completed");
    assert_eq!(first.fact("earlier"), None);
    assert_eq!(charts_in(&fake, &serve, &thread).await, 1);

    let (second, thread) = drill(&fake, &serve, 2).await;
    assert_eq!(weights(&env).await, [100, 0]);
    let total2: u64 = fact(&second, "total_ms").parse().unwrap();
    assert_eq!(sum_of_parts(&second), total2, "{}", second.summary());
    assert_eq!(fact(&second, "earlier"), "1", "{}", second.summary());
    assert_eq!(fact(&second, "last_ms"), total.to_string());
    assert_eq!(fact(&second, "best_ms"), total.to_string());
    assert_eq!(charts_in(&fake, &serve, &thread).await, 1);
    assert_eq!(fake.files().len(), 2, "one chart per drill, no more");
    assert_eq!(
        fake.calls_to("files.completeUploadExternal").len(),
        2,
        "each shared once"
    );

    // The journal holds both drills, marked as such.
    let started: Vec<_> = serve
        .journal_json()
        .into_iter()
        .filter(|r| r["type"] == "started")
        .collect();
    assert_eq!(started.len(), 2);
    assert!(started.iter().all(|r| r["header"]["drill"] == true));

    // An app not reinstalled with `files:write`: Slack refuses the upload,
    // and the scorecard has come all the same.
    fake.fail_next(
        "files.getUploadURLExternal",
        Fault::SlackError("missing_scope"),
    );
    let (third, _) = drill(&fake, &serve, 3).await;
    assert_eq!(fact(&third, "earlier"), "2", "{}", third.summary());
    serve
        .wait_for(&fake, "the refused upload", WAIT, |f| {
            f.calls_to("files.getUploadURLExternal").len() == 3
        })
        .await;
    assert_eq!(fake.files().len(), 2, "nothing more was shared");

    let reply = serve.slash(&fake, "alice", "drills", "trig-list").await;
    assert!(reply.contains("Working on"), "{reply}");
    // An ephemeral answer: Slack keeps no metadata on it, only words.
    let listed =
        |p: &Posted| p.ephemeral_user.as_deref() == Some("alice") && p.text.contains("Drills in");
    serve
        .wait_for(&fake, "the drills listed", WAIT, |f| {
            f.posts().iter().any(listed)
        })
        .await;
    let list = fake.posts().into_iter().find(listed).unwrap();
    let at = |op: &str| list.text.find(op).unwrap_or(usize::MAX);
    assert!(
        at("#3 ") < at("#2 ") && at("#2 ") < at("#1 "),
        "newest first: {}",
        list.text
    );
    assert_eq!(
        list.text.matches("completed in").count(),
        3,
        "{}",
        list.text
    );
}
