//! awa 0.6 (PostgreSQL).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use awa::{Client, InsertOpts, JobArgs, JobResult, JobState, QueueConfig};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::common::{self, Args, Progress, emit, pickup_line, throughput_line, until_done};
use crate::pg::{self, FreshDb};

const PEER: &str = "awa 0.6";
const QUEUE: &str = "default";

/// The no-op job.
#[derive(Debug, Serialize, Deserialize, JobArgs)]
struct Noop {}

fn client(pool: &PgPool, progress: &Arc<Progress>, concurrency: usize) -> Result<Client> {
    let progress = progress.clone();
    let config = QueueConfig {
        max_workers: u32::try_from(concurrency)?,
        ..QueueConfig::default()
    };
    Ok(Client::builder(pool.clone())
        .queue(QUEUE, config)
        .register::<Noop, _, _>(move |_args, _ctx| {
            let progress = progress.clone();
            async move {
                progress.hit();
                Ok(JobResult::Completed)
            }
        })
        .build()?)
}

async fn enqueue(pool: &PgPool) -> Result<()> {
    awa::insert_with(
        pool,
        &Noop {},
        InsertOpts {
            queue: QUEUE.into(),
            ..InsertOpts::default()
        },
    )
    .await?;
    Ok(())
}

async fn done(pool: &PgPool, n: usize) -> Result<bool> {
    let counts = awa::admin::state_counts(pool).await?;
    Ok(counts.get(&JobState::Completed).copied().unwrap_or(0) as usize >= n)
}

pub async fn throughput(args: &Args, concurrency: usize) -> Result<()> {
    let db = FreshDb::create(&args.pg_url, "awa").await?;
    let result = throughput_on(&db, args.jobs, concurrency).await;
    db.drop_db().await?;
    result
}

async fn throughput_on(db: &FreshDb, jobs: usize, concurrency: usize) -> Result<()> {
    let pool = db.pool().await?;
    awa::migrations::run(&pool).await?;
    let start = Instant::now();
    for _ in 0..jobs {
        enqueue(&pool).await?;
    }
    let submit = start.elapsed().as_secs_f64();
    let progress = Progress::new();
    let client = client(&pool, &progress, concurrency)?;
    let start = Instant::now();
    client.start().await?;
    let result = until_done(&progress, jobs, || done(&pool, jobs)).await;
    let seconds = start.elapsed().as_secs_f64();
    client.shutdown(Duration::from_secs(5)).await;
    result?;
    let durability = pg::durability(&pool).await?;
    pool.close().await;
    emit(&throughput_line(
        PEER,
        "PostgreSQL",
        concurrency,
        jobs,
        submit,
        seconds,
        &durability,
        "QueueConfig::default() with max_workers = C",
    ));
    Ok(())
}

pub async fn pickup(args: &Args) -> Result<()> {
    let db = FreshDb::create(&args.pg_url, "awa").await?;
    let result = pickup_on(&db, args.pickups).await;
    db.drop_db().await?;
    result
}

async fn pickup_on(db: &FreshDb, count: usize) -> Result<()> {
    let pool = db.pool().await?;
    awa::migrations::run(&pool).await?;
    let progress = Progress::new();
    let client = client(&pool, &progress, 1)?;
    client.start().await?;
    let result = common::pickups(count, |i| {
        let (pool, progress) = (pool.clone(), progress.clone());
        async move {
            enqueue(&pool).await?;
            progress.wait_for(i + 1).await;
            while !done(&pool, i + 1).await? {
                tokio::time::sleep(common::DONE_POLL).await;
            }
            Ok(())
        }
    })
    .await;
    client.shutdown(Duration::from_secs(5)).await;
    let latencies = result?;
    let durability = pg::durability(&pool).await?;
    pool.close().await;
    emit(&pickup_line(
        PEER,
        "PostgreSQL",
        &latencies,
        &durability,
        "QueueConfig::default() (poll 200 ms, LISTEN/NOTIFY wake), max_workers = 1",
    ));
    Ok(())
}
