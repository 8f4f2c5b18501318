//! The query port on PostgreSQL: the store's reads, and the decoding of rows into records.
//!
//! Text is ordered with `COLLATE "C"` (byte order), so listings sort the same way whatever the
//! database's locale, and the same way as the SQLite and in-memory stores.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use stint_domain::{
    AttemptRecord, AttemptState, EventRecord, NodeKey, NodeRecord, RunSummary, TaskError,
};
use stint_ports::{
    AttemptFilter, EventPage, HistoryStore, LastAttempt, NodeAttempts, RunListing, RunQuery,
    StoreError, unreadable,
};

use crate::PostgresStore;
use crate::error::{OpError, to_i64, to_u32, to_u64};

/// The JSON columns are read as text and parsed here, so a value serde_json cannot read back
/// (nested deeper than its limit) is listed as a marker instead of failing the listing.
const ATTEMPT_COLUMNS: &str = "run_id, node_id, iteration, attempt, state, owner, \
     lease_expires_at_ms, started_at_ms, finished_at_ms, last_heartbeat_at_ms, \
     heartbeat::text AS heartbeat, error::text AS error, retryable, vcs, \
     metadata::text AS metadata, working_dir, process::text AS process";

const NODE_COLUMNS: &str =
    "run_id, node_id, iteration, state, last_attempt, updated_at_ms, output_table, label";

fn state(row: &PgRow) -> Result<AttemptState, OpError> {
    let text: String = row.try_get("state")?;
    text.parse()
        .map_err(|message: String| OpError::Store(StoreError::incompatible(message)))
}

fn optional_u64(row: &PgRow, column: &str) -> Result<Option<u64>, OpError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|value| to_u64(column, value))
        .transpose()
}

/// A JSON column read as text: a value this version cannot read is [`unreadable`]'s marker.
fn json_text(row: &PgRow, column: &str) -> Result<Option<Value>, OpError> {
    let text: Option<String> = row.try_get(column)?;
    Ok(text.map(|text| {
        serde_json::from_str(&text).unwrap_or_else(|error| {
            tracing::warn!(column, %error, "a stored value cannot be read back");
            unreadable(&error)
        })
    }))
}

/// An attempt's error (a JSON column read as text); one this version cannot read is left out.
fn attempt_error(row: &PgRow, column: &str) -> Result<Option<TaskError>, OpError> {
    Ok(json_text(row, column)?.and_then(|value| {
        serde_json::from_value::<TaskError>(value)
            .inspect_err(|error| {
                tracing::warn!(%error, "a stored attempt error cannot be read back");
            })
            .ok()
    }))
}

/// A claimed task's node attempts, as the claim reads them: `node_last_state` (NULL without
/// attempts), `node_last_retryable`, `node_last_error` (as text) and `node_failed`.
pub(crate) fn node_attempts(row: &PgRow) -> Result<NodeAttempts, OpError> {
    let state: Option<String> = row.try_get("node_last_state")?;
    let last = match state {
        None => None,
        Some(state) => Some(LastAttempt {
            state: state.parse().map_err(StoreError::incompatible)?,
            retryable: row.try_get("node_last_retryable")?,
            error: attempt_error(row, "node_last_error")?,
        }),
    };
    Ok(NodeAttempts {
        last,
        failed: to_u32("failed attempts", row.try_get("node_failed")?)?,
    })
}

fn decode_attempt(row: &PgRow) -> Result<AttemptRecord, OpError> {
    let error = attempt_error(row, "error")?;
    Ok(AttemptRecord {
        run_id: row.try_get("run_id")?,
        node_id: row.try_get("node_id")?,
        iteration: to_u32("iteration", row.try_get("iteration")?)?,
        attempt: to_u32("attempt", row.try_get("attempt")?)?,
        state: state(row)?,
        error,
        retryable: row.try_get("retryable")?,
        heartbeat: json_text(row, "heartbeat")?,
        last_heartbeat_at_ms: optional_u64(row, "last_heartbeat_at_ms")?,
        started_at_ms: to_u64("started_at_ms", row.try_get("started_at_ms")?)?,
        finished_at_ms: optional_u64(row, "finished_at_ms")?,
        vcs: row.try_get("vcs")?,
        metadata: json_text(row, "metadata")?.unwrap_or(Value::Null),
        working_dir: row.try_get("working_dir")?,
        owner: row.try_get("owner")?,
        lease_expires_at_ms: to_u64("lease_expires_at_ms", row.try_get("lease_expires_at_ms")?)?,
        // A place this version cannot read is no place: recovery then leaves the group alone.
        process: json_text(row, "process")?.and_then(|value| {
            serde_json::from_value(value)
                .inspect_err(|error| {
                    tracing::warn!(%error, "a stored process place cannot be read back");
                })
                .ok()
        }),
    })
}

