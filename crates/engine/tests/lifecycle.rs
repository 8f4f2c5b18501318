//! One attempt and the node loop on the in-memory store, under tokio's paused clock.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{EPOCH_MS, attempts, desc, event_types, events, names, setup};
use serde_json::{Value, json};
use stint_domain::{AttemptState, ErrorCode, EventKind};
use stint_engine::{CancellationToken, EngineError, TaskContext, TaskFailure};

async fn ok_output(_ctx: TaskContext) -> Result<Value, TaskFailure> {
    Ok(json!({"answer": 42}))
}

#[tokio::test(start_paused = true)]
async fn success_records_output_and_events() {
    let (store, engine) = setup();
    let cancel = CancellationToken::new();
    let outcome = engine
        .run_attempt(&desc(), ok_output, &cancel)
        .await
        .expect("run");
    assert_eq!(outcome.state, AttemptState::Finished);
    assert_eq!(outcome.output, Some(json!({"answer": 42})));
    assert_eq!(outcome.key.attempt, 1);
    assert_eq!(outcome.started_at_ms, EPOCH_MS);
    assert!(outcome.error.is_none() && outcome.retry.is_none());
    assert_eq!(
        names(&event_types(&store).await),
        ["NodeStarted", "NodeFinished"]
    );
    let node = desc().key;
    use stint_ports::AttemptStore;
    assert_eq!(
        store.read_output(&node).await.expect("read"),
        Some(json!({"answer": 42}))
    );
    assert_eq!(attempts(&store).await[0].state, AttemptState::Finished);
}

