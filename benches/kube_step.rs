//! Issue targets, on real kube-apiservers started here:
//! - one step across 3 clusters: the bot's own time (read, identity gates
//!   and writes; no verification wait) vs `kubectl patch` run per cluster,
//!   the way the scripted tasks did it — target ≥ 10× faster;
//! - the same step across 20 clusters — target within 2× of 3 (writes go in
//!   parallel).
//!
//! Run: `cargo bench --bench kube_step` after `scripts/test-env/provision`.

#[path = "../tests/support/kube_env.rs"]
mod kube_env;

use std::time::{Duration, Instant};

use failover_bot::backend::kube::KubeBackend;
use failover_bot::backend::RoutingBackend;
use failover_bot::config::Config;
use failover_bot::engine::apply;
use failover_bot::plan::{shift, Change, Percent, Plan, PlanScope};

use kube_env::ANNOTATION_PREFIX as PREFIX;
const ROUNDS: usize = 15;

fn config(env: &kube_env::KubeEnv) -> Config {
    Config::from_yaml(&env.config_yaml("  mode: routing-weight\n", "")).unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The bot's step: read, plan, gate (identity of every cluster), apply.
async fn bot_step(backend: &KubeBackend, config: &Config, percent: u32) -> Duration {
    let env = &config.environments["dev"];
    let started = Instant::now();
    let snapshot = backend.read(env).await.expect("read");
    let target = env.clusters.last().unwrap().name.clone();
    let after = shift(&snapshot.weights(), &target, Percent::new(percent).unwrap()).unwrap();
    let scope = PlanScope {
        env: "dev".into(),
        operation: 1,
        step: 1,
    };
    let plan = Plan::new(scope, Change::SetWeights, snapshot.weights(), after).unwrap();
    let gates = plan
        .changed_clusters()
        .filter_map(|c| env.cluster(c))
        .map(|c| backend.check_identity(c));
    for gate in futures::future::join_all(gates).await {
        gate.expect("identity");
    }
    let applied = apply(backend, env, &plan, &snapshot).await;
    assert!(applied.failure.is_none(), "{:?}", applied.failure);
    started.elapsed()
}

/// What the scripted tasks did: one kubectl per cluster, in turn.
fn kubectl_loop(env: &kube_env::KubeEnv, weight_of: impl Fn(usize) -> u8) -> Duration {
    let started = Instant::now();
    for (i, cluster) in env.clusters().iter().enumerate() {
        let patch = format!(
            r#"{{"spec":{{"annotations":[{{"key":"{PREFIX}aws-weight","value":"{}"}},{{"key":"{PREFIX}set-identifier","value":"{}"}}]}}}}"#,
            weight_of(i),
            cluster.name
        );
        let output = env.kubectl(
            i,
            &[
                "-n",
                "operators",
                "patch",
                "routingweight",
                &cluster.name,
                "--type",
                "merge",
                "-p",
                &patch,
            ],
            None,
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    started.elapsed()
}

async fn measure(n: usize) -> (Duration, Option<Duration>) {
    let env = kube_env::KubeEnv::start(n).await;
    for (i, cluster) in env.clusters().iter().enumerate() {
        env.apply(
            i,
            &kube_env::routing_weight_yaml(&cluster.name, if i == 0 { 100 } else { 0 }),
        );
    }
    let config = config(&env);
    let backend = KubeBackend::connect(&config, Some(env.kubeconfig()))
        .await
        .unwrap();
    bot_step(&backend, &config, 50).await; // warm the connections
    let mut bot = Vec::new();
    for round in 0..ROUNDS {
        bot.push(bot_step(&backend, &config, if round % 2 == 0 { 60 } else { 40 }).await);
    }
    let kubectl = (n <= 3).then(|| {
        let samples = (0..5)
            .map(|round| kubectl_loop(&env, |i| if (i + round) % 2 == 0 { 50 } else { 25 }))
            .collect();
        median(samples)
    });
    (median(bot), kubectl)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (bot3, kubectl3) = measure(3).await;
        let kubectl3 = kubectl3.unwrap();
        println!(
            "kube_step: 3 clusters: bot {bot3:?} per step (median of {ROUNDS}), kubectl patch loop {kubectl3:?} (median of 5): {:.1}x",
            kubectl3.as_secs_f64() / bot3.as_secs_f64()
        );
        let (bot20, _) = measure(20).await;
        println!(
            "kube_step: 20 clusters: bot {bot20:?} per step (median of {ROUNDS}): {:.2}x the 3-cluster step",
            bot20.as_secs_f64() / bot3.as_secs_f64()
        );
    });
}
