//! Weights, the shift arithmetic, and [`Plan`]: the one place where the weight
//! invariants from `design.md` are enforced.
//!
//! A [`Plan`] can only be built through [`Plan::new`], which refuses any target
//! that breaks an invariant. Everything that changes weights — the engine, the
//! recovery path, rollback — goes through a `Plan`, so no code path can write
//! weights that were not checked here. Gates that need I/O (cluster identity,
//! health) are checked by the engine right before it applies a plan.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{ClusterId, EnvId, OpId};

/// Why a weight change cannot be made. Each says what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "plan", rename_all = "snake_case")]
pub enum PlanError {
    #[error("no cluster in this environment has a routing weight yet.")]
    NoRoutedClusters,
    #[error("{} have the same share, so which one gets the traffic? Say `to {}`.", .tied.iter().map(ClusterId::as_str).collect::<Vec<_>>().join(" and "), .tied.first().map_or("CLUSTER", ClusterId::as_str))]
    AmbiguousShiftTarget { tied: Vec<ClusterId> },
    #[error("{cluster} has no routing weight yet; `/failover add {cluster}` first.")]
    ClusterNotRouted { cluster: ClusterId },
    #[error(
        "{cluster} is the only routed cluster, so it always gets all traffic; add another first."
    )]
    SingleCluster { cluster: ClusterId },
    #[error("that would leave every weight in {env} at 0, which Route53 treats as an even split. Refused.")]
    AllZero { env: EnvId },
    #[error("{cluster} already has a routing weight.")]
    AlreadyRouted { cluster: ClusterId },
    #[error("{cluster} still has weight {weight}; shift its traffic away first (only weight 0 can be removed).")]
    RemoveNonZero { cluster: ClusterId, weight: u8 },
    #[error("a weight change may not add or remove clusters.")]
    ChangesClusterSet,
    #[error("adding a cluster must give it a weight.")]
    NewClusterWithoutWeight,
}

/// Traffic weights of the clusters that currently have a routing object
/// (`RoutingWeight`, record set, …) in one environment, by cluster name.
///
/// Route53 weights are `0..=255`; `u8` makes anything else unrepresentable.
/// A cluster that is configured but has no routing object is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Weights(BTreeMap<ClusterId, u8>);

impl Weights {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, cluster: &str) -> Option<u8> {
        self.0.get(cluster).copied()
    }

    pub fn set(&mut self, cluster: impl Into<ClusterId>, weight: u8) {
        self.0.insert(cluster.into(), weight);
    }

    pub fn remove(&mut self, cluster: &str) -> Option<u8> {
        self.0.remove(cluster)
    }

    pub fn contains(&self, cluster: &str) -> bool {
        self.0.contains_key(cluster)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ClusterId, u8)> {
        self.0.iter().map(|(name, weight)| (name, *weight))
    }

    pub fn clusters(&self) -> impl Iterator<Item = &ClusterId> {
        self.0.keys()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn total(&self) -> u32 {
        self.0.values().map(|w| u32::from(*w)).sum()
    }

    /// True when clusters exist and every one of them is at 0 — the state in
    /// which Route53 silently splits traffic evenly.
    pub fn all_zero(&self) -> bool {
        !self.0.is_empty() && self.total() == 0
    }

    /// The share of traffic `cluster` gets, in percent (0 when absent).
    pub fn share_percent(&self, cluster: &str) -> f64 {
        match (self.get(cluster), self.total()) {
            (Some(w), total) if total > 0 => f64::from(w) * 100.0 / f64::from(total),
            _ => 0.0,
        }
    }
}

impl FromIterator<(ClusterId, u8)> for Weights {
    fn from_iter<I: IntoIterator<Item = (ClusterId, u8)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<'a> FromIterator<(&'a ClusterId, u8)> for Weights {
    fn from_iter<I: IntoIterator<Item = (&'a ClusterId, u8)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(n, w)| (n.clone(), w)).collect())
    }
}

impl<'a> FromIterator<(&'a str, u8)> for Weights {
    fn from_iter<I: IntoIterator<Item = (&'a str, u8)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(n, w)| (ClusterId::from(n), w))
                .collect(),
        )
    }
}

/// A share of traffic in percent, `0..=100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Percent(u8);

impl Percent {
    pub const MAX: Percent = Percent(100);

