//! `stint runs` and `attempts`: listings of what was recorded, and what the reading commands
//! share (tables, JSON, timestamps).

use std::time::{Duration, UNIX_EPOCH};

use stint_domain::{AttemptRecord, RunSummary};
use stint_ports::AttemptFilter;

use crate::args::{AttemptsArgs, RunsArgs};
use crate::exit::{self, CliError};
use crate::stdout;

/// `stint runs`.
pub async fn runs(db: &str, args: &RunsArgs) -> Result<u8, CliError> {
    let store = crate::store::open_existing(db).await?;
    let runs = store.list_runs().await?;
    if args.json {
        stdout::line(&to_json(&runs)?)?;
        return Ok(exit::SUCCESS);
    }
    let mut rows = vec![row([
        "RUN",
        "NODES",
        "RUNNING",
        "FINISHED",
        "FAILED",
        "CANCELLED",
        "UPDATED",
    ])];
    rows.extend(runs.iter().map(run_row));
    print_table(&rows)?;
    Ok(exit::SUCCESS)
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

/// `stint attempts RUN_ID`.
pub async fn attempts(db: &str, args: &AttemptsArgs) -> Result<u8, CliError> {
    let store = crate::store::open_existing(db).await?;
    let filter = AttemptFilter {
        run_id: args.run_id.clone(),
        node_id: args.node.clone(),
        iteration: args.iteration,
    };
    let attempts = store.list_attempts(&filter).await?;
    if args.json {
        stdout::line(&to_json(&attempts)?)?;
        return Ok(exit::SUCCESS);
    }
    let mut rows = vec![row([
        "NODE", "ITER", "ATTEMPT", "STATE", "STARTED", "TOOK", "ERROR",
    ])];
    rows.extend(attempts.iter().map(attempt_row));
    print_table(&rows)?;
    Ok(exit::SUCCESS)
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

/// `value` as pretty JSON.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| CliError::internal(format!("cannot write JSON: {e}")))
}

/// `value` as JSON on one line.
pub fn to_json_line<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string(value).map_err(|e| CliError::internal(format!("cannot write JSON: {e}")))
}

/// RFC 3339 to the millisecond, UTC.
pub fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Prints `rows` as left-aligned columns two spaces apart.
fn print_table(rows: &[Vec<String>]) -> Result<(), CliError> {
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
