//! Races that only a real multi-connection database can show (issue 6), plus connection
//! failures. Each test runs on its own fresh schema.
//!
//! No libtest harness here (`harness = false`): `main` lists the tests, and those that need the
//! server are reported ignored, with the reason, when nothing listens at its address (see
//! `stint_adapters_postgres::test_support`). Add a test to the lists in `main`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use stint_adapters_postgres::test_support::{
    Test, block_on, fresh_schema, run_tests_with, server_url, with_param,
};
use stint_adapters_postgres::{LeaseClock, PostgresStore};
use stint_domain::{EventKind, NodeKey};
use stint_ports::{
    AttemptEnd, AttemptFilter, AttemptStore, BeginAttempt, EndAttempt, EventPage, HistoryStore,
    OwnedAttempt, StoreError,
};

fn begin(node: &NodeKey, owner: String, now: u64, lease: u64) -> BeginAttempt {
    BeginAttempt::new(node.clone(), owner, now, lease - now)
}

async fn eight_connections_racing_500_attempts_number_them_without_gaps() {
    let (_store, guard) = fresh_schema().await;
    const TOTAL: u32 = 500;
    let node = NodeKey::new("race", "n", 0).expect("valid key");
    let claimed = Arc::new(AtomicU32::new(0));
    let mut workers = Vec::new();
    for worker in 0..8 {
        // Eight independent pools of one connection: eight processes, as the database sees it.
        let store = guard.connect_with("max_connections=1").await;
        let (node, claimed) = (node.clone(), claimed.clone());
        workers.push(tokio::spawn(async move {
            let mut conflicts = 0_u32;
            while claimed.fetch_add(1, Ordering::SeqCst) < TOTAL {
                let owner = format!("w{worker}-{}", uuid::Uuid::new_v4());
                let begun = loop {
                    match store
                        .begin_attempt(begin(&node, owner.clone(), 1, 86_400_000))
                        .await
                    {
                        Ok(begun) => break begun,
                        Err(StoreError::Conflict { .. }) => {
                            conflicts += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(other) => panic!("begin: {other}"),
                    }
                };
                let attempt = OwnedAttempt {
                    key: node.attempt(begun.attempt),
                    owner,
                };
                // Held across a scheduling point, so the others' begins meet it in progress.
                tokio::time::sleep(Duration::from_millis(1)).await;
                let end = AttemptEnd::Finished {
                    output: json!({"n": begun.attempt}),
                    vcs: None,
                };
                store
                    .end_attempt(&attempt, EndAttempt::new(end, 2))
                    .await
                    .expect("end");
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for worker in workers {
        conflicts += worker.await.expect("worker");
    }
    assert!(
        conflicts > 0,
        "eight connections on one node and no begin was refused: they never raced"
    );
    let store = guard.connect().await;
    let filter = AttemptFilter::run("race");
    let numbers: Vec<u32> = store
        .list_attempts(&filter)
        .await
        .expect("list")
        .iter()
        .map(|a| a.attempt)
        .collect();
    assert_eq!(numbers, (1..=TOTAL).collect::<Vec<_>>());
    let node_record = store.get_node(&node).await.expect("node").expect("exists");
    assert_eq!(node_record.last_attempt, TOTAL);
    let events = store
        .read_events(&EventPage::new("race").limit(10_000))
        .await
        .expect("events");
    assert_eq!(events.len(), TOTAL as usize);
    assert!(events.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    guard.drop_schema().await;
}

async fn two_recoverers_mark_each_of_100_expired_attempts_once() {
    let (store, guard) = fresh_schema().await;
    // Fixed times: the leases follow the caller's clock here.
    let store = store.with_lease_clock(LeaseClock::Caller);
    for i in 0..100 {
        let node = NodeKey::new("recover", format!("n{i:03}"), 0).expect("valid key");
        store
            .begin_attempt(begin(&node, format!("dead-{i}"), 10, 1_000))
            .await
            .expect("begin");
    }
    // One attempt whose lease is still valid must be left alone.
    let alive = NodeKey::new("recover", "alive", 0).expect("valid key");
    store
        .begin_attempt(begin(&alive, "alive".to_owned(), 10, 10_000))
        .await
        .expect("begin");
    let (first, second) = (
        guard.connect().await.with_lease_clock(LeaseClock::Caller),
        guard.connect().await.with_lease_clock(LeaseClock::Caller),
    );
    let (a, b) = tokio::join!(
        first.recover_abandoned(2_000),
        second.recover_abandoned(2_000)
    );
    let (a, b) = (a.expect("first recoverer"), b.expect("second recoverer"));
    let a_keys: HashSet<_> = a.iter().cloned().collect();
    let b_keys: HashSet<_> = b.iter().cloned().collect();
    assert_eq!(a.len() + b.len(), 100, "{} + {}", a.len(), b.len());
    assert!(a_keys.is_disjoint(&b_keys));
    let events = store
        .read_events(&EventPage::new("recover").limit(10_000))
        .await
        .expect("events");
    let failed = events
        .iter()
        .filter(|record| matches!(record.event.kind, EventKind::NodeFailed { .. }))
        .count();
    assert_eq!(failed, 100);
    let filter = AttemptFilter::run("recover");
    for attempt in store.list_attempts(&filter).await.expect("list") {
        if attempt.node_id == "alive" {
            assert_eq!(attempt.state.as_str(), "in-progress");
        } else {
            assert_eq!(attempt.state.as_str(), "failed");
            assert_eq!(attempt.retryable, Some(true));
            assert_eq!(attempt.finished_at_ms, Some(2_000));
            let code = attempt.error.expect("error").code;
            assert_eq!(code.as_str(), "ATTEMPT_ABANDONED");
        }
    }
    assert!(
        store
            .recover_abandoned(2_000)
            .await
            .expect("again")
            .is_empty()
    );
    guard.drop_schema().await;
}

async fn concurrent_openers_of_a_new_schema_all_succeed() {
    let (_store, guard) = fresh_schema().await;
    let url = format!("{}_twin", guard.url());
    let opened = futures_join_all((0..4).map(|_| {
        let url = url.clone();
        async move { PostgresStore::connect(&url).await }
    }))
    .await;
    for store in opened {
        store.expect("open");
    }
    drop_twin(&guard).await;
    guard.drop_schema().await;
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.expect("task"));
    }
    outputs
}

async fn drop_twin(guard: &stint_adapters_postgres::test_support::SchemaGuard) {
    let options: sqlx::postgres::PgConnectOptions = server_url().parse().expect("url");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
        .await
        .expect("connect");
    let sql = format!("DROP SCHEMA IF EXISTS {}_twin CASCADE", guard.schema());
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("drop twin");
}

async fn a_schema_from_a_newer_stint_is_refused_naming_the_version() {
    let (_store, guard) = fresh_schema().await;
    let options: sqlx::postgres::PgConnectOptions = server_url().parse().expect("url");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
        .await
        .expect("connect");
    let sql = format!(
        "INSERT INTO {}._sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (99990101000000, 'from the future', TRUE, '\\x00', 0)",
        guard.schema()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("insert");
    let error = PostgresStore::connect(&guard.url())
        .await
        .expect_err("newer schema");
    assert!(matches!(error, StoreError::Incompatible { .. }), "{error}");
    assert!(error.to_string().contains("99990101000000"), "{error}");
    guard.drop_schema().await;
}

/// Connects to `url` and checks the one clear error, within the connect timeout.
async fn assert_unavailable(url: &str, expected: &str) {
    let started = Instant::now();
    let error = PostgresStore::connect(url).await.expect_err("must fail");
    let elapsed = started.elapsed();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{message}");
    assert!(message.contains(expected), "'{message}' lacks '{expected}'");
    assert!(!message.contains("hunter2"), "password leaked: {message}");
    assert!(!message.contains('\n'), "not one line: {message}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    // The driver's own error stays reachable for logs and `{:?}`, without the password.
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert!(
        source.is_some(),
        "the driver's error was dropped: {error:?}"
    );
    assert!(!source.unwrap_or_default().contains("hunter2"));
}

async fn an_unreachable_port_is_one_clear_error_naming_host_and_port() {
    assert_unavailable(
        "postgres://postgres:hunter2@127.0.0.1:1/test?connect_timeout=2",
        "127.0.0.1:1",
    )
    .await;
}

async fn an_unknown_user_or_database_is_one_clear_error() {
    // These need the server to answer; without one they would only test the port case again.
    let (_store, guard) = fresh_schema().await;
    let base = server_url();
    let (scheme, rest) = base.split_once("://").expect("url has a scheme");
    let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let unknown_user = format!("{scheme}://no_such_stint_user:hunter2@{host_and_db}");
    assert_unavailable(
        &with_param(&unknown_user, "connect_timeout", "2"),
        "no_such_stint_user",
    )
    .await;
    let (server, _db) = base.rsplit_once('/').expect("url has a database");
    let unknown_db = with_param(
        &format!("{server}/no_such_stint_db"),
        "connect_timeout",
        "2",
    );
    assert_unavailable(&unknown_db, "no_such_stint_db").await;
    guard.drop_schema().await;
}

/// A server that accepts the connection and never answers (a hung or black-holed one, made
/// here on loopback): the connect gives up at `connect_timeout`, neither sooner (the timeout is
/// what ended it, not a refusal) nor much later.
async fn a_silent_host_times_out_at_the_connect_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a silent server");
    let address = silent.local_addr().expect("its address");
    let started = Instant::now();
    let error = PostgresStore::connect(&format!(
        "postgres://u:hunter2@{address}/db?connect_timeout=1"
    ))
    .await
    .expect_err("must fail");
    let elapsed = started.elapsed();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
    assert!(error.to_string().contains(&address.to_string()), "{error}");
    assert!(error.to_string().contains("connect_timeout"), "{error}");
    assert!(!error.to_string().contains("hunter2"));
    assert!(
        elapsed >= Duration::from_millis(950),
        "gave up after {elapsed:?}, before the 1 s connect_timeout"
    );
    assert!(elapsed < Duration::from_millis(2_500), "{elapsed:?}");
    drop(silent);
}

/// Every session is bounded on the server, so a client cut off mid-transaction cannot hold its
/// row locks (and so the recovery of its attempt) for ever.
async fn sessions_are_bounded_on_the_server() {
    let (store, guard) = fresh_schema().await;
    for (name, value) in [
        ("idle_in_transaction_session_timeout", "30s"),
        ("lock_timeout", "10s"),
        ("statement_timeout", "1min"),
    ] {
        assert_eq!(
            store.session_setting(name).await.expect("setting"),
            value,
            "{name}"
        );
    }
    store.close().await;
    guard.drop_schema().await;
}

/// Lease expiry is set and judged by the database's clock, not by the clients': a client whose
/// clock runs an hour ahead does not declare another client's live attempt abandoned.
async fn leases_are_set_and_judged_by_the_database_clock() {
    let (store, guard) = fresh_schema().await;
    let real_now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits");
    let hour = 3_600_000;
    let live = NodeKey::new("clock", "live", 0).expect("valid key");
    store
        .begin_attempt(begin(
            &live,
            "behind".to_owned(),
            real_now - hour,
            real_now - hour + 30_000,
        ))
        .await
        .expect("begin");
    assert_eq!(
        store
            .recover_abandoned(real_now + hour)
            .await
            .expect("recover"),
        Vec::new(),
        "a 30 s lease begun now is live, whatever either client's clock says"
    );
    let short = NodeKey::new("clock", "short", 0).expect("valid key");
    store
        .begin_attempt(begin(
            &short,
            "ahead".to_owned(),
            real_now + hour,
            real_now + hour + 1,
        ))
        .await
        .expect("begin");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let recovered = store.recover_abandoned(0).await.expect("recover");
    assert_eq!(
        recovered,
        vec![short.attempt(1)],
        "a 1 ms lease ran out on the database's clock"
    );
    store.close().await;
    guard.drop_schema().await;
}

fn main() -> std::process::ExitCode {
    let needs_server: Vec<Test> = vec![
        (
            "eight_connections_racing_500_attempts_number_them_without_gaps",
            || {
                block_on(eight_connections_racing_500_attempts_number_them_without_gaps());
            },
        ),
        (
            "two_recoverers_mark_each_of_100_expired_attempts_once",
            || {
                block_on(two_recoverers_mark_each_of_100_expired_attempts_once());
            },
        ),
        ("concurrent_openers_of_a_new_schema_all_succeed", || {
            block_on(concurrent_openers_of_a_new_schema_all_succeed());
        }),
        (
            "a_schema_from_a_newer_stint_is_refused_naming_the_version",
            || {
                block_on(a_schema_from_a_newer_stint_is_refused_naming_the_version());
            },
        ),
        ("an_unknown_user_or_database_is_one_clear_error", || {
            block_on(an_unknown_user_or_database_is_one_clear_error());
        }),
        ("leases_are_set_and_judged_by_the_database_clock", || {
            block_on(leases_are_set_and_judged_by_the_database_clock());
        }),
        ("sessions_are_bounded_on_the_server", || {
            block_on(sessions_are_bounded_on_the_server());
        }),
    ];
    let standalone: Vec<Test> = vec![
        (
            "an_unreachable_port_is_one_clear_error_naming_host_and_port",
            || {
                block_on(an_unreachable_port_is_one_clear_error_naming_host_and_port());
            },
        ),
        ("a_silent_host_times_out_at_the_connect_timeout", || {
            block_on(a_silent_host_times_out_at_the_connect_timeout());
        }),
    ];
    run_tests_with(needs_server, standalone, None)
}
