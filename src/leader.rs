//! Leader election: of the bot's replicas, only the holder of a Lease in its
//! home cluster opens the journal, talks to Slack and changes weights.
//!
//! The Lease lives in the cluster the bot runs in, never in one it fails
//! over: the outage that makes you fail a cluster over must not also take
//! away the bot's lock (or its journal) in the middle of the failover.
//!
//! # Deadlines
//!
//! The leader acts only while `start of its last successful renewal +
//! lease duration − margin` is in the future ([`ActingDeadline`]). Another
//! replica takes the Lease only after it has seen the same Lease record,
//! unchanged, for a whole lease duration by its own clock, and it can see
//! that record only after the renewal that wrote it started. So the leader's
//! deadline passes at least `margin` before anyone else may take over,
//! without trusting any clock but each replica's own monotonic one; the
//! margin absorbs clock rate differences and the last action under way.
//!
//! Every call on the lease path (read, create, renew, release) gives up
//! after [`LeaseTiming::call_timeout`], at most the margin: a renewal
//! started before the deadline ends before the lease could expire, and a
//! silent API server cannot hold the election loop. The deadline needs no
//! call to pass: [`Leadership::lost`] and [`ActingDeadline::check`] compare
//! it with the clock, so a leader whose home API server goes silent stops
//! acting on time even while a renewal hangs.
//!
//! The election is the usual one (client-go's): get the Lease, create it
//! if missing, take it when free or unrenewed for its duration, renew it
//! with a resourceVersion precondition. Time is `tokio::time`, so tests
//! pause it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Who campaigns for which lease, where, and how fast.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub namespace: String,
    /// This replica's name (the pod name in Kubernetes).
    pub identity: String,
    /// The kubeconfig context of the home cluster, or `in-cluster`.
    pub context: String,
    /// Whether that context may skip TLS verification.
    pub tls: crate::backend::kube::tls::TlsVerification,
    pub timing: LeaseTiming,
}

/// The lease's clock. The defaults: the Lease lasts 15 s, the leader acts
/// until 10 s after its last renewal started, renews every 2 s, and every
/// call gives up after 2 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long the Lease holds without renewal (its `leaseDurationSeconds`;
    /// whole seconds).
    pub duration: Duration,
    /// How long before the Lease could expire the leader stops acting.
    pub margin: Duration,
    /// How often the leader renews and a waiting replica looks.
    pub retry_every: Duration,
    /// The longest one call on the lease path may take (at most `margin`).
    pub call_timeout: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            margin: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
            call_timeout: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    /// How long after a renewal starts the leader may act on it.
    pub fn acting_time(&self) -> Duration {
        self.duration.saturating_sub(self.margin)
    }

    /// Refuses timings under which the deadline could not hold.
    pub fn check(&self) -> Result<(), LeaderError> {
        let bad = |why: &str| Err(LeaderError::Timing(why.to_owned()));
        if self.duration.subsec_nanos() != 0 || self.duration.as_secs() == 0 {
            return bad("the lease duration must be a whole number of seconds, at least 1");
        }
        if self.duration.as_secs() > i32::MAX as u64 {
            return bad("the lease duration is too long");
        }
        if self.margin.is_zero() || self.margin >= self.duration {
            return bad("the margin must be more than 0 and less than the lease duration");
        }
        if self.call_timeout.is_zero() || self.call_timeout > self.margin {
            return bad("the call timeout must be more than 0 and at most the margin");
        }
        if self.retry_every.is_zero() || self.retry_every + self.call_timeout > self.acting_time() {
            return bad("a renewal (retry interval + call timeout) must fit in duration − margin");
        }
        Ok(())
    }

    fn duration_seconds(&self) -> i32 {
        self.duration.as_secs() as i32
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease timing: {0}")]
    Timing(String),
    #[error("cannot reach the home cluster for the Lease (context {context}): {reason}")]
    Connect { context: String, reason: String },
    /// Checked before an action: this replica may not act now.
    #[error("not the leader (or the lease was not renewed in time): not acting")]
    NotLeading,
}

/// A Lease as the election sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    /// The holder's declared duration, in seconds.
    pub duration_seconds: Option<i32>,
    pub transitions: i32,
    pub version: String,
}

