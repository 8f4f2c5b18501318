//! Records as stored and listed: attempts, nodes, runs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TaskError;
use crate::machine::AttemptState;

/// One attempt as stored. This is the object `stint attempts --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttemptRecord {
    /// The run.
    pub run_id: String,
    /// The node.
    pub node_id: String,
    /// The node's iteration.
    pub iteration: u32,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The attempt's state.
    pub state: AttemptState,
    /// Why it failed or was cancelled.
    pub error: Option<TaskError>,
    /// For a failed attempt: whether the failure was retryable.
    pub retryable: Option<bool>,
    /// The last heartbeat payload written (the checkpoint handed to the next attempt).
    pub heartbeat: Option<Value>,
    /// When the last heartbeat was received.
    pub last_heartbeat_at_ms: Option<u64>,
    /// When the attempt started.
    pub started_at_ms: u64,
    /// When it reached its terminal state.
    pub finished_at_ms: Option<u64>,
    /// The VCS revision recorded on success.
    pub vcs: Option<String>,
    /// The task's metadata, as JSON.
    pub metadata: Value,
    /// The working directory the VCS revision was read in.
    pub working_dir: Option<String>,
    /// The token of the execution that owns the attempt.
    pub owner: String,
    /// When the owner's lease runs out unless renewed.
    pub lease_expires_at_ms: u64,
    /// Where the attempt's process group lives, when its runner recorded one (`stint run` does,
    /// right after starting the command); recovery on that host ends a group still running.
    pub process: Option<ProcessPlace>,
}

/// Where an attempt's process group lives: enough to find it again after its runner died, and to
/// tell it from a later group that reuses its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessPlace {
    /// The host name of the machine it runs on.
    pub host: String,
    /// The machine's boot id (`/proc/sys/kernel/random/boot_id`), when known: a group recorded
    /// before a reboot is gone.
    pub boot_id: Option<String>,
    /// The process group id (the pid of its leader, the command stint started).
    pub pgid: u32,
    /// When the leader started, in clock ticks since boot (`/proc/PID/stat`, field 22): with the
    /// boot id it tells the leader from a later process given the same pid.
    pub started: u64,
}

/// One node as stored: its state is its last attempt's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeRecord {
    /// The run.
    pub run_id: String,
    /// The node.
    pub node_id: String,
    /// The iteration.
    pub iteration: u32,
    /// The state of the last attempt.
    pub state: AttemptState,
    /// The number of the last attempt.
    pub last_attempt: u32,
    /// When the node last changed.
    pub updated_at_ms: u64,
    /// The output table.
    pub output_table: Option<String>,
    /// The node's label.
    pub label: Option<String>,
}

/// A run at a glance, as `stint runs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunSummary {
    /// The run.
    pub run_id: String,
    /// Number of nodes (keys) in the run.
    pub nodes: u64,
    /// Nodes whose last attempt is in progress.
    pub in_progress: u64,
    /// Nodes finished.
    pub finished: u64,
    /// Nodes failed.
    pub failed: u64,
    /// Nodes cancelled.
    pub cancelled: u64,
    /// When the run's newest node last changed.
    pub updated_at_ms: u64,
}
