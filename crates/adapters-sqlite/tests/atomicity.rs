//! A step interrupted part-way leaves it whole or not at all, never half of it: a failing
//! statement rolls the step back; a caller that drops its future in the middle of the step gets
//! it applied whole.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{begin, count, node, owned, store_in};
use rusqlite::hooks::Action;
use serde_json::json;
use stint_adapters_sqlite::SqliteStore;
use stint_domain::{AttemptState, Event, EventKind};
use stint_ports::{AttemptEnd, AttemptFilter, AttemptStore, EndAttempt, HistoryStore};

/// Makes every insert into `events` fail, as a fault in the last statement of a step.
async fn break_event_inserts(store: &SqliteStore) {
    sqlx::query(
        "CREATE TRIGGER fault BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
}

async fn repair(store: &SqliteStore) {
    sqlx::query("DROP TRIGGER IF EXISTS fault")
        .execute(store.pool())
        .await
        .unwrap();
}

fn finished() -> AttemptEnd {
    AttemptEnd::Finished {
        output: json!({"answer": 42}),
        vcs: Some("abc".to_owned()),
    }
}

async fn run_attempts(store: &SqliteStore) -> Vec<stint_domain::AttemptRecord> {
    store
        .list_attempts(&AttemptFilter {
            run_id: "run".to_owned(),
            ..AttemptFilter::default()
        })
        .await
        .unwrap()
}

async fn assert_in_progress(store: &SqliteStore, events_before: i64) {
    let attempts = run_attempts(store).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, AttemptState::InProgress);
    assert_eq!(attempts[0].finished_at_ms, None);
    assert_eq!(attempts[0].vcs, None);
    let record = store.get_node(&node()).await.unwrap().unwrap();
    assert_eq!(record.state, AttemptState::InProgress);
    assert_eq!(store.read_output(&node()).await.unwrap(), None);
    assert_eq!(count(store, "outputs").await, 0);
    assert_eq!(count(store, "events").await, events_before);
}

#[tokio::test]
async fn a_fault_in_begin_leaves_no_attempt_and_no_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    break_event_inserts(&store).await;
    store
        .begin_attempt(begin(&node(), "a", 1))
        .await
        .expect_err("the NodeStarted insert fails");
    assert_eq!(count(&store, "attempts").await, 0);
    assert_eq!(count(&store, "nodes").await, 0);
    repair(&store).await;
    let begun = store.begin_attempt(begin(&node(), "a", 2)).await.unwrap();
    assert_eq!(begun.attempt, 1, "the failed begin used no number");
}

#[tokio::test]
async fn a_fault_in_end_leaves_the_attempt_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    store.begin_attempt(begin(&node(), "a", 1)).await.unwrap();
    let events_before = count(&store, "events").await;
    break_event_inserts(&store).await;
    let done = Event::new(&node().attempt(1), 5, EventKind::NodeFinished);
    store
        .end_attempt(
            &owned(&node(), 1, "a"),
            EndAttempt {
                end: finished(),
                finished_at_ms: 5,
                events: vec![done.clone()],
                task: None,
            },
        )
        .await
        .expect_err("the NodeFinished insert fails");
    assert_in_progress(&store, events_before).await;

    repair(&store).await;
    store
        .end_attempt(
            &owned(&node(), 1, "a"),
            EndAttempt {
                end: finished(),
                finished_at_ms: 6,
                events: vec![done],
                task: None,
            },
        )
        .await
        .expect("the same end succeeds once the fault is gone");
    assert_eq!(count(&store, "outputs").await, 1);
}

/// Sets `marker` once a statement of the store's writer changes a row of `attempts` (SQLite's
/// update hook on the writer's connection, called as the row changes, before the statement's
/// triggers run).
async fn mark_attempt_updates(store: &SqliteStore, marker: &Arc<AtomicBool>) {
    let marker = marker.clone();
    store
        .with_writer_connection(move |conn| {
            conn.update_hook(Some(move |action, _: &str, table: &str, _| {
                if table == "attempts" && action == Action::SQLITE_UPDATE {
                    marker.store(true, Ordering::SeqCst);
                }
            }))
            .unwrap();
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_end_mid_write_leaves_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    store.begin_attempt(begin(&node(), "a", 1)).await.unwrap();
    let events_before = count(&store, "events").await;
    // Makes the attempt UPDATE (the first statement of end_attempt) burn CPU for a while after
    // it changed the row, so the future is dropped with the transaction open and its first
    // write done.
    sqlx::query(
        "CREATE TRIGGER slow AFTER UPDATE ON attempts BEGIN \
         SELECT COUNT(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
         WHERE x < 1000000) SELECT x FROM c); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let updated = Arc::new(AtomicBool::new(false));
    mark_attempt_updates(&store, &updated).await;
    let done = Event::new(&node().attempt(1), 5, EventKind::NodeFinished);
    let owner = owned(&node(), 1, "a");
    // Boxed, so that `drop` below drops the future itself (a pinned reference would not).
    let mut end = Box::pin(store.end_attempt(
        &owner,
        EndAttempt {
            end: finished(),
            finished_at_ms: 5,
            events: vec![done.clone()],
            task: None,
        },
    ));
    // Dropped only once the UPDATE has changed the row: a drop before the write began leaves the
    // attempt in progress (the writer skips a write whose caller is gone), and proves nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !updated.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the end's UPDATE never ran");
        tokio::select! {
            result = end.as_mut() => panic!("the end finished before it could be dropped: {result:?}"),
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    drop(end);
    // Taking the write lock waits for the statement to end and its transaction to finish (on a
    // loaded machine, longer than one busy timeout). The store's writer goes on with a write it
    // began (as a COMMIT already sent would have): the end is applied whole.
    let mut tx = loop {
        match store.pool().begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => break tx,
            Err(error) => assert!(Instant::now() < deadline, "{error}"),
        }
    };
    sqlx::query("DROP TRIGGER slow")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let attempts = run_attempts(&store).await;
    assert_eq!(attempts[0].state, AttemptState::Finished);
    assert_eq!(attempts[0].finished_at_ms, Some(5));
    assert_eq!(attempts[0].vcs.as_deref(), Some("abc"));
    let record = store.get_node(&node()).await.unwrap().unwrap();
    assert_eq!(record.state, AttemptState::Finished);
    assert_eq!(count(&store, "outputs").await, 1);
    assert_eq!(count(&store, "events").await, events_before + 1);
}
