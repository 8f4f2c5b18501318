//! underway 0.2 (PostgreSQL).

use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use underway::{Job, To};

use crate::common::{self, About, Peer, Progress};
use crate::pg::{self, PgPeer};

/// How the result lines name underway and its setup.
static ABOUT: About = About {
    name: "underway 0.2",
    backend: "PostgreSQL",
    throughput: "Job::builder defaults, Worker::run, set_concurrency_limit(C)",
    pickup: "Worker::run defaults (LISTEN on enqueue, 1-minute poll), concurrency 1",
};

/// The no-op job's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {}

/// underway on a migrated database: its pool, and the no-op job (whose step bumps the
/// counter the peer was opened with).
pub struct Underway {
    pool: PgPool,
    job: Job<Noop, ()>,
}

impl PgPeer for Underway {
    const DB: &'static str = "underway";

    async fn open(url: &str, progress: Arc<Progress>) -> Result<Self> {
        let pool = pg::pool(url).await?;
        underway::run_migrations(&pool).await?;
        let job = Job::builder()
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
            .await?;
        Ok(Self { pool, job })
    }
}

impl Peer for Underway {
    /// The task running the worker; aborting it stops the worker.
    type Worker = JoinHandle<()>;

    fn about(&self) -> &'static About {
        &ABOUT
    }

    async fn enqueue(&self, _i: usize) -> Result<()> {
        self.job.enqueue(&Noop {}).await?;
        Ok(())
    }

    async fn start(&self, concurrency: usize) -> Result<JoinHandle<()>> {
        let mut worker = self.job.worker();
        worker.set_concurrency_limit(concurrency);
        Ok(tokio::spawn(async move {
            if let Err(error) = worker.run().await {
                common::progress(&format!("{}: the worker stopped: {error}", ABOUT.name));
            }
        }))
    }

    async fn done(&self, n: usize) -> Result<bool> {
        let done: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM underway.task WHERE state = 'succeeded'")
                .fetch_one(&self.pool)
                .await?;
        Ok(done as usize >= n)
    }

    async fn stop(&self, running: JoinHandle<()>) -> Result<()> {
        running.abort();
        Ok(())
    }

    async fn close(self) -> Result<String> {
        pg::close(&self.pool).await
    }
}
