//! Recovery on SQLite: marking the attempts whose lease expired.

use sqlx::{Row, SqliteConnection};
use stint_domain::{AttemptKey, AttemptState, Event, EventKind, NodeKey, TaskError};
use stint_ports::StoreError;

use crate::error::{map, to_i64, to_json};
use crate::write::{bind_attempt, insert_events, update_node};

/// Marks every in-progress attempt whose lease expired before `now_ms` as abandoned.
///
/// The sweep and the updates share one write transaction, so a second recoverer waits for the
/// first to commit and then finds nothing left to mark: each attempt is marked once.
pub(crate) async fn recover_abandoned(
    tx: &mut SqliteConnection,
    now_ms: u64,
) -> Result<Vec<AttemptKey>, StoreError> {
    let now = to_i64(now_ms, "recovery time")?;
    let expired = sqlx::query(
        "SELECT run_id, node_id, iteration, attempt, lease_expires_at_ms FROM attempts \
         WHERE state = 'in-progress' AND lease_expires_at_ms < ? \
         ORDER BY run_id, node_id, iteration, attempt",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(map)?;
    let mut marked = Vec::with_capacity(expired.len());
    for row in expired {
        let node = NodeKey::new(
            row.try_get::<String, _>("run_id").map_err(map)?,
            row.try_get::<String, _>("node_id").map_err(map)?,
            row.try_get::<u32, _>("iteration").map_err(map)?,
        )
        .map_err(|error| StoreError::incompatible(format!("stored key is invalid: {error}")))?;
        let key = node.attempt(row.try_get::<u32, _>("attempt").map_err(map)?);
        let lease: i64 = row.try_get("lease_expires_at_ms").map_err(map)?;
        let error = TaskError::abandoned(crate::error::to_u64(lease, "lease expiry")?);
        let done = bind_attempt(
            sqlx::query(
                "UPDATE attempts SET state = 'failed', error = ?, retryable = 1, finished_at_ms = ? \
                 WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ? \
                 AND state = 'in-progress'",
            )
            .bind(to_json(&error, "error")?)
            .bind(now),
            &key,
        )
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            continue;
        }
        update_node(tx, &key, AttemptState::Failed, now).await?;
        let failed = Event::new(&key, now_ms, EventKind::NodeFailed { error });
        insert_events(tx, &[failed]).await?;
        tracing::info!(attempt = %key, "abandoned attempt marked failed");
        marked.push(key);
    }
    Ok(marked)
}
