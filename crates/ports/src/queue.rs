//! The queue ports: what submitters and workers write ([`TaskQueue`]) and what listings read
//! ([`QueueHistory`]), and the data that crosses them.
//!
//! A task is a stint node waiting to run. The queue keeps only the task's own row: the attempts
//! and events of its node belong to the history (the [`AttemptStore`](crate::AttemptStore) and
//! [`HistoryStore`](crate::HistoryStore)). A worker's claim may begin those attempts in its own
//! transaction ([`TaskQueue::claim_and_begin`]); pruning an ended task deletes its node's
//! history with it ([`TaskQueue::prune`]).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{
    AttemptRecord, AttemptState, QueueStats, TaskError, TaskId, TaskRecord, TaskState,
};

use crate::{BeginAttempt, BegunAttempt, Renewal, StoreError};

/// The queue a task goes to when the submitter names none.
pub const DEFAULT_QUEUE: &str = "default";

/// One task to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// The queue (not empty; [`DEFAULT_QUEUE`] by default).
    pub queue: String,
    /// The run of the node the task runs as.
    pub run_id: String,
    /// The node the task runs as (iteration 0).
    pub node_id: String,
    /// Higher is claimed first.
    pub priority: i32,
    /// Not claimed before this time.
    pub run_at_ms: u64,
    /// The command and run options; the store never reads them.
    pub spec: Value,
    /// At most one task that has not ended holds a given key.
    pub unique_key: Option<String>,
}

impl NewTask {
    /// A task of `run_id`/`node_id` in the default queue, priority 0, due at `run_at_ms`.
    pub fn new(
        run_id: impl Into<String>,
        node_id: impl Into<String>,
        run_at_ms: u64,
        spec: Value,
    ) -> Self {
        Self {
            queue: DEFAULT_QUEUE.to_owned(),
            run_id: run_id.into(),
            node_id: node_id.into(),
            priority: 0,
            run_at_ms,
            spec,
            unique_key: None,
        }
    }

    /// Refuses what no store may hold: an empty queue name, run id or node id. `position` is the
    /// task's place in its batch, for the message.
    pub fn check(&self, position: usize) -> Result<(), StoreError> {
        let empty = [
            ("queue name", &self.queue),
            ("run id", &self.run_id),
            ("node id", &self.node_id),
        ]
        .into_iter()
        .find(|(_, value)| value.is_empty());
        match empty {
            Some((what, _)) => Err(StoreError::invalid_task(
                position,
                &format!("its {what} is empty"),
            )),
            None => Ok(()),
        }
    }
}

/// What [`TaskQueue::enqueue`] did with one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The task's id: the new task's, or the one that already held its unique key.
    pub id: TaskId,
    /// Whether a task that has not ended already held the unique key (nothing was stored).
    pub existing: bool,
}

/// What a worker asks of [`TaskQueue::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The queues to take tasks from.
    pub queues: Vec<String>,
    /// The worker's token; every later write for a claimed task must present it.
    pub owner: String,
    /// At most this many tasks.
    pub max: u32,
    /// The caller's time: tasks due by then are claimable.
    pub now_ms: u64,
    /// How long the claim lasts unless renewed (from the store's clock: see
    /// [`TaskQueue::claim`]).
    pub lease_ms: u64,
}

/// A task a worker now holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    /// The task as it is now (running, owned by the claimer).
    pub task: TaskRecord,
    /// Its node's attempts (iteration 0) as the claim found them, so that the worker need not
    /// read them again before it runs the task; `None` when the store did not read them.
    pub attempts: Option<NodeAttempts>,
}

impl ClaimedTask {
    /// `task`, its node's attempts not read.
    pub fn new(task: TaskRecord) -> Self {
        Self {
            task,
            attempts: None,
        }
    }
}

/// What a claim begins for each task it takes (see [`TaskQueue::claim_and_begin`]).
pub trait BeginFor: Send + Sync {
    /// The begin of `task`'s attempt; `None` begins nothing for it.
    fn begin_for(&self, task: &ClaimedTask) -> Option<BeginAttempt>;
}

/// A task a claim took, and the attempt it began for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedAndBegun {
    /// The task.
    pub claimed: ClaimedTask,
    /// The begin's answer, as [`AttemptStore::begin_attempt`](crate::AttemptStore::begin_attempt)
    /// gives it (a conflict when the node has an attempt in progress); `None` when the claim
    /// began nothing for the task.
    pub begun: Option<Result<BegunAttempt, StoreError>>,
}

