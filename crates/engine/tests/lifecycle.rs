//! One attempt and the node loop. Each scenario runs on the in-memory store under tokio's
//! paused clock (exact times asserted) and on a SQLite file under the real clock (order and
//! lower bounds asserted); see [`scenarios!`].

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{
    EPOCH_MS, FAKE_REVISION, Harness, assert_event_names, attempt_outcome, attempts, by_attempt,
    code, desc, desc_with_retries, event_types, events, names, node_outcome,
};
use serde_json::{Value, json};
use stint_domain::{AttemptState, ErrorCode, EventKind, TaskDescriptor};
use stint_engine::{CancellationToken, EngineError, TaskContext, TaskFailure};
use stint_ports::{AttemptStore, HistoryStore};

scenarios! {
    both: [
        success_records_output_and_events,
        failure_then_success_with_retries,
        retries_run_out,
        non_retryable_failure_is_not_retried,
        cancel_before_start_never_runs_the_compute,
        cancel_during_compute_cancels_its_token_and_never_retries,
        cancel_during_backoff_starts_no_new_attempt,
        timeout_fails_with_task_timeout_after_the_grace_period,
        heartbeat_timeout_without_any_heartbeat,
        heartbeat_timeout_counts_from_the_last_heartbeat,
        invalid_output_is_not_retried_and_lists_pointers,
        invalid_schema_is_refused_before_any_attempt,
        key_columns_are_stripped_before_validation,
        retry_after_overrides_the_backoff,
        a_zombie_finish_after_recovery_is_a_conflict,
        an_attempt_begun_elsewhere_runs_under_its_begins_owner,
    ],
    memory_only: [],
}

/// A descriptor whose backoff starts at 10 ms (then 20, 40, ...), so retries stay short on the
/// real clock.
fn quick_retries(retries: u32) -> TaskDescriptor {
    let mut d = desc_with_retries(retries);
    d.retry.backoff.initial_ms = 10;
    d
}

async fn ok_output(_ctx: TaskContext) -> Result<Value, TaskFailure> {
    Ok(json!({"answer": 42}))
}

async fn success_records_output_and_events(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let cancel = CancellationToken::new();
    let outcome = engine
        .run_attempt(&desc(), ok_output, &cancel)
        .await
        .expect("run");
    assert_eq!(outcome.state, AttemptState::Finished);
    assert_eq!(outcome.output, Some(json!({"answer": 42})));
    assert_eq!(outcome.key.attempt, 1);
    if h.paused {
        assert_eq!(outcome.started_at_ms, EPOCH_MS);
    }
    assert!(outcome.started_at_ms >= EPOCH_MS && outcome.finished_at_ms >= outcome.started_at_ms);
    assert!(outcome.error.is_none() && outcome.retry.is_none());
    assert_event_names(store, &["NodeStarted", "NodeFinished"]).await;
    let node = desc().key;
    assert_eq!(
        store.read_output(&node).await.expect("read"),
        Some(json!({"answer": 42}))
    );
    let record = &attempts(store).await[0];
    assert_eq!(record.state, AttemptState::Finished);
    assert_eq!(record.vcs.as_deref(), Some(FAKE_REVISION));
    assert_eq!(record.finished_at_ms, Some(outcome.finished_at_ms));
}

