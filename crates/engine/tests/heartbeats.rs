//! Heartbeats: checkpoints across attempts, coalescing, the final flush, ignored late calls,
//! and that nothing the engine spawned outlives the attempt. Scenarios that hold on the real
//! clock also run on a SQLite file; see [`scenarios!`].

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Harness, attempt_outcome, attempts, by_attempt, desc, desc_with_retries, engine_on,
    event_types, heartbeat_events, heartbeat_writes, names, node_outcome,
};
use serde_json::{Value, json};
use stint_domain::AttemptState;
use stint_engine::{Heartbeat, TaskContext, TaskFailure};
use stint_ports::WriteOp;

scenarios! {
    both: [
        checkpoint_chain_sees_each_predecessors_last_payload,
        a_thousand_heartbeats_in_one_interval_coalesce_into_few_writes,
        a_bare_ping_keeps_the_payload,
        invalid_payload_fails_the_call_and_a_propagated_error_is_permanent,
        a_typed_payload_with_nan_is_refused_with_its_path_not_stored_as_null,
    ],
    // Exact throttle intervals, counts of live tokio tasks (sqlx has its own) and a clock that
    // must not move are only observable on the paused clock.
    memory_only: [
        writes_are_throttled_to_the_interval,
        heartbeats_after_the_end_are_ignored_and_nothing_keeps_running,
        no_task_survives_a_timed_out_attempt,
        a_slow_store_does_not_slow_the_heartbeat_call,
    ],
}

