//! One instance of every refusal the bot can answer with, with the values
//! the troubleshooting entries quote. `tests/docs.rs` checks that each has
//! an entry quoting it and that no variant is missing; `tests/messages.rs`
//! pins how each is worded.

use failover_bot::approval::{ApprovalError, StateName};
use failover_bot::backend::{BackendError, GateFailure, HealthFailure};
use failover_bot::command::{CommandError, Missing, Verb};
use failover_bot::config::gates::When;
use failover_bot::operation::{CapacityCheck, CheckResult, Freeze, GateCheck, Reading, Refusal};
use failover_bot::plan::{PlanError, StepsError};

fn s(text: &str) -> String {
    text.to_owned()
}

const GREEN: &str = "k8s-green.dev.example.com";
const BLUE: &str = "k8s-blue.dev.example.com";

pub fn command_errors() -> Vec<CommandError> {
    use CommandError::*;
    vec![
        UnknownCommand {
            word: s("shfit"),
            suggestion: Some(s("shift")),
        },
        MissingArgument {
            verb: Verb::Shift,
            what: Missing::Percent,
        },
        BadPercent { given: s("150") },
        BadSteps {
            given: s("50,10"),
            problem: StepsError::NotRising,
        },
        UnexpectedWord {
            verb: Verb::Shift,
            word: s("now"),
        },
        RepeatedOption {
            verb: Verb::Shift,
            option: s("to"),
        },
        ChannelNotAllowed {
            allowed: vec![s("C0FAILOVER")],
        },
        WrongChannel {
            env: "prod".into(),
            channels: vec![s("C0PROD")],
        },
        DirectMessage,
        UnknownEnvironment {
            given: s("prd"),
            suggestion: Some(s("prod")),
            known: vec!["dev".into(), "prod".into()],
        },
        WhichEnvironment {
            known: vec!["dev".into(), "prod".into()],
        },
        UnknownCluster {
            given: s("grean"),
            env: "dev".into(),
            suggestion: Some(s("green")),
            known: vec![s("blue"), s("green")],
        },
        AmbiguousCluster {
            given: s("k8s"),
            env: "dev".into(),
            matches: vec![s("blue"), s("green")],
        },
        BadWeight {
            given: s("blue=300"),
        },
        BadDuration { given: s("soon") },
        TooLong { given: s("100h") },
        RepeatedCluster {
            cluster: BLUE.into(),
        },
        AlreadyAtTarget {
            cluster: GREEN.into(),
        },
        NothingToRollBack { env: "dev".into() },
        DrillWithoutTo { given: s("green") },
        AndWhat { given: s("forth") },
    ]
}

pub fn plan_errors() -> Vec<PlanError> {
    use PlanError::*;
    vec![
        NoRoutedClusters,
        AmbiguousShiftTarget {
            tied: vec![BLUE.into(), GREEN.into()],
        },
        ClusterNotRouted {
            cluster: GREEN.into(),
        },
        SingleCluster {
            cluster: BLUE.into(),
        },
        AllZero { env: "dev".into() },
        AlreadyRouted {
            cluster: GREEN.into(),
        },
        RemoveNonZero {
            cluster: GREEN.into(),
            weight: 10,
        },
        ChangesClusterSet,
        NewClusterWithoutWeight,
    ]
}

pub fn approval_errors() -> Vec<ApprovalError> {
    use ApprovalError::*;
    vec![
        SelfApproval {
            user: "alice".into(),
        },
        NotApprover {
            user: "carol".into(),
        },
        NotPending {
            state: StateName::Expired,
        },
        PlanChanged,
        AlreadyApproved { user: "bob".into() },
    ]
}

