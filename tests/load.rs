//! Load (issue #7, item 7): 100 slash commands at once across 10
//! environments (10 per environment, from 10 different users), then 200
//! reaction events at once (approvals by several approvers with Slack's
//! duplicate deliveries, rejections, refused votes, noise), against the real
//! `failover-bot serve --in-memory` (in-memory clusters seeded from the
//! config's `weight:` keys: no API servers needed), over both transports.
//!
//! Asserted: no deadlock (the whole run ends within [`OVERALL`]); every
//! delivery acknowledged within Slack's 3-second deadline (a functional
//! requirement, not a speed target: HTTP response time of `/slack/commands`
//! and `/slack/events`, or the time until the Socket Mode ack frame);
//! exactly one operation per environment, the other nine commands refused
//! as busy; one applied step per approved plan, none for a rejected one.
//! Ack latencies (p50/p99/max) are printed, not asserted.

mod support;

use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;
use support::fake_slack::{self, FakeSlack, Posted};
use support::serve_proc::{Acked, ServeProc, Transport};

const ENVS: usize = 10;
const COMMANDS_PER_ENV: usize = 10;
/// Environments whose plan is rejected rather than approved.
const REJECTED: [usize; 2] = [3, 7];
const APPROVERS: [&str; 3] = ["UAPP1", "UAPP2", "UAPP3"];
const OUTSIDER: &str = "UOUT";
/// Slack's deadline for acknowledging any delivery.
const SLACK_DEADLINE: Duration = Duration::from_secs(3);
/// Generous: the run takes a few seconds; only a deadlock comes near it.
const OVERALL: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(30);

fn channel(env: usize) -> String {
    format!("C{env}")
}

fn config() -> String {
    let channels: Vec<String> = (0..ENVS).map(channel).collect();
    let mut yaml = format!(
        "slack:\n  channels: [{}]\napproval:\n  approvers: [{}]\nenvironments:\n",
        channels.join(", "),
        APPROVERS.join(", ")
    );
    for env in 0..ENVS {
        yaml += &format!(
            "  l{env}:\n    channel: C{env}\n    clusters:\n\
             \x20     - {{name: k8s-blue.l{env}.example.com, context: l{env}-blue, weight: 100}}\n\
             \x20     - {{name: k8s-green.l{env}.example.com, context: l{env}-green, weight: 0}}\n"
        );
    }
    yaml
}

/// The 10 users who each type the command in every environment.
fn requester(k: usize) -> String {
    format!("UREQ{k}")
}

// ------------------------------------------------------------ the events

/// One reaction event and how many times Slack delivers it.
struct Vote {
    id: String,
    user: String,
    name: &'static str,
    times: usize,
}

/// 20 deliveries per plan: the three approvers' ✅ (❌ where the plan is
/// to be rejected), delivered 3, 3 and 2 times; four votes each from an
/// outsider and from the requester, which are refused; four 👀, ignored.
fn votes(env: usize, requester: &str) -> Vec<Vote> {
    let rejected = REJECTED.contains(&env);
    let (decisive, other) = if rejected {
        ("x", "white_check_mark")
    } else {
        ("white_check_mark", "x")
    };
    let mut votes = Vec::new();
    let mut vote = |user: &str, name, times| {
        let id = format!("Ev-{env}-{}", votes.len());
        let user = user.to_owned();
        votes.push(Vote {
            id,
            user,
            name,
            times,
        });
    };
    for (approver, times) in APPROVERS.iter().zip([3, 3, 2]) {
        vote(approver, decisive, times);
    }
    for _ in 0..4 {
        vote(OUTSIDER, other, 1);
        // The requester's ❌ would withdraw the plan: their ✅ is refused.
        vote(requester, "white_check_mark", 1);
        vote(APPROVERS[0], "eyes", 1);
    }
    votes
}

/// Votes that are ✅/❌: all but the first decisive one are refused.
fn counted(votes: &[Vote]) -> usize {
    votes.iter().filter(|v| v.name != "eyes").count()
}

// --------------------------------------------------------- the transcript

fn plan_ts(posts: &[Posted], env: usize) -> Option<String> {
    fake_slack::plans_in(posts, &channel(env))
        .into_iter()
        .map(|(_, ts)| ts)
        .next()
}

/// Messages of `kind` with `facts` in the thread of plan `ts`.
fn count_in_thread(posts: &[Posted], ts: &str, kind: &str, facts: &[(&str, &str)]) -> usize {
    fake_slack::thread_of(posts, ts)
        .filter(|p| p.is(kind, facts))
        .count()
}

