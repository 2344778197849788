//! The record model: one [`WeightedSet`] per record set Route53 lists,
//! reading every set of a name (paginated, guarded against servers that
//! repeat pages), name normalisation and input validation.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_route53::types::{ResourceRecordSet, RrType};

use super::client::api_error;
use super::{Route53, Route53Error};
use crate::plan::Weights;

/// Record types that carry traffic (the TXT twins do not).
pub(super) const ROUTED_TYPES: [&str; 3] = ["A", "CNAME", "AAAA"];

/// Pagination guards: pages per listing, and the largest page we ask for when
/// a server repeats a page (it ignores `StartRecordIdentifier`).
const MAX_PAGES: usize = 1000;

const MAX_FALLBACK_PAGE: i32 = 10_000;

/// Route53's (and moto's) page size when `MaxItems` is not sent.
const DEFAULT_PAGE: i32 = 300;

/// One record set as Route53 lists it. For alias records `values` is empty
/// and `ttl` is `None`; a set without routing policy has an empty
/// `set_identifier` and no weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedSet {
    /// Lower-case FQDN with a trailing dot (`\052` shown as `*`).
    pub name: String,
    pub record_type: String,
    pub set_identifier: String,
    pub weight: Option<u8>,
    pub ttl: Option<i64>,
    pub values: Vec<String>,
}

impl Route53 {
    /// Every record set (all types) named `name` in the zone.
    ///
    /// Pages are followed with `StartRecordName`/`StartRecordType`/
    /// `StartRecordIdentifier`; sets already seen are skipped. A page that
    /// brings nothing new means the server repeated it (moto ignores
    /// `StartRecordIdentifier` and restarts at the first set of the
    /// name/type): the listing then asks for pages twice as large, up to
    /// 10,000 sets, and gives up with an error after that or after 1,000
    /// pages — it never loops forever.
    pub async fn record_sets(
        &self,
        zone_id: &str,
        name: &str,
    ) -> Result<Vec<WeightedSet>, Route53Error> {
        let zone = valid_zone(zone_id)?;
        valid_name(name)?;
        self.list_raw(&zone, name)
            .await?
            .iter()
            .map(to_weighted_set)
            .collect()
    }

    pub(super) async fn list_raw(
        &self,
        zone: &str,
        name: &str,
    ) -> Result<Vec<ResourceRecordSet>, Route53Error> {
        let target = normalise(name);
        let mut start_name = target.clone();
        let mut start_type: Option<RrType> = None;
        let mut start_id: Option<String> = None;
        let mut page_size = self.page_size;
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(zone)
                .start_record_name(&start_name)
                .set_start_record_type(start_type.clone())
                .set_start_record_identifier(start_id.clone())
                .set_max_items(page_size)
                .send()
                .await
                .map_err(|e| api_error("ListResourceRecordSets", e))?;
            let mut fresh = 0usize;
            let mut past = false;
            for set in page.resource_record_sets() {
                if normalise(&set.name) != target {
                    // Listings are sorted by name: this one is past ours.
                    past = true;
                    break;
                }
                let key = (
                    set.r#type.as_str().to_owned(),
                    set.set_identifier.clone().unwrap_or_default(),
                );
                if seen.insert(key) {
                    out.push(set.clone());
                    fresh += 1;
                }
            }
            if past || !page.is_truncated() {
                return Ok(out);
            }
            let Some(next_name) = page.next_record_name() else {
                return Ok(out);
            };
            if normalise(next_name) != target {
                return Ok(out);
            }
            if fresh == 0 {
                // The server repeated a page: it ignores StartRecordIdentifier.
                let current = page_size.unwrap_or(if page.max_items() > 0 {
                    page.max_items()
                } else {
                    DEFAULT_PAGE
                });
                if current >= MAX_FALLBACK_PAGE {
                    return Err(Route53Error::Api(format!(
                        "ListResourceRecordSets keeps repeating the same page for {target} \
                         (the server ignores StartRecordIdentifier); gave up"
                    )));
                }
                let bigger = current.saturating_mul(2).min(MAX_FALLBACK_PAGE);
                tracing::debug!(
                    record = %target,
                    page_size = bigger,
                    "Route53 repeated a page; asking for larger pages"
                );
                page_size = Some(bigger);
            }
            start_name = next_name.to_owned();
            start_type = page.next_record_type().cloned();
            start_id = page.next_record_identifier().map(str::to_owned);
        }
        Err(Route53Error::Api(format!(
            "ListResourceRecordSets for {target}: still truncated after {MAX_PAGES} pages; gave up"
        )))
    }

    /// For each record name (in the order given): set identifier → weight of
    /// its weighted sets of the routed type. When a name has several routed
    /// types (A and AAAA), A wins, then CNAME, then AAAA.
    pub async fn observe(
        &self,
        zone_id: &str,
        records: &[String],
    ) -> Result<Vec<(String, BTreeMap<String, u8>)>, Route53Error> {
        let zone = valid_zone(zone_id)?;
        valid_records(records)?;
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let sets = self.record_sets(&zone, record).await?;
            let mut weights = BTreeMap::new();
            for ty in ROUTED_TYPES {
                for set in sets.iter().filter(|s| s.record_type == ty) {
                    if let (Some(w), false) = (set.weight, set.set_identifier.is_empty()) {
                        weights.entry(set.set_identifier.clone()).or_insert(w);
                    }
                }
            }
            out.push((record.clone(), weights));
        }
        Ok(out)
    }
}

