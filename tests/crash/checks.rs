//! The checks of a finished run (numbered as in the crate's doc), each
//! adding what it finds to the run's violations.

use std::collections::BTreeSet;
use std::time::Duration;

use failover_bot::chat::RESENT_NOTE;
use failover_bot::journal::{Entry, Record};
use failover_bot::operation::OperationOutcome;
use failover_bot::plan::Weights;

use crate::journal::audit_verifies;
use crate::observer::{Observer, Seen};
use crate::run::{AtKill, Run};
use crate::support::fake_slack::{FakeSlack, Posted};
use crate::world::World;
use crate::{INITIAL, REQUESTER, STEPS};

/// A message's text now: its last update, or as posted.
fn current_text(fake: &FakeSlack, post: &Posted) -> String {
    fake.last_update(&post.ts)
        .unwrap_or_else(|| post.text.clone())
}

/// The message that ends operation #1, however it ended.
fn is_closing(text: &str) -> bool {
    [
        "complete:",
        "stopped at",
        "rejected by",
        "expired:",
        "withdrawn by",
        "aborted by",
    ]
    .iter()
    .any(|end| text.contains(&format!("Operation #1 {end}")))
}

fn channel_posts(fake: &FakeSlack) -> Vec<String> {
    fake.posts()
        .into_iter()
        .filter(|p| p.ephemeral_user.is_none())
        .map(|p| p.text)
        .collect()
}

/// Checks 1 and 2 over every state the watches saw, in revision order.
/// `foreign` is the revision of someone else's change, if a run made one:
/// it is exempt, and nothing may be written after it.
fn check_weights(
    world: &World,
    seen: &[Seen],
    records: &[Record],
    foreign: Option<u64>,
    violations: &mut Vec<String>,
) {
    let mut allowed: Vec<BTreeSet<u8>> = vec![BTreeSet::new(); 3];
    for record in records {
        if let Entry::Proposed { plan, .. } = &record.entry {
            if !world
                .targets
                .windows(2)
                .any(|w| w[0] == plan.before && w[1] == plan.after)
            {
                violations.push(format!(
                    "step {} was planned as {:?} → {:?}, not one of the failover's steps",
                    plan.scope.step, plan.before, plan.after
                ));
            }
            for (i, name) in world.names.iter().enumerate() {
                allowed[i].extend(plan.before.get(name));
                allowed[i].extend(plan.after.get(name));
            }
        }
    }
    let mut now: [Option<u8>; 3] = [None; 3];
    for s in seen {
        now[s.cluster] = s.weight;
        let name = &world.names[s.cluster];
        match foreign {
            Some(rv) if s.revision == rv => continue,
            Some(rv) if s.revision > rv => violations.push(format!(
                "{name} was written (to {:?}) after someone else's change, at revision {}",
                s.weight, s.revision
            )),
            _ => {}
        }
        let initial = Some(INITIAL[s.cluster]);
        if s.weight != initial && !s.weight.is_some_and(|w| allowed[s.cluster].contains(&w)) {
            violations.push(format!(
                "{name} held weight {:?} (revision {}), outside every plan's before/after {:?}",
                s.weight, s.revision, allowed[s.cluster]
            ));
        }
        if now.iter().all(|w| *w == Some(0)) {
            violations.push(format!("all clusters at 0 at revision {}", s.revision));
        }
    }
}

/// Check 4: what the channel was told.
fn check_channel(
    fake: &FakeSlack,
    at_kill: &AtKill,
    outcome: Option<&OperationOutcome>,
    violations: &mut Vec<String>,
) {
    let announced = posts_since(fake, at_kill.posts)
        .iter()
        .any(|t| t.contains("failover-bot restarted"));
    if at_kill.active && !announced {
        violations.push("the restart in the middle of the operation was not announced".into());
    }
    let told_requester = fake.posts().iter().skip(at_kill.posts).any(|p| {
        p.ephemeral_user.as_deref() == Some(REQUESTER)
            && p.text.contains("restarted while handling")
    });
    if at_kill.cut_short && !told_requester {
        violations.push("a command the kill cut short was never answered".into());
    }
    let said = channel_posts(fake);
    // Said once; a post the kill cut off is sent again after the restart,
    // marked, and may then show twice (Slack may have taken the first copy
    // just before the kill): at most one marked copy, at most one unmarked.
    let once = |needle: &str, violations: &mut Vec<String>| {
        let copies: Vec<&String> = said.iter().filter(|t| t.contains(needle)).collect();
        let resent = copies.iter().filter(|t| t.contains(RESENT_NOTE)).count();
        if copies.is_empty() || resent > 1 || copies.len() - resent > 1 {
            violations.push(format!(
                "`{needle}` posted {} times ({resent} marked as sent again), not once",
                copies.len()
            ));
        }
    };
    if let Some(OperationOutcome::Completed) = outcome {
        for step in 1..=STEPS.len() {
            once(
                &format!("Step {step}/{} applied and verified", STEPS.len()),
                violations,
            );
        }
        once("Operation #1 complete", violations);
    }
}

