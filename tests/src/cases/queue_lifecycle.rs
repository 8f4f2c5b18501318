//! A claimed task's life: owner-checked completion, retry and release, lease renewal and the
//! sweep of expired leases.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use stint_domain::{AttemptState, TaskError, TaskId, TaskState};
use stint_ports::{
    AttemptEnd, BeginAttempt, BeginFor, ClaimedTask, Completion, EndAttempt, NodeAttempts, Renewal,
    TaskEnd,
};

use crate::Fixture;
use crate::queue_support::{
    CLAIM_LEASE_MS, boom, claim, claim_of, complete, enqueue, enqueue_numbered, enqueue_one,
    failure, new_task, task,
};
use crate::support::{
    accept_end, assert_conflict, attempt_record, attempts_of, begin_at, key, start,
};

/// Only the owner of a running task can end it: another owner, a task not running and a task
/// that already ended are conflicts that change nothing. Ending records state, time and error.
pub async fn complete_is_owner_checked(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let ids = enqueue(&*queue, vec![new_task("r", "a"), new_task("r", "b")]).await;
    let ready = enqueue_one(&*queue, new_task("r", "ready")).await;
    assert_eq!(claim(&*queue, "w", 2, 1_000).await, ids);
    let wrong = queue.complete(Completion::new(
        ids[0],
        "intruder",
        TaskEnd::Finished,
        1_500,
    ));
    assert_conflict(wrong.await, "complete by another owner");
    let unclaimed = queue.complete(Completion::new(ready, "w", TaskEnd::Finished, 1_500));
    assert_conflict(unclaimed.await, "complete of a ready task");
    assert_eq!(task(&*queue, ids[0]).await.state, TaskState::Running);

    complete(&*queue, ids[0], "w", TaskEnd::Finished, 2_000).await;
    complete(&*queue, ids[1], "w", failure(), 2_100).await;
    let again = queue.complete(Completion::new(ids[0], "w", TaskEnd::Finished, 2_200));
    assert_conflict(again.await, "complete of an ended task");

    let finished = task(&*queue, ids[0]).await;
    assert_eq!(finished.state, TaskState::Finished);
    assert_eq!(finished.ended_at_ms, Some(2_000));
    assert_eq!((finished.owner, finished.lease_expires_at_ms), (None, None));
    assert_eq!(finished.last_error, None);
    let failed = task(&*queue, ids[1]).await;
    assert_eq!(failed.state, TaskState::Failed);
    assert_eq!(failed.ended_at_ms, Some(2_100));
    assert_eq!(failed.last_error, Some(boom()));
}

/// A retryable failure puts the task back to ready with its error and new due time: not
/// claimable before it, claimable (and counted as a second claim) from it.
pub async fn retry_end_requeues_at_its_time(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let id = enqueue_one(&*queue, new_task("r", "a")).await;
    claim(&*queue, "w", 1, 1_000).await;
    let retry = TaskEnd::Retry {
        run_at_ms: 5_000,
        error: boom(),
    };
    complete(&*queue, id, "w", retry, 1_200).await;
    let record = task(&*queue, id).await;
    assert_eq!(record.state, TaskState::Ready);
    assert_eq!(record.run_at_ms, 5_000);
    assert_eq!(record.last_error, Some(boom()));
    assert_eq!((record.owner, record.ended_at_ms), (None, None));
    assert!(claim(&*queue, "w2", 1, 4_999).await.is_empty());
    assert_eq!(claim(&*queue, "w2", 1, 5_000).await, vec![id]);
    assert_eq!(task(&*queue, id).await.claims, 2);
}