fn decode_node(row: &PgRow) -> Result<NodeRecord, OpError> {
    Ok(NodeRecord {
        run_id: row.try_get("run_id")?,
        node_id: row.try_get("node_id")?,
        iteration: to_u32("iteration", row.try_get("iteration")?)?,
        state: state(row)?,
        last_attempt: to_u32("last_attempt", row.try_get("last_attempt")?)?,
        updated_at_ms: to_u64("updated_at_ms", row.try_get("updated_at_ms")?)?,
        output_table: row.try_get("output_table")?,
        label: row.try_get("label")?,
    })
}

pub(crate) async fn list_attempts(
    pool: &PgPool,
    filter: &AttemptFilter,
) -> Result<Vec<AttemptRecord>, OpError> {
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts \
         WHERE run_id = $1 AND ($2::text IS NULL OR node_id = $2) \
           AND ($3::bigint IS NULL OR iteration = $3) \
         ORDER BY node_id COLLATE \"C\", iteration, attempt"
    );
    // The text is built from constants only; every value is bound.
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&filter.run_id)
        .bind(&filter.node_id)
        .bind(filter.iteration.map(i64::from))
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode_attempt).collect()
}

/// The in-progress attempts whose lease expired before now (`lease_now`, else the database's
/// clock, as the recovery sweep judges it), in key order.
pub(crate) async fn expired_attempts(
    pool: &PgPool,
    lease_now: Option<i64>,
) -> Result<Vec<AttemptRecord>, OpError> {
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts \
         WHERE state = 'in-progress' AND lease_expires_at_ms < COALESCE($1::bigint, {}) \
         ORDER BY run_id COLLATE \"C\", node_id COLLATE \"C\", iteration, attempt",
        db_now_ms!()
    );
    // The text is built from constants only; every value is bound.
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease_now)
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode_attempt).collect()
}

