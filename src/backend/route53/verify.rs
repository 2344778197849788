//! What Route53 serves against the planned weights, and the health gate
//! from Route53's own health checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::records::{is_routed, valid_records, valid_zone, ROUTED_TYPES};
use super::{Route53, Route53Error, WeightedSet};
use crate::plan::Weights;

/// How one record name compares with the planned weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordReport {
    pub record: String,
    /// Expected clusters whose weighted traffic set(s) carry the planned
    /// weight (TXT records are not compared).
    pub matched: usize,
    /// Expected clusters, plus unexpected set identifiers with a non-zero
    /// weight (they receive traffic).
    pub total: usize,
    /// `"k8s-a: 100 (want 50)"`, `"k8s-c: missing"`, `"k8s-a: AAAA 100 (want
    /// 50)"`, `"k8s-x: 30 (not expected)"`; always `"{set identifier}: …"`.
    pub stragglers: Vec<String>,
}

impl RecordReport {
    pub fn is_complete(&self) -> bool {
        self.matched == self.total && self.stragglers.is_empty()
    }
}

impl Route53 {
    /// The gate for `cluster` from Route53's own health checks: every
    /// health check attached to its weighted records (its set identifier) on
    /// `records` must have every checker reporting success. Ok when none of
    /// its records has a health check (nothing configured).
    pub async fn cluster_health(
        &self,
        zone_id: &str,
        records: &[String],
        cluster: &str,
    ) -> Result<(), String> {
        let zone = valid_zone(zone_id).map_err(|e| e.to_string())?;
        let mut ids = BTreeSet::new();
        for name in records {
            let sets = self
                .list_raw(&zone, name)
                .await
                .map_err(|e| e.to_string())?;
            ids.extend(
                sets.iter()
                    .filter(|s| is_routed(&s.r#type))
                    .filter(|s| s.set_identifier.as_deref() == Some(cluster))
                    .filter_map(|s| s.health_check_id.clone()),
            );
        }
        for id in ids {
            let answer = self
                .client
                .get_health_check_status()
                .health_check_id(&id)
                .send()
                .await
                .map_err(|e| {
                    let text = aws_sdk_route53::error::DisplayErrorContext(&e).to_string();
                    let short: String = text.chars().take(200).collect();
                    format!("cannot read Route53 health check {id}: {short}")
                })?;
            let statuses: Vec<String> = answer
                .health_check_observations()
                .iter()
                .filter_map(|o| o.status_report()?.status().map(str::to_owned))
                .collect();
            health_verdict(&id, &statuses)?;
        }
        Ok(())
    }

    /// Compares what Route53 serves with `expected` (set identifier = cluster
    /// name): every weighted traffic set (A, AAAA, CNAME, alias) of an
    /// expected cluster must carry the expected weight, and no unexpected
    /// set identifier may have a non-zero weight. TXT records are never
    /// compared. One report per record.
    pub async fn check(
        &self,
        zone_id: &str,
        records: &[String],
        expected: &Weights,
    ) -> Result<Vec<RecordReport>, Route53Error> {
        let zone = valid_zone(zone_id)?;
        valid_records(records)?;
        let mut reports = Vec::with_capacity(records.len());
        for record in records {
            let sets = self.record_sets(&zone, record).await?;
            reports.push(compare(record, &sets, expected));
        }
        Ok(reports)
    }

    /// Polls [`Route53::check`] (backoff from 200 ms up to 3 s) until every
    /// record matches or `timeout` passes; returns the last reports either
    /// way (errors while polling are retried until the deadline; the last
    /// one is returned if no check ever succeeded).
    pub async fn wait_until(
        &self,
        zone_id: &str,
        records: &[String],
        expected: &Weights,
        timeout: Duration,
    ) -> Result<Vec<RecordReport>, Route53Error> {
        // Refuse bad input at once rather than polling it.
        valid_zone(zone_id)?;
        valid_records(records)?;
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(200);
        let mut last: Option<Result<Vec<RecordReport>, Route53Error>> = None;
        loop {
            match self.check(zone_id, records, expected).await {
                Ok(reports) if reports.iter().all(RecordReport::is_complete) => return Ok(reports),
                Ok(reports) => last = Some(Ok(reports)),
                Err(e @ Route53Error::Invalid(_)) => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "Route53 check failed while waiting");
                    if !matches!(last, Some(Ok(_))) {
                        last = Some(Err(e));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_secs(3));
        }
        last.unwrap_or_else(|| Err(Route53Error::Timeout("no check completed".into())))
    }
}

/// Only traffic records (A, AAAA, CNAME, alias) count: external-dns's
/// registry TXT records carry a weight too, but nothing reads it (external-
/// dns keys ownership on name, type and set identifier), and v0.18+ leaves
/// the old same-name ones behind with stale weights after an upgrade.
fn compare(record: &str, sets: &[WeightedSet], expected: &Weights) -> RecordReport {
    let weighted = |s: &&WeightedSet| s.weight.is_some() && !s.set_identifier.is_empty();
    let routed: Vec<&WeightedSet> = sets
        .iter()
        .filter(|s| ROUTED_TYPES.contains(&s.record_type.as_str()))
        .filter(weighted)
        .collect();
    let types: BTreeSet<&str> = routed.iter().map(|s| s.record_type.as_str()).collect();
    let several_types = types.len() > 1;
    let mut matched = 0;
    let mut total = 0;
    let mut stragglers = Vec::new();
    for (cluster, want) in expected.iter() {
        total += 1;
        let mine: Vec<&&WeightedSet> = routed
            .iter()
            .filter(|s| s.set_identifier == **cluster)
            .collect();
        if mine.is_empty() {
            stragglers.push(format!("{cluster}: missing"));
            continue;
        }
        let mut wrong = Vec::new();
        for set in &mine {
            if set.weight != Some(want) {
                let got = show_weight(set.weight);
                wrong.push(if several_types {
                    format!("{} {got}", set.record_type)
                } else {
                    got
                });
            }
        }
        if wrong.is_empty() {
            matched += 1;
        } else {
            stragglers.push(format!("{cluster}: {} (want {want})", wrong.join(", ")));
        }
    }
    let mut extra: BTreeMap<&str, u8> = BTreeMap::new();
    for set in &routed {
        if !expected.contains(&set.set_identifier) {
            if let Some(w @ 1..) = set.weight {
                let e = extra.entry(set.set_identifier.as_str()).or_insert(w);
                *e = (*e).max(w);
            }
        }
    }
    for (id, w) in extra {
        total += 1;
        stragglers.push(format!("{id}: {w} (not expected)"));
    }
    RecordReport {
        record: record.to_owned(),
        matched,
        total,
        stragglers,
    }
}

fn show_weight(w: Option<u8>) -> String {
    w.map_or_else(|| "no weight".to_owned(), |w| w.to_string())
}

/// Route53 reports each checker's status as text starting with `Success`
/// or `Failure`; the gate passes only when every checker succeeded.
pub fn health_verdict(id: &str, statuses: &[String]) -> Result<(), String> {
    if statuses.is_empty() {
        return Err(format!("Route53 health check {id} has no observations yet"));
    }
    match statuses.iter().find(|s| !s.starts_with("Success")) {
        Some(bad) => Err(format!("Route53 health check {id}: {bad}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_passes_only_when_every_checker_succeeds() {
        let ok = "Success: HTTP Status Code: 200".to_owned();
        let bad = "Failure: Connection timed out".to_owned();
        assert!(health_verdict("hc1", &[ok.clone(), ok.clone()]).is_ok());
        let err = health_verdict("hc1", &[ok, bad]).unwrap_err();
        assert!(err.contains("Failure: Connection timed out"), "{err}");
        assert!(health_verdict("hc1", &[]).is_err());
    }
}
