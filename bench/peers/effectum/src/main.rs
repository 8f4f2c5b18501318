//! effectum 0.7 (SQLite) on the queue workload of issue 18: N no-op jobs added one call each,
//! then one worker at each concurrency until the queue holds none pending or running; and
//! idle pickup latency. Prints JSON lines; `cargo xtask bench --peers` runs it.

#[path = "../../common.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::{Args, Progress, emit, error_line, pickup_line, throughput_line, until_done};
use effectum::{Job, JobRunner, JobState, Queue, RunningJob, Worker};

const PEER: &str = "effectum 0.7";
const BACKEND: &str = "SQLite";
const KIND: &str = "noop";
const DEFAULTS: &str = "Queue::new defaults; the worker's max_concurrency set to C";

async fn noop(_job: RunningJob, progress: Arc<Progress>) -> Result<(), String> {
    progress.hit();
    Ok(())
}

async fn worker(queue: &Queue, progress: Arc<Progress>, concurrency: usize) -> Result<Worker> {
    let runner = JobRunner::builder(KIND, noop).build();
    let concurrency = u16::try_from(concurrency).context("concurrency")?;
    Worker::builder(queue, progress)
        .max_concurrency(concurrency)
        .min_concurrency(concurrency)
        .jobs([runner])
        .build()
        .await
        .context("building the worker")
}

/// What the file says at run time, from a second connection: `journal_mode` is a property of
/// the file (persistent once WAL); `synchronous` is per connection, so effectum's own writer
/// connection cannot be read from here.
fn durability(file: &Path) -> Result<String> {
    let conn = rusqlite::Connection::open(file)?;
    let journal: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    Ok(format!(
        "journal_mode={journal} (read from the file); synchronous=NORMAL on its writer \
         connection (set by Queue::new; per connection, not readable from another)"
    ))
}

async fn throughput(jobs: usize, concurrency: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("effectum.db");
    let queue = Queue::new(&file).await?;
    let start = Instant::now();
    for _ in 0..jobs {
        Job::builder(KIND).add_to(&queue).await?;
    }
    let submit = start.elapsed().as_secs_f64();
    let progress = Progress::new();
    let start = Instant::now();
    let worker = worker(&queue, progress.clone(), concurrency).await?;
    until_done(&progress, jobs, || async {
        let active = queue.num_active_jobs().await?;
        Ok(active.pending == 0 && active.running == 0)
    })
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    let counts = worker.counts();
    ensure!(
        counts.finished == jobs as u64,
        "{jobs} jobs, the worker finished {}",
        counts.finished
    );
    let durability = durability(&file)?;
    worker.unregister(Some(Duration::from_secs(5))).await?;
    queue.close(Duration::from_secs(5)).await?;
    emit(&throughput_line(
        PEER,
        BACKEND,
        concurrency,
        jobs,
        submit,
        seconds,
        &durability,
        DEFAULTS,
    ));
    Ok(())
}

async fn pickup(count: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("effectum.db");
    let queue = Queue::new(&file).await?;
    let progress = Progress::new();
    let worker = worker(&queue, progress.clone(), 1).await?;
    let latencies = common::pickups(count, |_| async {
        let id = Job::builder(KIND).add_to(&queue).await?;
        loop {
            if queue.get_job_status(id).await?.state == JobState::Succeeded {
                return Ok(());
            }
            tokio::time::sleep(common::DONE_POLL).await;
        }
    })
    .await?;
    let durability = durability(&file)?;
    worker.unregister(Some(Duration::from_secs(5))).await?;
    queue.close(Duration::from_secs(5)).await?;
    emit(&pickup_line(
        PEER,
        BACKEND,
        &latencies,
        &durability,
        "Queue::new defaults (in-process wake on add), worker at concurrency 1",
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse()?;
    ensure!(
        args.peer == "all" || args.peer == "effectum",
        "this binary runs only the peer `effectum`"
    );
    for &concurrency in &args.concurrency {
        common::progress(&format!(
            "{PEER}: {} jobs at concurrency {concurrency}",
            args.jobs
        ));
        if let Err(error) = throughput(args.jobs, concurrency).await {
            emit(&error_line(
                PEER,
                BACKEND,
                &format!("concurrency {concurrency}"),
                &error,
            ));
        }
    }
    if args.pickups > 0 {
        common::progress(&format!("{PEER}: idle pickup"));
        if let Err(error) = pickup(args.pickups).await {
            emit(&error_line(PEER, BACKEND, "pickup", &error));
        }
    }
    Ok(())
}
