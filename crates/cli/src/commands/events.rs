//! `stint events RUN_ID [--follow]`: the run's event log, and tailing it.

use std::time::Duration;

use stint_domain::{EventKind, EventRecord};
use stint_ports::{EventPage, Store};

use super::inspect::{timestamp, to_json_line, unknown_run};
use crate::args::EventsArgs;
use crate::exit::{self, CliError};
use crate::stdout;

/// How many events one read asks for.
const EVENT_PAGE: u32 = 500;
/// How often `events --follow` looks for new events (and for a reader that went away).
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `stint events RUN_ID`: an unknown run is an error, except with `--follow`, which waits for it
/// (saying so), as `tail -F` waits for a file.
pub(super) async fn events(db: &str, args: &EventsArgs) -> Result<u8, CliError> {
    let store = crate::store::open_existing(db).await?;
    let mut after = print_events(store.as_ref(), &args.run_id, args.after, args.json).await?;
    if after == args.after && store.list_nodes(&args.run_id).await?.is_empty() {
        if !args.follow {
            return Err(unknown_run(&args.run_id));
        }
        crate::output::note(&format!(
            "no run '{}' is recorded yet; waiting for its events (Ctrl-C stops)",
            args.run_id
        ));
    }
    if !args.follow {
        return Ok(exit::SUCCESS);
    }
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    loop {
        if stdout::closed() {
            return Err(stdout::closed_error());
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(exit::CANCELLED),
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        after = print_events(store.as_ref(), &args.run_id, after, args.json).await?;
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
        let page = store
            .read_events(&EventPage::new(run_id).after(after).limit(EVENT_PAGE))
            .await?;
        for event in &page {
            let line = if json {
                to_json_line(event)?
            } else {
                event_line(event)
            };
            stdout::line(&line)?;
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
        EventKind::NodeFailed { error } => exit::one_line(&error.to_string()),
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
