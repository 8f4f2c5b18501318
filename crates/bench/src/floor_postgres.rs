//! The PostgreSQL same-SQL floor: the statements and transactions `PostgresStore` issues for
//! begin, one heartbeat and a finished end (one `stint_write_batch` call each, as the adapter
//! sends a write that meets no other), written out by hand on a pool of the same size on the
//! same schema. What stint costs beyond it is stint's own (Rust) overhead; the floor is not the
//! database's limit.
//!
//! The statements are the adapter's own (exported, hidden, for this floor), so both sides are
//! planned and cached alike; [`crate::same_sql`] checks before every measurement that the floor
//! issues them in the adapter's order. The event advisory-lock key is the adapter's own
//! function.

use anyhow::{Context as _, Result};
use serde_json::{Map, Value, json};
use sqlx::postgres::PgPool;
use sqlx::types::Json;

use crate::floor::{ATTEMPT, ITERATION, Lifecycle, event_body};

/// The adapter's own statement.
use stint_adapters_postgres::WRITE_BATCH;
/// The advisory lock key of a run's event sequence: the adapter's own function.
pub(crate) use stint_adapters_postgres::run_lock_key;

/// The three event bodies of a lifecycle, less their per-lifecycle fields (run, node, time),
/// parsed once before any timing: the timed region only fills those fields in.
#[derive(Debug)]
pub(crate) struct Bodies {
    started: Map<String, Value>,
    heartbeat: Map<String, Value>,
    finished: Map<String, Value>,
}

impl Bodies {
    /// The bodies of a lifecycle whose heartbeat payload is `heartbeat_len` bytes.
    pub(crate) fn new(heartbeat_len: usize) -> Result<Self> {
        let template = |kind: &str, extra: &str| -> Result<Map<String, Value>> {
            let lc = Lifecycle::template();
            match serde_json::from_str(&event_body(&lc, kind, extra))? {
                Value::Object(map) => Ok(map),
                other => anyhow::bail!("an event body is not an object: {other}"),
            }
        };
        let extra = format!(r#","has_data":true,"data_size_bytes":{heartbeat_len}"#);
        Ok(Self {
            started: template("NodeStarted", "")?,
            heartbeat: template("TaskHeartbeat", &extra)?,
            finished: template("NodeFinished", "")?,
        })
    }

    fn fill(template: &Map<String, Value>, lc: &Lifecycle<'_>) -> Value {
        let mut body = template.clone();
        body.insert("run_id".to_owned(), lc.run_id.into());
        body.insert("node_id".to_owned(), lc.node_id.into());
        body.insert("timestamp_ms".to_owned(), lc.now_ms.into());
        Value::Object(body)
    }
}

/// One lifecycle: three statements (each its own transaction), as the store issues them.
pub(crate) async fn lifecycle(pool: &PgPool, lc: &Lifecycle<'_>, lock_key: i64) -> Result<()> {
    let bodies = lc
        .pg_bodies
        .context("a PostgreSQL lifecycle needs its event bodies")?;
    begin(pool, lc, lock_key, Bodies::fill(&bodies.started, lc)).await?;
    heartbeat(pool, lc, lock_key, Bodies::fill(&bodies.heartbeat, lc)).await?;
    finish(pool, lc, lock_key, Bodies::fill(&bodies.finished, lc)).await
}

/// `begin_attempt`: the node, the summary, the attempt, `NodeStarted`.
async fn begin(pool: &PgPool, lc: &Lifecycle<'_>, lock_key: i64, body: Value) -> Result<()> {
    // No output table, no label; the database's clock sets the lease, as the adapter's default
    // does.
    let op = json!({
        "op": "begin", "lease_ms": lc.lease_ms, "started_at_ms": lc.now_ms,
        "metadata": lc.metadata_json, "working_dir": lc.working_dir, "output_table": null,
        "label": null, "lease_now": null, "lock_key": lock_key, "started": body,
    });
    write(pool, lc, op, "began", "the floor's begin did not begin").await
}

/// `record_heartbeat` with a payload, and its `TaskHeartbeat`.
async fn heartbeat(pool: &PgPool, lc: &Lifecycle<'_>, lock_key: i64, body: Value) -> Result<()> {
    let op = json!({
        "op": "heartbeat", "attempt": ATTEMPT, "payload": lc.heartbeat_json,
        "received_at_ms": lc.now_ms, "lock_keys": [lock_key], "events": [body],
    });
    write(pool, lc, op, "written", "the floor's heartbeat was refused").await
}

/// `end_attempt` finished: the attempt, the node, the output and `NodeFinished`.
async fn finish(pool: &PgPool, lc: &Lifecycle<'_>, lock_key: i64, body: Value) -> Result<()> {
    // Finished: no error, no VCS; no task.
    let op = json!({
        "op": "end", "attempt": ATTEMPT, "state": "finished", "finished_at_ms": lc.now_ms,
        "retryable": null, "vcs": null, "output": lc.output_json, "task": null,
        "task_owner": null, "task_state": null, "task_run_at_ms": null, "task_now_ms": null,
        "channel": STORE_CHANNEL, "lock_keys": [lock_key], "events": [body],
    });
    write(pool, lc, op, "ended", "the floor's end matched no attempt").await
}

/// The channel the bench's store notifies (unused by an end without a task).
const STORE_CHANNEL: &str = "stint_tasks";

/// One write alone, as the adapter sends a write that meets no other: `op` with the fields
/// every op names (the lifecycle's run, node, iteration and owner). Its answer must set `done`,
/// or the write fails with `refused`.
async fn write(
    pool: &PgPool,
    lc: &Lifecycle<'_>,
    mut op: Value,
    done: &str,
    refused: &str,
) -> Result<()> {
    op["run_id"] = json!(lc.run_id);
    op["node_id"] = json!(lc.node_id);
    op["iteration"] = json!(ITERATION);
    op["owner"] = json!(lc.owner);
    let Json(mut answers) = sqlx::query_scalar::<_, Json<Vec<Value>>>(WRITE_BATCH)
        .bind(Json(vec![op]))
        .fetch_one(pool)
        .await?;
    let answer = answers.pop().context("a write was not answered")?;
    anyhow::ensure!(answer[done] == true, "{refused}: {answer}");
    Ok(())
}
