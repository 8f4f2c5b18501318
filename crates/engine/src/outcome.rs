//! How an attempt and a node ended.

use serde_json::Value;
use stint_domain::machine::RetryPlan;
use stint_domain::{AttemptKey, AttemptState, TaskError};

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    /// The attempt.
    pub key: AttemptKey,
    /// Its terminal state.
    pub state: AttemptState,
    /// The output (key columns removed), when finished.
    pub output: Option<Value>,
    /// Why it failed or was cancelled.
    pub error: Option<TaskError>,
    /// The attempt that follows, when the failure is retried.
    pub retry: Option<RetryPlan>,
    /// When it started (ms since the epoch).
    pub started_at_ms: u64,
    /// When its terminal state was written (ms since the epoch).
    pub finished_at_ms: u64,
    /// Whether the queue task [`Engine::run_task_attempt`](crate::Engine::run_task_attempt)
    /// was given was ended in the attempt's terminal write (always `false` otherwise).
    pub task_ended: bool,
}

/// How a node ended, with every attempt this call ran.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOutcome {
    /// The node's final state. `Cancelled` also when cancellation came during a backoff; the
    /// last attempt then stays `failed` in the store and no further attempt is started.
    pub state: AttemptState,
    /// The output, when finished.
    pub output: Option<Value>,
    /// Why it failed or was cancelled.
    pub error: Option<TaskError>,
    /// The attempts this call ran, in order.
    pub attempts: Vec<AttemptOutcome>,
}
