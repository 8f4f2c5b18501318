//! Tasks that stop early or change hands: a killed worker, racing workers, a node still busy,
//! cancellation requests, drain and abort.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stint_domain::{AttemptState, ErrorCode, NodeKey, TaskState};
use stint_engine::TaskFailure;
use stint_ports::{
    AttemptEnd, BeginAttempt, BegunAttempt, CancelTarget, EndAttempt, InstrumentedStore,
    OwnedAttempt, StoreError, WriteOp,
};
use stint_worker::{Handlers, Shutdown, Worker, WorkerOptions, WorkerReport};

use crate::common::{
    Fixture, Kind, Log, engine_on, eventually, now_ms, options, run_to_end, sharing, task,
};

/// A handler whose tasks log their node, then run until cancelled.
fn until_cancelled(started: &Log<String>) -> Handlers {
    sharing("job", started.clone(), |started, args, ctx| async move {
        started.push(args["node"].as_str().unwrap_or_default().to_owned());
        ctx.cancel.cancelled().await;
        Err(TaskFailure::permanent("stopped"))
    })
}

fn finishing() -> Handlers {
    Handlers::new().register("job", |args: Value, _ctx| async move { Ok(args) })
}

/// Runs a worker of `fixture` with [`finishing`] handlers until the queue is empty.
async fn finish_queued(fixture: &Fixture) -> WorkerReport {
    run_to_end(
        &fixture.worker(Arc::new(finishing()), options()),
        Shutdown::default(),
    )
    .await
}

/// Begins an attempt of `node` for `owner`, a runner that dies with it in progress: the
/// attempt stays so until its lease of `lease_ms` expires.
async fn begun_by_the_dead(
    fixture: &Fixture,
    node: &NodeKey,
    owner: &str,
    lease_ms: u64,
) -> BegunAttempt {
    let begin = BeginAttempt {
        node: node.clone(),
        owner: owner.to_owned(),
        started_at_ms: now_ms(),
        lease_ms,
        metadata: Value::Null,
        working_dir: None,
        label: None,
        output_table: None,
    };
    fixture
        .attempts
        .begin_attempt(begin)
        .await
        .unwrap_or_else(|e| panic!("{owner}'s attempt begins: {e}"))
}

fn jobs(nodes: &[&str], options: Value) -> Vec<stint_ports::NewTask> {
    nodes
        .iter()
        .map(|node| task("run", node, "job", json!({ "node": node }), options.clone()))
        .collect()
}

pub(crate) async fn a_killed_workers_tasks_are_swept_back_and_finished(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let nodes = ["k1", "k2", "k3"];
    let ids = fixture
        .enqueue(jobs(&nodes, json!({ "lease_ms": 400 })))
        .await;
    let started: Log<String> = Log::default();
    let doomed = fixture.worker(Arc::new(until_cancelled(&started)), options());
    {
        let run = doomed.run(Shutdown::default());
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => panic!("the worker returned"),
            () = eventually("all three started", || async { started.items().len() == 3 }) => {}
        }
        // Dropped mid-task, as by kill -9: no task is completed, no claim given back.
    }
    for id in &ids {
        assert_eq!(fixture.task(*id).await.state, TaskState::Running);
    }

    let survivor = fixture.second_handle().await;
    let report = finish_queued(&survivor).await;
    assert_eq!((report.finished, report.swept), (3, 3));
    for (id, node) in ids.into_iter().zip(nodes) {
        assert_eq!(fixture.task(id).await.state, TaskState::Finished);
        let mut attempts = fixture.attempts_of("run", node).await;
        attempts.sort_by_key(|a| a.attempt);
        let states: Vec<AttemptState> = attempts.iter().map(|a| a.state).collect();
        assert_eq!(states, vec![AttemptState::Failed, AttemptState::Finished]);
        let code = attempts[0].error.as_ref().map(|e| e.code);
        assert_eq!(code, Some(ErrorCode::AttemptAbandoned));
    }
}

