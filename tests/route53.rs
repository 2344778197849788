//! Route53 backend against a real moto_server (one per test, so tests are
//! independent and can run in parallel).
//!
//! Setup and assertions about the zone's contents go through a separate
//! "admin" client, so the client under test's API-call counter only sees
//! the calls of the code under test.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[path = "support/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use failover_bot::backend::route53::{
    ApiCalls, NotOwned, Owner, RecordReport, Registry, Route53, Route53Error, WeightedSet,
};
use failover_bot::plan::Weights;
use fault_proxy::{Fault, FaultProxy, Rule, Upstream};
use moto::{change_record_sets, Moto};

const A: &str = "k8s-a.test.example.com";
const B: &str = "k8s-b.test.example.com";
const C: &str = "k8s-c.test.example.com";

fn weights(pairs: &[(&str, u8)]) -> Weights {
    pairs.iter().copied().collect()
}

fn strs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn owner_txt(name: &str) -> String {
    format!(
        "\"heritage=external-dns,external-dns/owner=failover-bot,external-dns/resource=ingress/web/{}\"",
        name.trim_end_matches('.')
    )
}

/// A routed record to create: name, type (A or CNAME), TTL.
#[derive(Clone)]
struct Rec {
    name: String,
    ty: &'static str,
    ttl: i64,
}

fn rec(name: &str, ty: &'static str, ttl: i64) -> Rec {
    Rec {
        name: name.to_owned(),
        ty,
        ttl,
    }
}

/// The value of `cluster`'s routed record (distinct per cluster and record).
fn value_for(r: &Rec, cluster_index: usize, record_index: usize) -> String {
    match r.ty {
        "CNAME" => format!("lb-{cluster_index}-{record_index}.elb.example.net"),
        _ => format!(
            "10.{}.{}.{}",
            cluster_index,
            record_index / 250,
            record_index % 250 + 1
        ),
    }
}

struct Env {
    moto: Moto,
    /// The client under test.
    r53: Route53,
    /// Setup and inspection; its calls are not the subject.
    admin: Route53,
    zone: String,
}

async fn env() -> Env {
    let moto = Moto::start().await;
    let r53 = Route53::for_endpoint(&moto.endpoint()).await;
    let admin = Route53::for_endpoint(&moto.endpoint()).await;
    let zone = create_zone(&admin, "example.com").await;
    Env {
        moto,
        r53,
        admin,
        zone,
    }
}

async fn create_zone(admin: &Route53, name: &str) -> String {
    moto::create_zone(admin.client(), name).await
}

fn record_set(
    name: &str,
    ty: &str,
    id: &str,
    weight: i64,
    ttl: i64,
    value: &str,
) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::from(ty))
        .set_identifier(id)
        .weight(weight)
        .ttl(ttl)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap()
}

/// Creates, for every record and cluster, the weighted record and its TXT
/// ownership twin (same name, set identifier and weight).
async fn seed(admin: &Route53, zone: &str, records: &[Rec], clusters: &[(&str, u8)]) {
    seed_with(admin, zone, records, clusters, &value_for, &|r| {
        owner_txt(&r.name)
    })
    .await;
}

/// [`seed`] with chosen values for the routed records and the TXT twins.
async fn seed_with(
    admin: &Route53,
    zone: &str,
    records: &[Rec],
    clusters: &[(&str, u8)],
    value: &dyn Fn(&Rec, usize, usize) -> String,
    txt: &dyn Fn(&Rec) -> String,
) {
    let mut sets = Vec::new();
    for (ri, r) in records.iter().enumerate() {
        for (ci, (cluster, w)) in clusters.iter().enumerate() {
            let w = i64::from(*w);
            sets.push(record_set(
                &r.name,
                r.ty,
                cluster,
                w,
                r.ttl,
                &value(r, ci, ri),
            ));
            sets.push(record_set(&r.name, "TXT", cluster, w, r.ttl, &txt(r)));
        }
    }
    change_record_sets(admin, zone, ChangeAction::Create, sets).await;
}

/// Sets weights directly, as external-dns would (both records of a pair).
async fn set_weights_directly(
    admin: &Route53,
    zone: &str,
    records: &[Rec],
    clusters: &[(&str, u8)],
    all_clusters: &[&str],
) {
    let mut sets = Vec::new();
    for (ri, r) in records.iter().enumerate() {
        for (cluster, w) in clusters {
            let ci = all_clusters.iter().position(|c| c == cluster).unwrap();
            let w = i64::from(*w);
            sets.push(record_set(
                &r.name,
                r.ty,
                cluster,
                w,
                r.ttl,
                &value_for(r, ci, ri),
            ));
            sets.push(record_set(
                &r.name,
                "TXT",
                cluster,
                w,
                r.ttl,
                &owner_txt(&r.name),
            ));
        }
    }
    change_record_sets(admin, zone, ChangeAction::Upsert, sets).await;
}

