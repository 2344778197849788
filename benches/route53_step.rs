//! One failover step in mode `route53` over 20 clusters × 10 records on a
//! local moto_server: `Route53::write_weights` (reads, batched UPSERTs,
//! GetChange) against the naive way — one `ChangeResourceRecordSets` call
//! per record set (20 × 10 × 2 = 400 calls) — with the same client.
//!
//! Needs the pinned moto from `scripts/test-env/provision`. Does nothing
//! unless run with `--bench` (`cargo bench --bench route53_step`), because
//! `cargo test --all-targets` runs benches as tests.

#[path = "../tests/support/moto.rs"]
mod moto;

use std::time::{Duration, Instant};

use aws_sdk_route53::types::{ChangeAction, ResourceRecord, ResourceRecordSet, RrType};
use failover_bot::backend::route53::{Route53, WeightedSet};
use failover_bot::ids::ClusterId;
use failover_bot::plan::Weights;

const CLUSTERS: usize = 20;
const RECORDS: usize = 10;
const ROUNDS: usize = 5;

fn cluster(i: usize) -> String {
    format!("k8s-{i:02}.prod.example.com")
}

fn record(i: usize) -> String {
    format!("svc{i:02}.example.com")
}

fn set(name: &str, ty: &str, id: &str, weight: i64, values: &[String]) -> ResourceRecordSet {
    ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::from(ty))
        .set_identifier(id)
        .weight(weight)
        .ttl(60)
        .set_resource_records(Some(
            values
                .iter()
                .map(|v| ResourceRecord::builder().value(v).build().unwrap())
                .collect(),
        ))
        .build()
        .unwrap()
}

/// The naive step: read each record name, then one UPSERT call per set.
async fn naive_step(r53: &Route53, zone: &str, records: &[String], target: &Weights) {
    for name in records {
        let sets: Vec<WeightedSet> = r53.record_sets(zone, name).await.expect("read");
        for s in sets {
            let Some(w) = target.get(&s.set_identifier) else {
                continue;
            };
            moto::change_record_sets(
                r53,
                zone,
                ChangeAction::Upsert,
                vec![set(
                    &s.name,
                    &s.record_type,
                    &s.set_identifier,
                    i64::from(w),
                    &s.values,
                )],
            )
            .await;
        }
    }
}

fn target(round: usize) -> Weights {
    // Alternate between two steps so every round really changes weights.
    (0..CLUSTERS)
        .map(|i| {
            let w: u8 = match (round % 2, i) {
                (0, 0) | (0, 1) => 50,
                (1, 1) => 100,
                _ => 0,
            };
            (ClusterId::from(cluster(i)), w)
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let moto = moto::Moto::start().await;
    let admin = Route53::for_endpoint(&moto.endpoint()).await;
    let zone = crate::moto::create_zone(admin.client(), "example.com").await;
    let records: Vec<String> = (0..RECORDS).map(record).collect();
    let mut seed = Vec::new();
    for (ri, name) in records.iter().enumerate() {
        for ci in 0..CLUSTERS {
            let w = if ci == 0 { 100 } else { 0 };
            let id = cluster(ci);
            seed.push(set(name, "A", &id, w, &[format!("10.{ci}.{ri}.1")]));
            let owner = format!(
                "\"heritage=external-dns,external-dns/owner=failover-bot,external-dns/resource=ingress/web/{name}\""
            );
            seed.push(set(name, "TXT", &id, w, &[owner]));
        }
    }
    moto::change_record_sets(&admin, &zone, ChangeAction::Create, seed).await;

    let r53 = Route53::for_endpoint(&moto.endpoint()).await;
    let mut ours_times = Vec::new();
    let mut naive_times = Vec::new();
    let mut ours_calls = Vec::new();
    let mut naive_calls = Vec::new();
    let mut last_summary = None;
    for round in 0..ROUNDS {
        let t = target(round);
        let before = r53.api_calls_by_operation();
        let started = Instant::now();
        let summary = r53
            .write_weights(&zone, &records, &t)
            .await
            .expect("write_weights");
        ours_times.push(started.elapsed());
        let made = r53.api_calls_by_operation().since(&before);
        ours_calls.push(made);
        assert!(r53
            .check(&zone, &records, &t)
            .await
            .unwrap()
            .iter()
            .all(|r| r.is_complete()));
        last_summary = Some(summary);

        let t = target(round + 1);
        let before = r53.api_calls_by_operation();
        let started = Instant::now();
        naive_step(&r53, &zone, &records, &t).await;
        naive_times.push(started.elapsed());
        naive_calls.push(r53.api_calls_by_operation().since(&before));
        assert!(r53
            .check(&zone, &records, &t)
            .await
            .unwrap()
            .iter()
            .all(|r| r.is_complete()));
    }
    let ours = ours_calls[0];
    let naive = naive_calls[0];
    assert!(ours_calls.iter().all(|c| *c == ours) && naive_calls.iter().all(|c| *c == naive));
    let summary = last_summary.unwrap();
    let (t_ours, t_naive) = (median(ours_times), median(naive_times));
    println!(
        "route53_step: {CLUSTERS} clusters × {RECORDS} records, moto, median of {ROUNDS} rounds"
    );
    println!(
        "  write_weights: {:>4} API calls ({} list, {} change in {} batch(es) of {} changes total, {} get-change) in {:>8.1?}",
        ours.total(),
        ours.list_record_sets,
        ours.change_record_sets,
        summary.batches,
        summary.changes,
        ours.get_change,
        t_ours
    );
    println!(
        "  naive:         {:>4} API calls ({} list, {} change)                       in {:>8.1?}",
        naive.total(),
        naive.list_record_sets,
        naive.change_record_sets,
        t_naive
    );
    let ratio = naive.total() as f64 / ours.total() as f64;
    let change_ratio = naive.change_record_sets as f64 / ours.change_record_sets as f64;
    println!(
        "  ratio: {ratio:.1}× fewer API calls ({change_ratio:.0}× fewer ChangeResourceRecordSets), {:.1}× faster (target ≥ 20× fewer calls: {})",
        t_naive.as_secs_f64() / t_ours.as_secs_f64(),
        if ratio >= 20.0 { "met" } else { "NOT met" }
    );
}
