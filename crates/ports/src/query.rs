//! The query port: what inspection reads (runs, attempts, nodes, outputs, the event log).

use std::fmt::Debug;

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{AttemptRecord, EventRecord, NodeKey, NodeRecord, RunSummary};

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

/// The query port: the recorded history, read by the CLI's inspect commands (and any other
/// reader). Nothing here writes.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait HistoryStore: Send + Sync + Debug {
    /// Every run, most recently updated first.
    async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError>;

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
