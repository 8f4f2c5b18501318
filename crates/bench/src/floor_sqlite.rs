//! The SQLite same-SQL floor: the statements and transactions `SqliteStore` issues for begin, one
//! heartbeat and a finished end, written out by hand on the store's own pool. No port, no domain
//! types, no serde of them, no error mapping: only what the database has to be told. What stint
//! costs beyond it is stint's own (Rust) overhead; the floor is not the database's limit.
//!
//! The statement texts are copied from the adapter (`crates/adapters-sqlite/src/write.rs`) so that
//! both sides hit the same prepared-statement cache entries and query plans; [`crate::same_sql`]
//! checks, before every measurement and in a test, that they are still the adapter's.

use anyhow::Result;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;

use crate::floor::{Lifecycle, event_body};

/// The floor's lifecycle is always iteration 0, attempt 1 of a fresh node.
const ITERATION: u32 = 0;
const ATTEMPT: u32 = 1;

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
pub async fn lifecycle(pool: &SqlitePool, lc: &Lifecycle<'_>) -> Result<()> {
    begin(pool, lc).await?;
    heartbeat(pool, lc).await?;
    finish(pool, lc).await
}

/// `begin_attempt`: the node's summary and checkpoint, the attempt, the node, `NodeStarted`.
async fn begin(pool: &SqlitePool, lc: &Lifecycle<'_>) -> Result<()> {
    let (run, node, at) = (lc.run_id, lc.node_id, lc.now_ms);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(SUMMARY)
        .bind(run)
        .bind(node)
        .bind(ITERATION)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(CHECKPOINT)
        .bind(run)
        .bind(node)
        .bind(ITERATION)
        .fetch_optional(&mut *tx)
        .await?;
    sqlx::query(INSERT_ATTEMPT)
        .bind(run)
        .bind(node)
        .bind(ITERATION)
        .bind(ATTEMPT)
        .bind(lc.owner)
        .bind(at + lc.lease_ms)
        .bind(at)
        .bind(lc.metadata)
        .bind(lc.working_dir)
        .execute(&mut *tx)
        .await?;
    sqlx::query(UPSERT_NODE)
        .bind(run)
        .bind(node)
        .bind(ITERATION)
        .bind(ATTEMPT)
        .bind(at)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .execute(&mut *tx)
        .await?;
    event(&mut tx, lc, "NodeStarted", "").await?;
    tx.commit().await?;
    Ok(())
}

/// `record_heartbeat` with a payload, and its `TaskHeartbeat`.
async fn heartbeat(pool: &SqlitePool, lc: &Lifecycle<'_>) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(HEARTBEAT)
        .bind(Some(lc.heartbeat))
        .bind(lc.now_ms)
        .bind(lc.now_ms)
        .bind(lc.run_id)
        .bind(lc.node_id)
        .bind(ITERATION)
        .bind(ATTEMPT)
        .bind(lc.owner)
        .execute(&mut *tx)
        .await?;
    let extra = format!(
        r#","has_data":true,"data_size_bytes":{}"#,
        lc.heartbeat.len()
    );
    event(&mut tx, lc, "TaskHeartbeat", &extra).await?;
    tx.commit().await?;
    Ok(())
}

/// `end_attempt` finished: the attempt, the node, the output, `NodeFinished`.
async fn finish(pool: &SqlitePool, lc: &Lifecycle<'_>) -> Result<()> {
    let (run, node, at) = (lc.run_id, lc.node_id, lc.now_ms);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(END_ATTEMPT)
        .bind("finished")
        .bind(at)
        .bind(None::<String>)
        .bind(None::<bool>)
        .bind(None::<String>)
        .bind(run)
        .bind(node)
        .bind(ITERATION)
        .bind(ATTEMPT)
        .bind(lc.owner)
        .execute(&mut *tx)
        .await?;
    sqlx::query(END_NODE)
        .bind("finished")
        .bind(at)
        .bind(run)
        .bind(node)
        .bind(ITERATION)
        .bind(ATTEMPT)
        .execute(&mut *tx)
        .await?;
    sqlx::query(UPSERT_OUTPUT)
        .bind(run)
        .bind(node)
        .bind(ITERATION)
        .bind(ATTEMPT)
        .bind(lc.output)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    event(&mut tx, lc, "NodeFinished", "").await?;
    tx.commit().await?;
    Ok(())
}

async fn event(
    conn: &mut SqliteConnection,
    lc: &Lifecycle<'_>,
    kind: &'static str,
    extra: &str,
) -> Result<()> {
    sqlx::query(INSERT_EVENT)
        .bind(lc.run_id)
        .bind(lc.node_id)
        .bind(0_u32)
        .bind(1_u32)
        .bind(kind)
        .bind(lc.now_ms)
        .bind(event_body(lc, kind, extra))
        .execute(conn)
        .await?;
    Ok(())
}
