//! Route53 weighted records: read, verify, and (mode `route53`) write them.
//!
//! external-dns turns a cluster's routing annotations into one *weighted
//! record set* per record name: `SetIdentifier` = the cluster's name, `Weight`
//! = its share. This module
//!
//! - reads every record set of a name, paginating with
//!   `StartRecordName`/`StartRecordType`/`StartRecordIdentifier` and never
//!   looping when a server repeats a page (moto ignores
//!   `StartRecordIdentifier`: see [`Route53::record_sets`]);
//! - compares what Route53 serves with the planned weights
//!   ([`Route53::check`], [`Route53::wait_until`]);
//! - in mode `route53`, writes a whole step in as few atomic
//!   `ChangeResourceRecordSets` batches as the API limits allow — one per zone
//!   when it fits — and waits for `INSYNC` ([`Route53::write_weights`]).
//!
//! # The TXT ownership twin
//!
//! external-dns's TXT registry writes, beside each record it owns, a TXT
//! record with the ownership label (`"heritage=external-dns,external-dns/
//! owner=…,external-dns/resource=…"`) and the same set identifier and weight.
//! If the weighted record and its twin disagree, external-dns no longer
//! treats the pair as its own. This module uses the convention of
//! external-dns's TXT registry *without* `--txt-prefix`/`--txt-suffix`: the
//! twin has the **same name** as the record and the **same set identifier**.
//! (A registry configured with a prefix writes the twin under another name;
//! that layout is not supported here and a missing same-name twin is refused
//! by [`Route53::write_weights`].) The twin's value is never touched: an
//! UPSERT re-sends the record set exactly as it was read, with only the
//! weight changed.
//!
//! # Safety rules
//!
//! - Input is validated before any call; refusals are [`Route53Error::Invalid`].
//! - Every record name keeps a non-zero total weight (all zero means "split
//!   evenly" to Route53, the opposite of "everything off").
//! - A cluster without a weighted record (or without its TXT twin) is refused
//!   before any write: the bot only re-weights records, it never creates them.
//! - The bot never sends DELETE (and moto's DELETE-by-set-identifier would
//!   remove every record with that identifier in the zone).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_route53::config::retry::RetryConfig;
use aws_sdk_route53::config::timeout::TimeoutConfig;
use aws_sdk_route53::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_route53::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecordSet, RrType,
};
use aws_sdk_route53::Client;

use crate::plan::Weights;

/// Record types that carry traffic (the TXT twins do not).
const ROUTED_TYPES: [&str; 3] = ["A", "CNAME", "AAAA"];

/// `ChangeResourceRecordSets` limits: changes per batch, `ResourceRecord`
/// elements per batch and characters of `Value`s per batch. For UPSERT, AWS
/// counts every `ResourceRecord` and every character **twice** (moto enforces
/// the element rule too), so a batch holds at most 500 single-value UPSERTs.
const MAX_CHANGES: usize = 1000;
const MAX_RR_ELEMENTS: usize = 1000;
const MAX_VALUE_CHARS: usize = 32_000;

/// Pagination guards: pages per listing, and the largest page we ask for when
/// a server repeats a page (it ignores `StartRecordIdentifier`).
const MAX_PAGES: usize = 1000;
const MAX_FALLBACK_PAGE: i32 = 10_000;
/// Route53's (and moto's) page size when `MaxItems` is not sent.
const DEFAULT_PAGE: i32 = 300;

/// Retries of a throttled batch on top of the SDK's own attempts.
const WRITE_RETRIES: u32 = 4;
const SDK_MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum Route53Error {
    /// Refused: the request was invalid or unsafe; nothing was written.
    #[error("refused: {0}")]
    Invalid(String),
    /// Route53 answered with an error, or could not be reached. (No
    /// "Route53:" prefix: every caller names Route53 as what failed.)
    #[error("{0}")]
    Api(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

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

/// How one record name compares with the planned weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordReport {
    pub record: String,
    /// Expected clusters whose weighted set(s) — and TXT twin, when there is
    /// one — carry the planned weight.
    pub matched: usize,
    /// Expected clusters, plus unexpected set identifiers with a non-zero
    /// weight (they receive traffic).
    pub total: usize,
    /// `"k8s-a: 100 (want 50)"`, `"k8s-c: missing"`, `"k8s-a: TXT 100 (want
    /// 50)"`, `"k8s-x: 30 (not expected)"`; always `"{set identifier}: …"`.
    pub stragglers: Vec<String>,
}

impl RecordReport {
    pub fn is_complete(&self) -> bool {
        self.matched == self.total && self.stragglers.is_empty()
    }
}

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

/// API requests made by one [`Route53`], by operation. Every HTTP attempt
/// counts, SDK retries included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiCalls {
    pub list_record_sets: u64,
    pub change_record_sets: u64,
    pub get_change: u64,
    /// Anything else (zone management in tests, ...).
    pub other: u64,
}

