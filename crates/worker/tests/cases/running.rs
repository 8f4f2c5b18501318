//! Running tasks: concurrency, claim order, retries through the queue, dispatch, exit when
//! empty, wake-ups.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use stint_domain::{AttemptState, TaskState};
use stint_engine::TaskFailure;
use stint_ports::{InstrumentedStore, NewTask, WriteOp};
use stint_worker::{Handlers, Shutdown, Wakeups, Worker, WorkerOptions};
use tokio::sync::Notify;

use crate::common::{
    Fixture, Kind, Log, Peak, engine_on, eventually, now_ms, options, run_to_end, sharing, task,
};

/// Handlers of "work" tasks that run `work` with their own clone of `shared`, counted by `peak`
/// while they run.
fn counted<S, F, Fut>(peak: &Peak, shared: S, work: F) -> Handlers
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskFailure>> + Send + 'static,
{
    let counted = (peak.clone(), shared, Arc::new(work));
    sharing(
        "work",
        counted,
        |(peak, shared, work), args, _ctx| async move {
            let _running = peak.enter();
            work(shared, args).await
        },
    )
}

pub(crate) async fn every_task_runs_once_with_concurrency_4(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let ran: Log<String> = Log::default();
    let peak = Peak::default();
    let handlers = counted(&peak, ran.clone(), |ran, args| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ran.push(args["node"].as_str().unwrap_or_default().to_owned());
        Ok(json!({ "ok": true }))
    });
    let nodes: Vec<String> = (0..24).map(|i| format!("n{i}")).collect();
    let tasks = nodes
        .iter()
        .map(|node| task("run", node, "work", json!({ "node": node }), json!({})))
        .collect();
    let ids = fixture.enqueue(tasks).await;
    let worker = fixture.worker(Arc::new(handlers), options());
    let report = run_to_end(&worker, Shutdown::default()).await;

    assert_eq!(report.finished, 24, "{report:?}");
    let mut ran = ran.items();
    ran.sort();
    let mut expected = nodes.clone();
    expected.sort();
    assert_eq!(ran, expected, "every task ran exactly once");
    let peak = peak.most();
    assert!(
        (2..=4).contains(&peak),
        "tasks ran side by side, never more than four: {peak}"
    );
    for (id, node) in ids.into_iter().zip(&nodes) {
        assert_eq!(fixture.task(id).await.state, TaskState::Finished);
        let states = fixture.attempt_states("run", node).await;
        assert_eq!(states, vec![AttemptState::Finished], "node {node}");
    }
}

pub(crate) async fn one_slot_takes_tasks_by_priority(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let ran: Log<i64> = Log::default();
    let handlers = sharing("work", ran.clone(), |ran, args, _ctx| async move {
        ran.push(args["priority"].as_i64().unwrap_or_default());
        Ok(Value::Null)
    });
    let tasks = [3, -1, 7, 0, 5]
        .into_iter()
        .map(|priority| NewTask {
            priority,
            ..task(
                "run",
                &format!("p{priority}"),
                "work",
                json!({ "priority": priority }),
                json!({}),
            )
        })
        .collect();
    fixture.enqueue(tasks).await;
    let one = WorkerOptions {
        concurrency: 1,
        ..options()
    };
    let report = run_to_end(
        &fixture.worker(Arc::new(handlers), one),
        Shutdown::default(),
    )
    .await;
    assert_eq!(report.finished, 5);
    assert_eq!(ran.items(), vec![7, 5, 3, 0, -1]);
}

/// A handler that heartbeats its attempt number, then fails retryably; logs the checkpoint each
/// attempt started from.
fn failing(seen: &Log<Option<Value>>) -> Handlers {
    sharing("flaky", seen.clone(), |seen, _args, ctx| async move {
        seen.push(ctx.checkpoint.clone());
        ctx.heartbeat.beat(json!({ "attempt": ctx.key.attempt }))?;
        Err(TaskFailure::retryable("not yet"))
    })
}

