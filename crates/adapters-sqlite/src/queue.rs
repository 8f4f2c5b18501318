//! The queue's write port on SQLite: every write applied by the store's writer under the write
//! lock, as the attempt writes are (see `writer.rs`), so concurrent claimers and sweepers on any
//! number of handles queue on the lock and each sees what the previous one committed.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::SqliteConnection;
use stint_domain::{TaskId, TaskState};
use stint_ports::{
    CancelOutcome, CancelTarget, Claim, ClaimedTask, Completion, Enqueued, NewTask, Renewal,
    RenewedClaims, StoreError, TaskQueue,
};

use crate::SqliteStore;
use crate::error::{map, to_i64, to_json, to_u64};
use crate::queue_history::{task_columns, task_record};

fn task_id(value: i64) -> Result<TaskId, StoreError> {
    Ok(TaskId(to_u64(value, "task id")?))
}

fn bind_id(id: TaskId) -> Result<i64, StoreError> {
    to_i64(id.0, "task id")
}

/// Inserts one task unless a live task holds its unique key (then answers that task's id).
async fn enqueue_one(
    conn: &mut SqliteConnection,
    task: &NewTask,
    now: i64,
) -> Result<Enqueued, StoreError> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO tasks (queue, run_id, node_id, priority, run_at_ms, spec, unique_key, state, \
             created_at_ms, updated_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 'ready', ?, ?) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(task.queue.as_str())
    .bind(task.run_id.as_str())
    .bind(task.node_id.as_str())
    .bind(task.priority)
    .bind(to_i64(task.run_at_ms, "run_at_ms")?)
    .bind(to_json(&task.spec, "spec")?)
    .bind(task.unique_key.as_deref())
    .bind(now)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map)?;
    if let Some(id) = inserted {
        return Ok(Enqueued {
            id: task_id(id)?,
            existing: false,
        });
    }
    // Only the unique key can conflict; its holder is live, and stays so under the write lock.
    let holder: i64 = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE unique_key = ? AND state IN ('ready', 'running')",
    )
    .bind(task.unique_key.as_deref())
    .fetch_one(&mut *conn)
    .await
    .map_err(map)?;
    Ok(Enqueued {
        id: task_id(holder)?,
        existing: true,
    })
}

async fn enqueue(
    tx: &mut SqliteConnection,
    tasks: Vec<NewTask>,
    now_ms: u64,
) -> Result<Vec<Enqueued>, StoreError> {
    let now = to_i64(now_ms, "enqueue time")?;
    let mut answers = Vec::with_capacity(tasks.len());
    for (position, task) in tasks.iter().enumerate() {
        // A refusal drops `tx`: the tasks before this one are rolled back with it.
        task.check(position)?;
        answers.push(enqueue_one(tx, task, now).await?);
    }
    Ok(answers)
}

/// The free slots of queue `?1` (its limit minus its running tasks), `NULL` when it has no
/// limit.
const FREE_SLOTS: &str = "SELECT (SELECT max_running FROM queues WHERE name = ?1) - \
     (SELECT COUNT(*) FROM tasks WHERE queue = ?1 AND state = 'running')";

/// The first `?3` ready tasks of queue `?1` due by `?2`, in claim order: a walk of the
/// `tasks_claimable` index that stops after `?3` rows, however many tasks are ready.
const READY: &str = "SELECT id, priority, run_at_ms FROM tasks \
     WHERE state = 'ready' AND queue = ?1 AND run_at_ms <= ?2 \
     ORDER BY priority DESC, run_at_ms, id LIMIT ?3";

/// Takes the tasks of the JSON array of ids `?4`.
const TAKE: &str = concat!(
    "UPDATE tasks SET state = 'running', owner = ?1, lease_expires_at_ms = ?2, \
         claims = claims + 1, updated_at_ms = ?3 \
     WHERE id IN (SELECT value FROM json_each(?4)) RETURNING ",
    task_columns!()
);