impl ApiCalls {
    pub fn total(&self) -> u64 {
        self.list_record_sets + self.change_record_sets + self.get_change + self.other
    }

    /// The calls made since `earlier` was taken.
    pub fn since(&self, earlier: &ApiCalls) -> ApiCalls {
        ApiCalls {
            list_record_sets: self.list_record_sets - earlier.list_record_sets,
            change_record_sets: self.change_record_sets - earlier.change_record_sets,
            get_change: self.get_change - earlier.get_change,
            other: self.other - earlier.other,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    total: AtomicU64,
    list: AtomicU64,
    change: AtomicU64,
    get_change: AtomicU64,
    other: AtomicU64,
}

impl Counters {
    fn record(&self, method: &str, uri: &str) {
        self.total.fetch_add(1, Ordering::SeqCst);
        let path = uri.split('?').next().unwrap_or(uri);
        let counter = if path.contains("/rrset") && method.eq_ignore_ascii_case("GET") {
            &self.list
        } else if path.contains("/rrset") && method.eq_ignore_ascii_case("POST") {
            &self.change
        } else if path.contains("/change/") && method.eq_ignore_ascii_case("GET") {
            &self.get_change
        } else {
            &self.other
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts every request the SDK transmits (retries included).
#[derive(Debug)]
struct CountCalls(Arc<Counters>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "failover-bot-route53-call-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        self.0.record(request.method(), request.uri());
        Ok(())
    }
}

/// A Route53 client for one account, counting its API calls.
#[derive(Clone, Debug)]
pub struct Route53 {
    client: Client,
    calls: Arc<Counters>,
    page_size: Option<i32>,
    insync_timeout: Duration,
}

fn http_client() -> aws_sdk_route53::config::SharedHttpClient {
    // rustls with ring, like kube and slack-morphism: the SDK's default
    // (aws-lc-rs) would add a second rustls crypto provider to the process.
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(8))
        .operation_timeout(Duration::from_secs(20))
        .build()
}

fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(SDK_MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(2))
}

impl Route53 {
    /// The standard credential/region chain (region defaults to us-east-1,
    /// Route53 being global); `AWS_ENDPOINT_URL_ROUTE_53` / `AWS_ENDPOINT_URL`
    /// are honoured.
    pub async fn from_env() -> Route53 {
        let mut shared = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .timeout_config(timeouts())
            .retry_config(retries())
            .load()
            .await;
        if shared.region().is_none() {
            shared = shared
                .into_builder()
                .region(Region::new("us-east-1"))
                .build();
        }
        Self::from_sdk_config(&shared)
    }

    /// A fixed endpoint (moto, a proxy) with region us-east-1 and static
    /// test credentials.
    pub async fn for_endpoint(endpoint: &str) -> Route53 {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "failover-bot-test",
                "failover-bot-test",
                None,
                None,
                "failover-bot-static",
            ))
            .endpoint_url(endpoint)
            .http_client(http_client())
            .timeout_config(timeouts())
            .retry_config(retries())
            .load()
            .await;
        Self::from_sdk_config(&shared)
    }

    fn from_sdk_config(shared: &aws_config::SdkConfig) -> Route53 {
        let calls = Arc::new(Counters::default());
        let config = aws_sdk_route53::config::Builder::from(shared)
            .interceptor(CountCalls(calls.clone()))
            .build();
        Route53 {
            client: Client::from_conf(config),
            calls,
            page_size: None,
            insync_timeout: Duration::from_secs(180),
        }
    }

