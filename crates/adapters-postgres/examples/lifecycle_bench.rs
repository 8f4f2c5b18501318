//! Full attempt lifecycles per second (begin, one heartbeat, end finished) through the store
//! port, beside the raw floor: the same SQL statements and transactions issued directly through
//! sqlx, in the same process and run. Median of 5 repetitions each, interleaved.
//!
//! `cargo run --release -p stint-adapters-postgres --example lifecycle_bench`
//! (server: `STINT_TEST_POSTGRES_URL`, else the local test server; a fresh schema, dropped after).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark prints its figures"
)]

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sqlx::postgres::{PgPool, PgPoolOptions};
use stint_adapters_postgres::test_support::{fresh_schema_with, server_url};
use stint_domain::{Event, EventKind, NodeKey};
use stint_ports::{AttemptEnd, BeginAttempt, HeartbeatWrite, OwnedAttempt, Store};

const REPETITIONS: usize = 5;
/// Lifecycles per worker per repetition.
const PER_WORKER: u32 = 60;

const EVENT_SQL: &str = "WITH run_lock AS (SELECT pg_advisory_xact_lock($1)) \
    INSERT INTO events (run_id, node_id, iteration, attempt, type, timestamp_ms, body) \
    SELECT e.run_id, e.node_id, e.iteration, e.attempt, e.type, e.timestamp_ms, e.body \
    FROM run_lock, unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], \
                          $7::bigint[], $8::jsonb[]) WITH ORDINALITY \
         AS e(run_id, node_id, iteration, attempt, type, timestamp_ms, body, ord) \
    ORDER BY e.ord";

/// One lifecycle through the port.
async fn store_lifecycle(store: &dyn Store, node: &NodeKey, worker: usize) {
    let owner = format!("bench-{worker}");
    let begun = store
        .begin_attempt(BeginAttempt {
            node: node.clone(),
            owner: owner.clone(),
            started_at_ms: 1,
            lease_expires_at_ms: 30_001,
            metadata: json!({"prompt": "bench"}),
            working_dir: None,
            label: Some("bench".to_owned()),
            output_table: Some("out".to_owned()),
        })
        .await
        .expect("begin");
    let key = node.attempt(begun.attempt);
    let attempt = OwnedAttempt {
        key: key.clone(),
        owner,
    };
    let kind = EventKind::TaskHeartbeat {
        has_data: true,
        data_size_bytes: 9,
        interval_ms: None,
    };
    let heartbeat = HeartbeatWrite {
        received_at_ms: 2,
        payload: Some(json!({"step": 1})),
        event: Event::new(&key, 2, kind),
    };
    store
        .record_heartbeat(&attempt, heartbeat)
        .await
        .expect("heartbeat");
    let end = AttemptEnd::Finished {
        output: json!({"ok": true}),
        vcs: None,
    };
    let finished = Event::new(&key, 3, EventKind::NodeFinished);
    store
        .end_attempt(&attempt, end, 3, vec![finished])
        .await
        .expect("end");
}

/// The same statements, bound directly (the attempt number is tracked by the caller instead of
/// being checked, which is the floor's only shortcut besides skipping the port).
async fn insert_event(tx: &mut sqlx::PgConnection, node: &NodeKey, attempt: i64, kind: EventKind) {
    let event = Event::new(&node.attempt(attempt as u32), 1, kind);
    sqlx::query(EVENT_SQL)
        .bind(42_i64)
        .bind(vec![node.run_id()])
        .bind(vec![node.node_id()])
        .bind(vec![0_i64])
        .bind(vec![attempt])
        .bind(vec![event.kind.type_name()])
        .bind(vec![1_i64])
        .bind(vec![serde_json::to_value(&event).expect("json")])
        .execute(&mut *tx)
        .await
        .expect("event");
}

