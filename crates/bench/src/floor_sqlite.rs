//! The SQLite same-SQL floor: the statements and transactions `SqliteStore` issues for begin, one
//! heartbeat and a finished end, written out by hand on a connection of the floor's own, opened
//! as the store's writer opens its connection (rusqlite, the same pragmas), and run on the
//! calling thread. No port, no domain types, no serde of them, no error mapping, no hand-over to
//! a writer thread: only what the database has to be told. What stint costs beyond it is stint's
//! own (Rust) overhead; the floor is not the database's limit.
//!
//! The statement texts are copied from the adapter (`crates/adapters-sqlite/src/write.rs`) so that
//! both sides plan alike; [`crate::same_sql`] checks, before every measurement and in a test,
//! that they are still the adapter's (SQLite's own statement trace on both connections).

use anyhow::Result;
use rusqlite::{Connection, params};

use crate::floor::{ATTEMPT, ITERATION, Lifecycle, event_body};

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
pub(crate) fn lifecycle(conn: &Connection, lc: &Lifecycle<'_>) -> Result<()> {
    begin(conn, lc)?;
    heartbeat(conn, lc)?;
    finish(conn, lc)
}

/// `begin_attempt`: the node's summary and checkpoint, the attempt, the node, `NodeStarted`.
fn begin(conn: &Connection, lc: &Lifecycle<'_>) -> Result<()> {
    let node = params![lc.run_id, lc.node_id, ITERATION];
    conn.execute_batch("BEGIN IMMEDIATE")?;
    conn.prepare_cached(SUMMARY)?
        .query_row(node, |row| row.get::<_, i64>(0))?;
    conn.prepare_cached(CHECKPOINT)?.query(node)?.next()?;
    conn.prepare_cached(INSERT_ATTEMPT)?.execute(params![
        lc.run_id,
        lc.node_id,
        ITERATION,
        ATTEMPT,
        lc.owner,
        lc.now_ms + lc.lease_ms,
        lc.now_ms,
        lc.metadata,
        lc.working_dir,
    ])?;
    // No output table, no label.
    conn.prepare_cached(UPSERT_NODE)?.execute(params![
        lc.run_id,
        lc.node_id,
        ITERATION,
        ATTEMPT,
        lc.now_ms,
        None::<&str>,
        None::<&str>,
    ])?;
    commit_with_event(conn, lc, "NodeStarted", "")
}

/// `record_heartbeat` with a payload, and its `TaskHeartbeat`.
fn heartbeat(conn: &Connection, lc: &Lifecycle<'_>) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    conn.prepare_cached(HEARTBEAT)?.execute(params![
        Some(lc.heartbeat),
        lc.now_ms,
        lc.now_ms,
        lc.run_id,
        lc.node_id,
        ITERATION,
        ATTEMPT,
        lc.owner,
    ])?;
    let extra = format!(
        r#","has_data":true,"data_size_bytes":{}"#,
        lc.heartbeat.len()
    );
    commit_with_event(conn, lc, "TaskHeartbeat", &extra)
}

/// `end_attempt` finished: the attempt, the node, the output, `NodeFinished`.
fn finish(conn: &Connection, lc: &Lifecycle<'_>) -> Result<()> {
    let at = lc.now_ms;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Finished: no error, no retryable flag, no VCS.
    conn.prepare_cached(END_ATTEMPT)?.execute(params![
        "finished",
        at,
        None::<String>,
        None::<bool>,
        None::<String>,
        lc.run_id,
        lc.node_id,
        ITERATION,
        ATTEMPT,
        lc.owner,
    ])?;
    conn.prepare_cached(END_NODE)?.execute(params![
        "finished", at, lc.run_id, lc.node_id, ITERATION, ATTEMPT,
    ])?;
    conn.prepare_cached(UPSERT_OUTPUT)?.execute(params![
        lc.run_id, lc.node_id, ITERATION, ATTEMPT, lc.output, at,
    ])?;
    commit_with_event(conn, lc, "NodeFinished", "")
}

/// The transaction's event, then its commit: how every store transaction ends.
fn commit_with_event(
    conn: &Connection,
    lc: &Lifecycle<'_>,
    kind: &'static str,
    extra: &str,
) -> Result<()> {
    conn.prepare_cached(INSERT_EVENT)?.execute(params![
        lc.run_id,
        lc.node_id,
        ITERATION,
        ATTEMPT,
        kind,
        lc.now_ms,
        event_body(lc, kind, extra),
    ])?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}
