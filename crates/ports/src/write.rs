//! The write port: what the engine writes for one attempt, and the data that crosses it.

use std::fmt::Debug;

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{AttemptKey, AttemptRecord, Event, NodeKey, ProcessPlace, TaskError};

use crate::{Completion, StoreError};

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
    /// When the attempt starts, on the caller's clock.
    pub started_at_ms: u64,
    /// How long the owner's lease lasts unless renewed. The store sets the expiry to its clock's
    /// now plus this: `started_at_ms` for the embedded stores, the database's own clock for a
    /// store shared by machines (PostgreSQL), so that skewed client clocks never disagree.
    pub lease_ms: u64,
    /// The task's metadata, as JSON.
    pub metadata: Value,
    /// The directory the VCS revision will be read in.
    pub working_dir: Option<String>,
    /// The node's label.
    pub label: Option<String>,
    /// The node's output table.
    pub output_table: Option<String>,
}

impl BeginAttempt {
    /// A begin of `node` by `owner` at `started_at_ms`, leased for `lease_ms`, with no metadata
    /// (`null`), working directory, label or output table.
    pub fn new(node: NodeKey, owner: impl Into<String>, started_at_ms: u64, lease_ms: u64) -> Self {
        Self {
            node,
            owner: owner.into(),
            started_at_ms,
            lease_ms,
            metadata: Value::Null,
            working_dir: None,
            label: None,
            output_table: None,
        }
    }
}

/// What [`AttemptStore::begin_attempt`] learned and allocated.
#[derive(Debug, Clone, PartialEq)]
pub struct BegunAttempt {
    /// The attempt's number: the highest earlier number of the node + 1.
    pub attempt: u32,
    /// The payload of the newest earlier attempt that recorded a heartbeat payload; `None` also
    /// when that payload cannot be read back (it never stops the node from running again).
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

/// One lease renewal: the lease runs `lease_ms` from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// Now on the caller's clock (the embedded stores' clock; PostgreSQL uses its own).
    pub now_ms: u64,
    /// How long the lease lasts from now.
    pub lease_ms: u64,
}

impl Renewal {
    /// When the lease expires on the caller's clock.
    pub fn expires_at_ms(self) -> u64 {
        self.now_ms.saturating_add(self.lease_ms)
    }
}

/// What a lease renewal learned besides that the lease holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenewedLease {
    /// Someone asked for the attempt to be cancelled ([`AttemptStore::request_cancel`]): its
    /// owner cancels it, and it ends `cancelled`.
    pub cancel_requested: bool,
}

/// Everything [`AttemptStore::end_attempt`] writes, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct EndAttempt {
    /// How the attempt ends.
    pub end: AttemptEnd,
    /// When, on the caller's clock.
    pub finished_at_ms: u64,
    /// The events appended with it (the node's terminal event among them).
    pub events: Vec<Event>,
    /// The queue task this attempt ran for, ended in the same transaction, as
    /// [`TaskQueue::complete`](crate::TaskQueue::complete) would end it, if its claim is still
    /// the completion's owner's (see [`AttemptEnded::task_ended`]). A worker's attempt and its
    /// task then end in one commit: no crash can leave one ended and the other running.
    pub task: Option<Completion>,
}

impl EndAttempt {
    /// `end` at `finished_at_ms`, with no events and no task.
    pub fn new(end: AttemptEnd, finished_at_ms: u64) -> Self {
        Self {
            end,
            finished_at_ms,
            events: Vec::new(),
            task: None,
        }
    }
}

/// What [`AttemptStore::end_attempt`] wrote besides the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttemptEnded {
    /// Whether [`EndAttempt::task`] was ended with the attempt: `false` without one, and when
    /// the task's claim is no longer its owner's (swept, or ended by someone else), in which
    /// case nothing of the task was written and the attempt's end was written all the same.
    pub task_ended: bool,
}

/// The engine's write port: everything one attempt writes, from its begin to its terminal
/// state, and the recovery of attempts whose process died.
///
/// Every write after the begin is conditional on `state = in-progress AND owner = token`; a
/// write that matches no row is [`StoreError::Conflict`] (see [`StoreError::not_owned`]).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait AttemptStore: Send + Sync + Debug {
    /// In one transaction: allocates the next attempt number (the node's highest + 1), reads the
    /// checkpoint (the newest earlier attempt's last heartbeat payload) and the earlier failures,
    /// inserts the attempt (`in-progress`), upserts the node and appends `NodeStarted`.
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

    /// Records where the attempt's process group lives (see [`ProcessPlace`]), so that recovery
    /// on that host can end a group its dead runner left behind; a later call replaces it.
    async fn record_process(
        &self,
        attempt: &OwnedAttempt,
        place: ProcessPlace,
    ) -> Result<(), StoreError>;

    /// Extends the owner's lease to the renewal's length from now: its `now_ms` (the caller's
    /// clock) for the embedded stores, the database's clock for PostgreSQL. Says whether the
    /// attempt's cancellation was requested meanwhile.
    async fn renew_lease(
        &self,
        attempt: &OwnedAttempt,
        renewal: Renewal,
    ) -> Result<RenewedLease, StoreError>;

    /// Asks the owners of the in-progress attempts of run `run_id` to cancel them: each learns
    /// of it at its next lease renewal (on any machine) and ends its attempt `cancelled`.
    /// Returns the attempts asked, in key order; asking twice is harmless.
    async fn request_cancel(&self, run_id: &str) -> Result<Vec<AttemptKey>, StoreError>;

    /// Writes the attempt's terminal state, the node's state, the output (when finished), the
    /// events and the end of [`EndAttempt::task`], in one transaction, conditional on the owner
    /// token and `in-progress`.
    ///
    /// The node's `updated_at_ms` changes here and in `begin_attempt`, never on heartbeats.
    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        end: EndAttempt,
    ) -> Result<AttemptEnded, StoreError>;

    /// Marks every in-progress attempt whose lease expired before now (`now_ms` for the embedded
    /// stores, the database's clock for PostgreSQL) `failed` with
    /// `ATTEMPT_ABANDONED`, updates its node and appends `NodeFailed`; each attempt exactly once
    /// even when several recoverers run at once. Returns the attempts this call marked.
    ///
    /// A marked attempt gets `finished_at_ms = now_ms` and `retryable = true` (it counts toward
    /// the node's retries, so a task that kills its process cannot loop forever). An attempt
    /// another recoverer is marking at that moment may be skipped rather than waited for.
    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError>;

    /// The in-progress attempts whose lease expired before now (judged as
    /// [`AttemptStore::recover_abandoned`] judges it), with where their process groups live:
    /// what recovery reads to end those groups before it marks the attempts. Writes nothing.
    async fn expired_attempts(&self, now_ms: u64) -> Result<Vec<AttemptRecord>, StoreError>;
}
