//! Properties over random input: the parser never panics, the shift
//! arithmetic keeps its promises for any environment of 1–50 clusters, no
//! plan breaks an invariant, and applying any plan never passes through an
//! all-zero environment.

mod support;

use std::sync::Arc;

use proptest::prelude::*;

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::backend::RoutingBackend;
use failover_bot::command::understand;
use failover_bot::config::Config;
use failover_bot::engine::apply;
use failover_bot::ids::ClusterId;
use failover_bot::plan::{default_shift_target, shift, Change, Percent, Plan, PlanScope, Weights};

/// Commands are read against the sandbox's config, from its channel and
/// from one it refuses.
fn read_everywhere(
    text: &str,
) -> Vec<Result<failover_bot::command::Understood, failover_bot::command::CommandError>> {
    let config = Config::from_yaml(include_str!("../examples/sandbox.yaml")).unwrap();
    ["sandbox", "C0OTHER", "D0DIRECT"]
        .iter()
        .map(|channel| understand(&config, channel, text))
        .collect()
}

fn environment() -> impl Strategy<Value = Weights> {
    prop::collection::vec(0u8..=255, 1..=50)
        .prop_filter("not all zero", |w| w.iter().any(|x| *x > 0))
        .prop_map(|ws| {
            ws.into_iter()
                .enumerate()
                .map(|(i, w)| (ClusterId::from(format!("cluster-{i:02}")), w))
                .collect()
        })
}

fn words() -> impl Strategy<Value = String> {
    let vocabulary = prop::sample::select(vec![
        "/failover",
        "shift",
        "shift!",
        "to",
        "in",
        "steps",
        "status",
        "abort",
        "rollback",
        "add",
        "remove",
        "history",
        "help",
        "50",
        "100",
        "0",
        "-1",
        "256",
        "50%",
        "10,50,100",
        "10,",
        ",",
        "green",
        "dev",
        "💥",
        "",
        "\u{0}",
        "999999999999999999999",
    ]);
    prop::collection::vec(vocabulary, 0..8).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics_on_any_text(text in any::<String>()) {
        let _ = read_everywhere(&text);
    }

    #[test]
    fn parser_never_panics_on_command_like_text(text in words()) {
        for read in read_everywhere(&text) {
            if let Err(e) = read {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn shift_gives_the_target_its_percent_and_keeps_proportions(
        current in environment(),
        target_index in any::<prop::sample::Index>(),
        percent in 0u32..=100,
    ) {
        prop_assume!(current.len() >= 2);
        let names: Vec<ClusterId> = current.clusters().cloned().collect();
        let target = &names[target_index.index(names.len())];
        let percent = Percent::new(percent).unwrap();
        let after = shift(&current, target, percent).unwrap();

        prop_assert_eq!(after.total(), 100);
        prop_assert_eq!(after.get(target), Some(percent.get()));
        prop_assert!(!after.all_zero());
        prop_assert!(after.clusters().eq(current.clusters()));
        // Each other cluster is within one point of its exact share.
        let others: u32 = current.iter().filter(|(n, _)| *n != target).map(|(_, w)| u32::from(w)).sum();
        let rest = 100.0 - f64::from(percent.get());
        let count = current.len() - 1;
        for (name, w) in current.iter().filter(|(n, _)| *n != target) {
            let exact = if others == 0 {
                rest / count as f64
            } else {
                rest * f64::from(w) / f64::from(others)
            };
            let got = f64::from(after.get(name).unwrap());
            prop_assert!((got - exact).abs() < 1.0, "{name}: {got} vs {exact}");
        }
    }

    #[test]
    fn every_plan_keeps_the_invariants(
        current in environment(),
        target_index in any::<prop::sample::Index>(),
        percent in 0u32..=100,
    ) {
        let names: Vec<ClusterId> = current.clusters().cloned().collect();
        let target = &names[target_index.index(names.len())];
        let Ok(after) = shift(&current, target, Percent::new(percent).unwrap()) else {
            prop_assert_eq!(current.len(), 1, "only a single cluster cannot shift");
            return Ok(());
        };
        let scope = PlanScope { env: "dev".into(), operation: 1, step: 1 };
        let plan = Plan::new(scope.clone(), Change::SetWeights, current.clone(), after.clone()).unwrap();
        let again = Plan::new(scope, Change::SetWeights, current, after).unwrap();
        prop_assert_eq!(plan.hash, again.hash, "the hash is stable");
        prop_assert!(!plan.after.all_zero());
    }

    #[test]
    fn default_target_is_a_unique_smallest_cluster(current in environment()) {
        let min = current.iter().map(|(_, w)| w).min().unwrap();
        match default_shift_target(&current) {
            Ok(target) => prop_assert_eq!(current.get(&target), Some(min)),
            Err(_) => prop_assert!(current.iter().filter(|(_, w)| *w == min).count() > 1),
        }
    }

    #[test]
    fn applying_any_plan_never_passes_through_all_zero(
        current in environment(),
        target_index in any::<prop::sample::Index>(),
        percent in 0u32..=100,
    ) {
        prop_assume!(current.len() >= 2);
        let names: Vec<ClusterId> = current.clusters().cloned().collect();
        let target = names[target_index.index(names.len())].clone();
        let after = shift(&current, &target, Percent::new(percent).unwrap()).unwrap();
        let yaml = config_for(&current);
        let config = Config::from_yaml(&yaml).unwrap();
        let memory = Arc::new(MemoryBackend::from_config(&config));
        let backend = support::FaultyBackend::over(memory.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let env = &config.environments["dev"];
        let snapshot = runtime.block_on(backend.read(env)).unwrap();
        let scope = PlanScope { env: "dev".into(), operation: 1, step: 1 };
        let plan = Plan::new(scope, Change::SetWeights, current, after.clone()).unwrap();
        let applied = runtime.block_on(apply(&backend, env, &plan, &snapshot));
        prop_assert!(applied.failure.is_none());
        prop_assert_eq!(memory.weights(), after);
        for seen in backend.trail.lock().unwrap().iter() {
            prop_assert!(!seen.weights.all_zero(), "all zero: {:?}", seen);
        }
    }
}

fn config_for(weights: &Weights) -> String {
    let clusters: String = weights
        .iter()
        .map(|(name, w)| format!("      - {{name: {name}, context: {name}, weight: {w}}}\n"))
        .collect();
    format!(
        "approval:\n  approvers: [alice, bob]\nenvironments:\n  dev:\n    clusters:\n{clusters}"
    )
}
