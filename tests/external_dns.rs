//! The bot beside external-dns's TXT registry: moto zones holding registry
//! records in each form external-dns v0.12 to today writes (read in
//! kubernetes-sigs/external-dns, `registry/txt.go` and
//! `registry/mapper/mapper.go`), real kube-apiservers for identity and
//! RoutingWeights, and the real engine driving three-step failovers.
//!
//! - same-name: `api.dev.example.com` TXT beside the A record (the old form);
//! - prefixed: `a-api.dev.example.com` TXT (v0.18+);
//! - upgraded: both, the same-name ones stale, as v0.18 leaves them after an
//!   upgrade from v0.12–v0.17;
//! - txt-prefix: `reg.a-api.dev.example.com` (external-dns `--txt-prefix=reg.`).

mod support;

use failover_bot::chat::MessageKind;
use std::sync::Arc;
use std::time::Duration;
use support::chat::is;

use aws_sdk_route53::types::{ChangeAction, ResourceRecord, ResourceRecordSet, RrType};
use kube::api::{Api, ListParams};

use failover_bot::backend::dns::{cluster_zones, DnsVerified, Route53Mode};
use failover_bot::backend::kube::crd::RoutingWeight;
use failover_bot::backend::kube::KubeBackend;
use failover_bot::backend::route53::{Route53, WeightedSet};
use failover_bot::backend::RoutingBackend;
use failover_bot::config::Config;
use support::kube_env::{routing_weight_yaml, KubeEnv, ANNOTATION_PREFIX as PREFIX};
use support::moto::{change_record_sets, create_zone, Moto};
use support::TestBot as Bot;

const RECORDS: [&str; 2] = ["api.dev.example.com.", "www.dev.example.com."];
/// The site's external-dns owner id.
const SITE_OWNER: &str = "default";
const BOT_OWNER: &str = "failover-bot";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    SameName,
    Prefixed,
    Upgraded,
    TxtPrefix,
}

const LAYOUTS: [Layout; 4] = [
    Layout::SameName,
    Layout::Prefixed,
    Layout::Upgraded,
    Layout::TxtPrefix,
];

impl Layout {
    /// The registry names external-dns keeps up to date for `record`'s A.
    fn live_names(self, record: &str) -> Vec<String> {
        match self {
            Layout::SameName => vec![record.to_owned()],
            Layout::Prefixed | Layout::Upgraded => vec![format!("a-{record}")],
            Layout::TxtPrefix => vec![format!("reg.a-{record}")],
        }
    }

    /// Registry names left behind and never updated again.
    fn stale_names(self, record: &str) -> Vec<String> {
        match self {
            Layout::Upgraded => vec![record.to_owned()],
            _ => Vec::new(),
        }
    }

    /// The `route53:` keys the site's registry needs in the bot's config.
    fn config_keys(self) -> &'static str {
        match self {
            Layout::TxtPrefix => "      txt_prefix: reg.\n",
            _ => "",
        }
    }
}

fn weighted(name: &str, kind: RrType, set_id: &str, weight: i64, value: &str) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(name)
        .r#type(kind)
        .set_identifier(set_id)
        .weight(weight)
        .ttl(60)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap()
}

fn registry_value(owner: &str, record: &str) -> String {
    format!(
        "\"heritage=external-dns,external-dns/owner={owner},external-dns/resource=ingress/web/{}\"",
        record.split('.').next().unwrap()
    )
}

/// What external-dns writes for these weights: the A records and the live
/// registry records (`live`: false also writes the stale forms, as the
/// release before the upgrade did).
fn external_dns_sets(
    layout: Layout,
    owner: &str,
    weights: &[(String, i64)],
    with_stale: bool,
) -> Vec<ResourceRecordSet> {
    let mut sets = Vec::new();
    for record in RECORDS {
        for (i, (cluster, weight)) in weights.iter().enumerate() {
            let ip = format!("10.0.0.{}", i + 1);
            sets.push(weighted(record, RrType::A, cluster, *weight, &ip));
            let mut names = layout.live_names(record);
            if with_stale {
                names.extend(layout.stale_names(record));
            }
            for name in names {
                let value = registry_value(owner, record);
                sets.push(weighted(&name, RrType::Txt, cluster, *weight, &value));
            }
        }
    }
    sets
}

