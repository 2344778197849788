//! The readiness doctor (issue 17, item 3).
//!
//! `failover-bot doctor` as an operator or a CronJob runs it: the real
//! binary against real kube-apiservers (identity, SelfSubjectAccessReviews,
//! the Lease), moto (Route53 records and the external-dns registry) and a
//! real Prometheus (a gate). And `serve`'s scheduled check: the real engine
//! and journal over in-memory clusters, with an injected clock and paused
//! tokio time.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::types::{ChangeAction, ResourceRecord, ResourceRecordSet, RrType};
use chrono::{DateTime, Utc};

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::backend::route53::Route53;
use failover_bot::backend::RoutingBackend;
use failover_bot::chat::MessageKind;
use failover_bot::clock::{Clock, OffsetClock};
use failover_bot::command::add::AddOp;
use failover_bot::config::Config;
use failover_bot::doctor::schedule::{check_once, run};
use failover_bot::doctor::{Doctor, DoctorParts};
use failover_bot::journal::Entry;
use failover_bot::operation::{OperationHeader, OperationKind, OperationOutcome};
use failover_bot::readiness::Occasion;
use support::fake_slack::{FakeSlack, Posted};
use support::kube_env::{routing_weight_yaml, KubeEnv};
use support::moto::{change_record_sets, create_zone, owned_weighted_sets, Moto};
use support::prometheus::{Exporter, Prometheus};
use support::serve_proc::ServeProc;
use support::{reopen_journal, Harness, RecordingChat};

const RECORDS: [&str; 2] = ["api.dev.example.com.", "www.dev.example.com."];

/// An operation started as a drill and completed at `at`, as the drill
/// verb journals it (`/failover drill …`), appended to the journal file.
fn journal_a_drill(path: &Path, env: &str, cluster: &str, at: DateTime<Utc>) {
    let (mut journal, records) = reopen_journal(path);
    let op = records.len() as u64 + 1;
    let header = OperationHeader {
        id: op,
        env: env.into(),
        channel: "C1".into(),
        requester: "alice".into(),
        kind: OperationKind::Add(AddOp {
            cluster: cluster.into(),
            weight: 0,
        }),
        command: format!("drill to {cluster} and back"),
        start: Default::default(),
        started_at: at - chrono::Duration::minutes(40),
        event: None,
        reason: None,
        during_freeze: None,
        time_limit: None,
        drill: true,
    };
    let started = header.started_at;
    journal.append(started, Entry::Started { header }).unwrap();
    let outcome = OperationOutcome::Completed;
    journal.append(at, Entry::Finished { op, outcome }).unwrap();
}

/// Runs `failover-bot doctor --config FILE ARGS…` with the kubeconfig and,
/// when given, moto as Route53 (through the standard AWS environment).
fn doctor_cli(
    kubeconfig: &Path,
    moto: Option<&Moto>,
    config: &Config,
    args: &[&str],
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, serde_json::to_string(config).unwrap()).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_failover-bot"));
    command
        .args(["doctor", "--config"])
        .arg(&path)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("POD_NAMESPACE");
    if let Some(moto) = moto {
        command
            .env("AWS_ENDPOINT_URL_ROUTE_53", moto.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE");
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The doctor's line for `check` about `subject`, if any.
fn line<'a>(out: &'a str, severity: &str, check: &str, subject: &str) -> Option<&'a str> {
    out.lines().find(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(severity)
            && words.next() == Some(check)
            && l.contains(&format!(" {subject}: "))
    })
}

/// A Lease in `failover-bot` of cluster 0 (the home cluster), held by
/// `bot-0`, last renewed at `renewed`, for 15 s.
fn put_lease(env: &KubeEnv, renewed: DateTime<Utc>) {
    let renew = renewed.format("%Y-%m-%dT%H:%M:%S%.6fZ");
    env.apply(
        0,
        &format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: failover-bot\n  namespace: failover-bot\nspec:\n  holderIdentity: bot-0\n  leaseDurationSeconds: 15\n  renewTime: \"{renew}\"\n"
        ),
    );
}

