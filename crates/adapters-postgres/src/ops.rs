//! The attempt writes as `stint_write_batch` reads them (one JSON object each, its kind in
//! `"op"`), and their answers. Names are the parameters of the database function each write
//! calls (migration 0005). A JSON argument that is `None` is left out (SQL NULL); one that is
//! `Some(null)` is the JSON value null.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stint_ports::OwnedAttempt;

use crate::events::EventBodies;
use crate::queue::TaskEndColumns;

/// One write of a batch.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum WriteOp<'a> {
    Begin(BeginOp<'a>),
    Heartbeat(HeartbeatOp<'a>),
    End(EndOp<'a>),
}

/// `stint_begin_attempt`'s arguments.
#[derive(Serialize)]
pub(crate) struct BeginOp<'a> {
    pub run_id: &'a str,
    pub node_id: &'a str,
    pub iteration: u32,
    pub owner: &'a str,
    pub lease_ms: i64,
    pub started_at_ms: i64,
    pub metadata: &'a Value,
    pub working_dir: Option<&'a str>,
    pub output_table: Option<&'a str>,
    pub label: Option<&'a str>,
    pub lease_now: Option<i64>,
    pub lock_key: i64,
    /// The `NodeStarted` event's body; the function fills in its attempt number.
    pub started: Value,
}

/// The attempt an owned write names, and its owner.
#[derive(Serialize)]
pub(crate) struct OwnedKey<'a> {
    run_id: &'a str,
    node_id: &'a str,
    iteration: u32,
    attempt: u32,
    owner: &'a str,
}

impl<'a> OwnedKey<'a> {
    pub(crate) fn of(attempt: &'a OwnedAttempt) -> Self {
        let node = &attempt.key.node;
        Self {
            run_id: node.run_id(),
            node_id: node.node_id(),
            iteration: node.iteration(),
            attempt: attempt.key.attempt,
            owner: &attempt.owner,
        }
    }
}

/// `stint_record_heartbeat`'s arguments.
#[derive(Serialize)]
pub(crate) struct HeartbeatOp<'a> {
    #[serde(flatten)]
    pub key: OwnedKey<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a Value>,
    pub received_at_ms: i64,
    #[serde(flatten)]
    pub events: EventBodies,
}

/// `stint_end_attempt`'s arguments.
#[derive(Serialize)]
pub(crate) struct EndOp<'a> {
    #[serde(flatten)]
    pub key: OwnedKey<'a>,
    pub state: &'static str,
    pub finished_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    pub retryable: Option<bool>,
    pub vcs: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'a Value>,
    #[serde(flatten)]
    pub task: TaskEndColumns<'a>,
    #[serde(flatten)]
    pub events: EventBodies,
}

/// A begin's answer.
#[derive(Deserialize)]
pub(crate) struct BeginAnswer {
    /// The node's highest attempt number before this begin.
    pub highest: i64,
    /// Whether the attempt began.
    pub began: bool,
    pub failed: i64,
    pub running: i64,
    /// The last checkpoint, as text.
    pub checkpoint: Option<String>,
}

/// A heartbeat's answer.
#[derive(Deserialize)]
pub(crate) struct HeartbeatAnswer {
    /// Whether the attempt was still the owner's.
    pub written: bool,
}

/// An end's answer.
#[derive(Deserialize)]
pub(crate) struct EndAnswer {
    /// Whether the attempt was still the owner's (nothing was written when not).
    pub ended: bool,
    pub task_ended: bool,
}