struct Scene {
    env: Arc<KubeEnv>,
    moto: Moto,
    admin: Route53,
}

impl Scene {
    async fn start() -> Scene {
        let env = Arc::new(KubeEnv::start(3).await);
        let moto = Moto::start().await;
        let admin = Route53::for_endpoint(&moto.endpoint()).await;
        Scene { env, moto, admin }
    }

    fn names(&self) -> Vec<String> {
        self.env.clusters().iter().map(|c| c.name.clone()).collect()
    }

    fn start_weights(&self) -> Vec<(String, i64)> {
        self.names()
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, if i == 0 { 100 } else { 0 }))
            .collect()
    }

    /// A zone as external-dns with `owner` left it: every form the layout
    /// has ever written, at the starting weights.
    async fn zone(&self, layout: Layout, owner: &str) -> String {
        let zone = create_zone(self.admin.client(), "dev.example.com.").await;
        let sets = external_dns_sets(layout, owner, &self.start_weights(), true);
        change_record_sets(&self.admin, &zone, ChangeAction::Create, sets).await;
        zone
    }

    fn config(&self, mode: &str, zone: &str, layout: Layout) -> Config {
        let routing = format!("  mode: {mode}\n  verify_timeout: 3s\n");
        let dns = format!(
            "    route53:\n      zone_id: {zone}\n      records: [{}]\n{}",
            RECORDS.join(", "),
            layout.config_keys()
        );
        Config::from_yaml(&self.env.config_yaml(&routing, &dns)).unwrap()
    }

    async fn kube(&self, config: &Config) -> Arc<KubeBackend> {
        Arc::new(
            KubeBackend::connect(config, Some(self.env.kubeconfig()))
                .await
                .unwrap(),
        )
    }

    async fn route53_bot(&self, zone: &str, layout: Layout) -> (Bot, Arc<Route53>) {
        let config = self.config("route53", zone, layout);
        let route53 = Arc::new(Route53::for_endpoint(&self.moto.endpoint()).await);
        let backend = Route53Mode::new(
            self.kube(&config).await,
            route53.clone(),
            Duration::from_secs(3),
            cluster_zones(&config),
        );
        (Bot::new(config, Arc::new(backend)), route53)
    }

    /// Every set in the zone, sorted (the zone fits one page here).
    async fn dump(&self, zone: &str) -> Vec<(String, String, String, Option<i64>, Vec<String>)> {
        let out = self
            .admin
            .client()
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .max_items(1000)
            .send()
            .await
            .unwrap();
        let mut sets: Vec<_> = out
            .resource_record_sets()
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.r#type.as_str().to_owned(),
                    s.set_identifier.clone().unwrap_or_default(),
                    s.weight,
                    s.resource_records()
                        .iter()
                        .map(|r| r.value.clone())
                        .collect(),
                )
            })
            .collect();
        sets.sort();
        sets
    }

    async fn a_weights(&self, zone: &str, record: &str) -> Vec<(String, Option<u8>)> {
        let sets: Vec<WeightedSet> = self.admin.record_sets(zone, record).await.unwrap();
        let mut out: Vec<_> = sets
            .into_iter()
            .filter(|s| s.record_type == "A")
            .map(|s| (s.set_identifier, s.weight))
            .collect();
        out.sort();
        out
    }
}

