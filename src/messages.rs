//! The bot's words: every [`Notice`] rendered as a [`Message`] a person
//! reads. Facts in, text out; nothing here decides anything. Keeping the
//! words in one place keeps the voice consistent, and the snapshot tests in
//! `tests/messages.rs` pin each kind's wording, so rewording is one reviewed
//! snapshot diff.
//!
//! Texts are Slack mrkdwn: `*bold*`, fenced blocks for tables, `<@USER>`
//! mentions. The terminal channel renders the same text for the sandbox.
//! Refusals carry their own sentence (`Display` of the error, next to the
//! rule it explains); this module puts them in a message.

mod buttons;
mod scorecard;

pub use buttons::CONFIRM_TEXT_MAX;
pub use scorecard::chart_file;

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::approval::ApprovalState;
use crate::chat::Message;
use crate::command::hold::TimeLimit;
use crate::command::{cluster_labels, Verb};
use crate::config::Config;
use crate::ids::{ClusterId, EnvId, UserId};
use crate::notice::{
    BakeNotice, BakeState, FinishedNotice, HistoryNotice, HoldPlan, Notice, OperationLine,
    PhaseName, PlanNotice, ReadinessNotice, ResumeNotice, Resumption, StatusNotice, StepReport,
    StepStopped,
};
use crate::operation::{
    CapacityCheck, ClusterOutcome, GateCheck, GateWarning, OperationHeader, OperationKind,
    OperationOutcome, PlanStatus, StepOutcome, StopCause, Tripped, WriteFailure,
};
use crate::plan::{Plan, Weights};
use crate::readiness::{Occasion, Severity};

/// Marks a post sent again after a restart: Slack may already have taken
/// the first copy just before the crash, and then the channel shows both.
pub const RESENT_NOTE: &str = "_(sent again after a restart; it may show twice)_";

/// The message for `notice`, in the words of this release.
pub fn render(notice: &Notice, config: &Config) -> Message {
    let text = match notice {
        Notice::Plan(plan) => plan_text(plan, config),
        Notice::StepResult(report) => step_result(report, config),
        Notice::Superseded { plan, now, moved } => superseded(plan, now, moved),
        Notice::Finished(finished) => finished_text(finished),
        Notice::Resuming(resume) => resuming(resume),
        Notice::StepStopped(stopped) => step_stopped(stopped, config),
        Notice::ApprovalTakenBack { user } => format!(
            ":leftwards_arrow_with_hook: {} took their approval back before the step started; the plan awaits approval again.",
            mention(user)
        ),
        Notice::ApprovalTooLate { user, step } => format!(
            "{} removed their approval, but step {step} had already run; its weights stay. `/failover rollback` undoes it.",
            mention(user)
        ),
        Notice::Refused { refusal } => format!(":warning: {refusal}"),
        Notice::InternalError { op } => internal_error(*op),
        Notice::CommandCutShort { text } => format!(
            ":arrows_counterclockwise: failover-bot restarted while handling your `/failover {text}` and changed nothing. If you got no answer, send it again."
        ),
        Notice::Help => help(config),
        Notice::Working { text } => format!(
            ":hourglass_flowing_sand: Working on `/failover {}` — the answer follows in the channel.",
            text.trim().trim_start_matches("/failover").trim()
        ),
        Notice::Status(status) => status_text(status, config),
        Notice::History(history) => history_text(history),
        Notice::Frozen {
            env,
            by,
            reason,
            break_glass,
        } => format!(
            ":snowflake: {env} frozen by {}: {reason}. New operations are refused until `/failover unfreeze in {env}`; only break-glass (`shift!`) by {} goes through. Running operations go on.",
            mention(by),
            mentions(break_glass)
        ),
        Notice::Unfrozen { env, by, since } => format!(
            ":sunny: {env} unfrozen by {} (frozen since {}). New operations are taken again.",
            mention(by),
            clock_time(*since)
        ),
        Notice::Bake(bake) => bake_text(bake),
        Notice::GateTripped {
            op,
            step,
            checks,
            on_its_own,
        } => gate_tripped(*op, *step, checks, *on_its_own),
        Notice::HoldReminder { op, until, back_to } => hold_reminder(*op, *until, back_to),
        Notice::Rekeyed {
            new_key,
            old_head,
            reason,
        } => format!(
            ":key: The journal's signing key was replaced: {reason}. A new signed chain starts under key `{}…`, anchored on record `{}…`; records before it are vouched for only by the hash chain and the old key's signatures. Check with `failover-bot audit verify --public-key`.",
            &new_key[..new_key.len().min(16)],
            &old_head[..old_head.len().min(16)]
        ),
        Notice::DrillScorecard(card) => scorecard::text(card),
        Notice::DrillChart(chart) => scorecard::chart_text(chart),
        Notice::Drills(list) => scorecard::list_text(list),
        Notice::Readiness(readiness) => readiness_text(readiness),
        Notice::Legacy { text } => text.clone(),
    };
    Message::new(notice.kind(), text)
        .with_facts(notice.facts())
        .with_buttons(buttons_of(notice, config))
}

/// A plan awaiting someone's approval carries Approve and Reject buttons;
/// once it is decided (or needs no approval) it has none.
fn buttons_of(notice: &Notice, config: &Config) -> Option<crate::chat::PlanButtons> {
    let Notice::Plan(plan) = notice else {
        return None;
    };
    if plan.status != PlanStatus::Pending || needs_no_approval(plan) {
        return None;
    }
    Some(buttons::plan_buttons(plan, &which_step(plan), config))
}

