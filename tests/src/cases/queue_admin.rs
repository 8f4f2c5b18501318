//! The operator's writes and reads of the queue: cancel, retry, prune and the queue counts.

use stint_domain::{QueueStats, TaskState};
use stint_ports::{CancelOutcome, CancelTarget, NewTask, TaskEnd};

use crate::Fixture;
use crate::queue_support::{
    CLAIM_LEASE_MS, all_tasks, boom, claim, complete, enqueue, enqueue_one, failure, new_task, task,
};
use crate::support::assert_conflict;

/// Cancelling a run cancels its ready tasks at once, asks its running ones to stop (they stay
/// running until their worker ends them, or the sweep does once their lease expired), leaves
/// its ended ones and other runs alone.
pub async fn cancel_ends_ready_and_flags_running_tasks(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let ids = enqueue(
        &*queue,
        vec![
            new_task("r", "done"),
            new_task("r", "running"),
            new_task("r", "ready"),
            new_task("other", "ready"),
        ],
    )
    .await;
    let (done, running, ready, other) = (ids[0], ids[1], ids[2], ids[3]);
    claim(&*queue, "w", 2, 1_000).await;
    complete(&*queue, done, "w", TaskEnd::Finished, 1_100).await;

    let outcomes = queue
        .cancel(CancelTarget::Run("r".to_owned()), 1_200)
        .await
        .expect("cancel");
    assert_eq!(
        outcomes,
        vec![
            CancelOutcome::AlreadyEnded(done, TaskState::Finished),
            CancelOutcome::Requested(running),
            CancelOutcome::Cancelled(ready),
        ]
    );
    let cancelled = task(&*queue, ready).await;
    assert_eq!(cancelled.state, TaskState::Cancelled);
    assert_eq!(cancelled.ended_at_ms, Some(1_200));
    let flagged = task(&*queue, running).await;
    assert_eq!(flagged.state, TaskState::Running);
    assert!(flagged.cancel_requested);
    assert_eq!(task(&*queue, done).await.ended_at_ms, Some(1_100));
    assert_eq!(task(&*queue, other).await.state, TaskState::Ready);
    assert!(claim(&*queue, "w", 5, 1_300).await == vec![other]);

    // A cancel-requested task whose worker died is cancelled by the sweep, not run again.
    let swept = queue.sweep_expired(1_000 + CLAIM_LEASE_MS + 1).await;
    assert_eq!(swept.expect("sweep"), vec![running]);
    assert_eq!(task(&*queue, running).await.state, TaskState::Cancelled);
    let single = queue.cancel(CancelTarget::Task(other), 1_400).await;
    assert_eq!(
        single.expect("cancel"),
        vec![CancelOutcome::Requested(other)]
    );
    let unknown = queue
        .cancel(CancelTarget::Run("none".to_owned()), 1_400)
        .await;
    assert!(unknown.expect("cancel").is_empty());
}

/// A failed or cancelled task comes back ready now, with the given retry base and no
/// cancellation request; any other state, an unknown task, or a unique key another live task
/// took meanwhile, is a conflict.
pub async fn retry_requeues_failed_and_cancelled_tasks(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let keyed = NewTask {
        unique_key: Some("k".to_owned()),
        ..new_task("r", "keyed")
    };
    let ids = enqueue(
        &*queue,
        vec![new_task("r", "fails"), new_task("r", "cancelled")],
    )
    .await;
    let (failed, cancelled) = (ids[0], ids[1]);
    claim(&*queue, "w", 2, 1_000).await;
    complete(&*queue, failed, "w", failure(), 1_100).await;
    let stop = TaskEnd::Cancelled { error: boom() };
    queue
        .cancel(CancelTarget::Task(cancelled), 1_150)
        .await
        .expect("cancel");
    complete(&*queue, cancelled, "w", stop, 1_200).await;

    queue.retry(failed, 3, 2_000).await.expect("retry failed");
    let record = task(&*queue, failed).await;
    assert_eq!(record.state, TaskState::Ready);
    assert_eq!((record.retry_base, record.run_at_ms), (3, 2_000));
    assert_eq!((record.ended_at_ms, record.updated_at_ms), (None, 2_000));
    queue
        .retry(cancelled, 0, 2_000)
        .await
        .expect("retry cancelled");
    let record = task(&*queue, cancelled).await;
    assert_eq!(record.state, TaskState::Ready);
    assert!(!record.cancel_requested, "the old request is forgotten");

    assert_conflict(queue.retry(failed, 4, 2_100).await, "retry of a ready task");
    let unknown = stint_domain::TaskId(failed.0 + 1_000);
    assert_conflict(queue.retry(unknown, 0, 2_100).await, "retry of no task");
    claim(&*queue, "w", 1, 2_100).await;
    assert_conflict(
        queue.retry(failed, 4, 2_200).await,
        "retry of a running task",
    );

    let first = enqueue_one(&*queue, keyed.clone()).await;
    claim(&*queue, "w", 5, 2_300).await;
    complete(&*queue, first, "w", failure(), 2_400).await;
    let holder = enqueue_one(&*queue, keyed).await;
    let taken = queue.retry(first, 1, 2_500).await;
    match taken {
        Err(error) => assert!(error.message().contains("'k'"), "{error}"),
        Ok(()) => panic!("retry took a key held by {holder}"),
    }
    assert_eq!(task(&*queue, first).await.state, TaskState::Failed);
}