async fn raw_lifecycle(pool: &PgPool, node: &NodeKey, worker: usize) {
    let (run, id, owner) = (node.run_id(), node.node_id(), format!("bench-{worker}"));
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO nodes (run_id, node_id, iteration, state, last_attempt, updated_at_ms, \
         output_table, label) VALUES ($1, $2, 0, 'in-progress', 0, 1, 'out', 'bench') \
         ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET last_attempt = nodes.last_attempt",
    )
    .bind(run)
    .bind(id)
    .execute(&mut *tx)
    .await
    .expect("node");
    let highest: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(attempt), 0) AS highest, \
                COUNT(*) FILTER (WHERE state = 'failed') AS failed, \
                COUNT(*) FILTER (WHERE state = 'in-progress') AS running, \
                (SELECT heartbeat FROM attempts WHERE run_id = $1 AND node_id = $2 \
                   AND iteration = 0 AND heartbeat IS NOT NULL ORDER BY attempt DESC LIMIT 1) \
         FROM attempts WHERE run_id = $1 AND node_id = $2 AND iteration = 0",
    )
    .bind(run)
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .expect("summary");
    let attempt = highest + 1;
    sqlx::query(
        "WITH inserted AS (INSERT INTO attempts (run_id, node_id, iteration, attempt, state, \
           owner, lease_expires_at_ms, started_at_ms, metadata, working_dir) \
           VALUES ($1, $2, 0, $3, 'in-progress', $4, 30001, 1, $5, NULL)) \
         UPDATE nodes SET state = 'in-progress', last_attempt = $3, updated_at_ms = 1, \
           output_table = 'out', label = 'bench' \
         WHERE run_id = $1 AND node_id = $2 AND iteration = 0",
    )
    .bind(run)
    .bind(id)
    .bind(attempt)
    .bind(&owner)
    .bind(json!({"prompt": "bench"}))
    .execute(&mut *tx)
    .await
    .expect("attempt");
    insert_event(&mut tx, node, attempt, EventKind::NodeStarted).await;
    tx.commit().await.expect("commit");

    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        "UPDATE attempts SET heartbeat = COALESCE($4, heartbeat), \
           last_heartbeat_at_ms = GREATEST(last_heartbeat_at_ms, 2) \
         WHERE run_id = $1 AND node_id = $2 AND iteration = 0 AND attempt = $3 \
           AND state = 'in-progress' AND owner = $5",
    )
    .bind(run)
    .bind(id)
    .bind(attempt)
    .bind(json!({"step": 1}))
    .bind(&owner)
    .execute(&mut *tx)
    .await
    .expect("heartbeat");
    let kind = EventKind::TaskHeartbeat {
        has_data: true,
        data_size_bytes: 9,
        interval_ms: None,
    };
    insert_event(&mut tx, node, attempt, kind).await;
    tx.commit().await.expect("commit");

    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        "UPDATE attempts SET state = 'finished', finished_at_ms = 3, error = NULL, \
           retryable = NULL, vcs = NULL \
         WHERE run_id = $1 AND node_id = $2 AND iteration = 0 AND attempt = $3 \
           AND state = 'in-progress' AND owner = $4",
    )
    .bind(run)
    .bind(id)
    .bind(attempt)
    .bind(&owner)
    .execute(&mut *tx)
    .await
    .expect("end");
    sqlx::query(
        "UPDATE nodes SET state = 'finished', updated_at_ms = 3 \
         WHERE run_id = $1 AND node_id = $2 AND iteration = 0 AND last_attempt = $3",
    )
    .bind(run)
    .bind(id)
    .bind(attempt)
    .execute(&mut *tx)
    .await
    .expect("node");
    sqlx::query(
        "INSERT INTO outputs (run_id, node_id, iteration, attempt, output, written_at_ms) \
         VALUES ($1, $2, 0, $3, $4, 3) ON CONFLICT (run_id, node_id, iteration) DO UPDATE \
         SET attempt = EXCLUDED.attempt, output = EXCLUDED.output, \
             written_at_ms = EXCLUDED.written_at_ms",
    )
    .bind(run)
    .bind(id)
    .bind(attempt)
    .bind(json!({"ok": true}))
    .execute(&mut *tx)
    .await
    .expect("output");
    insert_event(&mut tx, node, attempt, EventKind::NodeFinished).await;
    tx.commit().await.expect("commit");
}

#[derive(Clone)]
enum Target {
    Store(Arc<dyn Store>),
    Raw(PgPool),
}

/// Lifecycles per second with `workers` concurrent workers, each on its own node, of one run
/// (`run_per_worker` false: they share the run's event-order lock) or of a run each.
async fn measure(target: Target, workers: usize, run_id: String, run_per_worker: bool) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let run_id = if run_per_worker {
                format!("{run_id}w{worker}")
            } else {
                run_id.clone()
            };
            let (target, node) = (
                target.clone(),
                NodeKey::new(run_id, format!("n{worker}"), 0),
            );
            let node = node.expect("valid key");
            tokio::spawn(async move {
                for _ in 0..PER_WORKER {
                    match &target {
                        Target::Store(store) => store_lifecycle(&**store, &node, worker).await,
                        Target::Raw(pool) => raw_lifecycle(pool, &node, worker).await,
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
    f64::from(PER_WORKER) * workers as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    for (connections, run_per_worker) in [(1_usize, false), (8, false), (8, true)] {
        let params = format!("max_connections={connections}");
        let Some((store, guard)) = fresh_schema_with(&params).await else {
            return;
        };
        let options: sqlx::postgres::PgConnectOptions = server_url().parse().expect("url");
        let raw = PgPoolOptions::new()
            .max_connections(connections as u32)
            .connect_with(options.options([("search_path", guard.schema())]))
            .await
            .expect("raw pool");
        let store: Arc<dyn Store> = Arc::new(store);
        let (mut via_store, mut via_raw) = (Vec::new(), Vec::new());
        for rep in 0..REPETITIONS {
            via_raw.push(
                measure(
                    Target::Raw(raw.clone()),
                    connections,
                    format!("raw{rep}"),
                    run_per_worker,
                )
                .await,
            );
            let target = Target::Store(store.clone());
            via_store
                .push(measure(target, connections, format!("store{rep}"), run_per_worker).await);
        }
        let (store_rate, raw_rate) = (median(via_store), median(via_raw));
        println!(
            "pool {connections}, {connections} concurrent attempt(s), {}: store {store_rate:.0} \
             lifecycles/s, raw sqlx {raw_rate:.0}/s, store/raw = {:.2}",
            if run_per_worker {
                "a run each"
            } else {
                "one run"
            },
            store_rate / raw_rate
        );
        raw.close().await;
        guard.drop_schema().await;
    }
}
