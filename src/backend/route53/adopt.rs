//! Handing records over to the bot's owner id: the explicit, confirmed step
//! (`failover-bot route53 adopt`) after an engineer has taken the names out
//! of another external-dns. Only registry TXT records are written; traffic
//! records are never touched here.
//!
//! For each weighted traffic record of a configured cluster on the
//! configured names:
//! - registry records naming `from_owner` are rewritten to the bot's owner
//!   id, every other label kept (`resource`, …);
//! - a record with no registry record at all gets one, in the form
//!   external-dns v0.18+ writes (typed name, [`Registry::current_name`]);
//! - a record another owner holds (neither `from_owner` nor the bot), or
//!   whose registry record cannot be read, is left alone and listed: the
//!   handover is then refused as a whole.

use std::collections::HashSet;

use aws_sdk_route53::types::{ResourceRecord, ResourceRecordSet, RrType};

use super::batch::{pack, unique_names, Pending};
use super::records::{valid_records, valid_zone};
use super::registry::{
    owner_of_value, value_for, with_owner, ForeignRecord, NameView, Owner, Registry,
};
use super::{Route53, Route53Error, WriteSummary};

/// TTL of a created registry record whose traffic record has none (alias).
const DEFAULT_TXT_TTL: i64 = 300;

/// What one registry record write does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandoverAction {
    /// It named `from`; it will name the bot's owner id.
    Rewrite { from: String },
    /// The traffic record had no registry record; this one is created.
    Create,
}

/// One registry record to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Handover {
    /// The registry record's name.
    pub name: String,
    pub set_identifier: String,
    /// The traffic record it belongs to: `"api.dev.example.com. A"`.
    pub record: String,
    pub action: HandoverAction,
    set: ResourceRecordSet,
}

/// What a handover would write, and what it cannot take.
#[derive(Clone, Debug, PartialEq)]
pub struct Adoption {
    pub zone_id: String,
    pub owner_id: String,
    pub from_owner: String,
    pub handovers: Vec<Handover>,
    /// Records neither `from_owner`'s nor the bot's: left alone.
    pub left: Vec<ForeignRecord>,
    /// Traffic records whose registry already names the bot.
    pub already_owned: usize,
}

impl Adoption {
    pub fn rewrites(&self) -> usize {
        self.count(|a| matches!(a, HandoverAction::Rewrite { .. }))
    }

    pub fn creations(&self) -> usize {
        self.count(|a| *a == HandoverAction::Create)
    }

    fn count(&self, which: impl Fn(&HandoverAction) -> bool) -> usize {
        self.handovers.iter().filter(|h| which(&h.action)).count()
    }

    /// The handover writes only when every record can be the bot's.
    pub fn is_complete(&self) -> bool {
        self.left.is_empty()
    }
}

impl Route53 {
    /// Reads the configured names and says what handing them from
    /// `from_owner` to `registry.owner_id` would write. Writes nothing.
    pub async fn plan_handover(
        &self,
        registry: &Registry,
        zone_id: &str,
        records: &[String],
        clusters: &[String],
        from_owner: &str,
    ) -> Result<Adoption, Route53Error> {
        let zone = valid_zone(zone_id)?;
        valid_records(records)?;
        if from_owner.is_empty() || from_owner == registry.owner_id {
            return Err(Route53Error::Invalid(format!(
                "hand over from another owner id than the bot's own ({})",
                registry.owner_id
            )));
        }
        let mut adoption = Adoption {
            zone_id: zone.clone(),
            owner_id: registry.owner_id.clone(),
            from_owner: from_owner.to_owned(),
            handovers: Vec::new(),
            left: Vec::new(),
            already_owned: 0,
        };
        let mut queued = HashSet::new();
        for name in unique_names(records) {
            let view = self.read_with_registry(&zone, &name, registry).await?;
            for cluster in clusters {
                for set in view.traffic(cluster) {
                    plan_one(&view, set, registry, &mut adoption, &mut queued)?;
                }
            }
        }
        Ok(adoption)
    }

