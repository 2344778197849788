//! The engine with the Kubernetes backend against real kube-apiservers (one
//! etcd, one API server per simulated cluster). Lunar's cluster-routing
//! controller is played by a small loop that does what it does: copy the
//! RoutingWeight's annotations onto controlled Ingresses and Services, only
//! in the cluster whose identity the RoutingWeight names.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;

use failover_bot::backend::kube::crd::RoutingWeight;
use failover_bot::backend::kube::KubeBackend;
use failover_bot::backend::{BackendError, Removal, RoutingBackend};
use failover_bot::chat::MessageKind;
use failover_bot::config::Config;
use support::backend::{Hooked, Write};
use support::chat::is;
use support::kube_env::{
    controlled_objects_yaml, copied_annotations_patch, routing_weight_yaml, KubeEnv,
};
use support::TestBot as Bot;

use support::kube_env::ANNOTATION_PREFIX as PREFIX;

fn config(env: &KubeEnv, mode: &str, verify_timeout: &str) -> Config {
    let routing = format!("  mode: {mode}\n  verify_timeout: {verify_timeout}\n");
    Config::from_yaml(&env.config_yaml(&routing, "")).unwrap()
}

/// Routing weights a=100, b=0, c=0 (as RoutingWeights) and controlled objects.
async fn setup_routing_weights(env: &KubeEnv) {
    for (i, cluster) in env.clusters().iter().enumerate() {
        let weight = if i == 0 { 100 } else { 0 };
        env.apply(i, &routing_weight_yaml(&cluster.name, weight));
        env.apply(i, &controlled_objects_yaml(""));
    }
}

async fn weight_of(env: &KubeEnv, index: usize) -> Option<u8> {
    let name = &env.clusters()[index].name;
    let api: Api<RoutingWeight> = Api::namespaced(env.client(index).await, "operators");
    api.get_opt(name)
        .await
        .unwrap()
        .and_then(|rw| rw.spec.weight(PREFIX))
}

async fn weights(env: &KubeEnv) -> Vec<Option<u8>> {
    let mut out = Vec::new();
    for i in 0..env.clusters().len() {
        out.push(weight_of(env, i).await);
    }
    out
}

/// What Lunar's cluster-routing controller does, as a loop; aborted on drop.
struct LunarController(Vec<tokio::task::JoinHandle<()>>);

