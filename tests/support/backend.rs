//! Test doubles of [`RoutingBackend`]: [`Hooked`] delegates every method to
//! a real backend and runs only the hooks a double sets, so each double
//! states what it changes and nothing else. [`FaultyBackend`] is the engine
//! tests' double: it fails writes, edits weights behind the bot's back and
//! records every state the clusters pass through.

use std::collections::HashSet;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use failover_bot::backend::memory::MemoryBackend;
use failover_bot::backend::{
    BackendError, Convergence, GateFailure, Removal, RoutingBackend, Snapshot, Written,
};
use failover_bot::config::gates::DeploymentRef;
use failover_bot::config::{ClusterConfig, EnvironmentConfig};
use failover_bot::plan::Weights;

/// One write the engine asks of a backend, as a hook sees it.
#[derive(Clone, Copy, Debug)]
pub enum Write<'a> {
    SetWeight {
        cluster: &'a ClusterConfig,
        weight: u8,
        expected_version: Option<&'a str>,
    },
    Create {
        cluster: &'a ClusterConfig,
    },
    Delete {
        cluster: &'a ClusterConfig,
        expected_version: Option<&'a str>,
    },
}

impl Write<'_> {
    pub fn cluster(&self) -> &ClusterConfig {
        match self {
            Write::SetWeight { cluster, .. }
            | Write::Create { cluster }
            | Write::Delete { cluster, .. } => cluster,
        }
    }
}

