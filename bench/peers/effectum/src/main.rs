//! effectum 0.7 (SQLite) on the queue workload of issue 18: N no-op jobs added one call each,
//! then one worker at each concurrency until the queue holds none pending or running; and
//! idle pickup latency. Prints JSON lines; `cargo xtask bench --peers` runs it.

#[path = "../../common.rs"]
mod common;
#[path = "../../cpu.rs"]
mod cpu;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{About, Args, Peer, Progress};
use effectum::{Job, JobRunner, JobState, Queue, RunningJob, Worker};

const KIND: &str = "noop";

/// How the result lines name effectum and its setup.
static ABOUT: About = About {
    name: "effectum 0.7",
    backend: "SQLite",
    throughput: "Queue::new defaults; the worker's max_concurrency set to C",
    pickup: "Queue::new defaults (in-process wake on add), worker at concurrency 1",
};

async fn noop(_job: RunningJob, progress: Arc<Progress>) -> Result<(), String> {
    progress.hit();
    Ok(())
}

/// effectum's queue on a fresh file in a temporary folder, and the counter its handler bumps.
struct Effectum {
    queue: Queue,
    file: PathBuf,
    progress: Arc<Progress>,
    /// The folder of `file`, removed when the peer is dropped.
    _dir: tempfile::TempDir,
}

impl Effectum {
    /// A queue on a fresh file, its handler bumping `progress`.
    async fn open(progress: Arc<Progress>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("effectum.db");
        let queue = Queue::new(&file).await?;
        Ok(Self {
            queue,
            file,
            progress,
            _dir: dir,
        })
    }
}

impl Peer for Effectum {
    type Worker = Worker;

    fn about(&self) -> &'static About {
        &ABOUT
    }

    async fn enqueue(&self, _i: usize) -> Result<()> {
        Job::builder(KIND).add_to(&self.queue).await?;
        Ok(())
    }

    async fn start(&self, concurrency: usize) -> Result<Worker> {
        let runner = JobRunner::builder(KIND, noop).build();
        let concurrency = u16::try_from(concurrency).context("concurrency")?;
        Worker::builder(&self.queue, self.progress.clone())
            .max_concurrency(concurrency)
            .min_concurrency(concurrency)
            .jobs([runner])
            .build()
            .await
            .context("building the worker")
    }

    /// Whether the queue holds no job pending or running (`n` jobs were added).
    async fn done(&self, _n: usize) -> Result<bool> {
        let active = self.queue.num_active_jobs().await?;
        Ok(active.pending == 0 && active.running == 0)
    }

    /// Adds a job and asks for its status until it succeeded.
    async fn pick_up(&self, _progress: &Progress, _i: usize) -> Result<()> {
        let id = Job::builder(KIND).add_to(&self.queue).await?;
        loop {
            if self.queue.get_job_status(id).await?.state == JobState::Succeeded {
                return Ok(());
            }
            tokio::time::sleep(common::DONE_POLL).await;
        }
    }

    /// The worker finished every job.
    fn check(&self, worker: &Worker, jobs: usize) -> Result<()> {
        let counts = worker.counts();
        ensure!(
            counts.finished == jobs as u64,
            "{jobs} jobs, the worker finished {}",
            counts.finished
        );
        Ok(())
    }

    async fn stop(&self, worker: Worker) -> Result<()> {
        worker.unregister(Some(Duration::from_secs(5))).await?;
        Ok(())
    }

    /// What the file says at run time, from a second connection: `journal_mode` is a property
    /// of the file (persistent once WAL); `synchronous` is per connection, so effectum's own
    /// writer connection cannot be read from here.
    async fn close(self) -> Result<String> {
        let conn = rusqlite::Connection::open(&self.file)?;
        let journal: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        drop(conn);
        self.queue.close(Duration::from_secs(5)).await?;
        Ok(format!(
            "journal_mode={journal} (read from the file); synchronous=NORMAL on its writer \
             connection (set by Queue::new; per connection, not readable from another)"
        ))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse()?;
    ensure!(
        args.peer == "all" || args.peer == "effectum",
        "this binary runs only the peer `effectum`"
    );
    common::measure(&args, ABOUT.name, ABOUT.backend, |measurement| {
        common::run(Effectum::open, measurement)
    })
    .await;
    Ok(())
}
