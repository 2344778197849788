//! Every text a person reads: refusals ([`UserError`]), plans, results,
//! status, history, help. Keeping them in one place keeps the voice
//! consistent and lets reviewers read the bot's whole vocabulary at once.
//!
//! Texts are Slack mrkdwn: `*bold*`, fenced blocks for tables, `<@USER>`
//! mentions. The terminal channel renders the same text for the sandbox.

use std::fmt::{self, Write as _};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::approval::ApprovalState;
use crate::backend::{Convergence, Snapshot};
use crate::chat::Message;
use crate::command::cluster_labels;
use crate::config::Config;
use crate::operation::apply::Applied;
use crate::operation::ledger::Finished;
use crate::operation::{
    ClusterOutcome, OperationHeader, OperationKind, OperationOutcome, OperationState, Phase,
    ShownPlan, StepOutcome,
};
use crate::plan::{Plan, Weights};

/// A mistake or refusal the user can act on. Its `Display` is the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserError {
    UnknownCommand {
        word: String,
        suggestion: Option<String>,
    },
    MissingArgument {
        verb: &'static str,
        what: &'static str,
    },
    BadPercent {
        given: String,
    },
    BadSteps {
        given: String,
        reason: String,
    },
    UnexpectedWord {
        verb: &'static str,
        word: String,
    },
    RepeatedOption {
        verb: &'static str,
        option: &'static str,
    },
    ChannelNotAllowed {
        allowed: Vec<String>,
    },
    UnknownEnvironment {
        given: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    WhichEnvironment {
        known: Vec<String>,
    },
    UnknownCluster {
        given: String,
        env: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    AmbiguousCluster {
        given: String,
        env: String,
        matches: Vec<String>,
    },
    NoRoutedClusters,
    AmbiguousShiftTarget {
        tied: Vec<String>,
    },
    ClusterNotRouted {
        cluster: String,
    },
    SingleCluster {
        cluster: String,
    },
    AllZero {
        env: String,
    },
    AlreadyRouted {
        cluster: String,
    },
    RemoveNonZero {
        cluster: String,
        weight: u8,
    },
    AlreadyAtTarget {
        cluster: String,
    },
    NoChange {
        env: String,
    },
    NothingToRollBack {
        env: String,
    },
    NothingToAbort {
        env: String,
    },
    Busy {
        env: String,
        op: u64,
        requester: String,
        step: usize,
        total: usize,
    },
    NoOtherApprover,
    Unavailable {
        env: String,
        reason: String,
    },
    GateFailed {
        cluster: String,
        reason: String,
        can_force: bool,
    },
    UnexpectedWeight {
        cluster: String,
        found: Option<u8>,
        before: Option<u8>,
        after: Option<u8>,
    },
    SelfApproval {
        user: String,
    },
    NotApprover {
        user: String,
    },
    NotPending {
        state: &'static str,
    },
    PlanChanged,
    PlanClosed {
        op: u64,
    },
    /// Something that should not happen; said plainly rather than hidden.
    Invalid(String),
}

impl std::error::Error for UserError {}

fn weight(w: Option<u8>) -> String {
    w.map_or_else(|| "none".to_owned(), |w| w.to_string())
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use UserError::*;
        match self {
            UnknownCommand { word, suggestion } => match suggestion {
                Some(s) => write!(f, "unknown command `{word}` — did you mean `{s}`? Try `/failover help`."),
                None => write!(f, "unknown command `{word}`. Try `/failover help`."),
            },
            MissingArgument { verb, what } => {
                write!(f, "`{verb}` needs {what}: {}", usage(verb))
            }
            BadPercent { given } => write!(
                f,
                "percent must be 0–100, got `{given}`: {}",
                usage("shift")
            ),
            BadSteps { given, reason } => write!(f, "bad step list `{given}`: {reason}"),
            UnexpectedWord { verb, word } => {
                write!(f, "unexpected `{word}` — {}", usage(verb))
            }
            RepeatedOption { verb, option } => {
                write!(f, "`{option}` given twice — {}", usage(verb))
            }
            ChannelNotAllowed { allowed } => write!(
                f,
                "failover commands are only taken in {}.",
                allowed
                    .iter()
                    .map(|c| format!("<#{c}>"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            UnknownEnvironment {
                given,
                suggestion,
                known,
            } => {
                write!(f, "no environment `{given}`")?;
                if let Some(s) = suggestion {
                    write!(f, " — did you mean `{s}`?")?;
                }
                write!(f, " Environments: {}.", known.join(", "))
            }
            WhichEnvironment { known } => write!(
                f,
                "which environment? Add `in {}` (environments: {}).",
                known.first().map_or("ENV", String::as_str),
                known.join(", ")
            ),
            UnknownCluster {
                given,
                env,
                suggestion,
                known,
            } => {
                write!(f, "no cluster matches `{given}`")?;
                if let Some(s) = suggestion {
                    write!(f, " — did you mean `{s}`?")?;
                } else {
                    f.write_str(";")?;
                }
                write!(f, " Clusters in {env}: {}.", known.join(", "))
            }
            AmbiguousCluster {
                given,
                env,
                matches,
            } => write!(
                f,
                "`{given}` matches more than one cluster in {env}: {}. Type more of the name.",
                matches.join(", ")
            ),
            NoRoutedClusters => f.write_str("no cluster in this environment has a routing weight yet."),
            AmbiguousShiftTarget { tied } => write!(
                f,
                "{} have the same share, so which one gets the traffic? Say `to {}`.",
                tied.join(" and "),
                tied.first().map_or("CLUSTER", String::as_str)
            ),
            ClusterNotRouted { cluster } => write!(
                f,
                "{cluster} has no routing weight yet; `/failover add {cluster}` first."
            ),
            SingleCluster { cluster } => write!(
                f,
                "{cluster} is the only routed cluster, so it always gets all traffic; add another first."
            ),
            AllZero { env } => write!(
                f,
                "that would leave every weight in {env} at 0, which Route53 treats as an even split. Refused."
            ),
            AlreadyRouted { cluster } => write!(f, "{cluster} already has a routing weight."),
            RemoveNonZero { cluster, weight } => write!(
                f,
                "{cluster} still has weight {weight}; shift its traffic away first (only weight 0 can be removed)."
            ),
            AlreadyAtTarget { cluster } => {
                write!(f, "{cluster} already has every step's share of traffic; nothing to do.")
            }
            NoChange { env } => write!(f, "{env} already has those weights; nothing to do."),
            NothingToRollBack { env } => {
                write!(f, "nothing to roll back in {env}: no earlier operation.")
            }
            NothingToAbort { env } => write!(f, "nothing to abort: no operation is running in {env}."),
            Busy {
                env,
                op,
                requester,
                step,
                total,
            } => write!(
                f,
                "{env} is busy: operation #{op} by <@{requester}>, step {step}/{total}. `/failover abort` ends it."
            ),
            NoOtherApprover => f.write_str(
                "nobody but you may approve, and you cannot approve your own request; add approvers to the config.",
            ),
            Unavailable { env, reason } => write!(f, "cannot read the weights in {env}: {reason}"),
            GateFailed {
                cluster,
                reason,
                can_force,
            } => {
                write!(f, "{cluster} may not get traffic: {reason}.")?;
                if *can_force {
                    f.write_str(" If you must, `/failover shift! …` asks for a break-glass approval.")?;
                }
                Ok(())
            }
            UnexpectedWeight {
                cluster,
                found,
                before,
                after,
            } => write!(
                f,
                "{cluster} holds weight {}, neither the plan's before ({}) nor after ({}); someone else changed it",
                weight(*found),
                weight(*before),
                weight(*after)
            ),
            SelfApproval { user } => write!(
                f,
                "<@{user}> cannot approve their own request: a second person must approve."
            ),
            NotApprover { user } => write!(f, "<@{user}> is not an approver for failovers."),
            NotPending { state } => write!(f, "this plan is {state}; there is nothing to approve."),
            PlanChanged => f.write_str("this plan was replaced by a newer one; react to the newest plan."),
            PlanClosed { op } => write!(
                f,
                "this plan of operation #{op} is no longer awaiting approval."
            ),
            Invalid(what) => write!(f, "that did not work: {what}"),
        }
    }
}

/// The usage line of a verb.
pub fn usage(verb: &str) -> &'static str {
    match verb {
        "shift" => {
            "`/failover shift PERCENT [to CLUSTER] [in ENV]`, e.g. `/failover shift 50 to green`"
        }
        "to" => "`/failover to CLUSTER [in ENV] [steps 10,50,100]`",
        "add" => "`/failover add CLUSTER [in ENV]`",
        "remove" => "`/failover remove CLUSTER [in ENV]`",
        "status" => "`/failover status [in ENV]`",
        "history" => "`/failover history [in ENV]`",
        "abort" => "`/failover abort [in ENV]`",
        "rollback" => "`/failover rollback [in ENV]`",
        _ => "`/failover help`",
    }
}

pub fn help(config: &Config) -> Message {
    let a = &config.approval;
    Message::new(format!(
        "*failover-bot* moves traffic between clusters; a second person approves every weight change.\n\
         {}\n  show weights per cluster, as set and as observed\n\
         {}\n  one step: CLUSTER gets PERCENT, the rest keep their proportions (without `to`: the cluster with the smaller share)\n\
         {}\n  a whole failover, one approved step per entry\n\
         {}\n  stop the running operation; no weight changes\n\
         {}\n  one step back to the weights from before the last operation\n\
         {} · {}\n  create / delete a cluster's routing weight (remove only at weight 0)\n\
         {}\n  recent operations\n\
         Approve a plan with :{}:, reject with :{}:. Approvals expire after {}. \
         Clusters may be named by any unique prefix or label (`green`).",
        usage("status"),
        usage("shift"),
        usage("to"),
        usage("abort"),
        usage("rollback"),
        usage("add"),
        usage("remove"),
        usage("history"),
        a.reaction,
        a.reject_reaction,
        humantime::format_duration(a.expires_after),
    ))
}

/// The immediate answer to a slash command that goes on to do work.
pub fn accepted(text: &str) -> Message {
    Message::new(format!(
        ":hourglass_flowing_sand: Working on `/failover {}` — the answer follows in the channel.",
        text.trim().trim_start_matches("/failover").trim()
    ))
}

pub fn user_error(error: &UserError) -> Message {
    Message::new(format!(":warning: {error}"))
}

pub fn internal_error(op: Option<u64>) -> Message {
    Message::new(match op {
        Some(op) => format!(
            ":boom: Sorry — something went wrong on our side during operation #{op}. Nothing was changed by this request; details are in the bot's log."
        ),
        None => ":boom: Sorry — something went wrong on our side. Nothing was changed by this request; details are in the bot's log.".to_owned(),
    })
}

pub fn busy(op: &OperationState) -> UserError {
    UserError::Busy {
        env: op.header.env.clone(),
        op: op.header.id,
        requester: op.header.requester.clone(),
        step: op.step,
        total: op.total_steps(),
    }
}

fn mention(user: &str) -> String {
    format!("<@{user}>")
}

/// Approvers as mentions; user groups (`S…`) as group mentions.
fn approver_mention(id: &str) -> String {
    if crate::chat::is_user_group(id) {
        format!("<!subteam^{id}>")
    } else {
        mention(id)
    }
}

fn label_of(config: &Config, env: &str, cluster: &str) -> String {
    config
        .environment(env)
        .and_then(|e| {
            cluster_labels(e)
                .into_iter()
                .find(|(name, _)| name == cluster)
        })
        .map_or_else(|| cluster.to_owned(), |(_, label)| label)
}

/// What an operation does, in a few words.
pub fn describe(config: &Config, header: &OperationHeader) -> String {
    let label = |c: &str| label_of(config, &header.env, c);
    match &header.kind {
        OperationKind::Shift {
            percent,
            target,
            force,
        } => format!(
            "shift {percent} to {}{}",
            label(target),
            if *force { " (break-glass)" } else { "" }
        ),
        OperationKind::Failover { target, steps } => format!(
            "fail over to {} in steps {}",
            label(target),
            steps
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" → ")
        ),
        OperationKind::Rollback { of, .. } => format!("roll back to before operation #{of}"),
        OperationKind::Add { cluster } => format!("add {} at weight 0", label(cluster)),
        OperationKind::Remove { cluster } => format!("remove {}", label(cluster)),
    }
}

/// How a shown plan stands; the plan message's headline says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanStatus {
    Pending,
    Applying { by: String },
    Applied,
    Failed,
    Refused,
    Rejected { by: String },
    Expired,
    Withdrawn { by: String },
    Aborted { by: String },
    Superseded,
}

