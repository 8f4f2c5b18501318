//! Exit codes and the one-line errors of `stint`.
//!
//! Every failure that reaches the user becomes a [`CliError`]: one line `stint: CODE: message` on
//! stderr and one of the stable exit codes below.

use std::process::ExitCode;

use stint_domain::{ErrorCode, TaskError};
use stint_ports::StoreError;

/// The node finished, or the command succeeded.
pub const SUCCESS: u8 = 0;
/// The node failed: retries exhausted, a non-retryable failure, invalid output.
pub const FAILED: u8 = 1;
/// Bad usage or bad input to stint.
pub const USAGE: u8 = 2;
/// A store error: unavailable, incompatible, conflict.
pub const STORE: u8 = 3;
/// Cancelled by Ctrl-C or SIGTERM.
pub const CANCELLED: u8 = 130;

/// A failure to report: its stable code, one line of message and the exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CliError {
    /// The stable code printed before the message (`STORE_UNAVAILABLE`, `USAGE`, ...).
    pub code: String,
    /// What went wrong, on one line.
    pub message: String,
    /// The process exit code.
    pub exit: u8,
}

impl CliError {
    /// A failure with `code`, `message` and exit code `exit`.
    pub fn new(code: impl Into<String>, message: impl Into<String>, exit: u8) -> Self {
        Self {
            code: code.into(),
            message: one_line(&message.into()),
            exit,
        }
    }

    /// Bad usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new("USAGE", message, USAGE)
    }

    /// Bad input to stint, such as an unreadable file (exit 2).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("INVALID_INPUT", message, USAGE)
    }

    /// A task's terminal error (exit 1, or 3 when the store decided it).
    pub fn task(error: &TaskError) -> Self {
        let exit = match error.code {
            ErrorCode::StoreConflict
            | ErrorCode::StoreUnavailable
            | ErrorCode::StoreIncompatible => STORE,
            ErrorCode::StoreInvalidConfig => USAGE,
            ErrorCode::TaskAborted => CANCELLED,
            _ => FAILED,
        };
        Self::new(error.code.as_str(), error.message.clone(), exit)
    }

    /// The exit code as a process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit)
    }
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        // A wrong `--db` URL is bad input to stint, not a store failure.
        let exit = match error {
            StoreError::InvalidConfig { .. } => USAGE,
            _ => STORE,
        };
        Self::new(error.code().as_str(), error.to_string(), exit)
    }
}

/// Joins a multi-line message into one line, so every error stays one line.
pub fn one_line(text: &str) -> String {
    let joined: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    joined.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_exit_three_with_their_code() {
        let error = CliError::from(StoreError::conflict("taken"));
        assert_eq!((error.code.as_str(), error.exit), ("STORE_CONFLICT", STORE));
        assert_eq!(error.to_string(), "STORE_CONFLICT: taken");
    }

    #[test]
    fn a_wrong_store_url_is_bad_input() {
        let error = CliError::from(StoreError::invalid_config("unknown option 'x'"));
        assert_eq!(
            (error.code.as_str(), error.exit),
            ("STORE_INVALID_CONFIG", USAGE)
        );
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\n  b\n\nc"), "a b c");
    }
}