/// The ids of the ready tasks a claim takes: up to each queue's free slots from each queue,
/// then the first `claim.max` of them all in claim order (priority, due time, id).
async fn claimable(tx: &mut SqliteConnection, claim: &Claim) -> Result<Vec<i64>, StoreError> {
    let now = to_i64(claim.now_ms, "claim time")?;
    let max = i64::from(claim.max);
    let mut ready: Vec<(i64, i64, i64)> = Vec::new();
    for queue in &claim.queues {
        let free: Option<i64> = sqlx::query_scalar(FREE_SLOTS)
            .bind(queue.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
        let slots = free.map_or(max, |free| free.clamp(0, max));
        if slots == 0 {
            continue;
        }
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(READY)
            .bind(queue.as_str())
            .bind(now)
            .bind(slots)
            .fetch_all(&mut *tx)
            .await
            .map_err(map)?;
        ready.extend(rows);
    }
    ready.sort_unstable_by_key(|&(id, priority, run_at)| (std::cmp::Reverse(priority), run_at, id));
    // A queue named twice yields its tasks twice.
    ready.dedup();
    Ok(ready
        .into_iter()
        .take(usize::try_from(claim.max).unwrap_or(usize::MAX))
        .map(|(id, _, _)| id)
        .collect())
}

async fn claim(tx: &mut SqliteConnection, claim: Claim) -> Result<Vec<ClaimedTask>, StoreError> {
    let ids = claimable(tx, &claim).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let lease = to_i64(claim.now_ms.saturating_add(claim.lease_ms), "lease expiry")?;
    let rows = sqlx::query(TAKE)
        .bind(claim.owner.as_str())
        .bind(lease)
        .bind(to_i64(claim.now_ms, "claim time")?)
        .bind(to_json(&ids, "task ids")?)
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
    let mut claimed = rows
        .iter()
        .map(|row| task_record(row).map(|task| ClaimedTask { task }))
        .collect::<Result<Vec<_>, _>>()?;
    stint_ports::sort_claimed(&mut claimed);
    Ok(claimed)
}

async fn renew_claims(
    tx: &mut SqliteConnection,
    owner: &str,
    lease_expires_at_ms: u64,
) -> Result<RenewedClaims, StoreError> {
    let rows = sqlx::query(
        "UPDATE tasks SET lease_expires_at_ms = ? WHERE state = 'running' AND owner = ? \
         RETURNING id, cancel_requested",
    )
    .bind(to_i64(lease_expires_at_ms, "lease expiry")?)
    .bind(owner)
    .fetch_all(&mut *tx)
    .await
    .map_err(map)?;
    let mut renewed = Vec::with_capacity(rows.len());
    for row in rows {
        let id = task_id(row.try_get("id").map_err(map)?)?;
        renewed.push((id, row.try_get("cancel_requested").map_err(map)?));
    }
    Ok(RenewedClaims::from_rows(renewed))
}

async fn complete(tx: &mut SqliteConnection, completion: &Completion) -> Result<(), StoreError> {
    if complete_claimed(tx, completion).await? {
        Ok(())
    } else {
        Err(StoreError::task_not_owned(completion.task))
    }
}

/// Ends `completion`'s task if its claim is still the completion's owner's; whether it did.
pub(crate) async fn complete_claimed(
    tx: &mut SqliteConnection,
    completion: &Completion,
) -> Result<bool, StoreError> {
    let (task, owner, end, now_ms) = completion.parts();
    let now = to_i64(now_ms, "completion time")?;
    let state = end.state();
    let error = end
        .error()
        .map(|error| to_json(error, "error"))
        .transpose()?;
    let run_at = end
        .run_at_ms()
        .map(|at| to_i64(at, "run_at_ms"))
        .transpose()?;
    let done = sqlx::query(
        "UPDATE tasks SET \
             state = CASE WHEN ?1 = 'ready' AND cancel_requested THEN 'cancelled' ELSE ?1 END, \
             ended_at_ms = CASE WHEN ?1 <> 'ready' OR cancel_requested THEN ?4 END, \
             run_at_ms = COALESCE(?2, run_at_ms), last_error = COALESCE(?3, last_error), \
             owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = ?4 \
         WHERE id = ?5 AND state = 'running' AND owner = ?6",
    )
    .bind(state.as_str())
    .bind(run_at)
    .bind(error)
    .bind(now)
    .bind(bind_id(task)?)
    .bind(owner)
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    Ok(done.rows_affected() > 0)
}

/// One statement under the write lock: a second sweeper finds the tasks already taken back.
async fn sweep_expired(tx: &mut SqliteConnection, now_ms: u64) -> Result<Vec<TaskId>, StoreError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE tasks SET \
             state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'ready' END, \
             ended_at_ms = CASE WHEN cancel_requested THEN ?1 END, \
             owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = ?1 \
         WHERE state = 'running' AND lease_expires_at_ms < ?1 RETURNING id",
    )
    .bind(to_i64(now_ms, "sweep time")?)
    .fetch_all(&mut *tx)
    .await
    .map_err(map)?;
    let mut swept = ids
        .into_iter()
        .map(task_id)
        .collect::<Result<Vec<_>, _>>()?;
    swept.sort_unstable();
    Ok(swept)
}

async fn cancel(
    tx: &mut SqliteConnection,
    target: &CancelTarget,
    now_ms: u64,
) -> Result<Vec<CancelOutcome>, StoreError> {
    let (id, run_id) = match target {
        CancelTarget::Task(id) => (Some(bind_id(*id)?), None),
        CancelTarget::Run(run_id) => (None, Some(run_id.as_str())),
    };
    let now = to_i64(now_ms, "cancel time")?;
    let rows = sqlx::query("SELECT id, state FROM tasks WHERE id = ?1 OR run_id = ?2 ORDER BY id")
        .bind(id)
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let state: String = row.try_get("state").map_err(map)?;
        let state: TaskState = state.parse().map_err(StoreError::incompatible)?;
        found.push((task_id(row.try_get("id").map_err(map)?)?, state));
    }
    sqlx::query(
        "UPDATE tasks SET \
             state = CASE state WHEN 'ready' THEN 'cancelled' ELSE state END, \
             ended_at_ms = CASE state WHEN 'ready' THEN ?3 ELSE ended_at_ms END, \
             cancel_requested = cancel_requested OR state = 'running', updated_at_ms = ?3 \
         WHERE (id = ?1 OR run_id = ?2) AND state IN ('ready', 'running')",
    )
    .bind(id)
    .bind(run_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    let outcomes = found
        .into_iter()
        .map(|(id, state)| CancelOutcome::of(id, state));
    Ok(outcomes.collect())
}

