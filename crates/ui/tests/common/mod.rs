//! What the dashboard's tests share: a seeded history (a node failed by a heartbeat timeout and
//! retried, a run still in progress, a run that failed with HTML in its error, queued tasks),
//! and requests sent through the router.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of it"
)]

pub mod checks;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use stint_domain::{Event, EventKind, NodeKey, TaskError};
use stint_ports::{
    AttemptEnd, BeginAttempt, Claim, Completion, EndAttempt, HeartbeatWrite, HistoryStore, NewTask,
    OwnedAttempt, QueueHistory, QueueStore, Store, TaskEnd,
};
use stint_ui::UiState;
use tower::ServiceExt;

/// A payload that would run a script if a page put it in its HTML as markup.
pub const SCRIPT_PAYLOAD: &str = "<script>document.title='pwned'</script>";
/// An error message holding markup.
pub const HTML_ERROR: &str = "<img src=x onerror=alert(1)> went wrong";

/// Every port the dashboard uses, as every real adapter serves them.
pub trait AnyStore: Store + QueueStore {}
impl<T: Store + QueueStore + ?Sized> AnyStore for T {}

/// The dashboard's state on `store`.
pub fn state_of(store: Arc<dyn AnyStore>) -> UiState {
    let history: Arc<dyn HistoryStore> = store.clone();
    let queue: Arc<dyn QueueHistory> = store;
    UiState::new(history, queue)
}

fn key(run: &str, node: &str) -> NodeKey {
    NodeKey::new(run, node, 0).expect("valid key")
}

/// Begins attempt of `run`/`node` at `at`; the handle to write with.
pub async fn begin(store: &dyn AnyStore, run: &str, node: &str, at: u64) -> OwnedAttempt {
    let node = key(run, node);
    let owner = format!("owner-{at}");
    let begun = store
        .begin_attempt(BeginAttempt {
            node: node.clone(),
            owner: owner.clone(),
            started_at_ms: at,
            lease_ms: 3_600_000,
            metadata: json!({"team": "data", "note": "<b>not bold</b>"}),
            working_dir: Some("/srv/etl".to_owned()),
            label: None,
            output_table: None,
        })
        .await
        .expect("begin");
    OwnedAttempt {
        key: node.attempt(begun.attempt),
        owner,
    }
}

async fn beat(store: &dyn AnyStore, attempt: &OwnedAttempt, at: u64, payload: Value) {
    let size = payload.to_string().len() as u64;
    let event = Event::new(
        &attempt.key,
        at,
        EventKind::TaskHeartbeat {
            has_data: true,
            data_size_bytes: size,
            interval_ms: None,
        },
    );
    let write = HeartbeatWrite {
        received_at_ms: at,
        payload: Some(payload),
        event,
    };
    store.record_heartbeat(attempt, write).await.expect("beat");
}

async fn end(
    store: &dyn AnyStore,
    attempt: &OwnedAttempt,
    end: AttemptEnd,
    at: u64,
    events: Vec<Event>,
) {
    let write = EndAttempt {
        end,
        finished_at_ms: at,
        events,
        task: None,
    };
    store.end_attempt(attempt, write).await.expect("end");
}

/// Seeds the history the tests read, ending around `base + 20 s`:
/// - `nightly`: node `fetch` failed by a heartbeat timeout (two heartbeats, the last with
///   [`SCRIPT_PAYLOAD`]), then retried after a 2 s backoff and finished; node `report` in
///   progress;
/// - `older`: one finished node; `broken`: one node failed with [`HTML_ERROR`];
/// - queue `etl`: one ready task, one failed, one finished.
pub async fn seed(store: &dyn AnyStore, base: u64) {
    let first = begin(store, "older", "only", base).await;
    end(
        store,
        &first,
        AttemptEnd::Finished {
            output: json!(1),
            vcs: None,
        },
        base + 500,
        vec![],
    )
    .await;

    seed_retried_fetch(store, base).await;
    begin(store, "nightly", "report", base + 15_000).await;

    let broken = begin(store, "broken", "load", base + 5_000).await;
    let error = TaskError::task_failed(HTML_ERROR);
    let failed = Event::new(
        &broken.key,
        base + 6_000,
        EventKind::NodeFailed {
            error: error.clone(),
        },
    );
    end(
        store,
        &broken,
        AttemptEnd::Failed {
            error,
            retryable: false,
        },
        base + 6_000,
        vec![failed],
    )
    .await;

    seed_queue(store, base).await;
}

