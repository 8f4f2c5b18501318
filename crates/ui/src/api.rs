//! The JSON endpoints, and the reads the pages share with them. Records are the ones
//! `stint schema` describes (`run`, `node`, `attempt`, `event`, `task`, `queue-stats`).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stint_domain::{AttemptRecord, AttemptState, EventKind, EventRecord, NodeRecord};
use stint_ports::{AttemptFilter, EventPage, RunCursor, RunListing, RunQuery, run_state};

use crate::UiState;
use crate::error::{ApiError, UiError};
use crate::format::{now_ms, segment, state_filter};

/// At most this many events are read for one run's page.
pub(crate) const EVENT_LIMIT: u32 = 20_000;
/// Runs per page unless `limit` says otherwise.
pub(crate) const RUNS_PER_PAGE: u32 = 50;

/// The query string of the runs list.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunsParams {
    /// Only runs in this state.
    pub(crate) state: Option<String>,
    /// Only runs whose id contains this.
    pub(crate) q: Option<String>,
    /// The cursor of the page (`next` of the page before).
    pub(crate) after: Option<String>,
    /// Runs per page (at most 500).
    pub(crate) limit: Option<u32>,
}

/// One run as the runs list shows it.
#[derive(Debug, Serialize)]
pub(crate) struct RunRow {
    run_id: String,
    state: AttemptState,
    nodes: u64,
    in_progress: u64,
    finished: u64,
    failed: u64,
    cancelled: u64,
    started_at_ms: u64,
    updated_at_ms: u64,
    /// From the first attempt's start to the last change (to now while in progress).
    duration_ms: u64,
}

/// A page of runs and the cursor of the next one.
#[derive(Debug, Serialize)]
pub(crate) struct RunsPage {
    pub(crate) runs: Vec<RunRow>,
    pub(crate) next: Option<String>,
}

impl RunRow {
    fn new(listing: RunListing, now: u64) -> Self {
        let summary = listing.summary;
        let state = run_state(&summary);
        let end = if state == AttemptState::InProgress {
            now.max(summary.updated_at_ms)
        } else {
            summary.updated_at_ms
        };
        Self {
            state,
            duration_ms: end.saturating_sub(listing.started_at_ms),
            run_id: summary.run_id,
            nodes: summary.nodes,
            in_progress: summary.in_progress,
            finished: summary.finished,
            failed: summary.failed,
            cancelled: summary.cancelled,
            started_at_ms: listing.started_at_ms,
            updated_at_ms: summary.updated_at_ms,
        }
    }

    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    pub(crate) fn state(&self) -> AttemptState {
        self.state
    }

    /// Nodes in progress, finished, failed, cancelled, and in all.
    pub(crate) fn counts(&self) -> [u64; 5] {
        [
            self.in_progress,
            self.finished,
            self.failed,
            self.cancelled,
            self.nodes,
        ]
    }

    pub(crate) fn started_at_ms(&self) -> u64 {
        self.started_at_ms
    }

    pub(crate) fn duration_ms(&self) -> u64 {
        self.duration_ms
    }
}

/// A cursor as it travels in URLs: `UPDATED_AT_MS:RUN_ID`.
fn parse_cursor(text: &str) -> Result<RunCursor, UiError> {
    let invalid = || {
        UiError::refused(
            axum::http::StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "`after` is not a cursor of this listing",
        )
    };
    let (at, run_id) = text.split_once(':').ok_or_else(invalid)?;
    Ok(RunCursor {
        updated_at_ms: at.parse().map_err(|_| invalid())?,
        run_id: run_id.to_owned(),
    })
}

/// Reads the page of runs `params` asks for.
pub(crate) async fn runs_page(state: &UiState, params: &RunsParams) -> Result<RunsPage, UiError> {
    let filter_state = state_filter::<AttemptState>(
        params.state.as_deref(),
        "`state` is one of in-progress, finished, failed, cancelled",
    )?;
    let limit = params.limit.unwrap_or(RUNS_PER_PAGE).clamp(1, 500);
    let query = RunQuery {
        state: filter_state,
        search: params.q.clone().filter(|q| !q.is_empty()),
        after: params.after.as_deref().map(parse_cursor).transpose()?,
        // One more than shown tells whether a next page exists.
        limit: limit + 1,
    };
    let mut listings = state.history.list_runs_page(&query).await?;
    let more = listings.len() > limit as usize;
    listings.truncate(limit as usize);
    let next = more
        .then(|| listings.last())
        .flatten()
        .map(|last| format!("{}:{}", last.summary.updated_at_ms, last.summary.run_id));
    let now = now_ms();
    let runs = listings.into_iter().map(|l| RunRow::new(l, now)).collect();
    Ok(RunsPage { runs, next })
}

/// The query string of a runs page, with `after` set to `cursor`.
pub(crate) fn next_query(params: &RunsParams, cursor: &str) -> String {
    let mut query = format!("after={}", segment(cursor));
    if let Some(state) = params.state.as_deref().filter(|s| !s.is_empty()) {
        query.push_str(&format!("&state={}", segment(state)));
    }
    if let Some(q) = params.q.as_deref().filter(|q| !q.is_empty()) {
        query.push_str(&format!("&q={}", segment(q)));
    }
    query
}

/// `GET /api/runs`: a page of runs (`?state=&q=&after=&limit=`), newest first.
pub(crate) async fn runs(
    State(state): State<UiState>,
    Query(params): Query<RunsParams>,
) -> Result<Json<RunsPage>, ApiError> {
    Ok(Json(runs_page(&state, &params).await?))
}