/// Pruning deletes ended tasks that ended before the cut, at most a batch per call, oldest
/// first; tasks that have not ended, or ended later, stay.
pub async fn prune_deletes_ended_tasks_in_batches(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let tasks = (0..8).map(|i| new_task("r", &format!("n{i}"))).collect();
    let ids = enqueue(&*queue, tasks).await;
    claim(&*queue, "w", 7, 1_000).await;
    for (offset, id) in ids[..5].iter().enumerate() {
        complete(&*queue, *id, "w", TaskEnd::Finished, 2_000 + offset as u64).await;
    }
    complete(&*queue, ids[5], "w", TaskEnd::Finished, 9_000).await;
    let mut counts = Vec::new();
    loop {
        let deleted = queue.prune(5_000, 2).await.expect("prune");
        counts.push(deleted);
        if deleted < 2 {
            break;
        }
    }
    assert_eq!(counts, vec![2, 2, 1]);
    let left: Vec<_> = all_tasks(&*queue).await.iter().map(|t| t.id).collect();
    assert_eq!(
        left,
        ids[5..].to_vec(),
        "later ended, running and ready stay"
    );
}

/// The counts of each queue: ready (due), scheduled (not yet due), running and ended tasks, the
/// age of the oldest due task, and the limit, also for a limited queue without tasks.
pub async fn queue_stats_count_each_state(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let at = |node: &str, queue: &str, run_at_ms: u64| NewTask {
        queue: queue.to_owned(),
        run_at_ms,
        ..new_task("r", node)
    };
    let ids = enqueue(
        &*queue,
        vec![
            at("run", "a", 0),
            at("fail", "a", 0),
            at("due", "a", 400),
            at("due-later", "a", 700),
            at("future", "a", 5_000),
            at("b", "b", 0),
        ],
    )
    .await;
    claim_two(&*queue, ids[0], ids[1]).await;
    queue.set_queue_limit("a", Some(4)).await.expect("limit");
    queue
        .set_queue_limit("empty", Some(1))
        .await
        .expect("limit");
    let stats = queue.queue_stats(1_000).await.expect("stats");
    let expected = vec![
        QueueStats {
            queue: "a".to_owned(),
            ready: 2,
            scheduled: 1,
            running: 1,
            failed: 1,
            oldest_ready_age_ms: Some(600),
            max_running: Some(4),
            ..QueueStats::default()
        },
        QueueStats {
            queue: "b".to_owned(),
            ready: 1,
            oldest_ready_age_ms: Some(1_000),
            ..QueueStats::default()
        },
        QueueStats {
            queue: "empty".to_owned(),
            max_running: Some(1),
            ..QueueStats::default()
        },
    ];
    assert_eq!(stats, expected);
}

/// Claims the first two tasks of queue "a" and fails the second.
async fn claim_two(
    queue: &dyn stint_ports::QueueStore,
    run: stint_domain::TaskId,
    fail: stint_domain::TaskId,
) {
    let claimed = crate::queue_support::claim_in(queue, &["a"], "w", 2, 100).await;
    assert_eq!(claimed, vec![run, fail]);
    complete(queue, fail, "w", failure(), 200).await;
}
