//! Group commit on SQLite: writes that wait together share one COMMIT, a failing write does not
//! fail its neighbours, and a kill -9 in the middle of heavy batching loses nothing that was
//! acknowledged and leaves nothing half applied.
//!
//! A harness of its own (`harness = false`): the kill test runs this same binary as the child
//! process that writes (`STINT_GROUP_COMMIT_CHILD` names its database), and kills it.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{WriteLock, begin, node, owned, store_in};
use serde_json::json;
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_domain::{Event, EventKind, NodeKey};
use stint_ports::{AttemptEnd, AttemptStore, EndAttempt, NewTask, Renewal, TaskQueue};

/// Set in the child: the database file it writes to until it is killed.
const CHILD: &str = "STINT_GROUP_COMMIT_CHILD";

fn main() -> std::process::ExitCode {
    if let Ok(path) = std::env::var(CHILD) {
        runtime().block_on(write_until_killed(Path::new(&path)));
        return std::process::ExitCode::SUCCESS;
    }
    let args = libtest_mimic::Arguments::from_args();
    let trials = vec![
        libtest_mimic::Trial::test(
            "writes_waiting_together_share_one_commit_and_a_failure_stays_its_own",
            || {
                runtime().block_on(writes_waiting_together_share_one_commit());
                Ok(())
            },
        ),
        libtest_mimic::Trial::test(
            "a_write_failing_after_changing_rows_is_undone_whole_and_its_neighbours_commit",
            || {
                runtime().block_on(write_failing_after_changing_rows());
                Ok(())
            },
        ),
        libtest_mimic::Trial::test(
            "kill_9_during_batching_loses_nothing_acknowledged_and_halves_nothing",
            || {
                kill_9_during_batching();
                Ok(())
            },
        ),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Counts the commits made by `store`'s writer, on its connection (SQLite's commit hook).
async fn count_commits(store: &SqliteStore) -> Arc<AtomicUsize> {
    let commits = Arc::new(AtomicUsize::new(0));
    let counter = commits.clone();
    store
        .with_writer_connection(move |conn| {
            conn.commit_hook(Some(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                false
            }))
            .unwrap();
        })
        .await
        .unwrap();
    commits
}

fn task(key: String) -> NewTask {
    let mut task = NewTask::new("run", key.clone(), 1, json!({}));
    task.unique_key = Some(key);
    task
}

