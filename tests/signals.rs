//! Gates on real signals through the whole engine (issue 16): each test
//! runs a real Prometheus (Debian's package, provisioned like the API
//! server) scraping an exporter the test controls, so a metric can rise
//! after a step. The engine reads it through its gates; the clock is the
//! harness's, moved by hand, so a ten-minute bake takes no ten minutes.

mod support;

use std::time::Duration;

use failover_bot::chat::{Message, MessageKind};
use failover_bot::journal::{Entry, Record};
use support::chat::is;
use support::prometheus::{Exporter, Prometheus};
use support::{weights, Harness};

const BLUE: &str = "k8s-blue.dev.example.com";
const GREEN: &str = "k8s-green.dev.example.com";
const ERRORS: &str = "app_error_ratio";

/// An after-gate on each serving cluster's error ratio, held for ten minutes.
const AFTER_GATE: &str = r#"
      - name: error-rate
        query: max(app_error_ratio{cluster="{cluster}"})
        when: after
        pass_if: {below: 0.01}
        bake: 10m"#;

fn config(prometheus: &Prometheus, gates: &str, extra: &str) -> String {
    format!(
        r#"
approval:
  approvers: [alice, bob, erin]
environments:
  dev:
    channel: C1
    prometheus:
      url: {url}
      timeout: 5s
    gates:{gates}
{extra}
    clusters:
      - {{name: {BLUE}, context: blue, weight: 100}}
      - {{name: {GREEN}, context: green, weight: 0}}
"#,
        url = prometheus.url()
    )
}

/// An exporter serving each cluster's error ratio, and a Prometheus that
/// has scraped it.
async fn signals(series: &[(&str, f64)]) -> (Exporter, Prometheus) {
    let exporter = Exporter::start();
    for (cluster, value) in series {
        exporter.set_for_cluster(ERRORS, cluster, *value);
    }
    let prometheus = Prometheus::start(&exporter).await;
    for (cluster, value) in series {
        seen(&prometheus, cluster, *value).await;
    }
    (exporter, prometheus)
}

/// Waits until Prometheus has scraped `value` for `cluster`.
async fn seen(prometheus: &Prometheus, cluster: &str, value: f64) {
    let query = format!("{ERRORS}{{cluster=\"{cluster}\"}}");
    prometheus.wait_for(&query, |v| v == [value]).await;
}

async fn rises(exporter: &Exporter, prometheus: &Prometheus, cluster: &str, value: f64) {
    exporter.set_for_cluster(ERRORS, cluster, value);
    seen(prometheus, cluster, value).await;
}

fn dev(blue: u8, green: u8) -> failover_bot::plan::Weights {
    weights(&[(BLUE, blue), (GREEN, green)])
}

fn of_kind(h: &Harness, kind: MessageKind) -> Vec<Message> {
    h.chat.of_kind(kind)
}

fn last_of_kind(h: &Harness, kind: MessageKind) -> Message {
    of_kind(h, kind)
        .pop()
        .unwrap_or_else(|| panic!("no {kind} message; said:\n{}", h.chat.all_text()))
}

/// The plan posts (not their updates), oldest first.
fn plan_posts(h: &Harness) -> Vec<Message> {
    h.chat.plans().into_iter().map(|(_, m)| m).collect()
}

fn records(h: &Harness) -> Vec<Record> {
    h.journal_lines()
        .iter()
        .map(|l| failover_bot::journal::parse_line(l).expect("a journal line"))
        .collect()
}

/// The refusals `user` was answered with, by name.
fn refusals(h: &Harness, user: &str) -> Vec<Message> {
    h.chat
        .ephemerals(user)
        .into_iter()
        .filter(|m| m.kind == MessageKind::Refused)
        .collect()
}

/// Approves the plan awaiting approval, then lets the bake run out.
async fn approve_and_bake(h: &Harness) {
    h.approve("bob").await;
    h.advance(Duration::from_secs(10 * 60));
    h.engine.tick().await;
}

