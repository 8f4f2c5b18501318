//! Errors: the stable codes users see, their JSON form, and the errors of the pure rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::machine::{AttemptCommandKind, AttemptState};

/// The stable code of every error that reaches a user: scripts and the JSON forms match on it, so
/// a code keeps its name and meaning from one version to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The attempt was cancelled from outside.
    TaskAborted,
    /// The attempt ran past its timeout.
    TaskTimeout,
    /// The task stopped heartbeating for longer than its heartbeat timeout.
    TaskHeartbeatTimeout,
    /// A heartbeat payload held a value JSON cannot carry (NaN, infinity).
    HeartbeatPayloadNotJsonSerializable,
    /// A heartbeat payload was larger than the limit, or nested deeper than the limit.
    HeartbeatPayloadTooLarge,
    /// The task's output did not match its output schema, or was not JSON.
    InvalidOutput,
    /// The compute's own error; its message is kept.
    TaskFailed,
    /// The process running the attempt died; found by recovery after the lease expired.
    AttemptAbandoned,
    /// A conditional write matched no row: someone else owns the attempt or node.
    StoreConflict,
    /// The store could not be reached or did not answer in time.
    StoreUnavailable,
    /// The store holds data this version cannot read (corrupt file, newer schema).
    StoreIncompatible,
    /// The store's URL or options are wrong.
    StoreInvalidConfig,
}

impl ErrorCode {
    /// The code as written in JSON and in one-line error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskAborted => "TASK_ABORTED",
            Self::TaskTimeout => "TASK_TIMEOUT",
            Self::TaskHeartbeatTimeout => "TASK_HEARTBEAT_TIMEOUT",
            Self::HeartbeatPayloadNotJsonSerializable => "HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE",
            Self::HeartbeatPayloadTooLarge => "HEARTBEAT_PAYLOAD_TOO_LARGE",
            Self::InvalidOutput => "INVALID_OUTPUT",
            Self::TaskFailed => "TASK_FAILED",
            Self::AttemptAbandoned => "ATTEMPT_ABANDONED",
            Self::StoreConflict => "STORE_CONFLICT",
            Self::StoreUnavailable => "STORE_UNAVAILABLE",
            Self::StoreIncompatible => "STORE_INCOMPATIBLE",
            Self::StoreInvalidConfig => "STORE_INVALID_CONFIG",
        }
    }

    /// Whether a failure with this code may be retried by default: one that another attempt may
    /// not meet (a timeout, the task's own failure, a dead process, an unreachable store), as
    /// opposed to one it would meet again (a cancellation, an invalid payload or output, a store
    /// conflict, an incompatible or misconfigured store).
    pub fn retryable_by_default(self) -> bool {
        matches!(
            self,
            Self::TaskTimeout
                | Self::TaskHeartbeatTimeout
                | Self::TaskFailed
                | Self::AttemptAbandoned
                | Self::StoreUnavailable
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON form of an error: `{code, message, details}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskError {
    /// The stable code.
    pub code: ErrorCode,
    /// One human-readable line.
    pub message: String,
    /// Structured facts about the error (null when there are none).
    #[serde(default)]
    pub details: Value,
}

impl TaskError {
    /// An error with no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// The same error with `details` attached.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// `TASK_ABORTED`: cancelled from outside.
    pub fn aborted() -> Self {
        Self::new(ErrorCode::TaskAborted, "task was cancelled")
    }

    /// `TASK_TIMEOUT` after `timeout_ms`.
    pub fn timeout(timeout_ms: u64) -> Self {
        Self::new(
            ErrorCode::TaskTimeout,
            format!("timed out after {}", human_ms(timeout_ms)),
        )
        .with_details(serde_json::json!({ "timeout_ms": timeout_ms }))
    }

    /// `TASK_HEARTBEAT_TIMEOUT`: silent for `stale_for_ms`, longer than `timeout_ms`.
    pub fn heartbeat_timeout(
        stale_for_ms: u64,
        timeout_ms: u64,
        last_heartbeat_at_ms: Option<u64>,
    ) -> Self {
        Self::new(
            ErrorCode::TaskHeartbeatTimeout,
            format!(
                "no heartbeat for {} (heartbeat timeout {})",
                human_ms(stale_for_ms),
                human_ms(timeout_ms)
            ),
        )
        .with_details(serde_json::json!({
            "stale_for_ms": stale_for_ms,
            "timeout_ms": timeout_ms,
            "last_heartbeat_at_ms": last_heartbeat_at_ms,
        }))
    }

    /// `TASK_FAILED`: the compute's own error, message kept.
    pub fn task_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TaskFailed, message)
    }

    /// `ATTEMPT_ABANDONED`: the lease expired at `lease_expired_at_ms`.
    pub fn abandoned(lease_expired_at_ms: u64) -> Self {
        Self::new(
            ErrorCode::AttemptAbandoned,
            "the process running this attempt stopped renewing its lease",
        )
        .with_details(serde_json::json!({ "lease_expired_at_ms": lease_expired_at_ms }))
    }

    /// `INVALID_OUTPUT` with one `{pointer, message}` per schema error.
    pub fn invalid_output(errors: Vec<(String, String)>) -> Self {
        let message = match errors.first() {
            Some((pointer, msg)) if errors.len() == 1 => {
                format!("output does not match its schema at '{pointer}': {msg}")
            }
            Some((pointer, msg)) => format!(
                "output does not match its schema ({} errors; first at '{pointer}': {msg})",
                errors.len()
            ),
            None => "output does not match its schema".to_owned(),
        };
        let list: Vec<Value> = errors
            .into_iter()
            .map(|(pointer, message)| serde_json::json!({ "pointer": pointer, "message": message }))
            .collect();
        Self::new(ErrorCode::InvalidOutput, message)
            .with_details(serde_json::json!({ "errors": list }))
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for TaskError {}

/// An error of the pure rules: a value the rules refuse.
///
/// Non-exhaustive: new rules bring new refusals, and a caller outside this crate keeps compiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// A run id or node id was empty or too long.
    #[error("invalid {field}: {reason}")]
    InvalidKey {
        /// Which field: `run_id` or `node_id`.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A command that the attempt's current state does not allow.
    #[error("cannot {command} an attempt that is {state}")]
    InvalidTransition {
        /// The state the attempt was in.
        state: AttemptState,
        /// The command that was refused.
        command: AttemptCommandKind,
    },
    /// A command for an attempt that was never started.
    #[error("cannot {command} an attempt that was not started")]
    NotStarted {
        /// The command that was refused.
        command: AttemptCommandKind,
    },
}

/// A duration for people: `200 ms`, `1 s`, `1.5 s`, `90 s`; the exact milliseconds stay in the
/// error's details.
fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let (secs, rest) = (ms / 1000, ms % 1000);
    if rest == 0 {
        return format!("{secs} s");
    }
    let fraction = format!("{rest:03}");
    format!("{secs}.{} s", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_speak_in_the_units_people_use() {
        assert_eq!(TaskError::timeout(1000).message, "timed out after 1 s");
        assert_eq!(TaskError::timeout(200).message, "timed out after 200 ms");
        assert_eq!(TaskError::timeout(1500).message, "timed out after 1.5 s");
        assert_eq!(
            TaskError::timeout(90_050).message,
            "timed out after 90.05 s"
        );
        assert_eq!(
            TaskError::heartbeat_timeout(1204, 1000, None).message,
            "no heartbeat for 1.204 s (heartbeat timeout 1 s)"
        );
        // The exact figure stays in the details.
        assert_eq!(TaskError::timeout(1500).details["timeout_ms"], 1500);
    }
}
