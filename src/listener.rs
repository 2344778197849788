//! The HTTP listener under `--listen`: it accepts connections for
//! [`health`](crate::health)'s routes (and, through them, Slack's Events
//! API) within limits that a few hostile or broken clients cannot exhaust.
//!
//! - At most [`Limits::max_connections`] connections are served at once
//!   (a semaphore taken before `accept`): the rest wait in the kernel's
//!   listen backlog until one closes, costing the bot nothing.
//! - A request's head must arrive within [`Limits::header_read_timeout`]
//!   (hyper's HTTP/1 `header_read_timeout`, which also runs while a
//!   connection sits idle before a request), or the connection is closed:
//!   a client that trickles its headers, or connects and says nothing,
//!   holds its slot for that long at most.
//! - hyper's read buffer is capped at [`MAX_READ_BUFFER`], so a connection
//!   costs a few tens of kilobytes whatever its client sends.
//!
//! Body limits belong to the routes that read bodies (see
//! [`slack::http`](crate::slack::http)).
//!
//! Only HTTP/1.1 is served: Slack, ingress controllers, kubelet probes and
//! Prometheus all speak it, and it keeps one code path to bound.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// How long a request's head may take to arrive. Slack gives up on a
/// request it has not had an answer to within 3 seconds (and retries it),
/// so headers still arriving after that belong to no request worth
/// serving; Slack, probes and Prometheus send theirs in one packet.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections served at once. Each costs at most its read buffer and a
/// capped body (64 KiB, in `slack::http`), so 256 of them stay under
/// ~25 MB; the bot's own clients (Slack through an ingress, two probes,
/// Prometheus) need a handful.
pub const MAX_CONNECTIONS: usize = 256;

/// hyper's per-connection read buffer cap (its minimum is 8 KiB; its
/// default, ~400 KiB, would let 256 connections hold 100 MB). Slack's
/// request heads are well under 4 KiB.
pub const MAX_READ_BUFFER: usize = 16 * 1024;

/// After an accept error (out of file descriptors, say), wait this long
/// before the next accept instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The connection-level limits; [`Limits::default`] is production's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` within `limits`, in a task.
pub fn serve(listener: TcpListener, router: Router, limits: Limits) -> JoinHandle<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            // Taken before accepting: at the cap, new connections wait
            // in the backlog rather than being accepted and starved.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let router = router.clone();
            tokio::spawn(async move {
                serve_connection(stream, router, limits).await;
                drop(slot);
            });
        }
    })
}

async fn serve_connection(stream: tokio::net::TcpStream, router: Router, limits: Limits) {
    let _ = stream.set_nodelay(true);
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_READ_BUFFER)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
        .await;
    if let Err(error) = served {
        // Timeouts and clients that hang up are routine here.
        tracing::debug!(%error, "connection ended");
    }
}