#[tokio::test]
async fn an_after_gate_rising_after_step_2_pauses_and_one_approval_puts_the_weights_back() {
    let (exporter, prometheus) = signals(&[(BLUE, 0.001), (GREEN, 0.001)]).await;
    let h = Harness::new(&config(&prometheus, AFTER_GATE, ""));
    h.cmd("alice", "to green steps 10,50,100").await;

    // Step 1: applied, then held for the bake; no second plan yet.
    h.approve("bob").await;
    assert_eq!(h.weights(), dev(90, 10));
    let bake = last_of_kind(&h, MessageKind::Bake);
    assert!(
        is(
            &bake,
            MessageKind::Bake,
            &[("step", "1"), ("state", "holding")]
        ),
        "{bake:?}"
    );
    assert_eq!(plan_posts(&h).len(), 1, "the next plan waits for the bake");
    h.advance(Duration::from_secs(5 * 60));
    h.engine.tick().await;
    assert_eq!(plan_posts(&h).len(), 1, "half-way through the bake");
    h.advance(Duration::from_secs(5 * 60));
    h.engine.tick().await;
    let baked = last_of_kind(&h, MessageKind::Bake);
    assert!(
        is(
            &baked,
            MessageKind::Bake,
            &[("step", "1"), ("state", "passed")]
        ),
        "{baked:?}"
    );
    assert_eq!(plan_posts(&h).len(), 2, "step 2's plan follows the bake");

    // Step 2: applied; green's error ratio rises during the bake.
    h.approve("bob").await;
    assert_eq!(h.weights(), dev(50, 50));
    rises(&exporter, &prometheus, GREEN, 0.2).await;
    h.advance(Duration::from_secs(60));
    h.engine.tick().await;

    let tripped = last_of_kind(&h, MessageKind::GateTripped);
    assert!(
        is(
            &tripped,
            MessageKind::GateTripped,
            &[("step", "2"), ("on_its_own", "false")]
        ),
        "{tripped:?}"
    );
    assert!(
        tripped.text.contains("error-rate")
            && tripped.text.contains("0.2")
            && tripped
                .text
                .contains(r#"max(app_error_ratio{cluster="k8s-green.dev.example.com"})"#),
        "the channel is told which gate, its value and its query:\n{}",
        tripped.text
    );
    assert_eq!(
        h.weights(),
        dev(50, 50),
        "nothing moves without an approval"
    );
    let way_back = plan_posts(&h).pop().unwrap();
    assert!(
        is(
            &way_back,
            MessageKind::Plan,
            &[("way_back", "true"), ("status", "pending")]
        ),
        "the way back is posted for approval: {way_back:?}"
    );
    assert_eq!(
        way_back.fact("after"),
        Some(format!("{BLUE}=100 {GREEN}=0").as_str())
    );

    h.approve("bob").await;
    assert_eq!(
        h.weights(),
        dev(100, 0),
        "one approval puts the weights back"
    );
    let finished = last_of_kind(&h, MessageKind::Finished);
    assert_eq!(finished.fact("outcome"), Some("failed"), "{finished:?}");
    assert_eq!(finished.fact("cause"), Some("gate_tripped"), "{finished:?}");
    let journal = records(&h);
    assert!(
        journal.iter().any(|r| matches!(&r.entry, Entry::Tripped { step: 2, checks, .. } if checks.iter().any(|c| c.cluster.as_str() == GREEN && c.blocks()))),
        "the tripped readings are journaled"
    );
    assert!(h.engine.active_operation("dev").is_none());
}

#[tokio::test]
async fn an_after_gate_without_data_pauses_the_operation() {
    // Only blue reports: green, once it carries traffic, has no data.
    let (_exporter, prometheus) = signals(&[(BLUE, 0.001)]).await;
    let h = Harness::new(&config(&prometheus, AFTER_GATE, ""));
    h.cmd("alice", "shift 50 to green").await;
    h.approve("bob").await;

    let tripped = last_of_kind(&h, MessageKind::GateTripped);
    assert!(
        tripped
            .fact("checks")
            .is_some_and(|c| c.contains(&format!("error-rate@{GREEN}=no_data"))),
        "{tripped:?}"
    );
    assert!(tripped.text.contains("no data"), "{}", tripped.text);
    assert_eq!(h.weights(), dev(50, 50));
    assert!(
        plan_posts(&h).pop().unwrap().fact("way_back") == Some("true"),
        "the way back awaits approval"
    );
}

#[tokio::test]
async fn an_advisory_gate_reports_a_failing_value_and_does_not_block() {
    let (_exporter, prometheus) = signals(&[(BLUE, 0.5), (GREEN, 0.5)]).await;
    let gates = format!("{AFTER_GATE}\n        advisory: true");
    let h = Harness::new(&config(&prometheus, &gates, ""));
    h.cmd("alice", "to green steps 50,100").await;
    h.approve("bob").await;
    let holding = last_of_kind(&h, MessageKind::Bake);
    assert!(
        holding
            .fact("checks")
            .is_some_and(|c| c.contains(&format!("error-rate@{GREEN}=fail"))),
        "the failing value is reported: {holding:?}"
    );
    assert!(holding.text.contains("advisory"), "{}", holding.text);
    h.advance(Duration::from_secs(10 * 60));
    h.engine.tick().await;
    assert!(of_kind(&h, MessageKind::GateTripped).is_empty());
    approve_and_bake(&h).await;
    assert_eq!(h.weights(), dev(0, 100));
    assert_eq!(
        last_of_kind(&h, MessageKind::Finished).fact("outcome"),
        Some("completed")
    );
}

/// A before-gate on green's error ratio; green reports one that fails.
const BEFORE_GATE: &str = r#"
      - name: error-rate-before
        query: max(app_error_ratio{cluster="{cluster}"})
        when: before
        pass_if: {below: 0.01}
        on_no_data: pass"#;

#[tokio::test]
async fn a_failing_before_gate_refuses_the_plan_unless_break_glass() {
    let (_exporter, prometheus) = signals(&[(BLUE, 0.001), (GREEN, 0.3)]).await;
    let h = Harness::new(&config(&prometheus, BEFORE_GATE, ""));
    h.cmd("alice", "shift 50 to green").await;
    let refused = refusals(&h, "alice").pop().expect("a refusal");
    assert_eq!(refused.fact("refusal"), Some("metric_gate"), "{refused:?}");
    assert!(
        refused.text.contains("error-rate-before") && refused.text.contains("0.3"),
        "{}",
        refused.text
    );
    assert!(plan_posts(&h).is_empty());
    assert_eq!(h.weights(), dev(100, 0));

    h.cmd("alice", "shift! 50 to green").await;
    let plan = plan_posts(&h).pop().expect("break-glass posts a plan");
    assert_eq!(plan.fact("break_glass"), Some("true"));
    assert_eq!(
        plan.fact("checks"),
        Some(format!("error-rate-before@{GREEN}=fail").as_str())
    );
    assert!(
        plan.text.contains("0.3"),
        "the plan shows the value:\n{}",
        plan.text
    );
    h.approve("bob").await;
    assert_eq!(h.weights(), dev(50, 50));
    let proposed = records(&h)
        .into_iter()
        .find_map(|r| match r.entry {
            Entry::Proposed { checks, .. } => Some(checks),
            _ => None,
        })
        .expect("a Proposed record");
    assert!(
        proposed
            .iter()
            .any(|c| c.cluster.as_str() == GREEN && !c.passed()),
        "the failing reading is journaled: {proposed:?}"
    );
}

#[tokio::test]
async fn a_before_gate_that_fails_after_the_plan_was_shown_stops_the_step() {
    let (exporter, prometheus) = signals(&[(BLUE, 0.001), (GREEN, 0.001)]).await;
    let h = Harness::new(&config(&prometheus, BEFORE_GATE, ""));
    h.cmd("alice", "shift 50 to green").await;
    let plan = plan_posts(&h).pop().expect("a plan");
    assert_eq!(
        plan.fact("checks"),
        Some(format!("error-rate-before@{GREEN}=pass").as_str())
    );
    rises(&exporter, &prometheus, GREEN, 0.3).await;
    h.approve("bob").await;
    assert_eq!(
        h.weights(),
        dev(100, 0),
        "evaluated again just before applying"
    );
    let finished = last_of_kind(&h, MessageKind::Finished);
    assert_eq!(
        finished.fact("refusal"),
        Some("metric_gate"),
        "{finished:?}"
    );
}

#[tokio::test]
async fn a_target_with_too_few_ready_replicas_is_refused_with_the_numbers() {
    let (_exporter, prometheus) = signals(&[(BLUE, 0.001), (GREEN, 0.001)]).await;
    let capacity = "    capacity:\n      headroom: 1.2\n      deployments:\n        - {namespace: payments, name: api}";
    let h = Harness::new(&config(&prometheus, " []", capacity));
    h.memory.set_ready(BLUE, "payments/api", 10);
    h.memory.set_ready(GREEN, "payments/api", 4);
    h.cmd("alice", "shift 50 to green").await;
    let refused = refusals(&h, "alice").pop().expect("a refusal");
    assert_eq!(refused.fact("refusal"), Some("capacity"), "{refused:?}");
    assert!(
        refused
            .text
            .contains("has 4 ready replicas there, needs 6 (10 serving now, headroom 1.2)"),
        "{}",
        refused.text
    );
    assert_eq!(h.weights(), dev(100, 0));

    h.memory.set_ready(GREEN, "payments/api", 6);
    h.cmd("alice", "shift 50 to green").await;
    let plan = plan_posts(&h).pop().expect("enough replicas: a plan");
    assert!(plan.text.contains("6 ready, needs 6"), "{}", plan.text);
}

#[tokio::test]
async fn on_gate_failure_rollback_puts_the_weights_back_without_an_approval() {
    let (exporter, prometheus) = signals(&[(BLUE, 0.001), (GREEN, 0.001)]).await;
    let h = Harness::new(&config(
        &prometheus,
        AFTER_GATE,
        "    on_gate_failure: rollback",
    ));
    h.cmd("alice", "shift 50 to green").await;
    let plan = plan_posts(&h).pop().unwrap();
    assert!(
        plan.text.contains("on_gate_failure: rollback"),
        "every plan says so:\n{}",
        plan.text
    );
    h.approve("bob").await;
    rises(&exporter, &prometheus, GREEN, 0.2).await;
    h.advance(Duration::from_secs(60));
    h.engine.tick().await;

    let tripped = last_of_kind(&h, MessageKind::GateTripped);
    assert_eq!(tripped.fact("on_its_own"), Some("true"));
    assert_eq!(h.weights(), dev(100, 0), "back without an approval");
    assert_eq!(
        last_of_kind(&h, MessageKind::Finished).fact("cause"),
        Some("gate_tripped")
    );
}

#[tokio::test]
async fn an_automatic_rollback_never_moves_traffic_onto_a_cluster_whose_own_gates_fail() {
    let (exporter, prometheus) = signals(&[(BLUE, 0.001), (GREEN, 0.001)]).await;
    let gates = format!("{AFTER_GATE}{BEFORE_GATE}");
    let h = Harness::new(&config(
        &prometheus,
        &gates,
        "    on_gate_failure: rollback",
    ));
    h.cmd("alice", "shift 50 to green").await;
    h.approve("bob").await;
    // Both clusters go bad: the way back would raise blue's share.
    rises(&exporter, &prometheus, BLUE, 0.4).await;
    rises(&exporter, &prometheus, GREEN, 0.2).await;
    h.advance(Duration::from_secs(60));
    h.engine.tick().await;

    assert_eq!(h.weights(), dev(50, 50), "nothing moves onto failing blue");
    let finished = last_of_kind(&h, MessageKind::Finished);
    assert_eq!(
        finished.fact("refusal"),
        Some("metric_gate"),
        "{finished:?}"
    );
    assert!(
        finished.text.contains(BLUE) && finished.text.contains("0.4"),
        "{}",
        finished.text
    );
}

#[tokio::test]
async fn a_bake_survives_a_restart() {
    let (exporter, prometheus) = signals(&[(BLUE, 0.001), (GREEN, 0.001)]).await;
    let mut h = Harness::new(&config(&prometheus, AFTER_GATE, ""));
    h.cmd("alice", "to green steps 50,100").await;
    h.approve("bob").await;
    h.restart().await;
    let resumed = last_of_kind(&h, MessageKind::Resuming);
    assert_eq!(resumed.fact("doing"), Some("baking"), "{resumed:?}");
    assert_eq!(plan_posts(&h).len(), 1, "still baking after the restart");
    rises(&exporter, &prometheus, GREEN, 0.2).await;
    h.advance(Duration::from_secs(60));
    h.engine.tick().await;
    assert!(
        !of_kind(&h, MessageKind::GateTripped).is_empty(),
        "{}",
        h.chat.all_text()
    );
    h.restart().await;
    let way_back = plan_posts(&h).pop().unwrap();
    assert_eq!(way_back.fact("way_back"), Some("true"));
    h.approve("bob").await;
    assert_eq!(h.weights(), dev(100, 0));
}
