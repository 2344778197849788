//! The checks of a finished run (numbered as in the crate's doc), each
//! adding what it finds to the run's violations. What the channel was told
//! is read from each message's kind and facts (its Slack metadata); only
//! ephemeral answers and the "sent again" mark are read from the words.

use std::collections::BTreeSet;
use std::time::Duration;

use failover_bot::journal::{Entry, Record};
use failover_bot::messages::RESENT_NOTE;
use failover_bot::operation::OperationOutcome;
use failover_bot::plan::Weights;

use crate::journal::audit_verifies;
use crate::observer::{Observer, Seen};
use crate::run::{AtKill, Run};
use crate::support::fake_slack::{FakeSlack, Posted};
use crate::world::World;
use crate::{INITIAL, REQUESTER, STEPS};

/// The message that ends operation #1, however it ended.
fn is_closing(post: &Posted) -> bool {
    post.is("finished", &[("op", "1")])
}

/// Channel and thread posts (not ephemeral ones).
fn channel_posts(fake: &FakeSlack) -> Vec<Posted> {
    fake.posts()
        .into_iter()
        .filter(|p| p.ephemeral_user.is_none())
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
        .any(|p| p.is("resuming", &[("op", "1")]));
    if at_kill.active && !announced {
        violations.push("the restart in the middle of the operation was not announced".into());
    }
    // Told privately, as the command's answer would have been: an
    // ephemeral message carries no metadata, so its words are all there is.
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
    // The mark is in the words only: it says how the message was sent,
    // which is no fact of what it says.
    let once = |kind: &str, facts: &[(&str, &str)], violations: &mut Vec<String>| {
        let copies: Vec<&Posted> = said.iter().filter(|p| p.is(kind, facts)).collect();
        let resent = copies
            .iter()
            .filter(|p| p.text.contains(RESENT_NOTE))
            .count();
        if copies.is_empty() || resent > 1 || copies.len() - resent > 1 {
            violations.push(format!(
                "`{kind}` {facts:?} posted {} times ({resent} marked as sent again), not once",
                copies.len()
            ));
        }
    };
    if let Some(OperationOutcome::Completed) = outcome {
        for step in 1..=STEPS.len() {
            let step = step.to_string();
            let applied = [
                ("op", "1"),
                ("step", step.as_str()),
                ("outcome", "applied"),
                ("verified", "true"),
            ];
            once("step_result", &applied, violations);
        }
        once(
            "finished",
            &[("op", "1"), ("outcome", "completed")],
            violations,
        );
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
        .any(|p| p.is("resuming", &[("doing", "reposting_plan")]));
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
        let status = fake.plan_status(&plan.ts).unwrap_or_default();
        if status == "pending" || status == "applying" {
            violations.push(format!("plan message {} is still {status}", plan.ts));
        }
    }
}

/// Check 5: completed at the last step's weights, or reported stopped with
/// every cluster's real weight (in what was posted after the restart: the
/// weights a stopped step read, not the plans' planned ones).
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
            let report = posts_since(fake, at_kill.posts);
            let stopped = [("op", "1"), ("outcome", "failed")];
            if !report.iter().any(|p| p.is("finished", &stopped)) {
                violations.push(format!("ended {} without saying it stopped", other.word()));
            }
            let reported = reported_weights(&report);
            for (cluster, weight) in now.iter() {
                let pair = format!("{cluster}={weight}");
                if !reported.contains(&pair) {
                    violations.push(format!(
                        "stopped ({}), but the report does not give {cluster}'s weight {weight}",
                        other.word()
                    ));
                }
            }
        }
    }
}

/// Every `cluster=weight` a stopped step reported as read when it stopped
/// (the `now` fact of its `step_stopped` message).
fn reported_weights(posts: &[Posted]) -> BTreeSet<String> {
    posts
        .iter()
        .filter(|p| p.kind() == Some("step_stopped"))
        .filter_map(|p| p.fact("now"))
        .flat_map(|now| now.split_whitespace().map(str::to_owned))
        .collect()
}

/// Channel and thread posts (not ephemeral ones) from post number `from` on.
fn posts_since(fake: &FakeSlack, from: usize) -> Vec<Posted> {
    fake.posts()
        .into_iter()
        .skip(from)
        .filter(|p| p.ephemeral_user.is_none())
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
    let closing = |f: &FakeSlack| channel_posts(f).iter().any(is_closing);
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
