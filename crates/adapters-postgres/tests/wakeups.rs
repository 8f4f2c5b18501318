//! LISTEN/NOTIFY wake-ups: a listener wakes for its queues only, once per burst, and again
//! after its connection was killed; a listener whose notifications do not arrive polls.
//!
//! No libtest harness here (`harness = false`), as in `concurrency.rs`: `main` lists the tests.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use stint_adapters_postgres::test_support::{
    SchemaGuard, Test, block_on, fresh_schema, run_tests, server_url,
};
use stint_adapters_postgres::{PostgresWakeups, WakeupOptions};
use stint_ports::{NewTask, TaskQueue, Wakeups};

/// Generous: two shared cores, a build beside the tests.
const BOUND: Duration = Duration::from_secs(10);

/// How long a wake-up that must not come is waited for.
const QUIET: Duration = Duration::from_millis(400);

fn task(queue: &str, run_at_ms: u64) -> NewTask {
    let mut task = NewTask::new("r", "n", run_at_ms, json!({}));
    task.queue = queue.to_owned();
    task
}

fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since_epoch.as_millis()).expect("fits")
}

async fn woken(wakeups: &PostgresWakeups, within: Duration) -> bool {
    tokio::time::timeout(within, wakeups.next()).await.is_ok()
}

/// Waits until the listener has connected `connections` times and heard its own probe, then
/// takes the wake-ups its connecting gave.
async fn settled(wakeups: &PostgresWakeups, connections: u64) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while wakeups.connections() < connections || wakeups.polling() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener did not settle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while woken(wakeups, Duration::from_millis(100)).await {}
}

/// A listener for queue `a` of a fresh schema, settled; and a second store (another process,
/// as far as the database can tell) to submit through.
async fn listening() -> (
    PostgresWakeups,
    stint_adapters_postgres::PostgresStore,
    SchemaGuard,
) {
    let (store, guard) = fresh_schema().await;
    let wakeups = store.wakeups(&["a".to_owned()]);
    settled(&wakeups, 1).await;
    let submitter = guard.connect().await;
    (wakeups, submitter, guard)
}

/// Only a task of its queues that is due now wakes a listener; a burst of them is one wake-up.
async fn a_listener_wakes_for_its_queues_only() {
    let (wakeups, submitter, guard) = listening().await;
    submitter
        .enqueue(vec![task("b", 0)], now_ms())
        .await
        .expect("enqueue");
    assert!(!woken(&wakeups, QUIET).await, "woken for another queue");
    let later = now_ms() + 3_600_000;
    submitter
        .enqueue(vec![task("a", later)], now_ms())
        .await
        .expect("enqueue");
    assert!(!woken(&wakeups, QUIET).await, "woken for a task due later");
    submitter
        .enqueue(vec![task("a", 0)], now_ms())
        .await
        .expect("enqueue");
    assert!(woken(&wakeups, BOUND).await, "not woken for its queue");
    for _ in 0..50 {
        let batch = (0..20).map(|_| task("a", 0)).collect();
        submitter.enqueue(batch, now_ms()).await.expect("enqueue");
    }
    // 50 notifications (one per transaction) while nobody waited, all delivered by now: kept
    // as one wake-up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(woken(&wakeups, BOUND).await, "the burst woke nothing");
    assert!(!woken(&wakeups, QUIET).await, "a burst woke more than once");
    submitter.close().await;
    guard.drop_schema().await;
}

/// Kills the listener's connection from another session; answers how many were killed.
async fn kill_listener(schema: &str) -> u64 {
    let mut admin = PgConnection::connect(&server_url()).await.expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%' AND query LIKE '%' || $1 || '%'",
    )
    .bind(schema)
    .fetch_all(&mut admin)
    .await
    .expect("terminate the listener");
    admin.close().await.expect("close");
    u64::try_from(killed.len()).expect("fits")
}

/// A listener whose connection is terminated connects again, wakes the worker for what it may
/// have missed, and wakes again for the next task.
async fn a_listener_comes_back_after_its_connection_was_killed() {
    let (wakeups, submitter, guard) = listening().await;
    assert_eq!(
        kill_listener(guard.schema()).await,
        1,
        "one listener to kill"
    );
    assert!(woken(&wakeups, BOUND).await, "no wake-up on reconnecting");
    settled(&wakeups, 2).await;
    submitter
        .enqueue(vec![task("a", 0)], now_ms())
        .await
        .expect("enqueue");
    assert!(woken(&wakeups, BOUND).await, "not woken after reconnecting");
    submitter.close().await;
    guard.drop_schema().await;
}

/// A listener that never hears its own probe (as behind a transaction-pooling proxy) says so
/// and wakes every `fallback_poll`, with nothing submitted.
async fn a_listener_that_hears_nothing_polls() {
    let (store, guard) = fresh_schema().await;
    let deaf = WakeupOptions {
        probe_timeout: Duration::from_millis(200),
        fallback_poll: Duration::from_millis(100),
        deaf: true,
        ..WakeupOptions::default()
    };
    let wakeups = store.wakeups_with(&["a".to_owned()], deaf);
    let deadline = tokio::time::Instant::now() + BOUND;
    while !wakeups.polling() || wakeups.connections() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never fell back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each call is dropped after 40 ms, shorter than `fallback_poll`, as a worker woken by
    // something else more often would: the fallback wake-ups come all the same.
    let mut wakes = 0;
    while wakes < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{wakes} fallback wake-ups"
        );
        wakes += u32::from(woken(&wakeups, Duration::from_millis(40)).await);
    }
    guard.drop_schema().await;
}

/// A notification is sent on commit only: a batch refused as a whole wakes nobody.
async fn a_refused_batch_wakes_nobody() {
    let (wakeups, submitter, guard) = listening().await;
    let refused = vec![task("a", 0), task("", 0)];
    submitter
        .enqueue(refused, now_ms())
        .await
        .expect_err("refused");
    assert!(!woken(&wakeups, QUIET).await, "woken by a refused batch");
    submitter.close().await;
    guard.drop_schema().await;
}

macro_rules! tests {
    ($($test:ident),* $(,)?) => {
        vec![$({
            fn run() {
                block_on($test());
            }
            (stringify!($test), run as fn())
        }),*]
    };
}

fn main() -> std::process::ExitCode {
    let tests: Vec<Test> = tests![
        a_listener_wakes_for_its_queues_only,
        a_listener_comes_back_after_its_connection_was_killed,
        a_listener_that_hears_nothing_polls,
        a_refused_batch_wakes_nobody,
    ];
    run_tests(tests)
}
