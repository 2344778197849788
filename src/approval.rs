//! The approval of one step: a small state machine with no I/O.
//!
//! A plan may need several approvals (`approvals_required`): each approver
//! (never the requester, each for the exact plan shown, before expiry) adds
//! a vote once; the vote that makes the count approves.
//!
//! ```text
//!            approve × required (distinct approvers ≠ requester, same plan
//!            hash, before expiry)
//!   Pending ─────────────────────────────────────────────────► Approved
//!     │  ▲ ◄──── unapprove (an approver takes their vote back) ─────┘
//!     │  reject (approver)        → Rejected
//!     │  withdraw (requester/abort) → Withdrawn
//!     │  expire (deadline passed) → Expired
//!     └  supersede (weights moved; a new plan is asked for) → Superseded
//! ```
//!
//! Whether someone *may* approve (user list, user groups) needs I/O, so the
//! caller resolves it and passes an [`Actor`]; the rules about who, when and
//! for which plan live here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{OpId, UserId};
use crate::plan::PlanHash;

/// The exact plan a button was shown with: operation, step and plan hash,
/// carried in the button's value as `op:step:hash` (short: Slack caps a
/// value at 2,000 characters, and it shows in logs). A click counts only
/// for the plan it names, as a reaction counts only for the message's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanClaim {
    pub op: OpId,
    pub step: usize,
    pub plan: PlanHash,
}

impl PlanClaim {
    pub fn to_value(&self) -> String {
        format!("{}:{}:{}", self.op, self.step, self.plan)
    }

    /// The claim a button value makes, or `None` for anything the bot did
    /// not write (a forged or mangled value).
    pub fn parse(value: &str) -> Option<PlanClaim> {
        let mut parts = value.split(':');
        let (op, step, plan) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(PlanClaim {
            op: op.parse().ok()?,
            step: step.parse().ok()?,
            plan: PlanHash::parse(plan)?,
        })
    }
}

/// Why a vote on a plan was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "approval", rename_all = "snake_case")]
pub enum ApprovalError {
    #[error("<@{user}> cannot approve their own request: a second person must approve.")]
    SelfApproval { user: UserId },
    #[error("<@{user}> is not an approver for failovers.")]
    NotApprover { user: UserId },
    #[error("this plan is {state}; there is nothing to approve.")]
    NotPending { state: StateName },
    #[error("this plan was replaced by a newer one; react to the newest plan.")]
    PlanChanged,
    #[error("<@{user}> has already approved this plan; another approver is needed.")]
    AlreadyApproved { user: UserId },
}

/// The name of an approval state, for refusals and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Pending,
    Approved,
    Rejected,
    Expired,
    Withdrawn,
    Superseded,
}

impl StateName {
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Pending => "pending",
            StateName::Approved => "approved",
            StateName::Rejected => "rejected",
            StateName::Expired => "expired",
            StateName::Withdrawn => "withdrawn",
            StateName::Superseded => "superseded",
        }
    }
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved { by: UserId, at: DateTime<Utc> },
    Rejected { by: UserId, at: DateTime<Utc> },
    Expired { at: DateTime<Utc> },
    Withdrawn { by: UserId, at: DateTime<Utc> },
    Superseded { at: DateTime<Utc> },
}

impl ApprovalState {
    /// A short name for metrics, logs and refusals.
    pub fn name(&self) -> StateName {
        match self {
            ApprovalState::Pending => StateName::Pending,
            ApprovalState::Approved { .. } => StateName::Approved,
            ApprovalState::Rejected { .. } => StateName::Rejected,
            ApprovalState::Expired { .. } => StateName::Expired,
            ApprovalState::Withdrawn { .. } => StateName::Withdrawn,
            ApprovalState::Superseded { .. } => StateName::Superseded,
        }
    }

    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            ApprovalState::Pending | ApprovalState::Approved { .. }
        )
    }
}

/// Someone acting on an approval, with what the config allows them.
#[derive(Clone, Debug)]
pub struct Actor<'a> {
    pub user: &'a UserId,
    pub is_approver: bool,
}

/// One approver's yes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub by: UserId,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub plan: PlanHash,
    pub requester: UserId,
    pub expires_at: DateTime<Utc>,
    pub state: ApprovalState,
    /// How many distinct approvers it takes.
    #[serde(default = "one")]
    pub required: u32,
    /// The approvals given so far, oldest first.
    #[serde(default)]
    pub votes: Vec<Vote>,
}

fn one() -> u32 {
    1
}

impl Approval {
    pub fn new(plan: PlanHash, requester: UserId, expires_at: DateTime<Utc>) -> Self {
        Self {
            plan,
            requester,
            expires_at,
            state: ApprovalState::Pending,
            required: 1,
            votes: Vec::new(),
        }
    }

