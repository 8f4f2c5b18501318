//! Never twice, never lost: the lease is kept to the terminal write, an attempt whose lease
//! cannot be renewed fences itself, a terminal write that fails is retried, a heartbeat whose
//! write failed is still written. In-memory store behind the instrumented store (which injects
//! the faults), on tokio's paused clock, so every time below is exact.

mod common;

use std::time::Duration;

use common::{
    EPOCH_MS, attempt_error, attempt_outcome, attempts, desc, desc_with_lease, desc_with_retries,
    events, node_outcome, setup, works_for,
};
use serde_json::json;
use stint_domain::{AttemptState, ErrorCode, EventKind, TaskError};
use stint_engine::{CancellationToken, EngineError, TaskContext, TaskFailure};
use stint_ports::{AttemptStore, StoreError, WriteOp};

/// A compute that ignores its cancellation token and runs until dropped, as a command that
/// ignores SIGTERM does.
async fn stubborn(_ctx: TaskContext) -> Result<serde_json::Value, TaskFailure> {
    std::future::pending().await
}

fn locked() -> StoreError {
    StoreError::unavailable("database is locked")
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_renewed_through_the_grace_period_until_the_terminal_write() {
    let store = common::memory_store();
    let engine = common::engine_with_grace(store.clone(), Duration::from_secs(6));
    let mut d = desc_with_lease(3_000);
    d.timeout_ms = Some(1_000);
    let attempt = tokio::spawn(async move {
        engine
            .run_attempt(&d, stubborn, &CancellationToken::new())
            .await
    });
    // 5 s in: the timeout fired at 1 s and the compute still runs in its 6 s grace. A lease
    // that stopped at the decision would have run out at about 4 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let recovered = store
        .recover_abandoned(EPOCH_MS + 5_000)
        .await
        .expect("recover");
    assert_eq!(recovered, Vec::new(), "a live attempt is never recoverable");
    let outcome = attempt.await.expect("join").expect("run");
    assert_eq!(
        outcome.error.map(|error| error.code),
        Some(ErrorCode::TaskTimeout)
    );
    assert!(
        store.calls(WriteOp::RenewLease) >= 6,
        "renewed every second"
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_cannot_renew_its_lease_fences_itself_before_it_expires() {
    let (store, engine) = setup();
    store.fail_always(
        WriteOp::RenewLease,
        StoreError::unavailable("no route to host"),
    );
    let d = desc_with_lease(3_000);
    let started = tokio::time::Instant::now();
    let error = attempt_error(&engine, &d, stubborn, "fenced").await;
    let fenced_after = started.elapsed();
    assert!(
        matches!(
            error,
            EngineError::Fenced {
                unrenewed_ms: 2_000,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.code(), ErrorCode::StoreUnavailable);
    assert_eq!(
        fenced_after,
        Duration::from_millis(2_000),
        "two thirds of the lease"
    );
    // The first renewal (at 750 ms) failed and was retried promptly, every 150 ms, not a full
    // period later: at 750, 900, ... 1,950 ms.
    assert_eq!(store.calls(WriteOp::RenewLease), 9);
    // Nothing terminal was written: recovery decides, once the lease has run out.
    assert_eq!(store.calls(WriteOp::End), 0);
    assert_eq!(attempts(&store).await[0].state, AttemptState::InProgress);
    let recovered = store
        .recover_abandoned(EPOCH_MS + 3_001)
        .await
        .expect("recover");
    assert_eq!(recovered.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_succeeds_again_keeps_the_attempt_alive() {
    let (store, engine) = setup();
    for _ in 0..3 {
        store.fail_next(WriteOp::RenewLease, locked());
    }
    let d = desc_with_lease(3_000);
    let compute = |_ctx: TaskContext| works_for(Duration::from_secs(10), json!({"done": true}));
    // Three failed renewals in a row are retried, not fatal.
    let outcome = attempt_outcome(&engine, &d, compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
}

#[tokio::test(start_paused = true)]
async fn a_terminal_write_that_fails_is_retried_and_the_result_kept() {
    let (store, engine) = setup();
    for _ in 0..3 {
        store.fail_next(WriteOp::End, locked());
    }
    let compute = |_ctx: TaskContext| async { Ok(json!({"result": 42})) };
    // The result is written on the fourth try.
    let outcome = attempt_outcome(&engine, &desc(), compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
    assert_eq!(store.calls(WriteOp::End), 4);
    let stored = &attempts(&store).await[0];
    assert_eq!(stored.state, AttemptState::Finished);
    let output = stint_ports::HistoryStore::read_output(&*store, &desc().key)
        .await
        .expect("read");
    assert_eq!(output, Some(json!({"result": 42})));
}

/// A begin that never answers (a server gone without closing the connection) is given up after
/// a minute, as STORE_UNAVAILABLE, instead of holding the run forever.
#[tokio::test(start_paused = true)]
async fn a_begin_that_never_answers_is_given_up() {
    let (store, engine) = setup();
    store.set_delay(WriteOp::Begin, Duration::from_secs(3_600));
    let started = tokio::time::Instant::now();
    let compute = |_ctx: TaskContext| async { Ok(json!({"result": 42})) };
    let error = engine
        .run_attempt(&desc(), compute, &CancellationToken::new())
        .await
        .expect_err("given up");
    let EngineError::Store(error) = error else {
        panic!("expected a store error, got {error:?}");
    };
    assert_eq!(error.code(), ErrorCode::StoreUnavailable, "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn a_terminal_write_is_not_retried_past_the_lease() {
    let (store, engine) = setup();
    store.fail_always(WriteOp::End, locked());
    store.fail_always(WriteOp::RenewLease, locked());
    let d = desc_with_lease(3_000);
    let compute = |_ctx: TaskContext| async { Ok(json!({"result": 42})) };
    let error = attempt_error(&engine, &d, compute, "left to recovery").await;
    assert!(matches!(error, EngineError::Fenced { .. }), "{error:?}");
    assert!(
        store.calls(WriteOp::End) >= 2,
        "retried while the lease held"
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_whose_write_failed_is_written_by_the_final_flush() {
    let (store, engine) = setup();
    let compute = |ctx: TaskContext| {
        let store = store.clone();
        async move {
            ctx.heartbeat.beat(json!({"step": 1}))?;
            tokio::time::sleep(Duration::from_millis(600)).await;
            store.fail_next(WriteOp::Heartbeat, locked());
            ctx.heartbeat.beat(json!({"step": 2}))?;
            // The write of step 2 fails meanwhile; nothing newer supersedes it.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(json!({}))
        }
    };
    attempt_outcome(&engine, &desc(), compute).await;
    assert_eq!(
        store.calls(WriteOp::Heartbeat),
        3,
        "step 1, step 2 failed, step 2"
    );
    assert_eq!(
        attempts(&store).await[0].heartbeat,
        Some(json!({"step": 2}))
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_after_the_decision_are_ignored_and_no_event_follows_the_end() {
    let (store, engine) = setup();
    let mut d = desc();
    d.heartbeat_timeout_ms = Some(1_000);
    // Silent past the heartbeat timeout, then (ignoring cancellation) beating in the grace.
    let compute = |ctx: TaskContext| async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        loop {
            ctx.heartbeat.beat(json!({"late": true}))?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let outcome = attempt_outcome(&engine, &d, compute).await;
    let error = outcome.error.expect("failed");
    assert_eq!(error.code, ErrorCode::TaskHeartbeatTimeout);
    assert_eq!(error.details["stale_for_ms"], json!(1_001), "{error:?}");
    let recorded = events(&store).await;
    let end = recorded
        .iter()
        .find(|record| matches!(record.event.kind, EventKind::NodeFailed { .. }))
        .expect("NodeFailed");
    assert!(
        recorded.iter().all(|record| {
            !matches!(record.event.kind, EventKind::TaskHeartbeat { .. })
                || record.event.timestamp_ms <= end.event.timestamp_ms
        }),
        "{recorded:?}"
    );
    assert_eq!(
        attempts(&store).await[0].heartbeat,
        None,
        "late beats ignored"
    );
}

#[tokio::test(start_paused = true)]
async fn the_error_code_decides_whether_a_failure_is_retried() {
    let (store, engine) = setup();
    let d = desc_with_retries(3);
    let compute = |_ctx: TaskContext| async {
        // Marked retryable by the task, but invalid output stays invalid on every attempt.
        Err(TaskFailure {
            error: TaskError::invalid_output(vec![("/n".to_owned(), "not a number".to_owned())]),
            retryable: true,
            retry_after: None,
        })
    };
    let outcome = node_outcome(&engine, &d, compute).await;
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(attempts(&store).await[0].retryable, Some(false));
}

#[tokio::test(start_paused = true)]
async fn zero_timeouts_and_leases_are_refused_before_any_attempt() {
    let (store, engine) = setup();
    let zero_timeout = |d: &mut stint_domain::TaskDescriptor| d.timeout_ms = Some(0);
    let zero_heartbeat = |d: &mut stint_domain::TaskDescriptor| d.heartbeat_timeout_ms = Some(0);
    let zero_lease = |d: &mut stint_domain::TaskDescriptor| d.lease_ms = 0;
    for (change, what) in [
        (zero_timeout as fn(&mut _), "timeout"),
        (zero_heartbeat, "heartbeat timeout"),
        (zero_lease, "lease"),
    ] {
        let mut d = desc();
        change(&mut d);
        let compute = |_ctx: TaskContext| async { Ok(json!({})) };
        let error = engine
            .run_node(&d, compute, &CancellationToken::new())
            .await
            .expect_err("refused");
        assert_eq!(
            error,
            EngineError::InvalidDescriptor(format!("the {what} must be longer than zero"))
        );
    }
    assert_eq!(store.calls(WriteOp::Begin), 0);
}

#[tokio::test(start_paused = true)]
async fn an_ineligible_task_is_refused_with_its_reason_before_any_attempt() {
    let (store, engine) = setup();
    let mut d = desc();
    d.eligibility.agent = true;
    let compute = |_ctx: TaskContext| async { Ok(json!({})) };
    let error = attempt_error(&engine, &d, compute, "refused").await;
    assert_eq!(
        error,
        EngineError::Ineligible(stint_domain::Ineligible::Agent)
    );
    assert_eq!(store.calls(WriteOp::Begin), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_request_stops_the_attempt_at_its_next_renewal() {
    let (store, engine) = setup();
    // Renewed every second (a quarter of the lease).
    let d = desc_with_lease(4_000);
    let run_id = d.key.run_id().to_owned();
    let attempt = tokio::spawn(async move {
        let compute = |ctx: TaskContext| async move {
            ctx.cancel.cancelled().await;
            Err(TaskFailure::permanent("stopped on request"))
        };
        engine
            .run_attempt(&d, compute, &CancellationToken::new())
            .await
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let asked = store.request_cancel(&run_id).await.expect("request");
    assert_eq!(asked.len(), 1, "the attempt in progress is asked");
    let asked_at = tokio::time::Instant::now();
    let outcome = attempt.await.expect("join").expect("run");
    assert_eq!(outcome.state, AttemptState::Cancelled);
    assert_eq!(
        outcome.error.map(|error| error.code),
        Some(ErrorCode::TaskAborted)
    );
    assert!(
        asked_at.elapsed() <= Duration::from_secs(1),
        "stopped at the next renewal, {:?} after the request",
        asked_at.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn one_timer_serves_the_timeout_and_the_heartbeat_timeout_whichever_comes_first() {
    let (_store, engine) = setup();
    let mut d = desc();
    d.timeout_ms = Some(1_000);
    d.heartbeat_timeout_ms = Some(300);
    // Beats every 100 ms: each moves the staleness deadline past the timeout's, which still
    // fires at 1 s.
    let beating = |ctx: TaskContext| async move {
        loop {
            ctx.heartbeat.ping();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let outcome = attempt_outcome(&engine, &d, beating).await;
    assert_eq!(outcome.error.map(|e| e.code), Some(ErrorCode::TaskTimeout));
    // Beats for 200 ms, then goes silent: stale 301 ms after its last heartbeat, before the
    // timeout.
    let silent = |ctx: TaskContext| async move {
        for _ in 0..3 {
            ctx.heartbeat.ping();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::future::pending().await
    };
    let (store, engine) = setup();
    let outcome = attempt_outcome(&engine, &d, silent).await;
    let error = outcome.error.expect("an error");
    assert_eq!(error.code, ErrorCode::TaskHeartbeatTimeout);
    let evs = events(&store).await;
    let timed_out = evs
        .iter()
        .find(|e| matches!(e.event.kind, EventKind::TaskHeartbeatTimeout { .. }))
        .expect("the heartbeat timeout's event");
    assert_eq!(timed_out.event.timestamp_ms, EPOCH_MS + 200 + 301);
}
