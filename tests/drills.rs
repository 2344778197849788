//! Drills through the engine, with a clock that moves only when the test
//! (or the backend double, while it writes and verifies) moves it, so each
//! step's parts are exact: waiting as long as the test waits before
//! approving, applying 2 s per cluster write, converging 30 s per
//! verification. The scorecard's figures must be those, and add up to the
//! total; earlier drills come from the journal (after a restart too); the
//! chart is uploaded once, to the drill's thread, as a PNG of its size;
//! `drills` lists them.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::chat::{Message, MessageKind, MessageRef};
use failover_bot::clock::OffsetClock;
use failover_bot::config::Config;
use failover_bot::drill::chart::{HEIGHT, WIDTH};
use failover_bot::engine::{CommandRequest, Engine, Reaction};
use support::backend::Hooked;
use support::bot::Builder;
use support::chat::is;
use support::{start_time, weights, RecordingChat, CONFIG};

const BLUE: &str = "k8s-blue.dev.example.com";
const GREEN: &str = "k8s-green.dev.example.com";

/// What the backend double makes each part take.
const PER_WRITE: Duration = Duration::from_secs(2);
const PER_VERIFY: Duration = Duration::from_secs(30);

/// The engine on in-memory clusters whose writes and verifications take
/// time on the test's clock, with a journal file that outlives it.
struct Bench {
    engine: Engine,
    parts: Builder,
    chat: Arc<RecordingChat>,
    clock: Arc<OffsetClock>,
    memory: Arc<MemoryBackend>,
    journal: PathBuf,
    _dir: tempfile::TempDir,
    events: AtomicU64,
}

impl Bench {
    fn new() -> Bench {
        let config = Arc::new(Config::from_yaml(CONFIG).unwrap());
        let memory = Arc::new(MemoryBackend::from_config(&config));
        let clock = Arc::new(OffsetClock::frozen_at(start_time()));
        let backend = Hooked::new(memory.clone(), clock.clone())
            .after_write(|clock, _, _| clock.advance(PER_WRITE))
            .before_verify(|clock| clock.advance(PER_VERIFY));
        let chat = Arc::new(RecordingChat::default());
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let parts = Builder::new(config)
            .backend(Arc::new(backend))
            .chat(chat.clone())
            .clock(clock.clone());
        Bench {
            engine: parts.clone().journal_file(&journal).build(),
            parts,
            chat,
            clock,
            memory,
            journal,
            _dir: dir,
            events: AtomicU64::new(0),
        }
    }

    /// A new process on the same journal, clusters and chat.
    async fn restart(&mut self) {
        // The old engine lets go of the journal first, as a dead process.
        self.engine = self.parts.clone().memory_journal().build();
        self.engine = self.parts.clone().journal_file(&self.journal).build();
        self.engine.resume().await;
    }

    fn event(&self) -> String {
        format!("Ev{}", self.events.fetch_add(1, Ordering::SeqCst))
    }

    async fn cmd(&self, user: &str, text: &str) {
        self.engine
            .handle_command(CommandRequest {
                user: user.into(),
                channel: "C1".into(),
                text: text.into(),
                event_id: Some(self.event()),
            })
            .await;
    }

    /// bob approves the plan awaiting approval, `after` it was posted.
    async fn approve_after(&self, after: Duration) {
        self.clock.advance(after);
        let at = self
            .engine
            .pending_plan_messages()
            .pop()
            .expect("a plan awaits approval");
        self.engine
            .handle_reaction(Reaction {
                user: "bob".into(),
                name: "white_check_mark".into(),
                message: at,
                added: true,
                event_id: Some(self.event()),
            })
            .await;
    }

    /// `/failover drill to green steps 50,100 and back`, each of its four
    /// steps approved after the matching wait.
    async fn drill_and_back(&self, waits: [u64; 4]) {
        self.cmd("alice", "drill to green steps 50,100 and back")
            .await;
        for wait in waits {
            self.approve_after(Duration::from_secs(wait)).await;
        }
        assert_eq!(
            self.memory.weights(),
            weights(&[(BLUE, 100), (GREEN, 0)]),
            "back where it began"
        );
    }

    fn scorecards(&self) -> Vec<Message> {
        self.chat.of_kind(MessageKind::DrillScorecard)
    }

    fn last_plan(&self) -> MessageRef {
        self.chat
            .plans()
            .last()
            .expect("a plan was posted")
            .0
            .clone()
    }
}

/// The `steps` fact of a step that waited `wait` seconds: two cluster
/// writes, one verification.
fn step_fact(wait: u64) -> String {
    let ms = |d: Duration| d.as_millis();
    format!("{}+{}+{}", wait * 1000, ms(PER_WRITE * 2), ms(PER_VERIFY))
}

