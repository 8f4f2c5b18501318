//! The stint attempt engine: runs a task as attempts, each raced against its timers and recorded
//! through the write port.
//!
//! [`Engine::run_attempt`] runs one attempt of a task: it begins the attempt in the store, runs
//! the compute with a [`TaskContext`], races it against the timeout, the heartbeat watchdog,
//! external cancellation and ownership loss, then writes the one terminal state the first of
//! those signals decided. [`Engine::run_node`] loops attempts with backoff until the node
//! finishes, is cancelled or runs out of retries.
//!
//! ```
//! use std::sync::Arc;
//!
//! use serde_json::json;
//! use stint_adapters_memory::MemoryStore;
//! use stint_domain::{AttemptState, NodeKey, TaskDescriptor};
//! use stint_engine::{CancellationToken, Engine, NoVcs, Ports};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(Ports::new(Arc::new(MemoryStore::new()), Arc::new(NoVcs)));
//! let descriptor = TaskDescriptor::new(NodeKey::new("nightly", "count", 0)?);
//! let outcome = engine
//!     .run_node(
//!         &descriptor,
//!         |ctx| async move {
//!             // Resume from the last checkpoint an earlier attempt heartbeated.
//!             let start = ctx.checkpoint.as_ref().and_then(|c| c["done"].as_u64()).unwrap_or(0);
//!             for done in start..10 {
//!                 ctx.heartbeat.beat(json!({ "done": done + 1 }))?;
//!             }
//!             Ok(json!({ "total": 10 }))
//!         },
//!         &CancellationToken::new(),
//!     )
//!     .await?;
//! assert_eq!(outcome.state, AttemptState::Finished);
//! assert_eq!(outcome.output, Some(json!({ "total": 10 })));
//! # Ok(())
//! # }
//! ```
//!
//! Invariants, stated as absences: the engine never polls (timers sleep to exact deadlines),
//! a heartbeat call never waits on I/O, and no task the engine spawned outlives the call that
//! spawned it.
#![deny(missing_docs)]

mod attempt;
mod context;
mod engine;
mod error;
mod heartbeat;
mod lease;
mod metrics;
mod options;
mod outcome;
mod output;
mod ports;
mod prepared;
mod settle;
mod shared;
mod timers;
mod watchdog;

pub use context::{Compute, ComputeOnce, ProcessRecorder, TaskContext, TaskFailure};
pub use engine::{Engine, TaskEndFn};
pub use error::EngineError;
pub use heartbeat::Heartbeat;
pub use lease::LeaseSchedule;
pub use options::{EngineOptions, NoopObserver, Observer};
pub use outcome::{AttemptOutcome, NodeOutcome};
pub use ports::{NoVcs, Ports, SystemClock, TokioClock};
pub use prepared::PreparedAttempt;
pub use stint_domain::HeartbeatPayloadError;
pub use stint_domain::machine::RetryPlan;
pub use tokio_util::sync::CancellationToken;