fn to_weighted(s: &ResourceRecordSet) -> WeightedSet {
    WeightedSet {
        name: s.name.to_ascii_lowercase(),
        record_type: s.r#type.as_str().to_owned(),
        set_identifier: s.set_identifier.clone().unwrap_or_default(),
        weight: s.weight.map(|w| u8::try_from(w).expect("weight in range")),
        ttl: s.ttl,
        values: s
            .resource_records
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|r| r.value.clone())
            .collect(),
    }
}

/// The whole zone in one page (moto honours a large MaxItems), sorted.
async fn dump(admin: &Route53, zone: &str) -> Vec<WeightedSet> {
    let out = admin
        .client()
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .max_items(100_000)
        .send()
        .await
        .expect("list zone");
    assert!(!out.is_truncated(), "dump must fit one page");
    let mut sets: Vec<WeightedSet> = out.resource_record_sets().iter().map(to_weighted).collect();
    sets.sort_by(|a, b| {
        (&a.name, &a.record_type, &a.set_identifier).cmp(&(
            &b.name,
            &b.record_type,
            &b.set_identifier,
        ))
    });
    sets
}

/// `before`, with the weighted sets of `records` re-weighted per `w`.
fn reweighted(before: &[WeightedSet], records: &[Rec], w: &Weights) -> Vec<WeightedSet> {
    before
        .iter()
        .cloned()
        .map(|mut s| {
            let ours = records.iter().any(|r| format!("{}.", r.name) == s.name);
            if ours {
                if let Some(new) = w.get(&s.set_identifier) {
                    s.weight = Some(new);
                }
            }
            s
        })
        .collect()
}

fn assert_complete(reports: &[RecordReport]) {
    for r in reports {
        assert!(r.is_complete(), "{} not complete: {r:?}", r.record);
    }
}

fn fqdn(r: &Rec) -> String {
    r.name.clone()
}

fn three_records() -> Vec<Rec> {
    vec![
        rec("www.example.com", "A", 60),
        rec("api.example.com", "CNAME", 30),
        rec("app.example.com", "A", 120),
    ]
}

#[tokio::test]
async fn check_reports_match_and_mismatch() {
    let e = env().await;
    let records = three_records();
    seed(&e.admin, &e.zone, &records, &[(A, 100), (B, 0), (C, 0)]).await;
    let names: Vec<String> = records.iter().map(fqdn).collect();

    // Match.
    let reports = e
        .r53
        .check(&e.zone, &names, &weights(&[(A, 100), (B, 0), (C, 0)]))
        .await
        .unwrap();
    assert_eq!(reports.len(), 3);
    for (r, name) in reports.iter().zip(&names) {
        assert_eq!(
            r,
            &RecordReport {
                record: name.clone(),
                matched: 3,
                total: 3,
                stragglers: vec![],
            }
        );
    }

    // Mismatch: two clusters off, one missing.
    let reports = e
        .r53
        .check(
            &e.zone,
            &names,
            &weights(&[(A, 50), (B, 50), (C, 0), ("k8s-d.test.example.com", 0)]),
        )
        .await
        .unwrap();
    for r in &reports {
        assert_eq!(r.matched, 1, "{r:?}");
        assert_eq!(r.total, 4, "{r:?}");
        assert_eq!(
            r.stragglers,
            vec![
                format!("{A}: 100 (want 50)"),
                format!("{B}: 0 (want 50)"),
                "k8s-d.test.example.com: missing".to_owned(),
            ]
        );
        assert!(!r.is_complete());
    }

    // A TXT record's weight is never compared: external-dns reads none, and
    // v0.18+ leaves stale same-name registry records behind (issue 15).
    change_record_sets(
        &e.admin,
        &e.zone,
        ChangeAction::Upsert,
        vec![record_set(
            "api.example.com",
            "TXT",
            C,
            7,
            30,
            &owner_txt("api.example.com"),
        )],
    )
    .await;
    let reports = e
        .r53
        .check(&e.zone, &names, &weights(&[(A, 100), (B, 0), (C, 0)]))
        .await
        .unwrap();
    assert_complete(&reports);

    // A weighted set nobody expects, with traffic, is reported.
    let reports = e
        .r53
        .check(&e.zone, &names[..1], &weights(&[(A, 100), (B, 0)]))
        .await
        .unwrap();
    assert_eq!(
        reports[0].stragglers,
        Vec::<String>::new(),
        "C at 0 gets no traffic"
    );
    set_weights_directly(&e.admin, &e.zone, &records[..1], &[(C, 5)], &[A, B, C]).await;
    let reports = e
        .r53
        .check(&e.zone, &names[..1], &weights(&[(A, 100), (B, 0)]))
        .await
        .unwrap();
    assert_eq!(
        reports[0].stragglers,
        vec![format!("{C}: 5 (not expected)")]
    );
    assert_eq!((reports[0].matched, reports[0].total), (2, 3));

    // observe: per record, set identifier → weight of the routed type.
    let observed = e.r53.observe(&e.zone, &names).await.unwrap();
    let expect_first: BTreeMap<String, u8> =
        [(A.to_owned(), 100), (B.to_owned(), 0), (C.to_owned(), 5)].into();
    let expect_rest: BTreeMap<String, u8> =
        [(A.to_owned(), 100), (B.to_owned(), 0), (C.to_owned(), 0)].into();
    assert_eq!(
        observed,
        vec![
            (names[0].clone(), expect_first),
            (names[1].clone(), expect_rest.clone()),
            (names[2].clone(), expect_rest),
        ],
        "the TXT twin's weight 7 on api must not leak into observe"
    );
}

