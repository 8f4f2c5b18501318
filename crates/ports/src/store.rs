//! The storage, event, VCS and clock ports.

use std::fmt::Debug;
use std::path::Path;

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{
    AttemptKey, AttemptRecord, Event, EventRecord, NodeKey, NodeRecord, RunSummary, TaskError,
};

use crate::StoreError;

/// An attempt together with the token of the execution that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedAttempt {
    /// The attempt.
    pub key: AttemptKey,
    /// The owner token given to [`AttemptStore::begin_attempt`].
    pub owner: String,
}

/// Everything [`AttemptStore::begin_attempt`] writes.
#[derive(Debug, Clone, PartialEq)]
pub struct BeginAttempt {
    /// The node to start an attempt of.
    pub node: NodeKey,
    /// A token unique to this execution; every later write for the attempt must present it.
    pub owner: String,
    /// When the attempt starts.
    pub started_at_ms: u64,
    /// When the owner's lease runs out unless renewed.
    pub lease_expires_at_ms: u64,
    /// The task's metadata, as JSON.
    pub metadata: Value,
    /// The directory the VCS revision will be read in.
    pub working_dir: Option<String>,
    /// The node's label.
    pub label: Option<String>,
    /// The node's output table.
    pub output_table: Option<String>,
}

/// What [`AttemptStore::begin_attempt`] learned and allocated.
#[derive(Debug, Clone, PartialEq)]
pub struct BegunAttempt {
    /// The attempt's number: the highest earlier number of the node + 1.
    pub attempt: u32,
    /// The payload of the newest earlier attempt that recorded a heartbeat payload.
    pub checkpoint: Option<Value>,
    /// Number of earlier attempts of the node that failed (they count toward the retries).
    pub failed_before: u32,
}

/// One coalesced heartbeat write.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatWrite {
    /// When the task sent the heartbeat.
    pub received_at_ms: u64,
    /// The payload; `None` for a bare ping, which keeps the last payload stored.
    pub payload: Option<Value>,
    /// The `TaskHeartbeat` event appended with the write.
    pub event: Event,
}

/// How an attempt ends; each variant is written in one transaction with its events.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptEnd {
    /// Valid output: upsert the output row, mark attempt and node `finished`.
    Finished {
        /// The output, key columns already removed.
        output: Value,
        /// The VCS revision, if any.
        vcs: Option<String>,
    },
    /// Mark attempt and node `failed`.
    Failed {
        /// Why.
        error: TaskError,
        /// Whether another attempt may follow.
        retryable: bool,
    },
    /// Mark attempt and node `cancelled` (its `retryable` stays unset: a cancellation is never
    /// retried).
    Cancelled {
        /// The cancellation error (`TASK_ABORTED`).
        error: TaskError,
    },
}

/// Which attempts to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttemptFilter {
    /// The run.
    pub run_id: String,
    /// Only this node.
    pub node_id: Option<String>,
    /// Only this iteration.
    pub iteration: Option<u32>,
}

/// The attempt store: attempts, nodes and outputs.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait AttemptStore: Send + Sync + Debug {
    /// Steps 1 and 2 of SPEC section 3, in one transaction: allocate the next attempt number,
    /// read the checkpoint and the earlier failures, insert the attempt (`in-progress`), upsert
    /// the node and append `NodeStarted`.
    ///
    /// Refused with [`StoreError::Conflict`] while the node has an attempt in progress (run
    /// recovery first if its process died), so a node never has two attempts in progress.
    async fn begin_attempt(&self, begin: BeginAttempt) -> Result<BegunAttempt, StoreError>;

    /// Writes a heartbeat (received-at time, payload unless a bare ping) and appends its event.
    async fn record_heartbeat(
        &self,
        attempt: &OwnedAttempt,
        heartbeat: HeartbeatWrite,
    ) -> Result<(), StoreError>;

    /// Extends the owner's lease to `lease_expires_at_ms`.
    async fn renew_lease(
        &self,
        attempt: &OwnedAttempt,
        lease_expires_at_ms: u64,
    ) -> Result<(), StoreError>;

    /// Writes the attempt's terminal state, the node's state, the output (when finished) and
    /// `events`, in one transaction, conditional on the owner token and `in-progress`.
    ///
    /// The node's `updated_at_ms` changes here and in `begin_attempt`, never on heartbeats.
    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        end: AttemptEnd,
        finished_at_ms: u64,
        events: Vec<Event>,
    ) -> Result<(), StoreError>;

    /// Marks every in-progress attempt whose lease expired before `now_ms` `failed` with
    /// `ATTEMPT_ABANDONED`, updates its node and appends `NodeFailed`; each attempt exactly once
    /// even when several recoverers run at once. Returns the attempts this call marked.
    ///
    /// A marked attempt gets `finished_at_ms = now_ms` and `retryable = true` (it counts toward
    /// the node's retries, so a task that kills its process cannot loop forever). An attempt
    /// another recoverer is marking at that moment may be skipped rather than waited for.
    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError>;

    /// The attempts that match `filter`, ordered by node id (byte order), iteration and attempt
    /// number.
    async fn list_attempts(&self, filter: &AttemptFilter)
    -> Result<Vec<AttemptRecord>, StoreError>;

    /// One node, if it has ever started.
    async fn get_node(&self, node: &NodeKey) -> Result<Option<NodeRecord>, StoreError>;

    /// The nodes of a run, ordered by node id and iteration.
    async fn list_nodes(&self, run_id: &str) -> Result<Vec<NodeRecord>, StoreError>;

    /// Every run, most recently updated first.
    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError>;

    /// The stored output of a finished node.
    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError>;

    /// The payload of the newest attempt of `node` that recorded one.
    async fn previous_checkpoint(&self, node: &NodeKey) -> Result<Option<Value>, StoreError>;
}

/// The append-only event log, ordered by a sequence number per database.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait EventLog: Send + Sync + Debug {
    /// Appends `events` durably, in order, in one transaction.
    async fn append(&self, events: Vec<Event>) -> Result<(), StoreError>;

    /// Up to `limit` events of `run_id` with a sequence number above `after_seq`, in order.
    ///
    /// Sequence numbers increase and are unique per database, but may have gaps. A reader that
    /// tails the log with the last `seq` it saw never misses an event committed later.
    async fn read_events(
        &self,
        run_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
}

/// A backend that is both an attempt store and an event log, as every real adapter is.
pub trait Store: AttemptStore + EventLog {}

impl<T: AttemptStore + EventLog + ?Sized> Store for T {}

/// Reads where the code stood: a jj change id, a git commit (`+dirty` when changed), or nothing.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait VcsProbe: Send + Sync + Debug {
    /// The revision of the repository holding `dir`; `None` outside a repository or without the
    /// tool. Never an error.
    async fn revision(&self, dir: &Path) -> Option<String>;
}

/// The wall clock, injected so tests can control time.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}
