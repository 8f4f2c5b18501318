//! Claiming queued tasks: exclusivity under racing claimers, claim order, due times and the
//! per-queue limit on running tasks.

use std::collections::HashSet;
use std::sync::Arc;

use stint_domain::{TaskId, TaskState};
use stint_ports::{NewTask, QueueStore, TaskEnd};

use crate::Fixture;
use crate::queue_support::{claim, claim_in, complete, enqueue, enqueue_numbered, new_task, task};

/// Claimers racing in one round: they wait for each other, then claim `max` at a time, each
/// claim held for a millisecond (as a worker would start it) before the next.
async fn race_claims(
    racers: Vec<Arc<dyn QueueStore>>,
    queues: &'static [&'static str],
    max: u32,
) -> Vec<Vec<TaskId>> {
    let ready = Arc::new(tokio::sync::Barrier::new(racers.len()));
    let mut handles = Vec::new();
    for (index, queue) in racers.into_iter().enumerate() {
        let ready = ready.clone();
        handles.push(tokio::spawn(async move {
            ready.wait().await;
            let owner = format!("worker-{index}");
            let mut won = Vec::new();
            loop {
                let claimed = claim_in(&*queue, queues, &owner, max, 1_000).await;
                if claimed.is_empty() {
                    return won;
                }
                won.extend(claimed);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }));
    }
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("claimer finished"));
    }
    results
}

/// Four claimers on two handles racing over 60 tasks take every task exactly once, and the race
/// really happened: more than one claimer got tasks.
pub async fn racing_claimers_take_each_task_once(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let second = fixture.second_queue().await;
    let ids = enqueue_numbered(&*queue, "run", 60).await;
    let racers = vec![queue.clone(), second.clone(), queue.clone(), second];
    let results = race_claims(racers, &["default"], 2).await;
    let winners = results.iter().filter(|won| !won.is_empty()).count();
    assert!(winners >= 2, "the claimers never met: {results:?}");
    let mut claimed: Vec<TaskId> = results.into_iter().flatten().collect();
    let unique: HashSet<TaskId> = claimed.iter().copied().collect();
    assert_eq!(unique.len(), claimed.len(), "a task was claimed twice");
    claimed.sort_unstable();
    assert_eq!(claimed, ids);
    for id in ids {
        let record = task(&*queue, id).await;
        assert_eq!(record.state, TaskState::Running);
        assert_eq!(record.claims, 1);
    }
}

/// Claims take the highest priority first, then the earliest due time, then the lowest id; a task
/// due later is not claimable before its time, and only the named queues are claimed from.
pub async fn claims_follow_priority_then_due_time_then_id(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let at = |node: &str, priority: i32, run_at_ms: u64| NewTask {
        priority,
        run_at_ms,
        ..new_task("run", node)
    };
    let other = NewTask {
        queue: "other".to_owned(),
        ..new_task("run", "other")
    };
    let ids = enqueue(
        &*queue,
        vec![
            at("low", -1, 0),
            at("late", 0, 50),
            at("early-b", 0, 10),
            at("early-a", 0, 10),
            at("urgent", 5, 90),
            at("future", 9, 5_000),
            other,
        ],
    )
    .await;
    let (low, late, early_b, early_a, urgent, future, other) =
        (ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6]);
    let mut order = Vec::new();
    for _ in 0..6 {
        order.extend(claim(&*queue, "w", 1, 1_000).await);
    }
    assert_eq!(order, vec![urgent, early_b, early_a, late, low]);
    assert_eq!(claim(&*queue, "w", 5, 4_999).await, Vec::<TaskId>::new());
    assert_eq!(claim(&*queue, "w", 5, 5_000).await, vec![future]);
    assert_eq!(task(&*queue, other).await.state, TaskState::Ready);
    let batch = claim_in(&*queue, &["default", "other"], "w", 5, 5_000).await;
    assert_eq!(batch, vec![other]);
}

/// With a limit of 2 running tasks, claims (even racing ones) never hold more than 2 of the
/// queue; releasing one frees a slot; other queues are not limited; lifting the limit frees all.
pub async fn queue_limit_caps_running_tasks(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let second = fixture.second_queue().await;
    queue
        .set_queue_limit("default", Some(2))
        .await
        .expect("limit");
    let free = NewTask {
        queue: "free".to_owned(),
        ..new_task("run", "free")
    };
    let mut tasks: Vec<NewTask> = (0..6).map(|i| new_task("run", &format!("n{i}"))).collect();
    tasks.push(free);
    enqueue(&*queue, tasks).await;
    let results = race_claims(vec![queue.clone(), second], &["default", "free"], 5).await;
    let claimed: Vec<TaskId> = results.iter().flatten().copied().collect();
    assert_eq!(
        claimed.len(),
        3,
        "two of the limited queue and the free one"
    );
    let running_default = |q: Arc<dyn QueueStore>| async move {
        let filter = stint_ports::TaskFilter {
            queue: Some("default".to_owned()),
            state: Some(TaskState::Running),
            limit: 100,
        };
        q.list_tasks(&filter).await.expect("list")
    };
    let running = running_default(queue.clone()).await;
    assert_eq!(running.len(), 2);
    assert!(claim(&*queue, "late", 5, 2_000).await.is_empty());

    let held = &running[0];
    let owner = held.owner.clone().expect("a running task has an owner");
    complete(&*queue, held.id, &owner, TaskEnd::Release, 2_000).await;
    assert_eq!(claim(&*queue, "late", 5, 2_000).await.len(), 1);
    assert!(claim(&*queue, "late", 5, 2_000).await.is_empty());

    queue.set_queue_limit("default", None).await.expect("lift");
    assert_eq!(claim(&*queue, "late", 5, 2_000).await.len(), 4);
    assert_eq!(running_default(queue).await.len(), 6);
}
