//! underway 0.2 (PostgreSQL).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use underway::{Job, To};

use crate::common::{self, Args, Progress, emit, pickup_line, throughput_line, until_done};
use crate::pg::{self, FreshDb};

const PEER: &str = "underway 0.2";

/// The no-op job's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {}

async fn job(pool: &PgPool, progress: &Arc<Progress>) -> Result<Job<Noop, ()>> {
    let progress = progress.clone();
    Ok(Job::builder()
        .step(move |_cx, _input: Noop| {
            let progress = progress.clone();
            async move {
                progress.hit();
                To::done()
            }
        })
        .name("noop")
        .pool(pool.clone())
        .build()
        .await?)
}

async fn done(pool: &PgPool, n: usize) -> Result<bool> {
    let done: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM underway.task WHERE state = 'succeeded'")
            .fetch_one(pool)
            .await?;
    Ok(done as usize >= n)
}

/// Spawns the job's worker at `concurrency`; abort the handle to stop it.
fn spawn_worker(job: &Job<Noop, ()>, concurrency: usize) -> tokio::task::JoinHandle<()> {
    let mut worker = job.worker();
    worker.set_concurrency_limit(concurrency);
    tokio::spawn(async move {
        if let Err(error) = worker.run().await {
            common::progress(&format!("{PEER}: the worker stopped: {error}"));
        }
    })
}

pub async fn throughput(args: &Args, concurrency: usize) -> Result<()> {
    let db = FreshDb::create(&args.pg_url, "underway").await?;
    let result = throughput_on(&db, args.jobs, concurrency).await;
    db.drop_db().await?;
    result
}

async fn throughput_on(db: &FreshDb, jobs: usize, concurrency: usize) -> Result<()> {
    let pool = db.pool().await?;
    underway::run_migrations(&pool).await?;
    let progress = Progress::new();
    let job = job(&pool, &progress).await?;
    let start = Instant::now();
    for _ in 0..jobs {
        job.enqueue(&Noop {}).await?;
    }
    let submit = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let running = spawn_worker(&job, concurrency);
    let result = until_done(&progress, jobs, || done(&pool, jobs)).await;
    let seconds = start.elapsed().as_secs_f64();
    running.abort();
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
        "Job::builder defaults, Worker::run, set_concurrency_limit(C)",
    ));
    Ok(())
}

pub async fn pickup(args: &Args) -> Result<()> {
    let db = FreshDb::create(&args.pg_url, "underway").await?;
    let result = pickup_on(&db, args.pickups).await;
    db.drop_db().await?;
    result
}

async fn pickup_on(db: &FreshDb, count: usize) -> Result<()> {
    let pool = db.pool().await?;
    underway::run_migrations(&pool).await?;
    let progress = Progress::new();
    let job = job(&pool, &progress).await?;
    let running = spawn_worker(&job, 1);
    let result = common::pickups(count, |i| {
        let (pool, progress, job) = (pool.clone(), progress.clone(), job.clone());
        async move {
            job.enqueue(&Noop {}).await?;
            progress.wait_for(i + 1).await;
            while !done(&pool, i + 1).await? {
                tokio::time::sleep(common::DONE_POLL).await;
            }
            Ok(())
        }
    })
    .await;
    running.abort();
    let latencies = result?;
    let durability = pg::durability(&pool).await?;
    pool.close().await;
    emit(&pickup_line(
        PEER,
        "PostgreSQL",
        &latencies,
        &durability,
        "Worker::run defaults (LISTEN on enqueue, 1-minute poll), concurrency 1",
    ));
    Ok(())
}
