//! Exactly once (issue #7, item 2): 1,000 deliveries per transport —
//! every logical action (a command, an approval, a refusal-worthy reaction,
//! noise) delivered 2–4 times under the same `trigger_id` / `event_id`,
//! shuffled so that copies arrive out of order, late (a retry can land
//! phases after its first copy) and interleaved across ten environments,
//! several at a time. HTTP redeliveries carry `X-Slack-Retry-Num` and
//! `X-Slack-Retry-Reason`; Socket Mode redeliveries carry `retry_attempt`,
//! half of them under the same `envelope_id`, half under a new one.
//!
//! The real `failover-bot serve` runs with `--in-memory`: clusters seeded
//! from the config's `weight:` keys, so no API servers are needed — this is
//! about the Slack side, and the in-memory backend applies steps exactly as
//! the engine asks. Afterwards the channel transcript (fake Slack) and the
//! journal must show every action acting once: one operation per
//! environment, each step proposed, started and applied once, the final
//! weights those of the last plan, and one refusal per distinct delivery id.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::Value;
use support::fake_slack::{self, FakeSlack, Fault, Posted};
use support::serve_proc::{ServeProc, Transport};

const ENVS: usize = 10;
const DELIVERIES: usize = 1000;
const PHASES: usize = 5;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;
const SEED: u64 = 0x00e7_ac71_0ce0_0007;
const WAIT: Duration = Duration::from_secs(60);
const APPROVERS: [&str; 3] = ["UALICE", "UBOB", "UCAROL"];
/// Not an approver: may ask, may not approve.
const OUTSIDER: &str = "UEVE";
const APPROVE: &str = "white_check_mark";
const REJECT: &str = "x";

/// SplitMix64: a tiny seeded generator, so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

// ------------------------------------------------------------ the setup

/// Even environments have two clusters, odd ones three; half of them run
/// a one-step `shift`, half a two-step `to … steps`.
fn env_name(env: usize) -> String {
    format!("e{env}")
}

fn channel(env: usize) -> String {
    format!("C{env}")
}

fn steps(env: usize) -> usize {
    if env % 4 < 2 {
        1
    } else {
        2
    }
}

fn requester(env: usize) -> &'static str {
    APPROVERS[env % 3]
}

/// The two approvers who are not the requester.
fn approvers_for(env: usize) -> [&'static str; 2] {
    [APPROVERS[(env + 1) % 3], APPROVERS[(env + 2) % 3]]
}

fn main_command(env: usize) -> String {
    let target = if env.is_multiple_of(2) {
        "green"
    } else {
        "red"
    };
    match steps(env) {
        1 => format!("shift {} to {target}", 30 + 10 * (env % 3)),
        _ => format!("to {target} steps 40,100"),
    }
}

fn config() -> String {
    let channels: Vec<String> = (0..ENVS).map(channel).collect();
    let mut yaml = format!(
        "slack:\n  channels: [{}]\napproval:\n  approvers: [{}]\nenvironments:\n",
        channels.join(", "),
        APPROVERS.join(", ")
    );
    for env in 0..ENVS {
        let name = env_name(env);
        let weights: &[(&str, u32)] = if env.is_multiple_of(2) {
            &[("blue", 100), ("green", 0)]
        } else {
            &[("blue", 60), ("green", 40), ("red", 0)]
        };
        yaml += &format!("  {name}:\n    channel: {}\n    clusters:\n", channel(env));
        for (color, weight) in weights {
            yaml += &format!(
                "      - {{name: k8s-{color}.{name}.example.com, context: {name}-{color}, weight: {weight}}}\n"
            );
        }
    }
    yaml
}

// ------------------------------------------------- the logical actions

