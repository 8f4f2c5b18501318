//! The query port on SQLite. Every read of the store is one of single statements in autocommit,
//! which under WAL never block a writer and never wait for one.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqlitePool, SqliteRow};
use stint_domain::{
    AttemptRecord, AttemptState, Event, EventRecord, NodeKey, NodeRecord, RunSummary,
};
use stint_ports::{
    AttemptFilter, EventPage, HistoryStore, RunListing, RunQuery, StoreError, unreadable,
};

use crate::SqliteStore;
use crate::error::{map, parse_json, to_i64, to_u32, to_u64};

/// A state column read back.
fn state(row: &SqliteRow) -> Result<AttemptState, StoreError> {
    let text: String = row.try_get("state").map_err(map)?;
    text.parse()
        .map_err(|_| StoreError::incompatible(format!("stored state '{text}' is unknown")))
}

fn get_u32(row: &SqliteRow, column: &str) -> Result<u32, StoreError> {
    to_u32(row.try_get(column).map_err(map)?, column)
}

fn get_u64(row: &SqliteRow, column: &str) -> Result<u64, StoreError> {
    to_u64(row.try_get(column).map_err(map)?, column)
}

fn get_opt_u64(row: &SqliteRow, column: &str) -> Result<Option<u64>, StoreError> {
    let value: Option<i64> = row.try_get(column).map_err(map)?;
    value.map(|v| to_u64(v, column)).transpose()
}

fn get_opt_json<T: serde::de::DeserializeOwned>(
    row: &SqliteRow,
    column: &str,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = row.try_get(column).map_err(map)?;
    text.map(|t| parse_json(&t, column)).transpose()
}

/// A stored JSON value for a listing: one this version cannot read is shown as
/// [`unreadable`]'s marker instead of failing the listing.
fn get_opt_value(row: &SqliteRow, column: &str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = row.try_get(column).map_err(map)?;
    Ok(text.map(|text| {
        serde_json::from_str(&text).unwrap_or_else(|error| {
            tracing::warn!(column, %error, "a stored value cannot be read back");
            unreadable(&error)
        })
    }))
}

fn attempt_record(row: &SqliteRow) -> Result<AttemptRecord, StoreError> {
    Ok(AttemptRecord {
        run_id: row.try_get("run_id").map_err(map)?,
        node_id: row.try_get("node_id").map_err(map)?,
        iteration: get_u32(row, "iteration")?,
        attempt: get_u32(row, "attempt")?,
        state: state(row)?,
        error: get_opt_json(row, "error").unwrap_or_else(|error| {
            tracing::warn!(%error, "a stored attempt error cannot be read back");
            None
        }),
        retryable: row.try_get("retryable").map_err(map)?,
        heartbeat: get_opt_value(row, "heartbeat")?,
        last_heartbeat_at_ms: get_opt_u64(row, "last_heartbeat_at_ms")?,
        started_at_ms: get_u64(row, "started_at_ms")?,
        finished_at_ms: get_opt_u64(row, "finished_at_ms")?,
        vcs: row.try_get("vcs").map_err(map)?,
        metadata: get_opt_value(row, "metadata")?.unwrap_or(Value::Null),
        working_dir: row.try_get("working_dir").map_err(map)?,
        owner: row.try_get("owner").map_err(map)?,
        lease_expires_at_ms: get_u64(row, "lease_expires_at_ms")?,
        // A place this version cannot read is no place: recovery then leaves the group alone.
        process: get_opt_json(row, "process").unwrap_or_else(|error| {
            tracing::warn!(%error, "a stored process place cannot be read back");
            None
        }),
    })
}

fn node_record(row: &SqliteRow) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        run_id: row.try_get("run_id").map_err(map)?,
        node_id: row.try_get("node_id").map_err(map)?,
        iteration: get_u32(row, "iteration")?,
        state: state(row)?,
        last_attempt: get_u32(row, "last_attempt")?,
        updated_at_ms: get_u64(row, "updated_at_ms")?,
        output_table: row.try_get("output_table").map_err(map)?,
        label: row.try_get("label").map_err(map)?,
    })
}