#[tokio::test(start_paused = true)]
async fn failure_then_success_with_retries() {
    let (store, engine) = setup();
    let mut d = desc();
    d.retry.retries = 3;
    let calls = Arc::new(AtomicU32::new(0));
    let compute = |_ctx: TaskContext| {
        let calls = calls.clone();
        async move {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(TaskFailure::retryable("flaky"))
            } else {
                Ok(json!({"ok": true}))
            }
        }
    };
    let start = tokio::time::Instant::now();
    let outcome = engine
        .run_node(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(outcome.state, AttemptState::Finished);
    assert_eq!(outcome.attempts.len(), 3);
    assert_eq!(
        outcome.attempts[0]
            .retry
            .map(|p| (p.next_attempt, p.delay_ms)),
        Some((2, 1_000))
    );
    assert_eq!(
        outcome.attempts[1]
            .retry
            .map(|p| (p.next_attempt, p.delay_ms)),
        Some((3, 2_000))
    );
    // The backoff was slept on tokio's clock: 1 s then 2 s.
    assert_eq!(start.elapsed(), Duration::from_millis(3_000));
    let types = event_types(&store).await;
    assert_eq!(
        types
            .iter()
            .map(|(t, a)| (t.as_str(), *a))
            .collect::<Vec<_>>(),
        [
            ("NodeStarted", 1),
            ("NodeFailed", 1),
            ("NodeRetrying", 2),
            ("NodeStarted", 2),
            ("NodeFailed", 2),
            ("NodeRetrying", 3),
            ("NodeStarted", 3),
            ("NodeFinished", 3),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn retries_run_out() {
    let (store, engine) = setup();
    let mut d = desc();
    d.retry.retries = 1;
    let compute = |_ctx: TaskContext| async { Err::<Value, _>(TaskFailure::retryable("always")) };
    let outcome = engine
        .run_node(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(outcome.state, AttemptState::Failed);
    assert_eq!(outcome.attempts.len(), 2);
    assert_eq!(
        outcome.error.as_ref().map(|e| e.code),
        Some(ErrorCode::TaskFailed)
    );
    assert_eq!(
        outcome.error.as_ref().map(|e| e.message.as_str()),
        Some("always")
    );
    let retrying = names(&event_types(&store).await)
        .iter()
        .filter(|n| **n == "NodeRetrying")
        .count();
    assert_eq!(retrying, 1);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_failure_is_not_retried() {
    let (store, engine) = setup();
    let mut d = desc();
    d.retry.retries = 5;
    let compute =
        |_ctx: TaskContext| async { Err::<Value, _>(TaskFailure::permanent("bad input")) };
    let outcome = engine
        .run_node(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(outcome.state, AttemptState::Failed);
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(
        names(&event_types(&store).await),
        ["NodeStarted", "NodeFailed"]
    );
    assert_eq!(attempts(&store).await[0].retryable, Some(false));
}

#[tokio::test(start_paused = true)]
async fn cancel_before_start_never_runs_the_compute() {
    let (store, engine) = setup();
    let mut d = desc();
    d.retry.retries = 3;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let ran = Arc::new(AtomicU32::new(0));
    let compute = |_ctx: TaskContext| {
        ran.fetch_add(1, Ordering::SeqCst);
        async { Ok(json!({})) }
    };
    let outcome = engine.run_node(&d, compute, &cancel).await.expect("run");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(outcome.state, AttemptState::Cancelled);
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(
        outcome.error.as_ref().map(|e| e.code),
        Some(ErrorCode::TaskAborted)
    );
    assert_eq!(
        names(&event_types(&store).await),
        ["NodeStarted", "NodeCancelled"]
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_during_compute_cancels_its_token_and_never_retries() {
    let (store, engine) = setup();
    let mut d = desc();
    d.retry.retries = 3;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        trigger.cancel();
    });
    let saw_cancel = Arc::new(AtomicU32::new(0));
    let compute = |ctx: TaskContext| {
        let saw_cancel = saw_cancel.clone();
        async move {
            ctx.cancel.cancelled().await;
            saw_cancel.fetch_add(1, Ordering::SeqCst);
            Err(TaskFailure::retryable("interrupted"))
        }
    };
    let outcome = engine.run_node(&d, compute, &cancel).await.expect("run");
    assert_eq!(
        saw_cancel.load(Ordering::SeqCst),
        1,
        "the compute saw its token cancelled"
    );
    assert_eq!(outcome.state, AttemptState::Cancelled);
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(outcome.attempts[0].finished_at_ms, EPOCH_MS + 250);
    assert_eq!(
        names(&event_types(&store).await),
        ["NodeStarted", "NodeCancelled"]
    );
    let cancelled = &events(&store).await[1].event.kind;
    assert_eq!(
        cancelled,
        &EventKind::NodeCancelled {
            reason: "aborted".to_owned()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_during_backoff_starts_no_new_attempt() {
    let (store, engine) = setup();
    let mut d = desc();
    d.retry.retries = 3;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let compute = move |_ctx: TaskContext| {
        let trigger = trigger.clone();
        async move {
            trigger.cancel();
            Err::<Value, _>(TaskFailure::retryable("fails, then the user gives up"))
        }
    };
    let outcome = engine.run_node(&d, compute, &cancel).await.expect("run");
    assert_eq!(outcome.state, AttemptState::Cancelled);
    assert_eq!(
        outcome.error.as_ref().map(|e| e.code),
        Some(ErrorCode::TaskAborted)
    );
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(outcome.attempts[0].state, AttemptState::Failed);
    assert_eq!(attempts(&store).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_fails_with_task_timeout_after_the_grace_period() {
    let (store, engine) = setup();
    let mut d = desc();
    d.timeout_ms = Some(1_000);
    let compute = |_ctx: TaskContext| async {
        // Ignores its token: the engine drops it after the grace period.
        std::future::pending::<Result<Value, TaskFailure>>().await
    };
    let outcome = engine
        .run_attempt(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(outcome.state, AttemptState::Failed);
    let error = outcome.error.expect("error");
    assert_eq!(error.code, ErrorCode::TaskTimeout);
    assert_eq!(error.message, "Compute callback timed out after 1000 ms");
    // Decided at 1,000 ms; the end is written after the 100 ms grace.
    assert_eq!(outcome.finished_at_ms, EPOCH_MS + 1_100);
    let failed = events(&store)
        .await
        .into_iter()
        .find(|e| e.event.kind.type_name() == "NodeFailed");
    assert_eq!(failed.map(|e| e.event.timestamp_ms), Some(EPOCH_MS + 1_000));
}

#[tokio::test(start_paused = true)]
async fn heartbeat_timeout_without_any_heartbeat() {
    let (store, engine) = setup();
    let mut d = desc();
    d.heartbeat_timeout_ms = Some(300);
    let compute = |ctx: TaskContext| async move {
        ctx.cancel.cancelled().await;
        Ok(json!({"late": true}))
    };
    let outcome = engine
        .run_attempt(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(
        outcome.state,
        AttemptState::Failed,
        "a late output does not win"
    );
    let error = outcome.error.expect("error");
    assert_eq!(error.code, ErrorCode::TaskHeartbeatTimeout);
    assert_eq!(
        error.details,
        json!({"stale_for_ms": 301, "timeout_ms": 300, "last_heartbeat_at_ms": null})
    );
    let evs = events(&store).await;
    assert_eq!(
        evs[1].event.kind,
        EventKind::TaskHeartbeatTimeout {
            last_heartbeat_at_ms: None,
            timeout_ms: 300
        }
    );
    assert_eq!(evs[1].event.timestamp_ms, EPOCH_MS + 301);
    assert_eq!(
        names(&event_types(&store).await),
        ["NodeStarted", "TaskHeartbeatTimeout", "NodeFailed"]
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeat_timeout_counts_from_the_last_heartbeat() {
    let (store, engine) = setup();
    let mut d = desc();
    d.heartbeat_timeout_ms = Some(300);
    d.retry.retries = 1;
    let compute = |ctx: TaskContext| async move {
        for step in 0..5 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ctx.heartbeat
                .beat(json!({ "step": step }))
                .expect("valid payload");
        }
        // Silent from 1,000 ms on: stale at 1,301 ms.
        std::future::pending::<Result<Value, TaskFailure>>().await
    };
    let outcome = engine
        .run_attempt(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    let error = outcome.error.expect("error");
    assert_eq!(error.code, ErrorCode::TaskHeartbeatTimeout);
    assert_eq!(
        error.details,
        json!({"stale_for_ms": 301, "timeout_ms": 300, "last_heartbeat_at_ms": EPOCH_MS + 1_000})
    );
    assert_eq!(
        outcome.retry.map(|p| p.next_attempt),
        Some(2),
        "heartbeat timeouts are retryable"
    );
    let types = names(&event_types(&store).await).join(",");
    assert!(
        types.ends_with("TaskHeartbeat,TaskHeartbeatTimeout,NodeFailed,NodeRetrying"),
        "{types}"
    );
    assert_eq!(
        attempts(&store).await[0].heartbeat,
        Some(json!({"step": 4}))
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_output_is_not_retried_and_lists_pointers() {
    let (store, engine) = setup();
    let mut d = desc();
    d.retry.retries = 3;
    d.output_schema = Some(json!({
        "type": "object",
        "properties": {"count": {"type": "integer"}, "name": {"type": "string"}},
        "required": ["count"]
    }));
    let compute = |_ctx: TaskContext| async { Ok(json!({"count": "three", "name": 7})) };
    let outcome = engine
        .run_node(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(outcome.state, AttemptState::Failed);
    assert_eq!(outcome.attempts.len(), 1);
    let error = outcome.error.expect("error");
    assert_eq!(error.code, ErrorCode::InvalidOutput);
    let mut pointers: Vec<&str> = error.details["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    pointers.sort_unstable();
    assert_eq!(pointers, ["/count", "/name"]);
    assert_eq!(
        names(&event_types(&store).await),
        ["NodeStarted", "NodeFailed"]
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_schema_is_refused_before_any_attempt() {
    let (store, engine) = setup();
    let mut d = desc();
    d.output_schema = Some(json!({"type": 5}));
    let result = engine
        .run_node(
            &d,
            |_ctx: TaskContext| async { Ok(json!({})) },
            &CancellationToken::new(),
        )
        .await;
    assert!(matches!(result, Err(EngineError::InvalidSchema(_))));
    assert!(attempts(&store).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn key_columns_are_stripped_before_validation() {
    let (store, engine) = setup();
    let mut d = desc();
    d.output_schema =
        Some(json!({"type": "object", "additionalProperties": false, "properties": {"v": {}}}));
    let compute = |_ctx: TaskContext| async {
        Ok(json!({"run_id": "r", "node_id": "n", "iteration": 0, "v": 1}))
    };
    let outcome = engine
        .run_attempt(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(outcome.state, AttemptState::Finished);
    assert_eq!(outcome.output, Some(json!({"v": 1})));
    use stint_ports::AttemptStore;
    assert_eq!(
        store.read_output(&d.key).await.expect("read"),
        Some(json!({"v": 1}))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_overrides_the_backoff() {
    let (_store, engine) = setup();
    let mut d = desc();
    d.retry.retries = 1;
    let compute = |_ctx: TaskContext| async {
        Err::<Value, _>(
            TaskFailure::retryable("rate limited").retry_after(Duration::from_millis(42)),
        )
    };
    let outcome = engine
        .run_node(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(outcome.attempts[0].retry.map(|p| p.delay_ms), Some(42));
}