/// What a write puts in the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseWrite {
    /// `None` releases the Lease.
    pub holder: Option<String>,
    pub duration_seconds: i32,
    /// A new holder: set the acquire time and count a transition.
    pub transitions: Option<i32>,
}

/// Why a call on the lease path did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseCallError {
    /// The Lease changed since it was read (or already exists, on create).
    Conflict,
    Failed(String),
}

/// The Lease object, behind a trait so the election's timing can be tested
/// with paused time against a stand-in.
#[async_trait]
pub trait LeaseApi: Send + Sync {
    async fn get(&self) -> Result<Option<LeaseRecord>, LeaseCallError>;
    async fn create(&self, write: &LeaseWrite) -> Result<LeaseRecord, LeaseCallError>;
    /// Writes under the precondition that the Lease is still at `version`.
    async fn update(
        &self,
        version: &str,
        write: &LeaseWrite,
    ) -> Result<LeaseRecord, LeaseCallError>;
}

/// The real Lease, `coordination.k8s.io/v1`, written with JSON merge
/// patches carrying the resourceVersion (RBAC: get, create, patch).
pub struct KubeLease {
    api: Api<Lease>,
    name: String,
}

impl KubeLease {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> KubeLease {
        KubeLease {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
        }
    }
}

fn record_of(lease: Lease) -> LeaseRecord {
    let spec = lease.spec.unwrap_or_default();
    LeaseRecord {
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        duration_seconds: spec.lease_duration_seconds,
        transitions: spec.lease_transitions.unwrap_or(0),
        version: lease.metadata.resource_version.unwrap_or_default(),
    }
}

fn lease_call_error(error: kube::Error) -> LeaseCallError {
    match error {
        kube::Error::Api(status) if status.code == 409 => LeaseCallError::Conflict,
        other => LeaseCallError::Failed(crate::backend::kube::with_causes(&other)),
    }
}

/// `MicroTime` as the API server writes it.
fn micro_time_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn spec_of(write: &LeaseWrite) -> serde_json::Value {
    let now = micro_time_now();
    let mut spec = json!({
        "holderIdentity": write.holder,
        "leaseDurationSeconds": write.duration_seconds,
        "renewTime": now,
    });
    if let Some(transitions) = write.transitions {
        spec["acquireTime"] = json!(now);
        spec["leaseTransitions"] = json!(transitions);
    }
    spec
}

#[async_trait]
impl LeaseApi for KubeLease {
    async fn get(&self) -> Result<Option<LeaseRecord>, LeaseCallError> {
        let found = self.api.get_opt(&self.name).await;
        Ok(found.map_err(lease_call_error)?.map(record_of))
    }

    async fn create(&self, write: &LeaseWrite) -> Result<LeaseRecord, LeaseCallError> {
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": self.name},
            "spec": spec_of(write),
        }))
        .map_err(|e| LeaseCallError::Failed(e.to_string()))?;
        let created = self.api.create(&PostParams::default(), &lease).await;
        Ok(record_of(created.map_err(lease_call_error)?))
    }

    async fn update(
        &self,
        version: &str,
        write: &LeaseWrite,
    ) -> Result<LeaseRecord, LeaseCallError> {
        let patch = json!({
            "metadata": {"resourceVersion": version},
            "spec": spec_of(write),
        });
        let params = PatchParams::default();
        let patched = self
            .api
            .patch(&self.name, &params, &Patch::Merge(&patch))
            .await;
        Ok(record_of(patched.map_err(lease_call_error)?))
    }
}

/// Who holds a Lease and when it was last renewed, as an outsider (the
/// readiness doctor) reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    pub holder: Option<String>,
    pub renewed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub duration: Option<Duration>,
}

impl LeaseHolder {
    /// Whether the holder renewed within its declared duration before `now`.
    pub fn is_renewed(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        match (self.renewed_at, self.duration) {
            (Some(at), Some(duration)) => {
                let expires = chrono::Duration::from_std(duration)
                    .ok()
                    .and_then(|d| at.checked_add_signed(d));
                expires.is_some_and(|expires| expires >= now)
            }
            _ => false,
        }
    }
}