async fn writes_waiting_together_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    store
        .begin_attempt(begin(&node(), "owner", 1))
        .await
        .unwrap();
    let commits = count_commits(&store).await;
    // Another connection holds the write lock, so the writes below pile up behind the writer's
    // first transaction, which waits for the lock.
    let blocker = WriteLock::take(&dir.path().join("stint.db")).await;
    let mut writes = tokio::task::JoinSet::new();
    const WRITES: usize = 20;
    for i in 0..WRITES {
        let store = store.clone();
        writes.spawn(async move {
            store
                .enqueue(vec![task(format!("t{i}"))], 2)
                .await
                .map(drop)
        });
    }
    let intruder = {
        let store = store.clone();
        tokio::spawn(async move {
            let renewal = Renewal {
                now_ms: 3,
                lease_ms: 1_000,
            };
            store
                .renew_lease(&owned(&node(), 1, "intruder"), renewal)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    commits.store(0, Ordering::SeqCst);
    blocker.release().await;
    for result in writes.join_all().await {
        result.expect("an enqueue beside a failing write succeeds");
    }
    let refused = intruder.await.unwrap().expect_err("not the owner");
    assert!(refused.is_conflict(), "{refused}");
    let committed = commits.load(Ordering::SeqCst);
    assert!(
        committed <= 2,
        "{WRITES} writes that waited together took {committed} commits"
    );
    let tasks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(tasks, WRITES as i64);
}

/// A write that fails after it changed rows, in the middle of a batch: an enqueue whose first
/// task is inserted and whose second is refused. Its first task is gone with it; the enqueues
/// before and after it in the same transaction commit, each answered with the id it holds.
async fn write_failing_after_changing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path()).await;
    let commits = count_commits(&store).await;
    // Another connection holds the write lock: the writes handed over meanwhile pile up.
    let blocker = WriteLock::take(&dir.path().join("stint.db")).await;
    const WRITES: usize = 10;
    let mut writes = tokio::task::JoinSet::new();
    let enqueue = |writes: &mut tokio::task::JoinSet<_>, tasks: Vec<NewTask>| {
        let store = store.clone();
        writes.spawn(async move { store.enqueue(tasks, 2).await });
    };
    for i in 0..WRITES {
        enqueue(&mut writes, vec![task(format!("before{i}"))]);
    }
    // Handed over after the enqueues above, before those below.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let failing = {
        let store = store.clone();
        let refused = NewTask::new("run", "", 1, json!({}));
        tokio::spawn(async move {
            store
                .enqueue(vec![task("inserted-then-undone".to_owned()), refused], 2)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..WRITES {
        enqueue(&mut writes, vec![task(format!("after{i}"))]);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    commits.store(0, Ordering::SeqCst);
    blocker.release().await;
    let mut answered = BTreeMap::new();
    for result in writes.join_all().await {
        let enqueued = result.expect("an enqueue beside a failing write succeeds");
        assert!(!enqueued[0].existing);
        answered.insert(enqueued[0].id.0, ());
    }
    let refused = failing
        .await
        .unwrap()
        .expect_err("the second task is invalid");
    assert!(refused.to_string().contains("empty"), "{refused}");
    let committed = commits.load(Ordering::SeqCst);
    assert!(
        committed <= 2,
        "{} writes that waited together took {committed} commits",
        2 * WRITES + 1
    );
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, unique_key FROM tasks ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let keys: BTreeSet<&str> = rows.iter().map(|(_, key)| key.as_str()).collect();
    assert!(
        !keys.contains("inserted-then-undone"),
        "the failed write's first task was committed: {rows:?}"
    );
    assert_eq!(rows.len(), 2 * WRITES, "{rows:?}");
    // Every answer names a row that was committed (a replayed write answers what it did last).
    let ids: BTreeSet<u64> = rows.iter().map(|(id, _)| *id as u64).collect();
    assert_eq!(ids, answered.keys().copied().collect::<BTreeSet<_>>());
}

/// The child: 16 writers, each enqueueing batches of three tasks and beginning and ending
/// attempts, and printing each write once it was acknowledged.
async fn write_until_killed(path: &Path) {
    let store = SqliteStore::open(path, SqliteOptions::default())
        .await
        .unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..16 {
        let store = store.clone();
        writers.spawn(async move {
            for i in 0.. {
                let batch = format!("b{writer}-{i}");
                let tasks = (0..3).map(|j| task(format!("{batch}-{j}"))).collect();
                store.enqueue(tasks, 1).await.unwrap();
                println!("batch {batch}");
                let node = NodeKey::new("run", batch.clone(), 0).unwrap();
                let begun = store.begin_attempt(begin(&node, "w", 1)).await.unwrap();
                let done = Event::new(&node.attempt(begun.attempt), 2, EventKind::NodeFinished);
                let end = EndAttempt {
                    events: vec![done],
                    ..EndAttempt::new(
                        AttemptEnd::Finished {
                            output: json!({ "batch": batch }),
                            vcs: None,
                        },
                        2,
                    )
                };
                store
                    .end_attempt(&owned(&node, begun.attempt, "w"), end)
                    .await
                    .unwrap();
                println!("ended {batch}");
            }
        });
    }
    writers.join_all().await;
}

/// What the child said was acknowledged before it died.
#[derive(Default)]
struct Acknowledged {
    batches: BTreeSet<String>,
    ended: BTreeSet<String>,
}

/// Runs the child and kills it with SIGKILL after `after` acknowledgements.
fn run_child_and_kill(path: &Path, after: usize) -> Acknowledged {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = Acknowledged::default();
    let mut seen = 0;
    let note = |line: String, acknowledged: &mut Acknowledged| match line.split_once(' ') {
        Some(("batch", batch)) => acknowledged.batches.insert(batch.to_owned()),
        Some(("ended", batch)) => acknowledged.ended.insert(batch.to_owned()),
        _ => panic!("the child printed {line:?}"),
    };
    while seen < after {
        let line = lines.next().expect("the child stopped writing").unwrap();
        note(line, &mut acknowledged);
        seen += 1;
    }
    child.kill().unwrap();
    // What it printed before it died was acknowledged too.
    for line in lines.map_while(Result::ok) {
        note(line, &mut acknowledged);
    }
    child.wait().unwrap();
    acknowledged
}

fn kill_9_during_batching() {
    for (round, after) in [40, 250, 900].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stint.db");
        let acknowledged = run_child_and_kill(&path, after);
        runtime().block_on(check_after_kill(&path, &acknowledged, round));
    }
}

async fn check_after_kill(path: &Path, acknowledged: &Acknowledged, round: usize) {
    let store = SqliteStore::open(path, SqliteOptions::default())
        .await
        .unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT unique_key FROM tasks")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let mut per_batch: BTreeMap<String, usize> = BTreeMap::new();
    for key in keys {
        let (batch, _) = key.rsplit_once('-').unwrap();
        *per_batch.entry(batch.to_owned()).or_default() += 1;
    }
    for (batch, count) in &per_batch {
        assert_eq!(*count, 3, "round {round}: batch {batch} is half applied");
    }
    for batch in &acknowledged.batches {
        assert!(
            per_batch.contains_key(batch),
            "round {round}: acknowledged batch {batch} was lost"
        );
    }
    for batch in &acknowledged.ended {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM attempts WHERE run_id = 'run' AND node_id = ? AND attempt = 1",
        )
        .bind(batch)
        .fetch_optional(store.pool())
        .await
        .unwrap();
        assert_eq!(
            state.as_deref(),
            Some("finished"),
            "round {round}: acknowledged end of {batch} was lost"
        );
    }
    // Every end is whole: a finished attempt has its output and its event, nothing else has.
    let (finished, outputs, events): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM attempts WHERE state = 'finished'), \
                (SELECT COUNT(*) FROM outputs), \
                (SELECT COUNT(*) FROM events WHERE type = 'NodeFinished')",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((outputs, events), (finished, finished), "round {round}");
    assert!(
        finished >= acknowledged.ended.len() as i64,
        "round {round}: fewer ends than acknowledged"
    );
    store.close().await;
}
