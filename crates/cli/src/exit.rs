//! Exit codes and the one-line errors of `stint`.
//!
//! Every failure that reaches the user becomes a [`CliError`]: one line `stint: CODE: message` on
//! stderr and one of the stable exit codes below. Its [`Code`] is typed: the domain's
//! [`ErrorCode`] (the errors of tasks and stores) or a [`CliCode`] (what only the command line
//! can get wrong). [`Code::exit`] is the one place a code becomes an exit code.

use std::fmt;
use std::process::ExitCode;

use stint_domain::{ErrorCode, TaskError};
use stint_engine::EngineError;
use stint_ports::StoreError;

/// The node finished, or the command succeeded.
pub const SUCCESS: u8 = 0;
/// The node failed (retries exhausted, a non-retryable failure, invalid output), or what was
/// asked for is not recorded (no database, unknown run or node, no current output).
pub const FAILED: u8 = 1;
/// Bad usage or bad input to stint.
pub const USAGE: u8 = 2;
/// A store error: unavailable, incompatible, conflict.
pub const STORE: u8 = 3;
/// A second Ctrl-C, SIGTERM, SIGHUP or SIGQUIT to `stint run` while it was cancelling: it killed
/// the command's process group and exited at once, without recording the attempt's end, which is
/// left to recovery.
pub const LEFT_TO_RECOVERY: u8 = 4;
/// Cancelled by Ctrl-C or SIGTERM.
pub const CANCELLED: u8 = 130;

/// The codes only the command line emits; every other code is the domain's [`ErrorCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CliCode {
    /// The command line does not parse: unknown flag or command, missing or bad value.
    Usage,
    /// A value parses but is wrong: an unreadable file, an invalid id, an unknown schema name,
    /// `heartbeat` outside a task.
    InvalidInput,
    /// A reading command found no database file at `--db` (reading never creates one).
    NoDatabase,
    /// No run with this id is recorded.
    UnknownRun,
    /// The run has no such node (or iteration).
    UnknownNode,
    /// No queued task with this id is stored (never submitted, or pruned).
    UnknownTask,
    /// The node has no current output: it never finished, or a later attempt did not.
    NoOutput,
    /// stdout could not be written (other than its reader going away).
    Stdout,
    /// The reader of stdout went away (`| head`): the command stops, quietly, with exit 0.
    StdoutClosed,
    /// A heartbeat could not be written to the task's heartbeat descriptor.
    HeartbeatWrite,
    /// stint could not start its async runtime or its signal handlers.
    Runtime,
    /// A bug in stint: something that cannot fail did.
    Internal,
}

impl CliCode {
    /// The code as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usage => "USAGE",
            Self::InvalidInput => "INVALID_INPUT",
            Self::NoDatabase => "NO_DATABASE",
            Self::UnknownRun => "UNKNOWN_RUN",
            Self::UnknownNode => "UNKNOWN_NODE",
            Self::UnknownTask => "UNKNOWN_TASK",
            Self::NoOutput => "NO_OUTPUT",
            Self::Stdout => "STDOUT",
            Self::StdoutClosed => "STDOUT_CLOSED",
            Self::HeartbeatWrite => "HEARTBEAT_WRITE",
            Self::Runtime => "RUNTIME",
            Self::Internal => "INTERNAL",
        }
    }
}

/// The stable code of a [`CliError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// A code of the domain: a task's or a store's error.
    Domain(ErrorCode),
    /// A code of the command line.
    Cli(CliCode),
}

impl Code {
    /// The code as printed before the message.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Domain(code) => code.as_str(),
            Self::Cli(code) => code.as_str(),
        }
    }

    /// The process exit code of a failure with this code: the one mapping.
    pub fn exit(self) -> u8 {
        match self {
            Self::Domain(code) => match code {
                ErrorCode::TaskAborted => CANCELLED,
                ErrorCode::StoreConflict
                | ErrorCode::StoreUnavailable
                | ErrorCode::StoreIncompatible => STORE,
                // A wrong `--db` URL, or a payload `stint heartbeat` refuses: the user's input.
                ErrorCode::StoreInvalidConfig
                | ErrorCode::HeartbeatPayloadNotJsonSerializable
                | ErrorCode::HeartbeatPayloadTooLarge => USAGE,
                // The node failed: timeout, heartbeat timeout, its own failure, invalid output,
                // abandoned (and any code a later domain adds, until it is placed here).
                _ => FAILED,
            },
            Self::Cli(code) => match code {
                CliCode::StdoutClosed => SUCCESS,
                CliCode::Usage | CliCode::InvalidInput => USAGE,
                CliCode::NoDatabase
                | CliCode::UnknownRun
                | CliCode::UnknownNode
                | CliCode::UnknownTask
                | CliCode::NoOutput
                | CliCode::Stdout
                | CliCode::HeartbeatWrite
                | CliCode::Runtime
                | CliCode::Internal => FAILED,
            },
        }
    }
}

impl From<ErrorCode> for Code {
    fn from(code: ErrorCode) -> Self {
        Self::Domain(code)
    }
}

