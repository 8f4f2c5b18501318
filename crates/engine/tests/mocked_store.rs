//! Store failures, with mockall mocks: failed heartbeat writes never change the outcome, and a
//! conflict (another execution owns the attempt) stops the compute with nothing terminal written.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{attempt_error, attempt_outcome, desc, desc_with_lease, works_for};
use serde_json::json;
use stint_domain::{AttemptState, ErrorCode};
use stint_engine::{Engine, EngineError, EngineOptions, NoVcs, Ports, TaskContext, TokioClock};
use stint_ports::{
    AttemptEnd, AttemptEnded, BegunAttempt, MockAttemptStore, RenewedLease, StoreError,
};

fn engine(store: MockAttemptStore) -> Engine {
    let ports = Ports {
        store: Arc::new(store),
        vcs: Arc::new(NoVcs),
        clock: Arc::new(TokioClock::at(1_000)),
    };
    let options = EngineOptions {
        cancel_grace: Duration::from_millis(50),
        ..EngineOptions::default()
    };
    Engine::with_options(ports, options)
}

/// Asserts that `error` is the store's conflict, passed on as it is.
#[track_caller]
fn assert_store_conflict(error: &EngineError) {
    assert!(
        matches!(error, EngineError::Store(StoreError::Conflict { .. })),
        "{error:?}"
    );
}

/// A mock store that expects one `begin_attempt`, which begins attempt 1.
fn begun() -> MockAttemptStore {
    let mut store = MockAttemptStore::new();
    store.expect_begin_attempt().times(1).returning(|_| {
        Ok(BegunAttempt {
            attempt: 1,
            checkpoint: None,
            failed_before: 0,
        })
    });
    store
}

/// [`begun`], and expecting nothing terminal to be written: no `end_attempt`.
fn begun_never_ended() -> MockAttemptStore {
    let mut store = begun();
    store.expect_end_attempt().times(0);
    store
}

#[tokio::test(start_paused = true)]
async fn a_failing_heartbeat_write_does_not_change_a_success() {
    let mut store = begun();
    store
        .expect_record_heartbeat()
        .times(2..)
        .returning(|_, _| Err(StoreError::unavailable("database is locked")));
    store
        .expect_end_attempt()
        .times(1)
        .withf(|_, ending| {
            matches!(&ending.end, AttemptEnd::Finished { output, .. } if *output == json!({"done": true}))
                && ending.events.len() == 1
        })
        .returning(|_, _| Ok(AttemptEnded::default()));
    let compute = |ctx: TaskContext| async move {
        ctx.heartbeat.beat(json!({"step": 1}))?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        ctx.heartbeat.beat(json!({"step": 2}))?;
        Ok(json!({"done": true}))
    };
    let outcome = attempt_outcome(&engine(store), &desc(), compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
}

#[tokio::test(start_paused = true)]
async fn a_conflict_on_finish_is_a_store_conflict() {
    let mut store = begun();
    store.expect_end_attempt().times(1).returning(|_, _| {
        Err(StoreError::conflict(
            "attempt r/n#0 attempt 1 is not owned by this execution",
        ))
    });
    let compute = |_ctx: TaskContext| async { Ok(json!({})) };
    let error = attempt_error(&engine(store), &desc(), compute, "conflict").await;
    assert_store_conflict(&error);
    assert_eq!(error.code(), ErrorCode::StoreConflict);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_stops_the_compute_and_writes_nothing_terminal() {
    let mut store = begun_never_ended();
    store
        .expect_renew_lease()
        .times(1)
        .returning(|_, _| Err(StoreError::conflict("owned by another execution")));
    let d = desc_with_lease(3_000);
    let compute = |ctx: TaskContext| async move {
        ctx.cancel.cancelled().await;
        Ok(json!({"zombie": true}))
    };
    let start = tokio::time::Instant::now();
    let error = attempt_error(&engine(store), &d, compute, "conflict").await;
    assert_store_conflict(&error);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(750),
        "renewed at a quarter of the lease"
    );
}

#[tokio::test(start_paused = true)]
async fn a_conflict_on_a_heartbeat_write_stops_the_compute() {
    let mut store = begun_never_ended();
    store
        .expect_record_heartbeat()
        .times(1)
        .returning(|_, _| Err(StoreError::conflict("owned by another execution")));
    let compute = |ctx: TaskContext| async move {
        ctx.heartbeat.beat(json!({"step": 1}))?;
        ctx.cancel.cancelled().await;
        Ok(json!({}))
    };
    let error = attempt_error(&engine(store), &desc(), compute, "conflict").await;
    assert_eq!(error.code(), ErrorCode::StoreConflict);
}

#[tokio::test(start_paused = true)]
async fn renewals_keep_the_lease_while_the_attempt_runs() {
    let mut store = begun();
    // 10 s of work on a 3 s lease: renewed every 750 ms, at 0.75, 1.5, ..., 9.75 s (the clock
    // starts at 1,000 ms), each for the 3 s lease.
    store
        .expect_renew_lease()
        .times(13)
        .withf(|_, r| (r.now_ms - 1_000) % 750 == 0 && r.lease_ms == 3_000)
        .returning(|_, _| Ok(RenewedLease::default()));
    store
        .expect_end_attempt()
        .times(1)
        .returning(|_, _| Ok(AttemptEnded::default()));
    let d = desc_with_lease(3_000);
    let compute = |_ctx: TaskContext| works_for(Duration::from_secs(10), json!({}));
    let outcome = attempt_outcome(&engine(store), &d, compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_task_that_died_leaves_the_lease_unproven_not_the_attempt_hanging() {
    let mut store = begun_never_ended();
    store
        .expect_renew_lease()
        .returning(|_, _| panic!("a bug in the store's renewal"));
    let d = desc_with_lease(3_000);
    let compute = |_ctx: TaskContext| works_for(Duration::from_secs(5), json!({}));
    let error = attempt_error(
        &engine(store),
        &d,
        compute,
        "nothing terminal is written on an unproven lease",
    )
    .await;
    assert!(matches!(error, EngineError::Fenced { .. }), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_write_that_panics_leaves_the_renewals_running() {
    // The renewals and the heartbeat writes are two loops of one keeper task: a store that
    // panics in one must not stop the other, or this 5 s attempt on a 3 s lease would fence.
    let mut store = begun();
    store
        .expect_record_heartbeat()
        .returning(|_, _| panic!("a bug in the store's heartbeat write"));
    store
        .expect_renew_lease()
        .times(6)
        .returning(|_, _| Ok(RenewedLease::default()));
    store
        .expect_end_attempt()
        .times(1)
        .returning(|_, _| Ok(AttemptEnded::default()));
    let d = desc_with_lease(3_000);
    let compute = |ctx: TaskContext| async move {
        ctx.heartbeat.beat(json!({"step": 1}))?;
        works_for(Duration::from_secs(5), json!({})).await
    };
    let outcome = attempt_outcome(&engine(store), &d, compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
}