/// What an action means to the bot, and so what the transcript must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The environment's one weight-changing command.
    Main,
    /// Another command while the operation runs: refused as busy.
    Competing,
    /// `status`: one public status post.
    Status,
    /// Help or a mistake: answered in the acknowledgement itself.
    QuickReply,
    /// ✅ or ❌ added on a plan message: the first approver's ✅ applies
    /// the step, every other vote is refused in the plan's thread.
    Vote,
    /// Reactions the bot has no business with: nothing happens.
    Ignored,
}

/// Which message a reaction is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum On {
    Plan(usize),
    /// A message the bot never posted.
    Bogus,
    /// A plan message's ts, but in another channel.
    OtherChannel(usize),
}

#[derive(Clone, Debug)]
enum What {
    Command {
        user: &'static str,
        text: String,
    },
    Reaction {
        user: &'static str,
        name: &'static str,
        on: On,
        added: bool,
    },
}

#[derive(Clone, Debug)]
struct Action {
    id: usize,
    env: usize,
    /// The phase of its first delivery.
    phase: usize,
    copies: u32,
    role: Role,
    what: What,
    /// Socket Mode: redeliver under the first envelope id (else a new one).
    same_envelope: bool,
}

impl Action {
    /// `trigger_id` of a command, `event_id` of a reaction.
    fn delivery_id(&self) -> String {
        match self.what {
            What::Command { .. } => format!("trig-{}", self.id),
            What::Reaction { .. } => format!("Ev{:06}", self.id),
        }
    }

    fn envelope_id(&self, attempt: u32) -> String {
        if self.same_envelope {
            format!("env-{}", self.id)
        } else {
            format!("env-{}-{attempt}", self.id)
        }
    }

    fn is_vote_on(&self, env: usize, step: usize) -> bool {
        self.role == Role::Vote
            && self.env == env
            && matches!(self.what, What::Reaction { on: On::Plan(s), .. } if s == step)
    }
}

struct Builder {
    rng: Rng,
    actions: Vec<Action>,
}

impl Builder {
    fn add(&mut self, env: usize, phase: usize, role: Role, what: What) {
        let id = self.actions.len();
        let copies = 2 + self.rng.below(3) as u32;
        let same_envelope = self.rng.below(2) == 0;
        self.actions.push(Action {
            id,
            env,
            phase,
            copies,
            role,
            what,
            same_envelope,
        });
    }

    fn command(&mut self, env: usize, phase: usize, role: Role, user: &'static str, text: &str) {
        let text = text.to_owned();
        self.add(env, phase, role, What::Command { user, text });
    }

    fn reaction(
        &mut self,
        env: usize,
        phase: usize,
        role: Role,
        r: (&'static str, &'static str, On, bool),
    ) {
        let (user, name, on, added) = r;
        self.add(
            env,
            phase,
            role,
            What::Reaction {
                user,
                name,
                on,
                added,
            },
        );
    }

    fn deliveries(&self) -> usize {
        self.actions.iter().map(|a| a.copies as usize).sum()
    }
}

/// The actions each environment needs: its command, a competing command
/// while it waits, both other approvers' ✅ on every step, and a status
/// after everything (which shows the final weights).
fn essential(b: &mut Builder) {
    for env in 0..ENVS {
        b.command(env, 0, Role::Main, requester(env), &main_command(env));
        b.command(env, 1, Role::Competing, OUTSIDER, "shift 10 to green");
        for step in 1..=steps(env) {
            let phase = step + 1;
            for user in approvers_for(env) {
                b.reaction(
                    env,
                    phase,
                    Role::Vote,
                    (user, APPROVE, On::Plan(step), true),
                );
            }
        }
        b.command(env, 4, Role::Status, OUTSIDER, "status");
    }
}

