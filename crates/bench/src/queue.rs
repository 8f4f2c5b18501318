//! Benchmark 6: the queue (issue 17), on the peers' workload so the figures compare. No-op
//! tasks are submitted one `enqueue` call each, then one `Worker` runs them all at concurrency 1
//! or 8 (`exit_when_empty`); a batch of tasks is submitted in one call; and a task is submitted
//! to an idle worker and timed until its finish is durable ([`queue_pickup`]). Every store is
//! fresh, at its default durability: a SQLite file at `synchronous=FULL`, a PostgreSQL schema
//! with `synchronous_commit` on.
//!
//! Each task is its own run (`r{i}`/`task`), as independent jobs of the peers are, so no two
//! tasks share a run's event sequence.
//!
//! [`queue_pickup`]: crate::queue_pickup

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::json;
use stint_adapters_postgres::PostgresStore;
use stint_adapters_postgres::test_support::{
    Availability, SchemaGuard, availability, try_fresh_schema_with,
};
use stint_adapters_sqlite::{SqliteOptions, SqliteStore};
use stint_engine::SystemClock;
use stint_ports::{Clock, DEFAULT_QUEUE, NewTask, QueueStore, Store, Wakeups};
use stint_worker::{Handlers, Shutdown, Worker, WorkerOptions};

use crate::Settings;
use crate::cpu::{CpuMark, CpuPerJob};
use crate::lifecycle::engine_on;
use crate::report::{Row, Verdict};
use crate::stats::{Spread, rate};

/// The handler kind of every task here: returns `null` at once.
const NOOP: &str = "noop";

/// How long one worker run may take before the benchmark gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// The figures the issue asks stint to reach.
const BATCH_TARGET: f64 = 20_000.0;

/// How many tasks and samples a run uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    /// Tasks submitted one call each, then processed.
    pub processed: usize,
    /// Tasks of the one batch call.
    pub batch: usize,
    /// Idle pickups timed per variant.
    pub pickups: usize,
    /// Repetitions of the processing and batch figures.
    pub reps: usize,
}

impl Counts {
    /// The counts, or smaller ones for `--quick`.
    pub(crate) fn of(settings: &Settings) -> Self {
        if settings.quick {
            Self {
                processed: 200,
                batch: 1_000,
                pickups: 10,
                reps: settings.reps,
            }
        } else {
            // Three repetitions: a repetition at concurrency 1 takes seconds.
            Self {
                processed: 2_000,
                batch: 10_000,
                pickups: 30,
                reps: settings.reps.min(3),
            }
        }
    }
}

/// The two durable backends of the queue rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub(crate) const BOTH: [Self; 2] = [Self::Sqlite, Self::Postgres];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite (FULL, the default)",
            Self::Postgres => "PostgreSQL (pool of 8, the default)",
        }
    }

    /// The store's own wake-up, as the pickup rows name it.
    pub(crate) fn wakeup(self) -> &'static str {
        match self {
            Self::Sqlite => "the `data_version` check (every 5 ms)",
            Self::Postgres => "LISTEN/NOTIFY",
        }
    }

    /// The best peer's tasks/s at concurrency 8 on this machine (issue 17).
    fn best_peer(self) -> (&'static str, f64) {
        match self {
            Self::Sqlite => ("effectum", 2_775.0),
            Self::Postgres => ("apalis-postgres", 3_155.0),
        }
    }

    /// Why this backend cannot be measured, if it cannot.
    pub(crate) fn skip_reason(self) -> Option<String> {
        match (self, availability()) {
            (Self::Postgres, Availability::Skip(reason)) => Some(reason),
            _ => None,
        }
    }

    /// A fresh store.
    pub(crate) async fn open(self) -> Result<QueueBench> {
        match self {
            Self::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("stint-bench-")
                    .tempdir()
                    .context("creating a temporary folder")?;
                let store =
                    SqliteStore::open(&dir.path().join("queue.db"), SqliteOptions::default())
                        .await
                        .context("opening the SQLite store")?;
                Ok(QueueBench {
                    store: Arc::new(store.clone()),
                    queue: Arc::new(store.clone()),
                    keep: Keep::Sqlite(store, dir),
                })
            }
            Self::Postgres => {
                let (store, guard) = try_fresh_schema_with("")
                    .await
                    .map_err(|error| anyhow!("the PostgreSQL test server failed: {error}"))?;
                let keep = Keep::Postgres(store.clone(), guard);
                let store = Arc::new(store);
                Ok(QueueBench {
                    store: store.clone(),
                    queue: store,
                    keep,
                })
            }
        }
    }
}