    pub fn new(value: u32) -> Option<Percent> {
        u8::try_from(value).ok().filter(|v| *v <= 100).map(Percent)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// Weights sum to this after a shift, so a weight reads as a percentage
/// (Lunar's clusters run at 100/0 and 50/50).
pub const SHIFT_TOTAL: u32 = 100;

/// The cluster a `shift` without `to` moves traffic to: the one with the
/// smallest weight. A tie has no obvious answer, so it is the user's call.
pub fn default_shift_target(current: &Weights) -> Result<ClusterId, PlanError> {
    let smallest = current.iter().map(|(_, w)| w).min();
    let candidates: Vec<&ClusterId> = current
        .iter()
        .filter(|(_, w)| Some(*w) == smallest)
        .map(|(name, _)| name)
        .collect();
    match candidates.as_slice() {
        [] => Err(PlanError::NoRoutedClusters),
        [only] => Ok((*only).clone()),
        tied => Err(PlanError::AmbiguousShiftTarget {
            tied: tied.iter().map(|s| (*s).clone()).collect(),
        }),
    }
}

/// Why a step list for `/failover to` is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "steps", rename_all = "snake_case")]
pub enum StepsError {
    #[error("no steps: give at least one, e.g. 10,50,100")]
    Empty,
    #[error("`{item}` is not a percentage")]
    NotAPercentage { item: String },
    #[error("step {step} is out of range: steps are 1–100")]
    OutOfRange { step: u32 },
    #[error("steps must rise, e.g. 10,50,100")]
    NotRising,
    #[error("the last step must be 100 so the failover completes, e.g. 10,50,100")]
    NotEndingAt100,
}

/// Checks a step list for `/failover to`: percentages, rising, ending at 100
/// so that a failover ends with all traffic on the target.
pub fn validate_steps(steps: &[u32]) -> Result<Vec<Percent>, StepsError> {
    if steps.is_empty() {
        return Err(StepsError::Empty);
    }
    let mut percents = Vec::with_capacity(steps.len());
    for step in steps {
        match Percent::new(*step).filter(|p| p.get() > 0) {
            Some(p) => percents.push(p),
            None => return Err(StepsError::OutOfRange { step: *step }),
        }
    }
    if percents.windows(2).any(|w| w[0] >= w[1]) {
        return Err(StepsError::NotRising);
    }
    if percents.last() != Some(&Percent::MAX) {
        return Err(StepsError::NotEndingAt100);
    }
    Ok(percents)
}

/// `shift N to TARGET`: TARGET gets N% of the traffic and the other clusters
/// share the rest in proportion to their current weights (equally when they
/// are all 0). The result sums to [`SHIFT_TOTAL`]; rounding uses the largest
/// remainder method so no cluster is more than one point off its exact share.
pub fn shift(
    current: &Weights,
    target: &ClusterId,
    percent: Percent,
) -> Result<Weights, PlanError> {
    if !current.contains(target) {
        return Err(PlanError::ClusterNotRouted {
            cluster: target.clone(),
        });
    }
    let others: Vec<(&ClusterId, u32)> = current
        .iter()
        .filter(|(name, _)| *name != target)
        .map(|(name, w)| (name, u32::from(w)))
        .collect();
    if others.is_empty() {
        return Err(PlanError::SingleCluster {
            cluster: target.clone(),
        });
    }
    let rest = SHIFT_TOTAL - u32::from(percent.get());
    let mut after: Weights = split_proportionally(rest, &others).collect();
    after.set(target.clone(), percent.get());
    Ok(after)
}

/// Splits `amount` over `parts` in proportion to their weights (equally when
/// all are 0) using largest remainders; ties go to the earlier part.
fn split_proportionally<'a>(
    amount: u32,
    parts: &[(&'a ClusterId, u32)],
) -> impl Iterator<Item = (&'a ClusterId, u8)> {
    let basis: Vec<u32> = if parts.iter().all(|(_, w)| *w == 0) {
        vec![1; parts.len()]
    } else {
        parts.iter().map(|(_, w)| *w).collect()
    };
    let sum: u32 = basis.iter().sum();
    let mut shares: Vec<(usize, u32, u32)> = basis
        .iter()
        .enumerate()
        .map(|(i, b)| (i, amount * b / sum, amount * b % sum))
        .collect();
    let mut left = amount - shares.iter().map(|(_, floor, _)| floor).sum::<u32>();
    let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
    by_remainder.sort_by(|a, b| shares[*b].2.cmp(&shares[*a].2).then(a.cmp(b)));
    for i in by_remainder {
        if left == 0 {
            break;
        }
        shares[i].1 += 1;
        left -= 1;
    }
    let names: Vec<&'a ClusterId> = parts.iter().map(|(name, _)| *name).collect();
    // Every share is at most `amount` <= 100, so the conversion cannot fail.
    shares
        .into_iter()
        .map(move |(i, share, _)| (names[i], u8::try_from(share).unwrap_or(u8::MAX)))
}

/// Where one step takes an environment: the change and the weights after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub change: Change,
    pub after: Weights,
}

impl Target {
    /// New weights for the routing objects that exist.
    pub fn weights(after: Weights) -> Target {
        Target {
            change: Change::SetWeights,
            after,
        }
    }
}

/// What a plan does besides setting weights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Set the weights of existing routing objects.
    SetWeights,
    /// Create a cluster's routing object at weight 0.
    Create { cluster: ClusterId },
    /// Delete a cluster's routing object; only allowed at weight 0.
    Delete { cluster: ClusterId },
}

/// A short, stable fingerprint of a plan. An approval is bound to it: approving
/// one hash never applies a plan with another.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanHash(String);

impl PlanHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A hash as the bot writes it (12 lowercase hex digits), read back
    /// from a button's value; `None` for anything else.
    pub fn parse(text: &str) -> Option<PlanHash> {
        let well_formed = text.len() == 12
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| PlanHash(text.to_owned()))
    }
}

