//! The query port: what inspection reads (runs, attempts, nodes, outputs, the event log).

use std::fmt::Debug;

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{AttemptRecord, AttemptState, EventRecord, NodeKey, NodeRecord, RunSummary};

use crate::StoreError;

/// Which attempts to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttemptFilter {
    /// The run.
    pub run_id: String,
    /// Only this node.
    pub node_id: Option<String>,
    /// Only this iteration.
    pub iteration: Option<u32>,
}

impl AttemptFilter {
    /// Every attempt of `run_id`.
    pub fn run(run_id: impl Into<String>) -> Self {
        Self {
            run_id: run_id.into(),
            ..Self::default()
        }
    }

    /// Every attempt of `node`.
    pub fn node(node: &NodeKey) -> Self {
        Self {
            run_id: node.run_id().to_owned(),
            node_id: Some(node.node_id().to_owned()),
            iteration: Some(node.iteration()),
        }
    }
}

/// Which events to read: those of one run after a cursor, up to a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// The run.
    pub run_id: String,
    /// Only events with a greater sequence number (0: from the first).
    pub after_seq: u64,
    /// At most this many.
    pub limit: u32,
}

impl EventPage {
    /// Every event of `run_id`, from the first.
    pub fn new(run_id: impl Into<String>) -> Self {
        Self {
            run_id: run_id.into(),
            after_seq: 0,
            limit: u32::MAX,
        }
    }

    /// Only the events after sequence number `seq`.
    #[must_use]
    pub fn after(mut self, seq: u64) -> Self {
        self.after_seq = seq;
        self
    }

    /// At most `limit` events.
    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }
}

/// Where a page of runs ends: the last run listed (runs are ordered by `updated_at_ms`, newest
/// first, then by run id in byte order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    /// The last listed run's `updated_at_ms`.
    pub updated_at_ms: u64,
    /// The last listed run's id.
    pub run_id: String,
}

/// Which runs to list: one page of them, most recently updated first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunQuery {
    /// Only runs in this state (see [`run_state`]).
    pub state: Option<AttemptState>,
    /// Only runs whose id contains this text (case-sensitive).
    pub search: Option<String>,
    /// Only runs after this one in the listing order (the next page).
    pub after: Option<RunCursor>,
    /// At most this many.
    pub limit: u32,
}

/// A run as a page of [`HistoryStore::list_runs_page`] lists it: its summary and when its first
/// attempt started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunListing {
    /// The counts of its nodes by state.
    pub summary: RunSummary,
    /// When its earliest attempt started.
    pub started_at_ms: u64,
}

/// The state of a run as a whole: in progress while any node is, else failed when any node
/// failed, else cancelled when any was, else finished.
pub fn run_state(summary: &RunSummary) -> AttemptState {
    if summary.in_progress > 0 {
        AttemptState::InProgress
    } else if summary.failed > 0 {
        AttemptState::Failed
    } else if summary.cancelled > 0 {
        AttemptState::Cancelled
    } else {
        AttemptState::Finished
    }
}

impl RunQuery {
    /// Whether `summary` passes the state and search filters (not the cursor).
    pub fn matches(&self, summary: &RunSummary) -> bool {
        self.state.is_none_or(|state| run_state(summary) == state)
            && self
                .search
                .as_deref()
                .is_none_or(|text| summary.run_id.contains(text))
    }

    /// Whether `summary` comes after the cursor in the listing order (true without one).
    pub fn is_after_cursor(&self, summary: &RunSummary) -> bool {
        self.after.as_ref().is_none_or(|cursor| {
            summary.updated_at_ms < cursor.updated_at_ms
                || (summary.updated_at_ms == cursor.updated_at_ms
                    && summary.run_id.as_bytes() > cursor.run_id.as_bytes())
        })
    }
}

/// The query port: the recorded history, read by the CLI's inspect commands (and any other
/// reader). Nothing here writes.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait HistoryStore: Send + Sync + Debug {
    /// Every run, most recently updated first.
    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError>;

    /// One page of runs: those `query` selects, after its cursor, most recently updated first
    /// (then by run id in byte order), at most its limit, each with its start time. The
    /// database adapters answer with one query; this default reads every run (for small stores).
    async fn list_runs_page(&self, query: &RunQuery) -> Result<Vec<RunListing>, StoreError> {
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let summaries: Vec<RunSummary> = self
            .list_runs()
            .await?
            .into_iter()
            .filter(|summary| query.matches(summary) && query.is_after_cursor(summary))
            .take(limit)
            .collect();
        let mut page = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let filter = AttemptFilter {
                run_id: summary.run_id.clone(),
                ..AttemptFilter::default()
            };
            let attempts = self.list_attempts(&filter).await?;
            let started_at_ms = attempts.iter().map(|a| a.started_at_ms).min().unwrap_or(0);
            page.push(RunListing {
                summary,
                started_at_ms,
            });
        }
        Ok(page)
    }

    /// The attempts that match `filter`, ordered by node id (byte order), iteration and attempt
    /// number.
    ///
    /// A stored JSON value this version cannot read back (a payload nested deeper than the JSON
    /// reader allows, written by an older stint) never stops the listing: it is listed as
    /// [`unreadable`]'s marker, and an unreadable error as none.
    async fn list_attempts(&self, filter: &AttemptFilter)
    -> Result<Vec<AttemptRecord>, StoreError>;

    /// One node, if it has ever started.
    async fn get_node(&self, node: &NodeKey) -> Result<Option<NodeRecord>, StoreError>;

    /// The nodes of a run, ordered by node id (byte order) and iteration.
    async fn list_nodes(&self, run_id: &str) -> Result<Vec<NodeRecord>, StoreError>;

    /// The stored output of a node that finished (kept when a later attempt of it failed).
    async fn read_output(&self, node: &NodeKey) -> Result<Option<Value>, StoreError>;

    /// The events of `page`: up to its limit, of its run, with a sequence number above its
    /// cursor, in order.
    ///
    /// Sequence numbers increase and are unique per database, but may have gaps. A reader that
    /// tails the log with the last `seq` it saw never misses an event committed later.
    async fn read_events(&self, page: &EventPage) -> Result<Vec<EventRecord>, StoreError>;
}

/// The value a listing shows for a stored JSON value it cannot read back:
/// `{"$unreadable": "<why>"}`.
pub fn unreadable(why: &dyn std::fmt::Display) -> Value {
    serde_json::json!({ "$unreadable": why.to_string() })
}