/// One noise action of a kind that fits `phase` (plan messages exist from
/// phase 1, a second step's from phase 3; approvers' ❌ and the
/// requester's ❌ only once everything is over, as they would end a
/// pending plan).
fn noise(b: &mut Builder, env: usize, phase: usize) {
    let last = steps(env);
    let step = if phase >= 3 { 1 + b.rng.below(last) } else { 1 };
    let approver = approvers_for(env)[b.rng.below(2)];
    let kinds = if phase == 0 { 4 } else { 11 };
    match b.rng.below(kinds) {
        0 => b.command(env, phase, Role::Status, OUTSIDER, "status"),
        1 => b.command(env, phase, Role::QuickReply, requester(env), "shfit 50"),
        2 => b.command(env, phase, Role::QuickReply, OUTSIDER, "help"),
        3 => b.reaction(
            env,
            phase,
            Role::Ignored,
            (approver, APPROVE, On::Bogus, true),
        ),
        4 => b.reaction(
            env,
            phase,
            Role::Vote,
            (requester(env), APPROVE, On::Plan(step), true),
        ),
        5 => b.reaction(
            env,
            phase,
            Role::Vote,
            (OUTSIDER, APPROVE, On::Plan(step), true),
        ),
        6 => b.reaction(
            env,
            phase,
            Role::Vote,
            (OUTSIDER, REJECT, On::Plan(step), true),
        ),
        7 => b.reaction(
            env,
            phase,
            Role::Ignored,
            (approver, "eyes", On::Plan(step), true),
        ),
        8 => b.reaction(
            env,
            phase,
            Role::Ignored,
            (OUTSIDER, APPROVE, On::Plan(step), false),
        ),
        9 => b.reaction(
            env,
            phase,
            Role::Ignored,
            (approver, APPROVE, On::OtherChannel(step), true),
        ),
        _ if phase == 4 => {
            let user = [approver, requester(env)][b.rng.below(2)];
            b.reaction(env, phase, Role::Vote, (user, REJECT, On::Plan(step), true));
        }
        _ if phase == 1 => b.command(env, phase, Role::Competing, OUTSIDER, "shift 20 to green"),
        _ => b.command(env, phase, Role::Status, OUTSIDER, "status"),
    }
}

/// Every logical action, with copies adding up to exactly [`DELIVERIES`].
fn actions(seed: u64) -> Vec<Action> {
    let mut b = Builder {
        rng: Rng(seed),
        actions: Vec::new(),
    };
    essential(&mut b);
    while b.deliveries() < DELIVERIES {
        let env = b.rng.below(ENVS);
        let phase = b.rng.below(PHASES);
        noise(&mut b, env, phase);
    }
    // The last action's copies absorb the overshoot (2–4 stays 2–4 or
    // the action goes, and its copies move to another one).
    while b.deliveries() > DELIVERIES {
        let over = (b.deliveries() - DELIVERIES) as u32;
        let last = b.actions.last_mut().expect("actions");
        if last.copies - 2 >= over {
            last.copies -= over;
        } else {
            b.actions.pop();
        }
    }
    while b.deliveries() < DELIVERIES {
        let short = DELIVERIES - b.deliveries();
        let spare = b
            .actions
            .iter_mut()
            .rev()
            .find(|a| a.role != Role::Main && a.copies < 4);
        let spare = spare.expect("an action with room for another copy");
        spare.copies += (4 - spare.copies).min(short as u32);
    }
    b.actions
}

/// (action index, attempt) per phase, shuffled within the phase. A retry
/// lands in its action's phase or any later one.
fn schedule(actions: &[Action], rng: &mut Rng) -> Vec<Vec<(usize, u32)>> {
    let mut phases = vec![Vec::new(); PHASES];
    for (index, action) in actions.iter().enumerate() {
        phases[action.phase].push((index, 0));
        for attempt in 1..action.copies {
            let phase = action.phase + rng.below(PHASES - action.phase);
            phases[phase].push((index, attempt));
        }
    }
    for phase in &mut phases {
        rng.shuffle(phase);
    }
    phases
}

// ------------------------------------------------------ the transcript

fn plan_ts(posts: &[Posted], env: usize, step: usize) -> Option<String> {
    fake_slack::plans_in(posts, &channel(env))
        .into_iter()
        .find(|(s, _)| *s == step)
        .map(|(_, ts)| ts)
}