impl ClaimedAndBegun {
    /// `claimed`, nothing begun for it.
    pub fn unbegun(claimed: ClaimedTask) -> Self {
        Self {
            claimed,
            begun: None,
        }
    }
}

/// What a node's attempts say about it: how its last attempt ended and how many failed.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAttempts {
    /// Its last attempt, `None` when it has none.
    pub last: Option<LastAttempt>,
    /// How many of its attempts failed.
    pub failed: u32,
}

/// A node's last attempt, as far as deciding whether its task is settled needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LastAttempt {
    /// Its state.
    pub state: AttemptState,
    /// Whether it may be retried (failed attempts).
    pub retryable: Option<bool>,
    /// Its error (failed and cancelled attempts).
    pub error: Option<TaskError>,
}

impl NodeAttempts {
    /// The summary of `attempts`, in attempt order.
    pub fn of(attempts: &[AttemptRecord]) -> Self {
        let failed = attempts
            .iter()
            .filter(|attempt| attempt.state == AttemptState::Failed)
            .count();
        Self {
            last: attempts.last().map(|last| LastAttempt {
                state: last.state,
                retryable: last.retryable,
                error: last.error.clone(),
            }),
            failed: u32::try_from(failed).unwrap_or(u32::MAX),
        }
    }
}

/// What [`TaskQueue::renew_claims`] renewed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenewedClaims {
    /// The owner's running tasks, their leases extended (ascending ids).
    pub renewed: Vec<TaskId>,
    /// Those of them whose cancellation was asked for (ascending ids).
    pub cancel_requested: Vec<TaskId>,
}

/// What [`TaskQueue::complete`] writes: how the running task `owner` holds ends (or leaves it).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The task.
    pub task: TaskId,
    /// The claimer's owner token.
    pub owner: String,
    /// How it ends.
    pub end: TaskEnd,
    /// Now, on the caller's clock.
    pub now_ms: u64,
}

impl Completion {
    /// The task, owner, end and time, borrowed.
    pub fn parts(&self) -> (TaskId, &str, &TaskEnd, u64) {
        (self.task, &self.owner, &self.end, self.now_ms)
    }

    /// `task`, held by `owner`, ends `end` at `now_ms`.
    pub fn new(task: TaskId, owner: impl Into<String>, end: TaskEnd, now_ms: u64) -> Self {
        Self {
            task,
            owner: owner.into(),
            end,
            now_ms,
        }
    }
}

/// How a running task ends, or leaves its worker.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEnd {
    /// Its node finished.
    Finished,
    /// Its node failed for good.
    Failed {
        /// Why.
        error: Value,
    },
    /// It stopped on a cancellation.
    Cancelled {
        /// The cancellation's error.
        error: Value,
    },
    /// A retryable failure: back to ready, claimable again from `run_at_ms`.
    Retry {
        /// When it may run again.
        run_at_ms: u64,
        /// The failure.
        error: Value,
    },
    /// The worker gives it back unrun (it is draining): ready again at once, nothing recorded.
    Release,
}

impl TaskEnd {
    /// The state the task is in after this end.
    pub fn state(&self) -> TaskState {
        match self {
            Self::Finished => TaskState::Finished,
            Self::Failed { .. } => TaskState::Failed,
            Self::Cancelled { .. } => TaskState::Cancelled,
            Self::Retry { .. } | Self::Release => TaskState::Ready,
        }
    }

    /// The error it records as the task's `last_error` (`None` keeps the one stored).
    pub fn error(&self) -> Option<&Value> {
        match self {
            Self::Failed { error } | Self::Cancelled { error } | Self::Retry { error, .. } => {
                Some(error)
            }
            Self::Finished | Self::Release => None,
        }
    }

    /// The new due time (`None` keeps the one stored).
    pub fn run_at_ms(&self) -> Option<u64> {
        match self {
            Self::Retry { run_at_ms, .. } => Some(*run_at_ms),
            _ => None,
        }
    }
}

/// What [`TaskQueue::cancel`] targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    /// One task.
    Task(TaskId),
    /// Every task of a run.
    Run(String),
}

/// What [`TaskQueue::cancel`] did to one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was ready: it is cancelled.
    Cancelled(TaskId),
    /// It is running: its worker will learn of the request when it renews its claims.
    Requested(TaskId),
    /// It had ended already (in this state): untouched.
    AlreadyEnded(TaskId, TaskState),
}

