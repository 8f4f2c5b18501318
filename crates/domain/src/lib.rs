//! Pure rules of stint.
//!
//! This crate owns the vocabulary (node keys, attempt states, events, errors) and every rule that
//! can be stated without I/O: the attempt state machine, the retry decision, budget and backoff,
//! the heartbeat payload rules, the heartbeat coalescing rule and the
//! watchdog staleness rule.
//!
//! Invariants, stated as absences: nothing here reads a clock (time is passed in as milliseconds),
//! nothing here performs I/O, and nothing here depends on an async runtime or a database crate.
#![deny(missing_docs)]

pub mod descriptor;
pub mod error;
pub mod event;
pub mod heartbeat;
pub mod key;
pub mod machine;
pub mod record;
pub mod retry;
pub mod task;

pub use descriptor::{Eligibility, Ineligible, TaskDescriptor, TaskMetadata};
pub use error::{DomainError, ErrorCode, TaskError};
pub use event::{Event, EventKind, EventRecord};
pub use heartbeat::{HeartbeatPayloadError, PayloadInfo};
pub use key::{AttemptKey, NodeKey};
pub use machine::{AttemptCommand, AttemptMachine, AttemptState};
pub use record::{AttemptRecord, NodeRecord, ProcessPlace, RunSummary};
pub use retry::{BackoffError, BackoffPolicy, RetryPolicy};
pub use task::{QueueStats, TaskId, TaskRecord, TaskState};

/// Milliseconds since the Unix epoch: the one unit of time in stint's records.
pub type Millis = u64;

/// The JSON Schemas of every event, record and error, by name (as `stint schema NAME` prints
/// them and `schemas/NAME.json` holds them).
pub fn json_schemas() -> Vec<(&'static str, schemars::Schema)> {
    vec![
        ("event", schemars::schema_for!(EventRecord)),
        ("attempt", schemars::schema_for!(AttemptRecord)),
        ("node", schemars::schema_for!(NodeRecord)),
        ("run", schemars::schema_for!(RunSummary)),
        ("error", schemars::schema_for!(TaskError)),
        ("task-descriptor", schemars::schema_for!(TaskDescriptor)),
        ("task", schemars::schema_for!(TaskRecord)),
        ("queue-stats", schemars::schema_for!(QueueStats)),
    ]
}