/// The columns [`attempt_record`] reads, for a `SELECT` from `attempts`.
macro_rules! attempt_columns {
    () => {
        "SELECT run_id, node_id, iteration, attempt, state, owner, lease_expires_at_ms, \
         started_at_ms, finished_at_ms, last_heartbeat_at_ms, heartbeat, error, retryable, vcs, \
         metadata, working_dir, process FROM attempts "
    };
}

/// The columns [`node_record`] reads, for a `SELECT` from `nodes`.
macro_rules! node_columns {
    () => {
        "SELECT run_id, node_id, iteration, state, last_attempt, updated_at_ms, output_table, \
         label FROM nodes "
    };
}

/// The `list_attempts` statement. Each optional filter is `(? IS NULL OR column = ?)`, bound
/// twice: one fixed statement (prepared once and cached by sqlx) instead of SQL assembled per call.
const LIST_ATTEMPTS: &str = concat!(
    attempt_columns!(),
    "WHERE run_id = ? AND (? IS NULL OR node_id = ?) AND (? IS NULL OR iteration = ?) \
     ORDER BY node_id, iteration, attempt"
);

/// A statement with its parameters bound.
pub(crate) type SqliteQuery<'a> = Query<'a, Sqlite, SqliteArguments>;

/// Binds the three columns of a node key, in key order.
pub(crate) fn bind_node<'a>(query: SqliteQuery<'a>, node: &NodeKey) -> SqliteQuery<'a> {
    query
        .bind(node.run_id().to_owned())
        .bind(node.node_id().to_owned())
        .bind(node.iteration())
}