/// A run with everything its page shows.
#[derive(Debug, Serialize)]
pub(crate) struct RunView {
    pub(crate) run_id: String,
    pub(crate) state: AttemptState,
    pub(crate) nodes: Vec<NodeRecord>,
    pub(crate) attempts: Vec<AttemptRecord>,
    /// The sequence number of the last event read (where a live page starts tailing).
    pub(crate) last_seq: u64,
    #[serde(skip)]
    pub(crate) events: Vec<EventRecord>,
}

/// Reads run `run_id`, or says it is unknown.
pub(crate) async fn load_run(state: &UiState, run_id: &str) -> Result<RunView, UiError> {
    let nodes = state.history.list_nodes(run_id).await?;
    if nodes.is_empty() {
        return Err(UiError::not_found(
            "UNKNOWN_RUN",
            format!("no run '{run_id}' is recorded"),
        ));
    }
    let filter = AttemptFilter {
        run_id: run_id.to_owned(),
        ..AttemptFilter::default()
    };
    let attempts = state.history.list_attempts(&filter).await?;
    let events = state
        .history
        .read_events(&EventPage::new(run_id).limit(EVENT_LIMIT))
        .await?;
    let summary_state = if nodes.iter().any(|n| n.state == AttemptState::InProgress) {
        AttemptState::InProgress
    } else if nodes.iter().any(|n| n.state == AttemptState::Failed) {
        AttemptState::Failed
    } else if nodes.iter().any(|n| n.state == AttemptState::Cancelled) {
        AttemptState::Cancelled
    } else {
        AttemptState::Finished
    };
    Ok(RunView {
        run_id: run_id.to_owned(),
        state: summary_state,
        last_seq: events.last().map_or(0, |e| e.seq),
        nodes,
        attempts,
        events,
    })
}

/// `GET /api/runs/RUN`: the run's state, nodes and attempts.
pub(crate) async fn run(
    State(state): State<UiState>,
    Path(run_id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(load_run(&state, &run_id).await?))
}

/// The query string of `/api/runs/RUN/events`.
#[derive(Debug, Deserialize)]
pub(crate) struct EventsParams {
    after: Option<u64>,
    limit: Option<u32>,
}

/// `GET /api/runs/RUN/events?after=SEQ&limit=N`: a page of the run's events (1,000 by default).
pub(crate) async fn events(
    State(state): State<UiState>,
    Path(run_id): Path<String>,
    Query(params): Query<EventsParams>,
) -> Result<Json<Vec<EventRecord>>, ApiError> {
    let page = EventPage::new(run_id)
        .after(params.after.unwrap_or(0))
        .limit(params.limit.unwrap_or(1_000).min(EVENT_LIMIT));
    Ok(Json(state.history.read_events(&page).await?))
}

/// One attempt with what its page shows.
#[derive(Debug, Serialize)]
pub(crate) struct AttemptView {
    pub(crate) attempt: AttemptRecord,
    /// The checkpoint it received: the newest heartbeat payload of an earlier attempt.
    pub(crate) checkpoint: Option<Value>,
    /// The node's stored output, when this attempt finished.
    pub(crate) output: Option<Value>,
    pub(crate) events: Vec<EventRecord>,
    /// The sequence number of the run's last event (where a live page starts tailing).
    #[serde(skip)]
    pub(crate) last_seq: u64,
}

/// Reads attempt `number` of node `node_id`#`iteration` of `run_id`.
pub(crate) async fn load_attempt(
    state: &UiState,
    (run_id, node_id, iteration, number): (String, String, u32, u32),
) -> Result<AttemptView, UiError> {
    let unknown = || {
        UiError::not_found(
            "UNKNOWN_NODE",
            format!("no attempt {number} of {run_id}/{node_id}#{iteration} is recorded"),
        )
    };
    let filter = AttemptFilter {
        run_id: run_id.clone(),
        node_id: Some(node_id.clone()),
        iteration: Some(iteration),
    };
    let attempts = state.history.list_attempts(&filter).await?;
    let attempt = attempts
        .iter()
        .find(|a| a.attempt == number)
        .cloned()
        .ok_or_else(unknown)?;
    let checkpoint = attempts
        .iter()
        .filter(|a| a.attempt < number)
        .rev()
        .find_map(|a| a.heartbeat.clone());
    let output = if attempt.state == AttemptState::Finished {
        let key = stint_domain::NodeKey::new(run_id.clone(), node_id.clone(), iteration)
            .map_err(|_| unknown())?;
        state.history.read_output(&key).await?
    } else {
        None
    };
    let all = state
        .history
        .read_events(&EventPage::new(run_id).limit(EVENT_LIMIT))
        .await?;
    let last_seq = all.last().map_or(0, |e| e.seq);
    let events = all
        .into_iter()
        .filter(|e| {
            let event = &e.event;
            event.node_id == node_id
                && event.iteration == iteration
                && (event.attempt == number
                    // The retry notice names the attempt to come; it follows this one.
                    || (event.attempt == number + 1
                        && matches!(event.kind, EventKind::NodeRetrying { .. })))
        })
        .collect();
    Ok(AttemptView {
        attempt,
        checkpoint,
        output,
        events,
        last_seq,
    })
}

/// The path parameters of an attempt, decoded.
pub(crate) type AttemptPath = Path<(String, String, u32, u32)>;

/// `GET /api/runs/RUN/nodes/NODE/ITERATION/attempts/N`: the attempt record, the checkpoint it
/// received, its output and its events.
pub(crate) async fn attempt(
    State(state): State<UiState>,
    Path(path): AttemptPath,
) -> Result<Json<AttemptView>, ApiError> {
    Ok(Json(load_attempt(&state, path).await?))
}