    /// Asks for `MaxItems` record sets per page (default: the server's, 300).
    pub fn with_page_size(mut self, page_size: i32) -> Route53 {
        self.page_size = Some(page_size.max(1));
        self
    }

    /// How long [`Route53::write_weights`] waits for `INSYNC` (default 180 s).
    pub fn with_insync_timeout(mut self, timeout: Duration) -> Route53 {
        self.insync_timeout = timeout;
        self
    }

    /// The underlying SDK client (its calls are counted too).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every API request made so far.
    pub fn api_calls(&self) -> u64 {
        self.calls.total.load(Ordering::SeqCst)
    }

    /// Every API request made so far, by operation.
    pub fn api_calls_by_operation(&self) -> ApiCalls {
        ApiCalls {
            list_record_sets: self.calls.list.load(Ordering::SeqCst),
            change_record_sets: self.calls.change.load(Ordering::SeqCst),
            get_change: self.calls.get_change.load(Ordering::SeqCst),
            other: self.calls.other.load(Ordering::SeqCst),
        }
    }

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

    async fn list_raw(
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

    /// Compares what Route53 serves with `expected` (set identifier = cluster
    /// name): every routed weighted set of an expected cluster and its TXT
    /// twin (when present) must carry the expected weight, and no unexpected
    /// set identifier may have a non-zero weight. One report per record.
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

    /// Mode `route53`: sets every expected cluster's weight on every record
    /// name — the routed weighted record(s) and the TXT ownership twin — with
    /// UPSERTs that re-send each set as read, changing only its weight.
    ///
    /// Before any call: the input is valid and not all weights are zero.
    /// Before any write (after reading every name): each expected cluster has
    /// a weighted record and a TXT twin on every name, and no name would end
    /// with a total weight of zero. Changes go in as few batches as the
    /// limits allow (a record name's changes stay in one batch when they fit,
    /// so a failed later batch never leaves a name half-written); throttling
    /// and `PriorRequestNotComplete` are retried with backoff and jitter
    /// (UPSERTs are idempotent); then every change is awaited to `INSYNC`.
    pub async fn write_weights(
        &self,
        zone_id: &str,
        records: &[String],
        expected: &Weights,
    ) -> Result<WriteSummary, Route53Error> {
        let zone = valid_zone(zone_id)?;
        valid_records(records)?;
        valid_weights(expected)?;
        let calls_before = self.api_calls();

        // One record name once, even if configured twice.
        let mut names: Vec<String> = Vec::new();
        for record in records {
            let n = normalise(record);
            if !names.contains(&n) {
                names.push(n);
            }
        }

        let mut problems = Vec::new();
        let mut groups: Vec<Vec<Pending>> = Vec::new();
        for name in &names {
            let sets = self.list_raw(&zone, name).await?;
            let mut group = Vec::new();
            for cluster in expected.clusters() {
                let mine = |s: &&ResourceRecordSet| {
                    s.weight.is_some() && s.set_identifier.as_deref() == Some(cluster)
                };
                let routed: Vec<&ResourceRecordSet> = sets
                    .iter()
                    .filter(|s| is_routed(&s.r#type))
                    .filter(mine)
                    .collect();
                let twin: Vec<&ResourceRecordSet> = sets
                    .iter()
                    .filter(|s| s.r#type == RrType::Txt)
                    .filter(mine)
                    .collect();
                if routed.is_empty() {
                    problems.push(format!(
                        "{name} has no weighted A/AAAA/CNAME record with set identifier {cluster}"
                    ));
                }
                if twin.is_empty() {
                    problems.push(format!(
                        "{name} has no TXT ownership record with set identifier {cluster}"
                    ));
                }
                let weight = expected.get(cluster).unwrap_or_default();
                for set in routed.into_iter().chain(twin) {
                    group.push(Pending::upsert(set, weight));
                }
            }
            // The total each routed type will have after the write.
            let types: BTreeSet<&str> = sets
                .iter()
                .filter(|s| is_routed(&s.r#type) && s.weight.is_some())
                .map(|s| s.r#type.as_str())
                .collect();
            for ty in types {
                let total: i64 = sets
                    .iter()
                    .filter(|s| s.r#type.as_str() == ty)
                    .filter_map(|s| {
                        let id = s.set_identifier.as_deref()?;
                        Some(match expected.get(id) {
                            Some(w) => i64::from(w),
                            None => s.weight?,
                        })
                    })
                    .sum();
                if total == 0 {
                    problems.push(format!(
                        "{name} ({ty}) would have all weights at 0, which Route53 serves as an even split"
                    ));
                }
            }
            groups.push(group);
        }
        if !problems.is_empty() {
            return Err(Route53Error::Invalid(summarise(&problems)));
        }

        let batches = pack(groups);
        let changes: usize = batches.iter().map(Vec::len).sum();
        let count = batches.len();
        let mut change_ids = Vec::with_capacity(count);
        let mut applied = 0usize;
        for (i, batch) in batches.into_iter().enumerate() {
            let size = batch.len();
            match self.submit(&zone, batch, i + 1, count).await {
                Ok(id) => {
                    applied += size;
                    change_ids.push(id);
                }
                Err(e) => {
                    let earlier = if i == 0 {
                        "no earlier batch".to_owned()
                    } else {
                        format!("the {i} earlier batch(es) ({applied} changes) were applied")
                    };
                    return Err(match e {
                        Route53Error::Timeout(m) => Route53Error::Timeout(format!(
                            "batch {} of {count} ({size} changes): {m}; its outcome is unknown \
                             (batches are atomic: all or nothing); {earlier}",
                            i + 1
                        )),
                        other => Route53Error::Api(format!(
                            "batch {} of {count} ({size} changes) failed and changed nothing: \
                             {}; {earlier}",
                            i + 1,
                            inner_message(&other)
                        )),
                    });
                }
            }
        }
        self.wait_insync(&change_ids).await?;
        Ok(WriteSummary {
            changes,
            batches: count,
            api_calls: self.api_calls() - calls_before,
        })
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

    /// Polls `GetChange` for every change id until all are `INSYNC`.
    async fn wait_insync(&self, change_ids: &[String]) -> Result<(), Route53Error> {
        let deadline = Instant::now() + self.insync_timeout;
        let mut pending: Vec<&String> = change_ids.iter().filter(|id| !id.is_empty()).collect();
        let mut delay = Duration::from_millis(500);
        let mut round = 0u32;
        while !pending.is_empty() {
            let mut still = Vec::new();
            for id in pending {
                let out = self
                    .client
                    .get_change()
                    .id(id.as_str())
                    .send()
                    .await
                    .map_err(|e| api_error("GetChange", e))?;
                let insync = out
                    .change_info()
                    .is_some_and(|c| *c.status() == ChangeStatus::Insync);
                if !insync {
                    still.push(id);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Route53Error::Timeout(format!(
                    "{} change(s) submitted but not INSYNC after {:?} (they will still apply)",
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
}

/// One UPSERT and what it costs against the batch limits.
struct Pending {
    set: ResourceRecordSet,
    rr_elements: usize,
    chars: usize,
}

impl Pending {
    fn upsert(set: &ResourceRecordSet, weight: u8) -> Pending {
        let mut set = set.clone();
        set.weight = Some(i64::from(weight));
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
fn pack(groups: Vec<Vec<Pending>>) -> Vec<Vec<Pending>> {
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

fn compare(record: &str, sets: &[WeightedSet], expected: &Weights) -> RecordReport {
    let weighted = |s: &&WeightedSet| s.weight.is_some() && !s.set_identifier.is_empty();
    let routed: Vec<&WeightedSet> = sets
        .iter()
        .filter(|s| ROUTED_TYPES.contains(&s.record_type.as_str()))
        .filter(weighted)
        .collect();
    let twins: Vec<&WeightedSet> = sets
        .iter()
        .filter(|s| s.record_type == "TXT")
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
        for twin in twins.iter().filter(|s| s.set_identifier == **cluster) {
            // Named only when it disagrees with its record (else it is noise).
            if twin.weight != Some(want) && !mine.iter().any(|s| s.weight == twin.weight) {
                wrong.push(format!("TXT {}", show_weight(twin.weight)));
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

fn is_routed(ty: &RrType) -> bool {
    ROUTED_TYPES.contains(&ty.as_str())
}

fn to_weighted_set(set: &ResourceRecordSet) -> Result<WeightedSet, Route53Error> {
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
fn normalise(name: &str) -> String {
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

fn valid_zone(zone_id: &str) -> Result<String, Route53Error> {
    let id = zone_id.trim();
    let id = id.strip_prefix("/hostedzone/").unwrap_or(id);
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Route53Error::Invalid(format!(
            "{zone_id:?} is not a hosted zone id (like Z0123456789ABC)"
        )));
    }
    Ok(id.to_owned())
}

fn valid_name(name: &str) -> Result<(), Route53Error> {
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

fn valid_records(records: &[String]) -> Result<(), Route53Error> {
    if records.is_empty() {
        return Err(Route53Error::Invalid("no record names given".into()));
    }
    records.iter().try_for_each(|r| valid_name(r))
}

fn valid_weights(expected: &Weights) -> Result<(), Route53Error> {
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

fn inner_message(e: &Route53Error) -> &str {
    match e {
        Route53Error::Invalid(m) | Route53Error::Api(m) | Route53Error::Timeout(m) => m,
    }
}

fn is_throttling<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| {
            matches!(
                code,
                "Throttling" | "ThrottlingException" | "PriorRequestNotComplete"
            )
        })
}

/// A short, secret-free description of an SDK error.
fn api_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> Route53Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const LIMIT: usize = 300;
    let short = |mut s: String| {
        if s.len() > LIMIT {
            let mut cut = LIMIT;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    };
    match &err {
        SdkError::TimeoutError(_) => {
            Route53Error::Timeout(format!("{operation}: no answer in time"))
        }
        SdkError::DispatchFailure(f) if f.is_timeout() => {
            Route53Error::Timeout(format!("{operation}: connection timed out"))
        }
        SdkError::DispatchFailure(f) => Route53Error::Api(short(format!(
            "{operation}: cannot reach Route53 ({})",
            f.as_connector_error()
                .map(|c| DisplayErrorContext(c).to_string())
                .unwrap_or_else(|| "dispatch failure".into())
        ))),
        SdkError::ServiceError(s) => {
            let e = s.err();
            // A proxy or load balancer in the way answers without AWS's
            // error body: then the status is all there is to go on.
            let details = match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!(", {code}: {message}"),
                (Some(text), None) | (None, Some(text)) => format!(", {text}"),
                (None, None) => String::new(),
            };
            let status = s.raw().status().as_u16();
            Route53Error::Api(short(format!("{operation}: HTTP {status}{details}")))
        }
        _ => Route53Error::Api(short(format!("{operation}: {}", DisplayErrorContext(&err)))),
    }
}

/// Up to `max`, from a cheap hash of the clock and the attempt (no RNG
/// dependency; it only needs to spread concurrent retries).
fn jitter(attempt: u32, max: Duration) -> Duration {
    let max_nanos = max.as_nanos() as u64;
    if max_nanos == 0 {
        return Duration::ZERO;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = now ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    Duration::from_nanos(x % (max_nanos + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_route53::types::ResourceRecord;

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
    fn health_passes_only_when_every_checker_succeeds() {
        let ok = "Success: HTTP Status Code: 200".to_owned();
        let bad = "Failure: Connection timed out".to_owned();
        assert!(health_verdict("hc1", &[ok.clone(), ok.clone()]).is_ok());
        let err = health_verdict("hc1", &[ok, bad]).unwrap_err();
        assert!(err.contains("Failure: Connection timed out"), "{err}");
        assert!(health_verdict("hc1", &[]).is_err());
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalise("WWW.Example.com"), "www.example.com.");
        assert_eq!(normalise("www.example.com."), "www.example.com.");
        assert_eq!(normalise("\\052.example.com."), "*.example.com.");
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

    #[test]
    fn jitter_stays_in_bounds() {
        for a in 0..100 {
            assert!(jitter(a, Duration::from_millis(10)) <= Duration::from_millis(10));
        }
        assert_eq!(jitter(1, Duration::ZERO), Duration::ZERO);
    }
}
