//! `stint runs`, `nodes` and `attempts`: listings of what was recorded, and what the reading
//! commands share (tables, JSON, unknown runs and nodes).

use std::time::{Duration, UNIX_EPOCH};

use stint_domain::{AttemptRecord, NodeRecord, RunSummary};
use stint_ports::{AttemptFilter, Store};

use crate::args::{AttemptsArgs, NodesArgs, RunsArgs};
use crate::exit::{self, CliCode, CliError};
use crate::stdout;

/// `stint runs`.
pub(super) async fn runs(db: &str, args: &RunsArgs) -> Result<u8, CliError> {
    let store = crate::store::open_existing(db).await?;
    let runs = store.list_runs().await?;
    print_listing(
        args.json,
        &runs,
        [
            "RUN",
            "NODES",
            "RUNNING",
            "FINISHED",
            "FAILED",
            "CANCELLED",
            "UPDATED",
        ],
        run_row,
    )
}

fn run_row(run: &RunSummary) -> Vec<String> {
    vec![
        run.run_id.clone(),
        run.nodes.to_string(),
        run.in_progress.to_string(),
        run.finished.to_string(),
        run.failed.to_string(),
        run.cancelled.to_string(),
        timestamp(run.updated_at_ms),
    ]
}

/// `stint nodes RUN_ID`: the run's nodes in the store's order (node id, then iteration).
pub(super) async fn nodes(db: &str, args: &NodesArgs) -> Result<u8, CliError> {
    let store = crate::store::open_existing(db).await?;
    let nodes = store.list_nodes(&args.run_id).await?;
    if nodes.is_empty() {
        return Err(unknown_run(&args.run_id));
    }
    print_listing(
        args.json,
        &nodes,
        ["NODE", "ITER", "STATE", "ATTEMPT", "UPDATED"],
        node_row,
    )
}

fn node_row(node: &NodeRecord) -> Vec<String> {
    vec![
        node.node_id.clone(),
        node.iteration.to_string(),
        node.state.to_string(),
        node.last_attempt.to_string(),
        timestamp(node.updated_at_ms),
    ]
}

/// `stint attempts RUN_ID`.
pub(super) async fn attempts(db: &str, args: &AttemptsArgs) -> Result<u8, CliError> {
    let store = crate::store::open_existing(db).await?;
    let filter = AttemptFilter {
        run_id: args.run_id.clone(),
        node_id: args.node.clone(),
        iteration: args.iteration,
    };
    let mut attempts = store.list_attempts(&filter).await?;
    if attempts.is_empty() {
        known(store.as_ref(), &filter).await?;
        // The run and node exist, so an attempt was begun since the first read (a node is
        // written together with its first attempt): read again.
        attempts = store.list_attempts(&filter).await?;
    }
    print_listing(
        args.json,
        &attempts,
        [
            "NODE", "ITER", "ATTEMPT", "STATE", "STARTED", "TOOK", "ERROR",
        ],
        attempt_row,
    )
}

/// Fails with UNKNOWN_RUN when no run `filter.run_id` is recorded, and with UNKNOWN_NODE when
/// it has no node that `filter` names.
async fn known(store: &dyn Store, filter: &AttemptFilter) -> Result<(), CliError> {
    let nodes = store.list_nodes(&filter.run_id).await?;
    if nodes.is_empty() {
        return Err(unknown_run(&filter.run_id));
    }
    let matches = |node: &NodeRecord| {
        filter.node_id.as_ref().is_none_or(|id| *id == node.node_id)
            && filter.iteration.is_none_or(|i| i == node.iteration)
    };
    if nodes.iter().any(matches) {
        Ok(())
    } else {
        Err(unknown_node(
            &filter.run_id,
            filter.node_id.as_deref(),
            filter.iteration,
        ))
    }
}

fn attempt_row(attempt: &AttemptRecord) -> Vec<String> {
    let took = attempt.finished_at_ms.map_or_else(
        || "-".to_owned(),
        |end| {
            let ms = end.saturating_sub(attempt.started_at_ms);
            humantime::format_duration(Duration::from_millis(ms)).to_string()
        },
    );
    let error = attempt
        .error
        .as_ref()
        .map_or_else(|| "-".to_owned(), |e| exit::one_line(&e.to_string()));
    vec![
        attempt.node_id.clone(),
        attempt.iteration.to_string(),
        attempt.attempt.to_string(),
        attempt.state.to_string(),
        timestamp(attempt.started_at_ms),
        took,
        error,
    ]
}

/// No run `run_id` is recorded.
pub(super) fn unknown_run(run_id: &str) -> CliError {
    CliError::new(
        CliCode::UnknownRun,
        format!("no run '{run_id}' is recorded in this database (`stint runs` lists the runs)"),
    )
}

/// Run `run_id` (which is recorded) has no node `node` (at `iteration`).
pub(super) fn unknown_node(run_id: &str, node: Option<&str>, iteration: Option<u32>) -> CliError {
    let node = node.map_or_else(|| "node".to_owned(), |node| format!("node '{node}'"));
    let at = iteration.map_or_else(String::new, |i| format!(" at iteration {i}"));
    CliError::new(
        CliCode::UnknownNode,
        format!("run '{run_id}' has no {node}{at} (`stint nodes {run_id}` lists its nodes)"),
    )
}

/// `value` as pretty JSON.
pub(super) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| CliError::internal(format!("cannot write JSON: {e}")))
}

/// `value` as JSON on one line.
pub(super) fn to_json_line<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string(value).map_err(|e| CliError::internal(format!("cannot write JSON: {e}")))
}

/// RFC 3339 to the millisecond, UTC.
pub(super) fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Prints `items` as one JSON array with `--json`, else as a table: `header`, then a row of
/// each item.
pub(super) fn print_listing<T: serde::Serialize, const N: usize>(
    json: bool,
    items: &[T],
    header: [&str; N],
    row_of: impl FnMut(&T) -> Vec<String>,
) -> Result<u8, CliError> {
    if json {
        stdout::line(&to_json(items)?)?;
        return Ok(exit::SUCCESS);
    }
    let mut rows = vec![row(header)];
    rows.extend(items.iter().map(row_of));
    print_table(&rows)?;
    Ok(exit::SUCCESS)
}

pub(super) fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Prints `rows` as left-aligned columns two spaces apart.
pub(super) fn print_table(rows: &[Vec<String>]) -> Result<(), CliError> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for cells in rows {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        stdout::line(line.trim_end())?;
    }
    Ok(())
}