/// Reads the Lease `name` in `namespace`: `None` when there is none.
pub async fn read_lease(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<LeaseHolder>, String> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let lease = api
        .get_opt(name)
        .await
        .map_err(|e| crate::backend::kube::with_causes(&e))?;
    Ok(lease.map(|lease| {
        let spec = lease.spec.unwrap_or_default();
        LeaseHolder {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renewed_at: spec.renew_time.as_ref().and_then(micro_time_utc),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }))
}

/// A `MicroTime` as UTC, read through its wire form (RFC 3339), which
/// stays the same whatever time type k8s-openapi wraps.
fn micro_time_utc(
    time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let wire = serde_json::to_value(time).ok()?;
    let parsed = chrono::DateTime::parse_from_rfc3339(wire.as_str()?).ok()?;
    Some(parsed.with_timezone(&chrono::Utc))
}

/// Until when this replica may act; cheap to clone and to check before
/// every external action.
#[derive(Clone, Debug)]
pub struct ActingDeadline(watch::Receiver<Option<Instant>>);

impl ActingDeadline {
    /// The deadline, while it is in the future.
    pub fn acting_until(&self) -> Option<Instant> {
        let deadline = *self.0.borrow();
        deadline.filter(|d| *d > Instant::now())
    }

    /// The latest deadline set, passed or not (`None` before leading or
    /// after losing the Lease to another replica).
    pub fn latest(&self) -> Option<Instant> {
        *self.0.borrow()
    }

    /// How long this replica may still act, or [`LeaderError::NotLeading`].
    pub fn check(&self) -> Result<Duration, LeaderError> {
        self.acting_until()
            .map(|d| d - Instant::now())
            .ok_or(LeaderError::NotLeading)
    }

    /// Waits until the deadline passes or leadership ends.
    pub async fn passed(&mut self) {
        loop {
            let Some(deadline) = self.acting_until() else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                changed = self.0.changed() => {
                    if changed.is_err() {
                        // The campaign ended: wait out the last deadline.
                        tokio::time::sleep_until(deadline).await;
                        return;
                    }
                }
            }
        }
    }
}

/// The journal appends only before the deadline: every action follows a
/// record, so a leader past its deadline acts on nothing more.
impl crate::journal::sink::AppendGuard for ActingDeadline {
    fn may_append(&self) -> Result<(), String> {
        self.check().map(|_| ()).map_err(|e| e.to_string())
    }
}

/// A running campaign: tells when this replica leads and when it stops.
pub struct Leadership {
    deadline: ActingDeadline,
    task: JoinHandle<()>,
    api: Arc<dyn LeaseApi>,
    known: Arc<Mutex<Option<LeaseRecord>>>,
    identity: String,
    timing: LeaseTiming,
}

impl LeaderElection {
    /// Refuses a Lease in a cluster the bot fails over (see the module doc).
    pub fn check_home(&self, config: &crate::config::Config) -> Result<(), String> {
        let target = config
            .environments
            .values()
            .flat_map(|env| &env.clusters)
            .find(|cluster| cluster.context == self.context);
        match target {
            Some(cluster) => Err(format!(
                "--lease-context {} is cluster {}, which the bot fails over: keep the Lease in the bot's home cluster",
                self.context, cluster.name
            )),
            None => Ok(()),
        }
    }

    /// Starts campaigning through the kubeconfig context; returns at once.
    pub async fn campaign(&self) -> Result<Leadership, LeaderError> {
        let client = crate::backend::kube::client_for_context(&self.context, self.tls)
            .await
            .map_err(|reason| LeaderError::Connect {
                context: self.context.clone(),
                reason,
            })?;
        self.campaign_on(client)
    }

    /// Starts campaigning through `client`; returns at once.
    pub fn campaign_on(&self, client: kube::Client) -> Result<Leadership, LeaderError> {
        let api = KubeLease::new(client, &self.namespace, &self.lease_name);
        campaign_with(Arc::new(api), &self.identity, self.timing)
    }
}