#[tokio::test]
async fn wait_until_returns_matched_once_a_delayed_change_shows_up() {
    let e = env().await;
    let records = three_records();
    seed(&e.admin, &e.zone, &records, &[(A, 100), (B, 0)]).await;
    let names: Vec<String> = records.iter().map(fqdn).collect();
    let target = weights(&[(A, 50), (B, 50)]);

    let not_yet = e.r53.check(&e.zone, &names, &target).await.unwrap();
    assert!(not_yet.iter().all(|r| !r.is_complete()));

    let admin = Route53::for_endpoint(&e.moto.endpoint()).await;
    let zone = e.zone.clone();
    let later = records.clone();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        set_weights_directly(&admin, &zone, &later, &[(A, 50), (B, 50)], &[A, B]).await;
        Instant::now()
    });
    let before = e.r53.api_calls();
    let reports = e
        .r53
        .wait_until(&e.zone, &names, &target, Duration::from_secs(15))
        .await
        .unwrap();
    let done = Instant::now();
    let written_at = writer.await.unwrap();
    assert_complete(&reports);
    assert_eq!(reports.len(), 3);
    assert!(
        done >= written_at,
        "matched only after the change was written"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        done - written_at < Duration::from_secs(5),
        "noticed within the backoff cap"
    );
    // It polled: more than one round of 3 listings, but not a busy loop.
    let calls = e.r53.api_calls() - before;
    assert!((6..=60).contains(&calls), "{calls} calls");
}

