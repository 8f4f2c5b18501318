//! The one error type of every store.

use stint_domain::{ErrorCode, TaskError};

/// What can go wrong in a store, each a case a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
        }
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
        }
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

    /// The `{code, message, details}` form of this error.
    pub fn to_task_error(&self) -> TaskError {
        TaskError::new(self.code(), self.to_string())
    }
}

impl From<StoreError> for TaskError {
    fn from(error: StoreError) -> Self {
        error.to_task_error()
    }
}
