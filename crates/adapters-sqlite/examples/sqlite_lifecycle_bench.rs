//! Attempts per second for the full lifecycle of a trivial attempt (begin, one heartbeat, end
//! finished) through the store port, beside the raw floor: the same SQL statements and
//! transactions issued directly through sqlx on an identically configured pool.
//!
//! Run: `cargo run --release -p stint-adapters-sqlite --example sqlite_lifecycle_bench`
//! Optional: `-- <seconds per repetition> <repetitions> <folder for the database files>`.
//! Prints figures; never fails on speed.
#![allow(clippy::print_stdout, clippy::unwrap_used)] // a benchmark prints; a failure aborts it

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::sqlite::SqlitePool;
use stint_adapters_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use stint_domain::{Event, EventKind, NodeKey};
use stint_ports::{AttemptEnd, AttemptStore, BeginAttempt, HeartbeatWrite, OwnedAttempt};

/// One lifecycle through the port; node `i` of the run is fresh, as a trivial task's would be.
async fn through_store(store: &SqliteStore, i: u64) {
    let node = NodeKey::new("bench", format!("n{i}"), 0).unwrap();
    let begun = store
        .begin_attempt(BeginAttempt {
            node: node.clone(),
            owner: "owner".to_owned(),
            started_at_ms: i,
            lease_expires_at_ms: i + 30_000,
            metadata: json!({}),
            working_dir: None,
            label: None,
            output_table: Some("out".to_owned()),
        })
        .await
        .unwrap();
    let key = node.attempt(begun.attempt);
    let owned = OwnedAttempt {
        key: key.clone(),
        owner: "owner".to_owned(),
    };
    let heartbeat = EventKind::TaskHeartbeat {
        has_data: true,
        data_size_bytes: 9,
        interval_ms: None,
    };
    store
        .record_heartbeat(
            &owned,
            HeartbeatWrite {
                received_at_ms: i,
                payload: Some(json!({"step":1})),
                event: Event::new(&key, i, heartbeat),
            },
        )
        .await
        .unwrap();
    let end = AttemptEnd::Finished {
        output: json!({"ok": true}),
        vcs: None,
    };
    let finished = Event::new(&key, i, EventKind::NodeFinished);
    store
        .end_attempt(&owned, end, i, vec![finished])
        .await
        .unwrap();
}

const INSERT_EVENT: &str = "INSERT INTO events (run_id, node_id, iteration, attempt, type, \
    timestamp_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?)";