/// Every part of every step in the `steps` fact, summed.
fn sum_of_parts(steps: &str) -> u64 {
    steps
        .split([',', '+'])
        .map(|n| n.parse::<u64>().expect("milliseconds"))
        .sum()
}

fn fact<'m>(message: &'m Message, key: &str) -> &'m str {
    message
        .fact(key)
        .unwrap_or_else(|| panic!("no {key} in {message:?}"))
}

/// Decodes a PNG: its width and height.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane size")];
    let frame = reader.next_frame(&mut pixels).expect("the PNG's image");
    (frame.width, frame.height)
}

#[tokio::test]
async fn a_drill_and_back_is_scored_with_exact_parts_that_add_up_to_its_total() {
    let bench = Bench::new();
    bench
        .cmd("alice", "drill to green steps 50,100 and back")
        .await;
    let (_, first_plan) = &bench.chat.plans()[0];
    assert!(
        is(
            first_plan,
            MessageKind::Plan,
            &[("drill", "true"), ("step", "1"), ("total", "4")]
        ),
        "the plan is marked as a drill of four steps: {first_plan:?}"
    );
    assert!(first_plan.text.contains("Drill"), "{}", first_plan.text);
    let waits = [95, 61, 240, 7];
    for wait in waits {
        bench.approve_after(Duration::from_secs(wait)).await;
    }
    assert_eq!(bench.memory.weights(), weights(&[(BLUE, 100), (GREEN, 0)]));

    let cards = bench.scorecards();
    assert_eq!(cards.len(), 1, "one scorecard");
    let card = &cards[0];
    let expected: Vec<String> = waits.iter().map(|w| step_fact(*w)).collect();
    assert_eq!(fact(card, "steps"), expected.join(","));
    let total: u64 = fact(card, "total_ms").parse().unwrap();
    assert_eq!(sum_of_parts(fact(card, "steps")), total, "parts add up");
    let per_step = (PER_WRITE * 2 + PER_VERIFY).as_millis() as u64;
    assert_eq!(total, waits.iter().sum::<u64>() * 1000 + 4 * per_step);
    assert_eq!(fact(card, "ended"), "completed");
    assert_eq!(card.fact("earlier"), None, "the first drill in dev");
    let thread = bench.last_plan();
    assert!(
        bench
            .chat
            .thread_has(&thread, MessageKind::DrillScorecard, &[("op", "1")]),
        "the scorecard is in the drill's thread"
    );

    let uploads = bench.chat.uploads();
    assert_eq!(uploads.len(), 1, "the chart, once");
    let (to, file) = &uploads[0];
    assert_eq!(to, &thread, "in the drill's thread");
    assert_eq!(file.filename, "drills-dev.png");
    assert_eq!(file.content_type, "image/png");
    assert_eq!(png_size(&file.bytes), (WIDTH, HEIGHT));
}

#[tokio::test]
async fn earlier_drills_are_read_from_the_journal_after_a_restart() {
    let mut bench = Bench::new();
    bench.drill_and_back([100, 100, 100, 100]).await;
    let first_total = fact(&bench.scorecards()[0], "total_ms").to_owned();
    bench.restart().await;

    bench.clock.advance(Duration::from_secs(86_400));
    bench.drill_and_back([50, 40, 30, 20]).await;
    let cards = bench.scorecards();
    assert_eq!(cards.len(), 2);
    let second = &cards[1];
    assert_eq!(fact(second, "op"), "2");
    assert_eq!(fact(second, "earlier"), "1", "drill 1, from the journal");
    assert_eq!(fact(second, "last_ms"), first_total);
    assert_eq!(fact(second, "best_ms"), first_total);
    assert_eq!(fact(second, "median_ms"), first_total);
    assert!(
        second.text.contains("A new best"),
        "faster than the only earlier drill: {}",
        second.text
    );
    let uploads = bench.chat.uploads();
    assert_eq!(uploads.len(), 2, "one chart per drill");
    assert!(
        uploads[1].1.alt_text.contains("#1") && uploads[1].1.alt_text.contains("#2"),
        "the second chart shows both drills: {}",
        uploads[1].1.alt_text
    );

    bench.cmd("carol", "drills").await;
    let answers = bench.chat.ephemerals("carol");
    let list = answers.last().expect("an answer to carol");
    assert!(
        is(
            list,
            MessageKind::Drills,
            &[("env", "dev"), ("drills", "2,1")]
        ),
        "newest first: {list:?}"
    );
    assert!(list.text.contains("completed in"), "{}", list.text);
    assert!(
        bench.chat.plans().len() == 8 && bench.engine.pending_plan_messages().is_empty(),
        "`drills` is an answer, not an operation"
    );
}

