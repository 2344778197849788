//! The bot's words, pinned: every kind of message rendered from fixed facts
//! and compared with its snapshot in `tests/snapshots/`. A rewording shows
//! as one snapshot diff to review (`INSTA_UPDATE=always cargo test --test
//! messages`, then read the diff in git); the rest of the suite asserts on
//! kinds and facts, not words.

#[path = "support/samples.rs"]
mod samples;

use chrono::{TimeZone, Utc};
use failover_bot::approval::{Approval, ApprovalState};
use failover_bot::backend::{
    BackendError, ClusterState, Convergence, GateFailure, HealthFailure, Snapshot,
};
use failover_bot::chat::MessageKind;
use failover_bot::command::hold::TimeLimit;
use failover_bot::command::shift::ShiftOp;
use failover_bot::command::to::FailoverOp;
use failover_bot::config::gates::When;
use failover_bot::config::Config;
use failover_bot::ids::{ClusterId, MessageRef};
use failover_bot::messages::{render, render_resent};
use failover_bot::notice::{
    BakeNotice, BakeState, FinishedNotice, HistoryNotice, HoldPlan, Notice, OperationLine,
    PhaseName, PlanNotice, ResumeNotice, Resumption, StatusNotice, StepReport, StepStopped,
};
use failover_bot::operation::{
    plan_step, CheckResult, ClusterOutcome, ClusterResult, GateWarning, OperationHeader,
    OperationKind, OperationOutcome, PlanStatus, Refusal, ShownPlan, StepOutcome, StopCause,
    Tripped, WriteFailure,
};
use failover_bot::plan::{Percent, Plan, Weights};

const CONFIG: &str = r#"
approval:
  approvers: [alice, bob, S0SRE]
environments:
  dev:
    channel: C1
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue}
      - {name: k8s-green.dev.example.com, context: green}
      - {name: k8s-grey.dev.example.com, context: grey}
"#;

const BLUE: &str = "k8s-blue.dev.example.com";
const GREEN: &str = "k8s-green.dev.example.com";

fn config() -> Config {
    Config::from_yaml(CONFIG).unwrap()
}

fn at(minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, minute, 0).unwrap()
}

fn weights(blue: u8, green: u8) -> Weights {
    [(BLUE, blue), (GREEN, green)].into_iter().collect()
}

fn header(kind: OperationKind, command: &str) -> OperationHeader {
    OperationHeader {
        id: 7,
        env: "dev".into(),
        channel: "C1".into(),
        requester: "alice".into(),
        kind,
        command: command.into(),
        start: weights(100, 0),
        started_at: at(0),
        event: None,
        reason: None,
        during_freeze: None,
        time_limit: None,
        drill: false,
    }
}

fn failover() -> OperationHeader {
    header(
        OperationKind::Failover(FailoverOp {
            target: GREEN.into(),
            steps: [10, 50, 100].map(|p| Percent::new(p).unwrap()).to_vec(),
            back: None,
        }),
        "/failover to green",
    )
}

fn shift(force: bool) -> OperationHeader {
    header(
        OperationKind::Shift(ShiftOp {
            percent: Percent::new(50).unwrap(),
            target: GREEN.into(),
            force,
        }),
        if force {
            "shift! 50 to green"
        } else {
            "shift 50"
        },
    )
}

fn plan_of(header: &OperationHeader, step: usize, now: &Weights) -> Plan {
    plan_step(header, step, now, false).unwrap()
}

fn shown(plan: Plan, state: ApprovalState, warnings: Vec<GateWarning>) -> ShownPlan {
    let mut approval = Approval::new(plan.hash.clone(), "alice".into(), at(15));
    approval.state = state;
    ShownPlan {
        plan,
        message: MessageRef {
            channel: "C1".into(),
            ts: "1.000100".into(),
        },
        approval,
        warnings,
        versions: Default::default(),
        checks: Vec::new(),
        capacity: Vec::new(),
    }
}

fn approved() -> ApprovalState {
    ApprovalState::Approved {
        by: "bob".into(),
        at: at(1),
    }
}

