//! Why the engine could not run an attempt to a recorded end.

use stint_domain::{DomainError, ErrorCode, Ineligible};
use stint_ports::StoreError;

use crate::lease::LeaseLoss;

/// Why the engine could not run an attempt to a recorded end.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The store refused or failed a write. A `Conflict` means another execution owns the
    /// attempt: the compute was stopped and no terminal state was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No lease renewal succeeded for two thirds of the lease (the store was unreachable or too slow):
    /// the compute was stopped and nothing terminal was written, so that the attempt is left to
    /// recovery (`ATTEMPT_ABANDONED`) and no other execution can run beside it.
    #[error(
        "the lease could not be renewed for {unrenewed_ms} ms{}: the attempt was stopped and is \
         left to recovery",
        last_error.as_ref().map(|error| format!(" ({error})")).unwrap_or_default()
    )]
    Fenced {
        /// How long no renewal had succeeded.
        unrenewed_ms: u64,
        /// The last renewal error, when renewals failed rather than hung.
        last_error: Option<StoreError>,
    },
    /// The descriptor cannot be run as given (a zero timeout, heartbeat timeout or lease); no
    /// attempt was started.
    #[error("invalid task: {0}")]
    InvalidDescriptor(String),
    /// The task is not one the engine may run (a cache, an agent, no compute, a separate
    /// worktree or scorers); no attempt was started.
    #[error(transparent)]
    Ineligible(#[from] Ineligible),
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
            Self::Fenced { .. } => ErrorCode::StoreUnavailable,
            Self::InvalidSchema(_) => ErrorCode::InvalidOutput,
            Self::InvalidDescriptor(_) | Self::Ineligible(_) => ErrorCode::TaskFailed,
            Self::Invariant(_) => ErrorCode::TaskFailed,
        }
    }
}

impl From<LeaseLoss> for EngineError {
    fn from(loss: LeaseLoss) -> Self {
        match loss {
            LeaseLoss::Conflict(conflict) => Self::Store(conflict),
            LeaseLoss::Fenced {
                unrenewed_ms,
                last_error,
            } => Self::Fenced {
                unrenewed_ms,
                last_error,
            },
        }
    }
}
