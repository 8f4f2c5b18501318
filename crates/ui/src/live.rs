//! `GET /api/runs/RUN/events/stream`: the run's new events as server-sent events, fed by tailing
//! the event log (each read asks for the events after the last one sent). A browser that
//! reconnects sends the last id it saw (`Last-Event-ID`) and misses nothing.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use stint_domain::EventRecord;
use stint_ports::EventPage;

use crate::UiState;

/// Events read per look at the log.
const BATCH: u32 = 200;

/// The query string of the stream.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamParams {
    /// Send the events after this sequence number (0: every event from the first).
    after: Option<u64>,
}

/// Where a tail stands: the next events to send and the last sequence number read.
struct Tail {
    state: UiState,
    run_id: String,
    after: u64,
    pending: VecDeque<EventRecord>,
    first: bool,
}

/// `GET /api/runs/RUN/events/stream?after=SEQ`: one `stint` event per log event (its JSON, its
/// `seq` as the id), until the server stops.
pub(crate) async fn stream(
    State(state): State<UiState>,
    Path(run_id): Path<String>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let tail = Tail {
        state,
        run_id,
        after: params.after.unwrap_or(0).max(resumed.unwrap_or(0)),
        pending: VecDeque::new(),
        first: true,
    };
    Sse::new(futures::stream::unfold(tail, next_event)).keep_alive(KeepAlive::default())
}

/// The next event to send, waiting for one as long as it takes; `None` once the server stops.
async fn next_event(mut tail: Tail) -> Option<(Result<Event, Infallible>, Tail)> {
    let stopping = tail.state.stopping();
    loop {
        if let Some(record) = tail.pending.pop_front() {
            let data = serde_json::to_string(&record).unwrap_or_else(|_| "{}".to_owned());
            let event = Event::default()
                .event("stint")
                .id(record.seq.to_string())
                .data(data);
            return Some((Ok(event), tail));
        }
        if !tail.first {
            tokio::select! {
                () = stopping.cancelled() => return None,
                () = tokio::time::sleep(tail.state.poll) => {}
            }
        }
        tail.first = false;
        if stopping.is_cancelled() {
            return None;
        }
        let page = EventPage::new(tail.run_id.clone())
            .after(tail.after)
            .limit(BATCH);
        match tail.state.history.read_events(&page).await {
            Ok(records) => {
                if let Some(last) = records.last() {
                    tail.after = last.seq;
                }
                tail.pending.extend(records);
            }
            // A store that is briefly unreachable: look again at the next tick.
            Err(error) => tracing::warn!(%error, run = %tail.run_id, "live stream: reading events"),
        }
    }
}