/// The refusals of the engine itself (not wrapping another module's).
pub fn engine_refusals() -> Vec<Refusal> {
    use Refusal::*;
    vec![
        NoChange { env: "dev".into() },
        NothingToAbort { env: "dev".into() },
        Busy {
            env: "dev".into(),
            op: 7,
            requester: "alice".into(),
            step: 2,
            total: 3,
        },
        NoOtherApprover,
        Unavailable {
            env: "dev".into(),
            error: BackendError::Failed {
                cluster: s(GREEN),
                reason: s("operation timed out"),
            },
        },
        GateFailed {
            cluster: GREEN.into(),
            failure: GateFailure::Unhealthy {
                failure: HealthFailure::Status {
                    url: s("https://status.green.dev.example.com/healthz"),
                    status: 503,
                    tries: 3,
                },
            },
        },
        UnexpectedWeight {
            cluster: GREEN.into(),
            found: Some(30),
            before: Some(10),
            after: Some(50),
        },
        PlanClosed { op: 7 },
        UnknownButton,
        NoSuchEnvironment {
            env: "staging".into(),
        },
        StepTooOld {
            started_at: noon(),
            lifetime_secs: 900,
        },
        NotRequester {
            user: "carol".into(),
            env: "prod".into(),
            allowed: vec![s("S0SRE")],
        },
        NotBreakGlass {
            env: "prod".into(),
            allowed: vec![s("S0ONCALL")],
        },
        ReasonRequired { env: "prod".into() },
        Frozen {
            env: "prod".into(),
            freeze: freeze(),
            break_glass: vec![s("S0ONCALL")],
        },
        AlreadyFrozen {
            env: "prod".into(),
            freeze: freeze(),
        },
        NotFrozen { env: "prod".into() },
        NotHolding { env: "prod".into() },
        JournalUntrusted {
            line: 42,
            problem: s("no signature"),
        },
        HoldTooLong {
            env: "prod".into(),
            latest: noon() + chrono::Duration::hours(72),
        },
        MayNotFreeze {
            env: "prod".into(),
            approvers: vec![s("S0SRE")],
        },
        NotYours {
            op: 7,
            requester: "alice".into(),
            action: s("abort"),
            approvers: vec![s("S0SRE")],
        },
        MetricGate {
            check: Box::new(gate_check(When::Before, 0.042, CheckResult::Fail)),
        },
        Capacity {
            check: capacity_check(Some(3), false),
        },
    ]
}

/// The error-rate gate on green, as read.
pub fn gate_check(when: When, value: f64, result: CheckResult) -> GateCheck {
    GateCheck {
        gate: s("error-rate"),
        cluster: GREEN.into(),
        when,
        query: s(r#"sum(rate(http_errors_total{cluster="k8s-green.dev.example.com"}[5m]))"#),
        operator: s("<"),
        threshold: Reading(0.01),
        readings: match result {
            CheckResult::Pass | CheckResult::Fail => vec![Reading(value)],
            _ => Vec::new(),
        },
        result,
        advisory: false,
    }
}

/// The capacity gate for `web/api` on green, taking half the traffic
/// from 10 ready replicas with headroom 1.2 (so it needs 6).
pub fn capacity_check(ready: Option<u32>, enough: bool) -> CapacityCheck {
    CapacityCheck {
        deployment: s("web/api"),
        cluster: GREEN.into(),
        ready,
        unreadable: None,
        serving: 10,
        share_percent: Reading(50.0),
        headroom: Reading(1.2),
        required: 6,
        enough: Some(enough),
    }
}

fn noon() -> chrono::DateTime<chrono::Utc> {
    chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 25, 12, 0, 0).unwrap()
}

fn freeze() -> Freeze {
    Freeze {
        by: "bob".into(),
        reason: s("quarter-end close"),
        since: noon(),
    }
}

/// Every refusal, each module's own wrapped as the engine answers it.
pub fn refusals() -> Vec<Refusal> {
    let mut all: Vec<Refusal> = command_errors().into_iter().map(Refusal::from).collect();
    all.extend(plan_errors().into_iter().map(Refusal::from));
    all.extend(approval_errors().into_iter().map(Refusal::from));
    all.extend(engine_refusals());
    all
}

/// The name of the variant a refusal is (`UnknownCommand`), whichever
/// module's enum it comes from.
pub fn variant_name(refusal: &Refusal) -> String {
    let debug = match refusal {
        Refusal::Command(CommandError::Plan(e)) | Refusal::Plan(e) => format!("{e:?}"),
        Refusal::Command(e) => format!("{e:?}"),
        Refusal::Approval(e) => format!("{e:?}"),
        other => format!("{other:?}"),
    };
    debug
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}
