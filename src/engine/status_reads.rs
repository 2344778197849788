//! `status` reads, single-flight per environment with a short cache.
//!
//! Each `status` reads every cluster and Route53, and Route53 allows 5
//! requests per second per account (shared with external-dns and with the
//! bot's own steps). In an incident many people type `status` at once: a
//! burst of 50 must make one round of reads, not 50, or it throttles the
//! very step they are watching. So a `status` joins the read already under
//! way for its environment, or takes one that started less than
//! [`FRESH_FOR`] ago, and starts its own only otherwise.
//!
//! A reading never outlives a weight change the engine made: the engine
//! calls [`StatusReads::weights_changed`] after every write, and a read
//! that started before it is not handed to anyone who asks after it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long a reading answers further `status` commands.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// One read of an environment, shared by everyone who joins it.
struct Flight<T> {
    started: Instant,
    /// [`StatusReads::weights_changed`] calls before it started.
    writes: u64,
    reading: Arc<OnceCell<T>>,
}

impl<T> Flight<T> {
    /// Whether someone asking now, after `writes` weight changes, may be
    /// answered by this read: it is under way or fresh, and no weight
    /// change came after it started.
    fn answers(&self, writes: u64, fresh_for: Duration) -> bool {
        self.writes == writes && (!self.reading.initialized() || self.started.elapsed() < fresh_for)
    }
}

/// The reads of every environment (tokio time: tests pause it).
pub struct StatusReads<T> {
    fresh_for: Duration,
    writes: AtomicU64,
    flights: Mutex<HashMap<String, Flight<T>>>,
}

impl<T: Clone> StatusReads<T> {
    pub fn new(fresh_for: Duration) -> Self {
        Self {
            fresh_for,
            writes: AtomicU64::new(0),
            flights: Mutex::default(),
        }
    }

    /// The reading of `env`: the one under way or fresh, else `read()`'s.
    pub async fn get<F, Fut>(&self, env: &str, read: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        // If the caller that started the read gives up, the next one
        // waiting runs its own `read` (OnceCell's rule).
        self.flight(env).get_or_init(read).await.clone()
    }

    /// The engine changed weights: later `status` commands read again.
    pub fn weights_changed(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    fn flight(&self, env: &str) -> Arc<OnceCell<T>> {
        let writes = self.writes.load(Ordering::SeqCst);
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = flights
            .get(env)
            .filter(|f| f.answers(writes, self.fresh_for))
        {
            return flight.reading.clone();
        }
        let flight = Flight {
            started: Instant::now(),
            writes,
            reading: Arc::new(OnceCell::new()),
        };
        let reading = flight.reading.clone();
        flights.insert(env.to_owned(), flight);
        reading
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A read that counts itself and takes `took` (tokio time).
    async fn counted(reads: &AtomicUsize, took: Duration) -> usize {
        let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(took).await;
        n
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_joins_one_read() {
        let status = StatusReads::new(FRESH_FOR);
        let reads = AtomicUsize::new(0);
        let answers = futures::future::join_all(
            (0..50).map(|_| status.get("prod", || counted(&reads, Duration::from_millis(300)))),
        )
        .await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|a| *a == 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_answers_until_it_is_stale() {
        let status = StatusReads::new(FRESH_FOR);
        let reads = AtomicUsize::new(0);
        let read = || counted(&reads, Duration::ZERO);
        assert_eq!(status.get("prod", read).await, 1);
        tokio::time::advance(FRESH_FOR - Duration::from_millis(1)).await;
        assert_eq!(status.get("prod", read).await, 1, "still fresh");
        assert_eq!(status.get("dev", read).await, 2, "per environment");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(status.get("prod", read).await, 3, "stale: read again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_weight_change_makes_later_commands_read_again() {
        let status = StatusReads::new(FRESH_FOR);
        let reads = AtomicUsize::new(0);
        let read = || counted(&reads, Duration::ZERO);
        assert_eq!(status.get("prod", read).await, 1);
        status.weights_changed();
        assert_eq!(status.get("prod", read).await, 2);
        assert_eq!(status.get("prod", read).await, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn those_who_joined_before_a_weight_change_keep_their_read() {
        let status = StatusReads::new(FRESH_FOR);
        let reads = AtomicUsize::new(0);
        let slow = || counted(&reads, Duration::from_millis(300));
        let early = status.get("prod", slow);
        let later = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            status.weights_changed();
            status.get("prod", slow).await
        };
        let (early, later) = tokio::join!(early, later);
        assert_eq!((early, later), (1, 2));
    }
}
