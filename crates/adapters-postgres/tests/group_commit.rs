//! Group commit on PostgreSQL: attempt writes that wait together share one transaction, a write
//! that raises an error does not fail its neighbours, and a kill -9 in the middle of heavy
//! batching loses nothing that was acknowledged and leaves nothing half applied.
//!
//! No libtest harness (`harness = false`): the PostgreSQL tests are reported ignored when no
//! server listens, and the kill test runs this same binary as the child process that writes
//! (`STINT_GROUP_COMMIT_CHILD` names its schema's store URL), and kills it.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use stint_adapters_postgres::PostgresStore;
use stint_adapters_postgres::test_support::{
    SchemaGuard, Test, block_on, fresh_schema, run_tests, server_url,
};
use stint_domain::{Event, EventKind, NodeKey};
use stint_ports::{AttemptEnd, AttemptStore, BeginAttempt, EndAttempt, OwnedAttempt};

/// Set in the child: the store URL it writes to until it is killed.
const CHILD: &str = "STINT_GROUP_COMMIT_CHILD";

fn main() -> std::process::ExitCode {
    if let Ok(url) = std::env::var(CHILD) {
        block_on(write_until_killed(url));
        return std::process::ExitCode::SUCCESS;
    }
    let tests: Vec<Test> = vec![
        ("begins_waiting_together_share_a_transaction", || {
            block_on(begins_waiting_together_share_a_transaction());
        }),
        ("a_write_that_raises_fails_alone", || {
            block_on(a_write_that_raises_fails_alone());
        }),
        (
            "ends_waiting_together_share_a_transaction_and_are_answered_each",
            || {
                block_on(ends_waiting_together_share_a_transaction_and_are_answered_each());
            },
        ),
        (
            "kill_9_during_batching_loses_nothing_acknowledged_and_halves_nothing",
            kill_9_during_batching,
        ),
    ];
    run_tests(tests)
}

/// `count` nodes of run "run", named in order (`n00`, `n01`...).
fn nodes_of_run(count: usize) -> Vec<NodeKey> {
    (0..count)
        .map(|i| NodeKey::new("run", format!("n{i:02}"), 0).unwrap())
        .collect()
}

fn begin(node: &NodeKey, owner: &str) -> BeginAttempt {
    BeginAttempt::new(node.clone(), owner.to_owned(), 1, 86_400_000)
}

/// A pool of its own on the test's schema, for what the store does not expose.
async fn raw_pool(guard: &SchemaGuard) -> PgPool {
    let options: PgConnectOptions = server_url().parse().unwrap();
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.options([("search_path", guard.schema())]))
        .await
        .unwrap()
}

/// Begins one attempt of each of `nodes` at once; their results in order.
async fn begin_all(
    store: &PostgresStore,
    nodes: &[NodeKey],
) -> Vec<Result<u32, stint_ports::StoreError>> {
    let mut begins = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let (store, node) = (store.clone(), node.clone());
        begins.spawn(async move {
            let begun = store.begin_attempt(begin(&node, "w")).await;
            (i, begun.map(|begun| begun.attempt))
        });
    }
    let mut results: Vec<_> = begins.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Ends attempt 1 of each node at once, each under owner "w", or under another owner where the
