//! The stint worker: claims tasks from a durable queue and runs each as one attempt of its node
//! through the engine.
//!
//! A [`Worker`] runs up to `concurrency` tasks at once (a task whose outcome is decided and whose
//! end is being written no longer holds its slot; at most as many such tasks wait on their
//! writes besides). Each claimed task runs as
//! `engine.run_attempt(descriptor, |ctx| handler.run(task, ctx), cancel)`, and its outcome
//! decides how the task ends: finished, failed, cancelled, or back to the queue for its next
//! attempt after the backoff (`TaskEnd::Retry`): no slot sleeps through a backoff, and any
//! worker may take the next attempt. Where the store can, the claim begins each task's attempt
//! in its own transaction, so a task's claim and begin share one commit. A [`Handler`] turns a task's spec into a descriptor and
//! runs it; [`Handlers`] dispatches on the spec's `kind` to registered closures.
//!
//! Beside the claim loop, one background task renews all the worker's claims in one call every
//! quarter of the claim lease (and fences the worker when it cannot), and another recovers
//! abandoned attempts and sweeps expired claims every sweep interval, so the tasks of a worker
//! killed with -9 come back within about one lease.
//!
//! Invariants, stated as absences: the worker never writes a task it no longer holds (every
//! write is conditional on its claim), never starts an attempt beside a live one (the engine's
//! begin refuses it), and no task it spawned outlives [`Worker::run`].
#![deny(missing_docs)]

mod claim;
mod handler;
mod keeper;
mod options;
mod slots;
mod task;
mod worker;

pub use handler::{Handler, Handlers};
pub use options::{
    EngineRecovery, NoopWorkerObserver, Recovery, Shutdown, WorkerError, WorkerObserver,
    WorkerOptions, WorkerReport,
};
/// A source of wake-ups (defined in `stint-ports`, so that adapters implement it).
pub use stint_ports::Wakeups;
pub use worker::Worker;
