//! What a compute is and sees: its context, and how it reports failure.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stint_domain::{AttemptKey, HeartbeatPayloadError, ProcessPlace, TaskError};
use stint_ports::StoreError;
use tokio_util::sync::CancellationToken;

#[cfg(doc)]
use crate::EngineOptions;
use crate::heartbeat::Heartbeat;
use crate::shared::Shared;

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
    /// Where a compute that runs a process group says where it lives.
    pub process: ProcessRecorder,
}

/// What an attempt runs: a closure (or any `FnOnce`) given the [`TaskContext`] that returns a
/// `Send` future of the output or the failure. Every such closure is one.
pub trait ComputeOnce: FnOnce(TaskContext) -> <Self as ComputeOnce>::Future {
    /// The future the compute returns.
    type Future: Future<Output = Result<Value, TaskFailure>> + Send;
}

impl<F, Fut> ComputeOnce for F
where
    F: FnOnce(TaskContext) -> Fut,
    Fut: Future<Output = Result<Value, TaskFailure>> + Send,
{
    type Future = Fut;
}

/// A [`ComputeOnce`] that can be called again, once for each attempt of a node: any `Fn`
/// closure of the same shape. A reference to one is a [`ComputeOnce`].
pub trait Compute: ComputeOnce + Fn(TaskContext) -> <Self as ComputeOnce>::Future {}

impl<F> Compute for F where F: ComputeOnce + Fn(TaskContext) -> <F as ComputeOnce>::Future {}

/// Records where the attempt's process group lives, for a compute that starts one (the CLI's
/// command runner does, right after spawning): recovery on that host then ends a group its dead
/// runner left behind. A compute that runs no process never calls it.
#[derive(Clone)]
pub struct ProcessRecorder {
    shared: Arc<Shared>,
}

impl fmt::Debug for ProcessRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessRecorder")
            .field("attempt", &self.shared.owned.key)
            .finish_non_exhaustive()
    }
}

impl ProcessRecorder {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Writes `place` on the attempt, conditional on its owner and `in-progress` as every write
    /// of the attempt is: a conflict means the attempt already ended or was declared abandoned.
    pub async fn record(&self, place: ProcessPlace) -> Result<(), StoreError> {
        let shared = &self.shared;
        shared.store.record_process(&shared.owned, place).await
    }
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
