//! The PostgreSQL same-SQL floor: the statements and transactions `PostgresStore` issues for
//! begin, one heartbeat and a finished end (one statement each, calling the adapter's database
//! functions), written out by hand on a pool of the same size on the
//! same schema. What stint costs beyond it is stint's own (Rust) overhead; the floor is not the
//! database's limit.
//!
//! The statements are the adapter's own (exported, hidden, for this floor), so both sides are
//! planned and cached alike; [`crate::same_sql`] checks before every measurement that the floor
//! issues them in the adapter's order. The event advisory-lock key is the adapter's own
//! function.

use anyhow::{Context as _, Result};
use serde_json::{Map, Value};
use sqlx::Row as _;
use sqlx::postgres::{PgPool, Postgres};

use crate::floor::{ATTEMPT, ITERATION, Lifecycle, Statement, bind_attempt, bind_node, event_body};

/// The advisory lock key of a run's event sequence: the adapter's own function.
pub(crate) use stint_adapters_postgres::run_lock_key;
/// The adapter's own statements.
use stint_adapters_postgres::{BEGIN_ATTEMPT, END_ATTEMPT, HEARTBEAT};

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
    // No output table, no label.
    let (output_table, label) = (None::<String>, None::<String>);
    let row = bind_node(sqlx::query(BEGIN_ATTEMPT), lc)
        .bind(lc.owner)
        .bind(lc.lease_ms)
        .bind(lc.now_ms)
        .bind(lc.metadata_json)
        .bind(lc.working_dir)
        .bind(&output_table)
        .bind(&label)
        // The database's clock sets the lease, as the adapter's default does.
        .bind(None::<i64>)
        .bind(lock_key)
        .bind("NodeStarted")
        .bind(body)
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        row.try_get::<bool, _>("began")?,
        "the floor's begin did not begin"
    );
    Ok(())
}

/// `record_heartbeat` with a payload, and its `TaskHeartbeat`.
async fn heartbeat(pool: &PgPool, lc: &Lifecycle<'_>, lock_key: i64, body: Value) -> Result<()> {
    let statement = bind_attempt(sqlx::query(HEARTBEAT), lc)
        .bind(lc.owner)
        .bind(Some(lc.heartbeat_json))
        .bind(lc.now_ms);
    let row = bind_event(statement, lc, lock_key, "TaskHeartbeat", body)
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        row.try_get::<bool, _>(0)?,
        "the floor's heartbeat was refused"
    );
    Ok(())
}

/// `end_attempt` finished: the attempt, the node, the output and `NodeFinished`.
async fn finish(pool: &PgPool, lc: &Lifecycle<'_>, lock_key: i64, body: Value) -> Result<()> {
    // Finished: no error, no retryable flag, no VCS; no task.
    let statement = bind_attempt(sqlx::query(END_ATTEMPT), lc)
        .bind(lc.owner)
        .bind("finished")
        .bind(lc.now_ms)
        .bind(None::<Value>)
        .bind(None::<bool>)
        .bind(None::<&str>)
        .bind(lc.output_json)
        .bind(None::<i64>)
        .bind(None::<&str>)
        .bind(None::<&str>)
        .bind(None::<i64>)
        .bind(None::<&Value>)
        .bind(None::<i64>)
        .bind(STORE_CHANNEL);
    let row = bind_event(statement, lc, lock_key, "NodeFinished", body)
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        row.try_get::<bool, _>("ended")?,
        "the floor's end matched no attempt"
    );
    Ok(())
}

/// The channel the bench's store notifies (unused by an end without a task).
const STORE_CHANNEL: &str = "stint_tasks";

/// `statement` with one event of the lifecycle's attempt bound next: its run's lock, then its
/// columns.
fn bind_event<'q>(
    statement: Statement<'q, Postgres>,
    lc: &Lifecycle<'q>,
    lock_key: i64,
    kind: &'static str,
    body: Value,
) -> Statement<'q, Postgres> {
    statement
        .bind(vec![lock_key])
        .bind(vec![lc.run_id])
        .bind(vec![lc.node_id])
        .bind(vec![ITERATION])
        .bind(vec![ATTEMPT])
        .bind(vec![kind])
        .bind(vec![lc.now_ms])
        .bind(vec![body])
}
