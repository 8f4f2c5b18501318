//! The queue's write port on SQLite: every write applied by the store's writer under the write
//! lock, as the attempt writes are (see `writer.rs`), so concurrent claimers and sweepers on any
//! number of handles queue on the lock and each sees what the previous one committed.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use stint_domain::{TaskError, TaskId, TaskRecord, TaskState};
use stint_ports::{
    CancelOutcome, CancelTarget, Claim, ClaimedTask, Completion, Enqueued, LastAttempt, NewTask,
    NodeAttempts, Renewal, RenewedClaims, StoreError, TaskQueue,
};

use crate::SqliteStore;
use crate::error::{map_rusqlite as map, to_i64, to_json, to_u64};
use crate::queue_history::{task_columns, task_record_of};
use crate::writer::statement;

fn task_id(value: i64) -> Result<TaskId, StoreError> {
    Ok(TaskId(to_u64(value, "task id")?))
}

fn bind_id(id: TaskId) -> Result<i64, StoreError> {
    to_i64(id.0, "task id")
}

/// The live task holding `unique_key`, if any.
const HOLDER: &str = "SELECT id FROM tasks WHERE unique_key = ? AND state IN ('ready', 'running')";

/// Inserts one task unless a live task holds its unique key (then answers that task's id).
fn enqueue_one(conn: &Connection, task: &NewTask, now: i64) -> Result<Enqueued, StoreError> {
    let inserted: Option<i64> = statement(
        conn,
        "INSERT INTO tasks (queue, run_id, node_id, priority, run_at_ms, spec, unique_key, state, \
             created_at_ms, updated_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 'ready', ?, ?) ON CONFLICT DO NOTHING RETURNING id",
    )?
    .query_row(
        params![
            task.queue,
            task.run_id,
            task.node_id,
            task.priority,
            to_i64(task.run_at_ms, "run_at_ms")?,
            to_json(&task.spec, "spec")?,
            task.unique_key,
            now,
            now,
        ],
        |row| row.get(0),
    )
    .optional()
    .map_err(map)?;
    if let Some(id) = inserted {
        return Ok(Enqueued {
            id: task_id(id)?,
            existing: false,
        });
    }
    // Only the unique key can conflict; its holder is live, and stays so under the write lock.
    let holder: i64 = statement(conn, HOLDER)?
        .query_row([&task.unique_key], |row| row.get(0))
        .map_err(map)?;
    Ok(Enqueued {
        id: task_id(holder)?,
        existing: true,
    })
}