#[tokio::test]
async fn an_aborted_drill_is_scored_as_such_and_is_never_the_best() {
    let bench = Bench::new();
    bench.drill_and_back([300, 300, 300, 300]).await;
    let slow = fact(&bench.scorecards()[0], "total_ms").to_owned();

    bench.cmd("alice", "drill to green steps 50,100").await;
    bench.approve_after(Duration::from_secs(5)).await;
    bench.clock.advance(Duration::from_secs(12));
    bench.cmd("alice", "abort").await;
    let aborted = bench.scorecards().pop().unwrap();
    assert_eq!(fact(&aborted, "op"), "2");
    assert_eq!(fact(&aborted, "ended"), "aborted");
    assert_eq!(
        fact(&aborted, "steps"),
        format!("{},12000+0+0", step_fact(5)),
        "step 1, and step 2 as far as it got"
    );
    assert_eq!(
        sum_of_parts(fact(&aborted, "steps")),
        fact(&aborted, "total_ms").parse::<u64>().unwrap()
    );
    assert!(aborted.text.contains("aborted"), "{}", aborted.text);
    assert_eq!(
        bench.chat.uploads().len(),
        1,
        "no chart for a drill cut short"
    );

    // From 50/50: one step to 100, one back.
    bench
        .cmd("alice", "drill to green steps 100 and back")
        .await;
    bench.approve_after(Duration::from_secs(1)).await;
    bench.approve_after(Duration::from_secs(1)).await;
    let third = bench.scorecards().pop().unwrap();
    assert_eq!(fact(&third, "op"), "3");
    assert_eq!(
        fact(&third, "earlier"),
        "1",
        "only the completed drill is compared"
    );
    assert_eq!(
        fact(&third, "best_ms"),
        slow,
        "the quick aborted one is not the best"
    );

    bench.cmd("alice", "drills").await;
    let list = bench.chat.ephemerals("alice").pop().unwrap();
    assert!(list.text.contains("aborted after"), "{}", list.text);
}

#[tokio::test]
async fn a_failover_that_is_not_a_drill_gets_no_scorecard() {
    let bench = Bench::new();
    bench.cmd("alice", "to green steps 100").await;
    bench.approve_after(Duration::from_secs(5)).await;
    assert_eq!(bench.memory.weights(), weights(&[(BLUE, 0), (GREEN, 100)]));
    assert!(bench.scorecards().is_empty());
    assert!(bench.chat.uploads().is_empty());
    let (_, plan) = &bench.chat.plans()[0];
    assert_eq!(plan.fact("drill"), None, "{plan:?}");
    bench.cmd("alice", "drills").await;
    let list = bench.chat.ephemerals("alice").pop().unwrap();
    assert!(list.text.starts_with("No drills in dev"), "{}", list.text);
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_drill_keeps_its_times() {
    let mut bench = Bench::new();
    bench
        .cmd("alice", "drill to green steps 50,100 and back")
        .await;
    bench.approve_after(Duration::from_secs(70)).await;
    bench.approve_after(Duration::from_secs(80)).await;
    // The bot goes away while step 3 awaits approval, and comes back.
    bench.clock.advance(Duration::from_secs(40));
    bench.restart().await;
    bench.approve_after(Duration::from_secs(50)).await;
    bench.approve_after(Duration::from_secs(60)).await;
    let card = bench.scorecards().pop().expect("a scorecard");
    let expected = [70, 80, 90, 60].map(step_fact).join(",");
    assert_eq!(fact(&card, "steps"), expected, "the clock is the journal's");
    assert_eq!(
        sum_of_parts(fact(&card, "steps")),
        fact(&card, "total_ms").parse::<u64>().unwrap()
    );
    assert_eq!(bench.chat.uploads().len(), 1);
}

#[tokio::test]
async fn an_operation_that_is_not_a_drill_journals_no_drill_fields() {
    // Journals written before drills have neither field; records of
    // operations that are not drills stay byte for byte as they were.
    let bench = Bench::new();
    bench.cmd("alice", "to green steps 50,100").await;
    let started = std::fs::read_to_string(&bench.journal)
        .unwrap()
        .lines()
        .find(|l| l.contains("\"type\":\"started\""))
        .expect("a started record")
        .to_owned();
    assert!(!started.contains("\"drill\""), "{started}");
    assert!(!started.contains("\"back\""), "{started}");
    let plan = &bench.chat.plans()[0].1;
    assert_eq!(plan.fact("total"), Some("2"));
}