pub(crate) async fn two_workers_share_200_tasks_each_run_once(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let nodes: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
    fixture.enqueue(jobs(&names, json!({}))).await;
    let other = fixture.second_handle().await;
    // Two handles on one SQLite file take turns to write: a lease of seconds, not 600 ms.
    let options = WorkerOptions {
        claim_lease: Duration::from_secs(5),
        ..options()
    };
    // Each task works 10 ms, so neither worker can drain all 200 before the other's first
    // claim gets the write lock (two handles on one SQLite file take turns at SQLite's busy
    // back-off, which does not queue them fairly).
    let working = || {
        Arc::new(
            Handlers::new().register("job", |args: Value, _ctx| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(args)
            }),
        )
    };
    let (first, second) = (
        fixture.worker(working(), options.clone()),
        other.worker(
            working(),
            WorkerOptions {
                owner: "second".to_owned(),
                ..options
            },
        ),
    );
    let (a, b) = tokio::join!(
        run_to_end(&first, Shutdown::default()),
        run_to_end(&second, Shutdown::default())
    );
    assert_eq!(a.finished + b.finished, 200);
    assert!(a.finished > 0 && b.finished > 0, "both workers ran tasks");
    for node in &nodes {
        let states = fixture.attempt_states("run", node).await;
        assert_eq!(states, vec![AttemptState::Finished], "node {node}");
    }
}

pub(crate) async fn a_task_whose_node_is_busy_goes_back_until_recovery_frees_it(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    // A runner that died: its attempt stays in progress until its lease expires.
    let busy = NodeKey::new("run", "busy", 0).expect("a valid key");
    begun_by_the_dead(&fixture, &busy, "dead runner", 400).await;
    let ids = fixture.enqueue(jobs(&["busy"], json!({}))).await;
    let report = finish_queued(&fixture).await;
    assert!(report.released >= 1, "given back while the node was busy");
    assert_eq!((report.finished, report.failed), (1, 0));
    assert_eq!(fixture.task(ids[0]).await.state, TaskState::Finished);
    let states = fixture.attempt_states("run", "busy").await;
    assert_eq!(states, vec![AttemptState::Failed, AttemptState::Finished]);
}

/// A worker that wrote its attempt's end and died before the task's: the claim comes back, and
/// the next worker ends the task from the node's record instead of running the node again.
pub(crate) async fn a_task_whose_node_already_finished_is_not_run_again(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let node = NodeKey::new("run", "done", 0).expect("a valid key");
    let begun = begun_by_the_dead(&fixture, &node, "dead worker", 30_000).await;
    let owned = OwnedAttempt {
        key: node.attempt(begun.attempt),
        owner: "dead worker".to_owned(),
    };
    let finished = AttemptEnd::Finished {
        output: json!(1),
        vcs: None,
    };
    fixture
        .attempts
        .end_attempt(&owned, EndAttempt::new(finished, now_ms()))
        .await
        .expect("and finishes");
    let ids = fixture.enqueue(jobs(&["done"], json!({}))).await;
    let report = finish_queued(&fixture).await;
    assert_eq!(report.finished, 1);
    assert_eq!(fixture.task(ids[0]).await.state, TaskState::Finished);
    let states = fixture.attempt_states("run", "done").await;
    assert_eq!(states, vec![AttemptState::Finished], "the node ran again");
}

pub(crate) async fn a_cancel_request_ends_a_running_task_cancelled(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let started: Log<String> = Log::default();
    let ids = fixture.enqueue(jobs(&["c"], json!({}))).await;
    let worker = fixture.worker(Arc::new(until_cancelled(&started)), options());
    let cancel = async {
        eventually("the task started", || async { !started.items().is_empty() }).await;
        let outcome = fixture.queue.cancel(CancelTarget::Task(ids[0]), now_ms());
        outcome.await.expect("the cancellation is asked for");
    };
    let (report, ()) = tokio::join!(run_to_end(&worker, Shutdown::default()), cancel);
    assert_eq!((report.cancelled, report.failed), (1, 0));
    assert_eq!(fixture.task(ids[0]).await.state, TaskState::Cancelled);
    let states = fixture.attempt_states("run", "c").await;
    assert_eq!(states, vec![AttemptState::Cancelled]);
}

fn staying(drain_timeout: Duration) -> WorkerOptions {
    WorkerOptions {
        exit_when_empty: false,
        drain_timeout,
        ..options()
    }
}

/// Runs `worker` until every node in `nodes` started, then stops it with `stop`; returns the
/// report and how long the worker took to return after the stop.
async fn stop_when_started(
    worker: &stint_worker::Worker,
    started: &Log<String>,
    count: usize,
    stop: impl FnOnce(&Shutdown),
) -> (stint_worker::WorkerReport, Duration) {
    let shutdown = Shutdown::default();
    let run = run_to_end(worker, shutdown.clone());
    tokio::pin!(run);
    tokio::select! {
        _ = &mut run => panic!("the worker returned"),
        () = eventually("the tasks started", || async { started.items().len() >= count }) => {}
    }
    let stopped_at = tokio::time::Instant::now();
    stop(&shutdown);
    let report = run.await;
    (report, stopped_at.elapsed())
}