/// The same statements and transactions as [`through_store`], written by hand: no port, no
/// serde of domain types, no error mapping.
async fn raw_floor(pool: &SqlitePool, i: u64) {
    let node_id = format!("n{i}");
    let at = i as i64;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query(
        "SELECT COALESCE(MAX(attempt), 0), COALESCE(SUM(state = 'in-progress'), 0), \
         COALESCE(SUM(state = 'failed'), 0) FROM attempts \
         WHERE run_id = ? AND node_id = ? AND iteration = ?",
    )
    .bind("bench")
    .bind(&node_id)
    .bind(0)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "SELECT heartbeat FROM attempts WHERE run_id = ? AND node_id = ? AND iteration = ? \
         AND heartbeat IS NOT NULL ORDER BY attempt DESC LIMIT 1",
    )
    .bind("bench")
    .bind(&node_id)
    .bind(0)
    .fetch_optional(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO attempts (run_id, node_id, iteration, attempt, state, owner, \
         lease_expires_at_ms, started_at_ms, metadata, working_dir) \
         VALUES (?, ?, ?, ?, 'in-progress', ?, ?, ?, ?, ?)",
    )
    .bind("bench")
    .bind(&node_id)
    .bind(0)
    .bind(1)
    .bind("owner")
    .bind(at + 30_000)
    .bind(at)
    .bind("{}")
    .bind(None::<String>)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO nodes (run_id, node_id, iteration, state, last_attempt, updated_at_ms, \
         output_table, label) VALUES (?, ?, ?, 'in-progress', ?, ?, ?, ?) \
         ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET state = excluded.state, \
         last_attempt = excluded.last_attempt, updated_at_ms = excluded.updated_at_ms, \
         output_table = excluded.output_table, label = excluded.label",
    )
    .bind("bench")
    .bind(&node_id)
    .bind(0)
    .bind(1)
    .bind(at)
    .bind("out")
    .bind(None::<String>)
    .execute(&mut *tx)
    .await
    .unwrap();
    event(&mut tx, &node_id, "NodeStarted", at).await;
    tx.commit().await.unwrap();

    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query(
        "UPDATE attempts SET heartbeat = COALESCE(?, heartbeat), \
         last_heartbeat_at_ms = MAX(COALESCE(last_heartbeat_at_ms, ?), ?) \
         WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ? \
         AND state = 'in-progress' AND owner = ?",
    )
    .bind(r#"{"step":1}"#)
    .bind(at)
    .bind(at)
    .bind("bench")
    .bind(&node_id)
    .bind(0)
    .bind(1)
    .bind("owner")
    .execute(&mut *tx)
    .await
    .unwrap();
    event(&mut tx, &node_id, "TaskHeartbeat", at).await;
    tx.commit().await.unwrap();

    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query(
        "UPDATE attempts SET state = ?, finished_at_ms = ?, error = ?, retryable = ?, vcs = ? \
         WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ? \
         AND state = 'in-progress' AND owner = ?",
    )
    .bind("finished")
    .bind(at)
    .bind(None::<String>)
    .bind(None::<bool>)
    .bind(None::<String>)
    .bind("bench")
    .bind(&node_id)
    .bind(0)
    .bind(1)
    .bind("owner")
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE nodes SET state = ?, updated_at_ms = ? WHERE run_id = ? AND node_id = ? \
         AND iteration = ? AND last_attempt = ?",
    )
    .bind("finished")
    .bind(at)
    .bind("bench")
    .bind(&node_id)
    .bind(0)
    .bind(1)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO outputs (run_id, node_id, iteration, attempt, output, written_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET \
         attempt = excluded.attempt, output = excluded.output, \
         written_at_ms = excluded.written_at_ms",
    )
    .bind("bench")
    .bind(&node_id)
    .bind(0)
    .bind(1)
    .bind(r#"{"ok":true}"#)
    .bind(at)
    .execute(&mut *tx)
    .await
    .unwrap();
    event(&mut tx, &node_id, "NodeFinished", at).await;
    tx.commit().await.unwrap();
}

async fn event(conn: &mut sqlx::SqliteConnection, node_id: &str, kind: &str, at: i64) {
    let body = format!(
        r#"{{"run_id":"bench","node_id":"{node_id}","iteration":0,"attempt":1,"timestamp_ms":{at},"type":"{kind}"}}"#
    );
    sqlx::query(INSERT_EVENT)
        .bind("bench")
        .bind(node_id)
        .bind(0)
        .bind(1)
        .bind(kind)
        .bind(at)
        .bind(body)
        .execute(conn)
        .await
        .unwrap();
}

/// Lifecycles per second over `window`, on a fresh database file.
async fn measure(
    dir: &Path,
    synchronous: Synchronous,
    through_port: bool,
    window: Duration,
) -> f64 {
    let file = tempfile::Builder::new()
        .suffix(".db")
        .tempfile_in(dir)
        .unwrap();
    let path = file.path().to_path_buf();
    drop(file); // only the unique name is wanted; the store creates the database
    let options = SqliteOptions {
        synchronous,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&path, options).await.unwrap();
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < window {
        if through_port {
            through_store(&store, done).await;
        } else {
            raw_floor(store.pool(), done).await;
        }
        done += 1;
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    rate
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.first().map_or(0.5, |s| s.parse().unwrap());
    let repetitions: usize = args.get(1).map_or(5, |s| s.parse().unwrap());
    let dir = args.get(2).map_or_else(std::env::temp_dir, Into::into);
    let window = Duration::from_secs_f64(seconds);
    println!(
        "lifecycle = begin + 1 heartbeat + end(finished), one attempt at a time; \
         median of {repetitions} windows of {seconds} s; files in {}",
        dir.display()
    );
    println!(
        "{:<8} {:>14} {:>14} {:>12}",
        "sync", "store att/s", "floor att/s", "store/floor"
    );
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        let (mut store, mut floor) = (Vec::new(), Vec::new());
        // Interleaved, so drift in the machine's load hits both sides alike.
        for _ in 0..repetitions {
            store.push(measure(&dir, synchronous, true, window).await);
            floor.push(measure(&dir, synchronous, false, window).await);
        }
        let (store, floor) = (median(store), median(floor));
        println!(
            "{:<8} {store:>14.0} {floor:>14.0} {:>12.3}",
            synchronous.as_str(),
            store / floor
        );
    }
}
