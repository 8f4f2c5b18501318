//! Pruning takes the history of the tasks it deletes with them, so that a queue's tables do not
//! grow without end, and keeps whatever another task or a live attempt still needs.

use serde_json::json;
use stint_domain::{AttemptState, NodeKey};
use stint_ports::{AttemptEnd, AttemptFilter, Store, TaskEnd};

use crate::Fixture;
use crate::queue_support::{all_tasks, claim, complete, enqueue, failure, new_task};
use crate::support::{accept_end, events_of, failure as attempt_failure, key, start};

/// The attempts of `node`, whatever their iteration.
async fn attempts_of_node(store: &dyn Store, node: &NodeKey) -> usize {
    let filter = AttemptFilter {
        run_id: node.run_id().to_owned(),
        node_id: Some(node.node_id().to_owned()),
        iteration: None,
    };
    store.list_attempts(&filter).await.expect("attempts").len()
}

/// Whether `node` still has its node row and its output.
async fn node_and_output(store: &dyn Store, node: &NodeKey) -> (bool, bool) {
    let row = store.get_node(node).await.expect("get node").is_some();
    let output = store
        .read_output(node)
        .await
        .expect("read output")
        .is_some();
    (row, output)
}

/// An attempt of `node`, begun at `at` and finished with an output.
async fn finished(store: &dyn Store, node: &NodeKey, at: u64) {
    let (_, attempt) = start(store, node, "runner", at).await;
    let end = AttemptEnd::Finished {
        output: json!({"node": node.node_id()}),
        vcs: None,
    };
    accept_end(store, &attempt, end, at + 10, Vec::new()).await;
}

/// A pruned task's node loses its attempts, output and row, and its run loses its events once no
/// node of it is left. A node stays whole while another task still names it or an attempt of it
/// is in progress, and so do its run's events.
pub async fn prune_takes_the_history_of_its_nodes(fixture: &dyn Fixture) {
    let (store, queue) = (fixture.store(), fixture.queue());
    let (ax, ay) = (key("a", "x", 0), key("a", "y", 0));
    let (bx, shared, live) = (key("b", "x", 0), key("b", "shared", 0), key("c", "live", 0));
    finished(&*store, &ax, 100).await;
    let (_, failing) = start(&*store, &ay, "runner", 200).await;
    accept_end(&*store, &failing, attempt_failure("boom"), 210, Vec::new()).await;
    finished(&*store, &bx, 300).await;
    finished(&*store, &shared, 400).await;
    let (_, _in_progress) = start(&*store, &live, "runner", 500).await;
    let ids = enqueue(
        &*queue,
        vec![
            new_task("a", "x"),
            new_task("a", "y"),
            new_task("b", "x"),
            new_task("b", "shared"),
            new_task("b", "shared"),
            new_task("c", "live"),
        ],
    )
    .await;
    claim(&*queue, "w", 6, 1_000).await;
    for id in [ids[0], ids[2], ids[3]] {
        complete(&*queue, id, "w", TaskEnd::Finished, 2_000).await;
    }
    complete(&*queue, ids[1], "w", failure(), 2_000).await;
    let cancelled = TaskEnd::Cancelled {
        error: json!({"code": "TASK_ABORTED", "message": "stop"}),
    };
    complete(&*queue, ids[5], "w", cancelled, 2_000).await;

    assert_eq!(queue.prune(5_000, 100).await.expect("prune"), 5);

    let left: Vec<_> = all_tasks(&*queue).await.iter().map(|t| t.id).collect();
    assert_eq!(left, vec![ids[4]], "the running task of b/shared stays");
    for gone in [&ax, &ay, &bx] {
        assert_eq!(
            attempts_of_node(&*store, gone).await,
            0,
            "{gone}'s attempts"
        );
        assert_eq!(
            node_and_output(&*store, gone).await,
            (false, false),
            "{gone}"
        );
    }
    assert!(
        events_of(&*store, "a").await.is_empty(),
        "run a has no node left"
    );
    let mut runs: Vec<String> = store
        .list_runs()
        .await
        .expect("runs")
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    runs.sort();
    assert_eq!(runs, vec!["b", "c"], "run a is gone");

    assert_eq!(
        attempts_of_node(&*store, &shared).await,
        1,
        "named by a task"
    );
    assert_eq!(node_and_output(&*store, &shared).await, (true, true));
    assert!(
        !events_of(&*store, "b").await.is_empty(),
        "b/shared is left"
    );
    let attempts = store
        .list_attempts(&AttemptFilter {
            run_id: "c".to_owned(),
            node_id: None,
            iteration: None,
        })
        .await
        .expect("attempts");
    let states: Vec<_> = attempts.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        vec![AttemptState::InProgress],
        "a live attempt stays"
    );
    assert!(store.get_node(&live).await.expect("get node").is_some());
}
