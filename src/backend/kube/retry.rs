//! Retrying a cluster's "try again" answers (429, 503, 504) within a bound.
//!
//! kube's own client retries them 15 times with pauses doubling from 5 ms
//! toward 1,000 s and honours any `Retry-After`: a controller can wait, but
//! a chat bot mid-step cannot. An API server that keeps answering 503 would
//! hold a half-done step for minutes before it could be put back. So the
//! bot turns kube's default off and layers kube's own policy back on with
//! few tries, a short maximum pause, and a cap on `Retry-After`.
//!
//! Worst case per request: [`MAX_RETRIES`] pauses of at most
//! [`MAX_PAUSE`], about 1.5 s when the server names no `Retry-After`.

use std::time::Duration;

use hyper::{Request, Response};
use kube::client::retry::RetryPolicy;
use kube::client::Body;
use tokio::time::{Instant, Sleep};
use tower::retry::Policy;
use tower::BoxError;

const MIN_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause, the server's `Retry-After` included.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);
pub const MAX_RETRIES: u32 = 4;
/// Requests waiting for a client's connection pool, per cluster.
pub const QUEUE: usize = 64;

/// kube's [`RetryPolicy`] with every pause capped at [`MAX_PAUSE`].
#[derive(Clone)]
pub struct BoundedRetry(RetryPolicy);

impl BoundedRetry {
    pub fn new() -> Self {
        let policy = RetryPolicy::new(MIN_PAUSE, MAX_PAUSE, MAX_RETRIES, true)
            .expect("constant retry parameters are valid");
        BoundedRetry(policy)
    }
}

impl Default for BoundedRetry {
    fn default() -> Self {
        Self::new()
    }
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for BoundedRetry {
    type Future = Sleep;

    fn retry(
        &mut self,
        request: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Sleep> {
        let pause = self.0.retry(request, result)?;
        let latest = Instant::now() + MAX_PAUSE;
        if pause.deadline() > latest {
            tracing::debug!(?MAX_PAUSE, "capping the server's Retry-After");
            return Some(tokio::time::sleep_until(latest));
        }
        Some(pause)
    }

    fn clone_request(&mut self, request: &Request<Body>) -> Option<Request<Body>> {
        Policy::<Request<Body>, Response<Res>, BoxError>::clone_request(&mut self.0, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request<Body> {
        Request::new(Body::from(Vec::new()))
    }

    fn answer(status: u16, retry_after: Option<&str>) -> Result<Response<()>, BoxError> {
        let mut response = Response::builder().status(status);
        if let Some(seconds) = retry_after {
            response = response.header("Retry-After", seconds);
        }
        Ok(response.body(()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_asking_for_an_hour_waits_at_most_the_cap() {
        let mut policy = BoundedRetry::new();
        let pause = policy
            .retry(&mut request(), &mut answer(429, Some("3600")))
            .expect("429 is retried");
        assert!(pause.deadline() <= Instant::now() + MAX_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cluster_that_keeps_answering_503_is_given_up_on_after_the_bound() {
        let mut policy = BoundedRetry::new();
        let started = Instant::now();
        let mut retries = 0;
        while let Some(pause) = policy.retry(&mut request(), &mut answer(503, None)) {
            retries += 1;
            pause.await;
        }
        assert_eq!(retries, MAX_RETRIES);
        assert!(started.elapsed() <= MAX_PAUSE * MAX_RETRIES);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_may_have_been_acted_on_is_not_retried() {
        let mut policy = BoundedRetry::new();
        for status in [200, 409, 500] {
            assert!(policy
                .retry(&mut request(), &mut answer(status, None))
                .is_none());
        }
    }
}