/// One fresh store, seen through the attempt ports and the queue ports.
#[derive(Debug)]
pub(crate) struct QueueBench {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn QueueStore>,
    keep: Keep,
}

/// What keeps a store alive, and is cleaned up after it.
#[derive(Debug)]
enum Keep {
    Sqlite(SqliteStore, tempfile::TempDir),
    Postgres(PostgresStore, SchemaGuard),
    /// The memory store of the tests: no SQL, so nothing lands in a same-SQL recording.
    #[cfg(test)]
    Memory,
}

impl QueueBench {
    /// A worker on this store running no-op tasks.
    pub(crate) fn worker(&self, options: WorkerOptions) -> Worker {
        let handlers = Handlers::new().register(NOOP, |_, _| async { Ok(json!(null)) });
        Worker::new(
            engine_on(self.store.clone()),
            self.queue.clone(),
            self.store.clone(),
            Arc::new(handlers),
            options,
        )
    }

    /// The store's own wake-ups for a worker of the default queue: LISTEN/NOTIFY on
    /// PostgreSQL, the `data_version` check on SQLite (`None` on the memory store).
    pub(crate) async fn wakeups(&self) -> Result<Option<Arc<dyn Wakeups>>> {
        Ok(match &self.keep {
            Keep::Sqlite(store, _) => Some(Arc::new(
                store
                    .wakeups(stint_adapters_sqlite::DEFAULT_CHECK_INTERVAL)
                    .await
                    .context("starting the data_version check")?,
            )),
            Keep::Postgres(store, _) => Some(Arc::new(store.wakeups(&[DEFAULT_QUEUE.to_owned()]))),
            #[cfg(test)]
            Keep::Memory => None,
        })
    }

    /// How many tasks of the default queue ended finished.
    pub(crate) async fn finished(&self) -> Result<u64> {
        let stats = self.queue.queue_stats(now_ms()).await?;
        Ok(stats
            .iter()
            .find(|queue| queue.queue == DEFAULT_QUEUE)
            .map_or(0, |queue| queue.finished))
    }

    /// The durability settings in force, as the store's own connections report them at run
    /// time: `journal_mode` and `synchronous` of every pooled SQLite connection, or
    /// `synchronous_commit` and `fsync` of the PostgreSQL server.
    pub(crate) async fn durability(&self) -> Result<String> {
        match &self.keep {
            Keep::Sqlite(store, _) => {
                let pool = store.pool();
                let mut conns = Vec::new();
                for _ in 0..pool.size() {
                    conns.push(pool.acquire().await?);
                }
                let mut seen = Vec::new();
                for conn in &mut conns {
                    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                        .fetch_one(&mut **conn)
                        .await?;
                    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                        .fetch_one(&mut **conn)
                        .await?;
                    seen.push(format!(
                        "journal_mode={journal}, synchronous={}",
                        match sync {
                            0 => "OFF",
                            1 => "NORMAL",
                            2 => "FULL",
                            _ => "EXTRA",
                        }
                    ));
                }
                let total = seen.len();
                seen.sort();
                seen.dedup();
                Ok(format!(
                    "{} (all {total} pool connections)",
                    seen.join("; ")
                ))
            }
            Keep::Postgres(_, guard) => {
                use sqlx::Connection as _;
                let options: sqlx::postgres::PgConnectOptions = guard.url().parse()?;
                let mut conn = sqlx::PgConnection::connect_with(&options).await?;
                let (sync, fsync): (String, String) = sqlx::query_as(
                    "SELECT current_setting('synchronous_commit'), current_setting('fsync')",
                )
                .fetch_one(&mut conn)
                .await?;
                Ok(format!("synchronous_commit={sync}, fsync={fsync}"))
            }
            #[cfg(test)]
            Keep::Memory => Ok("memory".to_owned()),
        }
    }

