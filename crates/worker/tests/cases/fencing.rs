//! Claims the worker cannot hold: renewals that fail (the worker fences itself) and renewals
//! that no longer list a task (its compute is dropped); and a queue that refuses every separate
//! `complete`, which a task's end does not need (it rides on its attempt's terminal write).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use stint_domain::{AttemptState, QueueStats, TaskId, TaskRecord, TaskState};
use stint_engine::TaskContext;
use stint_ports::{
    CancelOutcome, CancelTarget, Claim, ClaimedTask, Completion, Enqueued, NewTask, QueueHistory,
    QueueStore, Renewal, RenewedClaims, StoreError, TaskFilter, TaskQueue,
};
use stint_worker::{Handlers, Shutdown, Worker, WorkerError, WorkerOptions};

use crate::common::{Fixture, Kind, Log, eventually, options, run_to_end, sharing, task};

const RENEW: u8 = 0;
const FAIL: u8 = 1;
const FORGET: u8 = 2;

/// A queue whose renewals can fail, or answer without renewing anything, and whose `complete`
/// can be refused.
#[derive(Debug)]
struct Renewals {
    inner: Arc<dyn QueueStore>,
    mode: AtomicU8,
    refuse_complete: AtomicBool,
}

#[async_trait]
impl TaskQueue for Renewals {
    async fn enqueue(&self, tasks: Vec<NewTask>, now_ms: u64) -> Result<Vec<Enqueued>, StoreError> {
        self.inner.enqueue(tasks, now_ms).await
    }
    async fn claim(&self, claim: Claim) -> Result<Vec<ClaimedTask>, StoreError> {
        self.inner.claim(claim).await
    }
    async fn renew_claims(
        &self,
        owner: &str,
        renewal: Renewal,
    ) -> Result<RenewedClaims, StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            FAIL => Err(StoreError::unavailable("the store is away")),
            FORGET => Ok(RenewedClaims::default()),
            _ => self.inner.renew_claims(owner, renewal).await,
        }
    }
    async fn complete(&self, completion: Completion) -> Result<(), StoreError> {
        if self.refuse_complete.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("complete is refused"));
        }
        self.inner.complete(completion).await
    }
    async fn sweep_expired(&self, now_ms: u64) -> Result<Vec<TaskId>, StoreError> {
        self.inner.sweep_expired(now_ms).await
    }
    async fn cancel(
        &self,
        target: CancelTarget,
        now_ms: u64,
    ) -> Result<Vec<CancelOutcome>, StoreError> {
        self.inner.cancel(target, now_ms).await
    }
    async fn retry(&self, task: TaskId, retry_base: u32, now_ms: u64) -> Result<(), StoreError> {
        self.inner.retry(task, retry_base, now_ms).await
    }
    async fn set_queue_limit(&self, queue: &str, max: Option<u32>) -> Result<(), StoreError> {
        self.inner.set_queue_limit(queue, max).await
    }
    async fn prune(&self, ended_before_ms: u64, batch: u32) -> Result<u64, StoreError> {
        self.inner.prune(ended_before_ms, batch).await
    }
}

#[async_trait]
impl QueueHistory for Renewals {
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.list_tasks(filter).await
    }
    async fn queue_stats(&self, now_ms: u64) -> Result<Vec<QueueStats>, StoreError> {
        self.inner.queue_stats(now_ms).await
    }
}

/// Logs "started" when an attempt starts and "dropped" when its compute is dropped unfinished;
/// the attempt after the first finishes.
fn hanging_once(log: &Log<&'static str>) -> Handlers {
    sharing("job", log.clone(), |log, args, ctx| async move {
        log.push("started");
        if ctx.key.attempt > 1 {
            return Ok(args);
        }
        let _guard = Dropped(log);
        std::future::pending::<()>().await;
        Ok(args)
    })
}

struct Dropped(Log<&'static str>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.push("dropped");
    }
}

fn worker_on(fixture: &Fixture, queue: &Arc<Renewals>, log: &Log<&'static str>) -> Worker {
    // Not shorter: the worker fences itself when no renewal committed for two thirds of the
    // lease, and with 400 ms a SQLite renewal queued behind the other tests' writes once took
    // longer than that (the worker returned Fenced while its renewals were only forgetting).
    let options = WorkerOptions {
        claim_lease: Duration::from_secs(1),
        ..options()
    };
    let queue: Arc<dyn QueueStore> = queue.clone();
    Worker::new(
        fixture.engine(),
        queue,
        fixture.attempts.clone(),
        Arc::new(hanging_once(log)),
        options,
    )
}

