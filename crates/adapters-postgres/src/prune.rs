//! `prune`: ended tasks go, and with each the history of its node, in one transaction (so a
//! crash leaves a task and its history both there or both gone).
//!
//! A node's rows are locked before they are judged, as a begin locks them: a begin of the node
//! that raced the prune either committed first (its attempt is then in progress, seen by the
//! next statement's fresh snapshot, and the node stays) or waits and begins on a fresh node.

use sqlx::postgres::PgPool;

use crate::error::{OpError, to_i64};

/// Up to `$2` ended tasks that ended before `$1`, oldest first.
const PRUNED: &str = "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
     WHERE state IN ('finished', 'failed', 'cancelled') AND ended_at_ms < $1 \
     ORDER BY ended_at_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING run_id, node_id";

/// Locks the node rows of the pruned tasks' nodes, in one order.
const LOCK_NODES: &str = "SELECT 1 FROM nodes n \
     JOIN unnest($1::text[], $2::text[]) AS p(run_id, node_id) \
       ON n.run_id = p.run_id AND n.node_id = p.node_id \
     ORDER BY n.run_id, n.node_id, n.iteration FOR UPDATE OF n";

/// The nodes whose history goes: no task names them and no attempt of them is in progress.
const FREED: &str = "SELECT DISTINCT p.run_id, p.node_id \
     FROM unnest($1::text[], $2::text[]) AS p(run_id, node_id) \
     WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = p.run_id AND t.node_id = p.node_id) \
       AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = p.run_id \
                       AND a.node_id = p.node_id AND a.state = 'in-progress')";

/// A node's records, every iteration (the primary keys lead with run and node).
const NODE_RECORDS: [&str; 3] = [
    "DELETE FROM outputs o USING unnest($1::text[], $2::text[]) AS p(run_id, node_id) \
     WHERE o.run_id = p.run_id AND o.node_id = p.node_id",
    "DELETE FROM attempts a USING unnest($1::text[], $2::text[]) AS p(run_id, node_id) \
     WHERE a.run_id = p.run_id AND a.node_id = p.node_id",
    "DELETE FROM nodes n USING unnest($1::text[], $2::text[]) AS p(run_id, node_id) \
     WHERE n.run_id = p.run_id AND n.node_id = p.node_id",
];

/// The events of the runs `$1` that have no node left.
const RUN_EVENTS: &str = "DELETE FROM events e WHERE e.run_id = ANY($1) \
     AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.run_id = e.run_id)";

/// One `prune`: how many tasks it deleted.
pub(crate) async fn prune_once(
    pool: &PgPool,
    ended_before_ms: u64,
    batch: u32,
) -> Result<u64, OpError> {
    let mut tx = pool.begin().await?;
    let pruned: Vec<(String, String)> = sqlx::query_as(PRUNED)
        .bind(to_i64(ended_before_ms))
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
    let (runs, nodes): (Vec<String>, Vec<String>) = pruned.iter().cloned().unzip();
    sqlx::query(LOCK_NODES)
        .bind(&runs)
        .bind(&nodes)
        .execute(&mut *tx)
        .await?;
    let freed: Vec<(String, String)> = sqlx::query_as(FREED)
        .bind(&runs)
        .bind(&nodes)
        .fetch_all(&mut *tx)
        .await?;
    let (runs, nodes): (Vec<String>, Vec<String>) = freed.into_iter().unzip();
    for sql in NODE_RECORDS {
        sqlx::query(sql)
            .bind(&runs)
            .bind(&nodes)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(RUN_EVENTS)
        .bind(&runs)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(pruned.len() as u64)
}