/// A released task is ready again at once (its due time and error unchanged) for any worker;
/// one whose cancellation was asked for is cancelled instead, and so is one given back for a
/// retry.
pub async fn release_gives_the_task_back_at_once(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let ids = enqueue(
        &*queue,
        vec![new_task("r", "a"), new_task("r", "b"), new_task("r", "c")],
    )
    .await;
    let (id, stopped, retried) = (ids[0], ids[1], ids[2]);
    claim(&*queue, "draining", 3, 1_000).await;
    for asked in [stopped, retried] {
        let target = stint_ports::CancelTarget::Task(asked);
        queue.cancel(target, 1_050).await.expect("cancel");
    }
    complete(&*queue, stopped, "draining", TaskEnd::Release, 1_100).await;
    let retry = TaskEnd::Retry {
        run_at_ms: 0,
        error: boom(),
    };
    complete(&*queue, retried, "draining", retry, 1_100).await;
    for cancelled in [stopped, retried] {
        let record = task(&*queue, cancelled).await;
        assert_eq!(record.state, TaskState::Cancelled, "{cancelled}");
        assert_eq!(record.ended_at_ms, Some(1_100));
    }
    complete(&*queue, id, "draining", TaskEnd::Release, 1_100).await;
    let record = task(&*queue, id).await;
    assert_eq!(record.state, TaskState::Ready);
    assert_eq!((record.run_at_ms, record.last_error), (0, None));
    assert_eq!(record.updated_at_ms, 1_100);
    assert_eq!(claim(&*queue, "other", 1, 1_100).await, vec![id]);
    let late = queue.complete(Completion::new(id, "draining", TaskEnd::Finished, 1_200));
    assert_conflict(late.await, "complete after releasing");
}

/// Running tasks whose lease expired go back to ready, each exactly once with two sweepers on
/// two handles at once; a lease that ends exactly now is not expired; the old owner can no
/// longer end a swept task.
pub async fn sweep_takes_back_each_expired_lease_once(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let second = fixture.second_queue().await;
    let ids = enqueue_numbered(&*queue, "r", 12).await;
    let dead = claim(&*queue, "dead", 10, 1_000).await;
    let live = claim(&*queue, "live", 2, 1_500).await;
    let expiry = 1_000 + CLAIM_LEASE_MS;
    assert!(queue.sweep_expired(expiry).await.expect("sweep").is_empty());

    let (first, other) = tokio::join!(
        queue.sweep_expired(expiry + 1),
        second.sweep_expired(expiry + 1)
    );
    let mut swept: Vec<TaskId> = first.expect("sweep");
    swept.extend(other.expect("sweep"));
    let unique: HashSet<TaskId> = swept.iter().copied().collect();
    assert_eq!(unique.len(), swept.len(), "a task was swept twice");
    swept.sort_unstable();
    assert_eq!(swept, dead);
    for id in &dead {
        let record = task(&*queue, *id).await;
        assert_eq!(record.state, TaskState::Ready);
        assert_eq!((record.owner, record.lease_expires_at_ms), (None, None));
    }
    for id in &live {
        assert_eq!(task(&*queue, *id).await.state, TaskState::Running);
    }
    let zombie = queue.complete(Completion::new(
        dead[0],
        "dead",
        TaskEnd::Finished,
        expiry + 2,
    ));
    assert_conflict(zombie.await, "complete after the sweep");
    assert_eq!(ids.len(), dead.len() + live.len());
}

/// Renewal extends every running task of the owner (and no other's), so the sweep spares them,
/// and reports which of them have a cancellation request.
pub async fn renew_extends_leases_and_reports_cancel_requests(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let tasks = (0..4).map(|i| new_task("r", &format!("n{i}"))).collect();
    let ids = enqueue(&*queue, tasks).await;
    claim(&*queue, "w1", 3, 1_000).await;
    claim(&*queue, "w2", 1, 1_000).await;
    let outcome = queue
        .cancel(stint_ports::CancelTarget::Task(ids[1]), 1_500)
        .await
        .expect("cancel");
    assert_eq!(outcome, vec![stint_ports::CancelOutcome::Requested(ids[1])]);

    let renewed = queue
        .renew_claims(
            "w1",
            Renewal {
                now_ms: 5_000,
                lease_ms: CLAIM_LEASE_MS,
            },
        )
        .await
        .expect("renew");
    assert_eq!(renewed.renewed, ids[..3].to_vec());
    assert_eq!(renewed.cancel_requested, vec![ids[1]]);
    assert_eq!(
        task(&*queue, ids[0]).await.lease_expires_at_ms,
        Some(5_000 + CLAIM_LEASE_MS)
    );
    let swept = queue.sweep_expired(1_000 + CLAIM_LEASE_MS + 1).await;
    assert_eq!(
        swept.expect("sweep"),
        vec![ids[3]],
        "only w2's lease expired"
    );
    let none = queue
        .renew_claims(
            "nobody",
            Renewal {
                now_ms: 5_000,
                lease_ms: CLAIM_LEASE_MS,
            },
        )
        .await;
    assert_eq!(none.expect("renew"), stint_ports::RenewedClaims::default());
}