/// A store, a queue on it whose renewals start in `mode`, one task of node `node` with a
/// 400 ms attempt lease, and the log its handler writes to.
async fn one_task(
    kind: Kind,
    mode: u8,
    node: &str,
) -> (Fixture, Arc<Renewals>, TaskId, Log<&'static str>) {
    let fixture = Fixture::new(kind).await;
    let queue = Arc::new(Renewals {
        inner: fixture.queue.clone(),
        mode: AtomicU8::new(mode),
        refuse_complete: AtomicBool::new(false),
    });
    let lease = json!({ "lease_ms": 400 });
    let ids = fixture
        .enqueue(vec![task("run", node, "job", json!(null), lease)])
        .await;
    (fixture, queue, ids[0], Log::default())
}

pub(crate) async fn a_worker_that_cannot_renew_fences_itself_and_writes_nothing(kind: Kind) {
    let (fixture, queue, id, log) = one_task(kind, RENEW, "f").await;
    let worker = worker_on(&fixture, &queue, &log);
    let run = worker.run(Shutdown::default());
    tokio::pin!(run);
    tokio::select! {
        _ = &mut run => panic!("the worker returned"),
        () = eventually("the task started", || async { !log.items().is_empty() }) => {}
    }
    queue.mode.store(FAIL, Ordering::SeqCst);
    let fenced = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the worker stops within the lease");
    assert!(
        matches!(fenced, Err(WorkerError::Fenced { .. })),
        "{fenced:?}"
    );
    assert_eq!(log.items(), vec!["started", "dropped"]);
    // Nothing was written: the task is still claimed, the attempt still in progress.
    assert_eq!(fixture.task(id).await.state, TaskState::Running);
    let states = fixture.attempt_states("run", "f").await;
    assert_eq!(states, vec![AttemptState::InProgress]);

    // Once the leases expire, another worker's sweep and recovery give the task back.
    let report = run_to_end(
        &fixture.worker(Arc::new(hanging_once(&log)), options()),
        Shutdown::default(),
    )
    .await;
    assert_eq!(report.finished, 1);
    let states = fixture.attempt_states("run", "f").await;
    assert_eq!(states, vec![AttemptState::Failed, AttemptState::Finished]);
}

pub(crate) async fn a_task_whose_claim_was_lost_is_dropped_then_run_again(kind: Kind) {
    let (fixture, queue, id, log) = one_task(kind, FORGET, "l").await;
    let worker = worker_on(&fixture, &queue, &log);
    let run = run_to_end(&worker, Shutdown::default());
    tokio::pin!(run);
    tokio::select! {
        _ = &mut run => panic!("the worker returned"),
        () = eventually("the compute was dropped", || async {
            log.items().contains(&"dropped")
        }) => {}
    }
    // Nothing terminal was written for it (a sweep may have taken it back already).
    assert!(!fixture.task(id).await.state.is_ended());
    queue.mode.store(RENEW, Ordering::SeqCst);
    let report = run.await;
    assert_eq!(report.finished, 1);
    // On a loaded machine the task may be swept back and lose its claim once more before the
    // renewals come back: each such run is dropped and abandoned the same way. What holds is
    // that it then runs to its one finished attempt.
    let items = log.items();
    assert_eq!(items[..2], ["started", "dropped"], "{items:?}");
    assert_eq!(items.last(), Some(&"started"), "{items:?}");
    let states = fixture.attempt_states("run", "l").await;
    let (last, earlier) = states.split_last().expect("attempts");
    assert_eq!(*last, AttemptState::Finished, "{states:?}");
    assert!(
        !earlier.is_empty() && earlier.iter().all(|s| *s == AttemptState::Failed),
        "{states:?}"
    );
}

pub(crate) async fn a_task_ends_with_its_attempt_in_one_write(kind: Kind) {
    let (fixture, queue, first, log) = one_task(kind, RENEW, "first").await;
    let more = vec![
        task("run", "second", "job", json!(null), json!({})),
        task("run", "third", "job", json!(null), json!({})),
    ];
    let mut ids = fixture.enqueue(more).await;
    ids.insert(0, first);
    // Every separate completion fails: the tasks can end only with their attempts.
    queue.refuse_complete.store(true, Ordering::SeqCst);
    let handlers =
        Handlers::new().register(
            "job",
            |args: Value, _ctx: TaskContext| async move { Ok(args) },
        );
    let worker = Worker::new(
        fixture.engine(),
        queue.clone(),
        fixture.attempts.clone(),
        Arc::new(handlers),
        options(),
    );
    let report = run_to_end(&worker, Shutdown::default()).await;
    assert_eq!(report.finished, 3, "{report:?}");
    for id in ids {
        let record = fixture.task(id).await;
        assert_eq!(record.state, TaskState::Finished, "{record:?}");
        assert_eq!(record.owner, None);
    }
    assert!(log.items().is_empty());
}