/// Runs `to c` in three approved steps and asserts each one was applied and
/// verified, and that Route53 serves c alone at the end.
async fn three_step_failover(scene: &Scene, bot: &Bot, zone: &str, what: &str) {
    bot.cmd("alice", "to c steps 10,50,100").await;
    for step in 1..=3 {
        assert_eq!(
            bot.chat.plans().len(),
            step,
            "{what}: plan of step {step}: {}",
            bot.said()
        );
        bot.approve("bob").await;
        let last = bot.step_results().pop();
        assert!(
            last.is_some_and(|m| is(
                &m,
                MessageKind::StepResult,
                &[("step", &step.to_string()), ("verified", "true")]
            )),
            "{what}: step {step}: {}",
            bot.said()
        );
    }
    let names = scene.names();
    for record in RECORDS {
        assert_eq!(
            scene.a_weights(zone, record).await,
            [
                (names[0].clone(), Some(0)),
                (names[1].clone(), Some(0)),
                (names[2].clone(), Some(100)),
            ],
            "{what}: {record}"
        );
    }
}

/// external-dns's loop, reduced to what matters here: the RoutingWeights'
/// weights to the A records and the layout's live registry records (never
/// the stale ones).
async fn external_dns_once(env: &KubeEnv, admin: &Route53, zone: &str, layout: Layout) {
    let mut weights = Vec::new();
    for i in 0..env.clusters().len() {
        let api: Api<RoutingWeight> = Api::namespaced(env.client(i).await, "operators");
        for rw in api.list(&ListParams::default()).await.unwrap().items {
            if let Some(w) = rw.spec.weight(PREFIX) {
                weights.push((rw.spec.cluster_name.clone(), i64::from(w)));
            }
        }
    }
    let sets = external_dns_sets(layout, SITE_OWNER, &weights, false);
    change_record_sets(admin, zone, ChangeAction::Upsert, sets).await;
}

