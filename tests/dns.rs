//! The engine with DNS: real kube-apiservers (identity, RoutingWeights) and
//! moto as Route53. In mode `route53` the bot writes the weighted records in
//! one batch per step; in mode `routing-weight` it waits until Route53 serves
//! the weights, which an external-dns stand-in copies there.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use kube::api::{Api, ListParams};

use failover_bot::backend::dns::{cluster_zones, DnsVerified, Route53Mode};
use failover_bot::backend::kube::crd::RoutingWeight;
use failover_bot::backend::kube::KubeBackend;
use failover_bot::backend::route53::Route53;
use failover_bot::backend::RoutingBackend;
use failover_bot::chat::MessageKind;
use failover_bot::config::Config;
use support::chat::is;
use support::kube_env::{routing_weight_yaml, KubeEnv};
use support::moto::Moto;
use support::TestBot as Bot;

use support::kube_env::ANNOTATION_PREFIX as PREFIX;
const RECORDS: [&str; 2] = ["api.dev.example.com.", "www.dev.example.com."];

/// A raw Route53 client for setting the scene (the bot's own client is
/// the subject under test).
async fn raw_client(endpoint: &str) -> aws_sdk_route53::Client {
    Route53::for_endpoint(endpoint).await.client().clone()
}

fn upsert(name: &str, kind: RrType, set_id: &str, weight: i64, value: &str) -> Change {
    Change::builder()
        .action(ChangeAction::Upsert)
        .resource_record_set(
            ResourceRecordSet::builder()
                .name(name)
                .r#type(kind)
                .set_identifier(set_id)
                .weight(weight)
                .ttl(60)
                .resource_records(ResourceRecord::builder().value(value).build().unwrap())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// A zone with a weighted A record and its (same-name) external-dns registry
/// record per cluster and name, under the bot's owner id.
async fn zone_with_records(client: &aws_sdk_route53::Client, weights: &[(&str, i64)]) -> String {
    let id = support::moto::create_zone(client, "dev.example.com.").await;
    set_weights(client, &id, weights).await;
    id
}

async fn set_weights(client: &aws_sdk_route53::Client, zone: &str, weights: &[(&str, i64)]) {
    let mut changes = Vec::new();
    for record in RECORDS {
        for (i, (cluster, weight)) in weights.iter().enumerate() {
            changes.push(upsert(
                record,
                RrType::A,
                cluster,
                *weight,
                &format!("10.0.0.{}", i + 1),
            ));
            changes.push(upsert(
                record,
                RrType::Txt,
                cluster,
                *weight,
                "\"heritage=external-dns,external-dns/owner=failover-bot\"",
            ));
        }
    }
    client
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .set_changes(Some(changes))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn config(env: &KubeEnv, mode: &str, zone: &str) -> Config {
    let routing = format!("  mode: {mode}\n  verify_timeout: 3s\n");
    let dns = format!(
        "    route53:\n      zone_id: {zone}\n      records: [{}]\n",
        RECORDS.join(", ")
    );
    Config::from_yaml(&env.config_yaml(&routing, &dns)).unwrap()
}

#[tokio::test]
async fn route53_mode_writes_every_record_in_one_batch_after_approval() {
    let env = KubeEnv::start(3).await;
    let moto = Moto::start().await;
    let raw = raw_client(&moto.endpoint()).await;
    let names: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    let zone = zone_with_records(&raw, &[(&names[0], 100), (&names[1], 0), (&names[2], 0)]).await;
    let config = config(&env, "route53", &zone);
    let route53 = Arc::new(Route53::for_endpoint(&moto.endpoint()).await);
    let kube = Arc::new(
        KubeBackend::connect(&config, Some(env.kubeconfig()))
            .await
            .unwrap(),
    );
    let zones = cluster_zones(&config);
    let bot = Bot::new(
        config,
        Arc::new(Route53Mode::new(
            kube,
            route53.clone(),
            Duration::from_secs(3),
            zones,
        )),
    );

    bot.cmd("alice", "shift 50 to c").await;
    let before_approval = route53.api_calls_by_operation();
    bot.approve("bob").await;
    assert!(bot.last_step_verified(), "{}", bot.said());
    let step = route53.api_calls_by_operation().since(&before_approval);
    assert_eq!(
        step.change_record_sets, 1,
        "one change batch for the zone: {step:?}"
    );
    let observed = route53
        .observe(&zone, &RECORDS.map(String::from))
        .await
        .unwrap();
    for (record, weights) in observed {
        assert_eq!(weights.get(&names[0]), Some(&50), "{record}");
        assert_eq!(weights.get(&names[1]), Some(&0), "{record}");
        assert_eq!(weights.get(&names[2]), Some(&50), "{record}");
    }
    // TXT twins carry the same weights.
    for record in RECORDS {
        let sets = route53.record_sets(&zone, record).await.unwrap();
        for set in sets.iter().filter(|s| s.record_type == "TXT") {
            let a = sets
                .iter()
                .find(|s| s.record_type == "A" && s.set_identifier == set.set_identifier)
                .unwrap();
            assert_eq!(set.weight, a.weight, "{record} {}", set.set_identifier);
        }
    }
}

#[tokio::test]
async fn route53_mode_refuses_a_cluster_with_the_wrong_identity() {
    let env = KubeEnv::start(3).await;
    env.set_identity(2, "k8s-elsewhere.example.com");
    let moto = Moto::start().await;
    let raw = raw_client(&moto.endpoint()).await;
    let names: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    let zone = zone_with_records(&raw, &[(&names[0], 100), (&names[1], 0), (&names[2], 0)]).await;
    let config = config(&env, "route53", &zone);
    let route53 = Arc::new(Route53::for_endpoint(&moto.endpoint()).await);
    let kube = Arc::new(
        KubeBackend::connect(&config, Some(env.kubeconfig()))
            .await
            .unwrap(),
    );
    let zones = cluster_zones(&config);
    let bot = Bot::new(
        config,
        Arc::new(Route53Mode::new(
            kube,
            route53.clone(),
            Duration::from_secs(3),
            zones,
        )),
    );
    bot.cmd("alice", "shift 50 to c").await;
    let refusal = bot.chat.ephemerals("alice").pop().expect("a refusal");
    assert!(
        is(
            &refusal,
            MessageKind::Refused,
            &[("gate", "identity_mismatch")]
        ),
        "{refusal:?}"
    );
    let observed = route53
        .observe(&zone, &RECORDS.map(String::from))
        .await
        .unwrap();
    assert!(
        observed.iter().all(|(_, w)| w.get(&names[2]) == Some(&0)),
        "nothing written"
    );
}

/// external-dns, reduced to what matters here: RoutingWeight weights → Route53.
async fn external_dns_once(env: &KubeEnv, raw: &aws_sdk_route53::Client, zone: &str) {
    let mut weights = Vec::new();
    for i in 0..env.clusters().len() {
        let api: Api<RoutingWeight> = Api::namespaced(env.client(i).await, "operators");
        for rw in api.list(&ListParams::default()).await.unwrap().items {
            if let Some(w) = rw.spec.weight(PREFIX) {
                weights.push((rw.spec.cluster_name.clone(), i64::from(w)));
            }
        }
    }
    let borrowed: Vec<(&str, i64)> = weights.iter().map(|(c, w)| (c.as_str(), *w)).collect();
    set_weights(raw, zone, &borrowed).await;
}

#[tokio::test]
async fn routing_weight_mode_waits_for_route53_and_names_records_that_lag() {
    let env = Arc::new(KubeEnv::start(3).await);
    let moto = Moto::start().await;
    let raw = raw_client(&moto.endpoint()).await;
    let names: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    for (i, name) in names.iter().enumerate() {
        env.apply(i, &routing_weight_yaml(name, if i == 0 { 100 } else { 0 }));
    }
    let zone = zone_with_records(&raw, &[(&names[0], 100), (&names[1], 0), (&names[2], 0)]).await;
    let config = config(&env, "routing-weight", &zone);
    let route53 = Arc::new(Route53::for_endpoint(&moto.endpoint()).await);
    let kube: Arc<dyn RoutingBackend> = Arc::new(
        KubeBackend::connect(&config, Some(env.kubeconfig()))
            .await
            .unwrap(),
    );
    let backend = Arc::new(DnsVerified::new(
        kube,
        route53,
        Duration::from_secs(3),
        cluster_zones(&config),
    ));
    let bot = Bot::new(config, backend);

    // external-dns runs: the step is verified in Route53 too.
    let syncing = {
        let (env, raw, zone) = (env.clone(), raw.clone(), zone.clone());
        tokio::spawn(async move {
            loop {
                external_dns_once(&env, &raw, &zone).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    bot.cmd("alice", "shift 50 to c").await;
    bot.approve("bob").await;
    assert!(bot.last_step_verified(), "{}", bot.said());
    syncing.abort();

    // external-dns stopped: Route53 never shows the next step.
    bot.chat.clear();
    bot.cmd("alice", "shift 100 to c").await;
    bot.approve("bob").await;
    let results = bot.chat.of_kind(MessageKind::StepResult);
    assert!(
        results.iter().any(|m| m.fact("outcome") == Some("applied")),
        "{results:?}"
    );
    let stopped = bot.chat.of_kind(MessageKind::Finished);
    assert!(
        stopped.iter().any(|m| m.fact("outcome") == Some("failed")),
        "an unverified step stops the operation: {}",
        bot.said()
    );
    bot.cmd("carol", "status").await;
    let status = bot.chat.posts().pop().unwrap().1;
    let drift = status.fact("drift").unwrap_or_default();
    assert!(drift.contains("Route53 api.dev.example.com."), "{status:?}");
}

fn check_cli(env: &KubeEnv, moto: &Moto, config: &Config) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, serde_json::to_string(config).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args(["check", "--config"])
        .arg(&path)
        .env("KUBECONFIG", env.kubeconfig())
        .env("AWS_ENDPOINT_URL_ROUTE_53", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
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
async fn check_reaches_route53_through_the_standard_aws_environment() {
    let env = KubeEnv::start(3).await;
    let moto = Moto::start().await;
    let raw = raw_client(&moto.endpoint()).await;
    let names: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    for (i, name) in names.iter().enumerate() {
        env.apply(i, &routing_weight_yaml(name, if i == 0 { 100 } else { 0 }));
    }
    let zone = zone_with_records(&raw, &[(&names[0], 100), (&names[1], 0), (&names[2], 0)]).await;
    let (ok, out) = check_cli(&env, &moto, &config(&env, "routing-weight", &zone));
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "✓ Route53 zone {zone}: every record has a weighted set per cluster"
        )),
        "{out}"
    );

    // A second zone where cluster c has no records.
    let partial = zone_with_records(&raw, &[(&names[0], 100), (&names[1], 0)]).await;
    let (ok, out) = check_cli(&env, &moto, &config(&env, "routing-weight", &partial));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "api.dev.example.com. has no weighted set for {}",
            names[2]
        )),
        "{out}"
    );
    assert!(out.contains("some checks failed"), "{out}");
}

/// Attaches `health_check` to `cluster`'s A records on every name.
async fn attach_health_check(
    raw: &aws_sdk_route53::Client,
    zone: &str,
    cluster: &str,
    index: usize,
    weight: i64,
    health_check: &str,
) {
    let changes = RECORDS
        .iter()
        .map(|record| {
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(
                    ResourceRecordSet::builder()
                        .name(*record)
                        .r#type(RrType::A)
                        .set_identifier(cluster)
                        .weight(weight)
                        .ttl(60)
                        .health_check_id(health_check)
                        .resource_records(
                            ResourceRecord::builder()
                                .value(format!("10.0.0.{}", index + 1))
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        })
        .collect();
    raw.change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .set_changes(Some(changes))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn route53_health_checks_on_a_clusters_records_gate_its_traffic() {
    use aws_sdk_route53::types::{HealthCheckConfig, HealthCheckType};
    let env = KubeEnv::start(3).await;
    let moto = Moto::start().await;
    let raw = raw_client(&moto.endpoint()).await;
    let names: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    let zone = zone_with_records(&raw, &[(&names[0], 100), (&names[1], 0), (&names[2], 0)]).await;
    let check = raw
        .create_health_check()
        .caller_reference("hc-c")
        .health_check_config(
            HealthCheckConfig::builder()
                .r#type(HealthCheckType::Http)
                .ip_address("10.0.0.3")
                .port(80)
                .resource_path("/healthz")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let check_id = check.health_check().unwrap().id().to_owned();
    attach_health_check(&raw, &zone, &names[2], 2, 0, &check_id).await;

    let config = config(&env, "route53", &zone);
    let zones = cluster_zones(&config);
    let route53 = Arc::new(Route53::for_endpoint(&moto.endpoint()).await);
    let kube = Arc::new(
        KubeBackend::connect(&config, Some(env.kubeconfig()))
            .await
            .unwrap(),
    );
    let bot = Bot::new(
        config,
        Arc::new(Route53Mode::new(
            kube,
            route53.clone(),
            Duration::from_secs(3),
            zones,
        )),
    );

    // The check reports success: the step goes through.
    bot.cmd("alice", "shift 10 to c").await;
    bot.approve("bob").await;
    assert!(bot.last_step_verified(), "{}", bot.said());

    // A check that cannot be read (deleted) refuses raising c any further.
    raw.delete_health_check()
        .health_check_id(&check_id)
        .send()
        .await
        .unwrap();
    bot.cmd("alice", "shift 50 to c").await;
    let refusal = bot.chat.ephemerals("alice").pop().expect("a refusal");
    assert!(
        is(
            &refusal,
            MessageKind::Refused,
            &[("gate", "unhealthy"), ("probe", "route53")]
        ),
        "{refusal:?}"
    );
    assert!(
        refusal.text.contains(&check_id),
        "the check is named: {refusal:?}"
    );
    let observed = route53
        .observe(&zone, &RECORDS.map(String::from))
        .await
        .unwrap();
    assert!(
        observed.iter().all(|(_, w)| w.get(&names[2]) == Some(&10)),
        "nothing written: {observed:?}"
    );
}
