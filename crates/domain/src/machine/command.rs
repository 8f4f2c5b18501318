//! The commands an attempt's state machine accepts.

use crate::error::TaskError;

/// A command to the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptCommand {
    /// Begin the attempt.
    Start,
    /// A heartbeat was written; `data_size_bytes` is `None` for a bare ping.
    Heartbeat {
        /// When the heartbeat was received from the task.
        received_at_ms: u64,
        /// Size of the payload, `None` for a bare ping.
        data_size_bytes: Option<u64>,
    },
    /// The compute returned valid output.
    Finish,
    /// The attempt failed.
    Fail {
        /// Why.
        error: TaskError,
        /// Whether another attempt may follow.
        retryable: bool,
        /// A delay the task asked for, overriding the backoff policy.
        retry_after_ms: Option<u64>,
        /// Random fraction in `[0, 1]` for the backoff's jitter.
        jitter: f64,
    },
    /// The watchdog found the task silent for longer than `timeout_ms`.
    HeartbeatTimedOut {
        /// The heartbeat timeout.
        timeout_ms: u64,
        /// Random fraction in `[0, 1]` for the backoff's jitter.
        jitter: f64,
    },
    /// Recovery found the attempt's lease expired: its process died.
    Abandon {
        /// When the lease expired.
        lease_expired_at_ms: u64,
    },
    /// The attempt was cancelled from outside.
    Cancel,
}

/// The kind of a command, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCommandKind {
    /// [`AttemptCommand::Start`]
    Start,
    /// [`AttemptCommand::Heartbeat`]
    Heartbeat,
    /// [`AttemptCommand::Finish`]
    Finish,
    /// [`AttemptCommand::Fail`]
    Fail,
    /// [`AttemptCommand::HeartbeatTimedOut`]
    HeartbeatTimeout,
    /// [`AttemptCommand::Abandon`]
    Abandon,
    /// [`AttemptCommand::Cancel`]
    Cancel,
}

impl std::fmt::Display for AttemptCommandKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::Heartbeat => "heartbeat",
            Self::Finish => "finish",
            Self::Fail => "fail",
            Self::HeartbeatTimeout => "time out",
            Self::Abandon => "abandon",
            Self::Cancel => "cancel",
        })
    }
}

impl AttemptCommand {
    /// The kind of this command.
    pub fn kind(&self) -> AttemptCommandKind {
        match self {
            Self::Start => AttemptCommandKind::Start,
            Self::Heartbeat { .. } => AttemptCommandKind::Heartbeat,
            Self::Finish => AttemptCommandKind::Finish,
            Self::Fail { .. } => AttemptCommandKind::Fail,
            Self::HeartbeatTimedOut { .. } => AttemptCommandKind::HeartbeatTimeout,
            Self::Abandon { .. } => AttemptCommandKind::Abandon,
            Self::Cancel => AttemptCommandKind::Cancel,
        }
    }
}