pub struct PlanView<'a> {
    pub header: &'a OperationHeader,
    pub step: usize,
    pub shown: &'a ShownPlan,
    pub status: PlanStatus,
    pub config: &'a Config,
}

fn approved_by(shown: &ShownPlan) -> Option<&str> {
    match &shown.approval.state {
        ApprovalState::Approved { by, .. } => Some(by),
        _ => None,
    }
}

pub fn plan(view: &PlanView<'_>) -> Message {
    let header = view.header;
    let shown = view.shown;
    let total = header.kind.total_steps();
    let (icon, state) = match &view.status {
        PlanStatus::Pending => (":hourglass_flowing_sand:", "awaiting approval".to_owned()),
        PlanStatus::Applying { by } => (":gear:", format!("approved by {}, applying", mention(by))),
        PlanStatus::Applied => (
            ":white_check_mark:",
            match approved_by(shown) {
                Some(by) => format!("applied (approved by {})", mention(by)),
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
    };
    let mut text = format!(
        "{icon} *Operation #{} · step {}/{total}* · {} · {} — {state}\n",
        header.id,
        view.step,
        header.env,
        describe(view.config, header),
    );
    let _ = writeln!(
        text,
        "Requested by {}: `/failover {}`",
        mention(&header.requester),
        header.command.trim().trim_start_matches("/failover").trim()
    );
    text.push_str(&weights_table(view.config, &header.env, &shown.plan));
    for warning in &shown.warnings {
        let _ = writeln!(
            text,
            ":rotating_light: *break-glass*: health gate failing on {warning}; approving sends traffic there anyway."
        );
    }
    if view.status == PlanStatus::Pending {
        let approvers: Vec<String> = view
            .config
            .approval
            .approvers
            .iter()
            .filter(|a| **a != header.requester)
            .map(|a| approver_mention(a))
            .collect();
        let _ = write!(
            text,
            "Approve with :{}: ({} — not the requester) · reject with :{}: · expires {}.",
            view.config.approval.reaction,
            approvers.join(", "),
            view.config.approval.reject_reaction,
            clock_time(shown.approval.expires_at),
        );
    } else {
        let _ = write!(text, "Plan `{}`.", shown.plan.hash);
    }
    Message::new(text)
}

fn clock_time(at: DateTime<Utc>) -> String {
    at.format("%H:%M UTC").to_string()
}

/// Rows in config order, so every message lists clusters the same way.
fn ordered_rows<'a>(config: &'a Config, env: &str, plan: &'a Plan) -> Vec<&'a str> {
    let mut rows: Vec<&str> = config
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

fn weights_table(config: &Config, env: &str, plan: &Plan) -> String {
    let rows = ordered_rows(config, env, plan)
        .into_iter()
        .map(|c| {
            let share = match plan.after.get(c) {
                Some(_) => format!("{:.0}%", plan.after.share_percent(c)),
                None => "removed".to_owned(),
            };
            [
                c.to_owned(),
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

pub struct StepReport<'a> {
    pub header: &'a OperationHeader,
    pub step: usize,
    pub total: usize,
    pub plan: &'a Plan,
    pub applied: &'a Applied,
    pub outcome: &'a StepOutcome,
    pub elapsed: Duration,
    pub config: &'a Config,
}

fn elapsed(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1_000 {
        format!("{:.2} ms", d.as_secs_f64() * 1_000.0)
    } else if micros < 10_000_000 {
        format!("{:.0} ms", d.as_secs_f64() * 1_000.0)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

pub fn step_result(report: &StepReport<'_>) -> Message {
    let step = format!("Step {}/{}", report.step, report.total);
    let took = elapsed(report.elapsed);
    let last = report.step == report.total;
    let mut text = match report.outcome {
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
                let _ = write!(t, " Dry run on {}: accepted, not served.", dry_run.join(", "));
            }
            if last && report.total == 1 && unverified.is_empty() {
                let _ = write!(t, " Operation #{} complete.", report.header.id);
            } else if !last && unverified.is_empty() {
                t.push_str(" The next step follows and needs its own approval.");
            }
            t
        }
        StepOutcome::Skipped => format!("{step} changed nothing."),
        StepOutcome::Conflict => format!(
            ":recycle: {step}: the weights were changed by someone else while applying; every cluster was put back. A new plan follows and needs a new approval."
        ),
        StepOutcome::Restored { reason } => format!(
            ":x: {step} failed ({reason}); every changed cluster was put back. No weight differs from before the step."
        ),
        StepOutcome::Incomplete { reason } => format!(
            ":rotating_light: {step} failed ({reason}) and could NOT be fully put back. Each cluster's state is below; fix it by hand or `/failover rollback`."
        ),
        StepOutcome::Refused { reason } => format!(":no_entry: {step} refused before any change: {reason}"),
    };
    text.push('\n');
    text.push_str(&results_table(report));
    Message::new(text)
}

fn results_table(report: &StepReport<'_>) -> String {
    let results = &report.applied.results;
    let rows = ordered_rows(report.config, &report.header.env, report.plan)
        .into_iter()
        .filter_map(|c| results.iter().find(|r| r.cluster == c))
        .map(|r| {
            let (now, result) = match &r.outcome {
                ClusterOutcome::Unchanged => (r.to, "unchanged".to_owned()),
                ClusterOutcome::Applied => (r.to, "applied".to_owned()),
                ClusterOutcome::DryRun => (r.to, "dry run".to_owned()),
                ClusterOutcome::Failed { error } => (r.from, format!("failed: {error}")),
                ClusterOutcome::Restored => (r.from, "put back".to_owned()),
                ClusterOutcome::RestoreFailed { error } => (r.to, format!("NOT put back: {error}")),
            };
            [r.cluster.clone(), cell(now), result]
        })
        .collect();
    table(["cluster", "weight", "result"], rows)
}

pub fn superseded(plan: &Plan, now: &Weights, moved: &[String]) -> Message {
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
        format!(
            "The routing objects of {} were changed by someone else since this plan was shown",
            moved.join(", ")
        )
    };
    Message::new(format!(
        ":recycle: {what}. The approval does not carry over: a new plan follows."
    ))
}

pub fn finished(op: &OperationState, outcome: &OperationOutcome) -> Message {
    let id = op.header.id;
    let done_before = op.step.saturating_sub(1);
    let earlier = if done_before > 0 {
        format!(" Steps 1–{done_before} stay applied; `/failover rollback` undoes them.")
    } else {
        " No weight changed.".to_owned()
    };
    Message::new(match outcome {
        OperationOutcome::Completed => {
            let approvals: Vec<String> = op
                .approvals
                .iter()
                .map(|(step, by)| format!("step {step} by {}", mention(by)))
                .collect();
            format!(
                ":checkered_flag: Operation #{id} complete: {} steps, approved {}.",
                op.total_steps(),
                approvals.join(", ")
            )
        }
        OperationOutcome::Rejected { by } => {
            format!(":x: Operation #{id} rejected by {}.{earlier}", mention(by))
        }
        OperationOutcome::Expired => format!(
            ":hourglass: Operation #{id} expired: nobody approved step {} in time.{earlier}",
            op.step
        ),
        OperationOutcome::Withdrawn { by } => {
            format!(
                ":leftwards_arrow_with_hook: Operation #{id} withdrawn by {}.{earlier}",
                mention(by)
            )
        }
        OperationOutcome::Aborted { by } => {
            format!(
                ":octagonal_sign: Operation #{id} aborted by {}.{earlier}",
                mention(by)
            )
        }
        OperationOutcome::Failed { reason } => {
            format!(":x: Operation #{id} stopped at step {}: {reason}", op.step)
        }
    })
}

/// Said in the operation's thread when the bot comes back mid-operation,
/// whatever the phase: the channel is the audit trail, and approvers must
/// know that a plan they see is still live.
pub fn resuming(op: &OperationState) -> Message {
    let doing = match &op.phase {
        Phase::Proposing if op.posting_plan => format!(
            "posting step {}'s plan again. If a copy of it from before the restart shows above, it is void: approve the one that follows",
            op.step
        ),
        Phase::Proposing => "planning the next step".to_owned(),
        Phase::AwaitingApproval(shown) => format!(
            "the plan above still awaits approval, until {} as before",
            clock_time(shown.approval.expires_at)
        ),
        Phase::Approved(_) => "applying the approved step".to_owned(),
        Phase::Applying(_) => "finishing the step that was being applied".to_owned(),
        Phase::Finishing(_) => "closing the operation".to_owned(),
    };
    Message::new(format!(
        ":arrows_counterclockwise: failover-bot restarted; resuming operation #{} at step {}/{}: {doing}.",
        op.header.id,
        op.step,
        op.total_steps()
    ))
}

/// The thread's report when a step interrupted by a restart cannot be
/// finished safely: what stopped it, and every cluster's weight as read
/// now (`None`: the clusters could not be read), so the channel knows
/// where traffic stands without running `status`.
pub fn interrupted_step_stopped(
    config: &Config,
    op: &OperationState,
    plan: &Plan,
    reason: &str,
    now: Option<&Weights>,
) -> Message {
    let mut text = format!(
        ":rotating_light: Step {}/{} stopped: {reason}.",
        op.step,
        op.total_steps()
    );
    match now {
        Some(now) => {
            text.push_str(" Every cluster's weight now:\n");
            let rows = ordered_rows(config, &op.header.env, plan)
                .into_iter()
                .map(|c| [c.to_owned(), cell(now.get(c))])
                .collect();
            text.push_str(&table(["cluster", "weight"], rows));
        }
        None => {
            text.push_str(" The clusters' weights could not be read; check `/failover status`.")
        }
    }
    Message::new(text)
}

/// Privately, to the author of a command a restart cut short. Nothing was
/// changed: an operation's first weight change needs a plan and an
/// approval, and the command never got as far as an operation.
pub fn command_cut_short(text: &str) -> Message {
    Message::new(format!(
        ":arrows_counterclockwise: failover-bot restarted while handling your `/failover {text}` and changed nothing. If you got no answer, send it again."
    ))
}

pub fn interrupted_step_unknown(problem: &UserError) -> String {
    format!("the bot restarted during this step and stopped it without further changes: {problem}")
}

pub fn approval_taken_back(user: &str) -> Message {
    Message::new(format!(
        ":leftwards_arrow_with_hook: {} took their approval back before the step started; the plan awaits approval again.",
        mention(user)
    ))
}

pub fn approval_removed_too_late(user: &str, step: usize) -> Message {
    Message::new(format!(
        "{} removed their approval, but step {step} had already run; its weights stay. `/failover rollback` undoes it.",
        mention(user)
    ))
}

pub struct StatusView<'a> {
    pub env: &'a str,
    pub config: &'a Config,
    pub snapshot: &'a Snapshot,
    pub observed: Option<&'a [Convergence]>,
    pub running: Option<&'a OperationState>,
}

pub fn status(view: &StatusView<'_>) -> Message {
    let weights = view.snapshot.weights();
    let running = match view.running {
        None => "no operation running".to_owned(),
        Some(op) => format!(
            "operation #{} by {} at step {}/{} ({})",
            op.header.id,
            mention(&op.header.requester),
            op.step,
            op.total_steps(),
            match &op.phase {
                Phase::AwaitingApproval(_) => "awaiting approval",
                Phase::Approved(_) | Phase::Applying(_) => "applying",
                Phase::Proposing => "planning",
                Phase::Finishing(_) => "finishing",
            }
        ),
    };
    let mut text = format!(
        ":bar_chart: *{}* · {} mode · {running}\n",
        view.env, view.config.routing.mode
    );
    let names: Vec<&str> = view
        .config
        .environment(view.env)
        .map(|e| e.cluster_names().collect())
        .unwrap_or_default();
    let rows = names
        .into_iter()
        .map(|c| {
            let (set, share) = match weights.get(c) {
                Some(w) => (w.to_string(), format!("{:.0}%", weights.share_percent(c))),
                None => ("—".to_owned(), "—".to_owned()),
            };
            let observed = match (weights.get(c), view.observed) {
                (None, _) => "not routed".to_owned(),
                (Some(_), None) => "unknown".to_owned(),
                (Some(_), Some(obs)) => match obs.iter().find(|o| o.cluster == c) {
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
            [c.to_owned(), set, share, observed]
        })
        .collect();
    text.push_str(&table(["cluster", "weight", "share", "observed"], rows));
    Message::new(text.trim_end().to_owned())
}

pub fn history(env: &str, finished: &[Finished], running: Option<&OperationState>) -> Message {
    if finished.is_empty() && running.is_none() {
        return Message::new(format!("No operations in {env} yet."));
    }
    let mut text = format!(":scroll: Recent operations in *{env}*, newest first:\n");
    if let Some(op) = running {
        let _ = writeln!(
            text,
            "• #{} running — `/failover {}` by {}, step {}/{}",
            op.header.id,
            op.header.command.trim_start_matches("/failover").trim(),
            mention(&op.header.requester),
            op.step,
            op.total_steps()
        );
    }
    for f in finished {
        let approvers: Vec<String> = f
            .approvals
            .iter()
            .map(|(step, by)| format!("step {step} by {}", mention(by)))
            .collect();
        let approved = if approvers.is_empty() {
            String::new()
        } else {
            format!(", approved {}", approvers.join(", "))
        };
        let _ = writeln!(
            text,
            "• #{} {} {} — `/failover {}` by {}{approved}",
            f.header.id,
            f.outcome.word(),
            clock_time(f.finished_at),
            f.header.command.trim_start_matches("/failover").trim(),
            mention(&f.header.requester),
        );
    }
    Message::new(text.trim_end().to_owned())
}

/// The Route53 line of `failover-bot check`.
pub fn records_check(dns: &crate::config::Route53Config, problems: &[String]) -> String {
    if problems.is_empty() {
        format!(
            "  ✓ Route53 zone {}: every record has a weighted set per cluster ({})",
            dns.zone_id,
            dns.records.join(", ")
        )
    } else {
        format!("  ✗ Route53 zone {}: {}", dns.zone_id, problems.join("; "))
    }
}

/// One line per cluster for `failover-bot check`.
pub fn cluster_check(
    cluster: &crate::config::ClusterConfig,
    found: &crate::backend::kube::ClusterCheck,
) -> String {
    let mut problems = Vec::new();
    if let Err(e) = &found.identity {
        problems.push(format!("identity: {e}"));
    }
    if let Err(e) = &found.weight {
        problems.push(format!("weight: {e}"));
    }
    if !found.missing_permissions.is_empty() {
        problems.push(format!(
            "missing permissions (see manifests/target/MODE/rbac.yaml): {}",
            found.missing_permissions.join(", ")
        ));
    }
    let weight = match &found.weight {
        Ok(Some(w)) => format!("weight {w}"),
        Ok(None) => "not routed".to_owned(),
        Err(_) => "weight unknown".to_owned(),
    };
    if problems.is_empty() {
        format!(
            "  ✓ {} (context {}): identity verified, {weight}",
            cluster.name, cluster.context
        )
    } else {
        format!(
            "  ✗ {} (context {}): {}",
            cluster.name,
            cluster.context,
            problems.join("; ")
        )
    }
}

/// `failover-bot audit verify`: the chain is broken at `line`.
pub fn audit_broken(path: &std::path::Path, line: usize) -> String {
    format!(
        "✗ {}: record {line} does not follow the one before it — a record was edited, inserted or deleted at or before line {line}",
        path.display()
    )
}

pub fn audit_unreadable(path: &std::path::Path, line: usize, reason: &str) -> String {
    format!(
        "✗ {}: line {line} is not a journal record: {reason}",
        path.display()
    )
}

/// Who asked for and who approved every weight change, oldest first.
pub fn audit_report(
    path: &std::path::Path,
    records: usize,
    ledger: &crate::operation::ledger::Ledger,
) -> String {
    let mut out = format!(
        "✓ {}: hash chain intact over {records} records",
        path.display()
    );
    let running = ledger
        .active
        .values()
        .map(|op| (&op.header, &op.approvals, "running"));
    let finished = ledger
        .finished
        .iter()
        .map(|f| (&f.header, &f.approvals, f.outcome.word()));
    let mut operations: Vec<_> = finished.chain(running).collect();
    operations.sort_by_key(|(header, _, _)| header.id);
    for (header, approvals, outcome) in operations {
        let approved: Vec<String> = approvals
            .iter()
            .map(|(step, by)| format!("step {step} by {by}"))
            .collect();
        let approved = if approved.is_empty() {
            "no step approved".to_owned()
        } else {
            format!("approved {}", approved.join(", "))
        };
        let _ = write!(
            out,
            "\n#{} {} {} · `/failover {}` requested by {} · {approved} · {outcome}",
            header.id,
            header.started_at.format("%Y-%m-%d %H:%M UTC"),
            header.env,
            header.command.trim().trim_start_matches("/failover").trim(),
            header.requester,
        );
    }
    out
}
