//! Enqueueing: unique keys (also under racing submitters) and all-or-nothing batches.

use std::sync::Arc;

use stint_domain::{TaskId, TaskState};
use stint_ports::{Enqueued, NewTask, StoreError, TaskEnd};

use crate::Fixture;
use crate::queue_support::{all_tasks, claim, complete, enqueue, new_task, task};

fn keyed(node: &str, key: &str) -> NewTask {
    NewTask {
        unique_key: Some(key.to_owned()),
        ..new_task("run", node)
    }
}

/// A second task with the key of a task that has not ended is not stored: the answer is the
/// holder's id. Once the holder ended, the key is free again. Within one batch, the second task
/// with a key gets the first one's id.
pub async fn unique_key_answers_the_live_holder(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let first = enqueue(&*queue, vec![keyed("a", "k")]).await[0];
    let again = queue
        .enqueue(vec![keyed("b", "k"), keyed("c", "other")], 200)
        .await
        .expect("enqueue");
    assert_eq!(
        again[0],
        Enqueued {
            id: first,
            existing: true
        }
    );
    assert!(!again[1].existing);
    assert_eq!(all_tasks(&*queue).await.len(), 2, "nothing stored for b");

    // Running still holds the key.
    assert_eq!(claim(&*queue, "w", 1, 1_000).await, vec![first]);
    let running = queue.enqueue(vec![keyed("d", "k")], 300).await;
    assert_eq!(running.expect("enqueue")[0].id, first);

    complete(&*queue, first, "w", TaskEnd::Finished, 1_100).await;
    let batch = queue
        .enqueue(vec![keyed("e", "k"), keyed("f", "k")], 400)
        .await
        .expect("enqueue");
    assert!(!batch[0].existing, "the key is free once its holder ended");
    assert!(batch[0].id > again[1].id);
    assert_eq!(
        batch[1],
        Enqueued {
            id: batch[0].id,
            existing: true
        }
    );
    assert_eq!(task(&*queue, batch[0].id).await.node_id, "e");
}

/// Eight submitters on two handles racing to enqueue one key store one task: exactly one of
/// them stored it, and all got its id.
pub async fn racing_enqueues_store_one_task_per_key(fixture: &dyn Fixture) {
    let handles = [fixture.queue(), fixture.second_queue().await];
    let ready = Arc::new(tokio::sync::Barrier::new(8));
    let mut racers = Vec::new();
    for index in 0..8 {
        let queue = handles[index % 2].clone();
        let ready = ready.clone();
        racers.push(tokio::spawn(async move {
            ready.wait().await;
            let task = keyed(&format!("node-{index}"), "one");
            queue.enqueue(vec![task], 100).await.expect("enqueue")[0]
        }));
    }
    let mut answers = Vec::new();
    for racer in racers {
        answers.push(racer.await.expect("racer finished"));
    }
    assert_eq!(answers.iter().filter(|answer| !answer.existing).count(), 1);
    let ids: Vec<TaskId> = answers.iter().map(|answer| answer.id).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{answers:?}");
    let stored = all_tasks(&*handles[0]).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, ids[0]);
}

/// A batch with one invalid task (an empty queue name, after two valid ones) stores nothing and
/// is refused with a conflict naming the task; the next batch is stored whole.
pub async fn an_invalid_task_fails_the_whole_batch(fixture: &dyn Fixture) {
    let queue = fixture.queue();
    let invalid = NewTask {
        queue: String::new(),
        ..new_task("run", "c")
    };
    let refused = queue
        .enqueue(vec![new_task("run", "a"), keyed("b", "k"), invalid], 100)
        .await;
    match refused {
        Err(StoreError::Conflict { message }) => {
            assert!(message.contains("task 2 of the batch"), "{message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(all_tasks(&*queue).await.is_empty(), "nothing was stored");

    let ids = enqueue(&*queue, vec![new_task("run", "a"), keyed("b", "k")]).await;
    assert!(ids[0] < ids[1]);
    let stored = all_tasks(&*queue).await;
    assert_eq!(stored.len(), 2);
    let first = &stored[0];
    assert_eq!(
        (
            first.state,
            first.queue.as_str(),
            first.priority,
            first.claims
        ),
        (TaskState::Ready, "default", 0, 0)
    );
    assert_eq!((first.created_at_ms, first.updated_at_ms), (100, 100));
    assert_eq!(first.spec["command"][1], "a");
    assert_eq!(stored[1].unique_key.as_deref(), Some("k"));
}

/// A batch answers each task with its own id, in input order, ids ascending: with keys or
/// without, and submitted by two racing submitters at once.
pub async fn a_batch_answers_each_task_its_own_id(fixture: &dyn Fixture) {
    let (queue, second) = (fixture.queue(), fixture.second_queue().await);
    let batch = |prefix: &str, keyed_too: bool| -> Vec<NewTask> {
        (0..40)
            .map(|i| {
                let node = format!("{prefix}{i:02}");
                if keyed_too && i % 3 == 0 {
                    keyed(&node, &node)
                } else {
                    new_task("run", &node)
                }
            })
            .collect()
    };
    let (a, b, c) = tokio::join!(
        queue.enqueue(batch("a", false), 100),
        second.enqueue(batch("b", false), 100),
        queue.enqueue(batch("c", true), 100),
    );
    for (prefix, answers) in [("a", a), ("b", b), ("c", c)] {
        let ids: Vec<TaskId> = answers
            .expect("enqueue")
            .into_iter()
            .map(|answer| answer.id)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{prefix}: {ids:?}");
        for (i, id) in ids.into_iter().enumerate() {
            assert_eq!(task(&*queue, id).await.node_id, format!("{prefix}{i:02}"));
        }
    }
}
