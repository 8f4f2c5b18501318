//! The queue's query port on SQLite, and the task row as read back, from the pool's rows and from
//! the writer's (the writes that return rows). Reads are single statements in autocommit, as the
//! history's are.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use stint_domain::{QueueStats, TaskId, TaskRecord};
use stint_ports::{QueueHistory, StoreError, TaskFilter};

use crate::SqliteStore;
use crate::error::{map, map_rusqlite, parse_json, to_i64, to_u32, to_u64};

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

/// A column holding an unsigned number.
fn unsigned(row: &SqliteRow, column: &str) -> Result<u64, StoreError> {
    to_u64(row.try_get(column).map_err(map)?, column)
}

/// A nullable column holding an unsigned number.
fn unsigned_opt(row: &SqliteRow, column: &str) -> Result<Option<u64>, StoreError> {
    let value: Option<i64> = row.try_get(column).map_err(map)?;
    value.map(|value| to_u64(value, column)).transpose()
}

/// A nullable column holding JSON text.
fn json_opt(row: &SqliteRow, column: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let text: Option<String> = row.try_get(column).map_err(map)?;
    text.map(|text| parse_json(&text, column)).transpose()
}

/// A task row read back.
pub(crate) fn task_record(row: &SqliteRow) -> Result<TaskRecord, StoreError> {
    let state: String = row.try_get("state").map_err(map)?;
    Ok(TaskRecord {
        id: TaskId(unsigned(row, "id")?),
        queue: row.try_get("queue").map_err(map)?,
        run_id: row.try_get("run_id").map_err(map)?,
        node_id: row.try_get("node_id").map_err(map)?,
        priority: row.try_get("priority").map_err(map)?,
        run_at_ms: unsigned(row, "run_at_ms")?,
        spec: json_opt(row, "spec")?.unwrap_or_default(),
        unique_key: row.try_get("unique_key").map_err(map)?,
        state: state.parse().map_err(StoreError::incompatible)?,
        claims: to_u32(row.try_get("claims").map_err(map)?, "claims")?,
        owner: row.try_get("owner").map_err(map)?,
        lease_expires_at_ms: unsigned_opt(row, "lease_expires_at_ms")?,
        cancel_requested: row.try_get("cancel_requested").map_err(map)?,
        retry_base: to_u32(row.try_get("retry_base").map_err(map)?, "retry_base")?,
        created_at_ms: unsigned(row, "created_at_ms")?,
        updated_at_ms: unsigned(row, "updated_at_ms")?,
        ended_at_ms: unsigned_opt(row, "ended_at_ms")?,
        last_error: json_opt(row, "last_error")?,
    })
}

/// A nullable JSON column of the writer's row.
fn json_opt_of(
    row: &rusqlite::Row<'_>,
    index: usize,
    column: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let text: Option<String> = row.get(index).map_err(map_rusqlite)?;
    text.map(|text| parse_json(&text, column)).transpose()
}

/// A task row read back on the writer's connection (a claim's `RETURNING`), its columns in
/// [`task_columns`] order: what [`task_record`] reads from the pool's rows.
pub(crate) fn task_record_of(row: &rusqlite::Row<'_>) -> Result<TaskRecord, StoreError> {
    let get_u64 = |index, column| to_u64(row.get(index).map_err(map_rusqlite)?, column);
    let get_opt_u64 = |index, column| -> Result<Option<u64>, StoreError> {
        let value: Option<i64> = row.get(index).map_err(map_rusqlite)?;
        value.map(|value| to_u64(value, column)).transpose()
    };
    let state: String = row.get(8).map_err(map_rusqlite)?;
    Ok(TaskRecord {
        id: TaskId(get_u64(0, "id")?),
        queue: row.get(1).map_err(map_rusqlite)?,
        run_id: row.get(2).map_err(map_rusqlite)?,
        node_id: row.get(3).map_err(map_rusqlite)?,
        priority: row.get(4).map_err(map_rusqlite)?,
        run_at_ms: get_u64(5, "run_at_ms")?,
        spec: json_opt_of(row, 6, "spec")?.unwrap_or_default(),
        unique_key: row.get(7).map_err(map_rusqlite)?,
        state: state.parse().map_err(StoreError::incompatible)?,
        claims: to_u32(row.get(9).map_err(map_rusqlite)?, "claims")?,
        owner: row.get(10).map_err(map_rusqlite)?,
        lease_expires_at_ms: get_opt_u64(11, "lease_expires_at_ms")?,
        cancel_requested: row.get(12).map_err(map_rusqlite)?,
        retry_base: to_u32(row.get(13).map_err(map_rusqlite)?, "retry_base")?,
        created_at_ms: get_u64(14, "created_at_ms")?,
        updated_at_ms: get_u64(15, "updated_at_ms")?,
        ended_at_ms: get_opt_u64(16, "ended_at_ms")?,
        last_error: json_opt_of(row, 17, "last_error")?,
    })
}