pub(crate) async fn a_failing_task_is_retried_through_the_queue_then_fails(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let seen: Log<Option<Value>> = Log::default();
    let options_of_task = json!({ "retries": 2, "backoff_ms": 100 });
    let ids = fixture
        .enqueue(vec![task(
            "run",
            "flaky",
            "flaky",
            json!(null),
            options_of_task,
        )])
        .await;
    let worker = fixture.worker(Arc::new(failing(&seen)), options());
    let started = tokio::time::Instant::now();
    let report = run_to_end(&worker, Shutdown::default()).await;

    assert_eq!((report.retried, report.failed), (2, 1));
    // The backoff (100 ms, then 200 ms, each shortened by at most 20% of jitter) was waited out
    // in the queue.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(240), "{took:?}");
    let task = fixture.task(ids[0]).await;
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.claims, 3);
    let states = fixture.attempt_states("run", "flaky").await;
    assert_eq!(states, vec![AttemptState::Failed; 3]);
    let checkpoints = seen.items();
    assert_eq!(
        checkpoints,
        vec![
            None,
            Some(json!({"attempt": 1})),
            Some(json!({"attempt": 2}))
        ],
        "each attempt resumes from the last heartbeat of the one before"
    );
}

pub(crate) async fn a_retried_task_gets_its_retries_again(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let seen: Log<Option<Value>> = Log::default();
    let retries = json!({ "retries": 1, "backoff_ms": 10 });
    let ids = fixture
        .enqueue(vec![task("run", "again", "flaky", json!(null), retries)])
        .await;
    let worker = fixture.worker(Arc::new(failing(&seen)), options());
    run_to_end(&worker, Shutdown::default()).await;
    assert_eq!(fixture.attempt_states("run", "again").await.len(), 2);

    // `stint retry` sets aside the two failed attempts: the task has its one retry again.
    fixture
        .queue
        .retry(ids[0], 2, now_ms())
        .await
        .expect("the task is retried");
    let report = run_to_end(&worker, Shutdown::default()).await;
    assert_eq!((report.retried, report.failed), (1, 1));
    let states = fixture.attempt_states("run", "again").await;
    assert_eq!(states, vec![AttemptState::Failed; 4]);
}

pub(crate) async fn unknown_kinds_and_panics_fail_their_task_and_the_worker_goes_on(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let handlers = Handlers::new()
        .register("echo", |args: Value, _ctx| async move { Ok(args) })
        .register("panic", |_args, _ctx| async move {
            panic!("the handler's bug");
        });
    let ids = fixture
        .enqueue(vec![
            task("run", "unknown", "nope", json!(null), json!({})),
            task("run", "typo", "echo", json!(null), json!({ "retrys": 1 })),
            task("run", "panics", "panic", json!(null), json!({})),
            task("run", "echo", "echo", json!({ "x": 1 }), json!({})),
        ])
        .await;
    let report = run_to_end(
        &fixture.worker(Arc::new(handlers), options()),
        Shutdown::default(),
    )
    .await;
    assert_eq!((report.failed, report.finished), (3, 1));
    let unknown = fixture.task(ids[0]).await;
    assert_eq!(unknown.state, TaskState::Failed);
    let message = unknown.last_error.expect("an error")["message"].clone();
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.contains("no handler for kind"))
    );
    assert!(fixture.attempts_of("run", "unknown").await.is_empty());
    let typo = fixture.task(ids[1]).await.last_error.expect("an error");
    assert!(typo.to_string().contains("unknown option"));
    assert_eq!(fixture.task(ids[2]).await.state, TaskState::Failed);
    assert_eq!(fixture.task(ids[3]).await.state, TaskState::Finished);
}