/// flag says so; their results in order.
async fn end_all(
    store: &PostgresStore,
    ends: &[(NodeKey, bool)],
) -> Vec<Result<(), stint_ports::StoreError>> {
    let mut writes = tokio::task::JoinSet::new();
    for (i, (node, wrong_owner)) in ends.iter().enumerate() {
        let (store, node) = (store.clone(), node.clone());
        let owner = if *wrong_owner { "someone else" } else { "w" };
        writes.spawn(async move {
            let done = Event::new(&node.attempt(1), 2, EventKind::NodeFinished);
            let end = EndAttempt {
                events: vec![done],
                ..EndAttempt::new(
                    AttemptEnd::Finished {
                        output: json!({ "node": node.node_id() }),
                        vcs: None,
                    },
                    2,
                )
            };
            let owned = OwnedAttempt {
                key: node.attempt(1),
                owner: owner.to_owned(),
            };
            (i, store.end_attempt(&owned, end).await.map(|_| ()))
        });
    }
    let mut results: Vec<_> = writes.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Writes `items` (all of run "run", by `write_all`) while another connection holds the run's
/// event lock: the first two go out at once, one batch each, and wait for the lock; the rest
/// pile up meanwhile and go together once the lock is released. Their results in order.
async fn piled_up<T, R, W, Fut>(raw: &PgPool, items: Vec<T>, write_all: W) -> Vec<R>
where
    T: Clone,
    R: Send + 'static,
    W: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Vec<R>> + Send + 'static,
{
    let mut blocker = raw.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(stint_adapters_postgres::run_lock_key("run"))
        .execute(&mut *blocker)
        .await
        .unwrap();
    let (front, pile) = items.split_at(2);
    let front = tokio::spawn(write_all(front.to_vec()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pile = tokio::spawn(write_all(pile.to_vec()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut results = front.await.unwrap();
    results.extend(pile.await.unwrap());
    results
}

/// Begins one attempt of each of `nodes` as [`piled_up`] writes them.
async fn piled_up_begins(
    store: &PostgresStore,
    raw: &PgPool,
    nodes: Vec<NodeKey>,
) -> Vec<Result<u32, stint_ports::StoreError>> {
    piled_up(raw, nodes, |nodes| {
        let store = store.clone();
        async move { begin_all(&store, &nodes).await }
    })
    .await
}

async fn begins_waiting_together_share_a_transaction() {
    let (store, guard) = fresh_schema().await;
    let raw = raw_pool(&guard).await;
    const WRITES: usize = 24;
    let nodes = nodes_of_run(WRITES);
    for result in piled_up_begins(&store, &raw, nodes).await {
        assert_eq!(result.unwrap(), 1);
    }
    // Rows a transaction wrote carry its id: fewer ids than writes is writes sharing one.
    let transactions: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT xmin::text) FROM attempts")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert!(
        transactions <= 3,
        "{WRITES} begins that waited together took {transactions} transactions"
    );
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE type = 'NodeStarted'")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(events, WRITES as i64);
    guard.drop_schema().await;
}

async fn a_write_that_raises_fails_alone() {
    let (store, guard) = fresh_schema().await;
    let raw = raw_pool(&guard).await;
    sqlx::raw_sql(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.node_id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; \
         END $$; \
         CREATE TRIGGER poison BEFORE INSERT ON attempts FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .execute(&raw)
    .await
    .unwrap();
    let mut nodes = nodes_of_run(15);
    // In the pile, so in a batch with others.
    nodes.insert(7, NodeKey::new("run", "poison", 0).unwrap());
    let results = piled_up_begins(&store, &raw, nodes.clone()).await;
    for (node, result) in nodes.iter().zip(results) {
        if node.node_id() == "poison" {
            let error = result.expect_err("the poisoned begin fails");
            assert!(error.to_string().contains("poisoned"), "{error}");
        } else {
            assert_eq!(result.unwrap(), 1, "{node} began beside the poisoned one");
        }
    }
    let attempts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(attempts, 15);
    guard.drop_schema().await;
}

async fn ends_waiting_together_share_a_transaction_and_are_answered_each() {
    let (store, guard) = fresh_schema().await;
    let raw = raw_pool(&guard).await;
    const WRITES: usize = 24;
    let nodes = nodes_of_run(WRITES);
    for result in begin_all(&store, &nodes).await {
        assert_eq!(result.unwrap(), 1);
    }
    // Every fifth end, in the pile, presents an owner that is not the attempt's.
    let ends: Vec<(NodeKey, bool)> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.clone(), i % 5 == 3))
        .collect();
    let results = piled_up(&raw, ends.clone(), |ends| {
        let store = store.clone();
        async move { end_all(&store, &ends).await }
    })
    .await;
    let mut ended = Vec::new();
    for ((node, wrong_owner), result) in ends.iter().zip(results) {
        if *wrong_owner {
            let error = result.expect_err("an end under another owner is refused");
            assert!(error.is_conflict(), "{node}: {error}");
        } else {
            result.unwrap_or_else(|error| panic!("{node} did not end: {error}"));
            ended.push(node.node_id().to_owned());
        }
    }
    let ids = |sql: &'static str| {
        let raw = raw.clone();
        async move {
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&raw)
                .await
                .unwrap()
        }
    };
    // What each end wrote, and only the ends that were answered so.
    let finished = ids("SELECT node_id FROM attempts WHERE state = 'finished' ORDER BY 1").await;
    assert_eq!(finished, ended);
    let nodes_finished = ids("SELECT node_id FROM nodes WHERE state = 'finished' ORDER BY 1").await;
    assert_eq!(nodes_finished, ended);
    let outputs = ids("SELECT output->>'node' FROM outputs ORDER BY 1").await;
    assert_eq!(outputs, ended);
    let finished_events =
        ids("SELECT node_id FROM events WHERE type = 'NodeFinished' ORDER BY 1").await;
    assert_eq!(finished_events, ended);
    let still_running =
        ids("SELECT node_id FROM attempts WHERE state = 'in-progress' ORDER BY 1").await;
    assert_eq!(still_running.len(), WRITES - ended.len());
    // Rows a transaction wrote carry its id: fewer ids than writes is writes sharing one.
    let transactions: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT xmin::text) FROM attempts WHERE state = 'finished'",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    assert!(
        transactions <= 3,
        "{} ends that waited together took {transactions} transactions",
        ended.len()
    );
    guard.drop_schema().await;
}

