//! Issue targets: plan + apply of one step over 50 in-memory clusters
//! (< 1 ms). Measured three ways:
//! - `plan/shift_50`: the arithmetic and invariants alone;
//! - `step_50/memory_journal`: the whole engine path the sandbox takes —
//!   command → plan posted → approval → apply → verify → result posted —
//!   with the in-memory journal;
//! - `step_50/file_journal`: the same with the production journal on disk
//!   (one fsync per journal write, outbox records included), to show what
//!   durability costs;
//! - `step_50/signed_file_journal`: the same with every record signed
//!   (Ed25519, `serve --signing-key`), to show what tamper evidence costs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

use failover_bot::config::Config;
use failover_bot::engine::{CommandRequest, Engine, Reaction};
use failover_bot::ids::ClusterId;
use failover_bot::journal::sign::Signer;
use failover_bot::plan::{shift, Change, Percent, Plan, PlanScope, Weights};
use support::bot::Builder;
use support::chat::NullChat;

const CLUSTERS: usize = 50;

fn config() -> Config {
    let clusters: String = (0..CLUSTERS)
        .map(|i| {
            // 2 each: every shift then changes (nearly) every cluster.
            let weight = 2;
            format!(
                "      - {{name: k8s-{i:02}.dev.example.com, context: c{i}, weight: {weight}}}\n"
            )
        })
        .collect();
    Config::from_yaml(&format!(
        "approval:\n  approvers: [alice, bob]\nenvironments:\n  dev:\n    clusters:\n{clusters}"
    ))
    .expect("bench config")
}

/// The engine on the config's clusters in memory, the wall clock and a
/// chat that only hands out ids; its journal in memory, or in the file at
/// `journal` (new).
fn engine(journal: Option<&Path>) -> Engine {
    let builder = Builder::new(config()).chat(Arc::new(NullChat::default()));
    match journal {
        Some(path) => builder.journal_file(path).build(),
        None => builder.build(),
    }
}

/// One whole step: `/failover shift N to k8s-01`, then bob's approval.
async fn one_step(engine: &Engine, percent: u32) {
    engine
        .handle_command(CommandRequest {
            user: "alice".into(),
            channel: "C1".into(),
            text: format!("shift {percent} to k8s-01"),
            event_id: None,
        })
        .await;
    let message = engine.pending_plan_messages().pop().expect("plan shown");
    engine
        .handle_reaction(Reaction {
            user: "bob".into(),
            name: "white_check_mark".into(),
            message,
            added: true,
            event_id: None,
        })
        .await;
}

fn bench(c: &mut Criterion) {
    let current: Weights = (0..CLUSTERS)
        .map(|i| (ClusterId::from(format!("k8s-{i:02}")), 2))
        .collect();
    c.bench_function("plan/shift_50", |b| {
        b.iter(|| {
            let after = shift(&current, &"k8s-01".into(), Percent::new(50).unwrap()).unwrap();
            let scope = PlanScope {
                env: "dev".into(),
                operation: 1,
                step: 1,
            };
            Plan::new(scope, Change::SetWeights, current.clone(), after).unwrap()
        })
    });

    // Timers on: the engine's outbox bounds every chat call in time.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("step_50");
    let memory = engine(None);
    let mut flip = false;
    group.bench_function("memory_journal", |b| {
        b.iter(|| {
            flip = !flip;
            runtime.block_on(one_step(&memory, if flip { 60 } else { 40 }));
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let file = engine(Some(&dir.path().join("journal.jsonl")));
    group.sample_size(30);
    group.bench_function("file_journal", |b| {
        b.iter(|| {
            flip = !flip;
            runtime.block_on(one_step(&file, if flip { 60 } else { 40 }));
        })
    });
    let signed_dir = tempfile::tempdir().unwrap();
    let signed = Builder::new(config())
        .chat(Arc::new(NullChat::default()))
        .journal_file(&signed_dir.path().join("journal.jsonl"))
        .signing_key(Signer::generate().unwrap())
        .build();
    group.bench_function("signed_file_journal", |b| {
        b.iter(|| {
            flip = !flip;
            runtime.block_on(one_step(&signed, if flip { 60 } else { 40 }));
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