/// Runs before a write reaches the real backend; an error is the write's
/// answer, and the real backend never sees it.
type BeforeWrite<S> = Box<dyn Fn(&S, &Write<'_>) -> Result<(), BackendError> + Send + Sync>;
/// Runs after the real backend answered a write.
type AfterWrite<S> = Box<dyn Fn(&S, &Write<'_>, &Result<Written, BackendError>) + Send + Sync>;
/// Replaces [`RoutingBackend::write_all`]: (env, before, after).
type WriteAll<S> = Box<
    dyn Fn(&S, &EnvironmentConfig, &Weights, &Weights) -> Option<Result<Written, BackendError>>
        + Send
        + Sync,
>;

/// Runs before [`RoutingBackend::verify`].
type BeforeVerify<S> = Box<dyn Fn(&S) + Send + Sync>;

/// A backend that delegates to `inner`, except where a hook is set. `S` is
/// the double's own state (what its hooks share with the test), reached
/// through `Deref`. Add a hook here when a double needs another method.
pub struct Hooked<S = ()> {
    inner: Arc<dyn RoutingBackend>,
    state: S,
    before_write: Option<BeforeWrite<S>>,
    after_write: Option<AfterWrite<S>>,
    write_all: Option<WriteAll<S>>,
    before_verify: Option<BeforeVerify<S>>,
}

impl<S> Hooked<S> {
    pub fn new(inner: Arc<dyn RoutingBackend>, state: S) -> Self {
        Self {
            inner,
            state,
            before_write: None,
            after_write: None,
            write_all: None,
            before_verify: None,
        }
    }

    /// Before every `verify` (the wait for what serves traffic to carry
    /// the weights): a test's clock moves on there, say.
    pub fn before_verify(mut self, hook: impl Fn(&S) + Send + Sync + 'static) -> Self {
        self.before_verify = Some(Box::new(hook));
        self
    }

    /// Before every `set_weight`, `create` and `delete`.
    pub fn before_write(
        mut self,
        hook: impl Fn(&S, &Write<'_>) -> Result<(), BackendError> + Send + Sync + 'static,
    ) -> Self {
        self.before_write = Some(Box::new(hook));
        self
    }

    /// After every `set_weight`, `create` and `delete` the real backend
    /// answered (not after one [`Hooked::before_write`] refused).
    pub fn after_write(
        mut self,
        hook: impl Fn(&S, &Write<'_>, &Result<Written, BackendError>) + Send + Sync + 'static,
    ) -> Self {
        self.after_write = Some(Box::new(hook));
        self
    }

    /// Instead of the real backend's `write_all`.
    pub fn write_all(
        mut self,
        hook: impl Fn(&S, &EnvironmentConfig, &Weights, &Weights) -> Option<Result<Written, BackendError>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.write_all = Some(Box::new(hook));
        self
    }

    /// `write` through the hooks, with `send` doing the real write.
    async fn hooked_write(
        &self,
        write: Write<'_>,
        send: impl std::future::Future<Output = Result<Written, BackendError>>,
    ) -> Result<Written, BackendError> {
        if let Some(before) = &self.before_write {
            before(&self.state, &write)?;
        }
        let result = send.await;
        if let Some(after) = &self.after_write {
            after(&self.state, &write, &result);
        }
        result
    }
}

impl<S> Deref for Hooked<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.state
    }
}

#[async_trait]
impl<S: Send + Sync> RoutingBackend for Hooked<S> {
    async fn read(&self, env: &EnvironmentConfig) -> Result<Snapshot, BackendError> {
        self.inner.read(env).await
    }

    async fn check_identity(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        self.inner.check_identity(cluster).await
    }

    async fn missing_permissions(&self, cluster: &ClusterConfig) -> Option<Vec<String>> {
        self.inner.missing_permissions(cluster).await
    }
    async fn check_health(&self, cluster: &ClusterConfig) -> Result<(), GateFailure> {
        self.inner.check_health(cluster).await
    }

    async fn set_weight(
        &self,
        cluster: &ClusterConfig,
        weight: u8,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        let write = Write::SetWeight {
            cluster,
            weight,
            expected_version,
        };
        let send = self.inner.set_weight(cluster, weight, expected_version);
        self.hooked_write(write, send).await
    }

    async fn create(&self, cluster: &ClusterConfig) -> Result<Written, BackendError> {
        let send = self.inner.create(cluster);
        self.hooked_write(Write::Create { cluster }, send).await
    }

    async fn delete(
        &self,
        cluster: &ClusterConfig,
        expected_version: Option<&str>,
    ) -> Result<Written, BackendError> {
        let write = Write::Delete {
            cluster,
            expected_version,
        };
        let send = self.inner.delete(cluster, expected_version);
        self.hooked_write(write, send).await
    }

    async fn verify(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        if let Some(hook) = &self.before_verify {
            hook(&self.state);
        }
        self.inner.verify(env, expected).await
    }

    async fn observe(
        &self,
        env: &EnvironmentConfig,
        expected: &Weights,
    ) -> Result<Vec<Convergence>, BackendError> {
        self.inner.observe(env, expected).await
    }

    async fn write_all(
        &self,
        env: &EnvironmentConfig,
        before: &Weights,
        after: &Weights,
    ) -> Option<Result<Written, BackendError>> {
        match &self.write_all {
            Some(hook) => hook(&self.state, env, before, after),
            None => self.inner.write_all(env, before, after).await,
        }
    }

    fn removal(&self) -> Removal {
        self.inner.removal()
    }

    async fn ready_replicas(
        &self,
        cluster: &ClusterConfig,
        deployment: &DeploymentRef,
    ) -> Result<Option<u32>, BackendError> {
        self.inner.ready_replicas(cluster, deployment).await
    }
}

/// A point in time the backend passed through: the journal's line count
/// then, and every routed cluster's weight.
#[derive(Clone, Debug)]
pub struct Observed {
    pub journal_lines: usize,
    pub weights: Weights,
}

/// The in-memory backend with faults: writes fail on chosen clusters,
/// someone else edits a weight right before our write (a conflict), and
/// the weights before and after every write are recorded.
pub type FaultyBackend = Hooked<Faults>;

/// What a [`FaultyBackend`] injects and records.
pub struct Faults {
    pub memory: Arc<MemoryBackend>,
    fail_writes: Mutex<HashSet<String>>,
    fail_restores_too: Mutex<bool>,
    edit_before_write: Mutex<Option<(String, u8)>>,
    journal: Mutex<Option<PathBuf>>,
    pub trail: Mutex<Vec<Observed>>,
    writes: AtomicU64,
}

impl FaultyBackend {
    pub fn over(memory: Arc<MemoryBackend>) -> FaultyBackend {
        let faults = Faults {
            memory: memory.clone(),
            fail_writes: Mutex::default(),
            fail_restores_too: Mutex::new(false),
            edit_before_write: Mutex::default(),
            journal: Mutex::default(),
            trail: Mutex::default(),
            writes: AtomicU64::new(0),
        };
        Hooked::new(memory, faults)
            .before_write(|faults, write| faults.before_write(&write.cluster().name))
            .after_write(|faults, _, _| faults.after_write())
    }
}

impl Faults {
    /// Every write to `cluster` fails from now on (restores too, if
    /// `restores_too`; otherwise only the first write of a step fails).
    pub fn fail_writes_to(&self, cluster: &str, restores_too: bool) {
        self.fail_writes.lock().unwrap().insert(cluster.to_owned());
        *self.fail_restores_too.lock().unwrap() = restores_too;
    }

    pub fn heal(&self) {
        self.fail_writes.lock().unwrap().clear();
    }

    /// Right before our next write, someone else sets `cluster` to `weight`.
    pub fn edit_before_next_write(&self, cluster: &str, weight: u8) {
        *self.edit_before_write.lock().unwrap() = Some((cluster.to_owned(), weight));
    }

    /// Count journal lines at every observation.
    pub fn watch_journal(&self, path: &Path) {
        *self.journal.lock().unwrap() = Some(path.to_owned());
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn observe(&self) {
        let lines = self
            .journal
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map_or(0, |t| t.lines().count());
        self.trail.lock().unwrap().push(Observed {
            journal_lines: lines,
            weights: self.memory.weights(),
        });
    }

    fn before_write(&self, cluster: &str) -> Result<(), BackendError> {
        if let Some((name, weight)) = self.edit_before_write.lock().unwrap().take() {
            self.memory.edit_weight(&name, Some(weight));
        }
        let mut failing = self.fail_writes.lock().unwrap();
        if failing.contains(cluster) {
            if !*self.fail_restores_too.lock().unwrap() {
                failing.remove(cluster);
            }
            return Err(BackendError::Failed {
                cluster: cluster.to_owned(),
                reason: "injected failure".into(),
            });
        }
        self.observe();
        Ok(())
    }

    fn after_write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.observe();
    }
}
