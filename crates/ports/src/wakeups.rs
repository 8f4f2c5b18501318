//! The wake-up port: how a store tells an idle worker that a task may have become claimable,
//! without waiting for the worker's next poll.

use std::fmt::Debug;

use async_trait::async_trait;

/// A source of wake-ups from outside the worker: resolves when a task of the worker's queues
/// may have become claimable (PostgreSQL's LISTEN/NOTIFY, SQLite's `data_version`). A wake-up
/// is a hint: the worker claims, and may find nothing. Polling stays the floor.
#[async_trait]
pub trait Wakeups: Send + Sync + Debug + 'static {
    /// Waits for the next wake-up. Must be cancel-safe: the worker drops a pending call
    /// whenever something else wakes it, and calls again; a wake-up that came meanwhile is
    /// kept for the next call (several of them count as one).
    async fn next(&self);
}