pub(crate) async fn get_node(pool: &PgPool, node: &NodeKey) -> Result<Option<NodeRecord>, OpError> {
    let sql = format!(
        "SELECT {NODE_COLUMNS} FROM nodes WHERE run_id = $1 AND node_id = $2 AND iteration = $3"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(node.run_id())
        .bind(node.node_id())
        .bind(i64::from(node.iteration()))
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(decode_node).transpose()
}

pub(crate) async fn list_nodes(pool: &PgPool, run_id: &str) -> Result<Vec<NodeRecord>, OpError> {
    let sql = format!(
        "SELECT {NODE_COLUMNS} FROM nodes WHERE run_id = $1 \
         ORDER BY node_id COLLATE \"C\", iteration"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(run_id)
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode_node).collect()
}

pub(crate) async fn list_runs(pool: &PgPool) -> Result<Vec<RunSummary>, OpError> {
    let rows = sqlx::query(
        "SELECT run_id, COUNT(*) AS nodes, \
                COUNT(*) FILTER (WHERE state = 'in-progress') AS in_progress, \
                COUNT(*) FILTER (WHERE state = 'finished') AS finished, \
                COUNT(*) FILTER (WHERE state = 'failed') AS failed, \
                COUNT(*) FILTER (WHERE state = 'cancelled') AS cancelled, \
                MAX(updated_at_ms) AS updated_at_ms \
         FROM nodes GROUP BY run_id \
         ORDER BY MAX(updated_at_ms) DESC, run_id COLLATE \"C\"",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(run_summary).collect()
}

/// A row of run counts (`run_id`, `nodes`, the count of each state, `updated_at_ms`).
fn run_summary(row: &PgRow) -> Result<RunSummary, OpError> {
    Ok(RunSummary {
        run_id: row.try_get("run_id")?,
        nodes: to_u64("nodes", row.try_get("nodes")?)?,
        in_progress: to_u64("in_progress", row.try_get("in_progress")?)?,
        finished: to_u64("finished", row.try_get("finished")?)?,
        failed: to_u64("failed", row.try_get("failed")?)?,
        cancelled: to_u64("cancelled", row.try_get("cancelled")?)?,
        updated_at_ms: to_u64("updated_at_ms", row.try_get("updated_at_ms")?)?,
    })
}

/// One page of runs in one statement: the runs are counted from `nodes` (its primary key groups
/// them), filtered, ordered and cut to the page; only the page's runs look up their first attempt.
pub(crate) async fn list_runs_page(
    pool: &PgPool,
    query: &RunQuery,
) -> Result<Vec<RunListing>, OpError> {
    let cursor_at = query.after.as_ref().map(|c| to_i64(c.updated_at_ms));
    let rows = sqlx::query(
        "SELECT page.*, \
                (SELECT MIN(a.started_at_ms) FROM attempts a WHERE a.run_id = page.run_id) \
                    AS started_at_ms \
         FROM (SELECT * FROM \
                 (SELECT run_id, COUNT(*) AS nodes, \
                         COUNT(*) FILTER (WHERE state = 'in-progress') AS in_progress, \
                         COUNT(*) FILTER (WHERE state = 'finished') AS finished, \
                         COUNT(*) FILTER (WHERE state = 'failed') AS failed, \
                         COUNT(*) FILTER (WHERE state = 'cancelled') AS cancelled, \
                         MAX(updated_at_ms) AS updated_at_ms \
                  FROM nodes WHERE ($1::text IS NULL OR strpos(run_id, $1::text) > 0) \
                  GROUP BY run_id) runs \
               WHERE ($2::text IS NULL OR $2::text = CASE WHEN in_progress > 0 THEN 'in-progress' \
                         WHEN failed > 0 THEN 'failed' WHEN cancelled > 0 THEN 'cancelled' \
                         ELSE 'finished' END) \
                 AND ($3::bigint IS NULL OR updated_at_ms < $3::bigint \
                      OR (updated_at_ms = $3::bigint AND run_id > $4::text COLLATE \"C\")) \
               ORDER BY updated_at_ms DESC, run_id COLLATE \"C\" LIMIT $5) page \
         ORDER BY page.updated_at_ms DESC, page.run_id COLLATE \"C\"",
    )
    .bind(query.search.as_deref())
    .bind(query.state.map(|state| state.as_str()))
    .bind(cursor_at)
    .bind(query.after.as_ref().map(|c| c.run_id.as_str()))
    .bind(i64::from(query.limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RunListing {
                summary: run_summary(row)?,
                started_at_ms: optional_u64(row, "started_at_ms")?.unwrap_or(0),
            })
        })
        .collect()
}

pub(crate) async fn read_output(pool: &PgPool, node: &NodeKey) -> Result<Option<Value>, OpError> {
    Ok(sqlx::query_scalar(
        "SELECT output FROM outputs WHERE run_id = $1 AND node_id = $2 AND iteration = $3",
    )
    .bind(node.run_id())
    .bind(node.node_id())
    .bind(i64::from(node.iteration()))
    .fetch_optional(pool)
    .await?)
}

#[async_trait]
impl HistoryStore for PostgresStore {
    async fn list_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        self.retrying("listing attempts", |pool| list_attempts(pool, filter))
            .await
    }

    async fn get_node(&self, node: &NodeKey) -> Result<Option<NodeRecord>, StoreError> {
        self.retrying("reading a node", |pool| get_node(pool, node))
            .await
    }

    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        self.retrying("listing runs", list_runs).await
    }

    async fn list_runs_page(&self, query: &RunQuery) -> Result<Vec<RunListing>, StoreError> {
        self.retrying("listing runs", |pool| list_runs_page(pool, query))
            .await
    }

    async fn list_nodes(&self, run_id: &str) -> Result<Vec<NodeRecord>, StoreError> {
        self.retrying("listing nodes", |pool| list_nodes(pool, run_id))
            .await
    }

    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        self.retrying("reading an output", |pool| read_output(pool, node))
            .await
    }

    async fn read_events(&self, page: &EventPage) -> Result<Vec<EventRecord>, StoreError> {
        self.retrying("reading events", |pool| async move {
            let rows = sqlx::query(
                "SELECT seq, body FROM events WHERE run_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(&page.run_id)
            .bind(to_i64(page.after_seq))
            .bind(i64::from(page.limit))
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|row| crate::events::decode_event(row.try_get("seq")?, row.try_get("body")?))
                .collect()
        })
        .await
    }
}