impl CancelOutcome {
    /// What cancelling task `id`, found in `state`, does to it.
    pub fn of(id: TaskId, state: TaskState) -> Self {
        match state {
            TaskState::Ready => Self::Cancelled(id),
            TaskState::Running => Self::Requested(id),
            ended => Self::AlreadyEnded(id, ended),
        }
    }
}

impl RenewedClaims {
    /// From `(task, cancel_requested)` pairs in any order.
    pub fn from_rows(mut rows: Vec<(TaskId, bool)>) -> Self {
        rows.sort_unstable();
        Self {
            renewed: rows.iter().map(|(id, _)| *id).collect(),
            cancel_requested: rows
                .iter()
                .filter(|(_, requested)| *requested)
                .map(|(id, _)| *id)
                .collect(),
        }
    }
}

/// Sorts claimed tasks in claim order: priority (highest first), due time, id.
pub fn sort_claimed(tasks: &mut [ClaimedTask]) {
    tasks.sort_by_key(|claimed| {
        let task = &claimed.task;
        (std::cmp::Reverse(task.priority), task.run_at_ms, task.id)
    });
}

/// Which tasks [`QueueHistory::list_tasks`] lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this stored state.
    pub state: Option<TaskState>,
    /// At most this many.
    pub limit: u32,
}

/// The queue's write port: what submitters, workers and the operator's commands write.
///
/// Every write of a claimed task is conditional on `state = running AND owner = token`, as the
/// attempt writes are; a write that matches no row is a [`StoreError::Conflict`]. Leases are set
/// and judged as the attempt store's: by the caller's `now_ms` on the embedded stores, by the
/// database's clock on PostgreSQL. Due times (`run_at_ms`) are always the caller's.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait TaskQueue: Send + Sync + Debug {
    /// Stores `tasks` in one transaction (all or none), created at `now_ms`. A task whose
    /// unique key a task that has not ended holds is not stored: its answer is that task's id
    /// with `existing: true`. The database enforces the key, so two racing submitters never
    /// both store one. An invalid task ([`NewTask::check`]) fails the whole batch.
    async fn enqueue(&self, tasks: Vec<NewTask>, now_ms: u64) -> Result<Vec<Enqueued>, StoreError>;

    /// Atomically takes up to `claim.max` ready tasks due by `claim.now_ms` from `claim.queues`,
    /// by priority (highest first), then due time, then id, never exceeding a queue's limit on
    /// running tasks (counted across every worker); each becomes running, owned and leased, its
    /// `claims` counted. Concurrent claimers never take the same task.
    async fn claim(&self, claim: Claim) -> Result<Vec<ClaimedTask>, StoreError>;

    /// Claims as [`TaskQueue::claim`] does and, in the same transaction, begins for each task
    /// taken the attempt [`BeginFor::begin_for`] makes of it, as
    /// [`AttemptStore::begin_attempt`](crate::AttemptStore::begin_attempt) would: one commit
    /// for a task's claim and its attempt's begin. A begin that is refused (its node has an
    /// attempt in progress) writes nothing and leaves the task claimed.
    ///
    /// `begin` is called while the transaction is open, at most once per task and attempt
    /// (again for a claim the store tries again after a transient failure); it must be quick.
    ///
    /// A store whose claims cannot begin attempts begins none (the default): its caller begins
    /// each task's attempt itself.
    async fn claim_and_begin(
        &self,
        claim: Claim,
        begin: Arc<dyn BeginFor>,
    ) -> Result<Vec<ClaimedAndBegun>, StoreError> {
        let _ = begin;
        let claimed = self.claim(claim).await?;
        Ok(claimed.into_iter().map(ClaimedAndBegun::unbegun).collect())
    }

    /// Extends the leases of every running task of `owner` by `lease_ms`, in one statement.
    async fn renew_claims(
        &self,
        owner: &str,
        renewal: Renewal,
    ) -> Result<RenewedClaims, StoreError>;

    /// Ends or gives back a running task `owner` holds; a conflict if it is not running under
    /// that owner (see [`StoreError::task_not_owned`]). A task whose cancellation was asked for
    /// does not go back to the queue: `Retry` and `Release` end it cancelled.
    async fn complete(&self, completion: Completion) -> Result<(), StoreError>;

    /// Takes every running task whose lease expired before now from its owner: back to ready,
    /// or cancelled when its cancellation was asked for. Each task exactly once, even with
    /// concurrent sweepers. Returns the tasks this call took back.
    async fn sweep_expired(&self, now_ms: u64) -> Result<Vec<TaskId>, StoreError>;

    /// Cancels a ready task at once, asks a running one to stop, leaves an ended one alone; one
    /// outcome per task of the target (none when nothing matches), ascending ids.
    async fn cancel(
        &self,
        target: CancelTarget,
        now_ms: u64,
    ) -> Result<Vec<CancelOutcome>, StoreError>;

    /// Makes a failed or cancelled task ready now, with `retry_base` and no cancellation
    /// request; a conflict for any other state, or when another task that has not ended took
    /// its unique key meanwhile.
    async fn retry(&self, task: TaskId, retry_base: u32, now_ms: u64) -> Result<(), StoreError>;

    /// Sets (or, with `None`, lifts) the limit on running tasks of `queue`.
    async fn set_queue_limit(
        &self,
        queue: &str,
        max_running: Option<u32>,
    ) -> Result<(), StoreError>;

    /// Deletes up to `batch` ended tasks that ended before `ended_before_ms` (oldest first), in
    /// one short transaction; returns how many. The caller loops until it returns less than
    /// `batch`. The history of each task's node goes with it (its attempts, output and node row,
    /// every iteration), unless a task still stored names the same node or an attempt of it is
    /// in progress; and a run none of whose nodes is left loses its events. So a queue's tables
    /// do not grow without end, and nothing another task or a live attempt reads is taken.
    async fn prune(&self, ended_before_ms: u64, batch: u32) -> Result<u64, StoreError>;
}