/// An attempt's terminal write ends the queue task it ran for in the same transaction, while
/// the task's claim is still the completion's owner's; once the claim is gone (swept and taken
/// by another worker) the attempt's end is still written, and the task is left as it is.
pub async fn attempt_end_ends_its_claimed_task_in_one_write(fixture: &dyn Fixture) {
    let (store, queue) = (fixture.store(), fixture.queue());
    let ids = enqueue(&*queue, vec![new_task("r", "a"), new_task("r", "b")]).await;
    assert_eq!(claim(&*queue, "w", 2, 1_000).await, ids);
    let (_, first) = start(&*store, &key("r", "a", 0), "attempt a", 1_100).await;
    let (_, second) = start(&*store, &key("r", "b", 0), "attempt b", 1_100).await;
    let ending = |task: TaskId, end: TaskEnd| EndAttempt {
        task: Some(Completion::new(task, "w", end, 2_000)),
        ..EndAttempt::new(
            AttemptEnd::Finished {
                output: json!({ "n": 1 }),
                vcs: None,
            },
            2_000,
        )
    };

    let ended = store.end_attempt(&first, ending(ids[0], TaskEnd::Finished));
    assert!(ended.await.expect("end of a").task_ended);
    let finished = task(&*queue, ids[0]).await;
    assert_eq!(finished.state, TaskState::Finished);
    assert_eq!((finished.ended_at_ms, finished.owner), (Some(2_000), None));
    assert_eq!(
        attempt_record(&*store, &first).await.state,
        AttemptState::Finished
    );

    // The claim on b expires and another worker takes it: the attempt still ends, the task
    // stays the other worker's.
    let swept = queue.sweep_expired(1_000 + CLAIM_LEASE_MS + 1).await;
    assert_eq!(swept.expect("sweep"), vec![ids[1]]);
    assert_eq!(claim(&*queue, "w2", 1, 20_000).await, vec![ids[1]]);
    let ended = store.end_attempt(&second, ending(ids[1], TaskEnd::Finished));
    assert!(!ended.await.expect("end of b").task_ended);
    let taken = task(&*queue, ids[1]).await;
    assert_eq!(
        (taken.state, taken.owner.as_deref()),
        (TaskState::Running, Some("w2"))
    );
    assert_eq!(
        attempt_record(&*store, &second).await.state,
        AttemptState::Finished
    );
}

/// A claim comes with what its node's attempts say (iteration 0), or says it did not read them:
/// none for a fresh node; the last one's state, retryable flag and error, and the failures.
pub async fn a_claim_reads_its_nodes_attempts(fixture: &dyn Fixture) {
    let (store, queue) = (fixture.store(), fixture.queue());
    let (_, done) = start(&*store, &key("r", "done", 0), "earlier", 100).await;
    let finished = AttemptEnd::Finished {
        output: json!(1),
        vcs: None,
    };
    accept_end(&*store, &done, finished, 200, Vec::new()).await;
    for (n, retryable) in [(1, true), (2, false)] {
        let (_, failing) = start(&*store, &key("r", "failing", 0), "earlier", 300 + n).await;
        let end = AttemptEnd::Failed {
            error: TaskError::task_failed(format!("boom {n}")),
            retryable,
        };
        accept_end(&*store, &failing, end, 400 + n, Vec::new()).await;
    }
    let nodes = ["fresh", "done", "failing"];
    enqueue(
        &*queue,
        nodes.iter().map(|node| new_task("r", node)).collect(),
    )
    .await;

    let claimed = queue
        .claim(claim_of(&["default"], "w", 3, 1_000))
        .await
        .expect("claim");
    let read: Vec<(String, Option<NodeAttempts>)> = claimed
        .into_iter()
        .map(|claimed| (claimed.task.node_id, claimed.attempts))
        .collect();
    let said = |node: &str| {
        let (_, attempts) = read.iter().find(|(id, _)| id == node).expect("claimed");
        attempts.clone()
    };
    // A store may leave them unread (the worker then reads them itself); these three read them.
    assert_eq!(
        said("fresh"),
        Some(NodeAttempts {
            last: None,
            failed: 0
        })
    );
    let done = said("done").expect("read").last.expect("an attempt");
    assert_eq!((done.state, done.retryable), (AttemptState::Finished, None));
    let failing = said("failing").expect("read");
    assert_eq!(failing.failed, 2);
    let last = failing.last.expect("an attempt");
    assert_eq!(
        (last.state, last.retryable),
        (AttemptState::Failed, Some(false))
    );
    assert_eq!(last.error.expect("its error").message, "boom 2");
}

