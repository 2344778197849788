//! Crash safety of the real process: `failover-bot serve` runs a 3-step
//! failover against three real kube-apiservers and the wire-level fake
//! Slack, is SIGKILLed at a seeded random point, restarted on the same
//! journal, and driven to the end. Every run checks that:
//! 1. no cluster ever held a weight outside the before/after values of the
//!    plan's steps (every RoutingWeight change is watched, not sampled);
//! 2. the environment was never all zero;
//! 3. `failover-bot audit verify` accepts the journal, after the kill and
//!    at the end;
//! 4. the channel was told what happened: a restart in the middle of an
//!    operation is announced, every applied step's result and the
//!    operation's end are posted once, and no plan message is left
//!    claiming to await approval or to be applying;
//! 5. the operation completed at the last step's weights (a plan pending
//!    before the kill was approved on the same message after it), or was
//!    reported stopped with every cluster's real weight.
//!
//! Seeds: `FAILOVER_BOT_CRASH_SEEDS` (`1..50`, inclusive, or `7,9,13`, or
//! both mixed); by default a small fixed set that hits different phases.
//! `scripts/crash-harness` runs many seeds and prints a summary.
//!
//! All three API servers share one etcd, so every resourceVersion is one
//! global revision: sorting the watched changes by it gives the exact order
//! in which the clusters passed through their states.
//!
//! Here: the scenario and the test. [`seeds`] picks the runs, [`kill`]
//! where each kill is aimed and where it landed, [`world`] the clusters
//! (with the Lunar controller stand-in) and [`observer`] every state they
//! pass through, [`run`] drives one run, [`checks`] judges it, [`journal`]
//! reads the bot's journal from outside, [`report`] prints the lines
//! `scripts/crash-harness` summarizes.

#[path = "../support/mod.rs"]
mod support;

mod checks;
mod journal;
mod kill;
mod observer;
mod report;
mod run;
mod seeds;
mod world;

use std::time::Instant;

use report::{panicked, print_run, print_summary};
use run::run;
use seeds::seeds;
use world::World;

const ENV: &str = "dev";
const INITIAL: [u8; 3] = [60, 40, 0];
const STEPS: [u32; 3] = [10, 50, 100];
const COMMAND: &str = "to c steps 10,50,100";
const REQUESTER: &str = "alice";
const APPROVER: &str = "bob";

/// The runtime's extra workers keep the fake Slack, the watches and the
/// Lunar stand-in going while the kill watch blocks one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_seeded_points_of_a_three_step_failover_then_restart_loses_nothing() {
    let seeds = seeds();
    let started = Instant::now();
    let world = World::start().await;
    eprintln!(
        "crash: {} seed(s); clusters up in {:.1?}; plan targets {:?}",
        seeds.len(),
        world.env.started_in(),
        world.targets
    );
    let mut reports = Vec::new();
    for &seed in &seeds {
        let report = match tokio::spawn(run(seed, world.clone())).await {
            Ok(report) => report,
            Err(e) => panicked(seed, e),
        };
        print_run(&report);
        reports.push(report);
    }
    print_summary(&reports, started.elapsed());
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| {
            let violations = r.violations.join("\n  ");
            format!(
                "seed {}:\n  {violations}\n  journal:\n{}",
                r.seed, r.journal
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} runs broke an invariant (reproduce one with FAILOVER_BOT_CRASH_SEEDS=SEED):\n{}",
        failed.len(),
        reports.len(),
        failed.join("\n")
    );
}
