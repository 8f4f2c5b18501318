//! apalis 1.0 on SQLite (`apalis-sqlite`) and on PostgreSQL (`apalis-postgres`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use sqlx09::postgres::{PgPool, PgPoolOptions};
use sqlx09::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::common::{self, Args, Progress, emit, pickup_line, throughput_line, until_done};
use crate::pg::FreshDb;

const SQLITE: &str = "apalis-sqlite 1.0";
const POSTGRES: &str = "apalis-postgres 1.0";
/// The poll interval of the pickup rows, the 10 ms that issue 17 measured apalis with.
const PICKUP_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// The pickup rows write each completion at once (`batch_size(1)`): at the default batch of 10
/// an idle job's completion waited for the 30 s heartbeat here (p50 29.9 s over 3 pickups).
fn pickup_config<C: Default + Configure>() -> C {
    C::default().one()
}

/// `batch_size(1)` on either backend's `Config`.
trait Configure {
    fn one(self) -> Self;
}

impl Configure for apalis_sqlite::Config {
    fn one(self) -> Self {
        self.batch_size(1).queue(std::any::type_name::<u32>())
    }
}

impl Configure for apalis_postgres::Config {
    fn one(self) -> Self {
        self.batch_size(1).queue(std::any::type_name::<u32>())
    }
}
const DEFAULTS: &str = "Storage::new defaults (polling, batch 10), `.concurrency(C)`";

async fn noop(_job: u32, progress: Data<Arc<Progress>>) -> Result<(), BoxDynError> {
    progress.hit();
    Ok(())
}

/// A SQLite pool on a fresh file, set up by `SqliteStorage::setup`.
async fn sqlite_pool(dir: &tempfile::TempDir) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("apalis.db"))
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new().connect_with(options).await?;
    SqliteStorage::setup(&pool).await?;
    Ok(pool)
}

/// `journal_mode` and `synchronous` of every connection of the pool: `SqliteStorage::setup`
/// sets `synchronous` on whichever one connection ran it, and the setting is per connection.
async fn sqlite_durability(pool: &SqlitePool) -> Result<String> {
    let mut conns = Vec::new();
    for _ in 0..pool.size() {
        conns.push(pool.acquire().await?);
    }
    let mut seen: Vec<(String, i64)> = Vec::new();
    for conn in &mut conns {
        let journal: String = sqlx09::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **conn)
            .await?;
        let sync: i64 = sqlx09::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await?;
        seen.push((journal, sync));
    }
    let mut parts: Vec<String> = Vec::new();
    let mut distinct = seen.clone();
    distinct.sort();
    distinct.dedup();
    for (journal, sync) in distinct {
        let count = seen
            .iter()
            .filter(|s| s.0 == journal && s.1 == sync)
            .count();
        let name = match sync {
            0 => "OFF",
            1 => "NORMAL",
            2 => "FULL",
            3 => "EXTRA",
            _ => "?",
        };
        parts.push(format!(
            "journal_mode={journal}, synchronous={name} on {count} of {} pool connections",
            seen.len()
        ));
    }
    Ok(parts.join("; "))
}

async fn sqlite_done(pool: &SqlitePool, n: usize) -> Result<bool> {
    let done: i64 = sqlx09::query_scalar("SELECT COUNT(*) FROM Jobs WHERE status = 'Done'")
        .fetch_one(pool)
        .await?;
    Ok(done as usize >= n)
}

/// `synchronous_commit` and `fsync` as a connection of apalis's pool sees them.
async fn pg_durability(pool: &PgPool) -> Result<String> {
    let (sync, fsync): (String, String) =
        sqlx09::query_as("SELECT current_setting('synchronous_commit'), current_setting('fsync')")
            .fetch_one(pool)
            .await?;
    Ok(format!(
        "synchronous_commit={sync}, fsync={fsync} (read through the peer's pool)"
    ))
}

async fn pg_done(pool: &PgPool, n: usize) -> Result<bool> {
    let done: i64 = sqlx09::query_scalar("SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Done'")
        .fetch_one(pool)
        .await?;
    Ok(done as usize >= n)
}

/// Spawns a worker on `backend` at `concurrency`; abort the handle to stop it.
macro_rules! spawn_worker {
    ($backend:expr, $progress:expr, $concurrency:expr) => {{
        let worker = WorkerBuilder::new("peers-bench")
            .backend($backend)
            .data($progress.clone())
            .concurrency($concurrency)
            .build(noop);
        tokio::spawn(async move { worker.run().await })
    }};
}