/// The child: 16 writers, each beginning and ending attempts of fresh nodes, and printing each
/// write once it was acknowledged.
async fn write_until_killed(url: String) {
    let store = PostgresStore::connect(&url).await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..16 {
        let store = store.clone();
        writers.spawn(async move {
            for i in 0.. {
                let name = format!("w{writer}-{i}");
                let node = NodeKey::new("run", name.clone(), 0).unwrap();
                let begun = store.begin_attempt(begin(&node, "w")).await.unwrap();
                println!("begun {name}");
                let done = Event::new(&node.attempt(begun.attempt), 2, EventKind::NodeFinished);
                let end = EndAttempt {
                    events: vec![done],
                    ..EndAttempt::new(
                        AttemptEnd::Finished {
                            output: json!({ "node": name }),
                            vcs: None,
                        },
                        2,
                    )
                };
                let owned = OwnedAttempt {
                    key: node.attempt(begun.attempt),
                    owner: "w".to_owned(),
                };
                store.end_attempt(&owned, end).await.unwrap();
                println!("ended {name}");
            }
        });
    }
    writers.join_all().await;
}

/// What the child said was acknowledged before it died.
#[derive(Default)]
struct Acknowledged {
    begun: BTreeSet<String>,
    ended: BTreeSet<String>,
}

/// Runs the child on `url` and kills it with SIGKILL after `after` acknowledgements.
fn run_child_and_kill(url: &str, after: usize) -> Acknowledged {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = Acknowledged::default();
    let note = |line: String, acknowledged: &mut Acknowledged| match line.split_once(' ') {
        Some(("begun", node)) => acknowledged.begun.insert(node.to_owned()),
        Some(("ended", node)) => acknowledged.ended.insert(node.to_owned()),
        _ => panic!("the child printed {line:?}"),
    };
    for _ in 0..after {
        let line = lines.next().expect("the child stopped writing").unwrap();
        note(line, &mut acknowledged);
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
    for (round, after) in [40, 300, 1_200].into_iter().enumerate() {
        let guard = block_on_value(async { fresh_schema().await.1 });
        let acknowledged = run_child_and_kill(&guard.url(), after);
        block_on(check_after_kill(guard, acknowledged, round));
    }
}

/// Runs `future` on a runtime of its own and returns its value.
fn block_on_value<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    block_on(async move {
        send.send(future.await).unwrap();
    });
    receive.recv().unwrap()
}

/// The nodes `sql` selects in the snapshot `raw`, checked to include every one whose `write`
/// was `acknowledged`.
async fn kept(
    raw: &mut PgConnection,
    sql: &'static str,
    acknowledged: &BTreeSet<String>,
    write: &str,
    round: usize,
) -> BTreeSet<String> {
    let stored: BTreeSet<String> = sqlx::query_scalar(sql)
        .fetch_all(raw)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for node in acknowledged {
        assert!(
            stored.contains(node),
            "round {round}: acknowledged {write} of {node} was lost"
        );
    }
    stored
}

async fn check_after_kill(guard: SchemaGuard, acknowledged: Acknowledged, round: usize) {
    let pool = raw_pool(&guard).await;
    // One snapshot for every read: the killed child's last statement may still commit (the
    // server finishes a statement before it notices its client is gone).
    let mut raw = pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *raw)
        .await
        .unwrap();
    let begun = "SELECT node_id FROM attempts";
    kept(&mut raw, begun, &acknowledged.begun, "begin", round).await;
    let ended = "SELECT node_id FROM attempts WHERE state = 'finished'";
    let finished = kept(&mut raw, ended, &acknowledged.ended, "end", round).await;
    // Every write is whole: each attempt has its NodeStarted, each finished one its output and
    // its NodeFinished, and nothing else has.
    let (attempts, started, outputs, ended): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM attempts), \
                (SELECT COUNT(*) FROM events WHERE type = 'NodeStarted'), \
                (SELECT COUNT(*) FROM outputs), \
                (SELECT COUNT(*) FROM events WHERE type = 'NodeFinished')",
    )
    .fetch_one(&mut *raw)
    .await
    .unwrap();
    let finished = finished.len() as i64;
    assert_eq!(started, attempts, "round {round}: a begin is half applied");
    assert_eq!((outputs, ended), (finished, finished), "round {round}");
    raw.rollback().await.unwrap();
    pool.close().await;
    guard.drop_schema().await;
}
