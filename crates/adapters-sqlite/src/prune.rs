//! `prune`: ended tasks go, and with each the history of its node, in the writer's one
//! transaction (so a crash leaves a task and its history both there or both gone).

use std::collections::BTreeSet;

use rusqlite::{Connection, params};
use stint_ports::StoreError;

use crate::error::{map_rusqlite as map, to_i64};
use crate::writer::statement;

/// Up to `batch` ended tasks that ended before `ended_before_ms`, oldest first.
const PRUNED: &str = "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
     WHERE state IN ('finished', 'failed', 'cancelled') AND ended_at_ms < ? \
     ORDER BY ended_at_ms, id LIMIT ?) RETURNING run_id, node_id";

/// Whether a node's history must stay: a task still names it, or an attempt of it is live.
const NODE_KEPT: &str = "SELECT EXISTS (SELECT 1 FROM tasks WHERE run_id = ?1 AND node_id = ?2) \
     OR EXISTS (SELECT 1 FROM attempts WHERE run_id = ?1 AND node_id = ?2 \
                AND state = 'in-progress')";

/// A node's records, every iteration (the primary keys lead with run and node).
const NODE_RECORDS: [&str; 3] = [
    "DELETE FROM outputs WHERE run_id = ? AND node_id = ?",
    "DELETE FROM attempts WHERE run_id = ? AND node_id = ?",
    "DELETE FROM nodes WHERE run_id = ? AND node_id = ?",
];

/// A run's events, once it has no node left.
const RUN_EVENTS: &str = "DELETE FROM events WHERE run_id = ?1 \
     AND NOT EXISTS (SELECT 1 FROM nodes WHERE run_id = ?1)";

/// The store's `prune` on the writer's transaction `tx`: how many tasks it deleted.
pub(crate) fn prune(tx: &Connection, ended_before_ms: u64, batch: u32) -> Result<u64, StoreError> {
    let pruned: Vec<(String, String)> = statement(tx, PRUNED)?
        .query_map(
            params![to_i64(ended_before_ms, "prune time")?, i64::from(batch)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(map)?
        .collect::<Result<_, _>>()
        .map_err(map)?;
    let nodes: BTreeSet<&(String, String)> = pruned.iter().collect();
    let mut runs = BTreeSet::new();
    for (run_id, node_id) in nodes {
        let kept: bool = statement(tx, NODE_KEPT)?
            .query_row(params![run_id, node_id], |row| row.get(0))
            .map_err(map)?;
        if kept {
            continue;
        }
        for sql in NODE_RECORDS {
            statement(tx, sql)?
                .execute(params![run_id, node_id])
                .map_err(map)?;
        }
        runs.insert(run_id);
    }
    for run_id in runs {
        statement(tx, RUN_EVENTS)?.execute([run_id]).map_err(map)?;
    }
    Ok(pruned.len() as u64)
}
