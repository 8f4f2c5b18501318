//! Two pools on one file racing one node: attempt numbers stay 1, 2, 3... with no gap and no
//! duplicate.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use common::{begin, node, owned, store_in};
use serde_json::json;
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_domain::{AttemptState, EventKind};
use stint_ports::{
    AttemptEnd, AttemptFilter, AttemptStore, EndAttempt, EventPage, HistoryStore, StoreError,
};

const TOTAL: u32 = 200;
const WORKERS: u32 = 4;

/// Runs `quota` whole attempts (begin, then end) on the shared node, retrying a begin refused
/// because the other side's attempt is in progress. Returns the numbers it was given and how
/// many of its begins were refused.
async fn worker(store: SqliteStore, name: String, quota: u32) -> (Vec<u32>, u32) {
    let node = node();
    let mut numbers = Vec::new();
    let mut refused = 0;
    let mut clock = 0;
    while numbers.len() < quota as usize {
        clock += 1;
        match store.begin_attempt(begin(&node, &name, clock)).await {
            Ok(begun) => {
                // Hold the attempt across a scheduling point, so the other workers' begins meet
                // it in progress: without it, two pools whose writes SQLite serialises may
                // happen never to interleave, and the race would prove nothing.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let end = AttemptEnd::Finished {
                    output: json!({"by": name}),
                    vcs: None,
                };
                store
                    .end_attempt(
                        &owned(&node, begun.attempt, &name),
                        EndAttempt::new(end, clock),
                    )
                    .await
                    .expect("the owner ends its own attempt");
                numbers.push(begun.attempt);
            }
            Err(StoreError::Conflict { .. }) => {
                refused += 1;
                tokio::task::yield_now().await;
            }
            Err(other) => panic!("{name}: unexpected error {other}"),
        }
    }
    (numbers, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_racing_200_attempts_get_1_to_200() {
    let dir = tempfile::tempdir().unwrap();
    let first = store_in(dir.path()).await;
    let second = SqliteStore::open(first.path(), SqliteOptions::default())
        .await
        .unwrap();
    let pools = Arc::new([first.clone(), second]);
    let handles: Vec<_> = (0..WORKERS)
        .map(|i| {
            let store = pools[(i % 2) as usize].clone();
            tokio::spawn(worker(store, format!("worker-{i}"), TOTAL / WORKERS))
        })
        .collect();
    let (mut numbers, mut refused) = (Vec::new(), 0);
    for handle in handles {
        let (won, conflicts) = handle.await.unwrap();
        numbers.extend(won);
        refused += conflicts;
    }
    assert!(refused > 0, "no begin was refused: the workers never raced");
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=TOTAL).collect::<Vec<_>>());

    let stored = first
        .list_attempts(&AttemptFilter::run("run"))
        .await
        .unwrap();
    let stored_numbers: Vec<u32> = stored.iter().map(|a| a.attempt).collect();
    assert_eq!(stored_numbers, (1..=TOTAL).collect::<Vec<_>>());
    assert!(stored.iter().all(|a| a.state == AttemptState::Finished));
    let node = first.get_node(&node()).await.unwrap().unwrap();
    assert_eq!(node.last_attempt, TOTAL);
    let events = first
        .read_events(&EventPage::new("run").limit(10_000))
        .await
        .unwrap();
    let started = events
        .iter()
        .filter(|e| e.event.kind == EventKind::NodeStarted)
        .count();
    assert_eq!(
        started, TOTAL as usize,
        "one NodeStarted per attempt, none from refused begins"
    );
}