/// The queue's query port: what listings read. Nothing here writes.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait QueueHistory: Send + Sync + Debug {
    /// One task, if it exists (not pruned).
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError>;

    /// Up to `filter.limit` tasks matching `filter`, ascending ids.
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError>;

    /// The counts of every queue that holds a task or has a limit, by queue name.
    async fn queue_stats(&self, now_ms: u64) -> Result<Vec<QueueStats>, StoreError>;
}

/// A backend that serves both queue ports, as every real adapter does.
pub trait QueueStore: TaskQueue + QueueHistory {}

impl<T: TaskQueue + QueueHistory + ?Sized> QueueStore for T {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_task_with_an_empty_name_is_refused_naming_its_place() {
        let valid = NewTask::new("run", "node", 0, json!({}));
        assert_eq!(valid.check(0), Ok(()));
        let no_queue = NewTask {
            queue: String::new(),
            ..valid.clone()
        };
        let refused = no_queue.check(3).expect_err("an empty queue name");
        assert!(refused.is_conflict());
        assert!(refused.message().contains("task 3 of the batch"));
        assert!(refused.message().contains("queue name is empty"));
        let no_node = NewTask {
            node_id: String::new(),
            ..valid
        };
        assert!(no_node.check(0).is_err());
    }

    #[test]
    fn an_end_says_the_state_error_and_due_time_it_writes() {
        let error = json!({"message": "boom"});
        let retry = TaskEnd::Retry {
            run_at_ms: 7,
            error: error.clone(),
        };
        assert_eq!(retry.state(), TaskState::Ready);
        assert_eq!((retry.error(), retry.run_at_ms()), (Some(&error), Some(7)));
        assert_eq!(TaskEnd::Release.state(), TaskState::Ready);
        assert_eq!(
            (TaskEnd::Release.error(), TaskEnd::Release.run_at_ms()),
            (None, None)
        );
        assert!(TaskEnd::Finished.state().is_ended());
        let cancelled = TaskEnd::Cancelled { error };
        assert_eq!(cancelled.state(), TaskState::Cancelled);
    }

    #[test]
    fn renewals_and_cancel_outcomes_are_read_from_rows() {
        let rows = vec![(TaskId(3), true), (TaskId(1), false), (TaskId(2), true)];
        let renewed = RenewedClaims::from_rows(rows);
        assert_eq!(renewed.renewed, vec![TaskId(1), TaskId(2), TaskId(3)]);
        assert_eq!(renewed.cancel_requested, vec![TaskId(2), TaskId(3)]);
        assert_eq!(
            CancelOutcome::of(TaskId(1), TaskState::Ready),
            CancelOutcome::Cancelled(TaskId(1))
        );
        assert_eq!(
            CancelOutcome::of(TaskId(1), TaskState::Running),
            CancelOutcome::Requested(TaskId(1))
        );
        assert_eq!(
            CancelOutcome::of(TaskId(1), TaskState::Failed),
            CancelOutcome::AlreadyEnded(TaskId(1), TaskState::Failed)
        );
    }
}
