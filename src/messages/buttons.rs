//! The Approve and Reject buttons of a plan awaiting approval, and the
//! short text of their confirmation dialogs: the environment and the
//! change, as `blue 100→50, green 0→50`, or the number of clusters whose
//! weight changes when the list does not fit Slack's 300 characters.

use super::label_of;
use crate::approval::PlanClaim;
use crate::chat::{ButtonChoice, Confirmation, PlanButtons};
use crate::config::Config;
use crate::ids::EnvId;
use crate::notice::{HoldPlan, PlanNotice};
use crate::plan::Plan;

/// Slack's cap on a confirmation dialog's text.
pub const CONFIRM_TEXT_MAX: usize = 300;

/// The buttons of `plan`, shown while it awaits approval.
pub(super) fn plan_buttons(plan: &PlanNotice, which: &str, config: &Config) -> PlanButtons {
    let claim = PlanClaim {
        op: plan.header.id,
        step: plan.step,
        plan: plan.shown.plan.hash.clone(),
    };
    let env = &plan.header.env;
    let change = change_in_short(config, env, &plan.shown.plan);
    let dialog = |choice: ButtonChoice, outcome: &str| Confirmation {
        title: format!("{} #{} · {which}?", choice.label(), plan.header.id),
        text: fitted(env, &change, outcome, plan.shown.plan.after.iter().count()),
    };
    let (approved, rejected) = outcomes(plan);
    PlanButtons {
        value: claim.to_value(),
        approve: dialog(ButtonChoice::Approve, &approved),
        reject: dialog(ButtonChoice::Reject, rejected),
    }
}

/// What approving and what rejecting does, in a sentence each: an
/// `extend` or `keep` that is not approved leaves the shift holding.
fn outcomes(plan: &PlanNotice) -> (String, &'static str) {
    const ENDS: &str = "Rejecting ends the operation; no weight changes.";
    const HOLDS: &str = "Rejecting leaves the shift holding as it was.";
    match &plan.hold {
        Some(HoldPlan::Extend { to, .. }) => (
            format!("Approving holds them until {}.", super::clock_time(*to)),
            HOLDS,
        ),
        Some(HoldPlan::Keep { .. }) => (
            "Approving keeps them for good and ends the operation.".to_owned(),
            HOLDS,
        ),
        Some(HoldPlan::Return { .. }) | None => ("The bot applies it at once.".to_owned(), ENDS),
    }
}

/// Each cluster whose weight changes, as `label before→after`, in config
/// order; `None` when no weight changes (`keep`, `extend`).
fn change_in_short(config: &Config, env: &EnvId, plan: &Plan) -> Option<Vec<String>> {
    let changes: Vec<String> = super::ordered_rows(config, env, plan)
        .into_iter()
        .filter(|c| plan.before.get(c) != plan.after.get(c))
        .map(|c| {
            let weight = |w: Option<u8>| w.map_or_else(|| "none".to_owned(), |w| w.to_string());
            format!(
                "{} {}→{}",
                label_of(config, env, c),
                weight(plan.before.get(c)),
                weight(plan.after.get(c))
            )
        })
        .collect();
    (!changes.is_empty()).then_some(changes)
}

/// The dialog text: the whole list if it fits, else how many clusters
/// change.
fn fitted(env: &EnvId, change: &Option<Vec<String>>, outcome: &str, clusters: usize) -> String {
    let Some(changes) = change else {
        return format!("In {env}: the weights stay as they are. {outcome}");
    };
    let listed = format!("In {env}: {}. {outcome}", changes.join(", "));
    if listed.chars().count() <= CONFIRM_TEXT_MAX {
        return listed;
    }
    let counted = format!(
        "In {env}: {} of {clusters} clusters change weight (see the plan). {outcome}",
        changes.len()
    );
    counted.chars().take(CONFIRM_TEXT_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(n: usize) -> Option<Vec<String>> {
        Some(
            (0..n)
                .map(|i| format!("cluster-with-a-long-name-{i} 100→0"))
                .collect(),
        )
    }

    #[test]
    fn a_short_change_is_listed() {
        let env = EnvId::new("dev");
        let change = Some(vec!["blue 100→50".to_owned(), "green 0→50".to_owned()]);
        assert_eq!(
            fitted(&env, &change, "The bot applies it at once.", 2),
            "In dev: blue 100→50, green 0→50. The bot applies it at once."
        );
        assert_eq!(
            fitted(&env, &None, "The bot applies it at once.", 2),
            "In dev: the weights stay as they are. The bot applies it at once."
        );
    }

    #[test]
    fn a_change_too_long_for_slack_is_counted() {
        let env = EnvId::new("prod");
        let text = fitted(&env, &changes(12), "The bot applies it at once.", 14);
        assert_eq!(
            text,
            "In prod: 12 of 14 clusters change weight (see the plan). The bot applies it at once."
        );
        let fits = fitted(&env, &changes(5), "x", 5);
        assert!(fits.contains("cluster-with-a-long-name-4 100→0"), "{fits}");
        assert!(fits.chars().count() <= CONFIRM_TEXT_MAX);
        let huge = EnvId::new("e".repeat(400));
        assert_eq!(
            fitted(&huge, &changes(3), "x", 3).chars().count(),
            CONFIRM_TEXT_MAX
        );
    }
}
