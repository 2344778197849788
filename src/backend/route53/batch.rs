//! Mode `route53`'s writes: a step's UPSERTs packed into as few
//! `ChangeResourceRecordSets` batches as Route53's limits allow, throttling
//! retried, then every change awaited to `INSYNC`.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecordSet};

use super::client::{api_error, is_throttling, jitter};
use super::records::{is_routed, normalise, valid_records, valid_weights, valid_zone};
use super::registry::{ForeignRecord, NameView, NotOwned, Owner, Registry};
use super::{Route53, Route53Error};
use crate::plan::Weights;

/// `ChangeResourceRecordSets` limits: changes per batch, `ResourceRecord`
/// elements per batch and characters of `Value`s per batch. For UPSERT, AWS
/// counts every `ResourceRecord` and every character **twice** (moto enforces
/// the element rule too), so a batch holds at most 500 single-value UPSERTs.
const MAX_CHANGES: usize = 1000;

const MAX_RR_ELEMENTS: usize = 1000;

const MAX_VALUE_CHARS: usize = 32_000;

/// Retries of a throttled batch on top of the SDK's own attempts.
const WRITE_RETRIES: u32 = 4;

/// What one [`Route53::write_weights`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteSummary {
    /// UPSERTs sent (weighted records and TXT twins).
    pub changes: usize,
    /// `ChangeResourceRecordSets` batches they went in.
    pub batches: usize,
    /// HTTP requests made during the call (reads, batches, `GetChange`s,
    /// retries), measured on this client's counter.
    pub api_calls: u64,
}

impl Route53 {
    /// [`Route53::write_weights_as`] for a site whose external-dns uses no
    /// TXT prefix or suffix, with the bot's default owner id.
    pub async fn write_weights(
        &self,
        zone_id: &str,
        records: &[String],
        expected: &Weights,
    ) -> Result<WriteSummary, Route53Error> {
        self.write_weights_as(&Registry::default(), zone_id, records, expected)
            .await
    }

    /// Mode `route53`: sets every expected cluster's weight on every record
    /// name — the weighted traffic record(s) and the bot's own registry
    /// records beside them — with UPSERTs that re-send each set as read,
    /// changing only its weight.
    ///
    /// Before any call: the input is valid and not all weights are zero.
    /// Before any write (after reading every name and its registry names):
    /// each expected cluster has a weighted record on every name, external-
    /// dns's registry gives each of them to `registry.owner_id`
    /// ([`Route53Error::NotOwned`] otherwise), and no name would end with a
    /// total weight of zero. Changes go in as few batches as the limits
    /// allow (a record name's changes stay in one batch when they fit, so a
    /// failed later batch never leaves a name half-written); throttling and
    /// `PriorRequestNotComplete` are retried with backoff and jitter
    /// (UPSERTs are idempotent); then every change is awaited to `INSYNC`.
    /// All of it is a step's work: its requests go before others waiting
    /// for the rate budget ([`super::budget`]).
    pub async fn write_weights_as(
        &self,
        registry: &Registry,
        zone_id: &str,
        records: &[String],
        expected: &Weights,
    ) -> Result<WriteSummary, Route53Error> {
        super::budget::as_step(self.write_step(registry, zone_id, records, expected)).await
    }

    async fn write_step(
        &self,
        registry: &Registry,
        zone_id: &str,
        records: &[String],
        expected: &Weights,
    ) -> Result<WriteSummary, Route53Error> {
        let zone = valid_zone(zone_id)?;
        valid_records(records)?;
        valid_weights(expected)?;
        let calls_before = self.api_calls();

        let mut step = Step::default();
        for name in unique_names(records) {
            let view = self.read_with_registry(&zone, &name, registry).await?;
            step.add_name(&view, registry, expected);
        }
        let groups = step.into_groups(&registry.owner_id)?;
        let (changes, batches) = self.submit_all(&zone, pack(groups)).await?;
        Ok(WriteSummary {
            changes,
            batches,
            api_calls: self.api_calls() - calls_before,
        })
    }

