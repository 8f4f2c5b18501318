//! Listing runs, nodes and attempts.

use stint_domain::{AttemptState, RunSummary};
use stint_ports::{AttemptEnd, AttemptFilter, Store};

use crate::Fixture;
use crate::support::{accept_end, cancellation, fail, key, start};

/// Starts an attempt of `node_id` in `run_id` at `at` and leaves it in `state` at `at + 10`.
async fn node_in_state(
    store: &dyn Store,
    run_id: &str,
    node_id: &str,
    iteration: u32,
    state: AttemptState,
    at: u64,
) {
    let node = key(run_id, node_id, iteration);
    let (_, owned) = start(store, &node, "owner", at).await;
    let end = match state {
        AttemptState::InProgress => return,
        AttemptState::Finished => AttemptEnd::Finished {
            output: serde_json::json!({}),
            vcs: None,
        },
        AttemptState::Failed => {
            fail(store, &owned, at + 10).await;
            return;
        }
        AttemptState::Cancelled => cancellation(),
    };
    accept_end(store, &owned, end, at + 10, Vec::new()).await;
}

/// `list_runs` counts each run's nodes by state, most recently updated run first; `list_nodes`
/// lists a run's nodes by node id, then iteration (numerically).
pub async fn runs_and_nodes_are_listed(fixture: &dyn Fixture) {
    let store = fixture.store();
    assert!(
        store.list_runs().await.expect("runs").is_empty(),
        "a fresh store has no runs"
    );

    node_in_state(&*store, "oldest", "only", 0, AttemptState::Finished, 1_000).await;
    node_in_state(&*store, "middle", "b", 0, AttemptState::Failed, 2_000).await;
    node_in_state(&*store, "middle", "a", 10, AttemptState::Finished, 2_100).await;
    node_in_state(&*store, "middle", "a", 2, AttemptState::InProgress, 2_200).await;
    node_in_state(&*store, "middle", "a", 0, AttemptState::Cancelled, 2_300).await;
    node_in_state(&*store, "middle", "c", 0, AttemptState::Finished, 2_400).await;
    node_in_state(&*store, "newest", "x", 0, AttemptState::InProgress, 5_000).await;

    // A retried node counts once, in its last attempt's state.
    let retried = key("middle", "c", 1);
    let (_, first) = start(&*store, &retried, "owner", 2_500).await;
    fail(&*store, &first, 2_510).await;
    start(&*store, &retried, "owner-2", 2_600).await;

    let runs = store.list_runs().await.expect("runs");
    let summary =
        |run_id: &str, nodes, in_progress, finished, failed, cancelled, updated_at_ms| RunSummary {
            run_id: run_id.to_owned(),
            nodes,
            in_progress,
            finished,
            failed,
            cancelled,
            updated_at_ms,
        };
    assert_eq!(
        runs,
        vec![
            summary("newest", 1, 1, 0, 0, 0, 5_000),
            summary("middle", 6, 2, 2, 1, 1, 2_600),
            summary("oldest", 1, 0, 1, 0, 0, 1_010),
        ]
    );

    let nodes = store.list_nodes("middle").await.expect("nodes");
    let order: Vec<(&str, u32, AttemptState)> = nodes
        .iter()
        .map(|node| (node.node_id.as_str(), node.iteration, node.state))
        .collect();
    assert_eq!(
        order,
        vec![
            ("a", 0, AttemptState::Cancelled),
            ("a", 2, AttemptState::InProgress),
            ("a", 10, AttemptState::Finished),
            ("b", 0, AttemptState::Failed),
            ("c", 0, AttemptState::Finished),
            ("c", 1, AttemptState::InProgress),
        ]
    );
    assert!(nodes.iter().all(|node| node.run_id == "middle"));
    assert_eq!(nodes[5].last_attempt, 2);
    assert!(store.list_nodes("nobody").await.expect("nodes").is_empty());
    assert_eq!(
        store.get_node(&key("nobody", "a", 0)).await.expect("get"),
        None
    );
    assert_eq!(
        store.get_node(&key("middle", "a", 1)).await.expect("get"),
        None
    );
}

