//! Ports of stint: the async traits the engine and the inspect commands need, and the data that
//! crosses them.
//!
//! Each port is cut to its caller:
//! - [`AttemptStore`], the **write port**: what the engine writes for one attempt (begin,
//!   heartbeat, lease renewal, terminal state) and the recovery of abandoned attempts;
//! - [`HistoryStore`], the **query port**: what inspection reads (runs, attempts, nodes,
//!   outputs, event pages for tailing);
//! - [`VcsProbe`] and [`Clock`], the engine's view of the repository and of time;
//! - [`TaskQueue`] and [`QueueHistory`], the durable queue's write and query ports (a backend
//!   serving both is a [`QueueStore`]), and [`Wakeups`], how a store wakes an idle worker.
//!
//! Every real backend implements both stores, as [`Store`]. The `instrumented` feature adds
//! [`InstrumentedStore`], the one wrapper that counts, slows and fails writes for tests and
//! benchmarks; the `mocks` feature adds mockall mocks of every port.
//!
//! Invariants, stated as absences: nothing here knows SQL or any database, nothing here runs a
//! task, and nothing here depends on an async runtime (`async_trait` only; the `instrumented`
//! feature's delays are the one use of tokio's timer, off by default).
//!
//! Every write an attempt makes after it began is conditional on `state = in-progress AND owner =
//! token`; a write that matches no row is [`StoreError::Conflict`], so an attempt declared dead can
//! never be finished by its zombie. Every method that changes several rows does so in one
//! transaction, together with the events it is given.
#![deny(missing_docs)]

mod error;
#[cfg(feature = "instrumented")]
mod instrumented;
mod probe;
mod query;
mod queue;
mod wakeups;
mod write;

pub use error::{StoreError, StoreErrorSource};
#[cfg(feature = "instrumented")]
pub use instrumented::{InstrumentedStore, WriteOp};
pub use probe::{Clock, VcsProbe};
pub use query::{
    AttemptFilter, EventPage, HistoryStore, RunCursor, RunListing, RunQuery, run_state, unreadable,
};
pub use queue::{
    BeginFor, CancelOutcome, CancelTarget, Claim, ClaimedAndBegun, ClaimedTask, Completion,
    DEFAULT_QUEUE, Enqueued, LastAttempt, NewTask, NodeAttempts, QueueHistory, QueueStore,
    RenewedClaims, TaskEnd, TaskFilter, TaskQueue, sort_claimed,
};
pub use wakeups::Wakeups;
pub use write::{
    AttemptEnd, AttemptEnded, AttemptStore, BeginAttempt, BegunAttempt, EndAttempt, HeartbeatWrite,
    OwnedAttempt, Renewal, RenewedLease,
};

#[cfg(feature = "mocks")]
pub use probe::{MockClock, MockVcsProbe};
#[cfg(feature = "mocks")]
pub use query::MockHistoryStore;
#[cfg(feature = "mocks")]
pub use queue::{MockQueueHistory, MockTaskQueue};
#[cfg(feature = "mocks")]
pub use write::MockAttemptStore;

/// A backend that serves both ports, as every real adapter does.
pub trait Store: AttemptStore + HistoryStore {}

impl<T: AttemptStore + HistoryStore + ?Sized> Store for T {}