#[tokio::test]
async fn routing_weight_mode_completes_a_three_step_failover_in_every_registry_form() {
    let scene = Scene::start().await;
    for layout in LAYOUTS {
        for (i, name) in scene.names().iter().enumerate() {
            scene
                .env
                .apply(i, &routing_weight_yaml(name, if i == 0 { 100 } else { 0 }));
        }
        let zone = scene.zone(layout, SITE_OWNER).await;
        let config = scene.config("routing-weight", &zone, layout);
        let kube: Arc<dyn RoutingBackend> = scene.kube(&config).await;
        let route53 = Arc::new(Route53::for_endpoint(&scene.moto.endpoint()).await);
        let backend = DnsVerified::new(
            kube,
            route53,
            Duration::from_secs(3),
            cluster_zones(&config),
        );
        let bot = Bot::new(config, Arc::new(backend));
        let syncing = {
            let (env, zone) = (scene.env.clone(), zone.clone());
            let admin = Route53::for_endpoint(&scene.moto.endpoint()).await;
            tokio::spawn(async move {
                loop {
                    external_dns_once(&env, &admin, &zone, layout).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        three_step_failover(&scene, &bot, &zone, &format!("{layout:?}")).await;
        syncing.abort();
        let _ = syncing.await;
    }
}

#[tokio::test]
async fn route53_mode_completes_a_three_step_failover_under_its_own_owner_in_every_registry_form() {
    let scene = Scene::start().await;
    for layout in LAYOUTS {
        let zone = scene.zone(layout, BOT_OWNER).await;
        let (bot, _) = scene.route53_bot(&zone, layout).await;
        three_step_failover(&scene, &bot, &zone, &format!("{layout:?}")).await;
        // The bot's own live registry records follow the weights; a stale
        // one is not the bot's business.
        let names = scene.names();
        for record in RECORDS {
            for name in layout.live_names(record) {
                let sets = scene.admin.record_sets(&zone, &name).await.unwrap();
                let txt = sets
                    .iter()
                    .find(|s| s.record_type == "TXT" && s.set_identifier == names[2])
                    .unwrap_or_else(|| panic!("{layout:?}: {name}: {sets:?}"));
                assert_eq!(txt.weight, Some(100), "{layout:?}: {name}");
            }
        }
    }
}

#[tokio::test]
async fn route53_mode_refuses_names_another_owner_holds_and_writes_nothing() {
    let scene = Scene::start().await;
    for layout in [Layout::SameName, Layout::Prefixed, Layout::Upgraded] {
        let zone = scene.zone(layout, SITE_OWNER).await;
        let before = scene.dump(&zone).await;
        let (bot, _) = scene.route53_bot(&zone, layout).await;
        bot.cmd("alice", "shift 50 to c").await;
        bot.approve("bob").await;
        let said = bot.said();
        let result = bot.step_results().pop().expect("a step result");
        assert_eq!(
            result.fact("outcome"),
            Some("restored"),
            "{layout:?}: {said}"
        );
        assert!(
            result
                .fact("clusters")
                .unwrap_or_default()
                .contains("=failed"),
            "{layout:?}: {said}"
        );
        // The refusal's own words say whose records they are and what to
        // do; they come from the backend (the site's owner id, the command).
        assert!(
            said.contains(&format!("owner {SITE_OWNER}"))
                && said.contains("failover-bot route53 adopt")
                && said.contains(&format!("--from-owner {SITE_OWNER}")),
            "{layout:?}: the refusal says whose records they are and what to do: {said}"
        );
        assert_eq!(
            scene.dump(&zone).await,
            before,
            "{layout:?}: nothing written"
        );
    }
}

fn adopt_cli(scene: &Scene, config: &Config, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, serde_json::to_string(config).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"))
        .args([
            "route53",
            "adopt",
            "--env",
            "dev",
            "--from-owner",
            SITE_OWNER,
            "--config",
        ])
        .arg(&path)
        .args(extra)
        .env("AWS_ENDPOINT_URL_ROUTE_53", scene.moto.endpoint())
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
async fn adopt_rewrites_the_registry_to_the_bots_owner_only_when_confirmed() {
    let scene = Scene::start().await;
    let layout = Layout::Upgraded;
    let zone = scene.zone(layout, SITE_OWNER).await;
    let config = scene.config("route53", &zone, layout);
    let before = scene.dump(&zone).await;

    let (ok, out) = adopt_cli(&scene, &config, &[]);
    assert!(ok, "{out}");
    let stale_and_live = RECORDS.len() * scene.names().len() * 2;
    assert!(
        out.contains(&format!("a-{}", RECORDS[0]))
            && out.contains(&format!("owner {SITE_OWNER} → {BOT_OWNER}"))
            && out.contains(&format!("{stale_and_live} registry record(s) to rewrite"))
            && out.contains("--yes"),
        "{out}"
    );
    assert_eq!(scene.dump(&zone).await, before, "a dry run writes nothing");

    let (ok, out) = adopt_cli(&scene, &config, &["--yes"]);
    assert!(ok, "{out}");
    let after = scene.dump(&zone).await;
    let txt_owners: Vec<&String> = after
        .iter()
        .filter(|s| s.1 == "TXT")
        .flat_map(|s| &s.4)
        .collect();
    assert_eq!(txt_owners.len(), stale_and_live, "{after:?}");
    for value in txt_owners {
        assert!(
            value.contains(&format!("external-dns/owner={BOT_OWNER},"))
                && value.contains("external-dns/resource=ingress/web/"),
            "owner rewritten, the rest kept: {value}"
        );
    }
    let routed_before: Vec<_> = before.iter().filter(|s| s.1 == "A").collect();
    let routed_after: Vec<_> = after.iter().filter(|s| s.1 == "A").collect();
    assert_eq!(routed_before, routed_after, "traffic records untouched");

    // Now the records are the bot's: mode route53 writes and verifies.
    let (bot, _) = scene.route53_bot(&zone, layout).await;
    bot.cmd("alice", "shift 50 to c").await;
    bot.approve("bob").await;
    assert!(bot.last_step_verified(), "{}", bot.said());
}
