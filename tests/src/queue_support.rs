//! Small builders the queue cases share.

use serde_json::json;
use stint_domain::{TaskId, TaskRecord};
use stint_ports::{Claim, Completion, NewTask, QueueStore, TaskEnd, TaskFilter};

/// How long a claim lasts in the queue cases.
pub(crate) const CLAIM_LEASE_MS: u64 = 10_000;

/// A task of run `run`, node `node`, in the default queue, due at 0.
pub(crate) fn new_task(run: &str, node: &str) -> NewTask {
    NewTask::new(run, node, 0, json!({"command": ["echo", node]}))
}

/// Enqueues `tasks` at 100; every one must be stored as new. Returns their ids.
pub(crate) async fn enqueue(queue: &dyn QueueStore, tasks: Vec<NewTask>) -> Vec<TaskId> {
    let answers = queue.enqueue(tasks, 100).await.expect("enqueue");
    assert!(answers.iter().all(|answer| !answer.existing));
    answers.into_iter().map(|answer| answer.id).collect()
}

/// Enqueues `count` tasks of `run_id`, nodes `n00`, `n01`...; returns their ids in that order.
pub(crate) async fn enqueue_numbered(
    queue: &dyn QueueStore,
    run_id: &str,
    count: usize,
) -> Vec<TaskId> {
    let tasks = (0..count)
        .map(|i| new_task(run_id, &format!("n{i:02}")))
        .collect();
    enqueue(queue, tasks).await
}

/// Enqueues one task; returns its id.
pub(crate) async fn enqueue_one(queue: &dyn QueueStore, task: NewTask) -> TaskId {
    enqueue(queue, vec![task]).await[0]
}

/// A claim by `owner` of up to `max` tasks of `queues` at `now_ms`.
pub(crate) fn claim_of(queues: &[&str], owner: &str, max: u32, now_ms: u64) -> Claim {
    Claim {
        queues: queues.iter().map(|queue| (*queue).to_owned()).collect(),
        owner: owner.to_owned(),
        max,
        now_ms,
        lease_ms: CLAIM_LEASE_MS,
    }
}

/// Claims up to `max` tasks of the default queue; returns their ids in the order given.
pub(crate) async fn claim(
    queue: &dyn QueueStore,
    owner: &str,
    max: u32,
    now_ms: u64,
) -> Vec<TaskId> {
    claim_in(queue, &["default"], owner, max, now_ms).await
}

/// Claims up to `max` tasks of `queues`; returns their ids in the order given.
pub(crate) async fn claim_in(
    queue: &dyn QueueStore,
    queues: &[&str],
    owner: &str,
    max: u32,
    now_ms: u64,
) -> Vec<TaskId> {
    let claimed = queue
        .claim(claim_of(queues, owner, max, now_ms))
        .await
        .expect("claim");
    for claimed in &claimed {
        assert_eq!(claimed.task.owner.as_deref(), Some(owner));
        assert_eq!(
            claimed.task.lease_expires_at_ms,
            Some(now_ms + CLAIM_LEASE_MS)
        );
    }
    claimed.into_iter().map(|claimed| claimed.task.id).collect()
}

/// The task `id`, which must exist.
pub(crate) async fn task(queue: &dyn QueueStore, id: TaskId) -> TaskRecord {
    queue
        .get_task(id)
        .await
        .expect("get task")
        .unwrap_or_else(|| panic!("{id} is missing"))
}

/// Every task, ascending ids.
pub(crate) async fn all_tasks(queue: &dyn QueueStore) -> Vec<TaskRecord> {
    let filter = TaskFilter {
        limit: u32::MAX,
        ..TaskFilter::default()
    };
    queue.list_tasks(&filter).await.expect("list tasks")
}

/// Ends task `id`, held by `owner`, with `end` at `now_ms`; must be accepted.
pub(crate) async fn complete(
    queue: &dyn QueueStore,
    id: TaskId,
    owner: &str,
    end: TaskEnd,
    now_ms: u64,
) {
    queue
        .complete(Completion::new(id, owner, end, now_ms))
        .await
        .unwrap_or_else(|error| panic!("complete {id} as {owner}: {error}"));
}

/// A failure's error value.
pub(crate) fn boom() -> serde_json::Value {
    json!({"code": "TASK_FAILED", "message": "boom"})
}

/// The end of a task that failed with [`boom`].
pub(crate) fn failure() -> TaskEnd {
    TaskEnd::Failed { error: boom() }
}
