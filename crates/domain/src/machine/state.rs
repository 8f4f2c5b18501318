//! The states of an attempt, as written in JSON and in the database.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The state of an attempt (and of a node: its last attempt's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptState {
    /// Running.
    InProgress,
    /// Finished with valid output.
    Finished,
    /// Failed; may be followed by another attempt.
    Failed,
    /// Cancelled from outside; never retried.
    Cancelled,
}

impl AttemptState {
    /// The state as written in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in-progress",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::InProgress)
    }
}

impl std::fmt::Display for AttemptState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AttemptState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-progress" => Ok(Self::InProgress),
            "finished" => Ok(Self::Finished),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(format!("unknown attempt state '{other}'")),
        }
    }
}