    /// The same approval, needing `required` distinct approvers.
    pub fn requiring(mut self, required: u32) -> Self {
        self.required = required.max(1);
        self
    }

    /// Whether `user` has approved.
    pub fn has_vote_of(&self, user: &UserId) -> bool {
        self.votes.iter().any(|v| v.by == *user)
    }

    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.state == ApprovalState::Pending && now >= self.expires_at
    }

    /// An approval (reaction or button) on the message that showed plan
    /// `shown`: one vote; the vote that makes the count approves.
    pub fn approve(
        &mut self,
        actor: &Actor<'_>,
        shown: &PlanHash,
        now: DateTime<Utc>,
    ) -> Result<(), ApprovalError> {
        self.require_pending(now)?;
        if *shown != self.plan {
            return Err(ApprovalError::PlanChanged);
        }
        if *actor.user == self.requester {
            return Err(ApprovalError::SelfApproval {
                user: actor.user.clone(),
            });
        }
        if !actor.is_approver {
            return Err(ApprovalError::NotApprover {
                user: actor.user.clone(),
            });
        }
        if self.has_vote_of(actor.user) {
            return Err(ApprovalError::AlreadyApproved {
                user: actor.user.clone(),
            });
        }
        self.votes.push(Vote {
            by: actor.user.clone(),
            at: now,
        });
        if self.votes.len() >= self.required as usize {
            self.state = ApprovalState::Approved {
                by: actor.user.clone(),
                at: now,
            };
        }
        Ok(())
    }

    /// A rejection (reaction or button) on the message that showed plan
    /// `shown`. The requester rejecting their own plan withdraws it.
    pub fn reject(
        &mut self,
        actor: &Actor<'_>,
        shown: &PlanHash,
        now: DateTime<Utc>,
    ) -> Result<(), ApprovalError> {
        self.require_pending(now)?;
        if *shown != self.plan {
            return Err(ApprovalError::PlanChanged);
        }
        if *actor.user == self.requester {
            return self.withdraw(actor.user, now);
        }
        if !actor.is_approver {
            return Err(ApprovalError::NotApprover {
                user: actor.user.clone(),
            });
        }
        self.state = ApprovalState::Rejected {
            by: actor.user.clone(),
            at: now,
        };
        Ok(())
    }

    /// The request is called off (the requester, or `abort`).
    pub fn withdraw(&mut self, by: &UserId, now: DateTime<Utc>) -> Result<(), ApprovalError> {
        match self.state {
            ApprovalState::Pending | ApprovalState::Approved { .. } => {
                self.state = ApprovalState::Withdrawn {
                    by: by.clone(),
                    at: now,
                };
                Ok(())
            }
            _ => Err(self.not_pending()),
        }
    }

    /// An approver takes their vote back before the step started: the plan
    /// awaits approval again (with the other votes still counted).
    pub fn unapprove(&mut self, user: &UserId) -> Result<(), ApprovalError> {
        let decided_by_them =
            matches!(&self.state, ApprovalState::Approved { by, .. } if by == user);
        let pending = self.state == ApprovalState::Pending;
        let voted = self.has_vote_of(user);
        if !(decided_by_them || (voted && (pending || self.is_approved()))) {
            return Err(self.not_pending());
        }
        self.votes.retain(|v| v.by != *user);
        self.state = ApprovalState::Pending;
        Ok(())
    }

    fn is_approved(&self) -> bool {
        matches!(self.state, ApprovalState::Approved { .. })
    }

    /// Moves a pending approval past its deadline to `Expired`; true if it did.
    pub fn expire_if_due(&mut self, now: DateTime<Utc>) -> bool {
        if self.is_due(now) {
            self.state = ApprovalState::Expired {
                at: self.expires_at,
            };
            true
        } else {
            false
        }
    }

    pub fn supersede(&mut self, now: DateTime<Utc>) {
        if !self.state.is_final() {
            self.state = ApprovalState::Superseded { at: now };
        }
    }

    fn require_pending(&mut self, now: DateTime<Utc>) -> Result<(), ApprovalError> {
        self.expire_if_due(now);
        match self.state {
            ApprovalState::Pending => Ok(()),
            _ => Err(self.not_pending()),
        }
    }

    fn not_pending(&self) -> ApprovalError {
        ApprovalError::NotPending {
            state: self.state.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn hash() -> PlanHash {
        serde_json::from_str("\"abc\"").unwrap()
    }

    fn pending() -> Approval {
        Approval::new(hash(), "alice".into(), t(15))
    }

    fn user(name: &str) -> UserId {
        name.into()
    }

    #[test]
    fn approver_approves() {
        let mut a = pending();
        let bob = user("bob");
        let bob = Actor {
            user: &bob,
            is_approver: true,
        };
        a.approve(&bob, &hash(), t(1)).unwrap();
        assert!(matches!(a.state, ApprovalState::Approved { ref by, .. } if by == "bob"));
    }

    #[test]
    fn requester_cannot_approve_even_as_approver() {
        let mut a = pending();
        let alice = Actor {
            user: &user("alice"),
            is_approver: true,
        };
        assert!(matches!(
            a.approve(&alice, &hash(), t(1)),
            Err(ApprovalError::SelfApproval { .. })
        ));
        assert_eq!(a.state, ApprovalState::Pending);
    }

    #[test]
    fn non_approver_refused() {
        let mut a = pending();
        let carol = Actor {
            user: &user("carol"),
            is_approver: false,
        };
        assert!(matches!(
            a.approve(&carol, &hash(), t(1)),
            Err(ApprovalError::NotApprover { .. })
        ));
    }

    fn bob_actor(bob: &UserId) -> Actor<'_> {
        Actor {
            user: bob,
            is_approver: true,
        }
    }

    #[test]
    fn expired_cannot_be_approved() {
        let bob = user("bob");
        let mut a = pending();
        assert!(matches!(
            a.approve(&bob_actor(&bob), &hash(), t(15)),
            Err(ApprovalError::NotPending {
                state: StateName::Expired
            })
        ));
    }

    #[test]
    fn other_plan_hash_refused() {
        let bob = user("bob");
        let mut a = pending();
        let other: PlanHash = serde_json::from_str("\"def\"").unwrap();
        assert!(matches!(
            a.approve(&bob_actor(&bob), &other, t(1)),
            Err(ApprovalError::PlanChanged)
        ));
    }

    #[test]
    fn two_approvals_need_two_distinct_approvers() {
        let (bob, dave) = (user("bob"), user("dave"));
        let mut a = pending().requiring(2);
        a.approve(&bob_actor(&bob), &hash(), t(1)).unwrap();
        assert_eq!(a.state, ApprovalState::Pending, "one of two");
        assert!(matches!(
            a.approve(&bob_actor(&bob), &hash(), t(2)),
            Err(ApprovalError::AlreadyApproved { .. })
        ));
        let alice = user("alice");
        assert!(matches!(
            a.approve(&bob_actor(&alice), &hash(), t(2)),
            Err(ApprovalError::SelfApproval { .. })
        ));
        // Bob takes his vote back before the plan is decided.
        a.unapprove(&bob).unwrap();
        assert!(a.votes.is_empty());
        a.approve(&bob_actor(&bob), &hash(), t(3)).unwrap();
        a.approve(&bob_actor(&dave), &hash(), t(4)).unwrap();
        assert!(matches!(a.state, ApprovalState::Approved { ref by, .. } if by == "dave"));
        // Dave takes his back before the step starts: Bob's still counts.
        a.unapprove(&dave).unwrap();
        assert_eq!(a.state, ApprovalState::Pending);
        assert_eq!(a.votes.len(), 1);
    }

    #[test]
    fn a_stale_plan_cannot_be_rejected() {
        let bob = user("bob");
        let mut a = pending();
        let other: PlanHash = serde_json::from_str("\"def\"").unwrap();
        assert_eq!(
            a.reject(&bob_actor(&bob), &other, t(1)),
            Err(ApprovalError::PlanChanged)
        );
        assert_eq!(a.state, ApprovalState::Pending);
    }

    #[test]
    fn plan_claims_round_trip_and_refuse_what_the_bot_did_not_write() {
        let claim = PlanClaim {
            op: 7,
            step: 2,
            plan: PlanHash::parse("0123456789ab").unwrap(),
        };
        assert_eq!(claim.to_value(), "7:2:0123456789ab");
        assert_eq!(PlanClaim::parse("7:2:0123456789ab"), Some(claim));
        for bad in [
            "",
            "7:2",
            "7:2:0123456789ab:x",
            "x:2:0123456789ab",
            "7:-1:0123456789ab",
            "7:2:XYZ",
            "7:2:0123456789abcd",
            "99999999999999999999999:1:0123456789ab",
        ] {
            assert_eq!(PlanClaim::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn reject_withdraw_unapprove() {
        let bob = user("bob");
        let mut a = pending();
        a.reject(&bob_actor(&bob), &hash(), t(1)).unwrap();
        assert!(matches!(a.state, ApprovalState::Rejected { .. }));

        let mut a = pending();
        let alice = Actor {
            user: &user("alice"),
            is_approver: false,
        };
        a.reject(&alice, &hash(), t(1)).unwrap();
        assert!(matches!(a.state, ApprovalState::Withdrawn { .. }));

        let mut a = pending();
        a.approve(&bob_actor(&bob), &hash(), t(1)).unwrap();
        assert!(a.unapprove(&user("carol")).is_err());
        a.unapprove(&bob).unwrap();
        assert_eq!(a.state, ApprovalState::Pending);
    }
}
