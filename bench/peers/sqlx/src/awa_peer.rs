//! awa 0.6 (PostgreSQL).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use awa::{Client, InsertOpts, JobArgs, JobResult, JobState, QueueConfig};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::common::{About, Peer, Progress};
use crate::pg::{self, PgPeer};

const QUEUE: &str = "default";

/// How the result lines name awa and its setup.
static ABOUT: About = About {
    name: "awa 0.6",
    backend: "PostgreSQL",
    throughput: "QueueConfig::default() with max_workers = C",
    pickup: "QueueConfig::default() (poll 200 ms, LISTEN/NOTIFY wake), max_workers = 1",
};

/// The no-op job.
#[derive(Debug, Serialize, Deserialize, JobArgs)]
struct Noop {}

/// awa on a migrated database: its pool, and the counter its handler bumps.
pub struct Awa {
    pool: PgPool,
    progress: Arc<Progress>,
}

impl PgPeer for Awa {
    const DB: &'static str = "awa";

    async fn open(url: &str, progress: Arc<Progress>) -> Result<Self> {
        let pool = pg::pool(url).await?;
        awa::migrations::run(&pool).await?;
        Ok(Self { pool, progress })
    }
}

impl Peer for Awa {
    type Worker = Client;

    fn about(&self) -> &'static About {
        &ABOUT
    }

    async fn enqueue(&self, _i: usize) -> Result<()> {
        let opts = InsertOpts {
            queue: QUEUE.into(),
            ..InsertOpts::default()
        };
        awa::insert_with(&self.pool, &Noop {}, opts).await?;
        Ok(())
    }

    async fn start(&self, concurrency: usize) -> Result<Client> {
        let progress = self.progress.clone();
        let config = QueueConfig {
            max_workers: u32::try_from(concurrency)?,
            ..QueueConfig::default()
        };
        let client = Client::builder(self.pool.clone())
            .queue(QUEUE, config)
            .register::<Noop, _, _>(move |_args, _ctx| {
                let progress = progress.clone();
                async move {
                    progress.hit();
                    Ok(JobResult::Completed)
                }
            })
            .build()?;
        client.start().await?;
        Ok(client)
    }

    async fn done(&self, n: usize) -> Result<bool> {
        let counts = awa::admin::state_counts(&self.pool).await?;
        Ok(counts.get(&JobState::Completed).copied().unwrap_or(0) as usize >= n)
    }

    async fn stop(&self, client: Client) -> Result<()> {
        client.shutdown(Duration::from_secs(5)).await;
        Ok(())
    }

    async fn close(self) -> Result<String> {
        pg::close(&self.pool).await
    }
}
