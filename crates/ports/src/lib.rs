//! Ports of stint: the async traits the engine needs, and the data that crosses them.
//!
//! Invariants, stated as absences: nothing here knows SQL or any database, nothing here runs a
//! task, and nothing here depends on an async runtime (`async_trait` only).
//!
//! Every write an attempt makes after it began is conditional on `state = in-progress AND owner =
//! token`; a write that matches no row is [`StoreError::Conflict`], so an attempt declared dead can
//! never be finished by its zombie. Every method that changes several rows does so in one
//! transaction, together with the events it is given.
#![deny(missing_docs)]

mod error;
mod store;

pub use error::StoreError;
pub use store::{
    AttemptEnd, AttemptFilter, AttemptStore, BeginAttempt, BegunAttempt, Clock, EventLog,
    HeartbeatWrite, OwnedAttempt, Store, VcsProbe,
};

#[cfg(feature = "mocks")]
pub use store::{MockAttemptStore, MockClock, MockEventLog, MockVcsProbe};
