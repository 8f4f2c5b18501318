//! The PostgreSQL same-SQL floor: the statements and transactions `PostgresStore` issues for
//! begin, one heartbeat and a finished end, written out by hand on a pool of the same size on the
//! same schema. What stint costs beyond it is stint's own (Rust) overhead; the floor is not the
//! database's limit.
//!
//! The statements are the adapter's own (exported, hidden, for this floor), so both sides are
//! planned and cached alike; [`crate::same_sql`] checks before every measurement that the floor
//! issues them in the adapter's order. The event advisory-lock key is the adapter's own
//! function.

use anyhow::{Context as _, Result};
use serde_json::{Map, Value};
use sqlx::postgres::{PgPool, Postgres};
use sqlx::{Row as _, Transaction};

use crate::floor::{ATTEMPT, ITERATION, Lifecycle, bind_attempt, bind_node, event_body};

/// The advisory lock key of a run's event sequence: the adapter's own function.
pub(crate) use stint_adapters_postgres::run_lock_key;
/// The adapter's own statements.
use stint_adapters_postgres::{
    END_ATTEMPT, HEARTBEAT, INSERT_ATTEMPT, INSERT_EVENTS, LOCK_NODE, SUMMARY,
};

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

/// One lifecycle: three transactions, as the store issues them.
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
    let mut tx = pool.begin().await?;
    bind_node(sqlx::query(LOCK_NODE), lc)
        .bind(lc.now_ms)
        .bind(&output_table)
        .bind(&label)
        .execute(&mut *tx)
        .await?;
    let summary = bind_node(sqlx::query(SUMMARY), lc);
    summary.fetch_one(&mut *tx).await?;
    bind_attempt(sqlx::query(INSERT_ATTEMPT), lc)
        .bind(lc.owner)
        .bind(lc.lease_ms)
        .bind(lc.now_ms)
        .bind(lc.metadata_json)
        .bind(lc.working_dir)
        .bind(&output_table)
        .bind(&label)
        // The database's clock sets the lease, as the adapter's default does.
        .bind(None::<i64>)
        .execute(&mut *tx)
        .await?;
    commit_with_event(tx, lc, lock_key, "NodeStarted", body).await
}

/// `record_heartbeat` with a payload, and its `TaskHeartbeat`.
async fn heartbeat(pool: &PgPool, lc: &Lifecycle<'_>, lock_key: i64, body: Value) -> Result<()> {
    let mut tx = pool.begin().await?;
    bind_attempt(sqlx::query(HEARTBEAT), lc)
        .bind(lc.owner)
        .bind(Some(lc.heartbeat_json))
        .bind(lc.now_ms)
        .execute(&mut *tx)
        .await?;
    commit_with_event(tx, lc, lock_key, "TaskHeartbeat", body).await
}

/// `end_attempt` finished: the attempt, the node and the output in one statement, then
/// `NodeFinished`.
async fn finish(pool: &PgPool, lc: &Lifecycle<'_>, lock_key: i64, body: Value) -> Result<()> {
    let at = lc.now_ms;
    let mut tx = pool.begin().await?;
    // Finished: no error, no retryable flag, no VCS.
    let row = bind_attempt(sqlx::query(END_ATTEMPT), lc)
        .bind(lc.owner)
        .bind("finished")
        .bind(at)
        .bind(None::<Value>)
        .bind(None::<bool>)
        .bind(None::<&str>)
        .bind(lc.output_json)
        .fetch_one(&mut *tx)
        .await?;
    let ended: i64 = row.try_get(0)?;
    anyhow::ensure!(ended == 1, "the floor's end matched {ended} attempts");
    commit_with_event(tx, lc, lock_key, "NodeFinished", body).await
}

/// The transaction's event, then its commit: how every store transaction ends.
async fn commit_with_event(
    mut tx: Transaction<'_, Postgres>,
    lc: &Lifecycle<'_>,
    lock_key: i64,
    kind: &'static str,
    body: Value,
) -> Result<()> {
    sqlx::query(INSERT_EVENTS)
        .bind(lock_key)
        .bind(vec![lc.run_id])
        .bind(vec![lc.node_id])
        .bind(vec![ITERATION])
        .bind(vec![ATTEMPT])
        .bind(vec![kind])
        .bind(vec![lc.now_ms])
        .bind(vec![body])
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