/// Steps applied and verified in the thread of plan `ts`.
fn applied_in(posts: &[Posted], ts: &str) -> usize {
    let applied = [("outcome", "applied"), ("verified", "true")];
    fake_slack::thread_of(posts, ts)
        .filter(|p| p.is("step_result", &applied))
        .count()
}

fn refusals_in(posts: &[Posted], ts: &str) -> usize {
    fake_slack::thread_of(posts, ts)
        .filter(|p| p.kind() == Some("refused"))
        .count()
}

/// Private answers saying the environment is busy. Ephemeral messages
/// carry no metadata (`chat.postEphemeral` takes none): the words are all
/// there is.
fn busy_answers(posts: &[Posted], env: usize) -> usize {
    posts
        .iter()
        .filter(|p| p.channel == channel(env) && p.ephemeral_user.as_deref() == Some(OUTSIDER))
        .filter(|p| p.text.contains("is busy"))
        .count()
}

fn status_posts(posts: &[Posted], env: usize) -> Vec<&Posted> {
    posts
        .iter()
        .filter(|p| p.channel == channel(env) && p.is_channel_post())
        .filter(|p| p.kind() == Some("status"))
        .collect()
}

/// Cluster → weight, from a status post's `weights` fact
/// (`k8s-blue.e0.example.com=60 …`).
fn status_weights(status: &Posted) -> BTreeMap<String, u64> {
    status
        .fact("weights")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pair| {
            let (cluster, weight) = pair.split_once('=')?;
            Some((cluster.to_owned(), weight.parse().ok()?))
        })
        .collect()
}

// ---------------------------------------------------------- the journal

fn records<'a>(journal: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    journal.iter().filter(move |r| r["type"] == kind)
}

/// The operation ids started in `env`.
fn ops_in(journal: &[Value], env: usize) -> Vec<u64> {
    records(journal, "started")
        .filter(|r| r["header"]["env"] == env_name(env).as_str())
        .filter_map(|r| r["header"]["id"].as_u64())
        .collect()
}

/// Plans journaled in `env` (the engine knows its messages from these).
fn proposed(journal: &[Value], env: usize) -> usize {
    records(journal, "proposed")
        .filter(|r| r["plan"]["scope"]["env"] == env_name(env).as_str())
        .count()
}

fn count_for_op(journal: &[Value], kind: &str, op: u64) -> usize {
    records(journal, kind).filter(|r| r["op"] == op).count()
}

// ---------------------------------------------------------- delivering

/// What the run saw of each delivery: failures, and quick replies.
#[derive(Default)]
struct Seen {
    problems: Vec<String>,
    /// Socket Mode: sends per envelope id.
    envelopes: HashMap<String, usize>,
}

struct Run<'a> {
    fake: &'a FakeSlack,
    bot: &'a ServeProc,
    actions: &'a [Action],
    seen: Mutex<Seen>,
}

