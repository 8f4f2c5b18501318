//! The event log's entries: one event per step of an attempt (started, heartbeat written,
//! heartbeat timed out, failed, retrying, finished, cancelled), each naming its attempt and time;
//! [`AttemptMachine::apply`](crate::AttemptMachine::apply) decides which events a step produces.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::key::AttemptKey;

/// What happened, with the fields particular to each kind. Serialised with a `type` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum EventKind {
    /// An attempt began.
    NodeStarted,
    /// An attempt finished with valid output.
    NodeFinished,
    /// An attempt failed.
    NodeFailed {
        /// Why it failed.
        error: TaskError,
    },
    /// An attempt was cancelled from outside.
    NodeCancelled {
        /// Why: `aborted` for a cancellation from outside.
        reason: String,
    },
    /// A failed attempt will be followed by another one. The event's `attempt` is the number of
    /// the attempt to come (as in the original system).
    NodeRetrying {
        /// How long the engine waits before it starts.
        delay_ms: u64,
    },
    /// A heartbeat was written.
    TaskHeartbeat {
        /// Whether the heartbeat carried a payload (false for a bare ping).
        has_data: bool,
        /// Size of the payload as UTF-8 JSON, 0 for a bare ping.
        data_size_bytes: u64,
        /// Time since the previous written heartbeat of this attempt; absent for the first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval_ms: Option<u64>,
    },
    /// The watchdog found the task silent for longer than its heartbeat timeout.
    TaskHeartbeatTimeout {
        /// When the last heartbeat was received, if there was one.
        last_heartbeat_at_ms: Option<u64>,
        /// The heartbeat timeout that was exceeded.
        timeout_ms: u64,
    },
}

impl EventKind {
    /// The `type` tag of this kind, as serialised.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::NodeStarted => "NodeStarted",
            Self::NodeFinished => "NodeFinished",
            Self::NodeFailed { .. } => "NodeFailed",
            Self::NodeCancelled { .. } => "NodeCancelled",
            Self::NodeRetrying { .. } => "NodeRetrying",
            Self::TaskHeartbeat { .. } => "TaskHeartbeat",
            Self::TaskHeartbeatTimeout { .. } => "TaskHeartbeatTimeout",
        }
    }
}

/// One event: what happened, to which attempt, and when.
///
/// JSON form: `{type, run_id, node_id, iteration, attempt, timestamp_ms, ...fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// The run the event belongs to.
    pub run_id: String,
    /// The node the event concerns.
    pub node_id: String,
    /// The node's iteration.
    pub iteration: u32,
    /// The attempt the event concerns (for `NodeRetrying`, the attempt to come).
    pub attempt: u32,
    /// When it happened, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event of `kind` about attempt `key` at `timestamp_ms`.
    pub fn new(key: &AttemptKey, timestamp_ms: u64, kind: EventKind) -> Self {
        Self {
            run_id: key.node.run_id().to_owned(),
            node_id: key.node.node_id().to_owned(),
            iteration: key.node.iteration(),
            attempt: key.attempt,
            timestamp_ms,
            kind,
        }
    }
}

/// An event as stored: the event and its sequence number in the log (increasing per database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventRecord {
    /// Position in the log; later events have larger numbers.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::NodeKey;

    #[test]
    fn json_form_is_flat_with_a_type_tag() {
        let key = NodeKey::new("r", "n", 1).expect("valid").attempt(2);
        let event = Event::new(&key, 5, EventKind::NodeRetrying { delay_ms: 1000 });
        let json = serde_json::to_value(EventRecord {
            seq: 9,
            event: event.clone(),
        })
        .expect("json");
        assert_eq!(
            json,
            serde_json::json!({"seq": 9, "type": "NodeRetrying", "run_id": "r", "node_id": "n",
                "iteration": 1, "attempt": 2, "timestamp_ms": 5, "delay_ms": 1000})
        );
        let back: EventRecord = serde_json::from_value(json).expect("round trip");
        assert_eq!(back.event, event);
    }
}
