//! Queued tasks as stored and listed: their id, their state, their record and a queue's counts.
//!
//! A task is one stint node waiting in a durable queue to be claimed by a worker. The store keeps
//! its state; the worker runs it attempt by attempt through the engine.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task's id: assigned by the store, increasing in the order tasks were enqueued.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct TaskId(pub u64);

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// The stored state of a task. "Scheduled" is not stored: it is a ready task whose `run_at_ms`
/// is still ahead (see [`TaskRecord::listed_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting to be claimed (from its `run_at_ms` on).
    Ready,
    /// Claimed by a worker, under a lease.
    Running,
    /// Its node finished.
    Finished,
    /// Its node failed for good.
    Failed,
    /// Cancelled before or while it ran.
    Cancelled,
}

impl TaskState {
    /// The state as written in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the task has ended (only `stint retry` brings a failed or cancelled one back).
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Cancelled)
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ready" => Ok(Self::Ready),
            "running" => Ok(Self::Running),
            "finished" => Ok(Self::Finished),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(format!("unknown task state '{other}'")),
        }
    }
}

/// One queued task as stored. This is the object `stint tasks --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskRecord {
    /// The task's id.
    pub id: TaskId,
    /// The queue it waits in.
    pub queue: String,
    /// The run of the node it runs as.
    pub run_id: String,
    /// The node it runs as (iteration 0).
    pub node_id: String,
    /// Higher is claimed first.
    pub priority: i32,
    /// Not claimed before this time.
    pub run_at_ms: u64,
    /// The command and run options, as the submitter wrote them (the store never reads them).
    pub spec: Value,
    /// At most one task that has not ended holds a given key.
    pub unique_key: Option<String>,
    /// The stored state.
    pub state: TaskState,
    /// How many times a worker claimed it.
    pub claims: u32,
    /// The worker that holds it, while running.
    pub owner: Option<String>,
    /// When the worker's lease runs out unless renewed, while running.
    pub lease_expires_at_ms: Option<u64>,
    /// Whether a cancellation was asked for while it ran (its worker learns it on renewal).
    pub cancel_requested: bool,
    /// Failed attempts that no longer count toward its retries (set by `stint retry`).
    pub retry_base: u32,
    /// When it was enqueued.
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
    /// When it ended.
    pub ended_at_ms: Option<u64>,
    /// The error of its last failure, retry or cancellation.
    pub last_error: Option<Value>,
}

impl TaskRecord {
    /// The state a listing shows at `now_ms`: the stored one, except "scheduled" for a ready
    /// task whose time has not come.
    pub fn listed_state(&self, now_ms: u64) -> &'static str {
        if self.state == TaskState::Ready && self.run_at_ms > now_ms {
            "scheduled"
        } else {
            self.state.as_str()
        }
    }
}

/// The counts of one queue at a given time, as `stint queues` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Ready tasks whose time has come.
    pub ready: u64,
    /// Ready tasks whose time is still ahead.
    pub scheduled: u64,
    /// Running tasks.
    pub running: u64,
    /// Finished tasks (not yet pruned).
    pub finished: u64,
    /// Failed tasks (not yet pruned).
    pub failed: u64,
    /// Cancelled tasks (not yet pruned).
    pub cancelled: u64,
    /// How long the longest-waiting claimable task has been claimable.
    pub oldest_ready_age_ms: Option<u64>,
    /// The queue's limit on running tasks, if it has one.
    pub max_running: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in [
            TaskState::Ready,
            TaskState::Running,
            TaskState::Finished,
            TaskState::Failed,
            TaskState::Cancelled,
        ] {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
            let json = serde_json::to_value(state).expect("serialises");
            assert_eq!(json, Value::String(state.as_str().to_owned()));
        }
        assert!("scheduled".parse::<TaskState>().is_err());
    }

    #[test]
    fn a_ready_task_is_listed_scheduled_until_its_time() {
        let record = TaskRecord {
            id: TaskId(1),
            queue: "default".to_owned(),
            run_id: "r".to_owned(),
            node_id: "n".to_owned(),
            priority: 0,
            run_at_ms: 100,
            spec: Value::Null,
            unique_key: None,
            state: TaskState::Ready,
            claims: 0,
            owner: None,
            lease_expires_at_ms: None,
            cancel_requested: false,
            retry_base: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
            ended_at_ms: None,
            last_error: None,
        };
        assert_eq!(record.listed_state(99), "scheduled");
        assert_eq!(record.listed_state(100), "ready");
        let running = TaskRecord {
            state: TaskState::Running,
            ..record
        };
        assert_eq!(running.listed_state(0), "running");
    }
}