/// Check 4b: no plan message is left claiming to await approval or to be
/// applying. One the journal never names (Slack took the post, the kill
/// came before its record) cannot be found again: the restarted bot must
/// have said that such a copy is void.
fn check_plan_messages(
    fake: &FakeSlack,
    records: &[Record],
    at_kill: &AtKill,
    violations: &mut Vec<String>,
) {
    let journaled: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Proposed { message, .. } => Some(message.ts.as_str()),
            _ => None,
        })
        .collect();
    let voided = posts_since(fake, at_kill.posts)
        .iter()
        .any(|t| t.contains("it is void"));
    for plan in fake.plan_posts() {
        if !journaled.contains(plan.ts.as_str()) {
            if !voided {
                violations.push(format!(
                    "plan message {} is in no journal record, and nobody was told it is void",
                    plan.ts
                ));
            }
            continue;
        }
        let text = current_text(fake, &plan);
        if text.contains("awaiting approval") || text.contains("applying") {
            let first = text.lines().next().unwrap_or_default().to_owned();
            violations.push(format!("plan message {} still says: {first}", plan.ts));
        }
    }
}

/// Check 5: completed at the last step's weights, or reported stopped with
/// every cluster's real weight (in what was posted after the restart: the
/// plan messages show planned weights, not real ones).
fn check_outcome(
    world: &World,
    fake: &FakeSlack,
    at_kill: &AtKill,
    outcome: Option<&OperationOutcome>,
    now: &Weights,
    violations: &mut Vec<String>,
) {
    match outcome {
        None => {}
        Some(OperationOutcome::Completed) => {
            let last = world.targets.last().expect("step targets");
            if now != last {
                violations.push(format!(
                    "completed, but the clusters hold {now:?}, not {last:?}"
                ));
            }
        }
        Some(other) => {
            let report = posts_since(fake, at_kill.posts).join("\n");
            if !report.contains("Operation #1 stopped") {
                violations.push(format!("ended {} without saying it stopped", other.word()));
            }
            for (cluster, weight) in now.iter() {
                if !lists_weight(&report, cluster, weight) {
                    violations.push(format!(
                        "stopped ({}), but the report does not give {cluster}'s weight {weight}",
                        other.word()
                    ));
                }
            }
        }
    }
}

/// Some line names `cluster` and has `weight` as a word of its own.
fn lists_weight(text: &str, cluster: &str, weight: u8) -> bool {
    let weight = weight.to_string();
    text.lines().any(|line| {
        line.contains(cluster)
            && line
                .split(|c: char| !c.is_ascii_digit())
                .any(|number| number == weight)
    })
}

/// Channel and thread posts (not ephemeral ones) from post number `from` on.
fn posts_since(fake: &FakeSlack, from: usize) -> Vec<String> {
    fake.posts()
        .into_iter()
        .skip(from)
        .filter(|p| p.ephemeral_user.is_none())
        .map(|p| p.text)
        .collect()
}

/// Every check of a finished run (the bot is killed at the end).
pub async fn check_run(
    run: &mut Run,
    world: &World,
    observer: &Observer,
    at_kill: &AtKill,
    outcome: Option<&OperationOutcome>,
) -> Vec<String> {
    // The end is journaled before it is said: give the closing message time.
    let closing = |f: &FakeSlack| channel_posts(f).iter().any(|t| is_closing(t));
    run.fake
        .wait_until("the closing message", Duration::from_secs(5), closing)
        .await;
    let (now, versions) = world.read().await;
    let mut violations = std::mem::take(&mut run.violations);
    if !observer.catch_up(&versions).await {
        violations.push("the watches never caught up with the clusters".into());
    }
    let records = run.records();
    check_weights(
        world,
        &observer.seen(),
        &records,
        at_kill.foreign,
        &mut violations,
    );
    check_channel(&run.fake, at_kill, outcome, &mut violations);
    check_plan_messages(&run.fake, &records, at_kill, &mut violations);
    check_outcome(world, &run.fake, at_kill, outcome, &now, &mut violations);
    if at_kill.foreign.is_some() && outcome.is_some_and(|o| *o == OperationOutcome::Completed) {
        violations.push("completed over someone else's change".into());
    }
    run.bot.kill();
    if let Err(e) = audit_verifies(&run.bot.journal_path()) {
        violations.push(format!("at the end: {e}"));
    }
    if run.bot.log().contains("panicked") {
        violations.push(format!("the bot panicked:\n{}", run.bot.log()));
    }
    violations
}