impl fmt::Display for PlanHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies the step a plan belongs to; part of the hash so two identical
/// weight changes in different operations never share an approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanScope {
    pub env: EnvId,
    pub operation: OpId,
    /// 1-based step number within the operation.
    pub step: usize,
}

/// A checked weight change for one environment: every cluster's weight
/// before and after. Build it with [`Plan::new`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub scope: PlanScope,
    pub change: Change,
    pub before: Weights,
    pub after: Weights,
    pub hash: PlanHash,
}

impl Plan {
    /// Checks every weight invariant and computes the hash. This is the only
    /// way to obtain a `Plan`.
    pub fn new(
        scope: PlanScope,
        change: Change,
        before: Weights,
        after: Weights,
    ) -> Result<Plan, PlanError> {
        check_invariants(&scope.env, &change, &before, &after)?;
        let hash = hash_of(&scope, &change, &before, &after);
        Ok(Plan {
            scope,
            change,
            before,
            after,
            hash,
        })
    }

    /// Clusters whose weight (or existence) this plan changes.
    pub fn changed_clusters(&self) -> impl Iterator<Item = &ClusterId> {
        let all: std::collections::BTreeSet<&ClusterId> = self
            .before
            .clusters()
            .chain(self.after.clusters())
            .collect();
        all.into_iter()
            .filter(|c| self.before.get(c) != self.after.get(c))
    }

    /// Clusters whose share of the traffic this plan raises: these must pass
    /// the health gates before the plan is applied. A share can rise with
    /// no change to the cluster's own weight (`set blue=100` from blue 255,
    /// green 100 takes green from 28% to 50%), so shares are compared, not
    /// weights: exactly, as `a/A > b/B` ⇔ `a·B > b·A`.
    pub fn raised_clusters(&self) -> impl Iterator<Item = &ClusterId> {
        let (before_total, after_total) = (self.before.total(), self.after.total());
        self.after.iter().filter_map(move |(name, after)| {
            let before = u32::from(self.before.get(name).unwrap_or(0));
            let rises = match before_total {
                0 => after > 0,
                _ => {
                    u64::from(after) * u64::from(before_total)
                        > u64::from(before) * u64::from(after_total)
                }
            };
            rises.then_some(name)
        })
    }

    /// True when applying the plan would change nothing.
    pub fn is_noop(&self) -> bool {
        self.changed_clusters().next().is_none()
    }
}

/// The invariants of `design.md` that need no I/O. Identity and health gates
/// are checked by the engine before applying (they need the clusters).
fn check_invariants(
    env: &EnvId,
    change: &Change,
    before: &Weights,
    after: &Weights,
) -> Result<(), PlanError> {
    // The change-specific checks come first: they say more precisely what
    // is wrong (e.g. "still has weight 100" rather than "all zero").
    match change {
        Change::SetWeights => {
            if before.clusters().ne(after.clusters()) {
                return Err(PlanError::ChangesClusterSet);
            }
        }
        Change::Create { cluster } => {
            if before.contains(cluster) {
                return Err(PlanError::AlreadyRouted {
                    cluster: cluster.clone(),
                });
            }
            if after.get(cluster).is_none() {
                return Err(PlanError::NewClusterWithoutWeight);
            }
        }
        Change::Delete { cluster } => match before.get(cluster) {
            None => {
                return Err(PlanError::ClusterNotRouted {
                    cluster: cluster.clone(),
                })
            }
            Some(0) => {}
            Some(weight) => {
                return Err(PlanError::RemoveNonZero {
                    cluster: cluster.clone(),
                    weight,
                })
            }
        },
    }
    if after.all_zero() || (after.is_empty() && !before.is_empty()) {
        return Err(PlanError::AllZero { env: env.clone() });
    }
    Ok(())
}