/// `nightly`/`fetch`: failed by a heartbeat timeout, then retried after a backoff and finished.
async fn seed_retried_fetch(store: &dyn AnyStore, base: u64) {
    let fetch = begin(store, "nightly", "fetch", base + 1_000).await;
    beat(store, &fetch, base + 2_000, json!({"done": 1})).await;
    beat(
        store,
        &fetch,
        base + 3_000,
        json!({"done": 2, "html": SCRIPT_PAYLOAD}),
    )
    .await;
    let timeout = TaskError::heartbeat_timeout(5_000, 5_000, Some(base + 3_000));
    let fired = Event::new(
        &fetch.key,
        base + 8_000,
        EventKind::TaskHeartbeatTimeout {
            last_heartbeat_at_ms: Some(base + 3_000),
            timeout_ms: 5_000,
        },
    );
    let failed = Event::new(
        &fetch.key,
        base + 8_000,
        EventKind::NodeFailed {
            error: timeout.clone(),
        },
    );
    let retrying = Event::new(
        &fetch.key.node.attempt(2),
        base + 8_000,
        EventKind::NodeRetrying { delay_ms: 2_000 },
    );
    let failure = AttemptEnd::Failed {
        error: timeout,
        retryable: true,
    };
    end(
        store,
        &fetch,
        failure,
        base + 8_000,
        vec![fired, failed, retrying],
    )
    .await;
    let second = begin(store, "nightly", "fetch", base + 10_000).await;
    beat(store, &second, base + 11_000, json!({"done": 3})).await;
    let output = AttemptEnd::Finished {
        output: json!({"rows": 42, "html": SCRIPT_PAYLOAD}),
        vcs: Some("abc123+dirty".to_owned()),
    };
    end(
        store,
        &second,
        output,
        base + 14_000,
        vec![Event::new(
            &second.key,
            base + 14_000,
            EventKind::NodeFinished,
        )],
    )
    .await;
}

async fn seed_queue(store: &dyn AnyStore, base: u64) {
    let task = |node: &str| {
        let mut task = NewTask::new("nightly", node, base, json!({"command": ["true"]}));
        task.queue = "etl".to_owned();
        task
    };
    store
        .enqueue(vec![task("q-fail"), task("q-done"), task("q-ready")], base)
        .await
        .expect("enqueue");
    let claimed = store
        .claim(Claim {
            queues: vec!["etl".to_owned()],
            owner: "worker-1".to_owned(),
            max: 2,
            now_ms: base + 100,
            lease_ms: 3_600_000,
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "two tasks claimed");
    let failed = TaskEnd::Failed {
        error: json!({"code": "TASK_FAILED", "message": HTML_ERROR}),
    };
    for (claimed, end) in claimed.iter().zip([failed, TaskEnd::Finished]) {
        let completion = Completion::new(claimed.task.id, "worker-1", end, base + 200);
        store.complete(completion).await.expect("complete");
    }
}

/// An answer: its status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends `request` through the dashboard's router.
pub async fn send(state: &UiState, request: Request<Body>) -> Answer {
    let response = stint_ui::router(state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `GET path`.
pub async fn get(state: &UiState, path: &str) -> Answer {
    send(
        state,
        Request::get(path).body(Body::empty()).expect("request"),
    )
    .await
}