#[tokio::test]
async fn wait_until_gives_up_at_the_timeout_with_the_last_reports() {
    let e = env().await;
    let records = three_records();
    seed(&e.admin, &e.zone, &records, &[(A, 100), (B, 0)]).await;
    let names: Vec<String> = records.iter().map(fqdn).collect();
    let started = Instant::now();
    let reports = e
        .r53
        .wait_until(
            &e.zone,
            &names,
            &weights(&[(A, 0), (B, 100)]),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(reports.len(), 3);
    for r in &reports {
        assert_eq!(
            r.stragglers,
            vec![format!("{A}: 100 (want 0)"), format!("{B}: 0 (want 100)")]
        );
    }
}

#[tokio::test]
async fn direct_mode_three_clusters_three_records_one_change_batch_per_step() {
    let e = env().await;
    let records = three_records();
    seed(&e.admin, &e.zone, &records, &[(A, 100), (B, 0), (C, 0)]).await;
    let names: Vec<String> = records.iter().map(fqdn).collect();
    let initial = dump(&e.admin, &e.zone).await;
    // 3 records × 3 clusters × (routed + TXT), plus the zone's NS and SOA.
    assert_eq!(initial.len(), 18 + 2);

    let steps = [
        weights(&[(A, 100), (B, 100), (C, 0)]),
        weights(&[(A, 0), (B, 100), (C, 0)]),
        weights(&[(A, 0), (B, 100), (C, 25)]),
    ];
    for step in &steps {
        let before = e.r53.api_calls_by_operation();
        let summary = e.r53.write_weights(&e.zone, &names, step).await.unwrap();
        let made = e.r53.api_calls_by_operation().since(&before);
        assert_eq!(
            made,
            ApiCalls {
                list_record_sets: 6, // one page per record name and one per
                // registry name (a-www, cname-api, a-app)
                change_record_sets: 1, // ONE batch for the whole step
                get_change: 1,         // INSYNC at once on moto
                other: 0,
            },
            "step {step:?}"
        );
        assert_eq!(summary.changes, 18);
        assert_eq!(summary.batches, 1);
        assert_eq!(summary.api_calls, 8);
        assert_eq!(summary.api_calls, made.total());

        // Exactly the weights changed: same sets, identifiers, types, TTLs
        // and values; NS/SOA untouched; nothing created or deleted.
        let after = dump(&e.admin, &e.zone).await;
        assert_eq!(after, reweighted(&initial, &records, step));
        for s in after.iter().filter(|s| !s.set_identifier.is_empty()) {
            assert_eq!(s.weight, step.get(&s.set_identifier), "{s:?}");
        }
        let cnames = after.iter().filter(|s| s.record_type == "CNAME").count();
        let txts = after.iter().filter(|s| s.record_type == "TXT").count();
        let a = after.iter().filter(|s| s.record_type == "A").count();
        assert_eq!((a, cnames, txts), (6, 3, 9));
        assert!(after
            .iter()
            .filter(|s| s.record_type == "TXT")
            .all(|s| s.values == vec![owner_txt(&s.name)]));

        assert_complete(&e.r53.check(&e.zone, &names, step).await.unwrap());
    }
}

#[tokio::test]
async fn chunking_above_1000_changes_uses_the_fewest_batches_the_limits_allow() {
    let e = env().await;
    // 300 names × 2 clusters × (A + TXT) = 1,200 UPSERTs. Values of fixed
    // length so the batch arithmetic below is exact.
    let records: Vec<Rec> = (0..300)
        .map(|i| rec(&format!("r{i:03}.example.com"), "A", 60))
        .collect();
    let short_txt = "\"heritage=external-dns,external-dns/owner=o\""; // 44 chars
                                                                      // The records are owner `o`'s; the bot writes under that owner id.
    let as_o = Registry {
        owner_id: "o".into(),
        ..Registry::default()
    };
    seed_with(
        &e.admin,
        &e.zone,
        &records,
        &[(A, 100), (B, 0)],
        &|_, _, _| "192.0.2.1".to_owned(), // 9 chars
        &|_| short_txt.to_owned(),
    )
    .await;
    let names: Vec<String> = records.iter().map(fqdn).collect();
    let initial = dump(&e.admin, &e.zone).await;

    // The ResourceRecord rule is real: AWS counts each ResourceRecord of an
    // UPSERT twice (1,000 max), and moto enforces it: a batch of 501
    // single-value UPSERTs (1,002) is refused — and changes nothing.
    let too_big: Vec<Change> = initial
        .iter()
        .filter(|s| s.record_type == "A")
        .take(501)
        .map(|s| {
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(record_set(
                    &s.name,
                    "A",
                    &s.set_identifier,
                    1,
                    60,
                    &s.values[0],
                ))
                .build()
                .unwrap()
        })
        .collect();
    let refused = e
        .admin
        .client()
        .change_resource_record_sets()
        .hosted_zone_id(&e.zone)
        .change_batch(
            ChangeBatch::builder()
                .set_changes(Some(too_big))
                .build()
                .unwrap(),
        )
        .send()
        .await;
    assert!(
        refused.is_err(),
        "moto accepted 1,002 UPSERT record elements"
    );
    assert_eq!(
        dump(&e.admin, &e.zone).await,
        initial,
        "a refused batch changes nothing"
    );

    // Short values: the element rule binds. Per name 4 UPSERTs = 8 elements
    // (and 2×(2×9 + 2×44) = 212 characters): 125 names = 500 changes a batch.
    let target = weights(&[(A, 30), (B, 70)]);
    let before = e.r53.api_calls_by_operation();
    let summary = e
        .r53
        .write_weights_as(&as_o, &e.zone, &names, &target)
        .await
        .unwrap();
    let made = e.r53.api_calls_by_operation().since(&before);
    assert_eq!(summary.changes, 1200);
    assert_eq!(summary.batches, 3, "500 + 500 + 200");
    assert_eq!(
        made,
        ApiCalls {
            list_record_sets: 600, // each name and its a- registry name
            change_record_sets: 3,
            get_change: 3,
            other: 0,
        }
    );
    let after = dump(&e.admin, &e.zone).await;
    assert_eq!(after, reweighted(&initial, &records, &target));

    // Long TXT values: the 32,000-character rule binds (UPSERT characters
    // count twice). Per name 2×(2×9 + 2×160) = 676 characters: 47 names a
    // batch (31,772) → ⌈300 / 47⌉ = 7 batches.
    let long_txt = format!(
        "\"heritage=external-dns,external-dns/owner=o,{}\"",
        "x".repeat(115)
    ); // 160 chars
    assert_eq!(long_txt.len(), 160);
    let twins: Vec<ResourceRecordSet> = after
        .iter()
        .filter(|s| s.record_type == "TXT")
        .map(|s| {
            let w = i64::from(s.weight.unwrap());
            record_set(&s.name, "TXT", &s.set_identifier, w, 60, &long_txt)
        })
        .collect();
    change_record_sets(&e.admin, &e.zone, ChangeAction::Upsert, twins).await;
    let initial = dump(&e.admin, &e.zone).await;
    let target = weights(&[(A, 0), (B, 100)]);
    let before = e.r53.api_calls_by_operation();
    let summary = e
        .r53
        .write_weights_as(&as_o, &e.zone, &names, &target)
        .await
        .unwrap();
    let made = e.r53.api_calls_by_operation().since(&before);
    assert_eq!((summary.changes, summary.batches), (1200, 7));
    assert_eq!((made.change_record_sets, made.get_change), (7, 7));
    let after = dump(&e.admin, &e.zone).await;
    assert_eq!(after, reweighted(&initial, &records, &target));
    assert!(after
        .iter()
        .filter(|s| s.record_type == "TXT")
        .all(|s| s.values == vec![long_txt.clone()]));
}

#[tokio::test]
async fn invalid_input_and_all_zero_are_refused_before_any_api_call() {
    let e = env().await;
    let records = three_records();
    seed(&e.admin, &e.zone, &records, &[(A, 100), (B, 0), (C, 0)]).await;
    let names: Vec<String> = records.iter().map(fqdn).collect();
    let initial = dump(&e.admin, &e.zone).await;

    let long_id = "x".repeat(129);
    let cases: Vec<(&str, String, Vec<String>, Weights)> = vec![
        (
            "all zero",
            e.zone.clone(),
            names.clone(),
            weights(&[(A, 0), (B, 0), (C, 0)]),
        ),
        ("no weights", e.zone.clone(), names.clone(), Weights::new()),
        ("no records", e.zone.clone(), vec![], weights(&[(A, 100)])),
        (
            "bad record name",
            e.zone.clone(),
            strs(&["www example.com"]),
            weights(&[(A, 100)]),
        ),
        (
            "empty record name",
            e.zone.clone(),
            strs(&[""]),
            weights(&[(A, 100)]),
        ),
        (
            "bad zone id",
            "Z 1/..".into(),
            names.clone(),
            weights(&[(A, 100)]),
        ),
        (
            "empty zone id",
            String::new(),
            names.clone(),
            weights(&[(A, 100)]),
        ),
        (
            "set identifier too long",
            e.zone.clone(),
            names.clone(),
            weights(&[(long_id.as_str(), 100)]),
        ),
    ];
    for (what, zone, recs, w) in cases {
        let result = e.r53.write_weights(&zone, &recs, &w).await;
        assert!(
            matches!(result, Err(Route53Error::Invalid(_))),
            "{what}: {result:?}"
        );
    }
    assert_eq!(e.r53.api_calls(), 0, "no call for refused input");
    assert_eq!(dump(&e.admin, &e.zone).await, initial);

    // The read paths refuse bad input without calls too.
    assert!(matches!(
        e.r53.check("", &names, &weights(&[(A, 1)])).await,
        Err(Route53Error::Invalid(_))
    ));
    assert!(matches!(
        e.r53.observe(&e.zone, &[]).await,
        Err(Route53Error::Invalid(_))
    ));
    assert!(matches!(
        e.r53.record_sets(&e.zone, "a b").await,
        Err(Route53Error::Invalid(_))
    ));
    assert_eq!(e.r53.api_calls(), 0);
}

#[tokio::test]
async fn a_cluster_without_a_record_or_registry_record_is_refused_before_any_write() {
    let e = env().await;
    let records = three_records();
    seed(&e.admin, &e.zone, &records, &[(A, 100), (B, 0)]).await;
    // C has a weighted record on www only; no registry record there.
    change_record_sets(
        &e.admin,
        &e.zone,
        ChangeAction::Create,
        vec![record_set("www.example.com", "A", C, 0, 60, "10.9.9.9")],
    )
    .await;
    let names: Vec<String> = records.iter().map(fqdn).collect();
    let initial = dump(&e.admin, &e.zone).await;

    let result = e
        .r53
        .write_weights(&e.zone, &names, &weights(&[(A, 50), (B, 25), (C, 25)]))
        .await;
    let Err(Route53Error::Invalid(why)) = result else {
        panic!("expected a refusal, got {result:?}");
    };
    assert!(
        why.contains(
            "api.example.com. has no weighted A/AAAA/CNAME record with set identifier k8s-c"
        ),
        "{why}"
    );
    let made = e.r53.api_calls_by_operation();
    assert_eq!(made.change_record_sets, 0, "no write");
    assert_eq!(made.get_change, 0);
    assert_eq!(
        made.list_record_sets, 6,
        "it read every name and its registry name first"
    );
    assert_eq!(dump(&e.admin, &e.zone).await, initial, "nothing changed");

    // With records on every name, C's www record still has no registry
    // record: it is nobody's, so not the bot's.
    change_record_sets(
        &e.admin,
        &e.zone,
        ChangeAction::Create,
        vec![
            record_set("api.example.com", "CNAME", C, 0, 30, "lb-c.elb.example.net"),
            record_set(
                "api.example.com",
                "TXT",
                C,
                0,
                30,
                &owner_txt("api.example.com"),
            ),
            record_set("app.example.com", "A", C, 0, 120, "10.9.9.8"),
            record_set(
                "app.example.com",
                "TXT",
                C,
                0,
                120,
                &owner_txt("app.example.com"),
            ),
        ],
    )
    .await;
    let initial = dump(&e.admin, &e.zone).await;
    let result = e
        .r53
        .write_weights(&e.zone, &names, &weights(&[(A, 50), (B, 25), (C, 25)]))
        .await;
    let Err(Route53Error::NotOwned(NotOwned { owner_id, records })) = result else {
        panic!("expected a refusal, got {result:?}");
    };
    assert_eq!(owner_id, "failover-bot");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].name.as_str(), records[0].set_identifier.as_str()),
        ("www.example.com.", C)
    );
    assert_eq!(records[0].owner, Owner::Unowned);
    assert_eq!(dump(&e.admin, &e.zone).await, initial, "nothing changed");

    // Without C the same step goes through.
    e.r53
        .write_weights(&e.zone, &names, &weights(&[(A, 50), (B, 50)]))
        .await
        .unwrap();
    assert_complete(
        &e.r53
            .check(&e.zone, &names, &weights(&[(A, 50), (B, 50)]))
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn moto_pages_at_300_and_ignores_start_record_identifier() {
    // The assumptions the pagination guard is built on.
    let e = env().await;
    let many: Vec<(String, u8)> = (0..320).map(|i| (format!("k8s-{i:03}"), 1)).collect();
    let pairs: Vec<(&str, u8)> = many.iter().map(|(c, w)| (c.as_str(), *w)).collect();
    seed(
        &e.admin,
        &e.zone,
        &[rec("many.example.com", "A", 60)],
        &pairs,
    )
    .await;

    let first = e
        .admin
        .client()
        .list_resource_record_sets()
        .hosted_zone_id(&e.zone)
        .send()
        .await
        .unwrap();
    assert_eq!(first.resource_record_sets().len(), 300, "default page size");
    assert!(first.is_truncated());
    assert_eq!(first.next_record_name(), Some("many.example.com."));
    assert_eq!(
        first.next_record_identifier(),
        None,
        "moto sends no NextRecordIdentifier"
    );

    // Following with an explicit identifier restarts at the name/type's first set.
    let again = e
        .admin
        .client()
        .list_resource_record_sets()
        .hosted_zone_id(&e.zone)
        .start_record_name("many.example.com.")
        .start_record_type(RrType::A)
        .start_record_identifier("k8s-200")
        .max_items(5)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = again
        .resource_record_sets()
        .iter()
        .filter_map(|s| s.set_identifier.as_deref())
        .collect();
    assert_eq!(ids, ["k8s-000", "k8s-001", "k8s-002", "k8s-003", "k8s-004"]);

    // And the support's reset really forgets everything.
    e.moto.reset().await;
    let zones = e.admin.client().list_hosted_zones().send().await.unwrap();
    assert!(zones.hosted_zones().is_empty());
}

#[tokio::test]
async fn record_sets_on_a_name_with_many_set_identifiers_returns_each_once() {
    let e = env().await;
    let many: Vec<(String, u8)> = (0..320)
        .map(|i| (format!("k8s-{i:03}"), (i % 7) as u8))
        .collect();
    let pairs: Vec<(&str, u8)> = many.iter().map(|(c, w)| (c.as_str(), *w)).collect();
    seed(
        &e.admin,
        &e.zone,
        &[
            rec("many.example.com", "A", 60),
            rec("other.example.com", "A", 60),
        ],
        &pairs[..3],
    )
    .await;
    // 640 sets on one name (320 A + 320 TXT), more than a 300-set page.
    let extra: Vec<ResourceRecordSet> = pairs[3..]
        .iter()
        .enumerate()
        .flat_map(|(i, (c, w))| {
            [
                record_set(
                    "many.example.com",
                    "A",
                    c,
                    i64::from(*w),
                    60,
                    &format!("10.1.{}.{}", i / 200, i % 200 + 1),
                ),
                record_set(
                    "many.example.com",
                    "TXT",
                    c,
                    i64::from(*w),
                    60,
                    &owner_txt("many.example.com"),
                ),
            ]
        })
        .collect();
    change_record_sets(&e.admin, &e.zone, ChangeAction::Create, extra).await;

    let want: Vec<WeightedSet> = dump(&e.admin, &e.zone)
        .await
        .into_iter()
        .filter(|s| s.name == "many.example.com.")
        .collect();
    assert_eq!(want.len(), 640);

    for page in [None, Some(7), Some(300)] {
        let r53 = match page {
            None => Route53::for_endpoint(&e.moto.endpoint()).await,
            Some(n) => Route53::for_endpoint(&e.moto.endpoint())
                .await
                .with_page_size(n),
        };
        let started = Instant::now();
        let mut got = r53.record_sets(&e.zone, "MANY.example.com").await.unwrap();
        got.sort_by(|a, b| {
            (&a.record_type, &a.set_identifier).cmp(&(&b.record_type, &b.set_identifier))
        });
        let mut want_sorted = want.clone();
        want_sorted.sort_by(|a, b| {
            (&a.record_type, &a.set_identifier).cmp(&(&b.record_type, &b.set_identifier))
        });
        assert_eq!(got, want_sorted, "page size {page:?}");
        // Bounded: the repeated pages grow until the rest fits.
        let calls = r53.api_calls();
        assert!(calls <= 20, "page size {page:?}: {calls} calls");
        assert!(started.elapsed() < Duration::from_secs(30));
        // And observe sees 320 weights for the A sets.
        let observed = r53
            .observe(&e.zone, &strs(&["many.example.com"]))
            .await
            .unwrap();
        assert_eq!(observed[0].1.len(), 320);
        assert_eq!(observed[0].1["k8s-013"], 6);
    }
}

#[tokio::test]
async fn pagination_over_300_plus_records_with_small_pages_terminates() {
    let e = env().await;
    // 320 names × 2 clusters × (A + TXT) = 1,280 record sets.
    let records: Vec<Rec> = (0..320)
        .map(|i| rec(&format!("p{i:03}.example.com"), "A", 60))
        .collect();
    seed(&e.admin, &e.zone, &records, &[(A, 10), (B, 20)]).await;
    let names: Vec<String> = records.iter().map(fqdn).collect();

    for page in [3, 7, 1000] {
        let r53 = Route53::for_endpoint(&e.moto.endpoint())
            .await
            .with_page_size(page);
        let observed = r53.observe(&e.zone, &names).await.unwrap();
        assert_eq!(observed.len(), 320);
        for (name, w) in &observed {
            let expect: BTreeMap<String, u8> = [(A.to_owned(), 10), (B.to_owned(), 20)].into();
            assert_eq!(w, &expect, "{name} (page {page})");
        }
        // Each name needs ⌈4 / page⌉ pages at most (plus one for a repeat).
        let calls = r53.api_calls_by_operation().list_record_sets;
        let per_name = 4u64.div_ceil(page as u64) + 1;
        assert!(calls <= 320 * per_name, "page {page}: {calls} calls");
        assert!(calls >= 320, "page {page}: {calls} calls");
    }

    // And a whole step over 320 names with 3-set pages writes correctly.
    let r53 = Route53::for_endpoint(&e.moto.endpoint())
        .await
        .with_page_size(3);
    let target = weights(&[(A, 20), (B, 10)]);
    let summary = r53.write_weights(&e.zone, &names, &target).await.unwrap();
    assert_eq!(summary.changes, 1280);
    // At most 500 single-value UPSERTs a batch (fewer with these TXT values).
    assert!(summary.batches >= 3, "{summary:?}");
    assert_eq!(
        r53.api_calls_by_operation().change_record_sets,
        summary.batches as u64
    );
    assert_complete(&r53.check(&e.zone, &names, &target).await.unwrap());
}

/// moto behind the fault proxy: the next `fail` ChangeResourceRecordSets
/// requests (after letting `skip` through) are answered with Route53 error
/// `code` and HTTP `status` instead of being forwarded.
async fn failing_batches(
    upstream: String,
    code: &str,
    status: u16,
    fail: u32,
    skip: u32,
) -> FaultProxy {
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
         <Error><Type>Sender</Type><Code>{code}</Code><Message>injected by the test</Message></Error>\
         <RequestId>test</RequestId></ErrorResponse>"
    );
    let proxy = FaultProxy::start(Upstream::http(&upstream)).await;
    proxy.set(
        Rule::new(Fault::status(status))
            .only("POST", "/rrset")
            .skip(skip)
            .times(fail)
            .body("text/xml", &xml),
    );
    proxy
}