    pub(crate) async fn close(self) {
        match self.keep {
            Keep::Sqlite(store, _dir) => store.close().await,
            Keep::Postgres(store, guard) => {
                store.close().await;
                guard.drop_schema().await;
            }
            #[cfg(test)]
            Keep::Memory => {}
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// A no-op task, its own run `run`.
pub(crate) fn noop_task(run: &str) -> NewTask {
    NewTask::new(run, "task", now_ms(), json!({ "kind": NOOP }))
}

/// Submits `n` tasks one call each, then runs them with one worker of `concurrency`; returns
/// (submitted/s, processed/s) after checking that all `n` ended finished.
pub(crate) async fn process_on(
    bench: &QueueBench,
    n: usize,
    concurrency: usize,
) -> Result<Processed> {
    let start = Instant::now();
    for i in 0..n {
        bench
            .queue
            .enqueue(vec![noop_task(&format!("r{i}"))], now_ms())
            .await?;
    }
    let submitted = n as f64 / start.elapsed().as_secs_f64();
    let worker = bench.worker(WorkerOptions {
        concurrency,
        exit_when_empty: true,
        ..WorkerOptions::default()
    });
    let start = Instant::now();
    let cpu = CpuMark::now();
    let report = tokio::time::timeout(RUN_LIMIT, worker.run(Shutdown::default()))
        .await
        .context("the worker did not finish in time")??;
    let processed = n as f64 / start.elapsed().as_secs_f64();
    let cpu = cpu.and_then(|mark| mark.per_job_since(n));
    let finished = bench.finished().await?;
    ensure!(
        report.finished == n as u64 && finished == n as u64,
        "of {n} tasks the worker reported {} finished and the store holds {finished}: {report:?}",
        report.finished
    );
    Ok(Processed {
        submitted,
        processed,
        cpu,
    })
}

/// One [`process_on`] run.
pub(crate) struct Processed {
    /// Tasks/s of the one-call submits.
    pub submitted: f64,
    /// Tasks/s of the worker.
    pub processed: f64,
    /// CPU per task while the worker ran: this process, the rest of the machine.
    pub cpu: Option<CpuPerJob>,
}

/// The processing figures of one backend: (submitted/s, processed/s at 1, at 8).
async fn processing(db: Db, counts: Counts) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (mut submitted, mut one, mut eight) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..counts.reps {
        for concurrency in [1, 8] {
            let bench = db.open().await?;
            let result = process_on(&bench, counts.processed, concurrency).await;
            bench.close().await;
            let Processed {
                submitted: submit,
                processed: process,
                ..
            } = result?;
            submitted.push(submit);
            if concurrency == 1 {
                one.push(process);
            } else {
                eight.push(process);
            }
        }
    }
    Ok((submitted, one, eight))
}

/// Tasks/s of one `enqueue` call of `n` tasks, after checking that all were stored.
async fn batch_on(bench: &QueueBench, n: usize) -> Result<f64> {
    let tasks: Vec<NewTask> = (0..n).map(|i| noop_task(&format!("b{i}"))).collect();
    let start = Instant::now();
    let enqueued = bench.queue.enqueue(tasks, now_ms()).await?;
    let elapsed = start.elapsed().as_secs_f64();
    ensure!(
        enqueued.len() == n && enqueued.iter().all(|e| !e.existing),
        "the batch stored {} of {n} tasks",
        enqueued.len()
    );
    Ok(n as f64 / elapsed)
}

/// Tasks/s of one `enqueue` call of the batch on a fresh store, per repetition.
async fn batch(db: Db, counts: Counts) -> Result<Vec<f64>> {
    let mut rates = Vec::new();
    for _ in 0..counts.reps {
        let bench = db.open().await?;
        let rate = batch_on(&bench, counts.batch).await;
        bench.close().await;
        rates.push(rate?);
    }
    Ok(rates)
}

fn rate_row(measure: &str, setting: &str, rates: &[f64]) -> Row {
    match Spread::of(rates) {
        Some(spread) => Row::info(6, measure, setting, spread.show(rate)),
        None => Row::skipped(6, measure, setting, "no repetitions"),
    }
}

/// `row` with a target of at least `target` tasks/s, judged on every repetition.
fn at_least(mut row: Row, rates: &[f64], target: f64, label: String) -> Row {
    let ratios: Vec<f64> = rates.iter().map(|r| r / target).collect();
    row.target = label;
    row.verdict = Verdict::from_paired(&ratios, 1.0);
    row
}

/// The processing and batch rows of one backend.
pub(crate) async fn throughput_rows(db: Db, counts: Counts) -> Result<Vec<Row>> {
    let setting = db.label();
    let n = counts.processed;
    let measures = [
        format!("submit, one `enqueue` call per task, tasks/s ({n} tasks)"),
        format!("process {n} no-op tasks, 1 worker, concurrency 1, tasks/s"),
        format!("process {n} no-op tasks, 1 worker, concurrency 8, tasks/s"),
        format!(
            "batch submit, {} tasks in one `enqueue` call, tasks/s",
            counts.batch
        ),
    ];
    if let Some(why) = db.skip_reason() {
        return Ok(measures
            .iter()
            .map(|m| Row::skipped(6, m, setting, &why))
            .collect());
    }
    crate::progress(&format!("6: queue processing, {setting}"));
    let (submitted, one, eight) = processing(db, counts).await?;
    crate::progress(&format!("6: queue batch submit, {setting}"));
    let batched = batch(db, counts).await?;
    let (peer, peer_rate) = db.best_peer();
    Ok(vec![
        rate_row(&measures[0], setting, &submitted),
        rate_row(&measures[1], setting, &one),
        at_least(
            rate_row(&measures[2], setting, &eight),
            &eight,
            peer_rate,
            format!("> best peer: {peer} {}/s", rate(peer_rate)),
        ),
        at_least(
            rate_row(&measures[3], setting, &batched),
            &batched,
            BATCH_TARGET,
            format!(">= {}/s", rate(BATCH_TARGET)),
        ),
    ])
}

/// Every row of benchmark 6.
pub(crate) async fn run(settings: &Settings) -> Result<Vec<Row>> {
    let counts = Counts::of(settings);
    let mut rows = Vec::new();
    for db in Db::BOTH {
        rows.extend(throughput_rows(db, counts).await?);
        rows.extend(crate::queue_pickup::rows(db, counts).await?);
    }
    Ok(rows)
}

#[cfg(test)]
pub(crate) mod tests {
    use stint_adapters_memory::MemoryStore;

    use super::*;

    /// A bench on a memory store.
    pub(crate) fn memory() -> QueueBench {
        let store = Arc::new(MemoryStore::new());
        QueueBench {
            store: store.clone(),
            queue: store,
            keep: Keep::Memory,
        }
    }

    #[tokio::test]
    async fn every_submitted_task_is_processed_and_a_batch_is_stored_whole() {
        let bench = memory();
        let Processed {
            submitted,
            processed,
            ..
        } = process_on(&bench, 5, 2).await.expect("5 tasks processed");
        assert!(submitted > 0.0 && processed > 0.0);
        assert_eq!(bench.finished().await.expect("counts"), 5);
        assert!(batch_on(&bench, 7).await.expect("a batch") > 0.0);
        // The batch's tasks are stored, ready.
        assert_eq!(bench.finished().await.expect("counts"), 5);
        bench.close().await;
    }
}