/// Runs `query` and reads each row it returns with `record`.
async fn fetch_all<T>(
    pool: &SqlitePool,
    query: SqliteQuery<'_>,
    record: impl FnMut(&SqliteRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let rows = query.fetch_all(pool).await.map_err(map)?;
    rows.iter().map(record).collect()
}

/// Runs `sql`, whose three parameters are a node key, for the one row it finds, if any.
async fn fetch_node_row(
    pool: &SqlitePool,
    sql: &'static str,
    node: &NodeKey,
) -> Result<Option<SqliteRow>, StoreError> {
    bind_node(sqlx::query(sql), node)
        .fetch_optional(pool)
        .await
        .map_err(map)
}

/// The in-progress attempts whose lease expired before `now_ms`, in key order.
pub(crate) async fn expired_attempts(
    pool: &SqlitePool,
    now_ms: u64,
) -> Result<Vec<AttemptRecord>, StoreError> {
    let query = sqlx::query(concat!(
        attempt_columns!(),
        "WHERE state = 'in-progress' AND lease_expires_at_ms < ? \
         ORDER BY run_id, node_id, iteration, attempt"
    ))
    .bind(to_i64(now_ms, "recovery time")?);
    fetch_all(pool, query, attempt_record).await
}

fn run_summary(row: &SqliteRow) -> Result<RunSummary, StoreError> {
    Ok(RunSummary {
        run_id: row.try_get("run_id").map_err(map)?,
        nodes: get_u64(row, "nodes")?,
        in_progress: get_u64(row, "in_progress")?,
        finished: get_u64(row, "finished")?,
        failed: get_u64(row, "failed")?,
        cancelled: get_u64(row, "cancelled")?,
        updated_at_ms: get_u64(row, "updated_at_ms")?,
    })
}

/// One page of runs in one statement: the runs are counted from `nodes` (its primary key groups
/// them), filtered, ordered and cut to the page; only the page's runs look up their first attempt.
async fn list_runs_page(
    pool: &SqlitePool,
    query: &RunQuery,
) -> Result<Vec<RunListing>, StoreError> {
    let query = sqlx::query(
        "SELECT page.*, \
                (SELECT MIN(a.started_at_ms) FROM attempts a WHERE a.run_id = page.run_id) \
                    AS started_at_ms \
         FROM (SELECT * FROM \
                 (SELECT run_id, COUNT(*) AS nodes, \
                         SUM(state = 'in-progress') AS in_progress, \
                         SUM(state = 'finished') AS finished, \
                         SUM(state = 'failed') AS failed, \
                         SUM(state = 'cancelled') AS cancelled, \
                         MAX(updated_at_ms) AS updated_at_ms \
                  FROM nodes WHERE (?1 IS NULL OR instr(run_id, ?1) > 0) GROUP BY run_id) runs \
               WHERE (?2 IS NULL OR ?2 = CASE WHEN in_progress > 0 THEN 'in-progress' \
                         WHEN failed > 0 THEN 'failed' WHEN cancelled > 0 THEN 'cancelled' \
                         ELSE 'finished' END) \
                 AND (?3 IS NULL OR updated_at_ms < ?3 OR (updated_at_ms = ?3 AND run_id > ?4)) \
               ORDER BY updated_at_ms DESC, run_id LIMIT ?5) page \
         ORDER BY page.updated_at_ms DESC, page.run_id",
    )
    .bind(query.search.clone())
    .bind(query.state.map(|state| state.as_str()))
    .bind(
        query
            .after
            .as_ref()
            .map(|c| to_i64(c.updated_at_ms, "cursor"))
            .transpose()?,
    )
    .bind(query.after.as_ref().map(|c| c.run_id.clone()))
    .bind(i64::from(query.limit));
    fetch_all(pool, query, |row| {
        Ok(RunListing {
            summary: run_summary(row)?,
            started_at_ms: get_opt_u64(row, "started_at_ms")?.unwrap_or(0),
        })
    })
    .await
}

fn event_record(row: &SqliteRow) -> Result<EventRecord, StoreError> {
    let body: String = row.try_get("body").map_err(map)?;
    let event: Event = parse_json(&body, "event")?;
    Ok(EventRecord {
        seq: get_u64(row, "seq")?,
        event,
    })
}

#[async_trait]
impl HistoryStore for SqliteStore {
    async fn list_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let query = sqlx::query(LIST_ATTEMPTS)
            .bind(filter.run_id.as_str())
            .bind(filter.node_id.as_deref())
            .bind(filter.node_id.as_deref())
            .bind(filter.iteration)
            .bind(filter.iteration);
        fetch_all(self.pool(), query, attempt_record).await
    }

    async fn get_node(&self, node: &NodeKey) -> Result<Option<NodeRecord>, StoreError> {
        let sql = concat!(
            node_columns!(),
            "WHERE run_id = ? AND node_id = ? AND iteration = ?"
        );
        let row = fetch_node_row(self.pool(), sql, node).await?;
        row.as_ref().map(node_record).transpose()
    }

    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        let query = sqlx::query(
            "SELECT run_id, COUNT(*) AS nodes, \
                    SUM(state = 'in-progress') AS in_progress, SUM(state = 'finished') AS finished, \
                    SUM(state = 'failed') AS failed, SUM(state = 'cancelled') AS cancelled, \
                    MAX(updated_at_ms) AS updated_at_ms \
             FROM nodes GROUP BY run_id ORDER BY updated_at_ms DESC, run_id",
        );
        fetch_all(self.pool(), query, run_summary).await
    }

    async fn list_runs_page(&self, query: &RunQuery) -> Result<Vec<RunListing>, StoreError> {
        list_runs_page(self.pool(), query).await
    }

    async fn list_nodes(&self, run_id: &str) -> Result<Vec<NodeRecord>, StoreError> {
        let query = sqlx::query(concat!(
            node_columns!(),
            "WHERE run_id = ? ORDER BY node_id, iteration"
        ))
        .bind(run_id);
        fetch_all(self.pool(), query, node_record).await
    }

    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError> {
        let sql = "SELECT output FROM outputs WHERE run_id = ? AND node_id = ? AND iteration = ?";
        let row = fetch_node_row(self.pool(), sql, node).await?;
        row.map(|row| {
            let text: String = row.try_get("output").map_err(map)?;
            parse_json(&text, "output")
        })
        .transpose()
    }

    async fn read_events(&self, page: &EventPage) -> Result<Vec<EventRecord>, StoreError> {
        let query = sqlx::query(
            "SELECT seq, body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(&page.run_id)
        // A cursor past every possible seq simply reads nothing.
        .bind(to_i64(page.after_seq, "sequence number").unwrap_or(i64::MAX))
        .bind(page.limit);
        fetch_all(self.pool(), query, event_record).await
    }
}
