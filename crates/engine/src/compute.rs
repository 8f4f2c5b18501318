//! The types a compute and a caller of the engine see: context, failures, options, outcomes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stint_domain::machine::RetryPlan;
use stint_domain::{
    AttemptKey, AttemptState, DomainError, ErrorCode, HeartbeatPayloadError, TaskError,
};
use stint_ports::StoreError;
use tokio_util::sync::CancellationToken;

use crate::heartbeat::Heartbeat;

/// What a compute receives: who it is, when to stop, where the last attempt left off, and how
/// to report progress.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The attempt being run (run id, node id, iteration, attempt number).
    pub key: AttemptKey,
    /// Cancelled when the outcome was decided by something other than the compute (timeout,
    /// heartbeat timeout, external cancellation, ownership loss). The compute then has
    /// [`EngineOptions::cancel_grace`] to clean up before it is dropped.
    pub cancel: CancellationToken,
    /// The last heartbeat payload of the newest earlier attempt that recorded one.
    pub checkpoint: Option<Value>,
    /// The heartbeat handle.
    pub heartbeat: Heartbeat,
}

/// How a compute failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct TaskFailure {
    /// The error recorded with the attempt.
    pub error: TaskError,
    /// Whether another attempt may follow (within the retry budget).
    pub retryable: bool,
    /// A delay that overrides the backoff policy before the next attempt.
    pub retry_after: Option<Duration>,
}

impl TaskFailure {
    /// A retryable `TASK_FAILED` with `message`.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            error: TaskError::task_failed(message),
            retryable: true,
            retry_after: None,
        }
    }

    /// A `TASK_FAILED` with `message` that is never retried.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::retryable(message)
        }
    }

    /// The same failure with `details` attached to its error.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.error.details = details;
        self
    }

    /// The same failure, asking for the next attempt after `delay` instead of the backoff.
    #[must_use]
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }
}

impl From<HeartbeatPayloadError> for TaskFailure {
    /// An invalid heartbeat payload is a bug in the task: retrying would repeat it.
    fn from(error: HeartbeatPayloadError) -> Self {
        Self {
            error: error.to_task_error(),
            retryable: false,
            retry_after: None,
        }
    }
}

impl From<TaskError> for TaskFailure {
    fn from(error: TaskError) -> Self {
        Self {
            retryable: error.code.retryable_by_default(),
            error,
            retry_after: None,
        }
    }
}

/// Hooks for progress displays; every method has an empty default.
///
/// Called synchronously from the engine: keep them short and never block.
pub trait Observer: Send + Sync {
    /// An attempt began; `checkpoint` is what it was handed.
    fn attempt_started(&self, _key: &AttemptKey, _checkpoint: Option<&Value>) {}
    /// A heartbeat was written (after coalescing); `payload` is `None` for a bare ping.
    fn heartbeat(&self, _key: &AttemptKey, _payload: Option<&Value>) {}
    /// An attempt reached its terminal state.
    fn attempt_ended(&self, _outcome: &AttemptOutcome) {}
    /// Attempt `next_attempt` will start after `delay`.
    fn retry_scheduled(&self, _next_attempt: u32, _delay: Duration) {}
}

/// An [`Observer`] that observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// How the engine runs attempts.
#[derive(Clone)]
pub struct EngineOptions {
    /// The directory the VCS revision is read in; the current directory when `None`.
    pub working_dir: Option<PathBuf>,
    /// How long a compute may keep running after its token was cancelled, to clean up.
    pub cancel_grace: Duration,
    /// A random fraction in `[0, 1]` for the backoff's jitter.
    pub jitter: Arc<dyn Fn() -> f64 + Send + Sync>,
    /// Progress hooks.
    pub observer: Arc<dyn Observer>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            working_dir: None,
            cancel_grace: Duration::from_secs(10),
            jitter: Arc::new(rand::random::<f64>),
            observer: Arc::new(NoopObserver),
        }
    }
}

impl fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineOptions")
            .field("working_dir", &self.working_dir)
            .field("cancel_grace", &self.cancel_grace)
            .finish_non_exhaustive()
    }
}

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

/// Why the engine could not run an attempt to a recorded end.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The store refused or failed a write. A `Conflict` means another execution owns the
    /// attempt: the compute was stopped and no terminal state was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The descriptor's output schema is not a valid JSON Schema.
    #[error("invalid output schema: {0}")]
    InvalidSchema(String),
    /// The engine broke a rule of the attempt state machine (a bug in the engine).
    #[error("engine invariant broken: {0}")]
    Invariant(#[from] DomainError),
}

impl EngineError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Store(error) => error.code(),
            Self::InvalidSchema(_) => ErrorCode::InvalidOutput,
            Self::Invariant(_) => ErrorCode::TaskFailed,
        }
    }
}