/// A time-limited shift's return that its approval already covers.
fn needs_no_approval(plan: &PlanNotice) -> bool {
    matches!(plan.hold, Some(HoldPlan::Return { by_hand: false }))
}

/// `step 1/2`, or what a holding shift's plan does.
fn which_step(plan: &PlanNotice) -> String {
    match &plan.hold {
        Some(HoldPlan::Return { .. }) => "return".to_owned(),
        Some(HoldPlan::Extend { .. }) => "extend".to_owned(),
        Some(HoldPlan::Keep { .. }) => "keep".to_owned(),
        None => format!(
            "step {}/{}{}",
            plan.step,
            plan.header.kind.total_steps(),
            if plan.header.kind.returning(plan.step) {
                ", back"
            } else {
                ""
            }
        ),
    }
}

/// The scheduled readiness check's post: what is not ok, worst first, or
/// that everything is.
fn readiness_text(notice: &ReadinessNotice) -> String {
    let report = &notice.report;
    let env = &report.env;
    let checks = report.findings.len();
    if notice.occasion == Occasion::AllClear {
        return format!(
            ":white_check_mark: *{env}: all clear* — every readiness check has passed for a week ({checks} checks)."
        );
    }
    let (problems, warnings) = (
        report.count(Severity::Problem),
        report.count(Severity::Warning),
    );
    let headline = match (problems, warnings) {
        (0, 0) => {
            return format!(
            ":white_check_mark: *{env}: ready* — every readiness check passes ({checks} checks)."
        )
        }
        (0, w) => format!(":warning: *{env}: ready, with {}*", count(w, "warning")),
        (p, 0) => format!(
            ":rotating_light: *{env}: not ready* — {}",
            count(p, "problem")
        ),
        (p, w) => format!(
            ":rotating_light: *{env}: not ready* — {}, {}",
            count(p, "problem"),
            count(w, "warning")
        ),
    };
    let mut text = format!("{headline}:\n");
    for finding in report.not_ok() {
        let icon = match finding.severity {
            Severity::Problem => ":x:",
            _ => ":warning:",
        };
        let _ = writeln!(
            text,
            "• {icon} {} ({}): {}",
            finding.subject,
            finding.check.as_str(),
            finding.detail
        );
    }
    text.push_str("`failover-bot doctor --config …` lists every check.");
    text
}

fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// The message for a notice sent again after a restart.
pub fn render_resent(notice: &Notice, config: &Config) -> Message {
    let mut message = render(notice, config);
    message.text = format!("{}\n{RESENT_NOTE}", message.text);
    message
}

fn help(config: &Config) -> String {
    let a = &config.approval;
    let line = |verbs: &[Verb], summary: &str| {
        let usages: Vec<&str> = verbs.iter().map(|v| v.usage()).collect();
        format!("{}\n  {summary}\n", usages.join(" · "))
    };
    let mut text = String::from(
        "*failover-bot* moves traffic between clusters; a second person approves every weight change.\n",
    );
    for verb in [
        Verb::Status,
        Verb::Shift,
        Verb::Set,
        Verb::To,
        Verb::Abort,
        Verb::Rollback,
    ] {
        text.push_str(&line(&[verb], verb.summary()));
    }
    text.push_str(&line(
        &[Verb::Add, Verb::Remove],
        "create a cluster's routing weight (at 0 unless a weight is given) / delete one (only at weight 0)",
    ));
    text.push_str(&line(&[Verb::History], Verb::History.summary()));
    text.push_str(&line(&[Verb::Drill], Verb::Drill.summary()));
    text.push_str(&line(&[Verb::Drills], Verb::Drills.summary()));
    text.push_str(&line(
        &[Verb::Freeze, Verb::Unfreeze],
        "refuse new operations (but break-glass) until unfrozen / lift it; approvers only",
    ));
    let _ = write!(
        text,
        "Any weight change may end with `because REASON`. \
         Approve a plan with its button or :{}:, reject with its button or :{}:. Approvals expire after {}. \
         Clusters may be named by any unique prefix or label (`green`).",
        a.reaction,
        a.reject_reaction,
        humantime::format_duration(a.expires_after),
    );
    for env in config.environments.keys() {
        let _ = write!(text, "\n*{env}*: {}", policy_summary(config, env));
    }
    text
}

/// Who may act in `env`, in one line: for `help` and `status`.
fn policy_summary(config: &Config, env: &EnvId) -> String {
    let policy = config.approval_for(env);
    let mut parts = vec![format!(
        "{} from {}",
        match policy.approvals_required {
            1 => "1 approval".to_owned(),
            n => format!("{n} approvals"),
        },
        mentions(&policy.approvers)
    )];
    if let Some(requesters) = &policy.requesters {
        parts.push(format!("requested by {}", mentions(requesters)));
    }
    parts.push(format!("break-glass by {}", mentions(policy.break_glass())));
    if policy.require_reason {
        parts.push("a reason required".to_owned());
    }
    if let Some(environment) = config.environment(env) {
        let channels = environment.bound_channels();
        if !channels.is_empty() {
            let links: Vec<String> = channels.iter().map(|c| format!("<#{c}>")).collect();
            parts.push(format!("only from {}", links.join(", ")));
        }
    }
    parts.join(" · ")
}