/// `list_attempts` returns the attempts a filter selects, ordered by node, iteration and number.
pub async fn attempts_are_filtered_and_ordered(fixture: &dyn Fixture) {
    let store = fixture.store();
    // Begun out of order on purpose.
    for (node_id, iteration) in [("b", 0), ("a", 1), ("a", 0), ("b", 10), ("b", 9)] {
        let node = key("run", node_id, iteration);
        for attempt in 0..2 {
            let (_, owned) = start(&*store, &node, "owner", 1_000 + attempt).await;
            fail(&*store, &owned, 1_000 + attempt).await;
        }
    }
    start(&*store, &key("other", "a", 0), "owner", 1_000).await;

    let listed = |node_id: Option<&str>, iteration: Option<u32>| {
        let filter = AttemptFilter {
            run_id: "run".to_owned(),
            node_id: node_id.map(str::to_owned),
            iteration,
        };
        let store = store.clone();
        async move {
            store
                .list_attempts(&filter)
                .await
                .expect("list")
                .into_iter()
                .map(|record| (record.node_id, record.iteration, record.attempt))
                .collect::<Vec<_>>()
        }
    };
    let owned = |rows: &[(&str, u32, u32)]| -> Vec<(String, u32, u32)> {
        rows.iter()
            .map(|(n, i, a)| ((*n).to_owned(), *i, *a))
            .collect()
    };

    assert_eq!(
        listed(None, None).await,
        owned(&[
            ("a", 0, 1),
            ("a", 0, 2),
            ("a", 1, 1),
            ("a", 1, 2),
            ("b", 0, 1),
            ("b", 0, 2),
            ("b", 9, 1),
            ("b", 9, 2),
            ("b", 10, 1),
            ("b", 10, 2),
        ])
    );
    assert_eq!(
        listed(Some("a"), None).await,
        owned(&[("a", 0, 1), ("a", 0, 2), ("a", 1, 1), ("a", 1, 2)])
    );
    assert_eq!(
        listed(None, Some(0)).await,
        owned(&[("a", 0, 1), ("a", 0, 2), ("b", 0, 1), ("b", 0, 2)])
    );
    assert_eq!(
        listed(Some("b"), Some(10)).await,
        owned(&[("b", 10, 1), ("b", 10, 2)])
    );
    assert!(listed(Some("z"), None).await.is_empty());
    let filter = AttemptFilter::run("nobody");
    assert!(store.list_attempts(&filter).await.expect("list").is_empty());
}

/// `list_runs_page` pages through runs newest first with a cursor, filters them by state and by
/// a part of their id, and gives each its first attempt's start.
pub async fn runs_are_paged_and_filtered(fixture: &dyn Fixture) {
    use stint_ports::{RunCursor, RunQuery};
    let store = fixture.store();
    node_in_state(&*store, "run-a", "x", 0, AttemptState::Finished, 1_000).await;
    node_in_state(&*store, "run-a", "y", 0, AttemptState::Failed, 1_100).await;
    node_in_state(&*store, "run-b", "x", 0, AttemptState::Finished, 2_000).await;
    node_in_state(&*store, "run-c", "x", 0, AttemptState::InProgress, 3_000).await;
    node_in_state(&*store, "other", "x", 0, AttemptState::InProgress, 3_000).await;

    let page = |query: RunQuery| {
        let store = store.clone();
        async move {
            store
                .list_runs_page(&query)
                .await
                .expect("page")
                .into_iter()
                .map(|run| (run.summary.run_id, run.started_at_ms))
                .collect::<Vec<_>>()
        }
    };
    let ids = |rows: &[(&str, u64)]| -> Vec<(String, u64)> {
        rows.iter()
            .map(|(id, at)| ((*id).to_owned(), *at))
            .collect()
    };
    let first = page(RunQuery {
        limit: 2,
        ..RunQuery::default()
    })
    .await;
    // Equal times are ordered by run id, in byte order.
    assert_eq!(first, ids(&[("other", 3_000), ("run-c", 3_000)]));
    let after = RunCursor {
        updated_at_ms: 3_000,
        run_id: "run-c".to_owned(),
    };
    let second = page(RunQuery {
        limit: 2,
        after: Some(after),
        ..RunQuery::default()
    })
    .await;
    assert_eq!(second, ids(&[("run-b", 2_000), ("run-a", 1_000)]));
    let failed = page(RunQuery {
        limit: 10,
        state: Some(AttemptState::Failed),
        ..RunQuery::default()
    })
    .await;
    assert_eq!(
        failed,
        ids(&[("run-a", 1_000)]),
        "a run with a failed node is failed"
    );
    let searched = page(RunQuery {
        limit: 10,
        search: Some("run-".to_owned()),
        state: Some(AttemptState::Finished),
        ..RunQuery::default()
    })
    .await;
    assert_eq!(searched, ids(&[("run-b", 2_000)]));
}