#[tokio::test]
async fn throttled_batches_are_retried_with_backoff_within_a_bound() {
    let e = env().await;
    let records = three_records();
    seed(&e.admin, &e.zone, &records, &[(A, 100), (B, 0)]).await;
    let names: Vec<String> = records.iter().map(fqdn).collect();
    let target = weights(&[(A, 50), (B, 50)]);

    // 4 throttles in a row: more than the SDK's own 3 attempts, so the
    // write's own retry loop is exercised too.
    let proxy = failing_batches(e.moto.endpoint(), "Throttling", 400, 4, 0).await;
    let r53 = Route53::for_endpoint(&proxy.url()).await;
    let started = Instant::now();
    let summary = r53.write_weights(&e.zone, &names, &target).await.unwrap();
    let took = started.elapsed();
    assert_eq!(summary.batches, 1);
    let made = r53.api_calls_by_operation();
    assert_eq!(
        made.change_record_sets, 5,
        "4 throttled attempts + the one that went through"
    );
    assert_eq!(
        proxy.faults_injected(),
        4,
        "every injected throttle was met"
    );
    assert!(
        took >= Duration::from_millis(500),
        "it backed off: {took:?}"
    );
    assert_complete(&e.r53.check(&e.zone, &names, &target).await.unwrap());

    // PriorRequestNotComplete that never ends: bounded, then an error that
    // says the batch changed nothing.
    let initial = dump(&e.admin, &e.zone).await;
    let proxy = failing_batches(
        e.moto.endpoint(),
        "PriorRequestNotComplete",
        400,
        u32::MAX,
        0,
    )
    .await;
    let r53 = Route53::for_endpoint(&proxy.url()).await;
    let started = Instant::now();
    let result = r53
        .write_weights(&e.zone, &names, &weights(&[(A, 0), (B, 100)]))
        .await;
    let Err(Route53Error::Api(why)) = result else {
        panic!("expected an API error, got {result:?}");
    };
    assert!(
        why.contains("batch 1 of 1") && why.contains("changed nothing"),
        "{why}"
    );
    assert!(why.contains("PriorRequestNotComplete"), "{why}");
    let attempts = r53.api_calls_by_operation().change_record_sets;
    assert!((5..=20).contains(&attempts), "{attempts} attempts");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(dump(&e.admin, &e.zone).await, initial);
}