impl Run<'_> {
    async fn deliver(&self, index: usize, attempt: u32) {
        let action = &self.actions[index];
        let envelope = action.envelope_id(attempt);
        let acked = match &action.what {
            What::Command { user, text } => {
                let trigger = action.delivery_id();
                let chan = channel(action.env);
                let payload = (*user, chan.as_str(), text.as_str(), trigger.as_str());
                self.bot
                    .deliver_command(self.fake, payload, &envelope, attempt)
                    .await
            }
            What::Reaction { .. } => {
                let event = self.event(action);
                self.bot
                    .deliver_event(self.fake, event, &envelope, attempt)
                    .await
            }
        };
        let mut seen = self.seen.lock().unwrap();
        *seen.envelopes.entry(envelope).or_default() += 1;
        match acked {
            Some(a) if a.status == 200 => {
                if let Some(problem) = wrong_reply(action, &a.text) {
                    seen.problems.push(problem);
                }
            }
            Some(a) => seen.problems.push(format!("{action:?}: HTTP {}", a.status)),
            None => seen
                .problems
                .push(format!("{action:?}: never acknowledged")),
        }
    }

    fn event(&self, action: &Action) -> Value {
        let What::Reaction {
            user,
            name,
            on,
            added,
        } = action.what
        else {
            unreachable!("only reactions are events");
        };
        let posts = self.fake.posts();
        let plan = |step| {
            plan_ts(&posts, action.env, step)
                .unwrap_or_else(|| panic!("{action:?}: no plan message for step {step} yet"))
        };
        let (chan, ts) = match on {
            On::Plan(step) => (channel(action.env), plan(step)),
            On::OtherChannel(step) => ("CELSEWHERE".to_owned(), plan(step)),
            On::Bogus => (channel(action.env), format!("1600000000.{:06}", action.id)),
        };
        let id = action.delivery_id();
        fake_slack::reaction_event(&id, user, name, &chan, &ts, added)
    }

    async fn phase(&self, deliveries: &[(usize, u32)]) {
        stream::iter(deliveries)
            .for_each_concurrent(CONCURRENCY, |&(index, attempt)| {
                self.deliver(index, attempt)
            })
            .await;
    }

    /// Until `pred` holds for the transcript (and, if `journal`, the
    /// journal: read only then, as it is re-parsed on every poll).
    async fn wait(&self, what: &str, journal: bool, pred: impl Fn(&[Posted], &[Value]) -> bool) {
        let ok = self
            .fake
            .wait_until(what, WAIT, |f| {
                let records = if journal {
                    self.bot.journal_json()
                } else {
                    Vec::new()
                };
                pred(&f.posts(), &records)
            })
            .await;
        assert!(ok, "{what}; bot log:\n{}", self.bot.log());
    }
}

/// The immediate answer every copy of a command gets: the same one.
fn wrong_reply(action: &Action, reply: &str) -> Option<String> {
    let What::Command { text, .. } = &action.what else {
        return None;
    };
    // Acknowledgements carry text only (no metadata).
    let fine = match action.role {
        Role::QuickReply if text == "help" => reply.contains("/failover shift PERCENT"),
        Role::QuickReply => reply.contains("did you mean `shift`?"),
        _ => reply.contains("Working on"),
    };
    (!fine).then(|| format!("{action:?}: immediate reply {reply:?}"))
}

// ------------------------------------------------------------ the test

/// What must have happened once the dust settles.
struct Expected {
    /// (env, step) → votes (distinct event ids) on that plan message.
    votes: HashMap<(usize, usize), usize>,
    busy: Vec<usize>,
    statuses: Vec<usize>,
    triggers: Vec<String>,
}

fn expected(actions: &[Action]) -> Expected {
    let mut votes = HashMap::new();
    for env in 0..ENVS {
        for step in 1..=steps(env) {
            let n = actions.iter().filter(|a| a.is_vote_on(env, step)).count();
            votes.insert((env, step), n);
        }
    }
    let per_env = |role| {
        (0..ENVS)
            .map(|env| {
                actions
                    .iter()
                    .filter(|a| a.env == env && a.role == role)
                    .count()
            })
            .collect()
    };
    let triggers = actions
        .iter()
        .filter(|a| matches!(a.what, What::Command { .. }))
        .map(Action::delivery_id)
        .collect();
    Expected {
        votes,
        busy: per_env(Role::Competing),
        statuses: per_env(Role::Status),
        triggers,
    }
}