impl From<CliCode> for Code {
    fn from(code: CliCode) -> Self {
        Self::Cli(code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure to report: its stable code and one line of message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CliError {
    /// The stable code printed before the message; it decides the exit code.
    pub code: Code,
    /// What went wrong, on one line.
    pub message: String,
}

impl CliError {
    /// A failure with `code` and `message` (joined into one line).
    pub fn new(code: impl Into<Code>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: one_line(&message.into()),
        }
    }

    /// Bad usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(CliCode::Usage, message)
    }

    /// Bad input to stint, such as an unreadable file (exit 2).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(CliCode::InvalidInput, message)
    }

    /// A bug in stint (exit 1).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(CliCode::Internal, message)
    }

    /// A task's terminal error.
    pub fn task(error: &TaskError) -> Self {
        Self::new(error.code, error.message.clone())
    }

    /// The exit code of this failure.
    pub fn exit(&self) -> u8 {
        self.code.exit()
    }

    /// The exit code as a process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit())
    }
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        // The code already says which case it is; the message says the rest once.
        Self::new(error.code(), error.message())
    }
}

impl From<EngineError> for CliError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Store(error) => Self::from(error),
            // The descriptor is built from the flags: a zero --timeout, --heartbeat-timeout or
            // --lease is the user's input.
            EngineError::InvalidDescriptor(reason) => Self::invalid_input(reason),
            // The only schema the CLI hands the engine is the --output-schema file.
            EngineError::InvalidSchema(reason) => Self::invalid_input(format!(
                "--output-schema is not a valid JSON Schema: {reason}"
            )),
            EngineError::Invariant(error) => {
                Self::internal(format!("engine invariant broken: {error}"))
            }
            // Fenced (STORE_UNAVAILABLE: the lease could not be renewed), and what a later
            // engine adds: its own code decides the exit.
            other => Self::new(other.code(), other.to_string()),
        }
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
    fn store_errors_keep_their_code_and_say_it_once() {
        let error = CliError::from(StoreError::incompatible("x.db is not a SQLite database"));
        assert_eq!(error.code, Code::Domain(ErrorCode::StoreIncompatible));
        assert_eq!(error.exit(), STORE);
        assert_eq!(
            error.to_string(),
            "STORE_INCOMPATIBLE: x.db is not a SQLite database"
        );
        let error = CliError::from(StoreError::conflict("taken"));
        assert_eq!(
            (error.exit(), error.to_string().as_str()),
            (STORE, "STORE_CONFLICT: taken")
        );
    }

    #[test]
    fn a_wrong_store_url_is_bad_input() {
        let error = CliError::from(StoreError::invalid_config("unknown option 'x'"));
        assert_eq!(
            (error.code.as_str(), error.exit()),
            ("STORE_INVALID_CONFIG", USAGE)
        );
    }

    #[test]
    fn every_code_has_its_exit_code() {
        let exits = [
            (Code::from(ErrorCode::TaskAborted), CANCELLED),
            (ErrorCode::TaskTimeout.into(), FAILED),
            (ErrorCode::TaskHeartbeatTimeout.into(), FAILED),
            (ErrorCode::TaskFailed.into(), FAILED),
            (ErrorCode::InvalidOutput.into(), FAILED),
            (ErrorCode::AttemptAbandoned.into(), FAILED),
            (ErrorCode::StoreConflict.into(), STORE),
            (ErrorCode::StoreUnavailable.into(), STORE),
            (ErrorCode::StoreIncompatible.into(), STORE),
            (ErrorCode::StoreInvalidConfig.into(), USAGE),
            (ErrorCode::HeartbeatPayloadTooLarge.into(), USAGE),
            (CliCode::Usage.into(), USAGE),
            (CliCode::InvalidInput.into(), USAGE),
            (CliCode::NoDatabase.into(), FAILED),
            (CliCode::UnknownRun.into(), FAILED),
            (CliCode::UnknownTask.into(), FAILED),
            (CliCode::NoOutput.into(), FAILED),
            (CliCode::Internal.into(), FAILED),
            (CliCode::StdoutClosed.into(), SUCCESS),
        ];
        for (code, exit) in exits {
            assert_eq!(code.exit(), exit, "{code}");
        }
    }

    #[test]
    fn engine_errors_become_cli_errors_once() {
        let error = CliError::from(EngineError::Store(StoreError::unavailable("down")));
        assert_eq!(error.to_string(), "STORE_UNAVAILABLE: down");
        let error = CliError::from(EngineError::InvalidSchema("not an object".to_owned()));
        assert_eq!(error.code, Code::Cli(CliCode::InvalidInput));
        assert_eq!(error.exit(), USAGE);
        let error = CliError::from(EngineError::InvalidDescriptor("zero timeout".to_owned()));
        assert_eq!(
            (error.code, error.exit()),
            (CliCode::InvalidInput.into(), USAGE)
        );
        let fenced = CliError::from(EngineError::Fenced {
            unrenewed_ms: 15_000,
            last_error: None,
        });
        assert_eq!(fenced.code, Code::Domain(ErrorCode::StoreUnavailable));
        assert_eq!(fenced.exit(), STORE);
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\n  b\n\nc"), "a b c");
    }
}