/// The counts of every queue that holds a task or has a row in `queues`. `?1` is now.
const QUEUE_STATS: &str = "SELECT n.name AS queue, \
    COUNT(t.id) FILTER (WHERE t.state = 'ready' AND t.run_at_ms <= ?1) AS ready, \
    COUNT(t.id) FILTER (WHERE t.state = 'ready' AND t.run_at_ms > ?1) AS scheduled, \
    COUNT(t.id) FILTER (WHERE t.state = 'running') AS running, \
    COUNT(t.id) FILTER (WHERE t.state = 'finished') AS finished, \
    COUNT(t.id) FILTER (WHERE t.state = 'failed') AS failed, \
    COUNT(t.id) FILTER (WHERE t.state = 'cancelled') AS cancelled, \
    MIN(t.run_at_ms) FILTER (WHERE t.state = 'ready' AND t.run_at_ms <= ?1) AS oldest_ready_at, \
    q.max_running \
    FROM (SELECT queue AS name FROM tasks UNION SELECT name FROM queues) n \
    LEFT JOIN tasks t ON t.queue = n.name LEFT JOIN queues q ON q.name = n.name \
    GROUP BY n.name, q.max_running ORDER BY n.name";

fn queue_stats_row(row: &SqliteRow, now_ms: u64) -> Result<QueueStats, StoreError> {
    let max_running: Option<i64> = row.try_get("max_running").map_err(map)?;
    Ok(QueueStats {
        queue: row.try_get("queue").map_err(map)?,
        ready: unsigned(row, "ready")?,
        scheduled: unsigned(row, "scheduled")?,
        running: unsigned(row, "running")?,
        finished: unsigned(row, "finished")?,
        failed: unsigned(row, "failed")?,
        cancelled: unsigned(row, "cancelled")?,
        oldest_ready_age_ms: unsigned_opt(row, "oldest_ready_at")?
            .map(|at| now_ms.saturating_sub(at)),
        max_running: max_running
            .map(|max| to_u32(max, "max_running"))
            .transpose()?,
    })
}

async fn list_tasks(pool: &SqlitePool, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        task_columns!(),
        " FROM tasks WHERE (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR state = ?2) \
         ORDER BY id LIMIT ?3"
    ))
    .bind(filter.queue.as_deref())
    .bind(filter.state.map(|state| state.as_str()))
    .bind(i64::from(filter.limit))
    .fetch_all(pool)
    .await
    .map_err(map)?;
    rows.iter().map(task_record).collect()
}

#[async_trait]
impl QueueHistory for SqliteStore {
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE id = ?"
        ))
        .bind(to_i64(id.0, "task id")?)
        .fetch_optional(self.pool())
        .await
        .map_err(map)?;
        row.as_ref().map(task_record).transpose()
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        list_tasks(self.pool(), filter).await
    }

    async fn queue_stats(&self, now_ms: u64) -> Result<Vec<QueueStats>, StoreError> {
        let rows = sqlx::query(QUEUE_STATS)
            .bind(to_i64(now_ms, "now")?)
            .fetch_all(self.pool())
            .await
            .map_err(map)?;
        rows.iter()
            .map(|row| queue_stats_row(row, now_ms))
            .collect()
    }
}
