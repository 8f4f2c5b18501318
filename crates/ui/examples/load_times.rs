//! Measures the dashboard's page load times on a database of many runs.
//!
//! ```sh
//! cargo run --release -p stint-ui --example load_times                 # 10,000 runs, SQLite
//! cargo run --release -p stint-ui --example load_times -- --runs 1000
//! cargo run --release -p stint-ui --example load_times -- --postgres
//! ```
//!
//! It seeds the runs through the ports (each run: a node whose first attempt failed and was
//! retried, and a finished node; every 50th run still in progress), into a fresh SQLite file or
//! (`--postgres`) a fresh schema of the test server (`STINT_TEST_POSTGRES_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards, then requests each page
//! through the router and prints the median and slowest of its load times.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example prints its figures"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::json;
use stint_adapters_postgres::test_support;
use stint_adapters_sqlite::SqliteStore;
use stint_domain::{NodeKey, TaskError};
use stint_ports::{
    AttemptEnd, BeginAttempt, EndAttempt, HistoryStore, OwnedAttempt, QueueHistory, Store,
};
use stint_ui::UiState;
use tower::ServiceExt;

const BASE: u64 = 1_760_000_000_000;
const SAMPLES: usize = 20;

trait AnyStore: Store + QueueHistory {}
impl<T: Store + QueueHistory + ?Sized> AnyStore for T {}

async fn attempt(store: &dyn AnyStore, run: &str, node: &str, at: u64, end: Option<AttemptEnd>) {
    let key = NodeKey::new(run, node, 0).expect("key");
    let owner = format!("o-{run}-{node}-{at}");
    let begin = BeginAttempt {
        node: key.clone(),
        owner: owner.clone(),
        started_at_ms: at,
        lease_ms: 3_600_000_000,
        metadata: json!({}),
        working_dir: None,
        label: None,
        output_table: None,
    };
    let begun = store.begin_attempt(begin).await.expect("begin");
    let Some(end) = end else { return };
    let owned = OwnedAttempt {
        key: key.attempt(begun.attempt),
        owner,
    };
    let write = EndAttempt {
        end,
        finished_at_ms: at + 900,
        events: vec![],
        task: None,
    };
    store.end_attempt(&owned, write).await.expect("end");
}

async fn seed_run(store: &dyn AnyStore, index: u64) {
    let run = format!("run-{index:05}");
    let at = BASE + index * 1_000;
    let failed = AttemptEnd::Failed {
        error: TaskError::task_failed("boom"),
        retryable: true,
    };
    let finished = || {
        Some(AttemptEnd::Finished {
            output: json!({"n": index}),
            vcs: None,
        })
    };
    attempt(store, &run, "fetch", at, Some(failed)).await;
    let last = if index.is_multiple_of(50) {
        None
    } else {
        finished()
    };
    attempt(store, &run, "fetch", at + 1_000, last).await;
    attempt(store, &run, "report", at + 2_000, finished()).await;
}

async fn time_page(state: &UiState, path: &str) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = stint_ui::router(state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let _ = response.into_body().collect().await.expect("body");
        times.push(started.elapsed());
    }
    times.sort();
    (times[SAMPLES / 2], times[SAMPLES - 1])
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: u64 = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map_or(10_000, |n| n.parse().expect("--runs N"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, backend, schema): (Arc<dyn AnyStore>, &str, Option<_>) =
        if args.iter().any(|a| a == "--postgres") {
            let (store, guard) = test_support::try_fresh_schema_with("max_connections=16")
                .await
                .expect("the PostgreSQL test server");
            (Arc::new(store), "PostgreSQL", Some(guard))
        } else {
            let path = dir.path().join("load.db");
            let url = format!("sqlite://{}?synchronous=normal", path.display());
            (
                Arc::new(SqliteStore::connect(&url).await.expect("sqlite")),
                "SQLite",
                None,
            )
        };
    let seeding = Instant::now();
    futures::stream::iter(0..runs)
        .for_each_concurrent(if schema.is_some() { 16 } else { 1 }, |i| {
            let store = store.clone();
            async move { seed_run(&*store, i).await }
        })
        .await;
    eprintln!(
        "seeded {runs} runs on {backend} in {:.1?}",
        seeding.elapsed()
    );

    let history: Arc<dyn HistoryStore> = store.clone();
    let queue: Arc<dyn QueueHistory> = store.clone();
    let state = UiState::new(history, queue);
    let first = stint_ui::router(state.clone())
        .oneshot(
            Request::get("/api/runs")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let bytes = first.into_body().collect().await.expect("body").to_bytes();
    let page: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    let cursor = page["next"].as_str().expect("a second page").to_owned();
    let middle = format!("run-{:05}", runs / 2 + 1);
    let pages = [
        ("runs list, first page", "/".to_owned()),
        ("runs list, second page", format!("/?after={cursor}")),
        ("runs list, in progress", "/?state=in-progress".to_owned()),
        ("runs list, id search", format!("/?q={}", &middle[..8])),
        ("runs JSON, first page", "/api/runs".to_owned()),
        ("a run (timeline)", format!("/runs/{middle}")),
        (
            "an attempt",
            format!("/runs/{middle}/nodes/fetch/0/attempts/1"),
        ),
        ("queues", "/queues".to_owned()),
    ];
    println!(
        "{backend}, {runs} runs ({} attempts): median / slowest of {SAMPLES} loads",
        runs * 3
    );
    for (name, path) in pages {
        let (median, slowest) = time_page(&state, &path).await;
        println!(
            "  {name:<24} {:>8.1} ms {:>8.1} ms   {path}",
            ms(median),
            ms(slowest)
        );
    }
    if let Some(guard) = schema {
        guard.drop_schema().await;
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}
