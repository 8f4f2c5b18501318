//! The one error type of every store, and the conflicts every adapter words the same way.

use std::fmt;
use std::sync::Arc;

use stint_domain::{AttemptKey, ErrorCode, NodeKey, TaskError, TaskId, TaskState};

/// The error a store's driver reported, kept as the source of a [`StoreError`].
pub type StoreErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store, each a case a caller can act on.
///
/// Two errors are equal when they are the same case with the same message; the source is not
/// compared.
#[derive(Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A conditional write matched no row (another execution owns the attempt, or it already
    /// ended), or a unique key was taken by a concurrent writer.
    #[error("{message}")]
    Conflict {
        /// What conflicted.
        message: String,
    },
    /// The store could not be reached, or stayed busy past its timeout. Retrying later may work.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What failed (never a password).
        message: String,
        /// The driver's error, when there was one.
        #[source]
        source: Option<StoreErrorSource>,
    },
    /// The store's URL or options are wrong (an unknown option, a malformed value): the user's
    /// input, not the store, must change.
    #[error("invalid store configuration: {message}")]
    InvalidConfig {
        /// What is wrong, naming the option (never a password).
        message: String,
    },
    /// The store holds something this version cannot use: a corrupt or non-database file, a
    /// schema written by a newer stint, a row that does not decode.
    #[error("store incompatible: {message}")]
    Incompatible {
        /// What is wrong, naming the path or schema version.
        message: String,
        /// The driver's error, when there was one.
        #[source]
        source: Option<StoreErrorSource>,
    },
}

impl StoreError {
    /// A conflict with `message`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
        }
    }

    /// An unavailable store with `message`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// An unavailable store with `message`, caused by the driver's `source`.
    pub fn unavailable_from(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::unavailable(message).caused_by(source)
    }

    /// An invalid configuration with `message`.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            message: message.into(),
        }
    }

    /// An incompatible store with `message`.
    pub fn incompatible(message: impl Into<String>) -> Self {
        Self::Incompatible {
            message: message.into(),
            source: None,
        }
    }

    /// An incompatible store with `message`, caused by the driver's `source`.
    pub fn incompatible_from(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::incompatible(message).caused_by(source)
    }

    /// The same error, caused by the driver's `source`: kept for an unavailable or incompatible
    /// store (the other cases are decided by stint, not by a driver failure, and stay as they are).
    #[must_use]
    pub fn caused_by(self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        let source: Option<StoreErrorSource> = Some(Arc::new(source));
        match self {
            Self::Unavailable { message, .. } => Self::Unavailable { message, source },
            Self::Incompatible { message, .. } => Self::Incompatible { message, source },
            other => other,
        }
    }

    /// `begin_attempt` refused: `node` already has attempt `attempt` in progress.
    pub fn attempt_in_progress(node: &NodeKey, attempt: u32) -> Self {
        Self::conflict(format!(
            "{node} already has attempt {attempt} in progress (if its process died, run `stint \
             recover` or wait for its lease to expire)"
        ))
    }

    /// `begin_attempt` refused: `node` has used every attempt number.
    pub fn attempt_numbers_exhausted(node: &NodeKey) -> Self {
        Self::conflict(format!("{node} has run out of attempt numbers"))
    }

    /// A write for `attempt` matched no row: it ended, was declared abandoned, or is owned by
    /// another execution.
    pub fn not_owned(attempt: &AttemptKey) -> Self {
        Self::conflict(format!(
            "{attempt} is no longer in progress under this owner (it ended, or was declared \
             abandoned)"
        ))
    }

    /// `enqueue` refused a batch: the task at `position` (from 0) is invalid; nothing was stored.
    /// A conflict, like every refusal of what the store already holds or must hold.
    pub fn invalid_task(position: usize, why: &str) -> Self {
        Self::conflict(format!(
            "task {position} of the batch is invalid ({why}); nothing was enqueued"
        ))
    }

    /// A write for a claimed `task` matched no row: it is not running under this owner (it
    /// ended, was swept after its lease expired, or never existed).
    pub fn task_not_owned(task: TaskId) -> Self {
        Self::conflict(format!(
            "{task} is no longer running under this owner (it ended, or its lease expired and \
             it went back to the queue)"
        ))
    }

    /// `retry` refused: `task` is in `state` (`None`: no such task).
    pub fn task_not_retryable(task: TaskId, state: Option<TaskState>) -> Self {
        match state {
            Some(state) => Self::conflict(format!(
                "{task} is {state}: only a failed or cancelled task can be retried"
            )),
            None => Self::conflict(format!("{task} does not exist (or was pruned)")),
        }
    }

    /// `retry` refused: `holder`, which has not ended, holds the unique key of `task`.
    pub fn unique_key_held(task: TaskId, key: &str, holder: TaskId) -> Self {
        Self::conflict(format!(
            "{task} cannot be retried: its unique key '{key}' is held by {holder}, which has not \
             ended"
        ))
    }

    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Conflict { .. } => ErrorCode::StoreConflict,
            Self::Unavailable { .. } => ErrorCode::StoreUnavailable,
            Self::Incompatible { .. } => ErrorCode::StoreIncompatible,
            Self::InvalidConfig { .. } => ErrorCode::StoreInvalidConfig,
        }
    }

    /// The message without the case's prefix.
    pub fn message(&self) -> &str {
        match self {
            Self::Conflict { message }
            | Self::Unavailable { message, .. }
            | Self::InvalidConfig { message }
            | Self::Incompatible { message, .. } => message,
        }
    }

    /// Whether this is a conflict: another execution owns the attempt, or a key was taken.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// The `{code, message, details}` form of this error.
    pub fn to_task_error(&self) -> TaskError {
        TaskError::new(self.code(), self.to_string())
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("StoreError");
        debug
            .field("code", &self.code())
            .field("message", &self.message());
        if let Some(source) = std::error::Error::source(self) {
            debug.field("source", &source.to_string());
        }
        debug.finish()
    }
}

impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code() && self.message() == other.message()
    }
}

impl Eq for StoreError {}

impl From<StoreError> for TaskError {
    fn from(error: StoreError) -> Self {
        error.to_task_error()
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn the_source_is_kept_and_not_compared() {
        let io = std::io::Error::other("connection reset");
        let error = StoreError::unavailable_from("reading runs", io);
        assert_eq!(error.to_string(), "store unavailable: reading runs");
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("connection reset")
        );
        assert_eq!(error, StoreError::unavailable("reading runs"));
        assert_ne!(error, StoreError::incompatible("reading runs"));
    }

    #[test]
    fn caused_by_keeps_a_driver_failure_and_leaves_stints_own_decisions() {
        let io = || std::io::Error::other("reset");
        let unavailable = StoreError::unavailable("reading").caused_by(io());
        assert_eq!(
            unavailable.source().map(ToString::to_string).as_deref(),
            Some("reset")
        );
        let incompatible = StoreError::incompatible("decoding").caused_by(io());
        assert!(incompatible.source().is_some());
        let conflict = StoreError::conflict("taken").caused_by(io());
        assert_eq!(conflict, StoreError::conflict("taken"));
        assert!(conflict.source().is_none());
    }

    #[test]
    fn conflicts_name_the_attempt_and_node() {
        let node = NodeKey::new("r", "n", 0).expect("valid key");
        let owned = StoreError::not_owned(&node.attempt(2));
        assert!(owned.is_conflict());
        assert!(owned.message().contains(&node.attempt(2).to_string()));
        let busy = StoreError::attempt_in_progress(&node, 3);
        assert_eq!(busy.code(), ErrorCode::StoreConflict);
        assert!(busy.message().contains("attempt 3 in progress"));
    }
}