async fn failure_then_success_with_retries(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let d = quick_retries(3);
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
    let outcome = node_outcome(engine, &d, compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
    assert_eq!(outcome.attempts.len(), 3);
    assert_eq!(
        outcome.attempts[0]
            .retry
            .map(|p| (p.next_attempt, p.delay_ms)),
        Some((2, 10))
    );
    assert_eq!(
        outcome.attempts[1]
            .retry
            .map(|p| (p.next_attempt, p.delay_ms)),
        Some((3, 20))
    );
    // The backoff was slept on tokio's clock: 10 ms then 20 ms.
    if h.paused {
        assert_eq!(start.elapsed(), Duration::from_millis(30));
    }
    assert!(start.elapsed() >= Duration::from_millis(30));
    let stored = by_attempt(store, |a| a.state).await;
    assert_eq!(
        stored,
        [
            (1, AttemptState::Failed),
            (2, AttemptState::Failed),
            (3, AttemptState::Finished)
        ]
    );
    let types = event_types(store).await;
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

async fn retries_run_out(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let d = quick_retries(1);
    let compute = |_ctx: TaskContext| async { Err::<Value, _>(TaskFailure::retryable("always")) };
    let outcome = node_outcome(engine, &d, compute).await;
    assert_eq!(outcome.state, AttemptState::Failed);
    assert_eq!(outcome.attempts.len(), 2);
    assert_eq!(code(&outcome.error), Some(ErrorCode::TaskFailed));
    assert_eq!(
        outcome.error.as_ref().map(|e| e.message.as_str()),
        Some("always")
    );
    let retrying = names(&event_types(store).await)
        .iter()
        .filter(|n| **n == "NodeRetrying")
        .count();
    assert_eq!(retrying, 1);
}

async fn non_retryable_failure_is_not_retried(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let d = desc_with_retries(5);
    let compute =
        |_ctx: TaskContext| async { Err::<Value, _>(TaskFailure::permanent("bad input")) };
    let outcome = node_outcome(engine, &d, compute).await;
    assert_eq!(outcome.state, AttemptState::Failed);
    assert_eq!(outcome.attempts.len(), 1);
    assert_event_names(store, &["NodeStarted", "NodeFailed"]).await;
    assert_eq!(attempts(store).await[0].retryable, Some(false));
}

async fn cancel_before_start_never_runs_the_compute(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let d = desc_with_retries(3);
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
    assert_eq!(code(&outcome.error), Some(ErrorCode::TaskAborted));
    assert_event_names(store, &["NodeStarted", "NodeCancelled"]).await;
}

async fn cancel_during_compute_cancels_its_token_and_never_retries(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let d = desc_with_retries(3);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<u64>();
    // Cancels 100 ms after the compute started (so never before it, however slow the store).
    tokio::spawn(async move {
        if started_rx.await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        }
    });
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let saw_cancel = Arc::new(AtomicU32::new(0));
    let compute = |ctx: TaskContext| {
        let saw_cancel = saw_cancel.clone();
        let started = started_tx.lock().expect("lock").take();
        async move {
            if let Some(started) = started {
                let _ = started.send(u64::from(ctx.key.attempt));
            }
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
    if h.paused {
        assert_eq!(outcome.attempts[0].finished_at_ms, EPOCH_MS + 100);
    }
    assert!(outcome.attempts[0].finished_at_ms >= outcome.attempts[0].started_at_ms + 100);
    let record = &attempts(store).await[0];
    assert_eq!(record.state, AttemptState::Cancelled);
    assert_eq!(record.retryable, None, "a cancellation is never retried");
    assert_event_names(store, &["NodeStarted", "NodeCancelled"]).await;
    let cancelled = &events(store).await[1].event.kind;
    assert_eq!(
        cancelled,
        &EventKind::NodeCancelled {
            reason: "aborted".to_owned()
        }
    );
}

async fn cancel_during_backoff_starts_no_new_attempt(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let d = desc_with_retries(3);
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
    assert_eq!(code(&outcome.error), Some(ErrorCode::TaskAborted));
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(outcome.attempts[0].state, AttemptState::Failed);
    assert_eq!(attempts(store).await.len(), 1);
}

async fn timeout_fails_with_task_timeout_after_the_grace_period(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let mut d = desc();
    d.timeout_ms = Some(200);
    let compute = |_ctx: TaskContext| async {
        // Ignores its token: the engine drops it after the grace period.
        std::future::pending::<Result<Value, TaskFailure>>().await
    };
    let outcome = attempt_outcome(engine, &d, compute).await;
    assert_eq!(outcome.state, AttemptState::Failed);
    let error = outcome.error.expect("error");
    assert_eq!(error.code, ErrorCode::TaskTimeout);
    assert_eq!(error.message, "timed out after 200 ms");
    let failed_at_ms = events(store)
        .await
        .into_iter()
        .find(|e| e.event.kind.type_name() == "NodeFailed")
        .map(|e| e.event.timestamp_ms)
        .expect("NodeFailed");
    // Decided at 200 ms; the end is written after the 100 ms grace.
    if h.paused {
        assert_eq!(outcome.finished_at_ms, EPOCH_MS + 300);
        assert_eq!(failed_at_ms, EPOCH_MS + 200);
    }
    assert!(failed_at_ms >= outcome.started_at_ms + 200);
    assert!(outcome.finished_at_ms >= failed_at_ms + 100);
    let record = &attempts(store).await[0];
    assert_eq!(record.state, AttemptState::Failed);
    assert_eq!(code(&record.error), Some(ErrorCode::TaskTimeout));
}

async fn heartbeat_timeout_without_any_heartbeat(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let mut d = desc();
    d.heartbeat_timeout_ms = Some(200);
    let compute = |ctx: TaskContext| async move {
        ctx.cancel.cancelled().await;
        Ok(json!({"late": true}))
    };
    let outcome = attempt_outcome(engine, &d, compute).await;
    assert_eq!(
        outcome.state,
        AttemptState::Failed,
        "a late output does not win"
    );
    let error = outcome.error.expect("error");
    assert_eq!(error.code, ErrorCode::TaskHeartbeatTimeout);
    if h.paused {
        assert_eq!(
            error.details,
            json!({"stale_for_ms": 201, "timeout_ms": 200, "last_heartbeat_at_ms": null})
        );
    }
    assert_eq!(error.details["timeout_ms"], json!(200));
    assert_eq!(error.details["last_heartbeat_at_ms"], Value::Null);
    let stale_for_ms = error.details["stale_for_ms"]
        .as_u64()
        .expect("stale_for_ms");
    assert!(stale_for_ms > 200, "{stale_for_ms}");
    let evs = events(store).await;
    assert_eq!(
        evs[1].event.kind,
        EventKind::TaskHeartbeatTimeout {
            last_heartbeat_at_ms: None,
            timeout_ms: 200
        }
    );
    if h.paused {
        assert_eq!(evs[1].event.timestamp_ms, EPOCH_MS + 201);
    }
    assert!(evs[1].event.timestamp_ms > outcome.started_at_ms + 200);
    let record = &attempts(store).await[0];
    assert_eq!(record.state, AttemptState::Failed);
    assert_eq!(record.retryable, Some(true));
    assert_event_names(
        store,
        &["NodeStarted", "TaskHeartbeatTimeout", "NodeFailed"],
    )
    .await;
}

async fn heartbeat_timeout_counts_from_the_last_heartbeat(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let mut d = desc();
    d.heartbeat_timeout_ms = Some(200);
    d.retry.retries = 1;
    let compute = |ctx: TaskContext| async move {
        for step in 0..5 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            ctx.heartbeat
                .beat(json!({ "step": step }))
                .expect("valid payload");
        }
        // Silent from 200 ms on: stale at 401 ms.
        std::future::pending::<Result<Value, TaskFailure>>().await
    };
    let outcome = attempt_outcome(engine, &d, compute).await;
    let error = outcome.error.expect("error");
    assert_eq!(error.code, ErrorCode::TaskHeartbeatTimeout);
    if h.paused {
        assert_eq!(
            error.details,
            json!({"stale_for_ms": 201, "timeout_ms": 200, "last_heartbeat_at_ms": EPOCH_MS + 200})
        );
    }
    let last_heartbeat_at_ms = error.details["last_heartbeat_at_ms"]
        .as_u64()
        .expect("a heartbeat was received");
    assert!(last_heartbeat_at_ms >= outcome.started_at_ms + 200);
    assert!(
        error.details["stale_for_ms"]
            .as_u64()
            .expect("stale_for_ms")
            > 200
    );
    assert_eq!(error.details["timeout_ms"], json!(200));
    assert_eq!(
        outcome.retry.map(|p| p.next_attempt),
        Some(2),
        "heartbeat timeouts are retryable"
    );
    let types = names(&event_types(store).await).join(",");
    assert!(
        types.ends_with("TaskHeartbeat,TaskHeartbeatTimeout,NodeFailed,NodeRetrying"),
        "{types}"
    );
    let record = &attempts(store).await[0];
    assert_eq!(record.heartbeat, Some(json!({"step": 4})));
    assert_eq!(record.last_heartbeat_at_ms, Some(last_heartbeat_at_ms));
    assert_eq!(code(&record.error), Some(ErrorCode::TaskHeartbeatTimeout));
}

async fn invalid_output_is_not_retried_and_lists_pointers(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let mut d = desc_with_retries(3);
    d.output_schema = Some(json!({
        "type": "object",
        "properties": {"count": {"type": "integer"}, "name": {"type": "string"}},
        "required": ["count"]
    }));
    let compute = |_ctx: TaskContext| async { Ok(json!({"count": "three", "name": 7})) };
    let outcome = node_outcome(engine, &d, compute).await;
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
    assert_event_names(store, &["NodeStarted", "NodeFailed"]).await;
    let record = &attempts(store).await[0];
    assert_eq!(code(&record.error), Some(ErrorCode::InvalidOutput));
    assert_eq!(record.retryable, Some(false));
    assert_eq!(store.read_output(&d.key).await.expect("read"), None);
}

async fn invalid_schema_is_refused_before_any_attempt(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
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
    assert!(attempts(store).await.is_empty());
}

async fn key_columns_are_stripped_before_validation(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let mut d = desc();
    d.output_schema =
        Some(json!({"type": "object", "additionalProperties": false, "properties": {"v": {}}}));
    let compute = |_ctx: TaskContext| async {
        Ok(json!({"run_id": "r", "node_id": "n", "iteration": 0, "v": 1}))
    };
    let outcome = attempt_outcome(engine, &d, compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
    assert_eq!(outcome.output, Some(json!({"v": 1})));
    assert_eq!(
        store.read_output(&d.key).await.expect("read"),
        Some(json!({"v": 1}))
    );
}

async fn retry_after_overrides_the_backoff(h: Harness) {
    let engine = &h.engine;
    let d = desc_with_retries(1);
    let compute = |_ctx: TaskContext| async {
        Err::<Value, _>(
            TaskFailure::retryable("rate limited").retry_after(Duration::from_millis(42)),
        )
    };
    let outcome = node_outcome(engine, &d, compute).await;
    assert_eq!(outcome.attempts[0].retry.map(|p| p.delay_ms), Some(42));
}

async fn a_zombie_finish_after_recovery_is_a_conflict(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let d = desc();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    // The compute outlives its lease as far as the recoverer can tell (another process judging
    // by a clock past the lease), then finishes as if nothing happened.
    let compute = move |_ctx: TaskContext| async move {
        let _ = started_tx.send(());
        let _ = go_rx.await;
        Ok(json!({"zombie": true}))
    };
    let recoverer = async {
        started_rx.await.expect("the compute started");
        let past_the_lease = EPOCH_MS + d.lease_ms + 60_000;
        let recovered = store
            .recover_abandoned(past_the_lease)
            .await
            .expect("recover");
        let _ = go_tx.send(());
        recovered
    };
    let cancel = CancellationToken::new();
    let (result, recovered) = tokio::join!(engine.run_attempt(&d, compute, &cancel), recoverer);
    assert_eq!(recovered, [d.key.attempt(1)]);
    let error = result.expect_err("the zombie's finish is refused");
    assert_eq!(error.code(), ErrorCode::StoreConflict, "{error}");
    let records = attempts(store).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, AttemptState::Failed);
    assert_eq!(code(&records[0].error), Some(ErrorCode::AttemptAbandoned));
    assert_eq!(records[0].vcs, None);
    assert_eq!(store.read_output(&d.key).await.expect("read"), None);
    assert_eq!(
        names(&event_types(store).await),
        ["NodeStarted", "NodeFailed"],
        "the recovery's NodeFailed and nothing from the zombie"
    );
}

/// An attempt whose begin the caller had a store write (as a worker's claim does) runs from
/// there: the engine begins no other, and its writes carry the begin's owner token.
async fn an_attempt_begun_elsewhere_runs_under_its_begins_owner(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let (prepared, begin) = engine.prepare_attempt(desc()).expect("a valid descriptor");
    assert_eq!(prepared.descriptor().key, desc().key);
    let owner = begin.owner.clone();
    let begun = store.begin_attempt(begin).await.expect("begun");
    let cancel = CancellationToken::new();
    let outcome = engine
        .run_begun_task_attempt(prepared, begun, ok_output, &cancel, Box::new(|_| None))
        .await
        .expect("run");
    assert_eq!(
        (outcome.state, outcome.key.attempt),
        (AttemptState::Finished, 1)
    );
    let records = attempts(store).await;
    assert_eq!(records.len(), 1, "no other attempt began");
    assert_eq!(records[0].state, AttemptState::Finished);
    assert_eq!(records[0].owner, owner);
    assert_event_names(store, &["NodeStarted", "NodeFinished"]).await;

    let mut bad = desc();
    bad.lease_ms = 0;
    let refused = engine.prepare_attempt(bad).map(|_| ());
    assert!(
        matches!(refused, Err(EngineError::InvalidDescriptor(_))),
        "{refused:?}"
    );
}
