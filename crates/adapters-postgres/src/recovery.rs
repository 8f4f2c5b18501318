//! Recovery on PostgreSQL: marking the attempts whose lease expired, in batches.

use sqlx::Row;
use sqlx::postgres::PgPool;
use stint_domain::{AttemptKey, Event, EventKind, NodeKey, TaskError};
use stint_ports::StoreError;

use crate::error::{OpError, to_i64, to_u32};
use crate::events::insert_events;
use crate::write::{KeyArrays, json};

/// Expired attempts marked per transaction by the recovery sweep.
pub(crate) const RECOVERY_BATCH: i64 = 500;

/// Marks one batch of expired attempts; returns them (an empty batch ends the sweep).
pub(crate) async fn recover_batch(
    pool: &PgPool,
    now_ms: u64,
    lease_now: Option<i64>,
) -> Result<Vec<AttemptKey>, OpError> {
    let now = to_i64(now_ms);
    let mut tx = pool.begin().await?;
    // SKIP LOCKED: an attempt another recoverer (or its owner, ending it) holds is left to them;
    // one it already marked no longer matches once its lock is released.
    let rows = sqlx::query(concat!(
        "SELECT run_id, node_id, iteration, attempt, lease_expires_at_ms FROM attempts \
         WHERE state = 'in-progress' AND lease_expires_at_ms < COALESCE($1::bigint, ",
        db_now_ms!(),
        ") ORDER BY lease_expires_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
    ))
    .bind(lease_now)
    .bind(RECOVERY_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (mut keys, mut errors) = (KeyArrays::default(), Vec::new());
    let mut marked = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let node = NodeKey::new(
            row.try_get::<String, _>("run_id")?,
            row.try_get::<String, _>("node_id")?,
            to_u32("attempts.iteration", row.try_get("iteration")?)?,
        )
        .map_err(|error| OpError::Store(StoreError::incompatible(error.to_string())))?;
        let key = node.attempt(to_u32("attempts.attempt", row.try_get("attempt")?)?);
        let lease: i64 = row.try_get("lease_expires_at_ms")?;
        let error = TaskError::abandoned(u64::try_from(lease).unwrap_or_default());
        keys.push(&key);
        errors.push(json("the error", &error)?);
        events.push(Event::new(&key, now_ms, EventKind::NodeFailed { error }));
        marked.push(key);
    }
    let attempts = sqlx::query(
        "UPDATE attempts a SET state = 'failed', finished_at_ms = $1, error = u.error, \
                               retryable = TRUE \
         FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::jsonb[]) \
              AS u(run_id, node_id, iteration, attempt, error) \
         WHERE a.run_id = u.run_id AND a.node_id = u.node_id AND a.iteration = u.iteration \
           AND a.attempt = u.attempt",
    );
    keys.bind(attempts.bind(now))
        .bind(&errors)
        .execute(&mut *tx)
        .await?;
    let nodes = sqlx::query(
        "UPDATE nodes n SET state = 'failed', updated_at_ms = $1 \
         FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[]) \
              AS u(run_id, node_id, iteration, attempt) \
         WHERE n.run_id = u.run_id AND n.node_id = u.node_id AND n.iteration = u.iteration \
           AND n.last_attempt = u.attempt",
    );
    keys.bind(nodes.bind(now)).execute(&mut *tx).await?;
    insert_events(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(marked)
}