fn internal_error(op: Option<u64>) -> String {
    match op {
        Some(op) => format!(
            ":boom: Sorry — something went wrong on our side during operation #{op}. Nothing was changed by this request; details are in the bot's log."
        ),
        None => ":boom: Sorry — something went wrong on our side. Nothing was changed by this request; details are in the bot's log.".to_owned(),
    }
}

fn mention(user: &str) -> String {
    format!("<@{user}>")
}

/// People as mentions (users and user groups).
fn mentions(ids: &[String]) -> String {
    ids.iter()
        .map(|a| approver_mention(a))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Approvers as mentions; user groups (`S…`) as group mentions.
fn approver_mention(id: &str) -> String {
    if crate::chat::is_user_group(id) {
        format!("<!subteam^{id}>")
    } else {
        mention(id)
    }
}

fn label_of(config: &Config, env: &EnvId, cluster: &ClusterId) -> String {
    config
        .environment(env)
        .and_then(|e| {
            cluster_labels(e)
                .into_iter()
                .find(|(name, _)| name == cluster)
        })
        .map_or_else(|| cluster.to_string(), |(_, label)| label)
}

/// What an operation does, in a few words.
pub fn describe(config: &Config, header: &OperationHeader) -> String {
    let label = |c: &ClusterId| label_of(config, &header.env, c);
    match &header.kind {
        OperationKind::Shift(shift) => format!(
            "shift {} to {}{}",
            shift.percent,
            label(&shift.target),
            if shift.force { " (break-glass)" } else { "" }
        ),
        OperationKind::Failover(failover) => format!(
            "{}fail over to {} in steps {}{}",
            if header.drill { "drill: " } else { "" },
            label(&failover.target),
            failover
                .steps
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" → "),
            if failover.back.is_some() {
                " and back"
            } else {
                ""
            }
        ),
        OperationKind::Rollback(rollback) => {
            format!("roll back to before operation #{}", rollback.of)
        }
        OperationKind::Set(set) => format!(
            "set weights: {}",
            set.weights
                .iter()
                .map(|(c, w)| format!("{} {w}", label(c)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        OperationKind::Add(add) => format!("add {} at weight {}", label(&add.cluster), add.weight),
        OperationKind::Remove(remove) => format!("remove {}", label(&remove.cluster)),
    }
}

/// Who approved, as one phrase: `<@bob>`, or `<@bob> and <@dave>`.
fn approved_by(plan: &PlanNotice) -> Option<String> {
    let approval = &plan.shown.approval;
    let mut names: Vec<String> = approval.votes.iter().map(|v| mention(&v.by)).collect();
    if let ApprovalState::Approved { by, .. } = &approval.state {
        if !approval.has_vote_of(by) {
            names.push(mention(by));
        }
    }
    match names.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        [rest @ .., last] => Some(format!("{} and {last}", rest.join(", "))),
    }
}

fn plan_headline(plan: &PlanNotice) -> (&'static str, String) {
    match &plan.status {
        PlanStatus::Pending => (":hourglass_flowing_sand:", "awaiting approval".to_owned()),
        PlanStatus::Applying { by } => (
            ":gear:",
            format!(
                "approved by {}, applying",
                approved_by(plan).unwrap_or_else(|| mention(by))
            ),
        ),
        PlanStatus::Applied => (
            ":white_check_mark:",
            match approved_by(plan) {
                Some(by) => format!("applied (approved by {by})"),
                None => "applied".to_owned(),
            },
        ),
        PlanStatus::Failed => (":x:", "failed — see thread".to_owned()),
        PlanStatus::Refused => (
            ":no_entry:",
            "refused before any change — see thread".to_owned(),
        ),
        PlanStatus::Rejected { by } => (":x:", format!("rejected by {}", mention(by))),
        PlanStatus::Expired => (":hourglass:", "expired without approval".to_owned()),
        PlanStatus::Withdrawn { by } => (
            ":leftwards_arrow_with_hook:",
            format!("withdrawn by {}", mention(by)),
        ),
        PlanStatus::Aborted { by } => (":octagonal_sign:", format!("aborted by {}", mention(by))),
        PlanStatus::Superseded => (
            ":recycle:",
            "superseded: the weights changed, a new plan follows".to_owned(),
        ),
    }
}

fn plan_text(plan: &PlanNotice, config: &Config) -> String {
    let header = &plan.header;
    let shown = &plan.shown;
    let (icon, state) = plan_headline(plan);
    let which = which_step(plan);
    let mut text = format!(
        "{icon} *Operation #{} · {which}* · {} · {} — {state}\n",
        header.id,
        header.env,
        describe(config, header),
    );
    let _ = writeln!(
        text,
        "Requested by {}: `/failover {}`",
        mention(&header.requester),
        header.typed()
    );
    if let Some(reason) = &header.reason {
        let _ = writeln!(text, "Reason: {reason}");
    }
    if header.drill {
        let _ = writeln!(
            text,
            ":stopwatch: *Drill* — a practice run, approved and gated like any failover; timed and scored at its end."
        );
    }
    if let Some(freeze) = &header.during_freeze {
        let _ = writeln!(
            text,
            ":snowflake: *break-glass during a freeze* (frozen by {}: {})",
            mention(&freeze.by),
            freeze.reason
        );
    }
    if let Some(tripped) = &plan.tripped {
        let _ = writeln!(text, "{}", way_back(tripped));
    }
    match &plan.hold {
        Some(hold) => {
            let _ = writeln!(text, "{}", hold_plan_line(hold));
        }
        None => {
            if let Some(limit) = &header.time_limit {
                let _ = writeln!(text, "{}", time_limit_line(limit));
            }
        }
    }
    text.push_str(&weights_table(config, &header.env, &shown.plan));
    push_checks(&mut text, &shown.checks, &shown.capacity);
    for warning in shown.warnings.iter().filter_map(break_glass_warning) {
        let _ = writeln!(
            text,
            ":rotating_light: *break-glass*: {warning}; approving sends traffic there anyway."
        );
    }
    if rolls_back_on_its_own(config, &header.env) {
        let _ = writeln!(
            text,
            ":leftwards_arrow_with_hook: If an after-gate fails, the bot puts the weights back without an approval (`on_gate_failure: rollback`), never onto a cluster whose own gates fail."
        );
    }
    let covered = needs_no_approval(plan);
    if plan.status == PlanStatus::Pending && covered {
        let _ = write!(
            text,
            "No approval needed: the shift's approval covers its return. Plan `{}`.",
            shown.plan.hash
        );
    } else if plan.status == PlanStatus::Pending {
        let policy = config.approval_for(&header.env);
        let approval = &shown.approval;
        if approval.required > 1 {
            let _ = writeln!(
                text,
                "Approvals: {} of {}{}",
                approval.votes.len(),
                approval.required,
                approved_by(plan).map_or_else(String::new, |by| format!(" ({by})"))
            );
        }
        let approvers: Vec<String> = policy
            .approvers
            .iter()
            .filter(|a| approval.requester != **a)
            .map(|a| approver_mention(a))
            .collect();
        let _ = write!(
            text,
            "Approve with :{}: ({} — not the requester) · reject with :{}: · expires {}.",
            policy.reaction,
            approvers.join(", "),
            policy.reject_reaction,
            clock_time(approval.expires_at),
        );
    } else {
        if let Some(decision) = decided(plan) {
            let _ = write!(text, "{decision} ");
        }
        let _ = write!(text, "Plan `{}`.", shown.plan.hash);
    }
    text
}

/// Who decided on a plan and when, once someone has: what replaces the
/// buttons.
fn decided(plan: &PlanNotice) -> Option<String> {
    let approval = &plan.shown.approval;
    Some(match &approval.state {
        ApprovalState::Pending | ApprovalState::Superseded { .. } => return None,
        ApprovalState::Approved { by, at } => format!(
            "Approved by {} at {}.",
            approved_by(plan).unwrap_or_else(|| mention(by)),
            clock_time(*at)
        ),
        ApprovalState::Rejected { by, at } => {
            format!("Rejected by {} at {}.", mention(by), clock_time(*at))
        }
        ApprovalState::Withdrawn { by, at } => {
            format!("Withdrawn by {} at {}.", mention(by), clock_time(*at))
        }
        ApprovalState::Expired { at } => format!("Expired at {}.", clock_time(*at)),
    })
}

/// On every step of a time-limited shift: its approval covers the return.
fn time_limit_line(limit: &TimeLimit) -> String {
    format!(
        ":alarm_clock: *Time-limited: for {limit}.* After the last step the weights hold for {limit}, then go back to where they were before the operation, through the same gates. Approving covers that return: it is the one weight change that needs no second approval, unless the weights are changed by hand meanwhile. A reminder comes 10 minutes before; `/failover extend` and `/failover keep` need an approval."
    )
}

/// What a plan does to a holding time-limited shift.
fn hold_plan_line(hold: &HoldPlan) -> String {
    match hold {
        HoldPlan::Return { by_hand: false } => ":alarm_clock: *Time is up*: the weights go back to where they were before the operation. The shift's approval covers this return.".to_owned(),
        HoldPlan::Return { by_hand: true } => ":alarm_clock: *Time is up*, but the weights were changed by hand while they held: this return is planned from where they are and needs an approval.".to_owned(),
        HoldPlan::Extend { by, from, to } => format!(
            ":alarm_clock: {} asks to hold the weights until {} instead of {}. No weight changes now.",
            mention(by),
            clock_time(*to),
            clock_time(*from)
        ),
        HoldPlan::Keep { by, until } => format!(
            ":alarm_clock: {} asks to keep these weights for good: they would have gone back at {}; the operation ends. No weight changes now.",
            mention(by),
            clock_time(*until)
        ),
    }
}

/// What break-glass pushes through, in a few words; `None` for an
/// advisory reading (shown with the checks, never pushed through).
fn break_glass_warning(warning: &GateWarning) -> Option<String> {
    match warning {
        GateWarning::Failed { cluster, failure } => {
            Some(format!("health gate failing on {cluster}: {failure}"))
        }
        GateWarning::Metric { check } if check.advisory => None,
        GateWarning::Metric { check } => Some(format!(
            "gate `{}` failing on {}: reads {}",
            check.gate,
            check.cluster,
            check.values()
        )),
        GateWarning::Capacity { capacity } => Some(format!(
            "too few ready replicas of {} on {}: {}, needs {}",
            capacity.deployment,
            capacity.cluster,
            capacity.ready_text(),
            capacity.required
        )),
        GateWarning::Legacy(text) => Some(format!("health gate failing on {text}")),
    }
}

fn rolls_back_on_its_own(config: &Config, env: &EnvId) -> bool {
    config
        .environment(env)
        .is_some_and(|e| e.on_gate_failure == crate::config::gates::OnGateFailure::Rollback)
}

/// The line that says a plan is the way back after a tripped gate.
fn way_back(tripped: &Tripped) -> String {
    let blocked: Vec<String> = tripped
        .checks
        .iter()
        .filter(|c| c.blocks())
        .map(|c| format!("`{}` on {}", c.gate, c.cluster))
        .collect();
    format!(
        ":leftwards_arrow_with_hook: *The way back*: after step {}, {} failed; this plan puts every weight back to where it was before the operation.",
        tripped.step,
        blocked.join(", ")
    )
}

/// The gates' readings, one per line: `✅ \`error-rate\` on green: 0.002 (pass if < 0.01)`.
fn check_line(check: &GateCheck) -> String {
    let icon = match (check.passed(), check.advisory) {
        (true, _) => ":white_check_mark:",
        (false, true) => ":large_yellow_circle:",
        (false, false) => ":x:",
    };
    format!(
        "{icon} `{}` on {}: {} (passes if {} {}){}",
        check.gate,
        check.cluster,
        check.values(),
        check.operator,
        check.threshold,
        if check.advisory { " _advisory_" } else { "" }
    )
}

fn capacity_line(check: &CapacityCheck) -> String {
    let icon = match check.enough {
        Some(true) => ":white_check_mark:",
        Some(false) => ":x:",
        None => ":grey_question:",
    };
    format!(
        "{icon} {} on {}: {} ready, needs {} for {}% of the traffic (headroom {})",
        check.deployment,
        check.cluster,
        check.ready_text(),
        check.required,
        check.share_percent,
        check.headroom
    )
}

/// The before-gates and the capacity gate, as a plan shows them.
fn push_checks(text: &mut String, checks: &[GateCheck], capacity: &[CapacityCheck]) {
    if !checks.is_empty() {
        text.push_str("Gates before the step:\n");
        for check in checks {
            let _ = writeln!(text, "{}", check_line(check));
        }
    }
    if !capacity.is_empty() {
        text.push_str("Capacity:\n");
        for check in capacity {
            let _ = writeln!(text, "{}", capacity_line(check));
        }
    }
}

/// The bake's readings, as they come.
fn bake_text(bake: &BakeNotice) -> String {
    let state = match bake.state {
        BakeState::Holding => format!(
            ":stopwatch: Step {}/{} baking until {}: the after-gates must hold before the next step.",
            bake.step,
            bake.total,
            clock_time(bake.until)
        ),
        BakeState::Passed => format!(
            ":white_check_mark: Step {}/{} baked: the after-gates held until {}.",
            bake.step,
            bake.total,
            clock_time(bake.until)
        ),
        BakeState::Tripped => format!(
            ":rotating_light: Step {}/{}: an after-gate failed during the bake.",
            bake.step, bake.total
        ),
    };
    let lines: Vec<String> = bake.checks.iter().map(check_line).collect();
    format!("{state}\n{}", lines.join("\n"))
}

/// Said loudly when an after-gate blocks: which gate, its value, its query.
fn gate_tripped(op: u64, step: usize, checks: &[GateCheck], on_its_own: bool) -> String {
    let mut text = format!(
        ":rotating_light: *Operation #{op} paused after step {step}: an after-gate failed.*\n"
    );
    for check in checks.iter().filter(|c| c.blocks()) {
        let _ = writeln!(
            text,
            "`{}` on {} reads {} (must be {} {}) for `{}`",
            check.gate,
            check.cluster,
            check.values(),
            check.operator,
            check.threshold,
            check.query
        );
    }
    text.push_str(match on_its_own {
        true => "The bot puts the weights back now, without an approval (`on_gate_failure: rollback`).",
        false => "The plan to put the weights back follows; it needs the usual approval. `/failover abort` leaves them as they are.",
    });
    text
}

fn clock_time(at: DateTime<Utc>) -> String {
    at.format("%H:%M UTC").to_string()
}

/// Rows in config order, so every message lists clusters the same way.
fn ordered_rows<'a>(config: &'a Config, env: &EnvId, plan: &'a Plan) -> Vec<&'a ClusterId> {
    let mut rows: Vec<&ClusterId> = config
        .environment(env)
        .map(|e| e.cluster_names().collect())
        .unwrap_or_default();
    rows.retain(|c| plan.before.contains(c) || plan.after.contains(c));
    rows
}

/// A fenced, aligned table; the first column is left-aligned, the others right.
fn table<const N: usize>(heading: [&str; N], rows: Vec<[String; N]>) -> String {
    let mut widths = heading.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::from("```\n");
    let heading = heading.map(str::to_owned);
    for row in std::iter::once(&heading).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            let pad = " ".repeat(width - cell.chars().count());
            match i {
                0 => line.push_str(&format!("{cell}{pad}")),
                _ => line.push_str(&format!("  {pad}{cell}")),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("```\n");
    out
}

fn weights_table(config: &Config, env: &EnvId, plan: &Plan) -> String {
    let rows = ordered_rows(config, env, plan)
        .into_iter()
        .map(|c| {
            let share = match plan.after.get(c) {
                Some(_) => format!("{:.0}%", plan.after.share_percent(c)),
                None => "removed".to_owned(),
            };
            [
                c.to_string(),
                cell(plan.before.get(c)),
                format!("→ {}", cell(plan.after.get(c))),
                share,
            ]
        })
        .collect();
    table(["cluster", "before", "after", "share"], rows)
}

fn cell(w: Option<u8>) -> String {
    w.map_or_else(|| "—".to_owned(), |w| w.to_string())
}

fn elapsed(micros: u64) -> String {
    let ms = micros as f64 / 1_000.0;
    if micros < 1_000 {
        format!("{ms:.2} ms")
    } else if micros < 10_000_000 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1_000.0)
    }
}

fn write_failure(failure: &WriteFailure) -> String {
    match failure {
        WriteFailure::Errors(errors) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        WriteFailure::Legacy(text) => text.clone(),
    }
}

/// After a step that did what it should: what comes next.
fn what_follows(report: &StepReport, last: bool) -> String {
    match (&report.holds_for, &report.hold) {
        (Some(limit), _) => format!(
            " The weights hold for {limit}, then go back; a reminder comes 10 minutes before."
        ),
        // The notice that follows says how the operation ends or holds.
        (None, Some(_)) => String::new(),
        (None, None) if last && report.total == 1 => {
            format!(" Operation #{} complete.", report.op)
        }
        (None, None) if !last => " The next step follows and needs its own approval.".to_owned(),
        (None, None) => String::new(),
    }
}

fn step_result(report: &StepReport, config: &Config) -> String {
    let step = match &report.hold {
        Some(HoldPlan::Return { .. }) => "The return".to_owned(),
        Some(HoldPlan::Extend { .. }) => "The extension".to_owned(),
        Some(HoldPlan::Keep { .. }) => "Keeping the weights".to_owned(),
        None => format!("Step {}/{}", report.step, report.total),
    };
    let took = elapsed(report.micros);
    // A time-limited shift's steps after its last (return, extend, keep)
    // end or hold the operation: the notice that follows says which.
    let last = report.step >= report.total;
    let mut text = match &report.outcome {
        StepOutcome::Applied {
            unverified,
            dry_run,
        } => {
            let mut t = if unverified.is_empty() {
                format!(":white_check_mark: {step} applied and verified in {took}.")
            } else {
                format!(
                    ":warning: {step} applied in {took}, but not yet carried by {}. Stopping here; check `/failover status`.",
                    unverified.join(", ")
                )
            };
            if !dry_run.is_empty() {
                let names: Vec<&str> = dry_run.iter().map(ClusterId::as_str).collect();
                let _ = write!(t, " Dry run on {}: accepted, not served.", names.join(", "));
            }
            if unverified.is_empty() {
                t.push_str(&what_follows(report, last));
            }
            t
        }
        StepOutcome::Skipped => format!("{step} changed nothing."),
        StepOutcome::Conflict => format!(
            ":recycle: {step}: the weights were changed by someone else while applying; every cluster was put back. A new plan follows and needs a new approval."
        ),
        StepOutcome::Restored { failure } => format!(
            ":x: {step} failed ({}); every changed cluster was put back. No weight differs from before the step.",
            write_failure(failure)
        ),
        StepOutcome::Incomplete { failure } => format!(
            ":rotating_light: {step} failed ({}) and could NOT be fully put back. Each cluster's state is below; fix it by hand or `/failover rollback`.",
            write_failure(failure)
        ),
        StepOutcome::Refused { refusal } => {
            format!(":no_entry: {step} refused before any change: {refusal}")
        }
        StepOutcome::Interrupted { refusal } => format!(
            ":rotating_light: {step} stopped: the bot restarted during this step and stopped it without further changes: {refusal}"
        ),
    };
    text.push('\n');
    text.push_str(&results_table(report, config));
    text
}

fn results_table(report: &StepReport, config: &Config) -> String {
    let results = &report.results;
    let rows = ordered_rows(config, &report.env, &report.plan)
        .into_iter()
        .filter_map(|c| results.iter().find(|r| r.cluster == *c))
        .map(|r| {
            let (now, result) = match &r.outcome {
                ClusterOutcome::Unchanged => (r.to, "unchanged".to_owned()),
                ClusterOutcome::Applied => (r.to, "applied".to_owned()),
                ClusterOutcome::DryRun => (r.to, "dry run".to_owned()),
                ClusterOutcome::Failed { error } => (r.from, format!("failed: {error}")),
                ClusterOutcome::Restored => (r.from, "put back".to_owned()),
                ClusterOutcome::RestoreFailed { error } => (r.to, format!("NOT put back: {error}")),
            };
            [r.cluster.to_string(), cell(now), result]
        })
        .collect();
    table(["cluster", "weight", "result"], rows)
}

fn superseded(plan: &Plan, now: &Weights, moved: &[ClusterId]) -> String {
    let changed: Vec<String> = plan
        .before
        .iter()
        .filter(|(c, w)| now.get(c) != Some(*w))
        .map(|(c, w)| format!("{c} {w} → {}", cell(now.get(c))))
        .collect();
    let what = if !changed.is_empty() {
        format!(
            "The weights changed since this plan was shown ({})",
            changed.join(", ")
        )
    } else if plan.before.clusters().ne(now.clusters()) {
        "A cluster was added or removed since this plan was shown".to_owned()
    } else {
        let moved: Vec<&str> = moved.iter().map(ClusterId::as_str).collect();
        format!(
            "The routing objects of {} were changed by someone else since this plan was shown",
            moved.join(", ")
        )
    };
    format!(":recycle: {what}. The approval does not carry over: a new plan follows.")
}

fn stop_cause(cause: &StopCause) -> String {
    match cause {
        StopCause::Unverified { step, clusters } => format!(
            "step {step} applied but not verified on {}",
            clusters.join(", ")
        ),
        StopCause::WritesFailed { failure } => write_failure(failure),
        StopCause::Refused { refusal } => refusal.to_string(),
        StopCause::PlanNotPosted { step, reason } => {
            format!("Slack did not take step {step}'s plan ({reason}), so nobody could approve it; nothing was changed by that step")
        }
        StopCause::GateTripped { step, checks } => {
            let blocked: Vec<String> = checks
                .iter()
                .filter(|c| c.blocks())
                .map(|c| format!("`{}` on {} read {}", c.gate, c.cluster, c.values()))
                .collect();
            format!(
                "an after-gate failed after step {step} ({}); the weights went back to where they were before the operation",
                blocked.join(", ")
            )
        }
        StopCause::ReturnRefused { refusal } => format!(
            "the weights did NOT go back at the end of the time-limited shift: {refusal} They stay where the shift left them; `/failover rollback` puts them back, with an approval, once that passes"
        ),
        StopCause::Legacy { reason } => reason.clone(),
    }
}

/// Ten minutes (or less) before a time-limited shift's weights go back.
fn hold_reminder(op: u64, until: DateTime<Utc>, back_to: &Weights) -> String {
    format!(
        ":alarm_clock: Operation #{op}: the weights go back to {} at {}. `/failover extend 1h` holds them longer; `/failover keep` keeps them and ends the operation. Either needs an approval; `/failover abort` cancels the return.",
        weights_line(back_to),
        clock_time(until)
    )
}

fn weights_line(weights: &Weights) -> String {
    weights
        .iter()
        .map(|(c, w)| format!("{c}={w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn finished_text(f: &FinishedNotice) -> String {
    let text = finished_words(f);
    match &f.anchor {
        Some(anchor) => format!("{text}\nJournal anchor: `{anchor}`"),
        None => text,
    }
}

fn finished_words(f: &FinishedNotice) -> String {
    let id = f.op;
    let done_before = f.step.saturating_sub(1);
    let earlier = if f.while_holding {
        " The time-limited shift's return is cancelled: its weights stay; `/failover rollback` undoes them.".to_owned()
    } else if done_before > 0 {
        format!(" Steps 1–{done_before} stay applied; `/failover rollback` undoes them.")
    } else {
        " No weight changed.".to_owned()
    };
    match &f.outcome {
        OperationOutcome::Completed => {
            let approvals: Vec<String> = f
                .approvals
                .iter()
                .map(|(step, by)| format!("step {step} by {}", mention(by)))
                .collect();
            let kept = match f.while_holding {
                true => " The time-limited shift's weights are kept.",
                false => "",
            };
            format!(
                ":checkered_flag: Operation #{id} complete: {} steps, approved {}.{kept}",
                f.total,
                approvals.join(", ")
            )
        }
        OperationOutcome::Rejected { by } => {
            format!(":x: Operation #{id} rejected by {}.{earlier}", mention(by))
        }
        OperationOutcome::Expired => format!(
            ":hourglass: Operation #{id} expired: nobody approved step {} in time.{earlier}",
            f.step
        ),
        OperationOutcome::Withdrawn { by } => format!(
            ":leftwards_arrow_with_hook: Operation #{id} withdrawn by {}.{earlier}",
            mention(by)
        ),
        OperationOutcome::Aborted { by } => format!(
            ":octagonal_sign: Operation #{id} aborted by {}.{earlier}",
            mention(by)
        ),
        OperationOutcome::Failed {
            cause: cause @ StopCause::ReturnRefused { .. },
        } => format!(
            ":rotating_light: <!here> Operation #{id}: {}.",
            stop_cause(cause)
        ),
        OperationOutcome::Failed { cause } => format!(
            ":x: Operation #{id} stopped at step {}: {}",
            f.step,
            stop_cause(cause)
        ),
    }
}

/// Said in the operation's thread when the bot comes back mid-operation,
/// whatever the phase: the channel is the audit trail, and approvers must
/// know that a plan they see is still live.
fn resuming(r: &ResumeNotice) -> String {
    let doing = match &r.doing {
        Resumption::RepostingPlan => format!(
            "posting step {}'s plan again. If a copy of it from before the restart shows above, it is void: approve the one that follows",
            r.step
        ),
        Resumption::PlanningNextStep => "planning the next step".to_owned(),
        Resumption::AwaitingApproval { until } => format!(
            "the plan above still awaits approval, until {} as before",
            clock_time(*until)
        ),
        Resumption::ApplyingApprovedStep => "applying the approved step".to_owned(),
        Resumption::FinishingInterruptedStep => {
            "finishing the step that was being applied".to_owned()
        }
        Resumption::Baking { until } => format!(
            "watching the after-gates until {}",
            clock_time(*until)
        ),
        Resumption::Holding { until } => format!(
            "the time-limited shift holds; its weights go back at {}",
            clock_time(*until)
        ),
        Resumption::Closing => "closing the operation".to_owned(),
    };
    format!(
        ":arrows_counterclockwise: failover-bot restarted; resuming operation #{} at step {}/{}: {doing}.",
        r.op, r.step, r.total
    )
}

/// The thread's report when a step interrupted by a restart cannot be
/// finished safely: what stopped it, and every cluster's weight as read
/// now, so the channel knows where traffic stands without `status`.
fn step_stopped(s: &StepStopped, config: &Config) -> String {
    let why = s.refusal.to_string();
    let why = why.trim_end_matches('.');
    let mut text = if s.put_back.is_empty() {
        format!(
            ":rotating_light: Step {}/{} stopped: the bot restarted during this step and stopped it without further changes: {why}.",
            s.step, s.total
        )
    } else {
        let names: Vec<&str> = s.put_back.iter().map(ClusterId::as_str).collect();
        format!(
            ":rotating_light: Step {}/{} stopped: the bot restarted during this step and did not finish it: {why}. It put {} back to the weight from before the step.",
            s.step,
            s.total,
            names.join(", ")
        )
    };
    match &s.now {
        Some(now) => {
            text.push_str(" Every cluster's weight now:\n");
            let rows = ordered_rows(config, &s.env, &s.plan)
                .into_iter()
                .map(|c| [c.to_string(), cell(now.get(c))])
                .collect();
            text.push_str(&table(["cluster", "weight"], rows));
        }
        None => {
            text.push_str(" The clusters' weights could not be read; check `/failover status`.")
        }
    }
    text
}

fn phase_words(phase: PhaseName) -> &'static str {
    match phase {
        PhaseName::AwaitingApproval => "awaiting approval",
        PhaseName::Applying => "applying",
        PhaseName::Planning => "planning",
        PhaseName::Baking => "baking",
        PhaseName::Holding => "holding",
        PhaseName::Finishing => "finishing",
    }
}

fn status_text(view: &StatusNotice, config: &Config) -> String {
    let weights = view.snapshot.weights();
    let running = match &view.running {
        None => "no operation running".to_owned(),
        Some(op) => {
            format!(
                "operation #{} by {} at step {}/{} ({})",
                op.op,
                mention(&op.requester),
                op.step,
                op.total,
                op.phase.map_or("running", phase_words),
            ) + &op
                .returns_at
                .map(|at| format!("; the weights go back at {}", clock_time(at)))
                .unwrap_or_default()
        }
    };
    let mut text = format!(
        ":bar_chart: *{}* · {} mode · {running}\n",
        view.env, config.routing.mode
    );
    if let Some(freeze) = &view.frozen {
        let _ = writeln!(
            text,
            ":snowflake: frozen by {} since {}: {}",
            mention(&freeze.by),
            clock_time(freeze.since),
            freeze.reason
        );
    }
    let _ = writeln!(text, "Policy: {}", policy_summary(config, &view.env));
    let names: Vec<&ClusterId> = config
        .environment(&view.env)
        .map(|e| e.cluster_names().collect())
        .unwrap_or_default();
    let rows = names
        .into_iter()
        .map(|c| {
            let (set, share) = match weights.get(c) {
                Some(w) => (w.to_string(), format!("{:.0}%", weights.share_percent(c))),
                None => ("—".to_owned(), "—".to_owned()),
            };
            let observed = match (weights.get(c), &view.observed) {
                (None, _) => "not routed".to_owned(),
                (Some(_), None) => "unknown".to_owned(),
                (Some(_), Some(obs)) => match obs.iter().find(|o| o.cluster == *c) {
                    Some(o) if o.is_complete() => format!("{}/{} carry it", o.converged, o.total),
                    Some(o) => format!(
                        "DRIFT {}/{}: {}",
                        o.converged,
                        o.total,
                        o.stragglers.join(", ")
                    ),
                    None => "unknown".to_owned(),
                },
            };
            [c.to_string(), set, share, observed]
        })
        .collect();
    text.push_str(&table(["cluster", "weight", "share", "observed"], rows));
    text.trim_end().to_owned()
}

fn approvals_text(approvals: &[(usize, UserId)]) -> Vec<String> {
    approvals
        .iter()
        .map(|(step, by)| format!("step {step} by {}", mention(by)))
        .collect()
}

fn history_line(line: &OperationLine) -> String {
    match &line.ended {
        None => format!(
            "• #{} running — `/failover {}` by {}, step {}/{}{}",
            line.op,
            line.command,
            mention(&line.requester),
            line.step,
            line.total,
            because(&line.reason),
        ),
        Some(ended) => {
            let approvers = approvals_text(&line.approvals);
            let approved = if approvers.is_empty() {
                String::new()
            } else {
                format!(", approved {}", approvers.join(", "))
            };
            format!(
                "• #{} {} {} — `/failover {}` by {}{approved}{}",
                line.op,
                ended.outcome,
                clock_time(ended.at),
                line.command,
                mention(&line.requester),
                because(&line.reason),
            )
        }
    }
}

/// `, because REASON` when the requester gave one (and the command did not
/// already show it).
fn because(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map_or_else(String::new, |r| format!(" — because {r}"))
}

fn history_text(h: &HistoryNotice) -> String {
    if h.finished.is_empty() && h.running.is_none() {
        return format!("No operations in {} yet.", h.env);
    }
    let mut text = format!(":scroll: Recent operations in *{}*, newest first:\n", h.env);
    for line in h.running.iter().chain(&h.finished) {
        text.push_str(&history_line(line));
        text.push('\n');
    }
    text.trim_end().to_owned()
}
