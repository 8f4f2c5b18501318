//! Recovery on SQLite: marking the attempts whose lease expired.

use rusqlite::{Connection, params};
use stint_domain::{AttemptKey, AttemptState, Event, EventKind, NodeKey, TaskError};
use stint_ports::StoreError;

use crate::error::{map_rusqlite as map, to_i64, to_json, to_u64};
use crate::write::{insert_events, update_node};
use crate::writer::statement;

/// The in-progress attempts whose lease expired before `now`, in key order, each with its
/// lease's expiry.
fn expired(conn: &Connection, now: i64) -> Result<Vec<(AttemptKey, i64)>, StoreError> {
    let mut select = statement(
        conn,
        "SELECT run_id, node_id, iteration, attempt, lease_expires_at_ms FROM attempts \
         WHERE state = 'in-progress' AND lease_expires_at_ms < ? \
         ORDER BY run_id, node_id, iteration, attempt",
    )?;
    let rows = select
        .query_map([now], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u32>(2)?,
                row.get::<_, u32>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .map_err(map)?;
    let mut expired = Vec::new();
    for row in rows {
        let (run_id, node_id, iteration, attempt, lease) = row.map_err(map)?;
        let node = NodeKey::new(run_id, node_id, iteration)
            .map_err(|error| StoreError::incompatible(format!("stored key is invalid: {error}")))?;
        expired.push((node.attempt(attempt), lease));
    }
    Ok(expired)
}

/// Marks every in-progress attempt whose lease expired before `now_ms` as abandoned.
///
/// The sweep and the updates share one write transaction, so a second recoverer waits for the
/// first to commit and then finds nothing left to mark: each attempt is marked once.
pub(crate) fn recover_abandoned(
    tx: &Connection,
    now_ms: u64,
) -> Result<Vec<AttemptKey>, StoreError> {
    let now = to_i64(now_ms, "recovery time")?;
    let mut marked = Vec::new();
    for (key, lease) in expired(tx, now)? {
        let error = TaskError::abandoned(to_u64(lease, "lease expiry")?);
        let changed = statement(
            tx,
            "UPDATE attempts SET state = 'failed', error = ?, retryable = 1, finished_at_ms = ? \
             WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ? \
             AND state = 'in-progress'",
        )?
        .execute(params![
            to_json(&error, "error")?,
            now,
            key.node.run_id(),
            key.node.node_id(),
            key.node.iteration(),
            key.attempt,
        ])
        .map_err(map)?;
        if changed == 0 {
            continue;
        }
        update_node(tx, &key, AttemptState::Failed, now)?;
        let failed = Event::new(&key, now_ms, EventKind::NodeFailed { error });
        insert_events(tx, &[failed])?;
        tracing::info!(attempt = %key, "abandoned attempt marked failed");
        marked.push(key);
    }
    Ok(marked)
}