/// Refused votes in the thread of plan `ts`.
fn refusals_in(posts: &[Posted], ts: &str) -> usize {
    count_in_thread(posts, ts, "refused", &[])
}

/// Steps applied and verified in the thread of plan `ts`.
fn applied_in(posts: &[Posted], ts: &str) -> usize {
    let applied = [("outcome", "applied"), ("verified", "true")];
    count_in_thread(posts, ts, "step_result", &applied)
}

/// Private answers saying the environment is busy. Ephemeral messages
/// carry no metadata (`chat.postEphemeral` takes none): the words are all
/// there is.
fn busy_answers(posts: &[Posted], env: usize) -> usize {
    posts
        .iter()
        .filter(|p| p.channel == channel(env) && p.ephemeral_user.is_some())
        .filter(|p| p.text.contains("is busy"))
        .count()
}

fn records<'a>(journal: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    journal.iter().filter(move |r| r["type"] == kind)
}

/// (op id, requester) of each operation started in `env`.
fn started_in(journal: &[Value], env: usize) -> Vec<(u64, String)> {
    let name = format!("l{env}");
    records(journal, "started")
        .filter(|r| r["header"]["env"] == name.as_str())
        .map(|r| {
            let header = &r["header"];
            let id = header["id"].as_u64().unwrap_or_default();
            (
                id,
                header["requester"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn count_for_op(journal: &[Value], kind: &str, op: u64) -> usize {
    records(journal, kind).filter(|r| r["op"] == op).count()
}

fn outcome_of(journal: &[Value], op: u64) -> Option<String> {
    let finished = records(journal, "finished").find(|r| r["op"] == op)?;
    // Tagged: `"outcome": {"outcome": "rejected", "by": …}`.
    finished["outcome"]["outcome"].as_str().map(str::to_owned)
}

// -------------------------------------------------------------- latency

struct Latencies(Vec<Duration>);

impl Latencies {
    fn of(acks: &[Option<Acked>]) -> Latencies {
        let mut all: Vec<Duration> = acks.iter().flatten().map(|a| a.elapsed).collect();
        all.sort();
        Latencies(all)
    }

    fn at(&self, p: f64) -> Duration {
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[index]
    }

    fn report(&self, what: &str, transport: Transport) -> String {
        format!(
            "{transport:?} {what}: {} acks, p50 {:?}, p99 {:?}, max {:?}",
            self.0.len(),
            self.at(0.5),
            self.at(0.99),
            self.at(1.0)
        )
    }
}

/// Every delivery answered 200 within Slack's deadline.
fn check_acks(what: &str, acks: &[Option<Acked>], log: impl Fn() -> String) {
    for (i, ack) in acks.iter().enumerate() {
        let Some(ack) = ack else {
            panic!("{what} #{i} never acknowledged; bot log:\n{}", log());
        };
        assert_eq!(ack.status, 200, "{what} #{i}: {ack:?}");
        assert!(
            ack.elapsed < SLACK_DEADLINE,
            "{what} #{i} acknowledged after {:?}, past Slack's 3 s",
            ack.elapsed
        );
    }
}

// ------------------------------------------------------------- the run

async fn commands(fake: &FakeSlack, bot: &ServeProc) -> Vec<Option<Acked>> {
    let deliveries = (0..ENVS).flat_map(|env| (0..COMMANDS_PER_ENV).map(move |k| (env, k)));
    join_all(deliveries.map(|(env, k)| async move {
        let user = requester(k);
        let chan = channel(env);
        let trigger = format!("load-{env}-{k}");
        let command = (
            user.as_str(),
            chan.as_str(),
            "shift 50 to green",
            trigger.as_str(),
        );
        bot.deliver_command(fake, command, &format!("env-{trigger}"), 0)
            .await
    }))
    .await
}

async fn reactions(
    fake: &FakeSlack,
    bot: &ServeProc,
    plans: &[(String, Vec<Vote>)],
) -> Vec<Option<Acked>> {
    let deliveries = plans.iter().enumerate().flat_map(|(env, (ts, votes))| {
        votes
            .iter()
            .flat_map(move |vote| (0..vote.times).map(move |attempt| (env, ts, vote, attempt)))
    });
    join_all(deliveries.map(|(env, ts, vote, attempt)| async move {
        let event =
            fake_slack::reaction_event(&vote.id, &vote.user, vote.name, &channel(env), ts, true);
        let envelope = format!("env-{}-{attempt}", vote.id);
        bot.deliver_event(fake, event, &envelope, attempt as u32)
            .await
    }))
    .await
}

async fn wait(
    fake: &FakeSlack,
    bot: &ServeProc,
    what: &str,
    pred: impl Fn(&[Posted], &[Value]) -> bool,
) {
    let ok = fake
        .wait_until(what, WAIT, |f| pred(&f.posts(), &bot.journal_json()))
        .await;
    assert!(ok, "{what}; bot log:\n{}", bot.log());
}

async fn load(transport: Transport) {
    let fake = FakeSlack::start().await;
    let bot = ServeProc::options(&config())
        .transport(transport)
        .start(&fake)
        .await;

    let command_acks = commands(&fake, &bot).await;
    check_acks("slash command", &command_acks, || bot.log());
    assert!(
        command_acks
            .iter()
            .flatten()
            // The acknowledgement: text only (no metadata).
            .all(|a| a.text.contains("Working on")),
        "every command is taken: {command_acks:?}"
    );
    // Journaled, not only posted: see tests/delivery.rs on early reactions.
    wait(
        &fake,
        &bot,
        "one plan per environment, nine busy answers",
        |posts, journal| {
            (0..ENVS).all(|env| {
                let journaled = records(journal, "proposed")
                    .any(|r| r["plan"]["scope"]["env"] == format!("l{env}").as_str());
                plan_ts(posts, env).is_some() && journaled && busy_answers(posts, env) >= 9
            })
        },
    )
    .await;

    let posts = fake.posts();
    let journal = bot.journal_json();
    let plans: Vec<(String, Vec<Vote>)> = (0..ENVS)
        .map(|env| {
            let ts = plan_ts(&posts, env).expect("plan");
            let (_, requester) = started_in(&journal, env).pop().expect("an operation");
            (ts, votes(env, &requester))
        })
        .collect();
    let delivered: usize = plans.iter().flat_map(|(_, v)| v).map(|v| v.times).sum();
    assert_eq!(delivered, 200);
    let reaction_acks = reactions(&fake, &bot, &plans).await;
    check_acks("reaction event", &reaction_acks, || bot.log());

    wait(
        &fake,
        &bot,
        "every plan decided, every vote answered",
        |posts, journal| {
            plans.iter().enumerate().all(|(env, (ts, votes))| {
                let refused = refusals_in(posts, ts);
                let done = started_in(journal, env)
                    .iter()
                    .all(|(op, _)| outcome_of(journal, *op).is_some());
                done && refused + 1 >= counted(votes)
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    check_outcome(&fake, &bot, &plans);
    eprintln!(
        "{}",
        Latencies::of(&command_acks).report("slash commands", transport)
    );
    eprintln!(
        "{}",
        Latencies::of(&reaction_acks).report("reaction events", transport)
    );
}

/// One operation per environment; the approved ones applied once, the
/// rejected ones not at all; every other vote refused once.
fn check_outcome(fake: &FakeSlack, bot: &ServeProc, plans: &[(String, Vec<Vote>)]) {
    let posts = fake.posts();
    let journal = bot.journal_json();
    for (env, (ts, votes)) in plans.iter().enumerate() {
        let started = started_in(&journal, env);
        assert_eq!(started.len(), 1, "operations in l{env}: {started:?}");
        let op = started[0].0;
        assert_eq!(
            busy_answers(&posts, env),
            COMMANDS_PER_ENV - 1,
            "busy answers in l{env}"
        );
        let plans_posted = fake_slack::plans_in(&posts, &channel(env)).len();
        assert_eq!(plans_posted, 1, "plan messages in l{env}");
        let applied = applied_in(&posts, ts);
        let steps = count_for_op(&journal, "step_started", op);
        let outcome = outcome_of(&journal, op);
        if REJECTED.contains(&env) {
            assert_eq!((applied, steps), (0, 0), "l{env} was rejected");
            assert_eq!(outcome.as_deref(), Some("rejected"), "l{env}");
        } else {
            assert_eq!((applied, steps), (1, 1), "l{env} applied once");
            assert_eq!(outcome.as_deref(), Some("completed"), "l{env}");
        }
        let refused = refusals_in(&posts, ts);
        assert_eq!(refused, counted(votes) - 1, "refused votes in l{env}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_100_commands_and_200_reactions_answered_in_time_one_operation_per_environment() {
    let run = tokio::time::timeout(OVERALL, load(Transport::Http)).await;
    assert!(run.is_ok(), "not finished within {OVERALL:?}: a deadlock?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_100_commands_and_200_reactions_answered_in_time_one_operation_per_environment()
{
    let run = tokio::time::timeout(OVERALL, load(Transport::Socket)).await;
    assert!(run.is_ok(), "not finished within {OVERALL:?}: a deadlock?");
}