pub async fn sqlite_throughput(jobs: usize, concurrency: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = sqlite_pool(&dir).await?;
    let mut storage = SqliteStorage::<u32>::new(&pool);
    let start = Instant::now();
    for i in 0..jobs {
        storage.push(i as u32).await.context("push")?;
    }
    let submit = start.elapsed().as_secs_f64();
    let progress = Progress::new();
    let start = Instant::now();
    let running = spawn_worker!(storage, progress, concurrency);
    let result = until_done(&progress, jobs, || sqlite_done(&pool, jobs)).await;
    let seconds = start.elapsed().as_secs_f64();
    running.abort();
    result?;
    let durability = sqlite_durability(&pool).await?;
    pool.close().await;
    emit(&throughput_line(
        SQLITE,
        "SQLite",
        concurrency,
        jobs,
        submit,
        seconds,
        &durability,
        DEFAULTS,
    ));
    Ok(())
}

pub async fn sqlite_pickup(count: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = sqlite_pool(&dir).await?;
    let storage = SqliteStorage::<u32>::new(&pool);
    let progress = Progress::new();
    let running = spawn_worker!(storage
            .clone()
            .with_config(pickup_config())
            .poll_with_interval(PICKUP_POLL), progress, 1);
    let result = common::pickups(count, |i| {
        let (mut storage, pool, progress) = (storage.clone(), pool.clone(), progress.clone());
        async move {
            storage.push(i as u32).await.context("push")?;
            progress.wait_for(i + 1).await;
            while !sqlite_done(&pool, i + 1).await? {
                tokio::time::sleep(common::DONE_POLL).await;
            }
            Ok(())
        }
    })
    .await;
    running.abort();
    let latencies = result?;
    let durability = sqlite_durability(&pool).await?;
    pool.close().await;
    emit(&pickup_line(
        SQLITE,
        "SQLite",
        &latencies,
        &durability,
        "batch_size(1) and poll_with_interval(10 ms): at the defaults (batch 10) an idle job's completion waited for the 30 s heartbeat (p50 29.9 s over 3 pickups); concurrency 1",
    ));
    Ok(())
}

pub async fn pg_throughput(args: &Args, concurrency: usize) -> Result<()> {
    let db = FreshDb::create(&args.pg_url, "apalis").await?;
    let result = pg_throughput_on(&db, args.jobs, concurrency).await;
    db.drop_db().await?;
    result
}

async fn pg_throughput_on(db: &FreshDb, jobs: usize, concurrency: usize) -> Result<()> {
    let pool = PgPoolOptions::new().connect(&db.url).await?;
    PostgresStorage::setup(&pool).await?;
    let mut storage = PostgresStorage::<u32>::new(&pool);
    let start = Instant::now();
    for i in 0..jobs {
        storage.push(i as u32).await.context("push")?;
    }
    let submit = start.elapsed().as_secs_f64();
    let progress = Progress::new();
    let start = Instant::now();
    let running = spawn_worker!(storage, progress, concurrency);
    let result = until_done(&progress, jobs, || pg_done(&pool, jobs)).await;
    let seconds = start.elapsed().as_secs_f64();
    running.abort();
    result?;
    let durability = pg_durability(&pool).await?;
    pool.close().await;
    emit(&throughput_line(
        POSTGRES,
        "PostgreSQL",
        concurrency,
        jobs,
        submit,
        seconds,
        &durability,
        DEFAULTS,
    ));
    Ok(())
}

pub async fn pg_pickup(args: &Args) -> Result<()> {
    let db = FreshDb::create(&args.pg_url, "apalis").await?;
    let result = pg_pickup_on(&db, args.pickups).await;
    db.drop_db().await?;
    result
}

async fn pg_pickup_on(db: &FreshDb, count: usize) -> Result<()> {
    let pool = PgPoolOptions::new().connect(&db.url).await?;
    PostgresStorage::setup(&pool).await?;
    let storage = PostgresStorage::<u32>::new(&pool);
    let progress = Progress::new();
    let running = spawn_worker!(storage
            .clone()
            .with_config(pickup_config())
            .poll_with_interval(PICKUP_POLL), progress, 1);
    let result = common::pickups(count, |i| {
        let (mut storage, pool, progress) = (storage.clone(), pool.clone(), progress.clone());
        async move {
            storage.push(i as u32).await.context("push")?;
            progress.wait_for(i + 1).await;
            while !pg_done(&pool, i + 1).await? {
                tokio::time::sleep(common::DONE_POLL).await;
            }
            Ok(())
        }
    })
    .await;
    running.abort();
    let latencies = result?;
    let durability = pg_durability(&pool).await?;
    pool.close().await;
    emit(&pickup_line(
        POSTGRES,
        "PostgreSQL",
        &latencies,
        &durability,
        "batch_size(1) and poll_with_interval(10 ms): at the defaults (batch 10) an idle job's completion waited for the 30 s heartbeat (p50 29.9 s over 3 pickups); concurrency 1",
    ));
    Ok(())
}