async fn checkpoint_chain_sees_each_predecessors_last_payload(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let mut d = desc_with_retries(10);
    d.retry.backoff.initial_ms = 10;
    let seen: Arc<Mutex<Vec<Option<Value>>>> = Arc::default();
    let compute = |ctx: TaskContext| {
        let seen = seen.clone();
        async move {
            seen.lock().expect("lock").push(ctx.checkpoint.clone());
            let count = ctx
                .checkpoint
                .as_ref()
                .and_then(|c| c["count"].as_u64())
                .unwrap_or(0);
            ctx.heartbeat
                .beat(json!({"count": count, "phase": "started"}))?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if count >= 3 {
                return Ok(json!({"count": count}));
            }
            // Sent 3 ms before failing, inside the throttle interval: only the flush writes it.
            ctx.heartbeat.beat(json!({"count": count + 1}))?;
            tokio::time::sleep(Duration::from_millis(3)).await;
            Err(TaskFailure::retryable("not yet"))
        }
    };
    let outcome = node_outcome(engine, &d, compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
    assert_eq!(outcome.output, Some(json!({"count": 3})));
    assert_eq!(
        *seen.lock().expect("lock"),
        [
            None,
            Some(json!({"count": 1})),
            Some(json!({"count": 2})),
            Some(json!({"count": 3}))
        ]
    );
    let stored = by_attempt(store, |a| a.heartbeat).await;
    assert_eq!(
        stored,
        [
            (1, Some(json!({"count": 1}))),
            (2, Some(json!({"count": 2}))),
            (3, Some(json!({"count": 3}))),
            (4, Some(json!({"count": 3, "phase": "started"}))),
        ],
        "each failed attempt's last payload reached the store through the final flush"
    );
}

async fn a_thousand_heartbeats_in_one_interval_coalesce_into_few_writes(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let compute = |ctx: TaskContext| async move {
        for i in 0..1_000 {
            ctx.heartbeat.beat(json!({ "i": i }))?;
            if i % 100 == 0 {
                // Lets the writer run: the first heartbeat is written at once.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(json!({}))
    };
    let outcome = attempt_outcome(engine, &desc(), compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
    if h.paused {
        assert_eq!(
            heartbeat_writes(store),
            2,
            "the first at once, the last at the flush"
        );
    }
    // On the real clock a slow machine may stretch the loop past one 500 ms interval.
    assert!(
        (1..=3).contains(&heartbeat_writes(store)),
        "{} writes",
        heartbeat_writes(store)
    );
    assert_eq!(attempts(store).await[0].heartbeat, Some(json!({"i": 999})));
    let beats = names(&event_types(store).await)
        .iter()
        .filter(|n| **n == "TaskHeartbeat")
        .count();
    assert_eq!(
        u64::try_from(beats).expect("count"),
        heartbeat_writes(store)
    );
}

async fn writes_are_throttled_to_the_interval(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let mut d = desc();
    d.heartbeat_timeout_ms = Some(250); // interval: 0.8 x 250 = 200 ms
    let compute = |ctx: TaskContext| async move {
        for i in 0..20 {
            ctx.heartbeat.beat(json!({ "i": i }))?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(json!({}))
    };
    attempt_outcome(engine, &d, compute).await;
    let intervals = heartbeat_events(store, |_, interval_ms| interval_ms).await;
    // 20 beats 50 ms apart, written at most every 200 ms: the first at once, then one per
    // interval and the last flushed at the end.
    assert!(intervals.len() >= 5, "too few writes: {intervals:?}");
    assert_eq!(intervals[0], None);
    assert!(
        intervals[1..].iter().all(|i| *i == Some(200)),
        "{intervals:?}"
    );
    assert_eq!(attempts(store).await[0].heartbeat, Some(json!({"i": 19})));
}

async fn a_bare_ping_keeps_the_payload(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let compute = |ctx: TaskContext| async move {
        ctx.heartbeat.beat_typed(&[1, 2, 3])?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        ctx.heartbeat.ping();
        Ok(json!({}))
    };
    attempt_outcome(engine, &desc(), compute).await;
    let record = &attempts(store).await[0];
    assert_eq!(record.heartbeat, Some(json!([1, 2, 3])));
    let has_data = heartbeat_events(store, |has_data, _| has_data).await;
    assert_eq!(has_data, [true, false]);
}

async fn invalid_payload_fails_the_call_and_a_propagated_error_is_permanent(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let d = desc_with_retries(3);
    let compute = |ctx: TaskContext| async move {
        let deep = (0..200).fold(json!(1), |v, _| json!([v]));
        ctx.heartbeat.beat(deep)?;
        Ok(json!({}))
    };
    let outcome = node_outcome(engine, &d, compute).await;
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(
        outcome.error.map(|e| e.code.as_str()),
        Some("HEARTBEAT_PAYLOAD_TOO_LARGE")
    );
    assert_eq!(attempts(store).await[0].retryable, Some(false));
}

async fn heartbeats_after_the_end_are_ignored_and_nothing_keeps_running(h: Harness) {
    let (store, engine) = (&h.store, &h.engine);
    let mut d = desc();
    d.heartbeat_timeout_ms = Some(10_000);
    d.timeout_ms = Some(60_000);
    let kept: Arc<Mutex<Option<Heartbeat>>> = Arc::default();
    let compute = |ctx: TaskContext| {
        let kept = kept.clone();
        async move {
            ctx.heartbeat.beat(json!({"n": 1}))?;
            *kept.lock().expect("lock") = Some(ctx.heartbeat.clone());
            Ok(json!({}))
        }
    };
    attempt_outcome(engine, &d, compute).await;
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
    let handle = kept.lock().expect("lock").take().expect("kept");
    assert_eq!(handle.beat(json!({"n": 2})), Ok(()));
    handle.ping();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(heartbeat_writes(store), 1);
    assert_eq!(attempts(store).await[0].heartbeat, Some(json!({"n": 1})));
}

async fn no_task_survives_a_timed_out_attempt(h: Harness) {
    let engine = &h.engine;
    let mut d = desc();
    d.timeout_ms = Some(500);
    d.heartbeat_timeout_ms = Some(10_000);
    let compute = |ctx: TaskContext| async move {
        loop {
            ctx.heartbeat.beat(json!({"busy": true}))?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let outcome = attempt_outcome(engine, &d, compute).await;
    assert_eq!(outcome.error.map(|e| e.code.as_str()), Some("TASK_TIMEOUT"));
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
}

async fn a_slow_store_does_not_slow_the_heartbeat_call(h: Harness) {
    let store = h.store;
    store.set_delay(WriteOp::Heartbeat, Duration::from_millis(10));
    let engine = engine_on(store.clone());
    let compute = |ctx: TaskContext| async move {
        let before = tokio::time::Instant::now();
        for i in 0..100 {
            ctx.heartbeat.beat(json!({ "i": i }))?;
            tokio::task::yield_now().await;
        }
        // No call waited for the 10 ms writes: tokio's clock did not move.
        assert_eq!(before.elapsed(), Duration::ZERO);
        Ok(json!({}))
    };
    let outcome = attempt_outcome(&engine, &desc(), compute).await;
    assert_eq!(outcome.state, AttemptState::Finished);
    assert_eq!(attempts(&store).await[0].heartbeat, Some(json!({"i": 99})));
}

async fn a_typed_payload_with_nan_is_refused_with_its_path_not_stored_as_null(h: Harness) {
    #[derive(serde::Serialize)]
    struct Progress {
        items: Vec<Item>,
    }
    #[derive(serde::Serialize)]
    struct Item {
        ratio: f64,
    }
    let (store, engine) = (&h.store, &h.engine);
    let refused: Arc<Mutex<Option<String>>> = Arc::default();
    let compute = |ctx: TaskContext| {
        let refused = refused.clone();
        async move {
            ctx.heartbeat.beat_typed(&json!({"ok": 1}))?;
            let bad = Progress {
                items: vec![Item { ratio: 0.5 }, Item { ratio: f64::NAN }],
            };
            let error = ctx.heartbeat.beat_typed(&bad).expect_err("NaN refused");
            *refused.lock().expect("lock") =
                Some(error.to_task_error().details["path"].to_string());
            Ok(json!({}))
        }
    };
    attempt_outcome(engine, &desc(), compute).await;
    assert_eq!(
        refused.lock().expect("lock").as_deref(),
        Some("\"$.items[1].ratio\"")
    );
    assert_eq!(attempts(store).await[0].heartbeat, Some(json!({"ok": 1})));
}

/// Deadlines that pass together are found together: the first attempt the runtime wakes finds
/// every attempt whose deadline passed, and each records its heartbeat timeout at that moment,
/// not when its own turn comes after the others have stopped (here each compute takes 5 ms of
/// the clock to stop, so an attempt found only on its own turn would record 5 ms later than the
/// one before it).
#[tokio::test(start_paused = true)]
async fn deadlines_that_pass_together_are_found_together() {
    let (store, engine) = common::setup();
    let engine = Arc::new(engine);
    let runs: Vec<_> = (0..3)
        .map(|i| {
            let engine = engine.clone();
            let mut d = desc();
            d.key = stint_domain::NodeKey::new("r", format!("n{i}"), 0).expect("valid key");
            d.heartbeat_timeout_ms = Some(50);
            tokio::spawn(async move {
                let compute = |ctx: TaskContext| async move {
                    ctx.cancel.cancelled().await;
                    tokio::time::advance(Duration::from_millis(5)).await;
                    Err::<Value, _>(TaskFailure::retryable("stopped"))
                };
                engine
                    .run_attempt(&d, compute, &stint_engine::CancellationToken::new())
                    .await
            })
        })
        .collect();
    for run in runs {
        let outcome = run.await.expect("no panic").expect("recorded");
        assert_eq!(outcome.state, AttemptState::Failed);
    }
    let found: Vec<u64> = common::events(&store)
        .await
        .into_iter()
        .filter(|e| e.event.kind.type_name() == "TaskHeartbeatTimeout")
        .map(|e| e.event.timestamp_ms - common::EPOCH_MS)
        .collect();
    assert_eq!(found, vec![51, 51, 51], "found at the deadline, all three");
}
