//! Waiting synchronously inside async code without stalling the runtime.
//!
//! The engine makes each record durable under its store's lock before it
//! acts, and a journal in the home cluster answers from another thread: a
//! silent API server can hold that wait for many seconds, and other tasks
//! then wait for the lock. Blocked in place, each of those would take a
//! runtime worker with it; with every worker blocked nothing drives the
//! timers, so the leader's deadline could not pass and the replica would
//! never stop. [`wait`] hands the worker's other tasks (and the timers) to
//! a new thread first, where the runtime allows it.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which blocks, so that the rest of the runtime goes on.
pub fn wait<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        // Outside a runtime, or on a current-thread one (tests, the CLI's
        // own tools), there is nothing to hand over.
        _ => f(),
    }
}
