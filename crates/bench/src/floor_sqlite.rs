//! The SQLite same-SQL floor: the statements and transactions `SqliteStore` issues for begin, one
//! heartbeat and a finished end, written out by hand on the store's own pool. No port, no domain
//! types, no serde of them, no error mapping: only what the database has to be told. What stint
//! costs beyond it is stint's own (Rust) overhead; the floor is not the database's limit.
//!
//! The statement texts are copied from the adapter (`crates/adapters-sqlite/src/write.rs`) so that
//! both sides hit the same prepared-statement cache entries and query plans; [`crate::same_sql`]
//! checks, before every measurement and in a test, that they are still the adapter's.

use anyhow::Result;
use sqlx::Transaction;
use sqlx::sqlite::{Sqlite, SqlitePool};

use crate::floor::{Lifecycle, bind_attempt, bind_node, event_body};

const SUMMARY: &str = "SELECT COALESCE(MAX(attempt), 0) AS last_attempt, \
                    COALESCE(SUM(state = 'in-progress'), 0) AS in_progress, \
                    COALESCE(SUM(state = 'failed'), 0) AS failed \
             FROM attempts WHERE run_id = ? AND node_id = ? AND iteration = ?";
const CHECKPOINT: &str = "SELECT heartbeat FROM attempts \
             WHERE run_id = ? AND node_id = ? AND iteration = ? AND heartbeat IS NOT NULL \
             ORDER BY attempt DESC LIMIT 1";
const INSERT_ATTEMPT: &str = "INSERT INTO attempts (run_id, node_id, iteration, attempt, state, owner, \
                 lease_expires_at_ms, started_at_ms, metadata, working_dir) \
             VALUES (?, ?, ?, ?, 'in-progress', ?, ?, ?, ?, ?)";
const UPSERT_NODE: &str = "INSERT INTO nodes (run_id, node_id, iteration, state, last_attempt, updated_at_ms, \
                 output_table, label) \
             VALUES (?, ?, ?, 'in-progress', ?, ?, ?, ?) \
             ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET \
                 state = excluded.state, last_attempt = excluded.last_attempt, \
                 updated_at_ms = excluded.updated_at_ms, output_table = excluded.output_table, \
                 label = excluded.label";
const INSERT_EVENT: &str = "INSERT INTO events (run_id, node_id, iteration, attempt, type, timestamp_ms, body) \
             VALUES (?, ?, ?, ?, ?, ?, ?)";
const HEARTBEAT: &str = concat!(
    "UPDATE attempts SET heartbeat = COALESCE(?, heartbeat), \
             last_heartbeat_at_ms = MAX(COALESCE(last_heartbeat_at_ms, ?), ?)",
    " WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
    " AND state = 'in-progress' AND owner = ?"
);
const END_ATTEMPT: &str = concat!(
    "UPDATE attempts SET state = ?, finished_at_ms = ?, error = ?, retryable = ?, vcs = ?",
    " WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
    " AND state = 'in-progress' AND owner = ?"
);
const END_NODE: &str = "UPDATE nodes SET state = ?, updated_at_ms = ? WHERE run_id = ? AND node_id = ? AND iteration = ? AND last_attempt = ?";
const UPSERT_OUTPUT: &str = "INSERT INTO outputs (run_id, node_id, iteration, attempt, output, written_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET \
                     attempt = excluded.attempt, output = excluded.output, \
                     written_at_ms = excluded.written_at_ms";

/// One lifecycle: three `BEGIN IMMEDIATE` transactions, as the store issues them.
pub(crate) async fn lifecycle(pool: &SqlitePool, lc: &Lifecycle<'_>) -> Result<()> {
    begin(pool, lc).await?;
    heartbeat(pool, lc).await?;
    finish(pool, lc).await
}

/// `begin_attempt`: the node's summary and checkpoint, the attempt, the node, `NodeStarted`.
async fn begin(pool: &SqlitePool, lc: &Lifecycle<'_>) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    bind_node(sqlx::query(SUMMARY), lc)
        .fetch_one(&mut *tx)
        .await?;
    bind_node(sqlx::query(CHECKPOINT), lc)
        .fetch_optional(&mut *tx)
        .await?;
    bind_attempt(sqlx::query(INSERT_ATTEMPT), lc)
        .bind(lc.owner)
        .bind(lc.now_ms + lc.lease_ms)
        .bind(lc.now_ms)
        .bind(lc.metadata)
        .bind(lc.working_dir)
        .execute(&mut *tx)
        .await?;
    // No output table, no label.
    bind_attempt(sqlx::query(UPSERT_NODE), lc)
        .bind(lc.now_ms)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .execute(&mut *tx)
        .await?;
    commit_with_event(tx, lc, "NodeStarted", "").await
}

/// `record_heartbeat` with a payload, and its `TaskHeartbeat`.
async fn heartbeat(pool: &SqlitePool, lc: &Lifecycle<'_>) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let payload = sqlx::query(HEARTBEAT)
        .bind(Some(lc.heartbeat))
        .bind(lc.now_ms)
        .bind(lc.now_ms);
    bind_attempt(payload, lc)
        .bind(lc.owner)
        .execute(&mut *tx)
        .await?;
    let extra = format!(
        r#","has_data":true,"data_size_bytes":{}"#,
        lc.heartbeat.len()
    );
    commit_with_event(tx, lc, "TaskHeartbeat", &extra).await
}

/// `end_attempt` finished: the attempt, the node, the output, `NodeFinished`.
async fn finish(pool: &SqlitePool, lc: &Lifecycle<'_>) -> Result<()> {
    let at = lc.now_ms;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Finished: no error, no retryable flag, no VCS.
    let ending = sqlx::query(END_ATTEMPT)
        .bind("finished")
        .bind(at)
        .bind(None::<String>)
        .bind(None::<bool>)
        .bind(None::<String>);
    bind_attempt(ending, lc)
        .bind(lc.owner)
        .execute(&mut *tx)
        .await?;
    let node = sqlx::query(END_NODE).bind("finished").bind(at);
    bind_attempt(node, lc).execute(&mut *tx).await?;
    bind_attempt(sqlx::query(UPSERT_OUTPUT), lc)
        .bind(lc.output)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    commit_with_event(tx, lc, "NodeFinished", "").await
}

/// The transaction's event, then its commit: how every store transaction ends.
async fn commit_with_event(
    mut tx: Transaction<'_, Sqlite>,
    lc: &Lifecycle<'_>,
    kind: &'static str,
    extra: &str,
) -> Result<()> {
    bind_attempt(sqlx::query(INSERT_EVENT), lc)
        .bind(kind)
        .bind(lc.now_ms)
        .bind(event_body(lc, kind, extra))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
