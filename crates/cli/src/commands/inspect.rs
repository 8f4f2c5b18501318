//! `stint runs`, `attempts`, `events` and `output`: reading what was recorded.

use std::time::{Duration, UNIX_EPOCH};

use stint_domain::{AttemptRecord, EventKind, EventRecord, NodeKey, RunSummary};
use stint_ports::{AttemptFilter, Store};

use crate::args::{AttemptsArgs, EventsArgs, OutputArgs, RunsArgs};
use crate::exit::{self, CliCode, CliError};
use crate::print_stdout;

/// How many events one read asks for.
const EVENT_PAGE: u32 = 500;
/// How often `events --follow` looks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `stint runs`.
pub async fn runs(db: &str, args: &RunsArgs) -> Result<u8, CliError> {
    let store = crate::store::open_existing(db).await?;
    let runs = store.list_runs().await?;
    if args.json {
        print_stdout(&to_json(&runs)?);
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
    print_table(&rows);
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
        print_stdout(&to_json(&attempts)?);
        return Ok(exit::SUCCESS);
    }
    let mut rows = vec![row([
        "NODE", "ITER", "ATTEMPT", "STATE", "STARTED", "TOOK", "ERROR",
    ])];
    rows.extend(attempts.iter().map(attempt_row));
    print_table(&rows);
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
        .map_or_else(|| "-".to_owned(), |e| crate::exit::one_line(&e.to_string()));
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

/// `stint events RUN_ID`.
pub async fn events(db: &str, args: &EventsArgs) -> Result<u8, CliError> {
    let store = crate::store::open_existing(db).await?;
    let mut after = args.after;
    let mut stop = args.follow.then(|| Box::pin(tokio::signal::ctrl_c()));
    loop {
        after = print_events(store.as_ref(), &args.run_id, after, args.json).await?;
        let Some(ctrl_c) = stop.as_mut() else {
            return Ok(exit::SUCCESS);
        };
        tokio::select! {
            _ = ctrl_c => return Ok(exit::CANCELLED),
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
    }
}

/// Prints every event of `run_id` after `after`; returns the last sequence number printed.
async fn print_events(
    store: &dyn Store,
    run_id: &str,
    mut after: u64,
    json: bool,
) -> Result<u64, CliError> {
    loop {
        let page = store.read_events(run_id, after, EVENT_PAGE).await?;
        for event in &page {
            let line = if json {
                to_json_line(event)?
            } else {
                event_line(event)
            };
            print_stdout(&line);
            after = after.max(event.seq);
        }
        if page.len() < EVENT_PAGE as usize {
            return Ok(after);
        }
    }
}

fn event_line(record: &EventRecord) -> String {
    let event = &record.event;
    let detail = match &event.kind {
        EventKind::NodeFailed { error } => crate::exit::one_line(&error.to_string()),
        EventKind::NodeCancelled { reason } => reason.clone(),
        EventKind::NodeRetrying { delay_ms } => format!("in {delay_ms} ms"),
        EventKind::TaskHeartbeat {
            has_data,
            data_size_bytes,
            ..
        } => {
            if *has_data {
                format!("{data_size_bytes} bytes")
            } else {
                "ping".to_owned()
            }
        }
        EventKind::TaskHeartbeatTimeout { timeout_ms, .. } => format!("timeout {timeout_ms} ms"),
        EventKind::NodeStarted | EventKind::NodeFinished => String::new(),
    };
    format!(
        "{:>6}  {}  {:<20}  {}#{} attempt {}  {detail}",
        record.seq,
        timestamp(event.timestamp_ms),
        event.kind.type_name(),
        event.node_id,
        event.iteration,
        event.attempt,
    )
    .trim_end()
    .to_owned()
}

/// `stint output RUN_ID NODE`.
pub async fn output(db: &str, args: &OutputArgs) -> Result<u8, CliError> {
    let key = NodeKey::new(args.run_id.clone(), args.node.clone(), args.iteration)
        .map_err(|error| CliError::invalid_input(error.to_string()))?;
    let store = crate::store::open_existing(db).await?;
    if let Some(output) = store.read_output(&key).await? {
        print_stdout(&output.to_string());
        return Ok(exit::SUCCESS);
    }
    let state = match store.get_node(&key).await? {
        Some(node) => format!("its state is {}", node.state),
        None => "it never ran".to_owned(),
    };
    Err(CliError::new(
        CliCode::NoOutput,
        format!("{key} has no stored output: {state}"),
    ))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| CliError::internal(format!("cannot write JSON: {e}")))
}

fn to_json_line<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string(value).map_err(|e| CliError::internal(format!("cannot write JSON: {e}")))
}

/// RFC 3339 to the millisecond, UTC.
fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Prints `rows` as left-aligned columns two spaces apart.
fn print_table(rows: &[Vec<String>]) {
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
        print_stdout(line.trim_end());
    }
}