/// What is still missing before the run has settled (empty: nothing).
fn missing(expected: &Expected, posts: &[Posted], journal: &[Value]) -> Vec<String> {
    let mut missing = Vec::new();
    for (&(env, step), &votes) in &expected.votes {
        let refused = plan_ts(posts, env, step).map_or(0, |ts| refusals_in(posts, &ts));
        if refused + 1 < votes {
            missing.push(format!(
                "e{env} step {step}: {refused} of {} refusals",
                votes - 1
            ));
        }
    }
    for env in 0..ENVS {
        let statuses = status_posts(posts, env).len();
        if statuses < expected.statuses[env] {
            missing.push(format!(
                "e{env}: {statuses} of {} status posts",
                expected.statuses[env]
            ));
        }
    }
    let commands = records(journal, "command").count();
    if commands < expected.triggers.len() {
        missing.push(format!(
            "{commands} of {} commands journaled",
            expected.triggers.len()
        ));
    }
    missing
}

async fn exactly_once(transport: Transport) {
    let actions = actions(SEED);
    let mut rng = Rng(SEED ^ 0x5c4e_d01e);
    let phases = schedule(&actions, &mut rng);
    let fake = FakeSlack::start().await;
    let bot = ServeProc::options(&config())
        .transport(transport)
        .start(&fake)
        .await;
    let run = Run {
        fake: &fake,
        bot: &bot,
        actions: &actions,
        seen: Mutex::default(),
    };
    let expected = expected(&actions);

    run.phase(&phases[0]).await;
    // Plans journaled, not only posted: a reaction in between is lost
    // (see `an_approval_arriving_while_the_hint_reactions_are_added_is_not_lost`).
    run.wait("every environment's first plan", true, |posts, journal| {
        (0..ENVS).all(|env| plan_ts(posts, env, 1).is_some() && proposed(journal, env) >= 1)
    })
    .await;
    run.phase(&phases[1]).await;
    run.wait(
        "busy answers to the competing commands",
        false,
        |posts, _| (0..ENVS).all(|env| busy_answers(posts, env) >= expected.busy[env]),
    )
    .await;
    run.phase(&phases[2]).await;
    run.wait(
        "first steps applied, second plans shown",
        true,
        |posts, journal| {
            (0..ENVS).all(|env| {
                let applied = plan_ts(posts, env, 1).is_some_and(|ts| applied_in(posts, &ts) > 0);
                let shown = plan_ts(posts, env, 2).is_some() && proposed(journal, env) >= 2;
                applied && (steps(env) == 1 || shown)
            })
        },
    )
    .await;
    run.phase(&phases[3]).await;
    run.wait("every operation finished", true, |_, journal| {
        records(journal, "finished").count() >= ENVS
    })
    .await;
    run.phase(&phases[4]).await;
    let settled = run
        .fake
        .wait_until("every refusal, status and command", WAIT, |f| {
            missing(&expected, &f.posts(), &bot.journal_json()).is_empty()
        })
        .await;
    let missing = missing(&expected, &fake.posts(), &bot.journal_json());
    assert!(settled, "missing: {missing:#?}\nbot log:\n{}", bot.log());
    // Late duplicates would act now, if they ever did.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    check(&run, &expected, &phases);
}

fn check(run: &Run<'_>, expected: &Expected, phases: &[Vec<(usize, u32)>]) {
    let seen = run.seen.lock().unwrap();
    let log = run.bot.log();
    assert!(
        seen.problems.is_empty(),
        "{:#?}\nbot log:\n{log}",
        seen.problems
    );
    let delivered: usize = phases.iter().map(Vec::len).sum();
    assert_eq!(delivered, DELIVERIES);
    if run.bot.transport() == Transport::Socket {
        for (envelope, sent) in &seen.envelopes {
            let acks = run.fake.acks_of(envelope).len();
            assert_eq!(acks, *sent, "acks of envelope {envelope}");
        }
    }
    let posts = run.fake.posts();
    let journal = run.bot.journal_json();
    check_operations(&posts, &journal);
    check_refusals(expected, &posts);
    check_journal_ids(expected, &journal);
    report(run, phases, &posts, &journal);
}

