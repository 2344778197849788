//! One rate budget for every Route53 request the bot sends, in which a
//! step's requests go first.
//!
//! Route53 allows 5 API requests per second per AWS account, and the bot
//! shares the account with external-dns (which lists every zone it manages
//! on each sync, every minute by default) and whatever else manages DNS
//! there. A burst past the limit is answered `Throttling`, and a step whose
//! write is throttled past its retries is put back. So the bot spaces its
//! own requests to its share (`routing.route53_requests_per_second`,
//! default [`DEFAULT_REQUESTS_PER_SECOND`], whose doc says why), and when requests wait for a
//! turn, those made for a step ([`as_step`]: its reads, its change batch,
//! its wait for `INSYNC`, its verification) are sent before the others
//! (`status`, `check`, health gates).
//!
//! The budget sits in the SDK's HTTP connector, so it sees every attempt,
//! SDK retries and the bot's own retries included. Which kind a request
//! is comes from a task-local set around the step's calls: the connector
//! is called in the task that awaits the SDK call.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_route53::config::{HttpClient, RuntimeComponents, SharedHttpClient};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use crate::config::{
    DEFAULT_ROUTE53_REQUESTS_PER_SECOND as DEFAULT_REQUESTS_PER_SECOND, ROUTE53_REQUESTS_PER_SECOND,
};

tokio::task_local! {
    /// Set while a step's Route53 work runs.
    static STEP_WORK: ();
}

/// Runs `work` with its Route53 requests ahead of every other waiting one.
pub async fn as_step<F: Future>(work: F) -> F::Output {
    if STEP_WORK.try_with(|_| ()).is_ok() {
        return work.await;
    }
    STEP_WORK.scope((), work).await
}

/// Who a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// A step: sent before any other waiting request.
    Step,
    /// Anything else (`status`, `check`, gates).
    Other,
}

impl Priority {
    /// The priority of requests made by the calling task now.
    pub fn current() -> Priority {
        if STEP_WORK.try_with(|_| ()).is_ok() {
            Priority::Step
        } else {
            Priority::Other
        }
    }
}

#[derive(Debug, Default)]
struct Turns {
    /// When the next request may go.
    next_free: Option<Instant>,
    /// Step requests waiting for a turn: others wait while there are any.
    steps_waiting: usize,
}

/// Requests spaced at least `1 / rate` apart, step requests first.
#[derive(Debug, Default)]
pub struct RateBudget {
    /// Nanoseconds between two requests; 0 is no limit.
    spacing_nanos: AtomicU64,
    turns: Mutex<Turns>,
    /// Told whenever a turn is taken or a waiting step gives up.
    turn_taken: Notify,
}

impl RateBudget {
    /// A budget that never waits (until a rate is set).
    pub fn unlimited() -> RateBudget {
        RateBudget::default()
    }

    pub fn per_second(rate: f64) -> RateBudget {
        let budget = RateBudget::default();
        budget.set_per_second(rate);
        budget
    }

    /// Sets the rate; zero, negative or not a number means no limit.
    pub fn set_per_second(&self, rate: f64) {
        let nanos = if rate.is_finite() && rate > 0.0 {
            (1e9 / rate) as u64
        } else {
            0
        };
        self.spacing_nanos.store(nanos, Ordering::SeqCst);
    }

    fn spacing(&self) -> Duration {
        Duration::from_nanos(self.spacing_nanos.load(Ordering::SeqCst))
    }