fn enqueue(tx: &Connection, tasks: &[NewTask], now_ms: u64) -> Result<Vec<Enqueued>, StoreError> {
    let now = to_i64(now_ms, "enqueue time")?;
    let mut answers = Vec::with_capacity(tasks.len());
    for (position, task) in tasks.iter().enumerate() {
        // A refusal rolls the write back: the tasks before this one go with it.
        task.check(position)?;
        answers.push(enqueue_one(tx, task, now)?);
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
fn claimable(tx: &Connection, claim: &Claim) -> Result<Vec<i64>, StoreError> {
    let now = to_i64(claim.now_ms, "claim time")?;
    let max = i64::from(claim.max);
    let mut ready: Vec<(i64, i64, i64)> = Vec::new();
    for queue in &claim.queues {
        let free: Option<i64> = statement(tx, FREE_SLOTS)?
            .query_row([queue], |row| row.get(0))
            .map_err(map)?;
        let slots = free.map_or(max, |free| free.clamp(0, max));
        if slots == 0 {
            continue;
        }
        let mut select = statement(tx, READY)?;
        let rows = select
            .query_map(params![queue, now, slots], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(map)?;
        for row in rows {
            ready.push(row.map_err(map)?);
        }
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

fn claim(tx: &Connection, claim: &Claim) -> Result<Vec<ClaimedTask>, StoreError> {
    let ids = claimable(tx, claim)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let lease = to_i64(claim.now_ms.saturating_add(claim.lease_ms), "lease expiry")?;
    let mut take = statement(tx, TAKE)?;
    let mut rows = take
        .query(params![
            claim.owner,
            lease,
            to_i64(claim.now_ms, "claim time")?,
            to_json(&ids, "task ids")?,
        ])
        .map_err(map)?;
    let mut claimed = Vec::with_capacity(ids.len());
    while let Some(row) = rows.next().map_err(map)? {
        claimed.push(ClaimedTask::new(task_record_of(row)?));
    }
    drop(rows);
    for claimed in &mut claimed {
        claimed.attempts = Some(node_attempts(tx, &claimed.task)?);
    }
    stint_ports::sort_claimed(&mut claimed);
    Ok(claimed)
}

/// The last attempt (state, retryable flag, error) of node `?1`/`?2`, iteration 0, if any, and
/// how many of its attempts failed.
const NODE_ATTEMPTS: &str = "SELECT l.state, l.retryable, l.error, \
        (SELECT COUNT(*) FROM attempts \
          WHERE run_id = ?1 AND node_id = ?2 AND iteration = 0 AND state = 'failed') \
     FROM (SELECT 1) LEFT JOIN (SELECT state, retryable, error FROM attempts \
                                 WHERE run_id = ?1 AND node_id = ?2 AND iteration = 0 \
                                 ORDER BY attempt DESC LIMIT 1) AS l";

/// What the attempts of `task`'s node say, read with its claim.
fn node_attempts(tx: &Connection, task: &TaskRecord) -> Result<NodeAttempts, StoreError> {
    let mut read = statement(tx, NODE_ATTEMPTS)?;
    let (state, retryable, error, failed): (Option<String>, Option<bool>, Option<String>, i64) =
        read.query_row(params![task.run_id, task.node_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .map_err(map)?;
    let last = match state {
        None => None,
        Some(state) => Some(LastAttempt {
            state: state.parse().map_err(StoreError::incompatible)?,
            retryable,
            // One this version cannot read back is left out, as the listings do.
            error: error.and_then(|text| serde_json::from_str::<TaskError>(&text).ok()),
        }),
    };
    Ok(NodeAttempts {
        last,
        failed: u32::try_from(failed).unwrap_or(u32::MAX),
    })
}

fn renew_claims(
    tx: &Connection,
    owner: &str,
    lease_expires_at_ms: u64,
) -> Result<RenewedClaims, StoreError> {
    let mut update = statement(
        tx,
        "UPDATE tasks SET lease_expires_at_ms = ? WHERE state = 'running' AND owner = ? \
         RETURNING id, cancel_requested",
    )?;
    let rows = update
        .query_map(
            params![to_i64(lease_expires_at_ms, "lease expiry")?, owner],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?)),
        )
        .map_err(map)?;
    let mut renewed = Vec::new();
    for row in rows {
        let (id, cancel_requested) = row.map_err(map)?;
        renewed.push((task_id(id)?, cancel_requested));
    }
    Ok(RenewedClaims::from_rows(renewed))
}

fn complete(tx: &Connection, completion: &Completion) -> Result<(), StoreError> {
    if complete_claimed(tx, completion)? {
        Ok(())
    } else {
        Err(StoreError::task_not_owned(completion.task))
    }
}

/// Ends `completion`'s task if its claim is still the completion's owner's; whether it did.
pub(crate) fn complete_claimed(
    tx: &Connection,
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
    let changed = statement(
        tx,
        "UPDATE tasks SET \
             state = CASE WHEN ?1 = 'ready' AND cancel_requested THEN 'cancelled' ELSE ?1 END, \
             ended_at_ms = CASE WHEN ?1 <> 'ready' OR cancel_requested THEN ?4 END, \
             run_at_ms = COALESCE(?2, run_at_ms), last_error = COALESCE(?3, last_error), \
             owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = ?4 \
         WHERE id = ?5 AND state = 'running' AND owner = ?6",
    )?
    .execute(params![
        state.as_str(),
        run_at,
        error,
        now,
        bind_id(task)?,
        owner
    ])
    .map_err(map)?;
    Ok(changed > 0)
}

/// One statement under the write lock: a second sweeper finds the tasks already taken back.
fn sweep_expired(tx: &Connection, now_ms: u64) -> Result<Vec<TaskId>, StoreError> {
    let mut update = statement(
        tx,
        "UPDATE tasks SET \
             state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'ready' END, \
             ended_at_ms = CASE WHEN cancel_requested THEN ?1 END, \
             owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = ?1 \
         WHERE state = 'running' AND lease_expires_at_ms < ?1 RETURNING id",
    )?;
    let ids = update
        .query_map([to_i64(now_ms, "sweep time")?], |row| row.get::<_, i64>(0))
        .map_err(map)?;
    let mut swept = Vec::new();
    for id in ids {
        swept.push(task_id(id.map_err(map)?)?);
    }
    swept.sort_unstable();
    Ok(swept)
}

fn cancel(
    tx: &Connection,
    target: &CancelTarget,
    now_ms: u64,
) -> Result<Vec<CancelOutcome>, StoreError> {
    let (id, run_id) = match target {
        CancelTarget::Task(id) => (Some(bind_id(*id)?), None),
        CancelTarget::Run(run_id) => (None, Some(run_id.as_str())),
    };
    let now = to_i64(now_ms, "cancel time")?;
    let mut select = statement(
        tx,
        "SELECT id, state FROM tasks WHERE id = ?1 OR run_id = ?2 ORDER BY id",
    )?;
    let rows = select
        .query_map(params![id, run_id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(map)?;
    let mut found = Vec::new();
    for row in rows {
        let (task, state) = row.map_err(map)?;
        let state: TaskState = state.parse().map_err(StoreError::incompatible)?;
        found.push((task_id(task)?, state));
    }
    statement(
        tx,
        "UPDATE tasks SET \
             state = CASE state WHEN 'ready' THEN 'cancelled' ELSE state END, \
             ended_at_ms = CASE state WHEN 'ready' THEN ?3 ELSE ended_at_ms END, \
             cancel_requested = cancel_requested OR state = 'running', updated_at_ms = ?3 \
         WHERE (id = ?1 OR run_id = ?2) AND state IN ('ready', 'running')",
    )?
    .execute(params![id, run_id, now])
    .map_err(map)?;
    let outcomes = found
        .into_iter()
        .map(|(id, state)| CancelOutcome::of(id, state));
    Ok(outcomes.collect())
}

fn retry(tx: &Connection, task: TaskId, retry_base: u32, now_ms: u64) -> Result<(), StoreError> {
    let id = bind_id(task)?;
    let row: Option<(String, Option<String>)> =
        statement(tx, "SELECT state, unique_key FROM tasks WHERE id = ?")?
            .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .map_err(map)?;
    let Some((state, unique_key)) = row else {
        return Err(StoreError::task_not_retryable(task, None));
    };
    let state: TaskState = state.parse().map_err(StoreError::incompatible)?;
    if !matches!(state, TaskState::Failed | TaskState::Cancelled) {
        return Err(StoreError::task_not_retryable(task, Some(state)));
    }
    if let Some(key) = unique_key {
        let holder: Option<i64> = statement(tx, HOLDER)?
            .query_row([&key], |row| row.get(0))
            .optional()
            .map_err(map)?;
        if let Some(holder) = holder {
            return Err(StoreError::unique_key_held(task, &key, task_id(holder)?));
        }
    }
    let now = to_i64(now_ms, "retry time")?;
    statement(
        tx,
        "UPDATE tasks SET state = 'ready', retry_base = ?, cancel_requested = 0, run_at_ms = ?, \
             ended_at_ms = NULL, updated_at_ms = ? WHERE id = ?",
    )?
    .execute(params![retry_base, now, now, id])
    .map_err(map)?;
    Ok(())
}

fn set_queue_limit(
    tx: &Connection,
    queue: &str,
    max_running: Option<u32>,
) -> Result<(), StoreError> {
    statement(
        tx,
        "INSERT INTO queues (name, max_running) VALUES (?, ?) \
         ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running",
    )?
    .execute(params![queue, max_running])
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl TaskQueue for SqliteStore {
    async fn enqueue(&self, tasks: Vec<NewTask>, now_ms: u64) -> Result<Vec<Enqueued>, StoreError> {
        self.write(move |tx| enqueue(tx, &tasks, now_ms)).await
    }

    async fn claim(&self, request: Claim) -> Result<Vec<ClaimedTask>, StoreError> {
        self.write(move |tx| claim(tx, &request)).await
    }

    async fn renew_claims(
        &self,
        owner: &str,
        renewal: Renewal,
    ) -> Result<RenewedClaims, StoreError> {
        // One host shares one clock: the caller's is the store's.
        let (owner, expires_at_ms) = (owner.to_owned(), renewal.expires_at_ms());
        self.write(move |tx| renew_claims(tx, &owner, expires_at_ms))
            .await
    }

    async fn complete(&self, completion: Completion) -> Result<(), StoreError> {
        self.write(move |tx| complete(tx, &completion)).await
    }

    async fn sweep_expired(&self, now_ms: u64) -> Result<Vec<TaskId>, StoreError> {
        self.write(move |tx| sweep_expired(tx, now_ms)).await
    }

    async fn cancel(
        &self,
        target: CancelTarget,
        now_ms: u64,
    ) -> Result<Vec<CancelOutcome>, StoreError> {
        self.write(move |tx| cancel(tx, &target, now_ms)).await
    }

    async fn retry(&self, task: TaskId, retry_base: u32, now_ms: u64) -> Result<(), StoreError> {
        self.write(move |tx| retry(tx, task, retry_base, now_ms))
            .await
    }

    async fn set_queue_limit(
        &self,
        queue: &str,
        max_running: Option<u32>,
    ) -> Result<(), StoreError> {
        let queue = queue.to_owned();
        self.write(move |tx| set_queue_limit(tx, &queue, max_running))
            .await
    }

    async fn prune(&self, ended_before_ms: u64, batch: u32) -> Result<u64, StoreError> {
        self.write(move |tx| crate::prune::prune(tx, ended_before_ms, batch))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI32, Ordering};

    use rusqlite::StatementStatus;
    use serde_json::json;

    use super::*;
    use crate::SqliteOptions;

    /// The claim's statements stay prepared from one claim to the next, whatever the values
    /// bound (the number of free slots in READY's `LIMIT` among them).
    #[tokio::test]
    async fn claims_reuse_their_prepared_statements() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("q.db"), SqliteOptions::default())
            .await
            .expect("open");
        let tasks = (0..4).map(|i| NewTask::new("r", format!("n{i}"), 0, json!({})));
        store.enqueue(tasks.collect(), 1).await.expect("enqueue");
        for max in [1, 2, 3] {
            let claim = Claim {
                queues: vec!["default".to_owned()],
                owner: "w".to_owned(),
                max,
                now_ms: 2,
                lease_ms: 1_000,
            };
            store.claim(claim).await.expect("claim");
        }
        let reprepared = Arc::new(AtomicI32::new(-1));
        let count = reprepared.clone();
        store
            .with_writer_connection(move |conn| {
                let mut total = 0;
                for sql in [FREE_SLOTS, READY, TAKE] {
                    let statement = conn.prepare_cached(sql).expect("cached");
                    total += statement.get_status(StatementStatus::RePrepare);
                }
                count.store(total, Ordering::SeqCst);
            })
            .await
            .expect("inspect");
        assert_eq!(reprepared.load(Ordering::SeqCst), 0);
    }
}