pub(super) fn is_routed(ty: &RrType) -> bool {
    ROUTED_TYPES.contains(&ty.as_str())
}

pub(super) fn to_weighted_set(set: &ResourceRecordSet) -> Result<WeightedSet, Route53Error> {
    let weight = match set.weight {
        None => None,
        Some(w) => Some(u8::try_from(w).map_err(|_| {
            Route53Error::Api(format!(
                "{} {} {:?} has weight {w}, outside 0..=255",
                set.name,
                set.r#type.as_str(),
                set.set_identifier.as_deref().unwrap_or_default()
            ))
        })?),
    };
    Ok(WeightedSet {
        name: normalise(&set.name),
        record_type: set.r#type.as_str().to_owned(),
        set_identifier: set.set_identifier.clone().unwrap_or_default(),
        weight,
        ttl: set.ttl,
        values: set
            .resource_records
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|r| r.value.clone())
            .collect(),
    })
}

/// Lower case, trailing dot, octal `\DDD` escapes decoded (Route53 lists
/// `*` as `\052`).
pub(super) fn normalise(name: &str) -> String {
    let chars: Vec<char> = name.trim().chars().collect();
    let mut out = String::with_capacity(chars.len() + 1);
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 3 < chars.len() {
            let digits: Option<Vec<u32>> =
                chars[i + 1..i + 4].iter().map(|c| c.to_digit(8)).collect();
            if let Some(c) = digits
                .and_then(|d| char::from_u32(d[0] * 64 + d[1] * 8 + d[2]))
                .filter(char::is_ascii)
            {
                out.push(c.to_ascii_lowercase());
                i += 4;
                continue;
            }
        }
        out.push(chars[i].to_ascii_lowercase());
        i += 1;
    }
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

pub(super) fn valid_zone(zone_id: &str) -> Result<String, Route53Error> {
    let id = zone_id.trim();
    let id = id.strip_prefix("/hostedzone/").unwrap_or(id);
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Route53Error::Invalid(format!(
            "{zone_id:?} is not a hosted zone id (like Z0123456789ABC)"
        )));
    }
    Ok(id.to_owned())
}

pub(super) fn valid_name(name: &str) -> Result<(), Route53Error> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.*\\".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Route53Error::Invalid(format!("{name:?} is not a DNS name")))
    }
}

pub(super) fn valid_records(records: &[String]) -> Result<(), Route53Error> {
    if records.is_empty() {
        return Err(Route53Error::Invalid("no record names given".into()));
    }
    records.iter().try_for_each(|r| valid_name(r))
}

pub(super) fn valid_weights(expected: &Weights) -> Result<(), Route53Error> {
    if expected.is_empty() {
        return Err(Route53Error::Invalid("no cluster weights given".into()));
    }
    for cluster in expected.clusters() {
        if cluster.is_empty() || cluster.len() > 128 || cluster.chars().any(char::is_control) {
            return Err(Route53Error::Invalid(format!(
                "{cluster:?} cannot be a Route53 set identifier (1 to 128 characters)"
            )));
        }
    }
    if expected.all_zero() {
        return Err(Route53Error::Invalid(
            "every weight would be 0, which Route53 serves as an even split across all clusters"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalise("WWW.Example.com"), "www.example.com.");
        assert_eq!(normalise("www.example.com."), "www.example.com.");
        assert_eq!(normalise("\\052.example.com."), "*.example.com.");
    }
}