#[tokio::test]
async fn a_failed_batch_is_reported_as_changing_nothing_after_earlier_batches() {
    let e = env().await;
    // 300 names × 2 clusters → 3 batches; the second one is rejected.
    let records: Vec<Rec> = (0..300)
        .map(|i| rec(&format!("f{i:03}.example.com"), "A", 60))
        .collect();
    seed_with(
        &e.admin,
        &e.zone,
        &records,
        &[(A, 100), (B, 0)],
        &|_, _, _| "192.0.2.1".to_owned(),
        &|_| "\"heritage=external-dns,external-dns/owner=o\"".to_owned(),
    )
    .await;
    let names: Vec<String> = records.iter().map(fqdn).collect();
    let initial = dump(&e.admin, &e.zone).await;
    let proxy = failing_batches(e.moto.endpoint(), "InvalidChangeBatch", 400, 1, 1).await;
    let r53 = Route53::for_endpoint(&proxy.url()).await;
    let target = weights(&[(A, 40), (B, 60)]);
    let as_o = Registry {
        owner_id: "o".into(),
        ..Registry::default()
    };
    let result = r53.write_weights_as(&as_o, &e.zone, &names, &target).await;
    let Err(Route53Error::Api(why)) = result else {
        panic!("expected an API error, got {result:?}");
    };
    assert!(
        why.contains("batch 2 of 3 (500 changes) failed and changed nothing"),
        "{why}"
    );
    assert!(
        why.contains("1 earlier batch(es) (500 changes) were applied"),
        "{why}"
    );
    assert_eq!(
        r53.api_calls_by_operation().change_record_sets,
        2,
        "no retry of a rejected batch"
    );
    // Exactly the first batch's 125 names moved; the rest did not.
    let after = dump(&e.admin, &e.zone).await;
    let moved: Vec<&Rec> = records.iter().take(125).collect();
    let moved: Vec<Rec> = moved.into_iter().cloned().collect();
    assert_eq!(after, reweighted(&initial, &moved, &target));
}