/// One operation per environment; each step proposed, started, applied
/// and reported once; the final weights are the last plan's.
fn check_operations(posts: &[Posted], journal: &[Value]) {
    for env in 0..ENVS {
        let ops = ops_in(journal, env);
        assert_eq!(ops.len(), 1, "operations started in e{env}");
        let op = ops[0];
        let n = steps(env);
        assert_eq!(count_for_op(journal, "proposed", op), n, "e{env} proposed");
        assert_eq!(
            count_for_op(journal, "step_started", op),
            n,
            "e{env} step_started"
        );
        assert_eq!(
            count_for_op(journal, "step_finished", op),
            n,
            "e{env} step_finished"
        );
        assert_eq!(count_for_op(journal, "finished", op), 1, "e{env} finished");
        let plans = fake_slack::plans_in(posts, &channel(env));
        assert_eq!(plans.len(), n, "plan messages in e{env}: {plans:?}");
        for (step, ts) in &plans {
            assert_eq!(applied_in(posts, ts), 1, "e{env} step {step} applied");
        }
        let last_plan = records(journal, "proposed")
            .filter(|r| r["op"] == op)
            .last()
            .expect("a proposed plan");
        let planned: BTreeMap<String, u64> =
            serde_json::from_value(last_plan["plan"]["after"].clone()).expect("weights");
        let statuses = status_posts(posts, env);
        let last_status = statuses.last().expect("a status after everything");
        assert_eq!(
            last_status.fact("running"),
            Some("none"),
            "{}",
            last_status.summary()
        );
        assert_eq!(
            status_weights(last_status),
            planned,
            "final weights in e{env}: {}",
            last_status.summary()
        );
    }
}

/// Each refusal once per distinct delivery id.
fn check_refusals(expected: &Expected, posts: &[Posted]) {
    for (&(env, step), &votes) in &expected.votes {
        let ts = plan_ts(posts, env, step).expect("plan message");
        let refused = refusals_in(posts, &ts);
        assert_eq!(
            refused,
            votes - 1,
            "e{env} step {step}: {votes} distinct votes, one acts"
        );
    }
    for env in 0..ENVS {
        assert_eq!(
            busy_answers(posts, env),
            expected.busy[env],
            "busy answers in e{env}"
        );
        // Nobody else got a private answer: a repeated command would (busy,
        // or "already has those weights").
        let private = posts
            .iter()
            .filter(|p| p.channel == channel(env) && p.ephemeral_user.is_some())
            .count();
        assert_eq!(private, expected.busy[env], "private answers in e{env}");
        let statuses = status_posts(posts, env).len();
        assert_eq!(statuses, expected.statuses[env], "status posts in e{env}");
    }
}

/// Every trigger id journaled once; every event id decides at most once.
fn check_journal_ids(expected: &Expected, journal: &[Value]) {
    let mut commands: HashMap<String, usize> = HashMap::new();
    for record in records(journal, "command") {
        let event = record["event"].as_str().unwrap_or_default().to_owned();
        *commands.entry(event).or_default() += 1;
    }
    for trigger in &expected.triggers {
        let n = commands.get(&format!("command:{trigger}")).copied();
        assert_eq!(n, Some(1), "journal command records for {trigger}");
    }
    assert_eq!(commands.len(), expected.triggers.len(), "no other commands");
    let mut decided = HashSet::new();
    for record in records(journal, "decided") {
        if let Some(event) = record["event"].as_str() {
            assert!(decided.insert(event.to_owned()), "{event} decided twice");
        }
    }
}