    /// Submits every batch in order and waits for all of them to be
    /// `INSYNC`. Returns the changes and batches sent. A failed batch stops
    /// the rest; the error says what earlier batches applied.
    pub(super) async fn submit_all(
        &self,
        zone: &str,
        batches: Vec<Vec<Pending>>,
    ) -> Result<(usize, usize), Route53Error> {
        let changes: usize = batches.iter().map(Vec::len).sum();
        let count = batches.len();
        let mut change_ids = Vec::with_capacity(count);
        let mut applied = 0usize;
        for (i, batch) in batches.into_iter().enumerate() {
            let size = batch.len();
            match self.submit(zone, batch, i + 1, count).await {
                Ok(id) => {
                    applied += size;
                    change_ids.push(id);
                }
                Err(e) => return Err(batch_failed(e, i, count, size, applied)),
            }
        }
        self.wait_insync(&change_ids).await?;
        Ok((changes, count))
    }

    /// Sends one batch, retrying throttling within a bound. Returns the
    /// change id.
    async fn submit(
        &self,
        zone: &str,
        batch: Vec<Pending>,
        number: usize,
        of: usize,
    ) -> Result<String, Route53Error> {
        let changes = batch
            .into_iter()
            .map(|p| {
                Change::builder()
                    .action(ChangeAction::Upsert)
                    .resource_record_set(p.set)
                    .build()
                    .map_err(|e| Route53Error::Invalid(format!("cannot build a change: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = ChangeBatch::builder()
            .comment(format!("failover-bot: weights, batch {number} of {of}"))
            .set_changes(Some(changes))
            .build()
            .map_err(|e| Route53Error::Invalid(format!("cannot build a change batch: {e}")))?;
        let mut attempt = 0u32;
        loop {
            let result = self
                .client
                .change_resource_record_sets()
                .hosted_zone_id(zone)
                .change_batch(batch.clone())
                .send()
                .await;
            match result {
                Ok(out) => {
                    return Ok(out
                        .change_info()
                        .map(|c| c.id().to_owned())
                        .unwrap_or_default())
                }
                Err(e) if attempt < WRITE_RETRIES && is_throttling(&e) => {
                    attempt += 1;
                    let base = Duration::from_millis(500) * 2u32.pow(attempt - 1);
                    let delay = base.min(Duration::from_secs(4)) + jitter(attempt, base / 2);
                    tracing::info!(
                        batch = number,
                        attempt,
                        ?delay,
                        "Route53 throttled the change batch; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(api_error("ChangeResourceRecordSets", e)),
            }
        }
    }

    /// Polls `GetChange` for every change id until all are `INSYNC`. Every
    /// batch was accepted by then, so a failed `GetChange` or the deadline
    /// is [`Route53Error::Pending`]: the changes landed and will propagate;
    /// writing the records back over them would undo a step that happened.
    async fn wait_insync(&self, change_ids: &[String]) -> Result<(), Route53Error> {
        let deadline = Instant::now() + self.insync_timeout;
        let mut pending: Vec<&String> = change_ids.iter().filter(|id| !id.is_empty()).collect();
        let mut delay = Duration::from_millis(500);
        let mut round = 0u32;
        while !pending.is_empty() {
            let mut still = Vec::new();
            for id in pending {
                if !self.is_insync(id).await? {
                    still.push(id);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Route53Error::Pending(format!(
                    "{} change(s) not INSYNC after {:?}",
                    pending.len(),
                    self.insync_timeout
                )));
            }
            round += 1;
            tokio::time::sleep((delay + jitter(round, delay / 4)).min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        Ok(())
    }

    /// One `GetChange`; its failure is [`Route53Error::Pending`] (the
    /// change it asks about was accepted).
    async fn is_insync(&self, change_id: &str) -> Result<bool, Route53Error> {
        let out = self
            .client
            .get_change()
            .id(change_id)
            .send()
            .await
            .map_err(|e| Route53Error::Pending(api_error("GetChange", e).to_string()))?;
        Ok(out
            .change_info()
            .is_some_and(|c| *c.status() == ChangeStatus::Insync))
    }
}

/// Batch `i` (0-based) of `count` failed: what it and the earlier ones did.
fn batch_failed(
    e: Route53Error,
    i: usize,
    count: usize,
    size: usize,
    applied: usize,
) -> Route53Error {
    let earlier = if i == 0 {
        "no earlier batch".to_owned()
    } else {
        format!("the {i} earlier batch(es) ({applied} changes) were applied")
    };
    match e {
        Route53Error::Timeout(m) => Route53Error::Timeout(format!(
            "batch {} of {count} ({size} changes): {m}; its outcome is unknown \
             (batches are atomic: all or nothing); {earlier}",
            i + 1
        )),
        other => Route53Error::Api(format!(
            "batch {} of {count} ({size} changes) failed and changed nothing: {}; {earlier}",
            i + 1,
            inner_message(&other)
        )),
    }
}

/// Each record name once, in the order given, even if configured twice.
pub(super) fn unique_names(records: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for record in records {
        let n = normalise(record);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// A step's changes, gathered name by name, and what stands in its way.
#[derive(Default)]
struct Step {
    groups: Vec<Vec<Pending>>,
    problems: Vec<String>,
    foreign: Vec<ForeignRecord>,
}

impl Step {
    /// The UPSERTs of one record name: every expected cluster's traffic
    /// records and the registry records the bot owns beside them.
    fn add_name(&mut self, view: &NameView, registry: &Registry, expected: &Weights) {
        let name = &view.name;
        let mut group = Vec::new();
        let mut queued: HashSet<(String, String, String)> = HashSet::new();
        for cluster in expected.clusters() {
            let weight = expected.get(cluster).unwrap_or_default();
            let traffic = view.traffic(cluster);
            if traffic.is_empty() {
                self.problems.push(format!(
                    "{name} has no weighted A/AAAA/CNAME record with set identifier {cluster}"
                ));
            }
            for set in traffic {
                match view.owner(set, registry) {
                    Owner::Named(owner) if owner == registry.owner_id => {}
                    other => {
                        self.foreign.push(view.foreign(set, other));
                        continue;
                    }
                }
                let mine = view
                    .registry_of(set, registry)
                    .into_iter()
                    .filter(|r| {
                        r.owner.as_ref().and_then(Option::as_deref)
                            == Some(registry.owner_id.as_str())
                    })
                    .map(|r| r.set);
                for owned in std::iter::once(set).chain(mine) {
                    if queued.insert(key(owned)) {
                        group.push(Pending::upsert(owned, weight));
                    }
                }
            }
        }
        self.problems
            .extend(zero_totals(name, &view.sets, expected));
        self.groups.push(group);
    }

    /// The groups to pack, or why the step is refused (before any write).
    fn into_groups(self, owner_id: &str) -> Result<Vec<Vec<Pending>>, Route53Error> {
        if !self.problems.is_empty() {
            return Err(Route53Error::Invalid(summarise(&self.problems)));
        }
        if !self.foreign.is_empty() {
            return Err(Route53Error::NotOwned(NotOwned {
                owner_id: owner_id.to_owned(),
                records: self.foreign,
            }));
        }
        Ok(self.groups)
    }
}

fn key(set: &ResourceRecordSet) -> (String, String, String) {
    (
        normalise(&set.name),
        set.r#type.as_str().to_owned(),
        set.set_identifier.clone().unwrap_or_default(),
    )
}

/// Record types at `name` that would end with every weight at 0.
fn zero_totals(name: &str, sets: &[ResourceRecordSet], expected: &Weights) -> Vec<String> {
    let types: BTreeSet<&str> = sets
        .iter()
        .filter(|s| is_routed(&s.r#type) && s.weight.is_some())
        .map(|s| s.r#type.as_str())
        .collect();
    types
        .into_iter()
        .filter(|ty| {
            let total: i64 = sets
                .iter()
                .filter(|s| s.r#type.as_str() == *ty)
                .filter_map(|s| {
                    let id = s.set_identifier.as_deref()?;
                    Some(match expected.get(id) {
                        Some(w) => i64::from(w),
                        None => s.weight?,
                    })
                })
                .sum();
            total == 0
        })
        .map(|ty| {
            format!(
                "{name} ({ty}) would have all weights at 0, which Route53 serves as an even split"
            )
        })
        .collect()
}

/// One UPSERT and what it costs against the batch limits.
pub(super) struct Pending {
    set: ResourceRecordSet,
    rr_elements: usize,
    chars: usize,
}

impl Pending {
    fn upsert(set: &ResourceRecordSet, weight: u8) -> Pending {
        let mut set = set.clone();
        set.weight = Some(i64::from(weight));
        Pending::put(set)
    }

    /// An UPSERT of `set` as given.
    pub(super) fn put(set: ResourceRecordSet) -> Pending {
        let values = set.resource_records.as_deref().unwrap_or_default();
        // UPSERT: every element and character counts twice.
        Pending {
            rr_elements: 2 * values.len(),
            chars: 2 * values
                .iter()
                .map(|r| r.value.chars().count())
                .sum::<usize>(),
            set,
        }
    }
}

#[derive(Default)]
struct Load {
    changes: usize,
    rr_elements: usize,
    chars: usize,
}

impl Load {
    fn of(items: &[Pending]) -> Load {
        let mut load = Load::default();
        for p in items {
            load.add(p);
        }
        load
    }
    fn add(&mut self, p: &Pending) {
        self.changes += 1;
        self.rr_elements += p.rr_elements;
        self.chars += p.chars;
    }
    fn fits_with(&self, other: &Load) -> bool {
        self.changes + other.changes <= MAX_CHANGES
            && self.rr_elements + other.rr_elements <= MAX_RR_ELEMENTS
            && self.chars + other.chars <= MAX_VALUE_CHARS
    }
}

/// Packs per-record-name groups into batches, first fit in order; a group
/// too large for one batch is split change by change.
pub(super) fn pack(groups: Vec<Vec<Pending>>) -> Vec<Vec<Pending>> {
    let mut batches: Vec<Vec<Pending>> = Vec::new();
    let mut current: Vec<Pending> = Vec::new();
    let mut load = Load::default();
    for group in groups {
        let group_load = Load::of(&group);
        if load.fits_with(&group_load) {
            for p in group {
                load.add(&p);
                current.push(p);
            }
            continue;
        }
        if !current.is_empty() && Load::default().fits_with(&group_load) {
            batches.push(std::mem::take(&mut current));
            load = Load::default();
            for p in group {
                load.add(&p);
                current.push(p);
            }
            continue;
        }
        for p in group {
            let one = Load::of(std::slice::from_ref(&p));
            if !load.fits_with(&one) && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
                load = Load::default();
            }
            load.add(&p);
            current.push(p);
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

fn summarise(problems: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    text
}

fn inner_message(e: &Route53Error) -> String {
    match e {
        Route53Error::Invalid(m)
        | Route53Error::Api(m)
        | Route53Error::Timeout(m)
        | Route53Error::Pending(m) => m.clone(),
        Route53Error::NotOwned(not_owned) => not_owned.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_route53::types::{ResourceRecord, RrType};

    fn set(name: &str, ty: &str, id: &str, values: &[&str]) -> ResourceRecordSet {
        ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::from(ty))
            .set_identifier(id)
            .weight(1)
            .ttl(60)
            .set_resource_records(Some(
                values
                    .iter()
                    .map(|v| ResourceRecord::builder().value(*v).build().unwrap())
                    .collect(),
            ))
            .build()
            .unwrap()
    }

    #[test]
    fn packing_counts_upserts_twice_and_keeps_names_together() {
        // 300 names × 2 clusters × (A + TXT) = 1,200 single-value UPSERTs:
        // 2 ResourceRecord elements each → at most 500 per batch.
        let groups: Vec<Vec<Pending>> = (0..300)
            .map(|i| {
                let name = format!("r{i}.example.com.");
                ["a", "b"]
                    .iter()
                    .flat_map(|c| {
                        [
                            Pending::upsert(&set(&name, "A", c, &["10.0.0.1"]), 1),
                            Pending::upsert(&set(&name, "TXT", c, &["\"x\""]), 1),
                        ]
                    })
                    .collect()
            })
            .collect();
        let batches = pack(groups);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![500, 500, 200]);
        for b in &batches {
            assert!(b.len() % 4 == 0, "a record name was split across batches");
        }
    }

    #[test]
    fn packing_respects_the_character_limit() {
        let long = format!("\"{}\"", "x".repeat(250));
        let groups: Vec<Vec<Pending>> = (0..100)
            .map(|i| {
                vec![Pending::upsert(
                    &set(&format!("r{i}.e.com."), "TXT", "a", &[&long]),
                    1,
                )]
            })
            .collect();
        // 252 chars × 2 = 504 per change → 63 per batch.
        let sizes: Vec<usize> = pack(groups).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![63, 37]);
    }
}
