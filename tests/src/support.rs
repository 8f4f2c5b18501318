//! Small builders the cases share, so each case reads as the behaviour it checks.

use serde_json::{Value, json};
use stint_domain::{AttemptRecord, Event, EventKind, EventRecord, NodeKey, NodeRecord, TaskError};
use stint_ports::{
    AttemptEnd, AttemptFilter, BeginAttempt, BegunAttempt, EndAttempt, EventPage, HeartbeatWrite,
    OwnedAttempt, Store, StoreError,
};

/// How long a lease lasts in the cases, from the attempt's start.
pub(crate) const LEASE_MS: u64 = 30_000;

/// A node key; panics on an invalid one, which would be a bug in the case itself.
pub(crate) fn key(run_id: &str, node_id: &str, iteration: u32) -> NodeKey {
    NodeKey::new(run_id, node_id, iteration).expect("the case uses a valid key")
}

/// A `BeginAttempt` for `node` by `owner` at `at`, leased for [`LEASE_MS`].
pub(crate) fn begin_at(node: &NodeKey, owner: &str, at: u64) -> BeginAttempt {
    BeginAttempt {
        node: node.clone(),
        owner: owner.to_owned(),
        started_at_ms: at,
        lease_ms: LEASE_MS,
        metadata: json!({"prompt": "summarise", "needs_approval": false}),
        working_dir: Some("/srv/project".to_owned()),
        label: Some(format!("label of {}", node.node_id())),
        output_table: Some("outputs_v1".to_owned()),
    }
}

/// Begins an attempt of `node` at 1 000 whose lease ends at `lease_expires_at_ms`; its owner is
/// named after the node.
pub(crate) async fn begin_leased(
    store: &dyn Store,
    node: &NodeKey,
    lease_expires_at_ms: u64,
) -> OwnedAttempt {
    let owner = format!("owner of {}", node.node_id());
    let begin = BeginAttempt {
        lease_ms: lease_expires_at_ms - 1_000,
        ..begin_at(node, &owner, 1_000)
    };
    let begun = store.begin_attempt(begin).await.expect("begin");
    OwnedAttempt {
        key: node.attempt(begun.attempt),
        owner,
    }
}

/// Begins an attempt that must be accepted; returns what the store said and the handle to
/// write with.
pub(crate) async fn start(
    store: &dyn Store,
    node: &NodeKey,
    owner: &str,
    at: u64,
) -> (BegunAttempt, OwnedAttempt) {
    let begun = store
        .begin_attempt(begin_at(node, owner, at))
        .await
        .unwrap_or_else(|error| panic!("begin {node} as {owner}: {error}"));
    let owned = OwnedAttempt {
        key: node.attempt(begun.attempt),
        owner: owner.to_owned(),
    };
    (begun, owned)
}

/// A retryable `TASK_FAILED` end.
pub(crate) fn failure(message: &str) -> AttemptEnd {
    AttemptEnd::Failed {
        error: TaskError::task_failed(message),
        retryable: true,
    }
}

/// A cancellation's end: `TASK_ABORTED`.
pub(crate) fn cancellation() -> AttemptEnd {
    AttemptEnd::Cancelled {
        error: TaskError::aborted(),
    }
}

/// Ends `attempt` with `end` at `at`, appending `events`; must be accepted.
pub(crate) async fn accept_end(
    store: &dyn Store,
    attempt: &OwnedAttempt,
    end: AttemptEnd,
    at: u64,
    events: Vec<Event>,
) {
    store
        .end_attempt(
            attempt,
            EndAttempt {
                end,
                finished_at_ms: at,
                events,
                task: None,
            },
        )
        .await
        .unwrap_or_else(|error| panic!("end {}: {error}", attempt.key));
}

/// Records `write` on `attempt`; must be accepted.
pub(crate) async fn accept_heartbeat(
    store: &dyn Store,
    attempt: &OwnedAttempt,
    write: HeartbeatWrite,
) {
    store
        .record_heartbeat(attempt, write)
        .await
        .unwrap_or_else(|error| panic!("heartbeat of {}: {error}", attempt.key));
}

/// The `NodeFailed` event matching [`failure`].
pub(crate) fn failed_event(attempt: &OwnedAttempt, at: u64, message: &str) -> Event {
    Event::new(
        &attempt.key,
        at,
        EventKind::NodeFailed {
            error: TaskError::task_failed(message),
        },
    )
}

/// Fails `attempt` at `at` (retryable), with its `NodeFailed` event; must be accepted.
pub(crate) async fn fail(store: &dyn Store, attempt: &OwnedAttempt, at: u64) {
    store
        .end_attempt(
            attempt,
            EndAttempt {
                end: failure("boom"),
                finished_at_ms: at,
                events: vec![failed_event(attempt, at, "boom")],
                task: None,
            },
        )
        .await
        .unwrap_or_else(|error| panic!("fail {}: {error}", attempt.key));
}

/// A heartbeat write received at `at`; `payload` `None` is a bare ping.
pub(crate) fn heartbeat(
    attempt: &OwnedAttempt,
    at: u64,
    payload: Option<Value>,
    interval_ms: Option<u64>,
) -> HeartbeatWrite {
    let size = payload
        .as_ref()
        .map_or(0, |payload| payload.to_string().len() as u64);
    HeartbeatWrite {
        received_at_ms: at,
        event: Event::new(
            &attempt.key,
            at,
            EventKind::TaskHeartbeat {
                has_data: payload.is_some(),
                data_size_bytes: size,
                interval_ms,
            },
        ),
        payload,
    }
}

/// Every attempt of `node`, in order.
pub(crate) async fn attempts_of(store: &dyn Store, node: &NodeKey) -> Vec<AttemptRecord> {
    let filter = AttemptFilter::node(node);
    store.list_attempts(&filter).await.expect("list attempts")
}

/// The checkpoint a next attempt of `node` would get, as the query port shows it: the payload of
/// the newest attempt that recorded one.
pub(crate) async fn newest_payload(store: &dyn Store, node: &NodeKey) -> Option<Value> {
    attempts_of(store, node)
        .await
        .into_iter()
        .rev()
        .find_map(|record| record.heartbeat)
}

/// The one attempt `attempt` names.
pub(crate) async fn attempt_record(store: &dyn Store, attempt: &OwnedAttempt) -> AttemptRecord {
    attempts_of(store, &attempt.key.node)
        .await
        .into_iter()
        .find(|record| record.attempt == attempt.key.attempt)
        .unwrap_or_else(|| panic!("{} is not listed", attempt.key))
}

/// The node `node` as stored; it must be.
pub(crate) async fn node_record(store: &dyn Store, node: &NodeKey) -> NodeRecord {
    store
        .get_node(node)
        .await
        .unwrap_or_else(|error| panic!("get {node}: {error}"))
        .unwrap_or_else(|| panic!("{node} is not stored"))
}

/// Every event of `run_id`.
pub(crate) async fn events_of(store: &dyn Store, run_id: &str) -> Vec<EventRecord> {
    store
        .read_events(&EventPage::new(run_id))
        .await
        .expect("read events")
}

/// The `type` tags of `events`, for compact assertions.
pub(crate) fn types(events: &[EventRecord]) -> Vec<&'static str> {
    events
        .iter()
        .map(|record| record.event.kind.type_name())
        .collect()
}

/// Asserts that `result` is a [`StoreError::Conflict`]; `what` names the write for the message.
#[track_caller]
pub(crate) fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}