pub(crate) async fn a_drain_gives_back_a_long_task_after_the_drain_timeout(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let started: Log<String> = Log::default();
    let ids = fixture.enqueue(jobs(&["long"], json!({}))).await;
    let options = staying(Duration::from_millis(300));
    let worker = fixture.worker(Arc::new(until_cancelled(&started)), options);
    let (report, took) = stop_when_started(&worker, &started, 1, |s| s.drain.cancel()).await;
    assert!(
        took >= Duration::from_millis(300),
        "it waited the drain timeout"
    );
    assert_eq!(
        (report.released, report.cancelled, report.failed),
        (1, 0, 0)
    );
    let task = fixture.task(ids[0]).await;
    assert_eq!(
        task.state,
        TaskState::Ready,
        "ready again for another worker"
    );
    let states = fixture.attempt_states("run", "long").await;
    assert_eq!(
        states,
        vec![AttemptState::Cancelled],
        "recorded cancelled, not failed"
    );
}

pub(crate) async fn a_drain_lets_short_tasks_finish_and_claims_no_more(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let started: Log<String> = Log::default();
    let handlers = sharing("job", started.clone(), |started, args, _ctx| async move {
        started.push(args["node"].as_str().unwrap_or_default().to_owned());
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(args)
    });
    let ids = fixture
        .enqueue(jobs(&["s1", "s2", "s3", "s4", "s5"], json!({})))
        .await;
    let worker = fixture.worker(Arc::new(handlers), staying(Duration::from_secs(10)));
    let (report, took) = stop_when_started(&worker, &started, 4, |s| s.drain.cancel()).await;
    assert!(
        took < Duration::from_secs(5),
        "it did not wait the drain timeout"
    );
    assert_eq!((report.finished, report.released), (4, 0));
    let mut states = HashMap::new();
    for id in ids {
        *states.entry(fixture.task(id).await.state).or_insert(0) += 1;
    }
    assert_eq!(states.get(&TaskState::Finished), Some(&4));
    assert_eq!(
        states.get(&TaskState::Ready),
        Some(&1),
        "the fifth was never claimed"
    );
}

pub(crate) async fn an_abort_gives_back_running_tasks_at_once(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let started: Log<String> = Log::default();
    let ids = fixture.enqueue(jobs(&["a1", "a2"], json!({}))).await;
    let worker = fixture.worker(
        Arc::new(until_cancelled(&started)),
        staying(Duration::from_secs(60)),
    );
    let (report, took) = stop_when_started(&worker, &started, 2, |s| s.abort.cancel()).await;
    assert!(
        took < Duration::from_secs(5),
        "it did not wait the drain timeout"
    );
    assert_eq!((report.released, report.cancelled), (2, 0));
    for id in ids {
        assert_eq!(fixture.task(id).await.state, TaskState::Ready);
    }
}

pub(crate) async fn a_task_whose_attempt_could_not_begin_goes_back_and_runs(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let attempts = Arc::new(InstrumentedStore::new(fixture.attempts.clone()));
    attempts.fail_next(WriteOp::Begin, StoreError::unavailable("the store is away"));
    let ids = fixture.enqueue(jobs(&["b"], json!({}))).await;
    let worker = Worker::new(
        engine_on(attempts.clone()),
        fixture.queue.clone(),
        fixture.attempts.clone(),
        Arc::new(finishing()),
        options(),
    );
    let report = run_to_end(&worker, Shutdown::default()).await;
    if matches!(kind, Kind::Postgres) {
        // Its claim began the attempt: the engine's begin, where the failure waits, is never
        // called, and the task runs at once.
        assert_eq!((report.released, report.finished), (0, 1));
        assert_eq!(attempts.calls(WriteOp::Begin), 0);
        assert_eq!(fixture.task(ids[0]).await.claims, 1);
    } else {
        // Nothing is written for the task when its begin fails; the next renewal finds its
        // claim held by no running task and gives it back.
        assert_eq!((report.released, report.finished), (1, 1));
        assert_eq!(attempts.calls(WriteOp::Begin), 2);
        assert_eq!(fixture.task(ids[0]).await.claims, 2);
    }
    let states = fixture.attempt_states("run", "b").await;
    assert_eq!(states, vec![AttemptState::Finished]);
}