fn report(run: &Run<'_>, phases: &[Vec<(usize, u32)>], posts: &[Posted], journal: &[Value]) {
    let per_phase: Vec<usize> = phases.iter().map(Vec::len).collect();
    let thread_posts = posts.iter().filter(|p| p.thread_ts.is_some()).count();
    let refusals = posts.iter().filter(|p| p.kind() == Some("refused")).count();
    let roles = [
        Role::Main,
        Role::Competing,
        Role::Status,
        Role::QuickReply,
        Role::Vote,
        Role::Ignored,
    ];
    let by_role: Vec<String> = roles
        .iter()
        .map(|role| {
            let n = run.actions.iter().filter(|a| a.role == *role).count();
            format!("{role:?} {n}")
        })
        .collect();
    eprintln!(
        "exactly once over {:?}: {DELIVERIES} deliveries of {} logical actions ({}), per phase {per_phase:?}; \
         {} posts ({thread_posts} in threads, {refusals} of them refusals), {} updates, {} journal records \
         ({} started, {} step_started)",
        run.bot.transport(),
        run.actions.len(),
        by_role.join(", "),
        posts.len(),
        run.fake.updates().len(),
        journal.len(),
        records(journal, "started").count(),
        records(journal, "step_started").count(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_thousand_duplicated_reordered_deliveries_act_exactly_once() {
    exactly_once(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_thousand_duplicated_reordered_deliveries_act_exactly_once() {
    exactly_once(Transport::Socket).await;
}

/// An approver who reacts as soon as the plan message shows up — while the
/// bot is still adding its ✅/❌ hints to it — must not be ignored: Slack
/// will not redeliver an event the bot acknowledged.
#[tokio::test]
async fn an_approval_arriving_while_the_hint_reactions_are_added_is_not_lost() {
    // A slow Slack: the plan is posted, the first hint takes two seconds.
    early_approval_is_applied(
        "reactions.add",
        Fault::Slow(Duration::from_secs(2)),
        "it arrived after the bot journaled the plan but before it had added both hints",
    )
    .await;
}

/// Slack shows a new message to everyone the moment it exists, and the
/// poster learns its ts from the answer: an approval can beat that answer,
/// so the bot cannot know the message yet when the reaction arrives.
#[tokio::test]
async fn an_approval_arriving_before_the_bot_learns_its_plan_message_is_not_lost() {
    early_approval_is_applied(
        "chat.postMessage",
        Fault::LateAnswer(Duration::from_secs(2)),
        "it arrived while Slack's answer to the plan's chat.postMessage was still on its way",
    )
    .await;
}

async fn early_approval_is_applied(method: &str, fault: Fault, when: &str) {
    let fake = FakeSlack::start().await;
    fake.fail_next(method, fault);
    let bot = ServeProc::options(&config()).start(&fake).await;
    let text = main_command(0);
    let command = (requester(0), "C0", text.as_str(), "trig-early");
    let acked = bot.deliver_command(&fake, command, "", 0).await;
    assert!(acked.is_some_and(|a| a.text.contains("Working on")));
    let shown = fake
        .wait_until("the plan message", WAIT, |f| {
            plan_ts(&f.posts(), 0, 1).is_some()
        })
        .await;
    assert!(shown, "no plan; bot log:\n{}", bot.log());
    let ts = plan_ts(&fake.posts(), 0, 1).expect("plan message");
    let approver = approvers_for(0)[0];
    let event = fake_slack::reaction_event("Ev-early", approver, APPROVE, "C0", &ts, true);
    let acked = bot.deliver_event(&fake, event, "", 0).await;
    assert_eq!(acked.map(|a| a.status), Some(200));
    let applied = fake
        .wait_until("the early approval applied", Duration::from_secs(10), |f| {
            applied_in(&f.posts(), &ts) == 1
        })
        .await;
    assert!(
        applied,
        "an approval was dropped as a reaction on an unknown message; {when}; bot log:\n{}",
        bot.log()
    );
}

#[test]
fn the_schedule_holds_exactly_a_thousand_deliveries_of_two_to_four_copies() {
    let actions = actions(SEED);
    let total: u32 = actions.iter().map(|a| a.copies).sum();
    assert_eq!(total as usize, DELIVERIES);
    assert!(actions.iter().all(|a| (2..=4).contains(&a.copies)));
    let phases = schedule(&actions, &mut Rng(1));
    assert_eq!(phases.iter().map(Vec::len).sum::<usize>(), DELIVERIES);
}