    fn turns(&self) -> MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for this request's turn.
    pub async fn take(&self, priority: Priority) {
        if self.spacing().is_zero() {
            return;
        }
        let mut waiting = WaitingStep::enter(self, priority);
        loop {
            let notified = self.turn_taken.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let free_at = {
                let mut turns = self.turns();
                let now = Instant::now();
                let free_at = turns.next_free.unwrap_or(now);
                let behind_a_step = priority == Priority::Other && turns.steps_waiting > 0;
                if !behind_a_step && free_at <= now {
                    turns.next_free = Some(now + self.spacing());
                    waiting.leave(&mut turns);
                    drop(turns);
                    self.turn_taken.notify_waiters();
                    return;
                }
                (!behind_a_step).then_some(free_at)
            };
            match free_at {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// Counts a waiting step request in [`Turns::steps_waiting`] until it
/// takes its turn or is dropped (its caller gave up).
struct WaitingStep<'a> {
    budget: &'a RateBudget,
    counted: bool,
}

impl<'a> WaitingStep<'a> {
    fn enter(budget: &'a RateBudget, priority: Priority) -> WaitingStep<'a> {
        let counted = priority == Priority::Step;
        if counted {
            budget.turns().steps_waiting += 1;
        }
        WaitingStep { budget, counted }
    }

    fn leave(&mut self, turns: &mut Turns) {
        if std::mem::take(&mut self.counted) {
            turns.steps_waiting -= 1;
        }
    }
}

impl Drop for WaitingStep<'_> {
    fn drop(&mut self) {
        if self.counted {
            let mut turns = self.budget.turns();
            self.leave(&mut turns);
            drop(turns);
            self.budget.turn_taken.notify_waiters();
        }
    }
}

/// The SDK's HTTP client with every request waiting for its turn.
pub(super) fn budgeted(inner: SharedHttpClient, budget: Arc<RateBudget>) -> SharedHttpClient {
    SharedHttpClient::new(BudgetedClient { inner, budget })
}

#[derive(Debug)]
struct BudgetedClient {
    inner: SharedHttpClient,
    budget: Arc<RateBudget>,
}

impl HttpClient for BudgetedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(BudgetedConnector {
            inner: self.inner.http_connector(settings, components),
            budget: self.budget.clone(),
        })
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct BudgetedConnector {
    inner: SharedHttpConnector,
    budget: Arc<RateBudget>,
}

impl HttpConnector for BudgetedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        // Read here, in the task that awaits the SDK call.
        let priority = Priority::current();
        let (inner, budget) = (self.inner.clone(), self.budget.clone());
        HttpConnectorFuture::new(async move {
            budget.take(priority).await;
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACING: Duration = Duration::from_millis(500);

    /// When each of `requests` got its turn, as offsets from the start.
    async fn turns(
        budget: Arc<RateBudget>,
        requests: Vec<(&'static str, Priority)>,
    ) -> Vec<(&'static str, Duration)> {
        let start = Instant::now();
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|(name, priority)| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    budget.take(priority).await;
                    (name, start.elapsed())
                })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out.sort_by_key(|(_, at)| *at);
        out
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_to_the_rate() {
        let budget = Arc::new(RateBudget::per_second(2.0));
        let got = turns(budget, vec![("a", Priority::Other); 4]).await;
        let at: Vec<Duration> = got.iter().map(|(_, at)| *at).collect();
        assert_eq!(at, [0, 1, 2, 3].map(|n| SPACING * n));
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_request_goes_before_waiting_others() {
        let budget = Arc::new(RateBudget::per_second(2.0));
        budget.take(Priority::Other).await;
        let others: Vec<_> = (0..3)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move { budget.take(Priority::Other).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        budget.take(Priority::Step).await;
        assert_eq!(started.elapsed(), SPACING - Duration::from_millis(100));
        assert!(
            others.iter().all(|o| !o.is_finished()),
            "the step went first"
        );
        for other in others {
            other.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_that_gives_up_lets_the_others_go() {
        let budget = Arc::new(RateBudget::per_second(2.0));
        budget.take(Priority::Other).await;
        let step = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.take(Priority::Step).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        step.abort();
        let _ = step.await;
        let started = Instant::now();
        budget.take(Priority::Other).await;
        assert!(started.elapsed() <= SPACING, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits_and_as_step_marks_the_task() {
        let budget = RateBudget::unlimited();
        let started = Instant::now();
        for _ in 0..100 {
            budget.take(Priority::Other).await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(Priority::current(), Priority::Other);
        assert_eq!(as_step(async { Priority::current() }).await, Priority::Step);
        let nested = as_step(as_step(async { Priority::current() })).await;
        assert_eq!(nested, Priority::Step);
    }
}