async fn retry(
    tx: &mut SqliteConnection,
    task: TaskId,
    retry_base: u32,
    now_ms: u64,
) -> Result<(), StoreError> {
    let id = bind_id(task)?;
    let row = sqlx::query("SELECT state, unique_key FROM tasks WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
    let Some(row) = row else {
        return Err(StoreError::task_not_retryable(task, None));
    };
    let state: String = row.try_get("state").map_err(map)?;
    let state: TaskState = state.parse().map_err(StoreError::incompatible)?;
    if !matches!(state, TaskState::Failed | TaskState::Cancelled) {
        return Err(StoreError::task_not_retryable(task, Some(state)));
    }
    if let Some(key) = row
        .try_get::<Option<String>, _>("unique_key")
        .map_err(map)?
    {
        let holder: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE unique_key = ? AND state IN ('ready', 'running')",
        )
        .bind(key.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        if let Some(holder) = holder {
            return Err(StoreError::unique_key_held(task, &key, task_id(holder)?));
        }
    }
    let now = to_i64(now_ms, "retry time")?;
    sqlx::query(
        "UPDATE tasks SET state = 'ready', retry_base = ?, cancel_requested = 0, run_at_ms = ?, \
             ended_at_ms = NULL, updated_at_ms = ? WHERE id = ?",
    )
    .bind(retry_base)
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    Ok(())
}

async fn prune(
    tx: &mut SqliteConnection,
    ended_before_ms: u64,
    batch: u32,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
             WHERE state IN ('finished', 'failed', 'cancelled') AND ended_at_ms < ? \
             ORDER BY ended_at_ms, id LIMIT ?)",
    )
    .bind(to_i64(ended_before_ms, "prune time")?)
    .bind(i64::from(batch))
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    Ok(done.rows_affected())
}

async fn set_queue_limit(
    tx: &mut SqliteConnection,
    queue: &str,
    max_running: Option<u32>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO queues (name, max_running) VALUES (?, ?) \
         ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running",
    )
    .bind(queue)
    .bind(max_running)
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl TaskQueue for SqliteStore {
    async fn enqueue(&self, tasks: Vec<NewTask>, now_ms: u64) -> Result<Vec<Enqueued>, StoreError> {
        self.write(move |tx| Box::pin(enqueue(tx, tasks, now_ms)))
            .await
    }

    async fn claim(&self, request: Claim) -> Result<Vec<ClaimedTask>, StoreError> {
        self.write(move |tx| Box::pin(claim(tx, request))).await
    }

    async fn renew_claims(
        &self,
        owner: &str,
        renewal: Renewal,
    ) -> Result<RenewedClaims, StoreError> {
        // One host shares one clock: the caller's is the store's.
        let (owner, expires_at_ms) = (owner.to_owned(), renewal.expires_at_ms());
        self.write(move |tx| Box::pin(async move { renew_claims(tx, &owner, expires_at_ms).await }))
            .await
    }

    async fn complete(&self, completion: Completion) -> Result<(), StoreError> {
        self.write(move |tx| Box::pin(async move { complete(tx, &completion).await }))
            .await
    }

    async fn sweep_expired(&self, now_ms: u64) -> Result<Vec<TaskId>, StoreError> {
        self.write(move |tx| Box::pin(sweep_expired(tx, now_ms)))
            .await
    }

    async fn cancel(
        &self,
        target: CancelTarget,
        now_ms: u64,
    ) -> Result<Vec<CancelOutcome>, StoreError> {
        self.write(move |tx| Box::pin(async move { cancel(tx, &target, now_ms).await }))
            .await
    }

    async fn retry(&self, task: TaskId, retry_base: u32, now_ms: u64) -> Result<(), StoreError> {
        self.write(move |tx| Box::pin(retry(tx, task, retry_base, now_ms)))
            .await
    }

    async fn set_queue_limit(
        &self,
        queue: &str,
        max_running: Option<u32>,
    ) -> Result<(), StoreError> {
        let queue = queue.to_owned();
        self.write(move |tx| {
            Box::pin(async move { set_queue_limit(tx, &queue, max_running).await })
        })
        .await
    }

    async fn prune(&self, ended_before_ms: u64, batch: u32) -> Result<u64, StoreError> {
        self.write(move |tx| Box::pin(prune(tx, ended_before_ms, batch)))
            .await
    }
}