    /// Writes a complete [`Adoption`] (UPSERTs of registry TXT records, in
    /// as few batches as the limits allow, awaited to `INSYNC`).
    pub async fn hand_over(&self, adoption: &Adoption) -> Result<WriteSummary, Route53Error> {
        if !adoption.is_complete() {
            return Err(Route53Error::Invalid(format!(
                "{} record(s) belong to neither {} nor {}: nothing handed over",
                adoption.left.len(),
                adoption.from_owner,
                adoption.owner_id
            )));
        }
        let calls_before = self.api_calls();
        let groups = vec![adoption
            .handovers
            .iter()
            .map(|h| Pending::put(h.set.clone()))
            .collect()];
        let (changes, batches) = self.submit_all(&adoption.zone_id, pack(groups)).await?;
        Ok(WriteSummary {
            changes,
            batches,
            api_calls: self.api_calls() - calls_before,
        })
    }
}

/// Adds what handing over one traffic record takes.
fn plan_one(
    view: &NameView,
    set: &ResourceRecordSet,
    registry: &Registry,
    adoption: &mut Adoption,
    queued: &mut HashSet<(String, String)>,
) -> Result<(), Route53Error> {
    let record = format!("{} {}", view.name, set.r#type.as_str());
    let from = adoption.from_owner.clone();
    match view.owner(set, registry) {
        Owner::Named(owner) if owner == registry.owner_id || owner == from => {
            if owner == registry.owner_id {
                adoption.already_owned += 1;
            }
            // Every registry record of `from`, stale ones included.
            for found in view.registry_of(set, registry) {
                if found.owner.as_ref().and_then(Option::as_deref) != Some(from.as_str()) {
                    continue;
                }
                let handover = Handover {
                    name: found.set.name.clone(),
                    set_identifier: set.set_identifier.clone().unwrap_or_default(),
                    record: record.clone(),
                    action: HandoverAction::Rewrite { from: from.clone() },
                    set: rewritten(found.set, &registry.owner_id),
                };
                push(adoption, queued, handover);
            }
        }
        Owner::Unowned => {
            let handover = Handover {
                name: registry.current_name(&view.name, set.r#type.as_str()),
                set_identifier: set.set_identifier.clone().unwrap_or_default(),
                record,
                action: HandoverAction::Create,
                set: created(view, set, registry)?,
            };
            push(adoption, queued, handover);
        }
        other => adoption.left.push(view.foreign(set, other)),
    }
    Ok(())
}

fn push(adoption: &mut Adoption, queued: &mut HashSet<(String, String)>, handover: Handover) {
    if queued.insert((handover.name.clone(), handover.set_identifier.clone())) {
        adoption.handovers.push(handover);
    }
}

/// The registry record with every external-dns value naming `owner`.
fn rewritten(set: &ResourceRecordSet, owner: &str) -> ResourceRecordSet {
    let mut set = set.clone();
    if let Some(values) = set.resource_records.as_mut() {
        for record in values.iter_mut() {
            if owner_of_value(&record.value).is_some() {
                record.value = with_owner(&record.value, owner);
            }
        }
    }
    set
}

/// A fresh registry record for `traffic`, as external-dns v0.18+ names it,
/// with the traffic record's set identifier and weight.
fn created(
    view: &NameView,
    traffic: &ResourceRecordSet,
    registry: &Registry,
) -> Result<ResourceRecordSet, Route53Error> {
    let cannot = |e: aws_sdk_route53::error::BuildError| {
        Route53Error::Invalid(format!("cannot build a registry record: {e}"))
    };
    let value = ResourceRecord::builder()
        .value(value_for(&registry.owner_id))
        .build()
        .map_err(cannot)?;
    ResourceRecordSet::builder()
        .name(registry.current_name(&view.name, traffic.r#type.as_str()))
        .r#type(RrType::Txt)
        .ttl(traffic.ttl.unwrap_or(DEFAULT_TXT_TTL))
        .set_identifier(traffic.set_identifier.clone().unwrap_or_default())
        .set_weight(traffic.weight)
        .resource_records(value)
        .build()
        .map_err(cannot)
}