/// Begins the attempts of a claim's tasks as `owner-<node>`, except for the nodes it skips.
struct BeginAllBut {
    skipped: &'static str,
    asked: std::sync::Mutex<Vec<String>>,
}

impl BeginFor for BeginAllBut {
    fn begin_for(&self, task: &ClaimedTask) -> Option<BeginAttempt> {
        let node = task.task.node_id.clone();
        self.asked.lock().expect("not poisoned").push(node.clone());
        (node != self.skipped).then(|| {
            let owner = format!("owner-{node}");
            begin_at(&key(&task.task.run_id, &node, 0), &owner, 1_000)
        })
    }
}

/// A claim that begins attempts takes its tasks as a claim does and, for each task it was given
/// a begin for, either begins that attempt (numbered after the node's earlier ones, owned by the
/// begin's owner, in progress) or begins none: never one beside an attempt in progress, and
/// none for a task it was given no begin for. A store that begins nothing in its claims leaves
/// every task for its caller to begin.
pub async fn a_claim_begins_only_what_it_may(fixture: &dyn Fixture) {
    let (store, queue) = (fixture.store(), fixture.queue());
    let (_, busy) = start(&*store, &key("r", "busy", 0), "earlier", 100).await;
    let nodes = ["fresh", "busy", "skipped"];
    let ids = enqueue(
        &*queue,
        nodes.iter().map(|node| new_task("r", node)).collect(),
    )
    .await;
    let begins = Arc::new(BeginAllBut {
        skipped: "skipped",
        asked: std::sync::Mutex::new(Vec::new()),
    });
    let taken = queue
        .claim_and_begin(claim_of(&["default"], "w", 3, 1_000), begins.clone())
        .await
        .expect("claim");

    let mut claimed: Vec<TaskId> = taken.iter().map(|taken| taken.claimed.task.id).collect();
    claimed.sort_unstable();
    assert_eq!(claimed, ids, "every task is claimed");
    for id in &ids {
        let task = task(&*queue, *id).await;
        assert_eq!(
            (task.state, task.owner.as_deref()),
            (TaskState::Running, Some("w"))
        );
    }
    let begun = |node: &str| {
        taken
            .iter()
            .find(|taken| taken.claimed.task.node_id == node)
            .expect("claimed")
            .begun
            .clone()
    };
    match begun("fresh") {
        Some(Ok(fresh)) => {
            assert_eq!((fresh.attempt, fresh.failed_before), (1, 0));
            let records = attempts_of(&*store, &key("r", "fresh", 0)).await;
            let owned: Vec<(u32, AttemptState, &str)> = records
                .iter()
                .map(|record| (record.attempt, record.state, record.owner.as_str()))
                .collect();
            assert_eq!(owned, vec![(1, AttemptState::InProgress, "owner-fresh")]);
        }
        Some(Err(error)) => panic!("the fresh node's begin was refused: {error}"),
        None => assert!(
            attempts_of(&*store, &key("r", "fresh", 0)).await.is_empty(),
            "nothing begun, nothing written"
        ),
    }
    match begun("busy") {
        Some(Err(error)) => assert!(error.is_conflict(), "{error}"),
        Some(Ok(attempt)) => panic!("began {attempt:?} beside an attempt in progress"),
        None => {}
    }
    let busy_attempts = attempts_of(&*store, &busy.key.node).await;
    assert_eq!(
        busy_attempts.len(),
        1,
        "the busy node keeps its one attempt"
    );
    assert_eq!(busy_attempts[0].state, AttemptState::InProgress);
    assert_eq!(begun("skipped"), None);
    assert!(
        attempts_of(&*store, &key("r", "skipped", 0))
            .await
            .is_empty()
    );
    let asked = begins.asked.lock().expect("not poisoned").len();
    assert!(asked <= 3, "asked once per task at most: {asked}");
}