/// Starts campaigning for the Lease behind `api`; returns at once.
pub fn campaign_with(
    api: Arc<dyn LeaseApi>,
    identity: &str,
    timing: LeaseTiming,
) -> Result<Leadership, LeaderError> {
    timing.check()?;
    let (tell, deadline) = watch::channel(None);
    let known = Arc::new(Mutex::new(None));
    let campaign = Campaign {
        api: api.clone(),
        identity: identity.to_owned(),
        timing,
        tell,
        known: known.clone(),
        first_seen: None,
    };
    Ok(Leadership {
        deadline: ActingDeadline(deadline),
        task: tokio::spawn(campaign.run()),
        api,
        known,
        identity: identity.to_owned(),
        timing,
    })
}

impl Leadership {
    /// Waits until this replica holds the lease.
    pub async fn acquired(&mut self) {
        loop {
            if self.deadline.acting_until().is_some() {
                return;
            }
            if self.deadline.0.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Waits until this replica may no longer act: the lease was lost, or
    /// its deadline passed without a renewal.
    pub async fn lost(&mut self) {
        self.deadline.passed().await;
    }

    /// The deadline, for checking before each external action.
    pub fn deadline(&self) -> ActingDeadline {
        self.deadline.clone()
    }

    /// Gives the lease up, so another replica takes over at once instead of
    /// after it expires.
    pub async fn release(self) {
        self.task.abort();
        let known = lock(&self.known).clone();
        let Some(record) = known.filter(|r| r.holder.as_deref() == Some(&self.identity)) else {
            return;
        };
        let write = LeaseWrite {
            holder: None,
            duration_seconds: self.timing.duration_seconds(),
            transitions: None,
        };
        let call = self.api.update(&record.version, &write);
        match tokio::time::timeout(self.timing.call_timeout, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(?error, "could not release the lease"),
            Err(_) => tracing::warn!("could not release the lease: no answer in time"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The election loop's state.
struct Campaign {
    api: Arc<dyn LeaseApi>,
    identity: String,
    timing: LeaseTiming,
    /// The acting deadline while leading.
    tell: watch::Sender<Option<Instant>>,
    /// The Lease as last read or written.
    known: Arc<Mutex<Option<LeaseRecord>>>,
    /// When another holder's current record was first seen.
    first_seen: Option<Instant>,
}

impl Campaign {
    async fn run(mut self) {
        loop {
            let started = Instant::now();
            if self.leading() {
                self.renew().await;
            } else {
                self.try_to_lead().await;
            }
            tokio::time::sleep_until(started + self.timing.retry_every).await;
        }
    }

    fn leading(&self) -> bool {
        let deadline = *self.tell.borrow();
        deadline.is_some_and(|d| d > Instant::now())
    }

    /// Runs one call with the lease path's timeout.
    async fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, LeaseCallError>>,
    ) -> Result<T, LeaseCallError> {
        tokio::time::timeout(self.timing.call_timeout, call)
            .await
            .unwrap_or_else(|_| Err(LeaseCallError::Failed("no answer in time".into())))
    }

    fn write(&self, transitions: Option<i32>) -> LeaseWrite {
        LeaseWrite {
            holder: Some(self.identity.clone()),
            duration_seconds: self.timing.duration_seconds(),
            transitions,
        }
    }

    /// Leads on a write that started at `started`.
    fn lead(&self, started: Instant, record: LeaseRecord) {
        let deadline = started + self.timing.acting_time();
        *lock(&self.known) = Some(record);
        let was_leading = self.leading();
        self.tell.send_replace(Some(deadline));
        if !was_leading {
            tracing::info!(identity = %self.identity, "leading");
        }
    }

    fn step_down(&mut self, why: &str) {
        if self.tell.send_replace(None).is_some() {
            tracing::error!(identity = %self.identity, why, "stepping down");
        }
    }

    async fn renew(&mut self) {
        let Some(known) = lock(&self.known).clone() else {
            return self.step_down("no Lease record");
        };
        let started = Instant::now();
        let write = self.write(None);
        match self.call(self.api.update(&known.version, &write)).await {
            Ok(record) => self.lead(started, record),
            Err(LeaseCallError::Conflict) => self.after_conflict().await,
            Err(LeaseCallError::Failed(reason)) => {
                tracing::warn!(%reason, "cannot renew the lease");
            }
        }
    }

    /// A renewal found the Lease changed: still ours (someone touched it)
    /// or another replica's.
    async fn after_conflict(&mut self) {
        match self.call(self.api.get()).await {
            Ok(Some(record)) if record.holder.as_deref() == Some(&self.identity) => {
                *lock(&self.known) = Some(record);
            }
            Ok(found) => {
                self.see(found);
                self.step_down("another replica holds the lease");
            }
            Err(_) => self.step_down("the lease changed and cannot be read"),
        }
    }

    /// Remembers a record held by another, and since when it is unchanged.
    fn see(&mut self, record: Option<LeaseRecord>) {
        let mut known = lock(&self.known);
        let changed = known.as_ref().map(|k| &k.version) != record.as_ref().map(|r| &r.version);
        if changed || self.first_seen.is_none() {
            self.first_seen = Some(Instant::now());
        }
        *known = record;
    }

    async fn try_to_lead(&mut self) {
        let Ok(found) = self.call(self.api.get()).await else {
            return;
        };
        let Some(record) = found else {
            let started = Instant::now();
            if let Ok(created) = self.call(self.api.create(&self.write(Some(0)))).await {
                self.lead(started, created);
            }
            return;
        };
        let ours = record.holder.as_deref() == Some(&self.identity);
        let free = record.holder.is_none();
        self.see(Some(record.clone()));
        if !ours && !free && !self.expired(&record) {
            return;
        }
        let transitions = (!ours).then_some(record.transitions.saturating_add(1));
        let started = Instant::now();
        let write = self.write(transitions);
        if let Ok(taken) = self.call(self.api.update(&record.version, &write)).await {
            self.lead(started, taken);
        }
    }

    /// The holder has not renewed for its whole duration, by this
    /// replica's clock.
    fn expired(&self, record: &LeaseRecord) -> bool {
        let seconds = record
            .duration_seconds
            .filter(|s| *s > 0)
            .map_or(self.timing.duration, |s| Duration::from_secs(s as u64));
        self.first_seen
            .is_some_and(|seen| seen.elapsed() >= seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// One Lease in memory, shared by replicas; each replica's view can be
    /// made silent (calls never answer), as a home API server that stalls.
    #[derive(Default)]
    struct Shared {
        lease: Mutex<Option<LeaseRecord>>,
        next_version: Mutex<u64>,
    }

    struct View {
        shared: Arc<Shared>,
        silent: AtomicBool,
    }

    impl View {
        fn new(shared: &Arc<Shared>) -> Arc<View> {
            Arc::new(View {
                shared: shared.clone(),
                silent: AtomicBool::new(false),
            })
        }

        async fn answer(&self) {
            if self.silent.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        }

        fn stored(&self, write: &LeaseWrite, transitions: i32) -> LeaseRecord {
            let mut version = lock(&self.shared.next_version);
            *version += 1;
            LeaseRecord {
                holder: write.holder.clone(),
                duration_seconds: Some(write.duration_seconds),
                transitions: write.transitions.unwrap_or(transitions),
                version: version.to_string(),
            }
        }
    }

    #[async_trait]
    impl LeaseApi for View {
        async fn get(&self) -> Result<Option<LeaseRecord>, LeaseCallError> {
            self.answer().await;
            Ok(lock(&self.shared.lease).clone())
        }

        async fn create(&self, write: &LeaseWrite) -> Result<LeaseRecord, LeaseCallError> {
            self.answer().await;
            let mut lease = lock(&self.shared.lease);
            if lease.is_some() {
                return Err(LeaseCallError::Conflict);
            }
            let record = self.stored(write, 0);
            *lease = Some(record.clone());
            Ok(record)
        }

        async fn update(
            &self,
            version: &str,
            write: &LeaseWrite,
        ) -> Result<LeaseRecord, LeaseCallError> {
            self.answer().await;
            let mut lease = lock(&self.shared.lease);
            let current = lease.clone().ok_or(LeaseCallError::Conflict)?;
            if current.version != version {
                return Err(LeaseCallError::Conflict);
            }
            let record = self.stored(write, current.transitions);
            *lease = Some(record.clone());
            Ok(record)
        }
    }

    const TIMING: LeaseTiming = LeaseTiming {
        duration: Duration::from_secs(15),
        margin: Duration::from_secs(5),
        retry_every: Duration::from_secs(2),
        call_timeout: Duration::from_secs(2),
    };

    async fn leading(api: &Arc<View>, identity: &str) -> (Leadership, Instant) {
        let mut leadership = campaign_with(api.clone(), identity, TIMING).unwrap();
        leadership.acquired().await;
        let at = Instant::now();
        (leadership, at)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_api_server_stops_the_leader_before_another_replica_can_take_over() {
        let shared = Arc::new(Shared::default());
        let (a_view, b_view) = (View::new(&shared), View::new(&shared));
        let (mut a, _) = leading(&a_view, "a").await;
        let mut b = campaign_with(b_view.clone(), "b", TIMING).unwrap();
        // a's renewals keep it leading (and b waiting) well past one duration.
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert!(b.deadline().acting_until().is_none(), "b waits");
        let renewed = a.deadline().acting_until().expect("a still leads");
        let last_renewal_started = renewed - TIMING.acting_time();

        a_view.silent.store(true, Ordering::SeqCst);
        let b_leads = tokio::spawn(async move {
            b.acquired().await;
            Instant::now()
        });
        a.lost().await;
        let a_stopped = Instant::now();
        assert_eq!(a_stopped, last_renewal_started + TIMING.acting_time());
        assert!(matches!(a.deadline().check(), Err(LeaderError::NotLeading)));

        let b_led = b_leads.await.unwrap();
        assert!(
            b_led >= last_renewal_started + TIMING.duration,
            "b took over {:?} after a's last renewal started",
            b_led - last_renewal_started
        );
        assert!(b_led - a_stopped >= TIMING.margin);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_every_call_hangs_stops_at_the_deadline_of_its_acquisition() {
        // Every call hangs from the first renewal on: the deadline set by
        // the acquisition passes, and `lost` returns then, although no call
        // ever fails.
        let shared = Arc::new(Shared::default());
        let view = View::new(&shared);
        let (mut a, acquired) = leading(&view, "a").await;
        view.silent.store(true, Ordering::SeqCst);
        a.lost().await;
        assert!(Instant::now() - acquired <= TIMING.acting_time());
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_lease_was_taken_steps_down_at_its_next_renewal() {
        let shared = Arc::new(Shared::default());
        let view = View::new(&shared);
        let (mut a, _) = leading(&view, "a").await;
        let taken = LeaseRecord {
            holder: Some("intruder".into()),
            duration_seconds: Some(15),
            transitions: 1,
            version: "999".into(),
        };
        *lock(&shared.lease) = Some(taken);
        let stepped_in = tokio::time::timeout(TIMING.retry_every * 2, a.lost()).await;
        assert!(stepped_in.is_ok(), "stepped down at the next renewal");
        assert!(matches!(a.deadline().check(), Err(LeaderError::NotLeading)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_is_taken_at_once() {
        let shared = Arc::new(Shared::default());
        let (a_view, b_view) = (View::new(&shared), View::new(&shared));
        let (a, _) = leading(&a_view, "a").await;
        let mut b = campaign_with(b_view, "b", TIMING).unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(b.deadline().acting_until().is_none(), "a renews: b waits");
        let released = Instant::now();
        a.release().await;
        b.acquired().await;
        assert!(Instant::now() - released <= TIMING.retry_every);
        let lease = lock(&shared.lease).clone().unwrap();
        assert_eq!((lease.holder.as_deref(), lease.transitions), (Some("b"), 1));
    }

    #[test]
    fn timings_under_which_the_deadline_cannot_hold_are_refused() {
        let with = |change: fn(&mut LeaseTiming)| {
            let mut timing = TIMING;
            change(&mut timing);
            timing.check().map_err(|e| e.to_string())
        };
        assert_eq!(with(|_| {}), Ok(()));
        for (change, says) in [
            (
                (|t: &mut LeaseTiming| t.duration = Duration::from_millis(1500))
                    as fn(&mut LeaseTiming),
                "whole number of seconds",
            ),
            (|t| t.margin = t.duration, "less than the lease duration"),
            (
                |t| t.call_timeout = t.margin + Duration::from_millis(1),
                "at most the margin",
            ),
            (
                |t| t.retry_every = Duration::from_secs(9),
                "must fit in duration − margin",
            ),
        ] {
            let error = with(change).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }
}