fn hash_of(scope: &PlanScope, change: &Change, before: &Weights, after: &Weights) -> PlanHash {
    // serde_json of BTreeMaps is deterministic, so the hash is stable across
    // runs and restarts; it only needs to tell plans apart, so 12 hex digits
    // are plenty and fit in a chat message.
    let canonical = serde_json::json!({
        "scope": scope,
        "change": change,
        "before": before,
        "after": after,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    PlanHash(hex::encode(&digest[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, u8)]) -> Weights {
        pairs.iter().copied().collect()
    }

    #[test]
    fn shift_half_from_blue_green() {
        let now = weights(&[("blue", 100), ("green", 0)]);
        let after = shift(&now, &"green".into(), Percent::new(50).unwrap()).unwrap();
        assert_eq!(after, weights(&[("blue", 50), ("green", 50)]));
    }

    #[test]
    fn shift_spreads_rest_in_proportion() {
        let now = weights(&[("a", 60), ("b", 30), ("c", 10)]);
        let after = shift(&now, &"c".into(), Percent::new(70).unwrap()).unwrap();
        // a:b keep 2:1 of the remaining 30.
        assert_eq!(after, weights(&[("a", 20), ("b", 10), ("c", 70)]));
    }

    #[test]
    fn shift_spreads_rest_equally_when_others_are_zero() {
        let now = weights(&[("a", 0), ("b", 0), ("c", 100)]);
        let after = shift(&now, &"c".into(), Percent::new(0).unwrap()).unwrap();
        assert_eq!(after, weights(&[("a", 50), ("b", 50), ("c", 0)]));
    }

    #[test]
    fn shift_rounds_with_largest_remainder() {
        let now = weights(&[("a", 1), ("b", 1), ("c", 1), ("d", 0)]);
        let after = shift(&now, &"d".into(), Percent::new(0).unwrap()).unwrap();
        assert_eq!(after.total(), 100);
        assert_eq!(after, weights(&[("a", 34), ("b", 33), ("c", 33), ("d", 0)]));
    }

    #[test]
    fn default_target_is_smallest_and_tie_is_an_error() {
        let now = weights(&[("blue", 100), ("green", 0)]);
        assert_eq!(default_shift_target(&now).unwrap(), "green");
        let tie = weights(&[("blue", 50), ("green", 50)]);
        assert!(matches!(
            default_shift_target(&tie),
            Err(PlanError::AmbiguousShiftTarget { .. })
        ));
    }

    #[test]
    fn all_zero_plan_is_refused() {
        let scope = PlanScope {
            env: "dev".into(),
            operation: 1,
            step: 1,
        };
        let before = weights(&[("blue", 100), ("green", 0)]);
        let after = weights(&[("blue", 0), ("green", 0)]);
        assert!(matches!(
            Plan::new(scope, Change::SetWeights, before, after),
            Err(PlanError::AllZero { .. })
        ));
    }

    #[test]
    fn remove_only_at_zero() {
        let scope = PlanScope {
            env: "dev".into(),
            operation: 1,
            step: 1,
        };
        let before = weights(&[("blue", 100), ("green", 10)]);
        let after = weights(&[("blue", 100)]);
        let err = Plan::new(
            scope,
            Change::Delete {
                cluster: "green".into(),
            },
            before,
            after,
        )
        .unwrap_err();
        assert!(matches!(err, PlanError::RemoveNonZero { weight: 10, .. }));
    }

    #[test]
    fn a_share_can_rise_without_the_weight_rising() {
        let scope = PlanScope {
            env: "dev".into(),
            operation: 1,
            step: 1,
        };
        // blue 255 / green 100 → blue 100 / green 100: green 28% → 50%.
        let plan = Plan::new(
            scope,
            Change::SetWeights,
            weights(&[("blue", 255), ("green", 100)]),
            weights(&[("blue", 100), ("green", 100)]),
        )
        .unwrap();
        let raised: Vec<&str> = plan.raised_clusters().map(ClusterId::as_str).collect();
        assert_eq!(raised, ["green"]);
    }

    #[test]
    fn hash_is_stable_and_distinguishes_plans() {
        let scope = PlanScope {
            env: "dev".into(),
            operation: 1,
            step: 1,
        };
        let before = weights(&[("blue", 100), ("green", 0)]);
        let a = Plan::new(
            scope.clone(),
            Change::SetWeights,
            before.clone(),
            weights(&[("blue", 50), ("green", 50)]),
        )
        .unwrap();
        let b = Plan::new(
            scope.clone(),
            Change::SetWeights,
            before.clone(),
            weights(&[("blue", 50), ("green", 50)]),
        )
        .unwrap();
        let c = Plan::new(
            scope,
            Change::SetWeights,
            before,
            weights(&[("blue", 10), ("green", 90)]),
        )
        .unwrap();
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert_eq!(a.hash.as_str().len(), 12);
    }
}