/// Each case's text under a heading, so one kind is one snapshot; a plan
/// awaiting approval shows its buttons' value and confirmation dialogs.
fn cases(list: Vec<(&str, Notice)>) -> String {
    let config = config();
    list.into_iter()
        .map(|(name, notice)| {
            let message = render(&notice, &config);
            format!("## {name}\n{}\n{}", message.text, buttons(&message))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn buttons(message: &failover_bot::chat::Message) -> String {
    let Some(buttons) = &message.buttons else {
        return String::new();
    };
    let dialog = |d: &failover_bot::chat::Confirmation| format!("{} | {}", d.title, d.text);
    format!(
        "[Approve] [Reject] value={}\n  approve: {}\n  reject: {}\n",
        buttons.value,
        dialog(&buttons.approve),
        dialog(&buttons.reject)
    )
}

fn plan_notice(header: OperationHeader, shown: ShownPlan, status: PlanStatus) -> Notice {
    Notice::Plan(Box::new(PlanNotice {
        header,
        step: shown.plan.scope.step,
        shown,
        status,
        tripped: None,
        hold: None,
    }))
}

#[test]
fn plan() {
    let op = failover();
    let first = plan_of(&op, 1, &weights(100, 0));
    let pending = || shown(first.clone(), ApprovalState::Pending, vec![]);
    let by = || "bob".into();
    let warning = GateWarning::Failed {
        cluster: GREEN.into(),
        failure: GateFailure::Unhealthy {
            failure: HealthFailure::Timeout {
                url: "https://status.green/healthz".into(),
                seconds: 3,
                tries: 3,
            },
        },
    };
    let forced = shift(true);
    let forced_plan = plan_of(&forced, 1, &weights(100, 0));
    insta::assert_snapshot!(cases(vec![
        (
            "pending",
            plan_notice(op.clone(), pending(), PlanStatus::Pending)
        ),
        (
            "applying",
            plan_notice(
                op.clone(),
                shown(first.clone(), approved(), vec![]),
                PlanStatus::Applying { by: by() }
            )
        ),
        (
            "applied",
            plan_notice(
                op.clone(),
                shown(first.clone(), approved(), vec![]),
                PlanStatus::Applied
            )
        ),
        (
            "failed",
            plan_notice(op.clone(), pending(), PlanStatus::Failed)
        ),
        (
            "refused",
            plan_notice(op.clone(), pending(), PlanStatus::Refused)
        ),
        (
            "rejected",
            plan_notice(op.clone(), pending(), PlanStatus::Rejected { by: by() })
        ),
        (
            "rejected, saying who and when",
            plan_notice(
                op.clone(),
                shown(
                    first.clone(),
                    ApprovalState::Rejected {
                        by: by(),
                        at: at(3)
                    },
                    vec![]
                ),
                PlanStatus::Rejected { by: by() }
            )
        ),
        (
            "expired, saying when",
            plan_notice(
                op.clone(),
                shown(first.clone(), ApprovalState::Expired { at: at(15) }, vec![]),
                PlanStatus::Expired
            )
        ),
        (
            "expired",
            plan_notice(op.clone(), pending(), PlanStatus::Expired)
        ),
        (
            "withdrawn",
            plan_notice(
                op.clone(),
                pending(),
                PlanStatus::Withdrawn { by: "alice".into() }
            )
        ),
        (
            "aborted",
            plan_notice(
                op.clone(),
                pending(),
                PlanStatus::Aborted { by: "carol".into() }
            )
        ),
        (
            "superseded",
            plan_notice(op.clone(), pending(), PlanStatus::Superseded)
        ),
        ("one of two approvals, with a reason", {
            let mut op = op.clone();
            op.reason = Some("INC-4711 db failover".into());
            let mut half = pending();
            half.approval = half.approval.requiring(2);
            half.approval.votes.push(failover_bot::approval::Vote {
                by: "bob".into(),
                at: at(1),
            });
            plan_notice(op, half, PlanStatus::Pending)
        }),
        ("two approvals in, applying", {
            let mut both = shown(
                first.clone(),
                ApprovalState::Approved {
                    by: "dave".into(),
                    at: at(2),
                },
                vec![],
            );
            both.approval = both.approval.requiring(2);
            both.approval.votes = vec![
                failover_bot::approval::Vote {
                    by: "bob".into(),
                    at: at(1),
                },
                failover_bot::approval::Vote {
                    by: "dave".into(),
                    at: at(2),
                },
            ];
            plan_notice(op.clone(), both, PlanStatus::Applying { by: "dave".into() })
        }),
        ("break-glass during a freeze", {
            let mut op = shift(true);
            op.during_freeze = Some(failover_bot::operation::Freeze {
                by: "bob".into(),
                reason: "quarter-end close".into(),
                since: at(0),
            });
            let plan = plan_of(&op, 1, &weights(100, 0));
            plan_notice(
                op,
                shown(plan, ApprovalState::Pending, vec![]),
                PlanStatus::Pending,
            )
        }),
        (
            "break-glass pending",
            plan_notice(
                forced,
                shown(
                    forced_plan,
                    ApprovalState::Pending,
                    vec![
                        warning,
                        GateWarning::Legacy(
                            "k8s-green.dev.example.com: health check failed (as journaled by 0.1)"
                                .into()
                        )
                    ]
                ),
                PlanStatus::Pending
            )
        ),
    ]));
}

fn result(cluster: &str, from: u8, to: u8, outcome: ClusterOutcome) -> ClusterResult {
    ClusterResult {
        cluster: cluster.into(),
        from: Some(from),
        to: Some(to),
        outcome,
    }
}

fn step_report(step: usize, outcome: StepOutcome, results: Vec<ClusterResult>) -> Notice {
    let op = failover();
    Notice::StepResult(Box::new(StepReport {
        op: 7,
        env: "dev".into(),
        step,
        total: 3,
        plan: plan_of(&op, step, &weights(100, 0)),
        results,
        outcome,
        micros: 1_234,
        hold: None,
        holds_for: None,
    }))
}

#[test]
fn step_result() {
    let applied = || {
        vec![
            result(BLUE, 100, 90, ClusterOutcome::Applied),
            result(GREEN, 0, 10, ClusterOutcome::Applied),
        ]
    };
    let injected = || BackendError::Failed {
        cluster: BLUE.into(),
        reason: "injected failure".into(),
    };
    insta::assert_snapshot!(cases(vec![
        (
            "applied, more steps follow",
            step_report(
                1,
                StepOutcome::Applied {
                    unverified: vec![],
                    dry_run: vec![]
                },
                applied()
            )
        ),
        (
            "applied, last step",
            step_report(
                3,
                StepOutcome::Applied {
                    unverified: vec![],
                    dry_run: vec![]
                },
                applied()
            )
        ),
        (
            "applied, not carried yet, dry run",
            step_report(
                1,
                StepOutcome::Applied {
                    unverified: vec![GREEN.into()],
                    dry_run: vec![ClusterId::from(BLUE)]
                },
                vec![
                    result(BLUE, 100, 90, ClusterOutcome::DryRun),
                    result(GREEN, 0, 10, ClusterOutcome::Applied)
                ]
            )
        ),
        ("skipped", step_report(2, StepOutcome::Skipped, vec![])),
        (
            "conflict",
            step_report(
                1,
                StepOutcome::Conflict,
                vec![
                    result(GREEN, 0, 10, ClusterOutcome::Restored),
                    result(
                        BLUE,
                        100,
                        90,
                        ClusterOutcome::Failed {
                            error: BackendError::Conflict {
                                cluster: BLUE.into()
                            }
                        }
                    )
                ]
            )
        ),
        (
            "restored",
            step_report(
                1,
                StepOutcome::Restored {
                    failure: WriteFailure::Errors(vec![injected()])
                },
                vec![
                    result(GREEN, 0, 10, ClusterOutcome::Restored),
                    result(BLUE, 100, 90, ClusterOutcome::Failed { error: injected() })
                ]
            )
        ),
        (
            "incomplete",
            step_report(
                1,
                StepOutcome::Incomplete {
                    failure: WriteFailure::Errors(vec![injected()])
                },
                vec![
                    result(
                        GREEN,
                        0,
                        10,
                        ClusterOutcome::RestoreFailed { error: injected() }
                    ),
                    result(BLUE, 100, 90, ClusterOutcome::Failed { error: injected() })
                ]
            )
        ),
        (
            "restored, as journaled by 0.1",
            step_report(
                1,
                StepOutcome::Restored {
                    failure: WriteFailure::Legacy(
                        "k8s-blue.dev.example.com: injected failure".into()
                    )
                },
                vec![]
            )
        ),
        (
            "refused",
            step_report(
                1,
                StepOutcome::Refused {
                    refusal: Refusal::NoOtherApprover
                },
                vec![]
            )
        ),
        (
            "interrupted",
            step_report(
                1,
                StepOutcome::Interrupted {
                    refusal: Refusal::NoOtherApprover
                },
                vec![]
            )
        ),
    ]));
}

#[test]
fn superseded() {
    let op = failover();
    let plan = || Box::new(plan_of(&op, 1, &weights(100, 0)));
    insta::assert_snapshot!(cases(vec![
        (
            "weights moved",
            Notice::Superseded {
                plan: plan(),
                now: weights(80, 0),
                moved: vec![BLUE.into()]
            }
        ),
        (
            "a cluster added",
            Notice::Superseded {
                plan: plan(),
                now: [(BLUE, 100), (GREEN, 0), ("k8s-grey.dev.example.com", 0)]
                    .into_iter()
                    .collect(),
                moved: vec![]
            }
        ),
        (
            "objects rewritten",
            Notice::Superseded {
                plan: plan(),
                now: weights(100, 0),
                moved: vec![BLUE.into()]
            }
        ),
    ]));
}

fn finished(step: usize, outcome: OperationOutcome) -> Notice {
    Notice::Finished(FinishedNotice {
        op: 7,
        step,
        total: 3,
        approvals: vec![(1, "bob".into()), (2, "dave".into()), (3, "bob".into())],
        outcome,
        while_holding: false,
        anchor: Some("3f2a9c0d81b4e7a6".into()),
    })
}

#[test]
fn finished_operation() {
    insta::assert_snapshot!(cases(vec![
        ("completed", finished(3, OperationOutcome::Completed)),
        (
            "rejected",
            finished(1, OperationOutcome::Rejected { by: "bob".into() })
        ),
        (
            "expired after a step",
            finished(2, OperationOutcome::Expired)
        ),
        (
            "withdrawn",
            finished(1, OperationOutcome::Withdrawn { by: "alice".into() })
        ),
        (
            "aborted",
            finished(3, OperationOutcome::Aborted { by: "carol".into() })
        ),
        (
            "failed: unverified",
            finished(
                2,
                OperationOutcome::Failed {
                    cause: StopCause::Unverified {
                        step: 2,
                        clusters: vec![GREEN.into()]
                    }
                }
            )
        ),
        (
            "failed: writes",
            finished(
                1,
                OperationOutcome::Failed {
                    cause: StopCause::WritesFailed {
                        failure: WriteFailure::Errors(vec![BackendError::NotFound {
                            cluster: GREEN.into()
                        }])
                    }
                }
            )
        ),
        (
            "failed: refused",
            finished(
                2,
                OperationOutcome::Failed {
                    cause: StopCause::Refused {
                        refusal: Refusal::NoOtherApprover
                    }
                }
            )
        ),
        (
            "failed, as journaled by 0.1",
            finished(
                2,
                OperationOutcome::Failed {
                    cause: StopCause::Legacy {
                        reason: "step 2 applied but not verified on k8s-green".into()
                    }
                }
            )
        ),
    ]));
}

#[test]
fn resuming() {
    let doing = [
        ("reposting a plan", Resumption::RepostingPlan),
        ("planning", Resumption::PlanningNextStep),
        (
            "awaiting approval",
            Resumption::AwaitingApproval { until: at(15) },
        ),
        ("applying", Resumption::ApplyingApprovedStep),
        ("finishing a step", Resumption::FinishingInterruptedStep),
        ("closing", Resumption::Closing),
    ];
    insta::assert_snapshot!(cases(
        doing
            .into_iter()
            .map(|(name, doing)| {
                let notice = ResumeNotice {
                    op: 7,
                    step: 2,
                    total: 3,
                    doing,
                };
                (name, Notice::Resuming(notice))
            })
            .collect()
    ));
}

#[test]
fn step_stopped() {
    let op = failover();
    let stopped = |refusal, put_back, now| {
        Notice::StepStopped(Box::new(StepStopped {
            env: "dev".into(),
            step: 2,
            total: 3,
            plan: plan_of(&op, 2, &weights(90, 10)),
            refusal,
            put_back,
            now,
        }))
    };
    let moved = || Refusal::UnexpectedWeight {
        cluster: GREEN.into(),
        found: Some(30),
        before: Some(10),
        after: Some(50),
    };
    let sick = Refusal::GateFailed {
        cluster: GREEN.into(),
        failure: GateFailure::Unhealthy {
            failure: HealthFailure::Unreachable {
                url: "https://status.green/healthz".into(),
                tries: 3,
            },
        },
    };
    insta::assert_snapshot!(cases(vec![
        (
            "weights read",
            stopped(moved(), vec![], Some(weights(70, 30)))
        ),
        ("weights unreadable", stopped(moved(), vec![], None)),
        (
            "its own half-written step put back",
            stopped(sick, vec![GREEN.into()], Some(weights(90, 10)))
        ),
    ]));
}

#[test]
fn approvals_taken_back() {
    insta::assert_snapshot!(cases(vec![
        (
            "before the step",
            Notice::ApprovalTakenBack { user: "bob".into() }
        ),
        (
            "too late",
            Notice::ApprovalTooLate {
                user: "bob".into(),
                step: 2
            }
        ),
    ]));
}

#[test]
fn refused() {
    let list = samples::refusals()
        .into_iter()
        .map(|refusal| {
            let name = samples::variant_name(&refusal);
            (name, Notice::Refused { refusal })
        })
        .collect::<Vec<_>>();
    insta::assert_snapshot!(cases(
        list.iter()
            .map(|(name, notice)| (name.as_str(), notice.clone()))
            .collect()
    ));
}

#[test]
fn answers() {
    insta::assert_snapshot!(cases(vec![
        (
            "internal error during an operation",
            Notice::InternalError { op: Some(7) }
        ),
        ("internal error", Notice::InternalError { op: None }),
        (
            "command cut short",
            Notice::CommandCutShort {
                text: "shift 50".into()
            }
        ),
        ("help", Notice::Help),
        (
            "working",
            Notice::Working {
                text: "/failover shift 50".into()
            }
        ),
        (
            "legacy",
            Notice::Legacy {
                text: "a message as journaled by 0.1".into()
            }
        ),
        (
            "frozen",
            Notice::Frozen {
                env: "prod".into(),
                by: "bob".into(),
                reason: "quarter-end close".into(),
                break_glass: vec!["S0ONCALL".into()]
            }
        ),
        (
            "unfrozen",
            Notice::Unfrozen {
                env: "prod".into(),
                by: "bob".into(),
                since: at(5)
            }
        ),
    ]));
}

fn line(op: u64, ended: Option<&str>) -> OperationLine {
    OperationLine {
        op,
        requester: "alice".into(),
        command: "to green".into(),
        step: 2,
        total: 3,
        approvals: vec![(1, "bob".into())],
        ended: ended.map(|outcome| failover_bot::notice::Ended {
            outcome: outcome.into(),
            at: at(30),
        }),
        phase: ended.is_none().then_some(PhaseName::AwaitingApproval),
        reason: (op == 7).then(|| "INC-4711 db failover".to_owned()),
        returns_at: None,
    }
}

#[test]
fn status_and_history() {
    let snapshot = Snapshot {
        clusters: [
            (BLUE, Some(90)),
            (GREEN, Some(10)),
            ("k8s-grey.dev.example.com", None),
        ]
        .into_iter()
        .map(|(c, weight)| {
            (
                c.into(),
                ClusterState {
                    weight,
                    version: None,
                },
            )
        })
        .collect(),
    };
    let observed = vec![
        Convergence {
            cluster: BLUE.into(),
            converged: 4,
            total: 4,
            stragglers: vec![],
        },
        Convergence {
            cluster: GREEN.into(),
            converged: 3,
            total: 4,
            stragglers: vec!["Ingress shop/web".into()],
        },
    ];
    let status = |observed, running, frozen| {
        Notice::Status(Box::new(StatusNotice {
            env: "dev".into(),
            snapshot: snapshot.clone(),
            observed,
            running,
            frozen,
        }))
    };
    let freeze = failover_bot::operation::Freeze {
        by: "bob".into(),
        reason: "quarter-end close".into(),
        since: at(5),
    };
    insta::assert_snapshot!(cases(vec![
        (
            "status, drift, running",
            status(Some(observed), Some(line(8, None)), None)
        ),
        (
            "status, unobserved, frozen",
            status(None, None, Some(freeze))
        ),
        (
            "history, empty",
            Notice::History(HistoryNotice {
                env: "dev".into(),
                running: None,
                finished: vec![]
            })
        ),
        (
            "history",
            Notice::History(HistoryNotice {
                env: "dev".into(),
                running: Some(line(8, None)),
                finished: vec![line(7, Some("completed")), line(6, Some("aborted"))]
            })
        ),
    ]));
}

#[test]
fn a_post_sent_again_says_so() {
    let notice = Notice::ApprovalTakenBack { user: "bob".into() };
    let text = render_resent(&notice, &config()).text;
    insta::assert_snapshot!(text);
}

#[test]
fn every_message_carries_its_kind_and_the_facts_of_its_operation() {
    let config = config();
    let op = failover();
    let plan = plan_of(&op, 1, &weights(100, 0));
    let message = render(
        &plan_notice(
            op,
            shown(plan.clone(), ApprovalState::Pending, vec![]),
            PlanStatus::Pending,
        ),
        &config,
    );
    assert_eq!(message.kind, MessageKind::Plan);
    assert_eq!(message.fact("op"), Some("7"));
    assert_eq!(message.fact("step"), Some("1"));
    assert_eq!(message.fact("status"), Some("pending"));
    assert_eq!(message.fact("plan"), Some(plan.hash.as_str()));
    let refused = render(
        &Notice::Refused {
            refusal: samples::approval_errors()[0].clone().into(),
        },
        &config,
    );
    assert_eq!(refused.kind, MessageKind::Refused);
    assert_eq!(refused.fact("refusal"), Some("self_approval"));
}

mod drills {
    //! The scorecard at a drill's end, at each resolution, first and with
    //! earlier drills to compare with.

    use super::*;
    use failover_bot::drill::{scorecard, DrillEnd, DrillTimings, StepTimes};
    use failover_bot::notice::{DrillChart, DrillLine, DrillsNotice};

    fn drill(op: u64, day: u32, steps: &[[u64; 3]]) -> DrillTimings {
        DrillTimings {
            op,
            env: "dev".into(),
            started_at: Utc.with_ymd_and_hms(2026, 11, day, 9, 30, 0).unwrap(),
            steps: steps
                .iter()
                .map(|&[waiting_ms, applying_ms, converging_ms]| StepTimes {
                    waiting_ms,
                    applying_ms,
                    converging_ms,
                })
                .collect(),
        }
    }

    /// An earlier drill of one step that took `total_ms`.
    fn earlier(op: u64, day: u32, total_ms: u64) -> DrillTimings {
        drill(op, day, &[[total_ms, 0, 0]])
    }

    /// Three steps, 8m 43s in all (523.151 s).
    fn three_steps() -> DrillTimings {
        drill(
            12,
            25,
            &[
                [190_000, 1_500, 65_250],
                [121_400, 900, 48_800],
                [64_100, 1_200, 30_001],
            ],
        )
    }

    fn card(this: DrillTimings, history: &[DrillTimings]) -> Notice {
        Notice::DrillScorecard(Box::new(scorecard(&this, history).unwrap()))
    }

    #[test]
    fn drill_scorecard() {
        let history = [
            earlier(3, 2, 750_000),
            earlier(5, 10, 480_000),
            earlier(8, 20, 550_000),
        ];
        let quick = drill(4, 25, &[[4_213, 3, 412], [2_950, 2, 388]]);
        insta::assert_snapshot!(cases(vec![
            (
                "first drill, one step",
                card(drill(1, 2, &[[185_400, 2_310, 64_900]]), &[])
            ),
            (
                "against last, best and median",
                card(three_steps(), &history)
            ),
            ("a new best", card(three_steps(), &history[2..])),
            (
                "sandbox: seconds, as fast as the last",
                card(quick, &[earlier(2, 24, 7_990)])
            ),
        ]));
    }

    /// A drill that stopped: `ended` says how; no comparison is shown.
    fn stopped(ended: DrillEnd) -> Notice {
        let this = drill(13, 26, &[[190_000, 1_500, 65_250], [42_000, 0, 0]]);
        let mut card = scorecard(&this, &[earlier(8, 20, 550_000)]).unwrap();
        card.ended = ended;
        Notice::DrillScorecard(Box::new(card))
    }

    #[test]
    fn a_drill_that_stopped() {
        insta::assert_snapshot!(cases(vec![
            ("aborted in step 2", stopped(DrillEnd::Aborted)),
            ("rejected", stopped(DrillEnd::Rejected)),
            ("failed", stopped(DrillEnd::Failed)),
        ]));
    }

    /// The plan of a drill's first step, and of its way back.
    #[test]
    fn a_drill_plan() {
        let mut op = failover();
        op.drill = true;
        op.command = "/failover drill to green and back".into();
        if let OperationKind::Failover(failover) = &mut op.kind {
            *failover = failover.clone().and_back(&weights(100, 0));
        }
        let first = plan_of(&op, 1, &weights(100, 0));
        let back = plan_of(&op, 5, &weights(50, 50));
        let notice = |plan: Plan| {
            plan_notice(
                op.clone(),
                shown(plan, ApprovalState::Pending, vec![]),
                PlanStatus::Pending,
            )
        };
        let rendered = render(&notice(first.clone()), &config());
        assert_eq!(rendered.fact("drill"), Some("true"));
        assert_eq!(rendered.fact("total"), Some("6"));
        insta::assert_snapshot!(cases(vec![
            ("step 1 of 6", notice(first)),
            ("step 5 of 6: on the way back", notice(back)),
        ]));
    }

    fn line(op: u64, day: u32, ended: Option<DrillEnd>, total_ms: Option<u64>) -> DrillLine {
        DrillLine {
            op,
            started_at: Utc.with_ymd_and_hms(2026, 11, day, 9, 30, 0).unwrap(),
            requester: "alice".into(),
            command: "drill to green and back".into(),
            ended,
            total_ms,
        }
    }

    #[test]
    fn drills_listed_and_the_chart_caption() {
        let list = |running, finished| {
            Notice::Drills(DrillsNotice {
                env: "dev".into(),
                running,
                finished,
            })
        };
        insta::assert_snapshot!(cases(vec![
            ("none yet", list(None, vec![])),
            (
                "one running, three done",
                list(
                    Some(line(14, 26, None, None)),
                    vec![
                        line(13, 25, Some(DrillEnd::Aborted), Some(232_000)),
                        line(12, 20, Some(DrillEnd::Completed), Some(523_151)),
                        line(8, 10, Some(DrillEnd::Completed), Some(4_200)),
                    ]
                )
            ),
            (
                "the chart's caption",
                Notice::DrillChart(Box::new(DrillChart {
                    op: 12,
                    env: "dev".into(),
                    drills: vec![earlier(8, 20, 550_000), three_steps()],
                }))
            ),
        ]));
    }

    #[test]
    fn the_chart_file_says_what_it_shows() {
        let chart = DrillChart {
            op: 12,
            env: "dev".into(),
            drills: vec![earlier(8, 20, 550_000), three_steps()],
        };
        let file = failover_bot::messages::chart_file(&chart).unwrap();
        assert_eq!(file.filename, "drills-dev.png");
        assert_eq!(file.title, "Drills in dev, up to #12");
        assert_eq!(
            file.alt_text,
            "Bar chart of failover drill durations in dev, oldest first: #8 9m 10s, #12 8m 43s"
        );
        assert_eq!(&file.bytes[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn a_scorecard_carries_its_drill_and_total_as_facts() {
        let message = render(&card(three_steps(), &[]), &config());
        assert_eq!(message.kind, MessageKind::DrillScorecard);
        assert_eq!(message.fact("op"), Some("12"));
        assert_eq!(message.fact("env"), Some("dev"));
        assert_eq!(message.fact("total_ms"), Some("523151"));
    }
}

const ROLLBACK_CONFIG: &str = r#"
approval:
  approvers: [alice, bob, S0SRE]
environments:
  dev:
    channel: C1
    on_gate_failure: rollback
    clusters:
      - {name: k8s-blue.dev.example.com, context: blue}
      - {name: k8s-green.dev.example.com, context: green}
"#;

#[test]
fn gates_on_real_signals() {
    let op = failover();
    let first = plan_of(&op, 1, &weights(100, 0));
    let passing = samples::gate_check(When::Before, 0.002, CheckResult::Pass);
    let advisory = failover_bot::operation::GateCheck {
        gate: "p99-latency".into(),
        advisory: true,
        ..samples::gate_check(When::Before, 0.0, CheckResult::NoData { passes: false })
    };
    let mut checked = shown(first.clone(), ApprovalState::Pending, vec![]);
    checked.checks = vec![passing.clone(), advisory.clone()];
    checked.capacity = vec![samples::capacity_check(Some(8), true)];
    let failing = samples::gate_check(When::Before, 0.042, CheckResult::Fail);
    let forced = shift(true);
    let mut pushed = shown(
        plan_of(&forced, 1, &weights(100, 0)),
        ApprovalState::Pending,
        vec![
            GateWarning::Metric {
                check: failing.clone(),
            },
            GateWarning::Capacity {
                capacity: samples::capacity_check(Some(3), false),
            },
        ],
    );
    pushed.checks = vec![failing];
    pushed.capacity = vec![samples::capacity_check(Some(3), false)];
    let after = samples::gate_check(When::After, 0.2, CheckResult::Fail);
    let tripped = Tripped {
        step: 2,
        checks: vec![after.clone()],
    };
    let back = Plan::new(
        failover_bot::plan::PlanScope {
            env: "dev".into(),
            operation: 7,
            step: 2,
        },
        failover_bot::plan::Change::SetWeights,
        weights(20, 80),
        weights(100, 0),
    )
    .unwrap();
    let way_back = Notice::Plan(Box::new(PlanNotice {
        header: op.clone(),
        step: 2,
        shown: shown(back, ApprovalState::Pending, vec![]),
        status: PlanStatus::Pending,
        tripped: Some(tripped.clone()),
        hold: None,
    }));
    let bake = |state, checks: Vec<_>| {
        Notice::Bake(Box::new(BakeNotice {
            op: 7,
            step: 1,
            total: 3,
            until: at(20),
            checks,
            state,
        }))
    };
    let holding = samples::gate_check(When::After, 0.003, CheckResult::Pass);
    insta::assert_snapshot!(cases(vec![
        (
            "plan with gates and capacity",
            plan_notice(op.clone(), checked, PlanStatus::Pending)
        ),
        (
            "break-glass past a gate and capacity",
            plan_notice(forced, pushed, PlanStatus::Pending)
        ),
        ("the way back", way_back),
        (
            "bake holding",
            bake(BakeState::Holding, vec![holding.clone()])
        ),
        ("bake passed", bake(BakeState::Passed, vec![holding])),
        (
            "bake tripped",
            bake(BakeState::Tripped, vec![after.clone()])
        ),
        (
            "gate tripped, asking",
            Notice::GateTripped {
                op: 7,
                step: 2,
                checks: vec![after.clone()],
                on_its_own: false
            }
        ),
        (
            "gate tripped, on its own",
            Notice::GateTripped {
                op: 7,
                step: 2,
                checks: vec![after.clone()],
                on_its_own: true
            }
        ),
        (
            "finished after the way back",
            finished(
                2,
                OperationOutcome::Failed {
                    cause: StopCause::GateTripped {
                        step: 2,
                        checks: vec![after]
                    }
                }
            )
        ),
    ]));
    let rollback_config = Config::from_yaml(ROLLBACK_CONFIG).unwrap();
    let pending = plan_notice(
        op,
        shown(first, ApprovalState::Pending, vec![]),
        PlanStatus::Pending,
    );
    let text = render(&pending, &rollback_config).text;
    assert!(
        text.contains("on_gate_failure: rollback"),
        "every plan in an environment that rolls back on its own says so:\n{text}"
    );
}

#[test]
fn time_limited_shifts() {
    let two_hours = at(0) + chrono::Duration::hours(2);
    let three_hours = at(0) + chrono::Duration::hours(3);
    let mut op = shift(false);
    op.time_limit = Some(TimeLimit::parse("2h").unwrap());
    op.command = "/failover shift 50 to green for 2h".into();
    let forward = plan_of(&op, 1, &weights(100, 0));
    let back = Plan::new(
        failover_bot::plan::PlanScope {
            env: "dev".into(),
            operation: 7,
            step: 2,
        },
        failover_bot::plan::Change::SetWeights,
        weights(50, 50),
        weights(100, 0),
    )
    .unwrap();
    let stay = Plan::new(
        failover_bot::plan::PlanScope {
            env: "dev".into(),
            operation: 7,
            step: 2,
        },
        failover_bot::plan::Change::SetWeights,
        weights(50, 50),
        weights(50, 50),
    )
    .unwrap();
    let hold_plan = |plan: &Plan, hold| {
        Notice::Plan(Box::new(PlanNotice {
            header: op.clone(),
            step: 2,
            shown: shown(plan.clone(), ApprovalState::Pending, vec![]),
            status: PlanStatus::Pending,
            tripped: None,
            hold: Some(hold),
        }))
    };
    let ended = |outcome, while_holding| {
        Notice::Finished(FinishedNotice {
            op: 7,
            step: 2,
            total: 1,
            approvals: vec![(1, "bob".into())],
            outcome,
            while_holding,
            anchor: None,
        })
    };
    let mut holding = line(7, None);
    holding.phase = Some(PhaseName::Holding);
    holding.returns_at = Some(two_hours);
    insta::assert_snapshot!(cases(vec![
        (
            "plan of a time-limited shift",
            plan_notice(
                op.clone(),
                shown(forward, ApprovalState::Pending, vec![]),
                PlanStatus::Pending
            )
        ),
        (
            "reminder",
            Notice::HoldReminder {
                op: 7,
                until: two_hours,
                back_to: weights(100, 0),
            }
        ),
        (
            "the return",
            hold_plan(&back, HoldPlan::Return { by_hand: false })
        ),
        (
            "the return after a change by hand",
            hold_plan(&back, HoldPlan::Return { by_hand: true })
        ),
        (
            "extend",
            hold_plan(
                &stay,
                HoldPlan::Extend {
                    by: "carol".into(),
                    from: two_hours,
                    to: three_hours,
                }
            )
        ),
        (
            "keep",
            hold_plan(
                &stay,
                HoldPlan::Keep {
                    by: "carol".into(),
                    until: two_hours,
                }
            )
        ),
        (
            "return refused by a gate",
            ended(
                OperationOutcome::Failed {
                    cause: StopCause::ReturnRefused {
                        refusal: samples::refusals()
                            .into_iter()
                            .find(|r| samples::variant_name(r) == "MetricGate")
                            .unwrap(),
                    },
                },
                true
            )
        ),
        (
            "aborted while holding",
            ended(OperationOutcome::Aborted { by: "alice".into() }, true)
        ),
        ("kept", ended(OperationOutcome::Completed, true)),
        (
            "status while holding",
            Notice::Status(Box::new(StatusNotice {
                env: "dev".into(),
                snapshot: failover_bot::backend::Snapshot::default(),
                observed: None,
                running: Some(holding),
                frozen: None,
            }))
        ),
        (
            "resuming while holding",
            Notice::Resuming(ResumeNotice {
                op: 7,
                step: 1,
                total: 1,
                doing: Resumption::Holding { until: two_hours },
            })
        ),
    ]));
}

#[test]
fn journal_key_replaced() {
    insta::assert_snapshot!(cases(vec![(
        "rekeyed",
        Notice::Rekeyed {
            new_key: "9f1c0e2d3b4a59687766554433221100ffeeddccbbaa99887766554433221100".into(),
            old_head: "07400fc7d63f27e4aa11bb22cc33dd44ee55ff6600112233445566778899aabb".into(),
            reason: "the Secret was deleted".into(),
        }
    )]));
}

/// The scheduled readiness check's posts: a result that changed (problems
/// and warnings, warnings only, fixed) and the weekly all-clear.
#[test]
fn readiness() {
    use failover_bot::notice::ReadinessNotice;
    use failover_bot::readiness::{Check, Finding, Occasion, Report, Severity};
    let identity = || {
        Finding::new(
            Severity::Problem,
            Check::Identity,
            GREEN,
            "context green answers as `k8s-old.dev.example.com`, not `k8s-green.dev.example.com`",
        )
    };
    let drill = || {
        Finding::new(
            Severity::Warning,
            Check::Drill,
            "last drill",
            "2026-10-01 09:30 UTC, 55 days ago: older than doctor.drill_max_age (30 days)",
        )
    };
    let fine = || Finding::ok(Check::Health, BLUE, "the health gate passes");
    let post = |findings: Vec<Finding>, occasion| {
        Notice::Readiness(Box::new(ReadinessNotice {
            report: Report {
                env: "dev".into(),
                findings,
            },
            occasion,
        }))
    };
    let changed = Occasion::Changed;
    insta::assert_snapshot!(cases(vec![
        (
            "not ready",
            post(vec![fine(), drill(), identity()], changed)
        ),
        ("warnings only", post(vec![fine(), drill()], changed)),
        ("ready again", post(vec![fine(), fine()], changed)),
        (
            "weekly all-clear",
            post(vec![fine(), fine()], Occasion::AllClear)
        ),
    ]));
    let message = render(&post(vec![identity(), drill()], changed), &config());
    assert_eq!(message.kind, MessageKind::Readiness);
    assert_eq!(message.fact("problems"), Some("1"));
    assert_eq!(
        message.fact("findings"),
        Some(format!("identity@{GREEN}=problem drill@last drill=warning").as_str())
    );
    let weekly = render(&post(vec![fine()], Occasion::AllClear), &config());
    assert_eq!(weekly.kind, MessageKind::AllClear);
}