pub(crate) async fn exit_when_empty_waits_for_scheduled_tasks_only(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let handlers = Arc::new(Handlers::new().register("echo", |a, _| async move { Ok(a) }));
    let worker = fixture.worker(handlers, options());
    let report = run_to_end(&worker, Shutdown::default()).await;
    assert_eq!(report.finished, 0, "an empty queue: it returns at once");

    let later = NewTask {
        run_at_ms: now_ms() + 300,
        ..task("run", "later", "echo", json!(null), json!({}))
    };
    fixture.enqueue(vec![later]).await;
    let started = tokio::time::Instant::now();
    let report = run_to_end(&worker, Shutdown::default()).await;
    assert_eq!(report.finished, 1, "it waited for the scheduled task");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[derive(Debug, Default)]
struct Bell(Notify);

#[async_trait]
impl Wakeups for Bell {
    async fn next(&self) {
        self.0.notified().await;
    }
}

pub(crate) async fn an_idle_worker_claims_when_woken(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let handlers = Arc::new(Handlers::new().register("echo", |a, _| async move { Ok(a) }));
    let idle = WorkerOptions {
        poll_interval: Duration::from_secs(3600),
        exit_when_empty: false,
        ..options()
    };
    let bell = Arc::new(Bell::default());
    let worker = Arc::new(fixture.worker(handlers, idle).with_wakeups(bell.clone()));
    let shutdown = Shutdown::default();
    let running = tokio::spawn({
        let (worker, shutdown) = (worker.clone(), shutdown.clone());
        async move { worker.run(shutdown).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = fixture
        .enqueue(vec![task("run", "a", "echo", json!(null), json!({}))])
        .await;
    worker.wake();
    let finished = |id| {
        let fixture = &fixture;
        move || async move { fixture.task(id).await.state == TaskState::Finished }
    };
    eventually("woken by wake()", finished(first[0])).await;
    let second = fixture
        .enqueue(vec![task("run", "b", "echo", json!(null), json!({}))])
        .await;
    bell.0.notify_one();
    eventually("woken by the wake-up source", finished(second[0])).await;
    shutdown.drain.cancel();
    let report = running.await.expect("joins").expect("runs");
    assert_eq!(report.finished, 2);
}

/// While a task's end is being written, its slot is free: the worker claims and starts the next
/// task, so the claim's and the begin's round trips overlap the write; never more than
/// `concurrency` computes at once.
pub(crate) async fn a_slot_is_claimed_for_while_its_task_settles(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let attempts = Arc::new(InstrumentedStore::new(fixture.attempts.clone()));
    attempts.set_delay(WriteOp::End, Duration::from_millis(600));
    let returned = Arc::new(Notify::new());
    let peak = Peak::default();
    let handlers = counted(&peak, returned.clone(), |returned, _args| async move {
        returned.notify_one();
        Ok(json!(null))
    });
    let mut first = task("run", "first", "work", json!({}), json!({}));
    first.priority = 1;
    let second = task("run", "second", "work", json!({}), json!({}));
    let ids = fixture.enqueue(vec![first, second]).await;
    let worker = Worker::new(
        engine_on(attempts.clone()),
        fixture.queue.clone(),
        fixture.attempts.clone(),
        Arc::new(handlers),
        WorkerOptions {
            concurrency: 1,
            ..options()
        },
    );
    let run = tokio::spawn(async move { run_to_end(&worker, Shutdown::default()).await });
    returned.notified().await;
    // The first task's end is being written (600 ms): the second is claimed and begun
    // meanwhile.
    eventually(
        "the second task begins during the first one's end",
        || async { !fixture.attempts_of("run", "second").await.is_empty() },
    )
    .await;
    assert_eq!(fixture.task(ids[0]).await.state, TaskState::Running);
    assert!(
        fixture.attempts_of("run", "first").await[0].state == AttemptState::InProgress,
        "the first one's end is still being written"
    );
    let report = run.await.expect("the worker ran");
    assert_eq!(report.finished, 2, "{report:?}");
    assert_eq!(peak.most(), 1, "one slot, one task at a time");
    for id in ids {
        assert_eq!(fixture.task(id).await.state, TaskState::Finished);
    }
}

/// Where the store can (PostgreSQL), a claim begins its tasks' attempts in its own transaction:
/// the engine begins none itself, and each task still runs as the one attempt of its node. On
/// the other stores the engine begins each.
pub(crate) async fn a_claim_begins_its_tasks_attempts_where_the_store_can(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let attempts = Arc::new(InstrumentedStore::new(fixture.attempts.clone()));
    let handlers = sharing("work", (), |(), args, _ctx| async move { Ok(args) });
    let nodes: Vec<String> = (0..6).map(|i| format!("n{i}")).collect();
    let tasks = nodes
        .iter()
        .map(|node| task("run", node, "work", json!({ "node": node }), json!({})))
        .collect();
    fixture.enqueue(tasks).await;
    let worker = Worker::new(
        engine_on(attempts.clone()),
        fixture.queue.clone(),
        fixture.attempts.clone(),
        Arc::new(handlers),
        options(),
    );
    let report = run_to_end(&worker, Shutdown::default()).await;

    assert_eq!(report.finished, 6, "{report:?}");
    for node in &nodes {
        let records = fixture.attempts_of("run", node).await;
        let states: Vec<(u32, AttemptState)> = records
            .iter()
            .map(|record| (record.attempt, record.state))
            .collect();
        assert_eq!(states, vec![(1, AttemptState::Finished)], "node {node}");
    }
    let begun_by_the_engine = attempts.calls(WriteOp::Begin);
    let expected = match kind {
        Kind::Postgres => 0,
        Kind::Memory | Kind::Sqlite => 6,
    };
    assert_eq!(begun_by_the_engine, expected, "on {kind:?}");
    assert_eq!(
        attempts.calls(WriteOp::End),
        6,
        "each attempt ended through the engine"
    );
}