/// A weighted A record's registry twin for `cluster`, given to `owner`.
fn txt_twin(record: &str, cluster: &str, weight: i64, owner: &str) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(record)
        .r#type(RrType::Txt)
        .set_identifier(cluster)
        .weight(weight)
        .ttl(60)
        .resource_records(
            ResourceRecord::builder()
                .value(format!(
                    "\"heritage=external-dns,external-dns/owner={owner}\""
                ))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn doctor_passes_a_ready_setup_and_names_each_problem_of_a_broken_one() {
    let env = KubeEnv::start(2).await;
    let moto = Moto::start().await;
    let exporter = Exporter::start();
    let names: Vec<String> = env.clusters().iter().map(|c| c.name.clone()).collect();
    for name in &names {
        exporter.set_for_cluster("error_ratio", name, 0.001);
    }
    let prometheus = Prometheus::start(&exporter).await;
    prometheus.wait_for("error_ratio", |v| v.len() == 2).await;

    // Route53: the bot's records, mode route53, 100/0.
    let admin = Route53::for_endpoint(&moto.endpoint()).await;
    let zone = create_zone(admin.client(), "dev.example.com.").await;
    let sets = owned_weighted_sets(&RECORDS, &names, &[100, 0]);
    change_record_sets(&admin, &zone, ChangeAction::Create, sets).await;
    // The home cluster (cluster 0): its Lease, held and just renewed.
    env.apply(
        0,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: failover-bot\n",
    );
    put_lease(&env, Utc::now());
    // A drill yesterday.
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    journal_a_drill(
        &journal,
        "dev",
        &names[1],
        Utc::now() - chrono::Duration::days(1),
    );

    let routing = "  mode: route53\n  verify_timeout: 3s\n";
    let extra = format!(
        "    route53:\n      zone_id: {zone}\n      records: [{}]\n    prometheus:\n      url: {}\n    gates:\n      - name: errors\n        query: 'max(error_ratio{{cluster=\"{{cluster}}\"}})'\n        when: before\n        pass_if: {{below: 0.01}}\n",
        RECORDS.join(", "),
        prometheus.url()
    );
    let config = Config::from_yaml(&env.config_yaml(routing, &extra)).unwrap();
    let home = [
        "--journal",
        journal.to_str().unwrap(),
        "--lease-context",
        &env.clusters()[0].context,
    ];
    let (ok, out) = doctor_cli(env.kubeconfig(), Some(&moto), &config, &home);
    assert!(ok, "{out}");
    assert!(out.contains("ready: every check passed"), "{out}");
    for name in &names {
        for check in ["identity", "permissions", "health", "drift"] {
            assert!(
                line(&out, "ok", check, name).is_some(),
                "{check} of {name}: {out}"
            );
        }
        let gate = format!("errors@{name}");
        assert!(line(&out, "ok", "gate", &gate).is_some(), "{out}");
    }
    let zone_subject = format!("zone {zone}");
    assert!(
        line(&out, "ok", "ownership", &zone_subject).is_some(),
        "{out}"
    );
    assert!(line(&out, "ok", "drill", "last drill").is_some(), "{out}");
    assert!(out.contains("held by bot-0, renewed"), "{out}");
    let (strict_ok, out) = doctor_cli(
        env.kubeconfig(),
        Some(&moto),
        &config,
        &[&home[..], &["--strict"]].concat(),
    );
    assert!(strict_ok, "no warning either: {out}");

    // Broken three ways (and one warning): cluster 1 answers as another cluster, external-dns
    // gives cluster 0's records to another owner, and the Lease's holder
    // stopped renewing it.
    env.set_identity(1, "k8s-wrong.example.com");
    let foreign = RECORDS
        .iter()
        .map(|r| txt_twin(r, &names[0], 100, "someone-else"))
        .collect();
    change_record_sets(&admin, &zone, ChangeAction::Upsert, foreign).await;
    put_lease(&env, Utc::now() - chrono::Duration::hours(1));
    // And cluster 0's error ratio is up: its gate would block a step now,
    // which is how things stand, not how they are set up (a warning).
    exporter.set_for_cluster("error_ratio", &names[0], 0.5);
    let query = format!("error_ratio{{cluster=\"{}\"}}", names[0]);
    prometheus.wait_for(&query, |v| v == [0.5]).await;

    let (ok, out) = doctor_cli(env.kubeconfig(), Some(&moto), &config, &home);
    assert!(!ok, "{out}");
    let identity = line(&out, "problem", "identity", &names[1]).unwrap_or_else(|| panic!("{out}"));
    assert!(
        identity.contains("answers as `k8s-wrong.example.com`"),
        "{out}"
    );
    let owned =
        line(&out, "problem", "ownership", &zone_subject).unwrap_or_else(|| panic!("{out}"));
    assert!(owned.contains("someone-else"), "{out}");
    let lease = out
        .lines()
        .find(|l| l.trim_start().starts_with("problem  lease"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        lease.contains("held by bot-0 but not renewed in time"),
        "{out}"
    );
    let gate = format!("errors@{}", names[0]);
    let blocked = line(&out, "warning", "gate", &gate).unwrap_or_else(|| panic!("{out}"));
    assert!(blocked.contains("would block a step now: 0.5"), "{out}");
    assert!(
        out.contains("not ready: 3 problem(s), 1 warning(s)"),
        "{out}"
    );

    // A gate that cannot be read would stop every step: a problem.
    prometheus.kill();
    let (ok, out) = doctor_cli(env.kubeconfig(), Some(&moto), &config, &home);
    assert!(!ok, "{out}");
    let unread = line(&out, "problem", "gate", &format!("errors@{}", names[1]))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(unread.contains("cannot be evaluated"), "{out}");
}

#[tokio::test]
async fn doctor_names_a_permission_the_role_lacks() {
    let env = KubeEnv::start(2).await;
    for (i, cluster) in env.clusters().iter().enumerate() {
        env.apply(
            i,
            &routing_weight_yaml(&cluster.name, if i == 0 { 100 } else { 0 }),
        );
    }
    let rbac = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/target/routing-weight/rbac.yaml"
    ))
    .unwrap();
    let full = r#"verbs: ["list", "create", "update", "delete"]"#;
    assert!(rbac.contains(full), "the shipped role changed: {rbac}");
    env.apply(0, &rbac);
    // Cluster 1's role lacks `delete`: `/failover remove` would fail there.
    env.apply(
        1,
        &rbac.replace(full, r#"verbs: ["list", "create", "update"]"#),
    );
    let config = Config::from_yaml(&env.config_yaml("  mode: routing-weight\n", "")).unwrap();

    let as_bot = env.kubeconfig_for(env.bot_token());
    let (ok, out) = doctor_cli(&as_bot, None, &config, &[]);
    assert!(!ok, "{out}");
    let names: Vec<&str> = env.clusters().iter().map(|c| c.name.as_str()).collect();
    assert!(line(&out, "ok", "permissions", names[0]).is_some(), "{out}");
    let missing = line(&out, "problem", "permissions", names[1]).unwrap_or_else(|| panic!("{out}"));
    assert!(
        missing.contains("delete routingweights.routing.lunar.tech in operators"),
        "{out}"
    );
    assert!(!missing.contains("update"), "only what is missing: {out}");
    assert!(out.contains("not ready: 1 problem(s)"), "{out}");

    // The home cluster (cluster 0) grants the bot nothing for the Lease and
    // the journal: every verb is named, against manifests/home/rbac.yaml.
    let home = [
        "--lease-context",
        &env.clusters()[0].context,
        "--journal-in-home",
    ];
    let (ok, out) = doctor_cli(&as_bot, None, &config, &home);
    assert!(!ok, "{out}");
    let home_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("problem  home-permissions"))
        .unwrap_or_else(|| panic!("{out}"));
    for verb in [
        "get leases.coordination.k8s.io failover-bot in failover-bot",
        "patch leases.coordination.k8s.io failover-bot in failover-bot",
        "create leases.coordination.k8s.io in failover-bot",
        "list journalsegments.failover-bot.github.io in failover-bot",
        "delete journalsegments.failover-bot.github.io in failover-bot",
    ] {
        assert!(home_line.contains(verb), "{verb}: {out}");
    }
    let lease = out
        .lines()
        .find(|l| l.trim_start().starts_with("problem  lease"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(lease.contains("cannot be read"), "{out}");
}

#[tokio::test]
async fn strict_turns_a_missing_or_old_drill_into_a_failure() {
    let env = KubeEnv::start(1).await;
    let name = env.clusters()[0].name.clone();
    env.apply(0, &routing_weight_yaml(&name, 100));
    let config = Config::from_yaml(&env.config_yaml("  mode: routing-weight\n", "")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let with_journal = ["--journal", journal.to_str().unwrap()];
    let strict = [&with_journal[..], &["--strict"]].concat();

    // No drill in the journal.
    reopen_journal(&journal);
    let (ok, out) = doctor_cli(env.kubeconfig(), None, &config, &with_journal);
    assert!(ok, "a warning alone passes: {out}");
    let none = line(&out, "warning", "drill", "last drill").unwrap_or_else(|| panic!("{out}"));
    assert!(none.contains("none in the journal"), "{out}");
    assert!(out.contains("ready, with 1 warning(s)"), "{out}");
    let (ok, out) = doctor_cli(env.kubeconfig(), None, &config, &strict);
    assert!(!ok, "--strict fails on the warning: {out}");

    // A drill 40 days ago: older than the default 30 days.
    journal_a_drill(
        &journal,
        "dev",
        &name,
        Utc::now() - chrono::Duration::days(40),
    );
    let (ok, out) = doctor_cli(env.kubeconfig(), None, &config, &strict);
    assert!(!ok, "{out}");
    let old = line(&out, "warning", "drill", "last drill").unwrap_or_else(|| panic!("{out}"));
    assert!(
        old.contains("older than doctor.drill_max_age (30 days)"),
        "{out}"
    );

    // And one this morning.
    journal_a_drill(
        &journal,
        "dev",
        &name,
        Utc::now() - chrono::Duration::hours(3),
    );
    let (ok, out) = doctor_cli(env.kubeconfig(), None, &config, &strict);
    assert!(ok, "{out}");
    assert!(line(&out, "ok", "drill", "last drill").is_some(), "{out}");
}

const SCHEDULED: &str = r#"
slack:
  channels: [C1]
approval:
  approvers: [alice, bob]
doctor:
  every: 1h
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue, weight: 100}
      - {name: k8s-green.dev.example.com, context: green, weight: 0}
"#;

const GREEN: &str = "k8s-green.dev.example.com";

fn doctor_of(harness: &Harness) -> Doctor {
    Doctor::new(DoctorParts {
        config: harness.config.clone(),
        backend: harness.backend.clone() as Arc<dyn RoutingBackend>,
        route53: None,
        home: None,
        clock: harness.clock.clone() as Arc<dyn Clock>,
    })
}

/// What the scheduled check posted, oldest first: (kind, worst severity).
fn readiness_posts(chat: &RecordingChat) -> Vec<(MessageKind, String)> {
    chat.posts()
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| matches!(m.kind, MessageKind::Readiness | MessageKind::AllClear))
        .map(|m| (m.kind, m.fact("worst").unwrap_or_default().to_owned()))
        .collect()
}

#[tokio::test]
async fn the_scheduled_check_posts_on_a_change_only_even_after_a_restart_and_a_weekly_all_clear() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    journal_a_drill(&journal, "dev", GREEN, support::start_time());
    let config = Arc::new(Config::from_yaml(SCHEDULED).unwrap());
    let memory = Arc::new(MemoryBackend::from_config(&config));
    let mut harness = Harness::assemble(config, memory, journal, Some(dir));
    let doctor = doctor_of(&harness);
    let hour = Duration::from_secs(3600);

    harness
        .memory
        .set_identity(GREEN, "k8s-old.dev.example.com");
    let posted = check_once(&doctor, &harness.engine).await;
    assert_eq!(posted, [("dev".into(), Some(Occasion::Changed))]);
    let posts = readiness_posts(&harness.chat);
    assert_eq!(posts, [(MessageKind::Readiness, "problem".to_owned())]);
    let post = harness.chat.of_kind(MessageKind::Readiness).pop().unwrap();
    assert_eq!(
        post.fact("findings"),
        Some(format!("identity@{GREEN}=problem").as_str())
    );

    harness.clock.advance(hour);
    assert_eq!(check_once(&doctor, &harness.engine).await[0].1, None);
    // The last result is in the journal: a restart does not post it again.
    harness.restart().await;
    harness.clock.advance(hour);
    assert_eq!(check_once(&doctor, &harness.engine).await[0].1, None);
    assert_eq!(readiness_posts(&harness.chat).len(), 1);

    // Fixed: said once.
    harness.memory.set_identity(GREEN, GREEN);
    harness.clock.advance(hour);
    assert_eq!(
        check_once(&doctor, &harness.engine).await[0].1,
        Some(Occasion::Changed)
    );
    harness.clock.advance(hour);
    assert_eq!(check_once(&doctor, &harness.engine).await[0].1, None);
    let posts = readiness_posts(&harness.chat);
    assert_eq!(posts[1..], [(MessageKind::Readiness, "ok".to_owned())]);

    // Quiet for a week after that post, then the all-clear, then quiet.
    harness
        .clock
        .advance(Duration::from_secs(6 * 24 * 3600 + 22 * 3600));
    assert_eq!(check_once(&doctor, &harness.engine).await[0].1, None);
    harness.clock.advance(hour);
    assert_eq!(
        check_once(&doctor, &harness.engine).await[0].1,
        Some(Occasion::AllClear)
    );
    harness.clock.advance(hour);
    assert_eq!(check_once(&doctor, &harness.engine).await[0].1, None);
    let posts = readiness_posts(&harness.chat);
    assert_eq!(
        posts,
        [
            (MessageKind::Readiness, "problem".to_owned()),
            (MessageKind::Readiness, "ok".to_owned()),
            (MessageKind::AllClear, "ok".to_owned()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn serve_checks_every_doctor_every_by_tokio_time() {
    let harness = Harness::new(SCHEDULED);
    let doctor = Arc::new(doctor_of(&harness));
    let clock: Arc<OffsetClock> = harness.clock.clone();
    let chat = harness.chat.clone();
    let memory = harness.memory.clone();
    let engine = Arc::new(harness.engine);
    memory.set_identity(GREEN, "k8s-old.dev.example.com");

    let every = Duration::from_secs(3600);
    let schedule = tokio::spawn(run(doctor, engine, every));
    // The first check runs at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(readiness_posts(&chat).len(), 1);
    memory.set_identity(GREEN, GREEN);
    clock.advance(every);
    // Not before the hour is up…
    tokio::time::sleep(every - Duration::from_secs(2)).await;
    assert_eq!(readiness_posts(&chat).len(), 1);
    // …and then the fix is reported.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let posts = readiness_posts(&chat);
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[1].0, MessageKind::Readiness);
    schedule.abort();
}

/// `serve` itself: with `doctor.every` set it checks at start and posts the
/// result to the environment's channel; after a restart on the same
/// journal it checks again and stays quiet, the result being the same.
#[tokio::test]
async fn serve_posts_the_readiness_result_once_across_a_restart() {
    let fake = FakeSlack::start().await;
    let config = SCHEDULED.replace("every: 1h", "every: 1m");
    let mut bot = ServeProc::options(&config).start(&fake).await;
    let readiness = |fake: &FakeSlack| -> Vec<Posted> {
        fake.posts()
            .into_iter()
            .filter(|p| p.kind() == Some("readiness"))
            .collect()
    };
    let posted = fake
        .wait_until("the first readiness post", Duration::from_secs(20), |f| {
            !readiness(f).is_empty()
        })
        .await;
    assert!(posted, "{}", bot.log());
    let first = readiness(&fake);
    assert_eq!(first[0].channel, "C1");
    assert!(first[0].is("readiness", &[("env", "dev"), ("worst", "warning")]));

    bot.restart(&fake).await;
    let checked_again = || bot.log().matches("readiness checked").count() >= 2;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !checked_again() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(checked_again(), "{}", bot.log());
    // After the restart the same result: checked, nothing said.
    assert!(bot.log().contains("\"nothing\""), "{}", bot.log());
    assert_eq!(readiness(&fake).len(), 1, "{}", fake.dump());
}
