//! The queue's query port on PostgreSQL, and the task row as read back (shared with the writes
//! that return rows).

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use stint_domain::{QueueStats, TaskId, TaskRecord};
use stint_ports::{QueueHistory, StoreError, TaskFilter};

use crate::PostgresStore;
use crate::error::{OpError, to_i64, to_u32, to_u64};

/// The columns of a task, in the order [`task_record`] reads them; a macro so that statements
/// stay `&'static str`.
macro_rules! task_columns {
    () => {
        "id, queue, run_id, node_id, priority, run_at_ms, spec, unique_key, state, claims, owner, \
         lease_expires_at_ms, cancel_requested, retry_base, created_at_ms, updated_at_ms, \
         ended_at_ms, last_error"
    };
}
pub(crate) use task_columns;

fn unsigned(row: &PgRow, column: &str) -> Result<u64, OpError> {
    to_u64(column, row.try_get(column)?)
}

fn unsigned_opt(row: &PgRow, column: &str) -> Result<Option<u64>, OpError> {
    let value: Option<i64> = row.try_get(column)?;
    value.map(|value| to_u64(column, value)).transpose()
}

fn small(row: &PgRow, column: &str) -> Result<u32, OpError> {
    to_u32(column, row.try_get(column)?)
}

/// A stored state read back.
pub(crate) fn task_state(row: &PgRow) -> Result<stint_domain::TaskState, OpError> {
    let text: String = row.try_get("state")?;
    Ok(text.parse().map_err(StoreError::incompatible)?)
}

/// A task row read back.
pub(crate) fn task_record(row: &PgRow) -> Result<TaskRecord, OpError> {
    Ok(TaskRecord {
        id: TaskId(unsigned(row, "id")?),
        queue: row.try_get("queue")?,
        run_id: row.try_get("run_id")?,
        node_id: row.try_get("node_id")?,
        priority: row.try_get("priority")?,
        run_at_ms: unsigned(row, "run_at_ms")?,
        spec: row.try_get("spec")?,
        unique_key: row.try_get("unique_key")?,
        state: task_state(row)?,
        claims: small(row, "claims")?,
        owner: row.try_get("owner")?,
        lease_expires_at_ms: unsigned_opt(row, "lease_expires_at_ms")?,
        cancel_requested: row.try_get("cancel_requested")?,
        retry_base: small(row, "retry_base")?,
        created_at_ms: unsigned(row, "created_at_ms")?,
        updated_at_ms: unsigned(row, "updated_at_ms")?,
        ended_at_ms: unsigned_opt(row, "ended_at_ms")?,
        last_error: row.try_get("last_error")?,
    })
}

/// The counts of every queue that holds a task or has a row in `queues`, in byte order of the
/// names (as SQLite orders them). `$1` is now.
const QUEUE_STATS: &str = "SELECT n.name AS queue, \
    COUNT(t.id) FILTER (WHERE t.state = 'ready' AND t.run_at_ms <= $1) AS ready, \
    COUNT(t.id) FILTER (WHERE t.state = 'ready' AND t.run_at_ms > $1) AS scheduled, \
    COUNT(t.id) FILTER (WHERE t.state = 'running') AS running, \
    COUNT(t.id) FILTER (WHERE t.state = 'finished') AS finished, \
    COUNT(t.id) FILTER (WHERE t.state = 'failed') AS failed, \
    COUNT(t.id) FILTER (WHERE t.state = 'cancelled') AS cancelled, \
    MIN(t.run_at_ms) FILTER (WHERE t.state = 'ready' AND t.run_at_ms <= $1) AS oldest_ready_at, \
    q.max_running \
    FROM (SELECT queue AS name FROM tasks UNION SELECT name FROM queues) n \
    LEFT JOIN tasks t ON t.queue = n.name LEFT JOIN queues q ON q.name = n.name \
    GROUP BY n.name, q.max_running ORDER BY n.name COLLATE \"C\"";

fn queue_stats_row(row: &PgRow, now_ms: u64) -> Result<QueueStats, OpError> {
    let max_running: Option<i64> = row.try_get("max_running")?;
    Ok(QueueStats {
        queue: row.try_get("queue")?,
        ready: unsigned(row, "ready")?,
        scheduled: unsigned(row, "scheduled")?,
        running: unsigned(row, "running")?,
        finished: unsigned(row, "finished")?,
        failed: unsigned(row, "failed")?,
        cancelled: unsigned(row, "cancelled")?,
        oldest_ready_age_ms: unsigned_opt(row, "oldest_ready_at")?
            .map(|at| now_ms.saturating_sub(at)),
        max_running: max_running
            .map(|max| to_u32("queues.max_running", max))
            .transpose()?,
    })
}

async fn list_tasks(pool: &PgPool, filter: &TaskFilter) -> Result<Vec<TaskRecord>, OpError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        task_columns!(),
        " FROM tasks WHERE ($1::text IS NULL OR queue = $1) \
           AND ($2::text IS NULL OR state = $2) ORDER BY id LIMIT $3"
    ))
    .bind(filter.queue.as_deref())
    .bind(filter.state.map(|state| state.as_str()))
    .bind(i64::from(filter.limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(task_record).collect()
}

#[async_trait]
impl QueueHistory for PostgresStore {
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.retrying("reading a task", |pool| async move {
            let row = sqlx::query(concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE id = $1"
            ))
            .bind(to_i64(id.0))
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(task_record).transpose()
        })
        .await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.retrying("listing tasks", |pool| list_tasks(pool, filter))
            .await
    }

    async fn queue_stats(&self, now_ms: u64) -> Result<Vec<QueueStats>, StoreError> {
        self.retrying("counting queues", |pool| async move {
            let rows = sqlx::query(QUEUE_STATS)
                .bind(to_i64(now_ms))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| queue_stats_row(row, now_ms))
                .collect()
        })
        .await
    }
}
