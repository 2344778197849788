//! `serve`'s scheduled readiness check (`doctor.every`): each environment
//! is examined in turn and the engine posts its result when it changed, or
//! the weekly all-clear ([`crate::readiness::occasion`]). Time is
//! `tokio::time`, so tests pause it; ages are by the engine's clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::Doctor;
use crate::engine::Engine;
use crate::ids::EnvId;
use crate::readiness::Occasion;

/// Checks every `every`, the first time at once, until the task is dropped.
pub async fn run(doctor: Arc<Doctor>, engine: Arc<Engine>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    // A check that ran long (a cluster timing out) is not followed by a
    // burst of catch-up checks.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        check_once(&doctor, &engine).await;
    }
}

/// One round: every environment examined and, where worth it, posted.
/// The home cluster's findings (the Lease) go with each environment: no
/// environment can fail over without the bot.
pub async fn check_once(doctor: &Doctor, engine: &Engine) -> Vec<(EnvId, Option<Occasion>)> {
    let home = doctor.examine_home().await;
    let mut posted = Vec::new();
    for env in doctor.config().environment_names() {
        let finished = engine.finished_in(&env);
        let mut report = doctor.examine(&env, Some(&finished)).await;
        if let Some(home) = &home {
            report.findings.extend(home.findings.iter().cloned());
        }
        let worst = report.worst();
        let occasion = engine.report_readiness(report).await;
        let said = occasion.map_or("nothing", |o| match o {
            Occasion::Changed => "changed",
            Occasion::AllClear => "all clear",
        });
        tracing::info!(env = %env, %worst, said, "readiness checked");
        posted.push((env, occasion));
    }
    posted
}