impl Drop for LunarController {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl LunarController {
    async fn start(env: &KubeEnv, only: &[usize]) -> LunarController {
        let mut tasks = Vec::new();
        for &i in only {
            let client = env.client(i).await;
            let identity = env.clusters()[i].name.clone();
            tasks.push(tokio::spawn(copy_annotations_forever(client, identity)));
        }
        LunarController(tasks)
    }
}

async fn copy_annotations_forever(client: Client, identity: String) {
    loop {
        let _ = copy_annotations_once(&client, &identity).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn copy_annotations_once(client: &Client, identity: &str) -> Result<(), kube::Error> {
    let weights: Api<RoutingWeight> = Api::namespaced(client.clone(), "operators");
    let Some(rw) = weights
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|rw| rw.spec.cluster_name == identity && !rw.spec.dry_run)
    else {
        return Ok(());
    };
    let patch = copied_annotations_patch(&rw);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "web");
    let services: Api<Service> = Api::namespaced(client.clone(), "web");
    ingresses
        .patch("api", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    services
        .patch("api", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn kube_backend(env: &KubeEnv, config: &Config) -> Arc<KubeBackend> {
    Arc::new(
        KubeBackend::connect(config, Some(env.kubeconfig()))
            .await
            .expect("clients for every context"),
    )
}

#[tokio::test]
async fn failover_in_three_approved_steps_moves_the_routing_weights() {
    let env = KubeEnv::start(3).await;
    setup_routing_weights(&env).await;
    let _controller = LunarController::start(&env, &[0, 1, 2]).await;
    let config = config(&env, "routing-weight", "20s");
    let bot = Bot::new(config.clone(), kube_backend(&env, &config).await);

    bot.cmd("alice", "to c steps 10,50,100").await;
    for (step, expected) in [
        (1, [Some(90), Some(0), Some(10)]),
        (2, [Some(50), Some(0), Some(50)]),
        (3, [Some(0), Some(0), Some(100)]),
    ] {
        assert_eq!(bot.chat.plans().len(), step, "{}", bot.said());
        bot.approve("bob").await;
        assert_eq!(
            weights(&env).await,
            expected,
            "after step {step}: {}",
            bot.said()
        );
    }
    let last = bot.step_results().pop().expect("step results");
    assert!(
        is(
            &last,
            MessageKind::StepResult,
            &[("step", "3"), ("verified", "true")]
        ),
        "{}",
        bot.said()
    );
    let end = bot
        .chat
        .of_kind(MessageKind::Finished)
        .pop()
        .expect("the end");
    assert!(is(
        &end,
        MessageKind::Finished,
        &[("op", "1"), ("outcome", "completed")]
    ));
    // The controller carried the last weights to the controlled objects.
    let ingresses: Api<Ingress> = Api::namespaced(env.client(2).await, "web");
    let ingress = ingresses.get("api").await.unwrap();
    let annotations = ingress.metadata.annotations.unwrap();
    assert_eq!(annotations[&format!("{PREFIX}aws-weight")], "100");
    assert_eq!(
        annotations[&format!("{PREFIX}set-identifier")],
        env.clusters()[2].name
    );
}

#[tokio::test]
async fn identity_mismatch_is_refused_and_nothing_is_written() {
    let env = KubeEnv::start(3).await;
    setup_routing_weights(&env).await;
    env.set_identity(2, "k8s-somewhere-else.prod.example.com");
    let config = config(&env, "routing-weight", "5s");
    let bot = Bot::new(config.clone(), kube_backend(&env, &config).await);
    let before = resource_versions(&env).await;

    bot.cmd("alice", "shift 50 to c").await;
    let refusal = bot.chat.ephemerals("alice").pop().expect("a refusal");
    assert!(
        is(
            &refusal,
            MessageKind::Refused,
            &[
                ("gate", "identity_mismatch"),
                ("context", &env.clusters()[2].context),
                ("found", "k8s-somewhere-else.prod.example.com"),
                ("cluster", &env.clusters()[2].name),
            ]
        ),
        "{refusal:?}"
    );
    assert!(bot.chat.plans().is_empty());
    assert_eq!(
        resource_versions(&env).await,
        before,
        "nothing written anywhere"
    );
}

async fn resource_versions(env: &KubeEnv) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for (i, c) in env.clusters().iter().enumerate() {
        let api: Api<RoutingWeight> = Api::namespaced(env.client(i).await, "operators");
        out.push(api.get(&c.name).await.unwrap().metadata.resource_version);
    }
    out
}

#[tokio::test]
async fn a_concurrent_edit_conflicts_and_the_step_is_planned_again() {
    let env = KubeEnv::start(3).await;
    setup_routing_weights(&env).await;
    let _controller = LunarController::start(&env, &[0, 1, 2]).await;
    let config = config(&env, "routing-weight", "20s");
    let bot = Bot::new(config.clone(), kube_backend(&env, &config).await);

    bot.cmd("alice", "shift 50 to c").await;
    // Someone changes cluster a's RoutingWeight (not its weight) after the plan:
    // the resourceVersion moves, so our write must not go through blindly.
    let api: Api<RoutingWeight> = Api::namespaced(env.client(0).await, "operators");
    let patch = serde_json::json!({ "metadata": { "labels": { "touched": "by-someone" } } });
    api.patch(
        &env.clusters()[0].name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    bot.approve("bob").await;
    let said = bot.said();
    assert_eq!(bot.chat.of_kind(MessageKind::Superseded).len(), 1, "{said}");
    assert_eq!(bot.chat.plans().len(), 2, "planned again: {said}");
    bot.approve("bob").await;
    assert_eq!(
        weights(&env).await,
        [Some(50), Some(0), Some(50)],
        "{}",
        bot.said()
    );
}

/// `inner`, with `kill` run right before the bot's first write of a weight
/// to `victim` (to kill that cluster's API server).
fn kill_before_write(
    inner: Arc<dyn RoutingBackend>,
    victim: String,
    kill: impl FnOnce() + Send + 'static,
) -> Hooked {
    let kill = Mutex::new(Some(kill));
    Hooked::new(inner, ()).before_write(move |_, write| {
        let to_victim = write.cluster().name == victim;
        if matches!(write, Write::SetWeight { .. }) && to_victim {
            if let Some(kill) = kill.lock().unwrap().take() {
                kill();
            }
        }
        Ok(())
    })
}

#[tokio::test]
async fn an_api_server_dying_mid_step_restores_the_clusters_already_changed() {
    let env = Arc::new(KubeEnv::start(3).await);
    setup_routing_weights(&env).await;
    let config = config(&env, "routing-weight", "5s");
    let killer = env.clone();
    let victim = env.clusters()[0].name.clone();
    let inner = kube_backend(&env, &config).await;
    let backend = Arc::new(kill_before_write(inner, victim, move || {
        killer.kill_apiserver(0)
    }));
    let bot = Bot::new(config.clone(), backend);

    // c is raised first (succeeds), then a is lowered: a's API server dies.
    bot.cmd("alice", "shift 100 to c").await;
    bot.approve("bob").await;
    let said = bot.said();
    let result = bot.step_results().pop().expect("a step result");
    assert_eq!(result.fact("outcome"), Some("restored"), "{said}");
    let clusters = result.fact("clusters").unwrap_or_default();
    assert!(
        clusters.contains(&format!("{}=failed", env.clusters()[0].name)),
        "a is named as the one that failed: {clusters}"
    );
    assert_eq!(weight_of(&env, 2).await, Some(0), "c put back: {said}");
    assert_eq!(weight_of(&env, 1).await, Some(0));
}

#[tokio::test]
async fn ingress_annotations_mode_converges_on_real_ingresses_and_services() {
    let env = KubeEnv::start(3).await;
    for (i, weight) in [(0, Some(100)), (1, Some(0)), (2, None::<u8>)] {
        let annotations = match weight {
            Some(w) => format!("\n    {PREFIX}aws-weight: \"{w}\""),
            None => String::new(),
        };
        env.apply(i, &controlled_objects_yaml(&annotations));
    }
    let config = config(&env, "ingress-annotations", "20s");
    let bot = Bot::new(config.clone(), kube_backend(&env, &config).await);

    bot.cmd("alice", "status").await;
    let status = bot.chat.posts().pop().unwrap().1;
    let set = status.fact("weights").unwrap_or_default();
    assert!(
        set.contains(env.clusters()[0].name.as_str())
            && !set.contains(env.clusters()[2].name.as_str()),
        "c has no weight annotation, so it is not routed: {status:?}"
    );

    bot.cmd("alice", "shift 30 to b").await;
    bot.approve("bob").await;
    assert!(bot.last_step_verified(), "{}", bot.said());
    for (i, expected) in [(0, "70"), (1, "30")] {
        let client = env.client(i).await;
        let ingress = Api::<Ingress>::namespaced(client.clone(), "web")
            .get("api")
            .await
            .unwrap();
        let service = Api::<Service>::namespaced(client, "web")
            .get("api")
            .await
            .unwrap();
        for annotations in [
            ingress.metadata.annotations.unwrap(),
            service.metadata.annotations.unwrap(),
        ] {
            assert_eq!(annotations[&format!("{PREFIX}aws-weight")], expected);
            assert_eq!(
                annotations[&format!("{PREFIX}set-identifier")],
                env.clusters()[i].name
            );
        }
    }
    bot.cmd("alice", "add c").await;
    bot.approve("bob").await;
    let service = Api::<Service>::namespaced(env.client(2).await, "web")
        .get("api")
        .await
        .unwrap();
    assert_eq!(
        service.metadata.annotations.unwrap()[&format!("{PREFIX}aws-weight")],
        "0"
    );
}

#[tokio::test]
async fn verification_times_out_and_names_the_stragglers() {
    let env = KubeEnv::start(3).await;
    setup_routing_weights(&env).await;
    // No controller in cluster c: its Ingress and Service never get the weight.
    let _controller = LunarController::start(&env, &[0, 1]).await;
    let config = config(&env, "routing-weight", "2s");
    let bot = Bot::new(config.clone(), kube_backend(&env, &config).await);
    bot.cmd("alice", "to c steps 50,100").await;
    bot.approve("bob").await;
    let result = bot.step_results().pop().expect("a step result");
    assert!(
        is(
            &result,
            MessageKind::StepResult,
            &[
                ("verified", "false"),
                ("unverified", &env.clusters()[2].name)
            ]
        ),
        "{}",
        bot.said()
    );
    assert!(
        bot.engine.pending_plan_messages().is_empty(),
        "no next step after an unverified one"
    );
    bot.cmd("alice", "status").await;
    let status = bot.chat.posts().pop().unwrap().1;
    let drift = status.fact("drift").unwrap_or_default();
    let c = &env.clusters()[2].name;
    assert_eq!(
        drift,
        format!("{c}:Ingress web/api (weight none), {c}:Service web/api (weight none)"),
        "{status:?}"
    );
}

#[tokio::test]
async fn the_bot_works_with_exactly_the_shipped_role_and_not_without_it() {
    let env = KubeEnv::start(3).await;
    setup_routing_weights(&env).await;
    let _controller = LunarController::start(&env, &[0, 1, 2]).await;
    let config = config(&env, "routing-weight", "20s");
    let as_bot = env.kubeconfig_for(env.bot_token());

    let without = KubeBackend::connect(&config, Some(&as_bot)).await.unwrap();
    let check = without
        .check_cluster(&config.environments["dev"].clusters[0])
        .await;
    assert!(!check.is_ok());
    assert!(
        check
            .missing_permissions
            .iter()
            .any(|p| p.contains("update routingweights")),
        "{check:?}"
    );
    let bot = Bot::new(config.clone(), Arc::new(without));
    bot.cmd("alice", "shift 50 to c").await;
    let refusal = bot.chat.ephemerals("alice").pop().expect("a refusal");
    assert!(
        is(
            &refusal,
            MessageKind::Refused,
            &[("refusal", "unavailable")]
        ),
        "{refusal:?}"
    );
    // The API server's own word for it.
    assert!(refusal.text.contains("forbidden"), "{refusal:?}");

    let rbac = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/target/routing-weight/rbac.yaml"
    ))
    .unwrap();
    for i in 0..3 {
        env.apply(i, &rbac);
    }
    let with = KubeBackend::connect(&config, Some(&as_bot)).await.unwrap();
    for cluster in &config.environments["dev"].clusters {
        let check = with.check_cluster(cluster).await;
        assert!(check.is_ok(), "{check:?}");
    }
    let bot = Bot::new(config.clone(), Arc::new(with));
    bot.cmd("alice", "shift 50 to c").await;
    bot.approve("bob").await;
    assert_eq!(
        weights(&env).await,
        [Some(50), Some(0), Some(50)],
        "{}",
        bot.said()
    );
    bot.cmd("alice", "add b").await;
    assert_eq!(
        bot.refusals_to("alice").pop().as_deref(),
        Some("already_routed")
    );
}

fn run_cli(env: &KubeEnv, config: &Config, args: &[&str]) -> (bool, String) {
    run_cli_with(env.kubeconfig(), config, args)
}

#[tokio::test]
async fn check_and_status_on_a_healthy_and_a_broken_setup() {
    let env = KubeEnv::start(3).await;
    setup_routing_weights(&env).await;
    let config = config(&env, "routing-weight", "5s");

    let (ok, out) = run_cli(&env, &config, &["check"]);
    assert!(ok, "{out}");
    assert!(out.contains("all checks passed"), "{out}");
    assert!(
        out.contains(&format!(
            "✓ {} (context {}): identity verified, weight 100",
            env.clusters()[0].name,
            env.clusters()[0].context
        )),
        "{out}"
    );

    let (ok, out) = run_cli(&env, &config, &["status"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&env.clusters()[0].name) && out.contains("100%"),
        "{out}"
    );

    env.set_identity(1, "k8s-wrong.example.com");
    env.kill_apiserver(2);
    let (ok, out) = run_cli(&env, &config, &["check"]);
    assert!(!ok, "{out}");
    assert!(out.contains("answers as `k8s-wrong.example.com`"), "{out}");
    assert!(
        out.contains(&format!("✗ {}", env.clusters()[2].name)),
        "{out}"
    );
    assert!(out.contains("some checks failed"), "{out}");
}

#[tokio::test]
async fn a_dry_run_routing_weight_is_reported_as_dry_run_not_applied() {
    let env = KubeEnv::start(3).await;
    setup_routing_weights(&env).await;
    let _controller = LunarController::start(&env, &[0, 1, 2]).await;
    let api: Api<RoutingWeight> = Api::namespaced(env.client(2).await, "operators");
    let patch = serde_json::json!({ "spec": { "dryRun": true } });
    api.patch(
        &env.clusters()[2].name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let config = config(&env, "routing-weight", "10s");
    let bot = Bot::new(config.clone(), kube_backend(&env, &config).await);
    bot.cmd("alice", "shift 50 to c").await;
    bot.approve("bob").await;
    let said = bot.said();
    let result = bot.step_results().pop().expect("a step result");
    let c = env.clusters()[2].name.clone();
    assert_eq!(result.fact("dry_run"), Some(c.as_str()), "{said}");
    assert!(
        result
            .fact("clusters")
            .unwrap_or_default()
            .contains(&format!("{c}=dry_run")),
        "the cluster's row says dry run: {said}"
    );
    assert_eq!(
        weight_of(&env, 2).await,
        Some(50),
        "the RoutingWeight itself holds the weight"
    );
}

/// A RoutingWeight named `name` (not the cluster's name) for `cluster`.
fn routing_weight_named(name: &str, cluster: &str, weight: u8) -> String {
    routing_weight_yaml(cluster, weight).replacen(
        &format!("  name: {cluster}\n"),
        &format!("  name: {name}\n"),
        1,
    )
}

/// Every RoutingWeight in `operators` of cluster `index`: (name, clusterName, weight).
async fn routing_weights_in(env: &KubeEnv, index: usize) -> Vec<(String, String, Option<u8>)> {
    let api: Api<RoutingWeight> = Api::namespaced(env.client(index).await, "operators");
    let mut out: Vec<_> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|rw| {
            (
                rw.metadata.name.clone().unwrap_or_default(),
                rw.spec.cluster_name.clone(),
                rw.spec.weight(PREFIX),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn routing_weights_named_apart_from_their_cluster_are_found_by_cluster_name() {
    // Lunar's controller finds a cluster's RoutingWeight by spec.clusterName;
    // the object's name is free, and sites name them otherwise.
    let env = KubeEnv::start(3).await;
    for (i, cluster) in env.clusters().iter().enumerate() {
        let weight = if i == 0 { 100 } else { 0 };
        env.apply(
            i,
            &routing_weight_named(&format!("weight-{i}"), &cluster.name, weight),
        );
        env.apply(i, &controlled_objects_yaml(""));
    }
    let _controller = LunarController::start(&env, &[0, 1, 2]).await;
    let config = config(&env, "routing-weight", "20s");
    let bot = Bot::new(config.clone(), kube_backend(&env, &config).await);

    bot.cmd("alice", "to c steps 10,50,100").await;
    for step in 1..=3 {
        assert_eq!(bot.chat.plans().len(), step, "{}", bot.said());
        bot.approve("bob").await;
    }
    let last = bot.step_results().pop().expect("step results");
    assert!(
        is(
            &last,
            MessageKind::StepResult,
            &[("step", "3"), ("verified", "true")]
        ),
        "{}",
        bot.said()
    );
    for (i, weight) in [(0, 0), (1, 0), (2, 100)] {
        assert_eq!(
            routing_weights_in(&env, i).await,
            [(
                format!("weight-{i}"),
                env.clusters()[i].name.clone(),
                Some(weight)
            )],
            "cluster {i}: its one RoutingWeight carries the weight"
        );
    }

    // `add` refuses a cluster that has one under any name, and creates none.
    bot.cmd("alice", "add b").await;
    assert_eq!(
        bot.refusals_to("alice").pop().as_deref(),
        Some("already_routed")
    );
    assert_eq!(routing_weights_in(&env, 1).await.len(), 1);
}

#[tokio::test]
async fn a_second_routing_weight_for_one_cluster_is_refused_and_named() {
    let env = KubeEnv::start(3).await;
    setup_routing_weights(&env).await;
    let c = env.clusters()[2].name.clone();
    env.apply(2, &routing_weight_named("c-duplicate", &c, 0));
    let config = config(&env, "routing-weight", "5s");
    let backend = kube_backend(&env, &config).await;
    let bot = Bot::new(config.clone(), backend.clone());
    let before = routing_weights_in(&env, 2).await;

    bot.cmd("alice", "shift 50 to c").await;
    let refusal = bot.chat.ephemerals("alice").pop().expect("a refusal");
    assert!(
        is(
            &refusal,
            MessageKind::Refused,
            &[("refusal", "unavailable"), ("error", "duplicate")]
        ),
        "{refusal:?}"
    );
    assert!(
        refusal.text.contains("c-duplicate") && refusal.text.contains(c.as_str()),
        "the refusal names both RoutingWeights: {refusal:?}"
    );
    assert!(bot.chat.plans().is_empty(), "{}", bot.said());
    assert_eq!(routing_weights_in(&env, 2).await, before, "nothing written");

    // `add` of the cluster is refused too: creating a third would not help.
    let env_config = &config.environments["dev"];
    let created = backend.create(&env_config.clusters[2]).await;
    assert!(created.is_err(), "{created:?}");
    assert_eq!(routing_weights_in(&env, 2).await, before, "nothing created");
}

#[tokio::test]
async fn ingress_annotations_remove_keeps_the_objects_at_weight_zero() {
    // Deleting both annotations would make external-dns want a plain record
    // beside the other clusters' weighted ones, which Route53 refuses.
    let env = KubeEnv::start(3).await;
    for (i, weight) in [(0, 100), (1, 0), (2, 0)] {
        let cluster = &env.clusters()[i].name;
        let annotations = format!(
            "\n    {PREFIX}aws-weight: \"{weight}\"\n    {PREFIX}set-identifier: {cluster}"
        );
        env.apply(i, &controlled_objects_yaml(&annotations));
    }
    let config = config(&env, "ingress-annotations", "20s");
    let backend = kube_backend(&env, &config).await;
    let bot = Bot::new(config.clone(), backend.clone());

    bot.cmd("alice", "remove b").await;
    bot.approve("bob").await;
    // The fact the answer to `remove` tells: the objects stay, at 0.
    assert_eq!(backend.removal(), Removal::KeptAtZero);
    let client = env.client(1).await;
    let ingress = Api::<Ingress>::namespaced(client.clone(), "web")
        .get("api")
        .await
        .unwrap();
    let service = Api::<Service>::namespaced(client, "web")
        .get("api")
        .await
        .unwrap();
    for annotations in [
        ingress.metadata.annotations.unwrap(),
        service.metadata.annotations.unwrap(),
    ] {
        assert_eq!(
            annotations
                .get(&format!("{PREFIX}aws-weight"))
                .map(String::as_str),
            Some("0"),
            "{annotations:?}"
        );
        assert_eq!(
            annotations.get(&format!("{PREFIX}set-identifier")),
            Some(&env.clusters()[1].name),
            "{annotations:?}"
        );
    }
}

#[tokio::test]
async fn a_routing_weight_is_created_at_its_initial_weight_in_one_write() {
    // `/failover add CLUSTER weight N` (the seed's add_routing_weight task).
    let env = KubeEnv::start(1).await;
    let config = config(&env, "routing-weight", "5s");
    let backend = kube_backend(&env, &config).await;
    let cluster = &config.environments["dev"].clusters[0];
    assert_eq!(backend.removal(), Removal::Deleted);

    backend.create_at(cluster, 30).await.unwrap();
    assert_eq!(
        routing_weights_in(&env, 0).await,
        [(cluster.name.to_string(), cluster.name.to_string(), Some(30))]
    );
    let again = backend.create_at(cluster, 30).await;
    assert!(
        matches!(&again, Err(BackendError::Exists { object, .. }) if object == &cluster.name),
        "{again:?}"
    );
}

// ------------------------------------------------------------------- TLS

/// The kubeconfig with cluster `index`'s CA replaced by
/// `insecure-skip-tls-verify: true` (issue 14, item 6).
fn insecure_kubeconfig(env: &KubeEnv, index: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let text = std::fs::read_to_string(env.kubeconfig()).unwrap();
    let cluster_line = format!(
        "- name: {}",
        serde_json::to_string(&env.clusters()[index].name).unwrap()
    );
    let mut out = String::new();
    let mut in_cluster = false;
    for line in text.lines() {
        if line.starts_with("- name: ") {
            in_cluster = line == cluster_line;
        }
        if in_cluster && line.trim_start().starts_with("certificate-authority-data:") {
            out += "    insecure-skip-tls-verify: true\n";
            continue;
        }
        out += line;
        out.push('\n');
    }
    assert!(out.contains("insecure-skip-tls-verify"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, out).unwrap();
    (dir, path)
}

/// `failover-bot ARGS --config CONFIG` with `kubeconfig`: whether it
/// succeeded, and what it printed (stdout, then stderr).
fn run_cli_with(kubeconfig: &std::path::Path, config: &Config, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, serde_json::to_string(config).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn a_context_that_skips_tls_verification_is_refused_by_name() {
    let env = KubeEnv::start(2).await;
    let config = config(&env, "routing-weight", "5s");
    let (_dir, insecure) = insecure_kubeconfig(&env, 1);
    let refused = match KubeBackend::connect(&config, Some(&insecure)).await {
        Ok(_) => panic!("a context with insecure-skip-tls-verify was accepted"),
        Err(refused) => refused,
    };
    let context = &env.clusters()[1].context;
    assert!(
        refused.contains(&format!("context {context}"))
            && refused.contains("insecure-skip-tls-verify")
            && refused.contains("--dangerously-skip-tls-verify"),
        "{refused}"
    );
}

#[tokio::test]
async fn check_and_status_go_on_with_such_a_context_only_when_told_it_is_dangerous() {
    let env = KubeEnv::start(2).await;
    setup_routing_weights(&env).await;
    let config = config(&env, "routing-weight", "5s");
    let (_dir, insecure) = insecure_kubeconfig(&env, 1);
    let context = &env.clusters()[1].context;

    for command in ["check", "status"] {
        let (ok, out) = run_cli_with(&insecure, &config, &[command]);
        assert!(!ok, "{command}: {out}");
        assert!(
            out.contains(&format!("context {context}")) && out.contains("insecure-skip-tls-verify"),
            "{command}: {out}"
        );
    }

    let (ok, out) = run_cli_with(
        &insecure,
        &config,
        &["check", "--dangerously-skip-tls-verify"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("all checks passed"), "{out}");
    let (ok, out) = run_cli_with(
        &insecure,
        &config,
        &["status", "--dangerously-skip-tls-verify"],
    );
    assert!(ok, "{out}");
    assert!(out.contains(&env.clusters()[0].name), "{out}");
}
